"""`gatewatch shell`: an interactive, read-only SQL prompt with history.

Each statement opens its own read-only connection and closes it when the
result is printed, so `gatewatch serve` is never kept from writing for
longer than one statement. A statement ends with ``;``, and every statement
of a line runs and prints its result in order. Lines that start with ``.``
are shell commands (``.help`` lists them).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TextIO

import duckdb
from rich.console import Console
from rich.text import Text

from gatewatch.errors import GatewatchError
from gatewatch.locking import DatabaseBusy
from gatewatch.output import QueryFormat, write_rows
from gatewatch.query import VIEWS, describe_failure, read_only_connection, split_statements

HISTORY_LENGTH = 1000

HELP = """\
End each SQL statement with ';'. Tables: events, rejects, alerts, outbox, step_state.
  .views                  list the built-in views
  .tables                 list tables and views
  .format table|csv|json  set the output format (now: {format})
  .help                   show this help
  .quit                   leave the shell (or Ctrl-D)"""


def history_path() -> Path:
    """Return the history file: ``$XDG_STATE_HOME/gatewatch/history`` (default ~/.local/state)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "gatewatch" / "history"


class QueryShell:
    """The read loop of `gatewatch shell`."""

    def __init__(self, database: Path, wait: timedelta, console: Console, errors: Console, stream: TextIO = sys.stdout):
        self.database = database
        self.wait = wait
        self.console = console
        self.errors = errors
        self.stream = stream
        self.format = QueryFormat.table
        # True once a statement or command printed an error.
        self.failed = False

    def run(self, read_line: Callable[[str], str] | None = None, interactive: bool | None = None) -> bool:
        """Read statements until end of input or ``.quit``.

        Returns True when the input was not interactive and a statement or
        command failed, so that a script piped into the shell can exit non-zero.
        """
        if interactive is None:
            interactive = sys.stdin.isatty()
        if read_line is None:
            read_line = input if interactive else _read_stdin_line
        if interactive:
            _load_history()
            self.console.print(Text(f"gatewatch shell on {self.database} (read-only); .help for help"))
        pending: list[str] = []
        try:
            while True:
                prompt = "...> " if pending else "gatewatch> "
                try:
                    line = read_line(prompt if interactive else "")
                except EOFError:
                    break
                except KeyboardInterrupt:
                    # Ctrl-C drops the statement being typed, as in most SQL shells.
                    pending = []
                    self.console.print()
                    continue
                stripped = line.strip()
                if not pending and stripped.startswith("."):
                    if not self.command(stripped):
                        break
                    continue
                if stripped:
                    pending.append(line)
                if stripped.endswith(";"):
                    self.execute("\n".join(pending))
                    pending = []
            if pending:
                self.execute("\n".join(pending))
        finally:
            if interactive:
                _save_history()
        return self.failed and not interactive

    def command(self, line: str) -> bool:
        """Run one dot command; return False when the shell should end."""
        name, _, argument = line.partition(" ")
        argument = argument.strip()
        if name in (".quit", ".exit"):
            return False
        if name == ".help":
            self.console.print(Text(HELP.format(format=self.format.value)))
        elif name == ".views":
            for view in VIEWS:
                self.console.print(Text(f"{view.name}: {view.description}"))
        elif name == ".tables":
            self.execute(
                "SELECT table_name AS name, lower(table_type) AS type FROM information_schema.tables "
                "ORDER BY table_type, table_name"
            )
        elif name == ".format":
            choices = [f.value for f in QueryFormat if f is not QueryFormat.parquet]
            if argument not in choices:
                self.fail(f"unknown format {argument!r}; use one of {', '.join(choices)}")
            else:
                self.format = QueryFormat(argument)
        else:
            self.fail(f"unknown command {name!r}; .help lists the commands")
        return True

    def execute(self, sql: str) -> None:
        """Run each statement of ``sql`` in order and print its rows, or one error line.

        A failed statement does not stop the statements after it.
        """
        for statement in split_statements(sql):
            self.execute_one(statement)

    def execute_one(self, sql: str) -> None:
        """Run one statement and print its rows, or one error line."""
        try:
            with read_only_connection(self.database, self.wait) as con:
                cursor = con.execute(sql)
                columns = [d[0] for d in cursor.description] if cursor.description else []
                rows = cursor.fetchall() if columns else []
        except DatabaseBusy as exc:
            self.fail(f"{exc}; run the statement again")
            return
        except GatewatchError as exc:
            self.fail(str(exc))
            return
        except duckdb.Error as exc:
            self.fail(describe_failure(exc))
            return
        if columns:
            write_rows(columns, rows, self.format, self.stream, self.console)

    def fail(self, message: str) -> None:
        """Print one error line and remember that something failed."""
        self.failed = True
        self.errors.print(Text(f"error: {message}"))


def _read_stdin_line(_prompt: str) -> str:
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


def _load_history() -> None:
    try:
        import readline
    except ImportError:  # not on every platform; the shell works without history
        return
    readline.set_history_length(HISTORY_LENGTH)
    try:
        readline.read_history_file(history_path())
    except OSError:
        pass  # no history yet


def _save_history() -> None:
    try:
        import readline
    except ImportError:
        return
    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        readline.write_history_file(path)
    except OSError:
        pass  # a read-only home must not turn leaving the shell into an error
