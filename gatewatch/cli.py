"""The `gatewatch` command: a thin layer over the library.

Exit codes:

- 0: success, also when another run has the lock and this one does nothing.
- 1: nothing ran, because of an invalid config, an unreadable database, or a
  failed query or rule test.
- 2: invalid command-line usage.
- 3: the run finished, but a source, rule or notifier failed (see stderr).
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import duckdb
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gatewatch.config import DEFAULT_CONFIG_NAME, Config, load_config
from gatewatch.engine.loader import load_rules
from gatewatch.engine.ruletest import run_rule_tests
from gatewatch.errors import GatewatchError
from gatewatch.notify import load_alert
from gatewatch.notify.escape import make_visible
from gatewatch.notify.terminal import render_alert
from gatewatch.runner import RunLocked, TickReport, ingest_all, run_lock, run_tick
from gatewatch.store import Store

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_PARTIAL = 3

app = typer.Typer(
    help="Detect API abuse in gateway and WAF logs: ingest, evaluate YAML rules, alert.",
    epilog=(
        "Exit codes: 0 success (also when another run has the lock); 1 nothing ran "
        "(invalid config, unreadable database, failed query or rule test); 2 invalid usage; "
        "3 the run finished but a source, rule or notifier failed."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
rules_app = typer.Typer(help="List, check and test detection rules.", no_args_is_help=True)
alerts_app = typer.Typer(help="Inspect stored alerts.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(alerts_app, name="alerts")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        envvar="GATEWATCH_CONFIG",
        help="Path of the config file (YAML). Relative paths inside it are read from its folder.",
    ),
]


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def first_line(error: Exception) -> str:
    lines = str(error).splitlines()
    return lines[0] if lines else type(error).__name__


def fail(error: GatewatchError | str) -> typer.Exit:
    """Print one error line on stderr and return the exit to raise."""
    err.print(Text(f"error: {error}"))
    return typer.Exit(EXIT_FAILED)


def read_config(path: Path) -> Config:
    try:
        return load_config(path)
    except GatewatchError as exc:
        if not path.exists():
            raise fail(f"{path}: config file not found; create one with `gatewatch init {path}`") from None
        raise fail(exc) from None


@contextmanager
def read_only_store(config: Path) -> Iterator[Store]:
    """Open the config's database read-only, or exit with one error line."""
    settings = read_config(config)
    database = settings.resolve(settings.database)
    if not database.exists():
        raise fail(f"{database}: database not found; run `gatewatch run --once` first")
    try:
        store = Store(database, read_only=True)
    except GatewatchError as exc:
        raise fail(exc) from None
    with store:
        yield store


def print_errors(errors: list[GatewatchError]) -> None:
    for error in errors:
        err.print(Text(f"error: {make_visible(str(error))}"))


def print_summary(report: TickReport) -> None:
    sent = report.delivery.sent if report.delivery else 0
    pending = report.delivery.pending_left if report.delivery else 0
    out.print(
        Text(
            f"gatewatch: {report.lines} lines read, {report.events} events, {report.rejects} rejected; "
            f"{report.alerts} new alerts; {sent} deliveries sent, {pending} pending; "
            f"{len(report.errors)} errors"
        )
    )


@app.command()
def run(
    config: ConfigOption = Path(DEFAULT_CONFIG_NAME),
    once: Annotated[bool, typer.Option("--once", help="Run one tick (ingest, evaluate, deliver) and exit; for cron.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print the tick summary even when nothing happened.")] = False,
) -> None:
    """Ingest new log lines, evaluate the rules and deliver alerts.

    With --once, run one tick and exit. Without it, run a tick every
    `schedule.every` of the config until stopped with Ctrl-C or SIGTERM.
    """
    settings = read_config(config)
    if not once:
        from gatewatch.scheduler import serve

        serve(settings, lambda: _tick(settings, verbose))
        return
    raise typer.Exit(_tick(settings, verbose))


