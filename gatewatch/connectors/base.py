"""The connector interface: a name, typed options and a bulk parser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gatewatch.connectors._http import parse_networks
from gatewatch.connectors._time import validate_timezone
from gatewatch.events import conform


class ConnectorOptions(BaseModel):
    """Options shared by every connector; a connector may extend them."""

    model_config = ConfigDict(extra="forbid")

    # IANA zone for timestamps that carry no UTC offset.
    timezone: str = "UTC"
    # Addresses and CIDR ranges of the operator's own proxies and load
    # balancers. When set, client_ip is the right-most address of the
    # X-Forwarded-For chain (plus the connecting address) outside them.
    trusted_proxies: list[str] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return validate_timezone(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, cidrs: list[str]) -> list[str]:
        parse_networks(cidrs)
        return cidrs


@dataclass
class ParseResult:
    """The outcome of parsing one chunk of lines.

    ``events`` has the columns of ``gatewatch.events.PARSED_COLUMNS`` plus
    ``offset``; ``rejects`` has ``offset``, ``line`` and ``reason``. Every
    input offset appears in exactly one of the two. A connector with
    multi-line records (see ``Connector.record_start``) reports each record
    once, at the offset of its first line.
    """

    events: pl.DataFrame
    rejects: pl.DataFrame

    @classmethod
    def from_frames(cls, events: pl.DataFrame, rejects: pl.DataFrame) -> ParseResult:
        """Build a result with the normalized event columns and the reject columns, typed."""
        reject_columns = [pl.col(name).cast(dtype) for name, dtype in REJECT_SCHEMA.items()]
        return cls(events=conform(events), rejects=rejects.select(reject_columns))


REJECT_SCHEMA = {"offset": pl.Int64(), "line": pl.String(), "reason": pl.String()}


class Connector:
    """Parse lines of one log format into normalized event columns.

    Subclasses set ``name`` and ``options_model`` and implement ``parse``,
    which works on the whole chunk at once (polars or DuckDB expressions),
    never with a Python loop per line.
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    options_model: ClassVar[type[ConnectorOptions]] = ConnectorOptions
    # Multi-line records. When ``record_start`` is set (a regex), a line that
    # matches it begins a record and the lines after it, up to the next such
    # line, belong to the same record. A record is complete when the next one
    # starts or when a line matches ``record_end``. Ingest passes ``parse``
    # only complete records and carries an incomplete last record over to
    # the next chunk, so a record is never split across two ``parse`` calls.
    record_start: ClassVar[str | None] = None
    record_end: ClassVar[str | None] = None

    def __init__(self, options: ConnectorOptions | None = None, fingerprint_key: bytes = b""):
        self.options = options if options is not None else self.options_model()
        # HMAC key for credential fingerprints; ingest passes the store's key.
        self.fingerprint_key = fingerprint_key
        self.trusted_networks = parse_networks(self.options.trusted_proxies)

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        """Parse a frame with ``line`` (String) and ``offset`` (Int64) columns."""
        raise NotImplementedError
