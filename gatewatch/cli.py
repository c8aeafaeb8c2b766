"""The `gatewatch` command: a thin layer over the library.

Exit codes:

- 0: success, also when another run has the lock and this one does nothing.
- 1: nothing ran, because of an invalid config, an unreadable database, or a
  failed query or rule test.
- 2: invalid command-line usage.
- 3: the run finished, but a source, rule or notifier failed (see stderr).
"""

from __future__ import annotations

import json
import sys
import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import duckdb
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gatewatch.config import DEFAULT_CONFIG_NAME, Config, load_config
from gatewatch.duration import format_duration
from gatewatch.engine.loader import load_rules
from gatewatch.engine.ruletest import run_rule_tests
from gatewatch.errors import GatewatchError
from gatewatch.ingest import SourceReport
from gatewatch.locking import DatabaseBusy, open_with_wait
from gatewatch.notify import load_alert
from gatewatch.notify.escape import make_visible
from gatewatch.notify.terminal import render_alert
from gatewatch.output import OutputFormat, QueryFormat, write_parquet, write_rows
from gatewatch.query import (
    DEFAULT_WAIT,
    VIEWS,
    busy_hint,
    describe_failure,
    read_only_connection,
    split_statements,
)
from gatewatch.runner import (
    RunLocked,
    TickReport,
    ingest_all,
    open_store,
    run_lock,
    run_tick,
)
from gatewatch.store import Store
from gatewatch.text import counted

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
sources_app = typer.Typer(help="Check log files against a format before adding a source.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(alerts_app, name="alerts")
app.add_typer(sources_app, name="sources")

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
WaitOption = Annotated[
    float,
    typer.Option(
        "--wait", min=0, help="Seconds to wait while `gatewatch serve` or a run has the database open for writing."
    ),
]


def first_line(error: Exception) -> str:
    lines = str(error).splitlines()
    return lines[0] if lines else type(error).__name__


def fail(error: GatewatchError | str) -> typer.Exit:
    """Print one error line on stderr and return the exit to raise."""
    err.print(Text(f"error: {error}"))
    return typer.Exit(EXIT_FAILED)


def check_output_path(output: Path, database: Path, config: Path, force: bool) -> None:
    """Reject an --output path that is the database or the config, or an existing file without --force."""
    target = output.expanduser().resolve()
    protected = {database.expanduser().resolve(): "the database", config.expanduser().resolve(): "the config file"}
    protected[Path(f"{database}.wal").expanduser().resolve()] = "the database's write-ahead log"
    if target in protected:
        raise fail(f"--output {output} is {protected[target]}; choose another file name")
    if target.is_dir():
        raise fail(f"--output {output} is a folder; name a file inside it")
    if target.exists() and not force:
        raise fail(f"--output {output} exists; pass --force to overwrite it, or choose another file name")


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
        store = open_with_wait(lambda: Store(database, read_only=True), DEFAULT_WAIT, what=str(database))
    except DatabaseBusy as exc:
        raise fail(f"{exc}; {busy_hint(DEFAULT_WAIT)}") from None
    except GatewatchError as exc:
        raise fail(exc) from None
    with store:
        yield store


def print_errors(errors: list[GatewatchError]) -> None:
    for error in errors:
        err.print(Text(f"error: {make_visible(str(error))}"))


def print_format_choices(reports: list[SourceReport]) -> None:
    """Print the formats that `format: auto` chose in this run, with the reason."""
    for source in reports:
        for file in source.files:
            if file.format_note:
                err.print(Text(f"{source.source}: {make_visible(file.path)}: {file.format_note}"))


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


class LogLevel(str, Enum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


LogLevelOption = Annotated[
    LogLevel | None,
    typer.Option("--log-level", help="Log records from this level up go to stderr (debug, info, warning, error)."),
]


@app.command()
def run(
    config: ConfigOption = Path(DEFAULT_CONFIG_NAME),
    once: Annotated[bool, typer.Option("--once", help="Run one tick (ingest, evaluate, deliver) and exit; for cron.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print the tick summary even when nothing happened.")] = False,
    log_level: LogLevelOption = None,
) -> None:
    """Ingest new log lines, evaluate the rules and deliver alerts.

    With --once, run one tick and exit, printing nothing when nothing
    happened. Without it, run as `gatewatch serve` does.
    """
    settings = read_config(config)
    if not once:
        _serve(settings, log_level or LogLevel.info)
        return
    from gatewatch.scheduler import configure_logging

    # Steps log at INFO; a cron run stays silent unless asked, because cron
    # mails whatever a job prints. Errors are printed below either way.
    configure_logging((log_level or LogLevel.error).value)
    raise typer.Exit(_tick(settings, verbose))


@app.command()
def serve(
    config: ConfigOption = Path(DEFAULT_CONFIG_NAME),
    log_level: LogLevelOption = None,
) -> None:
    """Run as a service: ingest, evaluate and deliver on their schedules until SIGTERM or Ctrl-C.

    Each source is ingested every `schedule.every` (or its entry in
    `schedule.sources`), each rule is evaluated at the interval of its `every`, and
    alerts are delivered every `schedule.deliver_every`. Logs go to stderr,
    one line per step. `gatewatch query` works while it runs.
    """
    _serve(read_config(config), log_level or LogLevel.info)


def _serve(settings: Config, log_level: LogLevel) -> None:
    from gatewatch.scheduler import configure_logging
    from gatewatch.scheduler import serve as serve_daemon

    configure_logging(log_level.value)
    serve_daemon(settings, out)


def _tick(settings: Config, verbose: bool) -> int:
    database = settings.resolve(settings.database)
    try:
        with run_lock(database):
            report = run_tick(settings, out)
    except RunLocked as exc:
        err.print(Text(str(exc)))
        return EXIT_OK
    except DatabaseBusy as exc:
        err.print(Text(f"error: {exc}; this run did nothing, the next run tries again"))
        return EXIT_FAILED
    except GatewatchError as exc:
        print_errors([exc])
        return EXIT_FAILED
    print_format_choices(report.sources)
    print_errors(report.errors)
    # Cron mails whatever a job prints, so reading lines alone prints nothing.
    if verbose or report.alerts or report.errors:
        print_summary(report)
    return EXIT_PARTIAL if report.errors else EXIT_OK


@app.command()
def ingest(config: ConfigOption = Path(DEFAULT_CONFIG_NAME)) -> None:
    """Read new lines of every source into the database, without evaluating rules."""
    settings = read_config(config)
    database = settings.resolve(settings.database)
    try:
        with run_lock(database), open_store(settings) as store:
            reports, errors = ingest_all(settings, store)
    except RunLocked as exc:
        err.print(Text(str(exc)))
        raise typer.Exit(EXIT_OK) from None
    except GatewatchError as exc:
        raise fail(exc) from None
    for result in reports:
        out.print(Text(f"{result.source}: {result.lines} lines, {result.events} events, {result.rejects} rejected"))
    print_format_choices(reports)
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
    table = Table(box=None)
    table.add_column("id", no_wrap=True)
    for heading in ("type", "severity", "window", "every", "title"):
        table.add_column(heading)
    for compiled in rule_set.rules:
        rule = compiled.rule
        window = format_duration(rule.window) if rule.window else "-"
        table.add_row(Text(rule.id), rule.type, rule.severity, window, format_duration(rule.every), Text(rule.title))
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
    sql: Annotated[
        str | None,
        typer.Argument(help="SQL to run, such as \"SELECT client_ip, count(*) FROM events GROUP BY 1\"."),
    ] = None,
    config: ConfigOption = Path(DEFAULT_CONFIG_NAME),
    output_format: Annotated[
        QueryFormat, typer.Option("--format", "-f", help="Output format: table, csv, json or parquet (parquet needs --output).")
    ] = QueryFormat.table,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the result to this file instead of stdout (csv, json, parquet).")
    ] = None,
    views: Annotated[bool, typer.Option("--views", help="List the built-in views and exit.")] = False,
    wait: WaitOption = 10.0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the --output file if it exists.")] = False,
) -> None:
    """Run a read-only SQL query over the database.

    Tables: events, rejects, alerts, outbox, step_state; views: see --views.
    Runs one statement per call; `gatewatch shell` runs several.
    Works while `gatewatch serve` runs: the query waits up to --wait seconds
    for a running step to release the database.
    """
    if views:
        print_views()
        return
    if sql is None or not sql.strip():
        raise fail("the SQL is empty; pass a query such as \"SELECT count(*) FROM events\", or --views")
    statements = split_statements(sql)
    if len(statements) > 1:
        raise fail(
            f"the SQL contains {len(statements)} statements; run one statement per call of `gatewatch query`, "
            "or pipe them into `gatewatch shell`"
        )
    if output_format is QueryFormat.parquet and output is None:
        raise fail("--format parquet writes a binary file; pass --output FILE.parquet")
    if output is not None and output_format is QueryFormat.table:
        raise fail("--output writes csv, json or parquet; pass --format csv, json or parquet")
    database = database_of(config)
    if output is not None:
        check_output_path(output, database, config, force)
    try:
        with read_only_connection(database, timedelta(seconds=wait)) as con:
            if output_format is QueryFormat.parquet:
                assert output is not None
                relation = con.sql(sql)
                if relation is None:
                    raise fail("the statement returned no rows to write; pass a SELECT")
                count = write_parquet(relation, output)
                err.print(Text(f"wrote {counted(count, 'row')} to {output}"))
                return
            cursor = con.execute(sql)
            columns = [d[0] for d in cursor.description] if cursor.description else []
            rows = cursor.fetchall() if columns else []
    except DatabaseBusy as exc:
        raise fail(f"{exc}; {busy_hint(timedelta(seconds=wait))}") from None
    except GatewatchError as exc:
        raise fail(exc) from None
    except duckdb.Error as exc:
        raise fail(f"query failed: {describe_failure(exc)}") from None
    except OSError as exc:
        raise fail(f"{output}: cannot write the file: {exc.strerror}") from None
    if output is None:
        write_rows(columns, rows, output_format, sys.stdout, out)
        return
    try:
        with output.open("w", encoding="utf-8", newline="") as stream:
            write_rows(columns, rows, output_format, stream, out)
    except OSError as exc:
        raise fail(f"{output}: cannot write the file: {exc.strerror}") from None
    err.print(Text(f"wrote {counted(len(rows), 'row')} to {output}"))


