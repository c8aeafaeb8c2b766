"""gatewatch.yaml: what to read, which rules to run, where to send alerts.

The file is validated into typed models. An error names the file, the line,
the key, the bad value and what would be valid. Secrets never live in the
file: notifiers name the environment variables that hold them.
"""

from __future__ import annotations

import difflib
import os
import zoneinfo
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from gatewatch.duration import parse_duration
from gatewatch.errors import ConfigError, GatewatchError
from gatewatch.notify import NotifierConfig, TerminalNotifierConfig
from gatewatch.yamlsource import YamlDocument, load_yaml, raise_validation_error

DEFAULT_CONFIG_NAME = "gatewatch.yaml"
BUILTIN_RULES = "builtin"

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


S3_SCHEME = "s3://"


class S3Options(StrictModel):
    """How to reach the S3 bucket of a source whose path is ``s3://bucket/prefix/``.

    Credentials come from the standard AWS chain: environment variables,
    the shared credentials and config files, then instance or container roles.
    """

    # AWS region of the bucket; unset: the region of the AWS profile or environment.
    region: str | None = None
    # An S3-compatible endpoint such as MinIO, e.g. http://127.0.0.1:9000; unset: AWS.
    endpoint_url: str | None = None
    # A profile of the shared AWS config files; unset: AWS_PROFILE or the default chain.
    profile: str | None = None
    # `path` for servers that do not serve bucket names as host names (most MinIO setups).
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # List only keys after this one, to skip history older than the first run.
    start_after: str | None = None
    # Stop listing a leaf folder (a key prefix ending in `/` without
    # subfolders) once every object in it is read and its newest object is
    # this old. Unset: every run lists every key under the prefix.
    settled_after: Duration | None = None

    @field_validator("endpoint_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("endpoint_url must start with http:// or https://, such as http://127.0.0.1:9000")
        return value


class SourceConfig(StrictModel):
    """One log source: a named set of files or S3 objects in one format."""

    name: str = Field(min_length=1)
    # A connector name, or `auto` to choose one per file from its first lines.
    format: str
    # A file, a directory (every file in it), a glob or an s3://bucket/prefix/; several as a list.
    path: str | list[str]
    timezone: str = "UTC"
    # Connector-specific options, checked against the connector's own model.
    options: dict[str, Any] = Field(default_factory=dict)
    # Connection settings of an S3 source; optional, because the defaults use the AWS chain.
    s3: S3Options | None = None
    # How far behind the newest event of any source this source's events may
    # arrive, such as logs delivered in batches; default `engine.allowed_lateness`.
    allowed_lateness: Duration | None = None

    @model_validator(mode="after")
    def _s3_paths_consistent(self) -> SourceConfig:
        remote = [p.startswith(S3_SCHEME) for p in self.paths]
        if any(remote) and not all(remote):
            raise ValueError("a source reads either files or s3:// prefixes, not both; split it into two sources")
        if self.s3 is not None and not any(remote):
            raise ValueError("`s3:` options need a path of the form s3://bucket/prefix/")
        for path in self.paths:
            if path.startswith(S3_SCHEME) and not path[len(S3_SCHEME) :].split("/", 1)[0]:
                raise ValueError(f"{path!r} names no bucket; write s3://bucket/prefix/")
        return self

    @property
    def is_s3(self) -> bool:
        return self.paths[0].startswith(S3_SCHEME)

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
    """Settings of rule evaluation in event time."""

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
    """How often `gatewatch serve` runs each step."""

    # Interval of the ingest step of each source, unless `sources` sets one.
    # Rules are evaluated every rule's own `every`.
    every: Duration = timedelta(minutes=1)
    # Ingest interval per source name, overriding `every`.
    sources: dict[str, Duration] = Field(default_factory=dict)
    # Interval of the delivery step; delivery also runs right after an
    # evaluation that raised alerts.
    deliver_every: Duration = timedelta(seconds=10)
    # How long a step waits for `gatewatch query` or `gatewatch shell` to
    # release the database before it skips this run.
    database_wait: Duration = timedelta(seconds=30)

    def ingest_interval(self, source: str) -> timedelta:
        return self.sources.get(source, self.every)


class RetentionConfig(StrictModel):
    """How long events and rejects stay in the store."""

    # Events older than this (event time) are deleted, except those a rule
    # window not yet evaluated still needs. Unset: events are kept.
    events: Duration | None = None
    # Rejected lines older than this (ingest time) are deleted.
    rejects: Duration | None = None
    # Folder where events are written as Parquet, partitioned by date,
    # before they are deleted.
    export_dir: str | None = None
    # How often `gatewatch serve` runs retention; `run --once` runs it every tick.
    every: Duration = timedelta(hours=1)

    @property
    def enabled(self) -> bool:
        return self.events is not None or self.rejects is not None


class Config(StrictModel):
    """The whole of gatewatch.yaml."""

    database: str = "gatewatch.duckdb"
    sources: list[SourceConfig] = Field(default_factory=list)
    # Rule files or directories; the word `builtin` means the shipped pack.
    rules: list[str] = Field(default_factory=lambda: [BUILTIN_RULES])
    notifiers: list[NotifierConfig] = Field(default_factory=lambda: [TerminalNotifierConfig()])
    engine: EngineConfig = Field(default_factory=EngineConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    # Environment variable holding the HMAC key of credential fingerprints.
    # Unset: each database makes and keeps its own random key.
    fingerprint_key_env: str | None = None
    retention: RetentionConfig = Field(default_factory=RetentionConfig)

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

    def fingerprint_key(self, store_key: Callable[[], bytes]) -> bytes:
        """Return the key named by ``fingerprint_key_env``, or the store's own key."""
        if self.fingerprint_key_env is None:
            return store_key()
        value = os.environ.get(self.fingerprint_key_env, "")
        if not value:
            raise self.error(
                f"environment variable {self.fingerprint_key_env} is not set or empty; set it to a long "
                "random string, or remove fingerprint_key_env to let the database keep its own key",
                "fingerprint_key_env",
            )
        return value.encode("utf-8")

    @property
    def lateness(self) -> timedelta:
        """Return how long windows stay open after the newest event: the largest lateness of any source."""
        overrides = [source.allowed_lateness for source in self.sources if source.allowed_lateness is not None]
        return max([self.engine.allowed_lateness, *overrides])

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
    _check_schedule_sources(config)
    return config


def _check_schedule_sources(config: Config) -> None:
    names = [source.name for source in config.sources]
    for name in config.schedule.sources:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; the sources are: {', '.join(names) or 'none'}"
            raise config.error(f"`schedule.sources` names unknown source {name!r}{hint}", "schedule", "sources", name)


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
