"""The rule model: what a YAML rule file may say."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from gatewatch.duration import parse_duration

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
SEVERITIES = ("low", "medium", "high", "critical")
RULE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class RuleTest(BaseModel):
    """An inline test: log lines in, the expected alert groups out."""

    model_config = ConfigDict(extra="forbid")

    name: str
    # Log lines in the given format, one per line.
    lines: str | None = None
    # Or a log file, relative to the rule file.
    file: str | None = None
    format: str = "combined"
    # Each item names the group-by values (and optionally measures) of one
    # expected alert; an empty list expects no alert.
    expect: list[dict[str, Any]]

    @model_validator(mode="after")
    def _one_input(self) -> RuleTest:
        if (self.lines is None) == (self.file is None):
            raise ValueError("give exactly one of `lines` (inline log lines) or `file` (a log file)")
        return self


class Rule(BaseModel):
    """One detection rule, as written in YAML."""

    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    severity: Literal["low", "medium", "high", "critical"]
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    type: Literal["match", "aggregate"]
    enabled: bool = True
    # SQL boolean expression over event columns; which events count.
    where: str | None = None
    group_by: list[str] = Field(default_factory=lambda: ["client_ip"])
    # Aggregate rules: the window length and how often it is evaluated.
    window: Duration | None = None
    every: Duration = timedelta(minutes=1)
    # Aggregate rules: SQL boolean expression over aggregates.
    having: str | None = None
    # Named aggregate expressions, shown in the alert and the summary.
    measures: dict[str, str] = Field(default_factory=dict)
    # No second alert for the same group key within this event-time span.
    suppress: Duration = timedelta(hours=1)
    summary: str | None = None
    tests: list[RuleTest] = Field(default_factory=list)

    # Where the rule was read from; set by the loader.
    path: str = Field(default="", exclude=True)
    line: int | None = Field(default=None, exclude=True)
    document: Any = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _check_shape(self) -> Rule:
        if not RULE_ID.match(self.id):
            raise ValueError(
                f"invalid rule id {self.id!r}: use lower-case letters, digits, '-', '_' and '.'"
            )
        if self.type == "aggregate":
            if self.window is None:
                raise ValueError("an aggregate rule needs `window:`, such as `window: 5m`")
            if self.having is None:
                raise ValueError("an aggregate rule needs `having:`, such as `having: count(*) >= 100`")
            if self.window < self.every:
                raise ValueError(
                    f"`window` ({self.window}) is shorter than `every` ({self.every}), so events between "
                    "windows would never count; make `window` at least as long as `every`"
                )
        if self.type == "match":
            if self.having is not None:
                raise ValueError("a match rule takes no `having:`; use `type: aggregate` to count events")
            if self.window is not None:
                raise ValueError("a match rule takes no `window:`; it groups events per `every:`")
        if not self.group_by:
            raise ValueError("`group_by` needs at least one column, such as [client_ip]")
        return self

    @property
    def window_length(self) -> timedelta:
        """The evaluated window: `window` for aggregates, `every` for matches."""
        return self.window if self.window is not None else self.every

    def line_of(self, *location: str | int) -> int | None:
        if self.document is None:
            return self.line
        return self.document.line_of(location) or self.line

    @property
    def base_dir(self) -> Path:
        return Path(self.path).parent
