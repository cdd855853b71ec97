"""`record` settings from a TOML file and BINANCE_STREAMER_* variables; `init` writes the file.

Every test runs `binance-streamer record` in-process with `_run_recorder` replaced by a stub
that stops the command with what the recorder would have been given.
"""

from __future__ import annotations

import itertools
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import binance_streamer.cli as cli
from binance_streamer.cli import main
from binance_streamer.cli.config import setting_keys
from binance_streamer.core.sharding import Shard
from binance_streamer.recorder import RecorderConfig


class Captured(Exception):
    """Raised by the stub recorder: what `record` would have recorded, and how."""

    def __init__(self, config: RecorderConfig, duration: float | None, processes: Any) -> None:
        super().__init__("captured")
        self.config, self.duration, self.processes = config, duration, processes


def _capture(config: RecorderConfig, duration: float | None, processes: Any = 1,
             *_display: Any) -> Any:
    raise Captured(config, duration, processes)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No BINANCE_STREAMER_* variable from outside, an empty working directory, a stub recorder."""
    for name in list(os.environ):
        if name.startswith("BINANCE_STREAMER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_run_recorder", _capture)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def recorded(*args: str) -> Captured:
    """What `record ARGS` hands the recorder (fails the test if it stops before)."""
    result = run("record", *args)
    assert isinstance(result.exception, Captured), result.output
    return result.exception


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# -- the precedence table, cell by cell --------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One option: how each source spells a value, and the value the recorder then gets."""

    key: str
    flag: list[str]  # on the command line
    env: str  # BINANCE_STREAMER_<KEY>
    toml: str  # the file's line
    expected: dict[str, Any]  # source ("flag", "env", "file", "default") -> value recorded
    fixed: tuple[str, ...] = ()  # arguments every cell needs (e.g. --all for --exclude)
    pick: str = "config"  # what to read: an attribute of RecorderConfig, or duration/processes

    def value(self, captured: Captured) -> Any:
        if self.pick in ("duration", "processes"):
            return getattr(captured, self.pick)
        return getattr(captured.config, self.pick)


ROWS = [
    # a plain text option
    Row("db", ["--db", "f.db"], "e.db", 'db = "t.db"',
        {"flag": "f.db", "env": "e.db", "file": "t.db", "default": "binance_data.db"},
        pick="database"),
    # a text option without a default
    Row("quote", ["--quote", "USDT"], "BTC", 'quote = "ETH"',
        {"flag": "USDT", "env": "BTC", "file": "ETH", "default": None},
        fixed=("--all",), pick="quote"),
    # an integer option (IntRange)
    Row("streams_per_connection", ["--streams-per-connection", "10"], "20",
        "streams_per_connection = 30",
        {"flag": 10, "env": 20, "file": 30, "default": 200}, pick="max_streams_per_connection"),
    # flags: a boolean cannot tell three sources apart, so two rows with opposite values
    Row("raw", ["--raw"], "0", "raw = true",
        {"flag": True, "env": False, "file": True, "default": False}, pick="raw"),
    Row("no_backfill", ["--no-backfill"], "yes", "no_backfill = false",
        {"flag": False, "env": False, "file": True, "default": True}, pick="backfill"),
    # a repeatable option
    Row("exclude", ["--exclude", "AAAUSDT", "--exclude", "BBBUSDT"], "CCCUSDT DDDUSDT",
        'exclude = ["EEEUSDT"]',
        {"flag": ["AAAUSDT", "BBBUSDT"], "env": ["CCCUSDT", "DDDUSDT"], "file": ["EEEUSDT"],
         "default": []}, fixed=("--all",), pick="exclude"),
    # the variadic argument
    Row("symbols", ["FFFUSDT", "GGGUSDT"], "HHHUSDT,IIIUSDT", 'symbols = ["JJJUSDT"]',
        {"flag": ["FFFUSDT", "GGGUSDT"], "env": ["HHHUSDT", "IIIUSDT"], "file": ["JJJUSDT"],
         "default": ["BTCUSDT", "ETHUSDT", "BNBUSDT"]}, pick="symbols"),
    # options with callbacks that parse the text
    Row("streams", ["--streams", "aggTrade"], "trade", 'streams = ["kline_1m", "bookTicker"]',
        {"flag": ["aggTrade"], "env": ["trade"], "file": ["kline_1m", "bookTicker"],
         "default": ["ticker"]}, pick="streams"),
    Row("duration", ["--duration", "5"], "6.5", "duration = 7",
        {"flag": 5.0, "env": 6.5, "file": 7.0, "default": None}, pick="duration"),
    Row("snapshot_every", ["--snapshot-every", "30m"], "90s", "snapshot_every = 0",
        {"flag": 1800.0, "env": 90.0, "file": 0.0, "default": 3600.0}, pick="snapshot_every_s"),
    Row("shard", ["--shard", "1/4"], "2/4", 'shard = "3/4"',
        {"flag": Shard(1, 4), "env": Shard(2, 4), "file": Shard(3, 4), "default": None},
        fixed=("--all",), pick="shard"),
    Row("processes", ["--processes", "3"], "2", "processes = 4",
        {"flag": 3, "env": 2, "file": 4, "default": "auto"}, pick="processes"),
]
CELLS = list(itertools.product([True, False], repeat=3))  # (flag, env, file) given or not


