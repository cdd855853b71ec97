"""Shared test helpers: fixture paths and one timeout constant every wait scales from."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TIMEOUT = 30.0  # seconds; every await in the tests is bounded by a multiple of this


def frames(name: str) -> list[bytes]:
    """The raw frames of fixture file ``name``, one per line, exactly as Binance sent them."""
    return [line.rstrip(b"\n") for line in (FIXTURES / name).read_bytes().splitlines() if line]


def payloads(name: str) -> list[dict[str, Any]]:
    """The ``data`` objects of the combined-stream frames in fixture ``name``."""
    return [json.loads(f)["data"] for f in frames(name)]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh SQLite path in a temporary directory."""
    return tmp_path / "test.db"


SERVER = "postgresql://postgres@127.0.0.1:5432/test"  # the machine's PostgreSQL, trust auth


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty database on the machine's PostgreSQL server, dropped afterwards."""
    name = f"bs_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(SERVER, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
