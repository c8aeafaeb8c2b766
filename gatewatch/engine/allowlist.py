"""Allowlists: named lists of networks, user agents, users, paths and credentials, defined once.

A lists file is a YAML file among the rule files whose top-level key is
`lists:` instead of `id:`. A rule names lists under `allowlist:`, and events
that match any entry of them are left out before its `where`. An expression
may also test `in_list('name')`, for lists of bad user agents or revoked
credentials. Matching is compiled into SQL, so it runs inside the rule's
query in bulk.

Network entries are compared as numbers: an address becomes a 128-bit
integer (IPv4 in the IPv4-mapped range ::ffff:0:0/96), so IPv4 and IPv6
entries share one comparison. Text entries are glob patterns (`*`, `?`,
`[...]`), matched case-sensitively with DuckDB's GLOB operator.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gatewatch.engine.compiler import literal_string, quote
from gatewatch.engine.ipsql import IPV4_MAPPED, ip_number_sql, lambda_sql
from gatewatch.errors import RuleError
from gatewatch.yamlsource import YamlDocument, raise_validation_error

# The event column each kind of list is matched against.
KIND_COLUMNS = {
    "cidr": "client_ip",
    "user_agent": "user_agent",
    "user": "user",
    "path": "path",
    "credential_id": "credential_id",
}
class ListSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["cidr", "user_agent", "user", "path", "credential_id"]
    # May be empty: a list the user fills in later, such as revoked keys.
    values: list[str] = Field(default_factory=list)
    # A text file with one entry per line (`#` starts a comment), relative
    # to the lists file.
    file: str | None = None
    description: str = ""


class ListsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lists: dict[str, ListSpec] = Field(default_factory=dict)
    # Enrichment files (CSV or .mmdb) relative to the lists file, for
    # ip_country(), ip_asn() and ip_organization().
    networks: list[str] = Field(default_factory=list)


@dataclass
class NamedList:
    name: str
    kind: str
    entries: list[str]
    path: str
    line: int | None


@dataclass
class Allowlists:
    """Every list defined in the loaded lists files, by name."""

    lists: dict[str, NamedList] = field(default_factory=dict)
    network_files: list[Path] = field(default_factory=list)

    def match_sql(self, name: str) -> str:
        """Build a SQL condition that is true for events matching an entry of list ``name``."""
        return _match_sql(self.lists[name])

    def exclusion_sql(self, names: list[str]) -> str:
        """Build a SQL condition that is true for events matching none of ``names``."""
        conditions = [_match_sql(self.lists[name]) for name in names]
        if not conditions:
            return "TRUE"
        return "NOT coalesce(" + " OR ".join(f"({c})" for c in conditions) + ", FALSE)"


def is_lists_document(data: object) -> bool:
    return isinstance(data, dict) and ("lists" in data or "networks" in data) and "id" not in data


def load_lists(document: YamlDocument, into: Allowlists) -> None:
    """Validate one lists file and add its lists; raise RuleError with the line at fault."""
    try:
        parsed = ListsFile.model_validate(document.data)
    except ValidationError as exc:
        raise_validation_error(document, exc, RuleError, model=ListsFile)
    for index, name in enumerate(parsed.networks):
        path = Path(document.path).parent / name
        if not path.is_file():
            raise RuleError(f"network file {name!r} not found next to the lists file", document.path, document.line_of(("networks", index)))
        into.network_files.append(path)
    for name, spec in parsed.lists.items():
        line = document.line_of(("lists", name))
        if name in into.lists:
            raise RuleError(f"list {name!r} is already defined in {into.lists[name].path}; rename one", document.path, line)
        entries = list(spec.values)
        if spec.file is not None:
            entries += _read_entries(Path(document.path).parent / spec.file, document.path, line)
        if spec.kind == "cidr":
            for index, entry in enumerate(entries):
                try:
                    ipaddress.ip_network(entry.strip(), strict=False)
                except ValueError:
                    raise RuleError(
                        f"invalid network {entry!r} in list {name!r}; write an address or a CIDR range such as 192.0.2.0/24",
                        document.path,
                        document.line_of(("lists", name, "values", index)) or line,
                    ) from None
        into.lists[name] = NamedList(name, spec.kind, [e.strip() for e in entries if e.strip()], document.path, line)


def _read_entries(path: Path, lists_path: str, line: int | None) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(f"cannot read list file {str(path)!r}: {exc.strerror}", lists_path, line) from None
    entries = []
    for raw in text.splitlines():
        entry = raw.split("#", 1)[0].strip()
        if entry:
            entries.append(entry)
    return entries


def _match_sql(named: NamedList) -> str:
    column = quote(KIND_COLUMNS[named.kind])
    if named.kind != "cidr":
        return " OR ".join(f"{column} GLOB {literal_string(entry)}" for entry in named.entries) or "FALSE"
    ranges = []
    for entry in named.entries:
        network = ipaddress.ip_network(entry, strict=False)
        low, high = int(network.network_address), int(network.broadcast_address)
        if network.version == 4:
            low, high = low + IPV4_MAPPED, high + IPV4_MAPPED
        ranges.append(f"n BETWEEN {low}::UHUGEINT AND {high}::UHUGEINT")
    if not ranges:
        return "FALSE"
    # The lambda computes the address number once for all ranges.
    return f"list_transform([{ip_number_sql(column)}], {lambda_sql('n', ' OR '.join(ranges))})[1]"