def print_views() -> None:
    table = Table("view", "what it shows", box=None)
    for view in VIEWS:
        table.add_row(view.name, view.description)
    out.print(table)


def database_of(config: Path) -> Path:
    settings = read_config(config)
    return settings.resolve(settings.database)


@app.command()
def shell(
    config: ConfigOption = Path(DEFAULT_CONFIG_NAME),
    wait: WaitOption = 10.0,
) -> None:
    """Open an interactive read-only SQL prompt with history; end statements with ';'.

    Each statement opens the database for its own length, so it works while
    `gatewatch serve` runs. Reads statements from stdin when it is not a terminal,
    and then exits 1 when any statement or command failed.
    """
    from gatewatch.shell import QueryShell

    database = database_of(config)
    if not database.exists():
        raise fail(f"{database}: database not found; run `gatewatch run --once` first")
    failed = QueryShell(database, timedelta(seconds=wait), out, err).run()
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


@app.command()
def status(
    config: ConfigOption = Path(DEFAULT_CONFIG_NAME),
    output_format: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format: table or json.")] = OutputFormat.table,
    wait: WaitOption = 10.0,
) -> None:
    """Show the last run per source and rule, the lag behind the newest event, rejects and the outbox backlog.

    Exit 3 when the last run of a source, rule or delivery failed.
    """
    from gatewatch.status import collect_status

    settings = read_config(config)
    database = settings.resolve(settings.database)
    try:
        with read_only_connection(database, timedelta(seconds=wait)) as con:
            state = collect_status(con, settings, database)
    except DatabaseBusy as exc:
        raise fail(f"{exc}; {busy_hint(timedelta(seconds=wait))}") from None
    except GatewatchError as exc:
        raise fail(exc) from None
    except duckdb.Error as exc:
        raise fail(f"reading the status failed: {first_line(exc)}") from None
    # A rule that does not load never runs, so no step records it: check the files too.
    invalid_rules = load_rules(_rule_locations(None, config)).errors
    if output_format is OutputFormat.json:
        write_status_json(state, invalid_rules)
    elif output_format is OutputFormat.table:
        print_status(state, database)
        print_errors(invalid_rules)
    else:
        raise fail("status is printed as table or json; pass --format table or --format json")
    raise typer.Exit(EXIT_PARTIAL if state.failing or invalid_rules else EXIT_OK)