def _tick(settings: Config, verbose: bool) -> int:
    database = settings.resolve(settings.database)
    try:
        with run_lock(database):
            report = run_tick(settings, out)
    except RunLocked as exc:
        err.print(Text(str(exc)))
        return EXIT_OK
    except GatewatchError as exc:
        print_errors([exc])
        return EXIT_FAILED
    print_errors(report.errors)
    happened = report.lines or report.alerts or report.errors or (report.delivery and report.delivery.sent)
    if verbose or happened:
        print_summary(report)
    return EXIT_PARTIAL if report.errors else EXIT_OK


@app.command()
def ingest(config: ConfigOption = Path(DEFAULT_CONFIG_NAME)) -> None:
    """Read new lines of every source into the database, without evaluating rules."""
    settings = read_config(config)
    database = settings.resolve(settings.database)
    try:
        with run_lock(database), Store(database) as store:
            reports, errors = ingest_all(settings, store)
    except RunLocked as exc:
        err.print(Text(str(exc)))
        raise typer.Exit(EXIT_OK) from None
    except GatewatchError as exc:
        raise fail(exc) from None
    for result in reports:
        out.print(Text(f"{result.source}: {result.lines} lines, {result.events} events, {result.rejects} rejected"))
    print_errors(errors)
    raise typer.Exit(EXIT_PARTIAL if errors else EXIT_OK)


RulePaths = Annotated[
    list[Path] | None,
    typer.Argument(help="Rule files or folders; default: the `rules:` list of the config, or the built-in pack."),
]


def _rule_locations(paths: list[Path] | None, config: Path) -> list[str]:
    if paths:
        return [str(p) for p in paths]
    if config.exists():
        settings = read_config(config)
        return [loc if loc == "builtin" else str(settings.resolve(loc)) for loc in settings.rules]
    if config != Path(DEFAULT_CONFIG_NAME):
        raise fail(f"{config}: config file not found; pass rule paths, or a config that exists")
    return ["builtin"]


@rules_app.command("list")
def rules_list(paths: RulePaths = None, config: ConfigOption = Path(DEFAULT_CONFIG_NAME)) -> None:
    """List the rules with their type, window and severity."""
    rule_set = load_rules(_rule_locations(paths, config))
    table = Table("id", "type", "severity", "window", "every", "title", box=None)
    for compiled in rule_set.rules:
        rule = compiled.rule
        window = str(rule.window) if rule.window else "-"
        table.add_row(Text(rule.id), rule.type, rule.severity, window, str(rule.every), Text(rule.title))
    out.print(table)
    print_errors(rule_set.errors)
    raise typer.Exit(EXIT_FAILED if rule_set.errors else EXIT_OK)


@rules_app.command("validate")
def rules_validate(paths: RulePaths = None, config: ConfigOption = Path(DEFAULT_CONFIG_NAME)) -> None:
    """Check rule files: YAML, keys, SQL columns and functions. Exit 1 on any fault."""
    rule_set = load_rules(_rule_locations(paths, config))
    print_errors(rule_set.errors)
    out.print(Text(f"{len(rule_set.rules)} rules valid, {len(rule_set.errors)} invalid"))
    raise typer.Exit(EXIT_FAILED if rule_set.errors else EXIT_OK)


@rules_app.command("test")
def rules_test(paths: RulePaths = None, config: ConfigOption = Path(DEFAULT_CONFIG_NAME)) -> None:
    """Run the inline tests of each rule. Exit 1 when a test fails or a rule is invalid."""
    rule_set = load_rules(_rule_locations(paths, config))
    print_errors(rule_set.errors)
    passed = failed = 0
    for compiled in rule_set.rules:
        for outcome in run_rule_tests(compiled):
            if outcome.passed:
                passed += 1
                out.print(Text(f"PASS {outcome.rule_id}: {outcome.name}"))
            else:
                failed += 1
                where = f"{outcome.path}:{outcome.line}" if outcome.line else outcome.path
                out.print(Text(f"FAIL {outcome.rule_id}: {outcome.name} ({where}): {outcome.message}"))
        if not compiled.rule.tests:
            out.print(Text(f"NOTE {compiled.id}: no inline tests"))
    out.print(Text(f"{passed} passed, {failed} failed"))
    raise typer.Exit(EXIT_FAILED if failed or rule_set.errors else EXIT_OK)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL to run, such as \"SELECT client_ip, count(*) FROM events GROUP BY 1\".")],
    config: ConfigOption = Path(DEFAULT_CONFIG_NAME),
    output: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format: table, csv or json.")] = OutputFormat.table,
) -> None:
    """Run a read-only SQL query over the database (tables: events, rejects, alerts, outbox)."""
    with read_only_store(config) as store:
        try:
            if not sql.strip():
                raise fail("the SQL is empty; pass a query such as \"SELECT count(*) FROM events\"")
            cursor = store.con.execute(sql)
            columns = [d[0] for d in cursor.description] if cursor.description else []
            rows = cursor.fetchall() if columns else []
        except duckdb.Error as exc:
            raise fail(f"query failed: {first_line(exc)}") from None
    write_rows(columns, rows, output)


