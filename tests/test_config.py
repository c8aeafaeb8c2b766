"""Config validation: every error names the file, line, key, value and fix."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gatewatch.config import load_config
from gatewatch.errors import ConfigError

BASE = """\
database: store.duckdb
sources:
  - name: edge
    format: combined
    path: logs/access.log*
engine:
  allowed_lateness: 2m
"""


def config_error(tmp_path, text: str) -> str:
    path = tmp_path / "gatewatch.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


def test_config_valid_loads(tmp_path):
    path = tmp_path / "gatewatch.yaml"
    path.write_text(BASE)
    config = load_config(path)
    assert config.sources[0].name == "edge"
    assert config.engine.allowed_lateness == timedelta(minutes=2)
    assert config.resolve(config.database) == tmp_path / "store.duckdb"


def test_config_malformed_yaml_names_line(tmp_path):
    message = config_error(tmp_path, BASE + "notifiers: [\n")
    assert message.startswith(f"{tmp_path / 'gatewatch.yaml'}:")
    assert "invalid YAML" in message


def test_config_bad_duration_names_key_and_value(tmp_path):
    message = config_error(tmp_path, BASE.replace("2m", "2 minutes"))
    assert message.startswith(f"{tmp_path / 'gatewatch.yaml'}:7:")
    assert "'2 minutes'" in message
    assert "engine.allowed_lateness" in message


def test_config_unknown_key_suggests_name(tmp_path):
    message = config_error(tmp_path, BASE.replace("    path:", "    pth:"))
    assert ":5:" in message
    assert "did you mean 'path'?" in message


def test_config_unknown_timezone_suggests_name(tmp_path):
    message = config_error(tmp_path, BASE.replace("    path:", "    timezone: Europe/Berln\n    path:"))
    assert ":5:" in message
    assert "Europe/Berlin" in message


def test_config_missing_required_key(tmp_path):
    message = config_error(tmp_path, BASE.replace("    format: combined\n", ""))
    assert "missing required key 'sources.0.format'" in message
    assert ":3:" in message


def test_config_duplicate_source_name(tmp_path):
    extra = "  - name: edge\n    format: combined\n    path: x.log\n"
    message = config_error(tmp_path, BASE.replace("engine:", extra + "engine:"))
    assert "duplicate source name 'edge'" in message


def test_config_unknown_notifier_type(tmp_path):
    message = config_error(tmp_path, BASE + "notifiers:\n  - type: pager\n")
    assert ":9:" in message
    assert "pager" in message


def test_config_secret_not_in_file(tmp_path):
    message = config_error(tmp_path, BASE + "notifiers:\n  - type: slack\n    token: xoxb-secret\n    channel: '#x'\n")
    assert "unknown key 'notifiers.0.token'" in message


def test_config_duplicate_key_named(tmp_path):
    message = config_error(tmp_path, BASE + "database: other.duckdb\n")
    assert ":8:" in message
    assert "duplicate key 'database'" in message


def test_config_empty_file(tmp_path):
    message = config_error(tmp_path, "")
    assert "the config file is empty" in message


def test_config_empty_path(tmp_path):
    message = config_error(tmp_path, BASE.replace("logs/access.log*", '""'))
    assert ":5:" in message
    assert "empty path" in message


def test_config_notifier_type_did_you_mean(tmp_path):
    message = config_error(tmp_path, BASE + "notifiers:\n  - type: slak\n    channel: '#x'\n")
    assert "unknown type 'slak' at 'notifiers.0'; did you mean 'slack'?" in message
    assert "Input tag" not in message


def test_config_notifier_key_did_you_mean(tmp_path):
    message = config_error(tmp_path, BASE + "notifiers:\n  - type: slack\n    chanel: '#x'\n")
    assert ":10:" in message
    assert "unknown key 'notifiers.0.chanel'; did you mean 'channel'?" in message


def test_config_validator_message_plain(tmp_path):
    notifier = "notifiers:\n  - type: slack\n    channel: '#x'\n    token_env: T\n    webhook_url_env: W\n"
    message = config_error(tmp_path, BASE + notifier)
    assert ":9:" in message
    assert "invalid 'notifiers.0': set either token_env" in message
    assert "Value error" not in message


def test_config_valid_keys_hide_internal_fields(tmp_path):
    message = config_error(tmp_path, BASE + "zzz: 1\n")
    assert "valid keys here:" in message
    assert "config_path" not in message
    assert "document" not in message


@pytest.mark.parametrize("tagged", ['!!python/object/apply:os.system ["true"]', "!!binary aGVsbG8="])
def test_config_yaml_tags_rejected(tmp_path, tagged):
    message = config_error(tmp_path, BASE.replace("database: store.duckdb", f"database: {tagged}"))
    assert ":1:" in message
    assert "write plain values without `!!` tags" in message
