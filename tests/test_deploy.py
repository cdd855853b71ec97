"""The service files: the systemd unit's command line and the Dockerfile's entry point work.

No docker daemon is needed: the Dockerfile is read as text and its entry point run from this
environment, where `pip install` put the same console script.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import binance_streamer.cli as cli
from binance_streamer.cli import main
from binance_streamer.recorder import RecorderConfig
from tests.helpers import TIMEOUT

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "deploy" / "binance-streamer.service"
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent


def unit() -> configparser.ConfigParser:
    """The unit file as systemd reads it: INI sections, `#` comments, no interpolation."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            word, _, rest = pending.partition(" ")
            found.append((word.upper(), rest.strip()))
            pending = ""
    return found


def final_stage() -> list[tuple[str, str]]:
    """The instructions after the last FROM: what the image that runs is made of."""
    steps = instructions()
    last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last:]


def exec_form(word: str) -> list[str]:
    """The last ``word`` instruction of the final stage, in exec (JSON array) form."""
    args = [rest for w, rest in final_stage() if w == word][-1]
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


class Captured(Exception):
    """Raised by the stub recorder with the configuration `record` built."""

    def __init__(self, config: RecorderConfig) -> None:
        super().__init__("captured")
        self.config = config


def _capture(config: RecorderConfig, *_args: object) -> object:
    raise Captured(config)


# -- the systemd unit --------------------------------------------------------------------------

def test_the_unit_runs_record_as_a_dedicated_user_in_its_state_directory() -> None:
    """[Unit], [Service] and [Install]; not root; the database's directory is the service's."""
    parsed = unit()
    assert {"Unit", "Service", "Install"} <= set(parsed.sections())
    service = parsed["Service"]
    assert service["User"] not in ("", "root")
    assert service["WorkingDirectory"] == "/var/lib/" + service["StateDirectory"]
    assert parsed["Install"]["WantedBy"] == "multi-user.target"


def test_the_unit_stops_with_sigterm_and_time_to_flush() -> None:
    """SIGTERM to the main process, a long stop timeout, exit 3 a success, 2 never restarted."""
    service = unit()["Service"]
    assert service["KillSignal"] == "SIGTERM" and service["KillMode"] == "mixed"
    assert int(service["TimeoutStopSec"]) >= 30
    assert "3" in service["SuccessExitStatus"].split()
    assert service["Restart"] == "on-failure"
    assert "2" in service["RestartPreventExitStatus"].split()


def test_the_units_command_line_parses_and_reaches_the_recorder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ExecStart, with its settings file written by `init`, records the defaults."""
    argv = shlex.split(unit()["Service"]["ExecStart"])
    assert Path(argv[0]).name == "binance-streamer" and argv[1] == "record"
    config_at = argv.index("--config") + 1
    for name in list(os.environ):
        if name.startswith("BINANCE_STREAMER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_run_recorder", _capture)
    runner = CliRunner()
    assert runner.invoke(main, ["init", "settings.toml"]).exit_code == 0
    argv[config_at] = str(tmp_path / "settings.toml")
    result = runner.invoke(main, argv[1:])
    assert isinstance(result.exception, Captured), result.output
    assert result.exception.config == RecorderConfig()
    helped = runner.invoke(main, [*argv[1:], "--help"])
    assert helped.exit_code == 0 and "--config FILE" in helped.output


# -- the Dockerfile ----------------------------------------------------------------------------

def test_the_image_runs_as_a_non_root_user_with_the_database_on_a_volume() -> None:
    """USER is not root; WORKDIR (where the relative database lands) is a VOLUME; SIGTERM."""
    steps = final_stage()
    users = [rest for word, rest in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    workdir = [rest for word, rest in steps if word == "WORKDIR"][-1]
    assert workdir in exec_form("VOLUME")
    assert [rest for word, rest in steps if word == "STOPSIGNAL"] == ["SIGTERM"]
    assert steps[0][1].startswith("python:3.11-slim")


def test_the_entry_point_starts_record_help() -> None:
    """ENTRYPOINT + `record --help`, run from this environment's console scripts, exits 0."""
    entrypoint = exec_form("ENTRYPOINT")
    assert entrypoint == ["binance-streamer"] and exec_form("CMD")[0] == "record"
    done = subprocess.run([str(BIN / entrypoint[0]), "record", "--help"], capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr
    assert "Usage: binance-streamer record" in done.stdout


def test_the_default_command_line_parses(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    """CMD as given (no settings file in the volume yet) reaches the recorder with defaults."""
    for name in list(os.environ):
        if name.startswith("BINANCE_STREAMER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_run_recorder", _capture)
    result = CliRunner().invoke(main, exec_form("CMD"))
    assert isinstance(result.exception, Captured), result.output


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or a parent decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(c, glob) for c in candidates):
            verdict = not negated
    return verdict


def test_the_build_context_holds_the_sources_and_no_database() -> None:
    """.dockerignore keeps what the Dockerfile copies and drops the venv, git and databases."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copied = [rest.split()[:-1] for word, rest in instructions()
              if word == "COPY" and not rest.startswith("--from")]
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not _ignored(source, patterns), source
    assert not _ignored("src/binance_streamer/exchange/data/cf_2021-04-04.jsonl.gz", patterns)
    for dropped in (".venv/bin/python", ".git/HEAD", "binance_data.db", "tests/test_deploy.py",
                    "src/binance_streamer/__pycache__/cli.cpython-311.pyc", "src/x.db-wal"):
        assert _ignored(dropped, patterns), dropped


# -- python -m ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "code"), [(["--help"], 0), (["record", "--help"], 0),
                                            (["nosuch"], 2), (["--version"], 0)])
def test_python_m_binance_streamer_is_the_command(args: list[str], code: int) -> None:
    """`python -m binance_streamer` runs the same command, with its exit codes."""
    done = subprocess.run([sys.executable, "-m", "binance_streamer", *args],
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == code, done.stderr
    if code == 0:
        assert "binance-streamer" in done.stdout
    else:
        assert done.stderr.startswith("error:") and "nosuch" in done.stderr