def write_rows(columns: list[str], rows: list[tuple], output: OutputFormat) -> None:
    """Print rows as a table, CSV or JSON; table cells show hidden characters as escapes."""
    if output is OutputFormat.json:
        records = [dict(zip(columns, row)) for row in rows]
        records = [{k: _finite(v) for k, v in record.items()} for record in records]
        sys.stdout.write(json.dumps(records, default=_json_default, ensure_ascii=False, indent=1) + "\n")
        return
    if output is OutputFormat.csv:
        # On a terminal, log content must not move the cursor or recolour
        # the screen; piped CSV keeps the values byte for byte.
        clean = make_visible if sys.stdout.isatty() else _as_cell
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([clean(c) for c in columns])
        writer.writerows([[clean(v) for v in row] for row in rows])
        sys.stdout.write(buffer.getvalue())
        return
    # Every column but the last keeps its values on one line; the last
    # (often a summary or a long path) wraps in the remaining width.
    table = Table(box=None)
    for index, column in enumerate(columns):
        table.add_column(make_visible(column), no_wrap=index < len(columns) - 1)
    for row in rows:
        table.add_row(*[Text("" if v is None else make_visible(v)) for v in row])
    out.print(table)


def _as_cell(value: Any) -> Any:
    return "" if value is None else value