def write_status_json(state, invalid_rules: list[GatewatchError]) -> None:
    from dataclasses import asdict

    from gatewatch.output import json_default

    document = asdict(state)
    document["failing"] = state.failing
    document["invalid_rules"] = [
        {"path": error.path, "line": error.line, "message": error.message} for error in invalid_rules
    ]
    sys.stdout.write(json.dumps(document, default=json_default, ensure_ascii=False, indent=1) + "\n")


def print_status(state, database: Path) -> None:
    from gatewatch.status import format_age

    def ago(moment) -> str:
        return "never" if moment is None else f"{format_age(state.checked_at - moment)} ago"

    def cell(value) -> Text:
        return Text("-" if value is None else make_visible(value))

    daemon = f"running (pid {state.running_pid})" if state.running_pid else "not running"
    if state.running_pid == 0:
        daemon = "running (pid unknown)"
    out.print(Text(f"database {make_visible(database)}; a gatewatch run or serve is {daemon}"))

    for row in state.sources:
        out.print(Text(
            f"source {make_visible(row['source'])}: last run {ago(row['last_run'])}; "
            f"{row['lines'] or 0} lines, {row['events'] or 0} events, {row['rejects_last_run'] or 0} rejected "
            f"({row['rejects_24h']} rejected in 24h); newest event {cell(row['newest_event'])}, "
            f"lag {format_age(row['lag'])}"
        ))
        if row["error"]:
            out.print(Text(f"  last error: {make_visible(row['error'])}"))

    rules = Table("rule", "last run", "evaluated to", "alerts", "alerts total", box=None)
    for row in state.rules:
        rules.add_row(
            cell(row["rule_id"]), ago(row["last_run"]), cell(row["evaluated_to"]),
            cell(row["alerts_last_run"]), cell(row["alerts_total"]),
        )
    out.print(rules)
    for row in state.rules:
        if row["error"]:
            out.print(Text(f"rule {make_visible(row['rule_id'])} last error: {make_visible(row['error'])}"))

    if state.delivery is None:
        out.print(Text("delivery: never ran"))
    else:
        delivery = state.delivery
        out.print(Text(
            f"delivery: last run {ago(delivery['last_run'])}, {delivery['sent']} sent, {delivery['failed']} failed"
            + (f"; error: {make_visible(delivery['error'])}" if delivery["error"] else "")
        ))
    outbox = Table("notifier", "backlog", "sent", "oldest unsent", box=None)
    for row in state.outbox:
        outbox.add_row(
            cell(row["notifier"]), cell(row["backlog"]), cell(row["sent"]),
            "-" if row["oldest_unsent"] is None else ago(row["oldest_unsent"]),
        )
    out.print(outbox)
    for row in state.outbox:
        if row["last_error"]:
            out.print(Text(f"notifier {make_visible(row['notifier'])} last error: {make_visible(row['last_error'])}"))


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
    write_rows(columns, rows, output, sys.stdout, out)


