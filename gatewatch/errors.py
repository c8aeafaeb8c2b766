"""The one error base class of gatewatch, carrying the file and line at fault."""

from __future__ import annotations

from pathlib import Path


class GatewatchError(Exception):
    """An error a user can fix: bad config, bad rule, missing file.

    ``path`` and ``line`` point at the input at fault when there is one, so
    the message reads ``file:line: what is wrong; how to fix it``.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"


class ConfigError(GatewatchError):
    """gatewatch.yaml is invalid."""


class RuleError(GatewatchError):
    """A rule file is invalid or its SQL does not pass the checks.

    ``column`` (1-based) points into the line when the fault is inside an
    SQL expression, so editors can jump to ``file:line:column``.
    """

    def __init__(
        self, message: str, path: str | Path | None = None, line: int | None = None, column: int | None = None
    ):
        super().__init__(message, path, line)
        self.column = column

    def __str__(self) -> str:
        if self.path is not None and self.line is not None and self.column is not None:
            return f"{self.path}:{self.line}:{self.column}: {self.message}"
        return super().__str__()


class SourceError(GatewatchError):
    """A log source cannot be read."""


class StoreError(GatewatchError):
    """The DuckDB store cannot be opened or migrated."""
