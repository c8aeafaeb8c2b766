"""Credentials seen in logs, reduced to keyed fingerprints.

A log line may carry an API key, a bearer token or a basic-auth password.
gatewatch stores none of them. ``credential_id`` contains
``HMAC-SHA256(key, credential)`` cut to 24 hex digits, so a rule can count
one token's use across addresses. Without the key, a reader of the database
can neither recover a token nor test a guessed one. The key lives in the store
(see ``Store.fingerprint_key``) or in an environment variable named in the
config.
"""

from __future__ import annotations

import hashlib
import hmac

import polars as pl

FINGERPRINT_HEX_DIGITS = 24

# "Basic <base64>", "Bearer <token>" or another "<scheme> <credentials>".
_AUTHORIZATION_RE = r"^\s*([A-Za-z][A-Za-z0-9_-]*)\s+(\S.*?)\s*$"


def fingerprint_values(values: pl.Series, key: bytes) -> pl.Series:
    """Return the keyed fingerprint of each non-empty value; null stays null.

    The HMAC runs once per distinct value, not once per row: a chunk has far
    fewer distinct credentials than lines.
    """
    distinct = values.drop_nulls().unique()
    distinct = distinct.filter(distinct != "")
    digests = [
        hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:FINGERPRINT_HEX_DIGITS]
        for value in distinct.to_list()
    ]
    mapping = pl.DataFrame(
        {"_value": distinct, "_fingerprint": pl.Series(digests, dtype=pl.String)},
        schema={"_value": pl.String, "_fingerprint": pl.String},
    )
    looked_up = (
        pl.DataFrame({"_value": values.cast(pl.String)})
        .join(mapping, on="_value", how="left", maintain_order="left")
    )
    return looked_up["_fingerprint"].alias(values.name)


def split_authorization(header: pl.Expr) -> dict[str, pl.Expr]:
    """Split an Authorization header into its credential and basic-auth user.

    Returns ``_auth_credential`` (the text after the scheme, which is what
    gets fingerprinted) and ``_auth_user`` (the user name of a ``Basic``
    header whose base64 decodes to ``user:password``, else null).
    """
    parts = header.str.extract_groups(_AUTHORIZATION_RE)
    scheme = parts.struct.field("1").str.to_lowercase()
    credential = parts.struct.field("2")
    decoded = credential.str.decode("base64", strict=False).cast(pl.String, strict=False)
    user = decoded.str.extract(r"^([^:]*):")
    return {
        "_auth_credential": credential,
        "_auth_user": pl.when(scheme == "basic").then(pl.when(user != "").then(user)),
    }