def resolve_alert_id(store: Store, text: str) -> str:
    """Return the alert id that ``text`` is, or the one it uniquely starts.

    A narrow `alerts list` table shows ids cut short with an ellipsis.
    """
    requested = text.strip().rstrip("…")
    if store.con.execute("SELECT 1 FROM alerts WHERE alert_id = ?", [requested]).fetchone():
        return requested
    # Starts shorter than four characters match too many alerts to be useful.
    if len(requested) < 4:
        return requested
    rows = store.con.execute(
        "SELECT alert_id FROM alerts WHERE starts_with(alert_id, ?) ORDER BY alert_id LIMIT 3", [requested]
    ).fetchall()
    matches = [row[0] for row in rows]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise fail(f"alert id {requested!r} starts several alerts ({', '.join(matches)}, …); give more characters")
    return requested


@alerts_app.command("show")
def alerts_show(
    alert_id: Annotated[
        str, typer.Argument(help="The alert id, as printed by `gatewatch alerts list` and in Slack, or its unique start.")
    ],
    config: ConfigOption = Path(DEFAULT_CONFIG_NAME),
) -> None:
    """Print one alert with its evidence and the SQL that lists the events behind it."""
    with read_only_store(config) as store:
        try:
            alert_id = resolve_alert_id(store, alert_id)
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
        write_rows(["alert_id", "window_end", "severity", "summary"], members, OutputFormat.table, sys.stdout, out)
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
    write_rows(columns, rows, output, sys.stdout, out)
    failed = rule_set.errors or any(r.error for r in results)
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


