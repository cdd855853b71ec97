"""The pure core is fully tested: its unit tests cover every line and branch of core/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

pytest.importorskip("coverage", reason="coverage is in the test extra: pip install -e '.[test]'")


def test_core_unit_tests_cover_every_branch_of_core(tmp_path: Path) -> None:
    """Running tests/core under coverage.py with branch measurement reports 100 % for
    binance_streamer.core, and lists what is missing otherwise."""
    data = tmp_path / "coverage.data"
    env = {**os.environ, "COVERAGE_FILE": str(data)}
    run = subprocess.run(
        [sys.executable, "-m", "coverage", "run", "--branch", "--source=binance_streamer.core",
         "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         "--hypothesis-profile=coverage",
         "--deselect", f"{HERE.relative_to(ROOT)}/test_coverage.py", str(HERE.relative_to(ROOT))],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = subprocess.run(
        [sys.executable, "-m", "coverage", "report", "--show-missing", "--skip-covered",
         "--precision=1", "--fail-under=100"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, "core/ is not fully covered:\n" + report.stdout + report.stderr
    [total] = [line for line in report.stdout.splitlines() if line.startswith("TOTAL")]
    assert total.split()[-1] == "100.0%", report.stdout
