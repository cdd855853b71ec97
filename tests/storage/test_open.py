"""Opening a database for recording: what is refused, how, and the one-recorder-per-file lock."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from binance_streamer.errors import (
    ConfigError,
    DatabaseInUse,
    InvalidDatabase,
    MissingExtra,
)
from binance_streamer.storage.open import open_sink
from binance_streamer.storage.postgres import PostgresSink
from binance_streamer.storage.sqlite import SqliteSink
from tests.helpers import TIMEOUT, batch_of
from tests.storage.helpers import SRC, outcome, unprivileged


def test_a_postgresql_url_opens_postgres(pg_url: str) -> None:
    """postgresql:// and postgres:// URLs open a PostgresSink."""
    for url in (pg_url, pg_url.replace("postgresql://", "postgres://", 1)):
        sink = open_sink(url)
        assert isinstance(sink, PostgresSink)
        sink.close()


def test_postgres_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without psycopg installed, a postgresql:// database raises MissingExtra('postgres')."""
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now fails
    with pytest.raises(MissingExtra, match=r"binance-streamer\[postgres\]") as raised:
        open_sink("postgresql://u@h/db")
    assert raised.value.extra == "postgres" and isinstance(raised.value, ConfigError)


@pytest.mark.parametrize("url", ["mysql://u:secret@h/db", "sqlite://x.db", "file:///tmp/x.db"])
def test_other_url_schemes_are_invalid_and_create_nothing(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any other scheme:// is InvalidDatabase naming it, and no file or folder appears."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidDatabase, match="use a SQLite file path or a postgresql:// URL"
                       ) as raised:
        open_sink(url)
    assert url.split("://")[0] + "://" in str(raised.value)
    assert "secret" not in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_is_not_created(tmp_path: Path) -> None:
    """A path in a folder that does not exist is InvalidDatabase; the folder is not created."""
    with pytest.raises(InvalidDatabase, match=r"folder .*no/such/dir does not exist; create it"):
        open_sink(tmp_path / "no" / "such" / "dir" / "x.db")
    assert not (tmp_path / "no").exists()


def test_a_folder_is_not_a_database(tmp_path: Path) -> None:
    """A path naming a folder is InvalidDatabase."""
    with pytest.raises(InvalidDatabase, match="is a folder"):
        open_sink(tmp_path)


def test_a_text_file_is_not_a_database(tmp_path: Path) -> None:
    """An existing file that is not SQLite is InvalidDatabase and stays as it was."""
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\n")
    with pytest.raises(InvalidDatabase, match=r"notes\.txt is not a SQLite database"):
        open_sink(notes)
    assert notes.read_text() == "shopping list\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_another_programs_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    """A SQLite file with tables but none of ours is InvalidDatabase listing them, unchanged."""
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.executescript("CREATE TABLE b (x); CREATE TABLE a (y);")
    conn.close()
    before = other.read_bytes()
    with pytest.raises(InvalidDatabase, match=r"another program \(tables: a, b\); choose another"):
        open_sink(other)
    assert other.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_an_empty_file_is_recorded_into(tmp_path: Path) -> None:
    """A 0-byte file becomes a database and stores a batch."""
    empty = tmp_path / "empty.db"
    empty.touch()
    sink = open_sink(empty)
    assert sink.write(batch_of("binance_spot_trade.singletons.jsonl")).stored == {"trade": 1}
    sink.close()
    assert sqlite3.connect(empty).execute("SELECT COUNT(*) FROM trade").fetchone() == (1,)


@pytest.mark.parametrize("name", ["a#b.db", "q?x=1.db", "100%.db", "%23#?%3F.db"])
def test_odd_characters_in_paths_work_without_stray_files(tmp_path: Path, name: str) -> None:
    """Paths with '#', '?' or '%' are stored exactly where named; nothing else is left behind."""
    sink = open_sink(tmp_path / name)
    sink.write(batch_of("binance_spot_trade.singletons.jsonl"))
    sink.close()
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert sqlite3.connect(tmp_path / name).execute("SELECT COUNT(*) FROM trade").fetchone() == (1,)


def test_a_read_only_file_is_fatal_at_open(tmp_path: Path) -> None:
    """Recording into a read-only file is StorageFatal at open, saying to check permissions."""
    db = tmp_path / "ro.db"
    SqliteSink(db).close()
    db.chmod(0o444)
    out = unprivileged("from binance_streamer.storage.open import open_sink\n"
                       + outcome(f"open_sink({str(db)!r}).close()"))
    assert out.startswith("StorageFatal: cannot write ")
    assert "read-only" in out and out.endswith("check its permissions")


@pytest.mark.parametrize("existing", [True, False])
def test_a_read_only_folder_is_fatal_at_open(tmp_path: Path, existing: bool) -> None:
    """Recording into a read-only folder (new or existing file) is StorageFatal at open."""
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "x.db"
    if existing:
        SqliteSink(db).close()
    folder.chmod(0o555)
    try:
        out = unprivileged("from binance_streamer.storage.open import open_sink\n"
                           + outcome(f"open_sink({str(db)!r}).close()"))
    finally:
        folder.chmod(0o755)
    assert out.startswith("StorageFatal: cannot write ")
    assert "is read-only" in out and out.endswith("check its permissions")
    assert [p.name for p in folder.iterdir()] == (["x.db"] if existing else [])


def test_a_second_recorder_on_the_same_file_is_refused(db_path: Path) -> None:
    """While one SqliteSink records, a second raises DatabaseInUse; after close it opens."""
    first = SqliteSink(db_path)
    with pytest.raises(DatabaseInUse, match=rf"recording into .*test.db \(pid {os.getpid()}\); "
                                            "stop it or choose another --db"):
        SqliteSink(db_path)
    first.write(batch_of("binance_spot_trade.singletons.jsonl"))  # the first is unharmed
    first.close()
    second = SqliteSink(db_path)
    assert second.last_ids(["btcusdt@trade"]) != {}
    second.close()
    assert not Path(f"{db_path}-recorder.lock").exists()


def test_the_lock_dies_with_a_killed_recorder(db_path: Path) -> None:
    """A recorder killed with SIGKILL leaves no lock: the next one opens the file."""
    code = ("import sys\nfrom binance_streamer.storage.sqlite import SqliteSink\n"
            f"sink = SqliteSink({str(db_path)!r})\nprint('open', flush=True)\nsys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        assert child.stdout is not None and child.stdout.readline() == "open\n"
        with pytest.raises(DatabaseInUse, match=f"pid {child.pid}"):
            SqliteSink(db_path)
    finally:
        child.kill()
        child.wait(TIMEOUT)
    SqliteSink(db_path).close()


def test_reading_never_takes_the_recorder_lock(db_path: Path) -> None:
    """A query runs while a recorder holds the file, and does not block it."""
    from binance_streamer.storage.query import query

    sink = SqliteSink(db_path)
    sink.write(batch_of("binance_spot_trade.singletons.jsonl"))
    assert len(query(db_path, "trade").rows) == 1
    sink.write(batch_of("binance_spot_aggTrade.head400.jsonl"))
    sink.close()
