"""Any JSON-lines log, read through a field mapping written in the source's options.

The mapping names, for each normalized column, the JSON path that fills
it, so a user can read a new format without writing Python::

    format: json_lines
    options:
      time_format: epoch_ms
      fields:
        ts: time
        client_ip: [client.ip, remote_addr]
        request: request.line
        status: response.status
        authorization: request.headers.authorization
"""

from __future__ import annotations

import polars as pl
from pydantic import Field, field_validator

from gatewatch.connectors._json import (
    TIME_FORMATS,
    VALUE_ROLES,
    EventSettings,
    build_events,
    finish,
    parse_dotted_path,
    read_json_objects,
    text_at,
)
from gatewatch.connectors.base import Connector, ConnectorOptions, ParseResult

# Roles whose values are credentials: their members never stay in extra.
_CREDENTIAL_ROLES = frozenset({"authorization", "api_key"})


class JsonLinesOptions(ConnectorOptions):
    """Options of the json_lines connector."""

    # Column -> JSON path, or a list of paths where the first one present
    # wins. A path is keys separated by dots, with list indexes as [0]:
    # httpRequest.clientIp, headers[0].value. "ts" is required.
    fields: dict[str, str | list[str]] = Field(default_factory=dict, validate_default=True)
    # How the ts value is written: auto, iso8601, clf, epoch_s, epoch_ms,
    # epoch_us, epoch_ns or a strftime pattern such as "%Y-%m-%d %H:%M:%S".
    time_format: str = "auto"


    @field_validator("time_format")
    @classmethod
    def _check_time_format(cls, value: str) -> str:
        if value not in TIME_FORMATS and "%" not in value:
            raise ValueError(
                f"unknown time_format {value!r}; use one of {', '.join(TIME_FORMATS)} "
                "or a strftime pattern such as '%Y-%m-%d %H:%M:%S'"
            )
        return value

    @field_validator("fields")
    @classmethod
    def _check_fields(cls, fields: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        if "ts" not in fields:
            raise ValueError("fields: map 'ts' to the JSON path of the event time, such as 'ts: timestamp'")
        for role, paths in fields.items():
            if role not in VALUE_ROLES:
                raise ValueError(f"fields: unknown column {role!r}; use one of {', '.join(sorted(VALUE_ROLES))}")
            listed = [paths] if isinstance(paths, str) else paths
            if not listed:
                raise ValueError(f"fields: {role!r} has an empty list of paths; give at least one path")
            for path in listed:
                try:
                    parse_dotted_path(path)
                except ValueError as error:
                    raise ValueError(f"fields: {role!r}: {error}") from None
        return fields


class JsonLinesConnector(Connector):
    """JSON lines read through a user-defined field mapping."""

    name = "json_lines"
    aliases = ("jsonl", "generic_json")
    options_model = JsonLinesOptions
    options: JsonLinesOptions

    def __init__(self, options: ConnectorOptions | None = None, fingerprint_key: bytes = b""):
        super().__init__(options, fingerprint_key)
        self._role_paths: dict[str, list[list[str | int]]] = {}
        for role, paths in self.options.fields.items():
            listed = [paths] if isinstance(paths, str) else paths
            self._role_paths[role] = [parse_dotted_path(path) for path in listed]

    def parse(self, lines: pl.DataFrame) -> ParseResult:
        values: dict[str, str] = {}
        consumed: list[list[str]] = []
        for role, paths in self._role_paths.items():
            for index, path in enumerate(paths):
                values[f"_{role}_{index}"] = text_at(*path)
                part = _consumed_part(path, role)
                if part:
                    consumed.append(part)
        chunk = read_json_objects(lines, values, consumed)

        roles = {}
        for role, paths in self._role_paths.items():
            columns = [pl.col(f"_{role}_{index}") for index in range(len(paths))]
            roles[role] = pl.coalesce(columns) if len(columns) > 1 else columns[0]
        time_paths = self.options.fields["ts"]
        time_field = time_paths if isinstance(time_paths, str) else " or ".join(time_paths)
        events, event_rejects = build_events(
            chunk.objects,
            roles,
            EventSettings(
                timezone=self.options.timezone,
                time_format=self.options.time_format,
                time_field=time_field,
                trusted_networks=self.trusted_networks,
                fingerprint_key=self.fingerprint_key,
            ),
        )
        events, rejects = finish(events, event_rejects, chunk.rejects)
        return ParseResult.from_frames(events, rejects)


def _consumed_part(path: list[str | int], role: str) -> list[str]:
    """Return the keys of the member that leaves extra when ``path`` fills ``role``.

    A path through a list cannot be removed on its own. Its top-level member
    stays in extra, except for a credential, whose whole top-level member
    leaves so that the secret is never stored.
    """
    if all(isinstance(key, str) for key in path):
        return [str(key) for key in path]
    if role in _CREDENTIAL_ROLES:
        return [str(path[0])]
    return []
