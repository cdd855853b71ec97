"""Fixtures shared by every test: a fresh SQLite path and a fresh PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest


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
