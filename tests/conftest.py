"""Fixtures shared by the test modules: real DuckDB files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatewatch.store import Store


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "test.duckdb") as opened:
        yield opened
