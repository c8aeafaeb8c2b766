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
# Rule types with a section of their own, named like the type.
TYPE_SECTIONS = ("baseline", "new_value", "sequence", "flatline")


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


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaselineSpec(_Spec):
    """Settings of a `baseline` rule: the measure, its history and the tests against it."""

    # Aggregate SQL expression measured per window and group.
    measure: str = "count(*)"
    # `previous`: the `periods` windows just before; `same_hour`: the window
    # ending at the same time of day on each of the `periods` previous days.
    compare: Literal["previous", "same_hour"] = "previous"
    periods: int = Field(default=24, ge=1, le=1000)
    # Earlier windows with data needed before the rule may fire.
    min_history: int = Field(default=3, ge=0)
    # `skip`: an earlier window in which the group had no event is not part
    # of the history. `zero`: it counts as a measure of 0, for rare events
    # (5xx responses) that are absent from most windows.
    missing: Literal["skip", "zero"] = "skip"
    # Fire when (value - mean) / stddev reaches this many standard deviations.
    zscore: float | None = Field(default=None, gt=0)
    # Fire when value / mean reaches this factor (or falls below 1/factor
    # with `direction: down`).
    ratio: float | None = Field(default=None, gt=1)
    # The measure must also reach this value, so tiny groups stay quiet.
    min_value: float = 0
    # Floor for the standard deviation, so a perfectly steady history does
    # not turn any small change into an infinite z-score.
    min_stddev: float = Field(default=1.0, gt=0)
    direction: Literal["up", "down"] = "up"

    @model_validator(mode="after")
    def _one_test(self) -> BaselineSpec:
        if self.zscore is None and self.ratio is None:
            raise ValueError("a baseline needs `zscore:` or `ratio:` (or both), such as `zscore: 4`")
        if self.min_history > self.periods:
            raise ValueError(
                f"`min_history` ({self.min_history}) exceeds `periods` ({self.periods}), so the rule could never fire"
            )
        return self


class NewValueSpec(_Spec):
    """Settings of a `new_value` rule: the tracked columns and the history span."""

    # Event columns, or a mapping of names to SQL expressions over event
    # columns (such as the endpoint with ids replaced).
    fields: list[str] | dict[str, str] = Field(min_length=1)
    # A value not seen for this long counts as new again.
    history: Duration = timedelta(days=30)
    # A group must have been seen this long before its new values alert, so
    # a brand-new token or user does not alert on its first values.
    learning: Duration = timedelta(hours=1)


class SequenceStep(_Spec):
    name: str
    where: str
    # Events of this step needed before the next step counts.
    min_count: int = Field(default=1, ge=1)


class SequenceSpec(_Spec):
    """Ordered steps by the same group within a time limit."""

    within: Duration
    steps: list[SequenceStep] = Field(min_length=2)


class FlatlineSpec(_Spec):
    """Settings of a `flatline` rule: the silence that raises an alert."""

    quiet: Duration


class EscalateSpec(_Spec):
    """Raise the severity of a group that keeps firing."""

    # Count of alerts of the same (rule, group) within `within`, this one
    # included, at which the severity rises one level (again at each multiple).
    after: int = Field(default=3, ge=2)
    within: Duration = timedelta(days=1)


class Rule(BaseModel):
    """One detection rule, as written in YAML."""

    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    severity: Literal["low", "medium", "high", "critical"]
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    type: Literal["match", "aggregate", "baseline", "new_value", "sequence", "flatline", "sql"]
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
    # Names of lists (see docs/rules.md) whose events the rule ignores.
    allowlist: list[str] = Field(default_factory=list)
    escalate: EscalateSpec = Field(default_factory=EscalateSpec)
    # Type-specific settings; each is allowed only with its own type.
    baseline: BaselineSpec | None = None
    new_value: NewValueSpec | None = None
    sequence: SequenceSpec | None = None
    flatline: FlatlineSpec | None = None
    # `sql` rules: one SELECT over `events` returning `window_end`, the
    # `group_by` columns and the measures.
    query: str | None = None
    tests: list[RuleTest] = Field(default_factory=list)

    # Where the rule was read from; set by the loader.
    path: str = Field(default="", exclude=True)
    line: int | None = Field(default=None, exclude=True)
    document: Any = Field(default=None, exclude=True)
    # SQL condition that leaves out the allowlisted events, and the match
    # condition of every defined list for `in_list('name')`; set by the loader.
    exclusion_sql: str = Field(default="TRUE", exclude=True)
    list_conditions: dict[str, str] = Field(default_factory=dict, exclude=True)
    # Enrichment files the evaluator loads into `networks` before this rule.
    network_files: list[str] = Field(default_factory=list, exclude=True)

    @model_validator(mode="after")
    def _check_shape(self) -> Rule:
        if not RULE_ID.match(self.id):
            raise ValueError(
                f"invalid rule id {self.id!r}: use lower-case letters, digits, '-', '_' and '.'"
            )
        for key in TYPE_SECTIONS:
            if getattr(self, key) is not None and self.type != key:
                raise ValueError(f"`{key}:` is allowed only with `type: {key}`, not with `type: {self.type}`")
        if self.type in TYPE_SECTIONS and getattr(self, self.type) is None:
            raise ValueError(f"a {self.type} rule needs a `{self.type}:` section; see docs/rules.md")
        if self.type in ("baseline", "new_value", "sequence", "flatline", "sql"):
            self._check_stateful_shape()
            return self
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

    def _check_stateful_shape(self) -> None:
        if self.having is not None:
            raise ValueError(f"a {self.type} rule takes no `having:`; see docs/rules.md for its keys")
        if self.type == "sql" and self.where is not None:
            raise ValueError("a sql rule takes no `where:`; put the condition inside `query:`")
        if self.type in ("baseline", "sql"):
            if self.window is None:
                raise ValueError(f"a {self.type} rule needs `window:`, such as `window: 1h`")
            if self.window < self.every:
                raise ValueError(
                    f"`window` ({self.window}) is shorter than `every` ({self.every}); "
                    "make `window` at least as long as `every`"
                )
        elif self.window is not None:
            raise ValueError(f"a {self.type} rule takes no `window:`; see docs/rules.md for its time keys")
        if self.type == "baseline" and self.window % self.every:
            raise ValueError(
                f"`window` ({self.window}) must be a whole multiple of `every` ({self.every}), "
                "so that earlier windows lie on the evaluation grid"
            )
        if not self.group_by and self.type not in ("baseline", "sql"):
            raise ValueError("`group_by` needs at least one column, such as [client_ip]")

    @property
    def window_length(self) -> timedelta:
        """The span of events one window end reads.

        `window` for aggregates, baselines and sql rules, `every` for match
        and new_value rules, `within + every` for sequences (the last step
        lies in the latest `every`) and `quiet + every` for flatlines.
        """
        if self.sequence is not None:
            return self.sequence.within + self.every
        if self.flatline is not None:
            return self.flatline.quiet + self.every
        return self.window if self.window is not None else self.every

    def line_of(self, *location: str | int) -> int | None:
        if self.document is None:
            return self.line
        return self.document.line_of(location) or self.line

    @property
    def base_dir(self) -> Path:
        return Path(self.path).parent