@sources_app.command("test")
def sources_test(
    file: Annotated[Path, typer.Argument(help="A log file; .gz and .zst files are decompressed.")],
    format_name: Annotated[
        str | None,
        typer.Option(
            "--format", "-f",
            help="Format name to parse with; default: the format of --source, else the one `format: auto` chooses.",
        ),
    ] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, help="Number of lines to read from the start of the file.")] = 1000,
    rows: Annotated[int, typer.Option("--rows", min=0, help="Number of parsed rows and rejects to show.")] = 5,
    timezone: Annotated[
        str | None,
        typer.Option("--timezone", help="IANA zone of timestamps written without an offset; default: the source's, else UTC."),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--source", "-s", help="Take the format, options and time zone of this source in the config."),
    ] = None,
    config: ConfigOption = Path(DEFAULT_CONFIG_NAME),
) -> None:
    """Parse the first lines of FILE and show rows, rejects and per-column fill rates.

    Also ranks every format as `format: auto` does. Exit 1 when no line
    parses as an event.
    """
    from gatewatch.preview import preview_source, render_preview

    options: dict[str, Any] = {}
    if source is not None:
        settings = read_config(config)
        matches = [s for s in settings.sources if s.name == source]
        if not matches:
            names = ", ".join(repr(s.name) for s in settings.sources) or "none"
            raise fail(f"{config}: no source named {source!r}; sources in the file: {names}")
        format_name = format_name or matches[0].format
        timezone = timezone or matches[0].timezone
        options = matches[0].options
    timezone = timezone or "UTC"
    if timezone != "UTC" and timezone not in zoneinfo.available_timezones():
        raise fail(f"unknown time zone {timezone!r}; use an IANA name such as 'Europe/Berlin'")
    try:
        preview = preview_source(file, format_name, lines, options=options, timezone=timezone)
    except GatewatchError as exc:
        raise fail(exc) from None
    for renderable in render_preview(preview, rows):
        out.print(renderable)
    raise typer.Exit(EXIT_OK if preview.events.height else EXIT_FAILED)


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
