"""Escape decoding and JSON building shared by the access-log connectors.

nginx writes unsafe bytes in access logs as ``\\xHH`` (uppercase hex), Apache
writes ``\\"``, ``\\\\`` and ``\\xhh`` (lowercase hex). Ingest decodes each line
with ``bytes.decode("utf-8", "backslashreplace")``, so invalid UTF-8 bytes in
the file arrive in the same ``\\xhh`` form.
"""

from __future__ import annotations

import codecs
import json
import re

import polars as pl

_HEX_RUN = r"(?:\\x[0-9A-Fa-f]{2})+"

# One escape at a time, scanned left to right, so that an escaped backslash
# followed by "x41" is not read as the escape \x41.
_LOG_ESCAPE_RE = re.compile(_HEX_RUN + r'|\\["\\]')

# Inside a JSON string: an escaped backslash (kept), a run of \xHH escapes or
# a raw control character (both invalid JSON).
_JSON_FIX_RE = re.compile(r"\\\\|" + _HEX_RUN + r"|[\x00-\x1f]")
_JSON_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _hex_escape_error(case: str):
    template = "\\x%02X" if case == "upper" else "\\x%02x"

    def handler(error: UnicodeDecodeError) -> tuple[str, int]:
        invalid = error.object[error.start : error.end]
        return "".join(template % byte for byte in invalid), error.end

    return handler


codecs.register_error("gatewatch.hex_upper", _hex_escape_error("upper"))
codecs.register_error("gatewatch.hex_lower", _hex_escape_error("lower"))


def decode_hex_run(run: str) -> str:
    """Decode a run of ``\\xHH`` escapes as UTF-8.

    Bytes that are not valid UTF-8 stay as ``\\xHH`` text, in the hex case the
    run was written in, so nothing is lost and nothing fails.
    """
    data = bytes.fromhex(run.replace("\\x", ""))
    has_upper = any(char in "ABCDEF" for char in run)
    return data.decode("utf-8", "gatewatch.hex_upper" if has_upper else "gatewatch.hex_lower")


def _replace_log_escape(match: re.Match[str]) -> str:
    text = match.group()
    if text[1] == "x":
        return decode_hex_run(text)
    return text[1]


def unescape_log_text(text: str) -> str:
    """Decode ``\\"``, ``\\\\`` and ``\\xHH`` in a quoted access-log field.

    Other backslash sequences (Apache's ``\\n``, ``\\t``) are kept as written.
    """
    return _LOG_ESCAPE_RE.sub(_replace_log_escape, text)


def unescape_log_column(values: pl.Series) -> pl.Series:
    """Apply ``unescape_log_text`` to the values that contain a backslash.

    NOTE: this runs Python once per value that contains a backslash. Both
    servers escape only unusual bytes, so these are rare (18 of 1,791 lines
    in one day of an internet-facing nginx server), but a client that sends
    escapable bytes in every request makes parsing slower, not wrong.
    """
    needs_work = values.str.contains("\\", literal=True).fill_null(False)
    positions = needs_work.arg_true()
    if positions.len() == 0:
        return values
    decoded = [unescape_log_text(text) for text in values.gather(positions).to_list()]
    return values.scatter(positions, pl.Series(decoded, dtype=pl.String))


def _fix_json_string(match: re.Match[str]) -> str:
    text = match.group()
    if text == "\\\\":
        return text
    if text[0] != "\\":
        return "\\u%04x" % ord(text)
    # json.dumps escapes quotes, backslashes and control characters that the
    # decoded bytes may contain; the slice drops the surrounding quotes.
    return json.dumps(decode_hex_run(text), ensure_ascii=False)[1:-1]


def repair_json_text(line: str) -> str:
    """Rewrite nginx's non-JSON escapes inside the JSON strings of a line.

    nginx without ``escape=json`` writes bytes as ``\\xHH``; with
    ``escape=json`` it leaves bytes 0x80-0xFF raw, which ingest turns into the
    same ``\\xhh`` text. Runs of them are decoded as UTF-8 (invalid bytes stay
    as literal ``\\xHH`` text) and raw control characters become ``\\u00XX``.
    """
    return _JSON_STRING_RE.sub(lambda string: _JSON_FIX_RE.sub(_fix_json_string, string.group()), line)


def json_object(members: dict[str, pl.Expr]) -> pl.Expr:
    """Build a JSON object text from the non-null members, or null when all are null.

    Each value is encoded by polars, so strings are escaped correctly and lists
    stay lists.
    """
    parts = []
    for name, value in members.items():
        encoded = pl.struct(value.alias(name)).struct.json_encode()
        member = encoded.str.strip_prefix("{").str.strip_suffix("}")
        parts.append(pl.when(value.is_not_null()).then(member))
    if not parts:
        return pl.lit(None, dtype=pl.String)
    body = pl.concat_str(parts, separator=",", ignore_nulls=True)
    return pl.when(body != "").then(pl.concat_str([pl.lit("{"), body, pl.lit("}")]))
