"""Enrichment from local files: network ranges to ASN, organization and country.

A lists file names the files under `networks:`: CSV files with the header
`network,asn,organization,country` (only `network` is required), or
MaxMind-format `.mmdb` databases read with the maxminddb package. The
ranges are loaded into the `networks` table when the files change, and
rule expressions look addresses up with `ip_country(...)`, `ip_asn(...)`
and `ip_organization(...)`, which the compiler expands into SQL.
"""

from __future__ import annotations

import csv
import hashlib
import ipaddress
from pathlib import Path

import duckdb
import polars as pl

from gatewatch.engine.ipsql import IPV4_MAPPED, ip_number_sql
from gatewatch.errors import RuleError
from gatewatch.store import utc_now

# Lookup functions an expression may call, and the `networks` column each reads.
LOOKUP_FUNCTIONS = {"ip_country": "country", "ip_asn": "asn", "ip_organization": "organization"}


def fingerprint(files: list[Path]) -> str:
    """Return a fingerprint of the files' paths, sizes and modification times."""
    digest = hashlib.sha256()
    for path in files:
        try:
            stat = path.stat()
        except OSError as exc:
            raise RuleError(f"cannot read network file: {exc.strerror}", path) from None
        digest.update(f"{path.resolve()}\x00{stat.st_size}\x00{stat.st_mtime_ns}\x00".encode())
    return digest.hexdigest()


def ensure_networks(con: duckdb.DuckDBPyConnection, files: list[Path]) -> bool:
    """Load ``files`` into `networks` unless the loaded ones are the same; return True if loaded."""
    current = fingerprint(files)
    row = con.execute("SELECT fingerprint FROM enrichment_state").fetchone()
    if row is not None and row[0] == current:
        return False
    frames = [read_networks(path) for path in files]
    frame = pl.concat(frames) if frames else empty_frame()
    con.begin()
    try:
        con.execute("DELETE FROM networks")
        con.register("_gatewatch_networks", frame.to_arrow())
        con.execute(
            "INSERT INTO networks SELECT low::UHUGEINT, high::UHUGEINT, asn, organization, country "
            "FROM _gatewatch_networks"
        )
        con.unregister("_gatewatch_networks")
        con.execute("DELETE FROM enrichment_state")
        con.execute("INSERT INTO enrichment_state VALUES (?, ?)", [current, utc_now()])
    except BaseException:
        con.rollback()
        raise
    con.commit()
    return True


def read_networks(path: Path) -> pl.DataFrame:
    """Read one CSV or MaxMind file into rows of (low, high, asn, organization, country)."""
    rows = _read_mmdb(path) if path.suffix == ".mmdb" else _read_csv(path)
    if not rows:
        return empty_frame()
    return pl.DataFrame(
        rows,
        schema={"low": pl.String, "high": pl.String, "asn": pl.Int64, "organization": pl.String, "country": pl.String},
        orient="row",
    )


def empty_frame() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"low": pl.String, "high": pl.String, "asn": pl.Int64, "organization": pl.String, "country": pl.String}
    )


def _bounds(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[str, str]:
    low, high = int(network.network_address), int(network.broadcast_address)
    if network.version == 4:
        low, high = low + IPV4_MAPPED, high + IPV4_MAPPED
    return str(low), str(high)


def _read_csv(path: Path) -> list[tuple]:
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise RuleError(f"cannot read network file: {exc.strerror}", path) from None
    rows = []
    with handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "network" not in reader.fieldnames:
            raise RuleError("a network CSV needs the header network,asn,organization,country", path, 1)
        for line, record in enumerate(reader, start=2):
            try:
                network = ipaddress.ip_network(record["network"].strip(), strict=False)
                asn = record.get("asn") or ""
                asn_number = int(asn.upper().removeprefix("AS")) if asn.strip() else None
            except ValueError as exc:
                raise RuleError(f"invalid row: {exc}; write a CIDR range and a numeric ASN", path, line) from None
            low, high = _bounds(network)
            rows.append((low, high, asn_number, record.get("organization") or None, record.get("country") or None))
    return rows


def _read_mmdb(path: Path) -> list[tuple]:
    try:
        import maxminddb
    except ImportError:
        raise RuleError("reading .mmdb files needs the maxminddb package: pip install maxminddb", path) from None
    # Field names follow the GeoLite2 Country, City and ASN layouts. The tests
    # write a small database with mmdb-writer; no real GeoLite2 file was tried.
    rows = []
    try:
        with maxminddb.open_database(str(path)) as reader:
            for network, record in reader:
                if not isinstance(record, dict):
                    continue
                country = (record.get("country") or record.get("registered_country") or {}).get("iso_code")
                low, high = _bounds(network)
                rows.append(
                    (low, high, record.get("autonomous_system_number"), record.get("autonomous_system_organization"), country)
                )
    except (OSError, ValueError) as exc:
        raise RuleError(f"cannot read the MaxMind database: {exc}", path) from None
    return rows


def lookup_sql(function: str, address_sql: str) -> str:
    """Build the scalar subquery for one lookup function; the most specific matching range wins."""
    column = LOOKUP_FUNCTIONS[function]
    return (
        f"(SELECT _n.{column} FROM networks AS _n WHERE _n.{column} IS NOT NULL "
        f"AND {ip_number_sql(address_sql)} BETWEEN _n.low AND _n.high ORDER BY _n.high - _n.low LIMIT 1)"
    )
