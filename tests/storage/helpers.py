"""Storage test helpers: running code where file permissions apply, even when tests run as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT

SRC = Path(__file__).resolve().parents[2] / "src"


def unprivileged(code: str) -> str:
    """Run Python ``code`` in a child process that file permissions apply to, and return its
    stdout. As root, the capabilities that override permissions are dropped (``setpriv``)."""
    cmd = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: file permissions cannot be tested")
        cmd = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *cmd]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def outcome(call: str) -> str:
    """Code printing ``opened`` when ``call`` returns, else the exception's class and message."""
    return (f"try:\n    {call}\n    print('opened')\n"
            "except Exception as exc:\n    print(type(exc).__name__ + ': ' + str(exc))\n")
