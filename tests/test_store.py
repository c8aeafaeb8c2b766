"""Tests of the store's schema versions and migrations."""

from __future__ import annotations

import duckdb
import pytest

from gatewatch.errors import StoreError
from gatewatch.store import MIGRATIONS, SCHEMA_VERSION, Store


def _stamp_version(path, version: int) -> None:
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_version VALUES (?, now())", [version])
    con.close()


def test_store_new_file_at_current_version(tmp_path):
    with Store(tmp_path / "gw.duckdb") as store:
        assert store.schema_version() == SCHEMA_VERSION


@pytest.mark.parametrize("read_only", [False, True])
def test_store_newer_schema_says_upgrade(tmp_path, read_only):
    path = tmp_path / "gw.duckdb"
    Store(path).close()
    _stamp_version(path, SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="newer than this gatewatch supports") as caught:
        Store(path, read_only=read_only)
    assert "upgrade gatewatch" in str(caught.value)
    assert "migrate" not in str(caught.value)


def test_store_older_schema_migrates_on_write(tmp_path):
    path = tmp_path / "gw.duckdb"
    # A store written by the first release: only migration 1 applied.
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)")
    for statement in MIGRATIONS[0]:
        con.execute(statement)
    con.execute("INSERT INTO schema_version VALUES (1, now())")
    con.close()
    with pytest.raises(StoreError, match="run any write command"):
        Store(path, read_only=True)
    with Store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert len(store.fingerprint_key()) == 32
        assert store.con.execute("SELECT count(*) FROM s3_objects").fetchone()[0] == 0