def _finite(value: Any) -> Any:
    """Return None for NaN and infinities, which JSON cannot represent."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


@alerts_app.command("list")
def alerts_list(
    config: ConfigOption = Path(DEFAULT_CONFIG_NAME),
    limit: Annotated[int, typer.Option(help="Maximum number of alerts to show, newest first.")] = 50,
    rule: Annotated[str | None, typer.Option(help="Show only alerts of this rule id.")] = None,
    output: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format: table, csv or json.")] = OutputFormat.table,
) -> None:
    """List stored alerts with their delivery state."""
    sql = (
        "SELECT a.alert_id, a.window_end, a.severity, a.rule_id, "
        "coalesce(string_agg(o.notifier || ':' || o.state, ' ' ORDER BY o.notifier), '') AS delivery, a.summary "
        "FROM alerts a LEFT JOIN outbox o USING (alert_id) "
        "WHERE ? IS NULL OR a.rule_id = ? GROUP BY ALL ORDER BY a.window_end DESC, a.alert_id LIMIT ?"
    )
    with read_only_store(config) as store:
        try:
            cursor = store.con.execute(sql, [rule, rule, limit])
            columns = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        except duckdb.Error as exc:
            raise fail(f"listing alerts failed: {first_line(exc)}") from None
    write_rows(columns, rows, output)


@alerts_app.command("show")
def alerts_show(
    alert_id: Annotated[str, typer.Argument(help="The alert id, as printed by `gatewatch alerts list` and in Slack.")],
    config: ConfigOption = Path(DEFAULT_CONFIG_NAME),
) -> None:
    """Print one alert with its evidence and the SQL that lists the events behind it."""
    with read_only_store(config) as store:
        try:
            alert = load_alert(store.con, alert_id)
            query = store.con.execute("SELECT query FROM alerts WHERE alert_id = ?", [alert_id]).fetchone()[0]
        except GatewatchError as exc:
            raise fail(exc) from None
        except duckdb.Error as exc:
            raise fail(f"reading the alert failed: {first_line(exc)}") from None
        details = store.con.execute(
            "SELECT rule_sql, catch_up, digest_id FROM alert_details WHERE alert_id = ?", [alert_id]
        ).fetchone()
        members = store.con.execute(
            "SELECT a.alert_id, a.window_end, a.severity, a.summary FROM alerts a JOIN alert_details d USING (alert_id) "
            "WHERE d.digest_id = ? AND a.alert_id <> ? ORDER BY a.window_end, a.alert_id",
            [alert_id, alert_id],
        ).fetchall()
    out.print(render_alert(alert))
    if details is not None and details[1]:
        out.print(Text("raised while catching up on missed evaluations", style="bold"))
    if members:
        out.print(Text(f"alerts in this catch-up digest ({len(members)}):", style="bold"))
        write_rows(["alert_id", "window_end", "severity", "summary"], members, OutputFormat.table)
    out.print(Text("query to reproduce (run with `gatewatch query`):", style="bold"))
    out.print(Text(make_visible(query)))
    if details is not None and details[0]:
        out.print(Text("rule query that raised it, for this window end:", style="bold"))
        for line in details[0].splitlines():
            out.print(Text(make_visible(line)))


def parse_time(value: str, option: str) -> datetime:
    """Parse an ISO 8601 date or date-time; a time without a zone is UTC."""
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"invalid {option} {value!r}: use an ISO 8601 date or time such as 2026-11-03 or 2026-11-03T08:00") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


@app.command()
def backtest(
    start: Annotated[str, typer.Option("--from", help="Start of the event-time range, ISO 8601 (UTC unless a zone is given).")],
    end: Annotated[str, typer.Option("--to", help="End of the event-time range, ISO 8601 (UTC unless a zone is given).")],
    paths: RulePaths = None,
    config: ConfigOption = Path(DEFAULT_CONFIG_NAME),
    output: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format: table, csv or json.")] = OutputFormat.table,
) -> None:
    """Run rules over the stored events and report how often each would have fired.

    Nothing is delivered and the database is opened read-only: no alerts,
    outbox rows or rule state are written.
    """
    from gatewatch.engine.backtest import backtest as run_backtest

    start_time, end_time = parse_time(start, "--from"), parse_time(end, "--to")
    settings = read_config(config)
    database = settings.resolve(settings.database)
    rule_set = load_rules(_rule_locations(paths, config))
    print_errors(rule_set.errors)
    try:
        results = run_backtest(database, rule_set.rules, start_time, end_time)
    except GatewatchError as exc:
        raise fail(exc) from None
    columns = ["rule", "alerts", "groups", "suppressed", "first", "last", "top groups"]
    rows = []
    for result in results:
        top = result.error or "; ".join(
            f"{', '.join(str(v) for v in group.values()) or '(all)'} x{count}" for group, count in result.top_groups
        )
        first = result.first.isoformat(timespec="minutes") if result.first else ""
        last = result.last.isoformat(timespec="minutes") if result.last else ""
        rows.append((result.rule_id, result.alerts, result.groups, result.suppressed, first, last, top))
    write_rows(columns, rows, output)
    failed = rule_set.errors or any(r.error for r in results)
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the starter config.")] = Path(DEFAULT_CONFIG_NAME),
    force: Annotated[bool, typer.Option("--force", help="Overwrite the file if it exists.")] = False,
) -> None:
    """Write a commented starter config to edit."""
    if path.exists() and not force:
        raise fail(f"{path}: file exists; pass --force to overwrite it")
    from gatewatch.starter import STARTER_CONFIG

    try:
        path.write_text(STARTER_CONFIG, encoding="utf-8")
    except OSError as exc:
        raise fail(f"{path}: cannot write the file: {exc.strerror}") from None
    out.print(Text(f"wrote {path}; edit `sources:` to point at your logs, then run `gatewatch run --once -c {path}`"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
