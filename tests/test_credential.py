"""Tests of credential fingerprints and of the store's fingerprint key."""

from __future__ import annotations

import base64

import polars as pl
import pytest

from gatewatch.config import Config
from gatewatch.connectors._credential import fingerprint_values, split_authorization
from gatewatch.errors import ConfigError
from gatewatch.store import Store


def test_fingerprint_same_value_same_id():
    values = pl.Series("token", ["tok-a", "tok-b", "tok-a", None, ""])
    ids = fingerprint_values(values, b"key-1").to_list()
    assert ids[0] == ids[2]
    assert ids[0] != ids[1]
    assert ids[3] is None
    assert ids[4] is None
    assert len(ids[0]) == 24


def test_fingerprint_depends_on_key():
    values = pl.Series("token", ["tok-a"])
    assert fingerprint_values(values, b"key-1")[0] != fingerprint_values(values, b"key-2")[0]


def test_fingerprint_never_contains_value():
    values = pl.Series("token", ["sk_live_0123456789abcdef"])
    fingerprint = fingerprint_values(values, b"")[0]
    assert "0123456789" not in fingerprint


def test_authorization_bearer_and_basic():
    basic = "Basic " + base64.b64encode(b"alice:secret").decode()
    frame = pl.DataFrame({"header": ["Bearer abc.def", basic, "Basic %%%", "nonsense", None]})
    parts = frame.select(**split_authorization(pl.col("header"))).to_dicts()
    assert parts[0] == {"_auth_credential": "abc.def", "_auth_user": None}
    assert parts[1]["_auth_user"] == "alice"
    assert parts[1]["_auth_credential"] == base64.b64encode(b"alice:secret").decode()
    assert parts[2]["_auth_user"] is None
    assert parts[3] == {"_auth_credential": None, "_auth_user": None}
    assert parts[4] == {"_auth_credential": None, "_auth_user": None}


def test_store_fingerprint_key_persists(tmp_path):
    path = tmp_path / "gatewatch.duckdb"
    with Store(path) as store:
        first = store.fingerprint_key()
        assert len(first) == 32
        assert store.fingerprint_key() == first
    with Store(path) as store:
        assert store.fingerprint_key() == first
    with Store(tmp_path / "other.duckdb") as store:
        assert store.fingerprint_key() != first


def test_config_fingerprint_key_from_environment(monkeypatch):
    monkeypatch.setenv("GW_TEST_KEY", "a long random string")
    config = Config(fingerprint_key_env="GW_TEST_KEY")
    assert config.fingerprint_key(lambda: b"store") == b"a long random string"
    assert Config().fingerprint_key(lambda: b"store") == b"store"


def test_config_fingerprint_key_unset_variable(monkeypatch):
    monkeypatch.delenv("GW_TEST_KEY", raising=False)
    config = Config(fingerprint_key_env="GW_TEST_KEY")
    with pytest.raises(ConfigError, match="GW_TEST_KEY is not set"):
        config.fingerprint_key(lambda: b"store")
