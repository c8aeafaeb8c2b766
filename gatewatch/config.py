"""gatewatch.yaml: what to read, which rules to run, where to send alerts.

The file is validated into typed models. An error names the file, the line,
the key, the bad value and what would be valid. Secrets never live in the
file: notifiers name the environment variables that hold them.
"""

from __future__ import annotations

import difflib
import zoneinfo
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from gatewatch.duration import parse_duration
from gatewatch.errors import ConfigError, GatewatchError
from gatewatch.notify import SlackNotifierConfig, TerminalNotifierConfig
from gatewatch.yamlsource import YamlDocument, load_yaml, raise_validation_error

DEFAULT_CONFIG_NAME = "gatewatch.yaml"
BUILTIN_RULES = "builtin"

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
NotifierConfig = Annotated[
    Union[TerminalNotifierConfig, SlackNotifierConfig], Field(discriminator="type")
]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(StrictModel):
    """One log source: a named set of files in one format."""

    name: str = Field(min_length=1)
    format: str
    # A file, a directory (every file in it) or a glob; several as a list.
    path: str | list[str]
    timezone: str = "UTC"
    # Connector-specific options, checked against the connector's own model.
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("path")
    @classmethod
    def _path_not_empty(cls, value: str | list[str]) -> str | list[str]:
        paths = [value] if isinstance(value, str) else value
        if not paths or any(not p.strip() for p in paths):
            raise ValueError("empty path; name a log file, a folder or a glob such as /var/log/nginx/access.log*")
        return value

    @property
    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value in zoneinfo.available_timezones() or value == "UTC":
            return value
        close = difflib.get_close_matches(value, sorted(zoneinfo.available_timezones()), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "; use an IANA name such as 'Europe/Berlin'"
        raise ValueError(f"unknown time zone{hint}")


class EngineConfig(StrictModel):
    """How rules run in event time."""

    # Windows close this long after the newest event time seen, so that
    # slightly late lines still count.
    allowed_lateness: Duration = timedelta(minutes=1)
    # A rule seen for the first time starts this far before the watermark
    # (or at the first stored event, if that is later).
    new_rule_lookback: Duration = timedelta(days=7)
    # Event rows kept with each alert as evidence.
    evidence_rows: int = Field(default=5, ge=0, le=50)
    # Alerts for window ends this far behind the watermark (after downtime
    # or when replaying old logs) are catch-up alerts. More than
    # `catch_up_max_alerts` of them per rule and run are sent as one digest.
    catch_up_after: Duration = timedelta(hours=1)
    catch_up_max_alerts: int = Field(default=5, ge=0)


class ScheduleConfig(StrictModel):
    """How often `gatewatch serve` runs a tick."""

    every: Duration = timedelta(minutes=1)


class Config(StrictModel):
    """The whole of gatewatch.yaml."""

    database: str = "gatewatch.duckdb"
    sources: list[SourceConfig] = Field(default_factory=list)
    # Rule files or directories; the word `builtin` means the shipped pack.
    rules: list[str] = Field(default_factory=lambda: [BUILTIN_RULES])
    notifiers: list[NotifierConfig] = Field(default_factory=lambda: [TerminalNotifierConfig()])
    engine: EngineConfig = Field(default_factory=EngineConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)

    # Set by load_config, not read from the file.
    config_path: str | None = Field(default=None, exclude=True)
    document: Any = Field(default=None, exclude=True)

    def resolve(self, path: str) -> Path:
        """Resolve a path from the file relative to the config file's folder."""
        candidate = Path(path).expanduser()
        if candidate.is_absolute() or self.config_path is None:
            return candidate
        return Path(self.config_path).resolve().parent / candidate

    def line_of(self, *location: str | int) -> int | None:
        if isinstance(self.document, YamlDocument):
            return self.document.line_of(location)
        return None

    def error(self, message: str, *location: str | int) -> GatewatchError:
        """Build a ConfigError that points at ``location`` in the config file."""
        return ConfigError(message, self.config_path, self.line_of(*location))


def load_config(path: str | Path) -> Config:
    """Read and validate a gatewatch.yaml; raise ConfigError with the line at fault."""
    document = load_yaml(path, ConfigError)
    data = document.data
    if data is None:
        raise ConfigError("the config file is empty; `gatewatch init` writes a commented starter", path)
    if not isinstance(data, dict):
        raise ConfigError("the config must be a YAML mapping of keys such as `sources:`", path, 1)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise_validation_error(document, exc, ConfigError, model=Config)
    config.config_path = str(path)
    config.document = document
    _check_unique_names(config)
    return config


def _check_unique_names(config: Config) -> None:
    seen: set[str] = set()
    for index, source in enumerate(config.sources):
        if source.name in seen:
            raise config.error(f"duplicate source name {source.name!r}; give each source its own name", "sources", index, "name")
        seen.add(source.name)
    seen = set()
    for index, notifier in enumerate(config.notifiers):
        if notifier.name in seen:
            raise config.error(
                f"duplicate notifier name {notifier.name!r}; set `name:` so each is unique", "notifiers", index
            )
        seen.add(notifier.name)