@pytest.mark.parametrize("row", ROWS, ids=[r.key for r in ROWS])
@pytest.mark.parametrize(("given_flag", "given_env", "given_file"), CELLS,
                         ids=["".join(n for n, on in zip("FET", c, strict=True) if on) or "D"
                              for c in CELLS])
def test_precedence_cell(row: Row, given_flag: bool, given_env: bool, given_file: bool,
                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line wins, then the environment, then the file, then the default."""
    args = list(row.fixed)
    if given_file:
        args += ["--config", write(tmp_path / "settings.toml", row.toml + "\n")]
    if given_env:
        monkeypatch.setenv(f"BINANCE_STREAMER_{row.key.upper()}", row.env)
    if given_flag:
        args += row.flag
    source = ("flag" if given_flag else "env" if given_env else "file" if given_file
              else "default")
    assert row.value(recorded(*args)) == row.expected[source]


def test_the_table_covers_every_kind_of_parameter() -> None:
    """The rows above hold a flag, a repeatable option, the argument and callback options."""
    kinds = {row.key for row in ROWS}
    assert {"raw", "exclude", "symbols", "streams", "duration", "snapshot_every", "shard",
            "processes"} <= kinds <= set(setting_keys(cli.record))


# -- where the file comes from -----------------------------------------------------------------

def test_binance_streamer_toml_in_the_working_directory_is_read(tmp_path: Path) -> None:
    """Without --config, ./binance-streamer.toml is the file."""
    write(tmp_path / "binance-streamer.toml", 'db = "here.db"\n')
    assert recorded().config.database == "here.db"


def test_an_explicit_config_replaces_the_working_directory_file(tmp_path: Path) -> None:
    """--config FILE is read instead of ./binance-streamer.toml, not on top of it."""
    write(tmp_path / "binance-streamer.toml", 'db = "here.db"\nraw = true\n')
    other = write(tmp_path / "other.toml", 'streams = "trade"\n')
    captured = recorded("--config", other)
    assert (captured.config.database, captured.config.raw, captured.config.streams) == (
        "binance_data.db", False, ["trade"])


def test_binance_streamer_config_names_the_file(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """BINANCE_STREAMER_CONFIG works as --config; --config on the command line beats it."""
    monkeypatch.setenv("BINANCE_STREAMER_CONFIG", write(tmp_path / "a.toml", 'db = "a.db"\n'))
    assert recorded().config.database == "a.db"
    other = write(tmp_path / "b.toml", 'db = "b.db"\n')
    assert recorded("--config", other).config.database == "b.db"


def test_keys_may_be_spelled_with_dashes(tmp_path: Path) -> None:
    """streams-per-connection is the same key as streams_per_connection."""
    path = write(tmp_path / "s.toml", "streams-per-connection = 7\n")
    assert recorded("--config", path).config.max_streams_per_connection == 7


# -- options that exclude each other -----------------------------------------------------------

def test_all_on_the_command_line_overrides_the_files_symbols(tmp_path: Path) -> None:
    """`record --all` with symbols in the file records every symbol, not an error."""
    path = write(tmp_path / "s.toml", 'symbols = ["BTCUSDT"]\n')
    config = recorded("--config", path, "--all").config
    assert (config.all_symbols, config.symbols) == (True, [])


def test_symbols_on_the_command_line_override_the_files_all(tmp_path: Path) -> None:
    """`record ETHUSDT` with all/quote/exclude in the file records ETHUSDT alone."""
    path = write(tmp_path / "s.toml", 'all = true\nquote = "USDT"\nexclude = ["XUSDT"]\n')
    config = recorded("--config", path, "ETHUSDT").config
    assert (config.all_symbols, config.symbols, config.quote, config.exclude) == (
        False, ["ETHUSDT"], None, [])


def test_all_from_the_environment_overrides_the_files_symbols(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BINANCE_STREAMER_ALL=1 beats the file's symbols as the environment beats the file."""
    monkeypatch.setenv("BINANCE_STREAMER_ALL", "1")
    path = write(tmp_path / "s.toml", 'symbols = ["BTCUSDT"]\n')
    config = recorded("--config", path).config
    assert (config.all_symbols, config.symbols) == (True, [])


def test_shard_on_the_command_line_overrides_the_files_processes(tmp_path: Path) -> None:
    """`--shard 1/2` with processes = 4 in the file records one shard in one process."""
    path = write(tmp_path / "s.toml", "processes = 4\n")
    captured = recorded("--config", path, "--all", "--shard", "1/2")
    assert (captured.config.shard, captured.processes) == (Shard(1, 2), 1)


def test_symbols_and_all_from_the_same_file_are_still_refused(tmp_path: Path) -> None:
    """The file giving both is the user's conflict to settle: exit 2, as on the command line."""
    path = write(tmp_path / "s.toml", 'all = true\nsymbols = ["BTCUSDT"]\n')
    result = run("record", "--config", path)
    assert result.exit_code == 2 and "not both" in result.output


# -- errors ------------------------------------------------------------------------------------

def test_an_unknown_key_exits_2_naming_it(tmp_path: Path) -> None:
    """A misspelt key is named, with the nearest known key."""
    path = write(tmp_path / "s.toml", 'stream = "trade"\n')
    result = run("record", "--config", path)
    assert result.exit_code == 2
    assert "unknown key 'stream'" in result.output and "'streams'" in result.output


def test_a_table_is_an_unknown_key(tmp_path: Path) -> None:
    """Settings are top-level keys: a [record] table is refused, named."""
    path = write(tmp_path / "s.toml", '[record]\ndb = "x.db"\n')
    result = run("record", "--config", path)
    assert result.exit_code == 2 and "unknown key 'record'" in result.output


@pytest.mark.parametrize(("line", "expected"), [
    ('raw = "yes"', "'raw': expected true or false"),
    ('exclude = "XUSDT"', "'exclude': expected an array of strings"),
    ("symbols = [1, 2]", "'symbols': expected an array of strings"),
    ('streams_per_connection = "10"', "'streams_per_connection': expected an integer"),
    ("streams_per_connection = 1.5", "'streams_per_connection': expected an integer"),
    ('duration = "60"', "'duration': expected a number"),
    ("duration = true", "'duration': expected a number"),
    ("db = true", "'db': expected a string"),
    ("db = [\"a.db\"]", "'db': expected a string"),
    ("streams = [1]", "'streams': expected a string or an array of strings"),
    ("db = { path = 'x' }", "'db': expected a string"),
])
def test_a_value_of_the_wrong_type_exits_2_naming_the_key(line: str, expected: str,
                                                          tmp_path: Path) -> None:
    """Each TOML type is checked against the option before click sees it."""
    result = run("record", "--config", write(tmp_path / "s.toml", line + "\n"))
    assert result.exit_code == 2 and expected in result.output


def test_a_bad_value_from_the_file_names_the_key(tmp_path: Path) -> None:
    """A value the option itself refuses says which file and key it came from."""
    path = write(tmp_path / "s.toml", 'streams = "nosuch"\n')
    result = run("record", "--config", path)
    assert result.exit_code == 2
    assert "--streams" in result.output and "s.toml key 'streams'" in result.output


def test_a_bad_value_from_the_environment_names_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same for an environment variable, and a flag's variable must read as a boolean."""
    monkeypatch.setenv("BINANCE_STREAMER_DURATION", "-3")
    result = run("record")
    assert result.exit_code == 2 and "BINANCE_STREAMER_DURATION" in result.output
    monkeypatch.delenv("BINANCE_STREAMER_DURATION")
    monkeypatch.setenv("BINANCE_STREAMER_RAW", "maybe")
    result = run("record")
    assert result.exit_code == 2 and "BINANCE_STREAMER_RAW='maybe'" in result.output


def test_an_empty_variable_counts_as_unset(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """BINANCE_STREAMER_DB= leaves the file's value in place."""
    monkeypatch.setenv("BINANCE_STREAMER_DB", "")
    path = write(tmp_path / "s.toml", 'db = "t.db"\n')
    assert recorded("--config", path).config.database == "t.db"


def test_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    """--config naming no file is a usage error naming it."""
    result = run("record", "--config", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2 and "nope.toml" in result.output


def test_a_file_that_is_not_toml_exits_2(tmp_path: Path) -> None:
    """A syntax error is reported with TOML's own line and column."""
    result = run("record", "--config", write(tmp_path / "s.toml", "db = \n"))
    assert result.exit_code == 2 and "not valid TOML" in result.output and "line 1" in result.output


def test_help_works_whatever_the_working_directory_file_holds(tmp_path: Path) -> None:
    """A broken ./binance-streamer.toml does not hide `record --help`."""
    write(tmp_path / "binance-streamer.toml", "nonsense = 1\n")
    result = run("record", "--help")
    assert result.exit_code == 0 and "--config FILE" in result.output
    assert "BINANCE_STREAMER_" in result.output


# -- init --------------------------------------------------------------------------------------

def test_init_writes_every_setting_and_loading_it_gives_the_defaults(tmp_path: Path) -> None:
    """The example names every key, parses back, and records exactly what no file records."""
    result = run("init", "example.toml")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "example.toml").read_text()
    tomllib.loads(text)  # valid TOML
    for key in setting_keys(cli.record):
        assert f"{key} = " in text, key
        assert f"BINANCE_STREAMER_{key.upper()}" in text, key
    assert "Also archive every frame exactly as received." in text
    from_file = recorded("--config", str(tmp_path / "example.toml"))
    without = recorded()
    assert from_file.config == without.config
    assert (from_file.duration, from_file.processes) == (without.duration, without.processes)


def test_init_sets_each_value_the_file_can_hold(tmp_path: Path) -> None:
    """Every default with a TOML form is written as a live key, the unset ones commented out."""
    run("init", "example.toml")
    data = tomllib.loads((tmp_path / "example.toml").read_text())
    assert data["streams"] == "ticker" and data["raw"] is False and data["exclude"] == []
    assert data["streams_per_connection"] == 200 and data["processes"] == "auto"
    assert "duration" not in data and "symbols" not in data and "shard" not in data


def test_init_default_path_is_picked_up_by_record(tmp_path: Path) -> None:
    """`init` then `record` in the same directory reads the written file."""
    assert run("init").exit_code == 0
    text = (tmp_path / "binance-streamer.toml").read_text()
    write(tmp_path / "binance-streamer.toml", text.replace('db = "binance_data.db"',
                                                           'db = "edited.db"'))
    assert recorded().config.database == "edited.db"


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    """An existing file is kept (exit 1) unless --force is given."""
    target = tmp_path / "binance-streamer.toml"
    target.write_text("# mine\n")
    result = run("init")
    assert result.exit_code == 1 and "--force" in result.output
    assert target.read_text() == "# mine\n"
    assert run("init", "--force").exit_code == 0
    assert "streams_per_connection = 200" in target.read_text()


def test_init_dash_prints_the_example(tmp_path: Path) -> None:
    """`init -` writes to stdout and creates no file."""
    result = run("init", "-")
    assert result.exit_code == 0 and 'streams = "ticker"' in result.output
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_variable_is_named_in_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """BINANCE_STREAMER_STREAM (a typo) is ignored, with a warning naming the likely one."""
    monkeypatch.setenv("BINANCE_STREAMER_STREAM", "trade")
    result = run("record")
    assert isinstance(result.exception, Captured)
    assert result.exception.config.streams == ["ticker"]
    assert "BINANCE_STREAMER_STREAM is not a setting" in result.output
    assert "did you mean BINANCE_STREAMER_STREAMS?" in result.output
