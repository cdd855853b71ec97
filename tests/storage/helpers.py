"""Storage test helpers: running code where file permissions apply, even when tests run as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from binance_streamer.errors import StorageFatal
from binance_streamer.storage.base import Batch, Sink
from tests.helpers import TIMEOUT, batch_of

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


def gaps_after_silences(sink: Sink, read: Callable[[], list[tuple[object, ...]]]
                        ) -> list[tuple[object, ...]]:
    """Write silences, their ends and an id gap through ``sink``; the gaps ``read`` then finds."""
    sink.write(Batch(gaps=[("btcusdt@ticker", 1000, 1000, "stale: silent 60 s", 1),
                           ("btcusdt@aggTrade", 1000, 1000, "id gap", 1)]))
    ends = Batch(silence_ends=[(5000, "btcusdt@ticker", 1000), (5000, "btcusdt@aggTrade", 1000)])
    assert len(ends) == 2
    sink.write(ends)
    # A silence and its end in one batch; then one whose end comes with a row that cannot be
    # stored, so the transaction (and the end with it) is rolled back.
    sink.write(Batch(gaps=[("ethusdt@ticker", 7, 7, "stale", 1)],
                     silence_ends=[(9, "ethusdt@ticker", 7)]))
    sink.write(Batch(gaps=[("bnbusdt@ticker", 3, 3, "stale", 1)]))
    good = batch_of("binance_spot_trade.singletons.jsonl").rows["trade"][0]
    with pytest.raises((OverflowError, StorageFatal)):
        sink.write(Batch(rows={"trade": [(good[0], 2**70, *good[2:])]},
                         silence_ends=[(4, "bnbusdt@ticker", 3)]))
    sink.close()
    return read()


EXPECTED_GAPS = [("bnbusdt@ticker", 3, 3), ("btcusdt@aggTrade", 1000, 1000),
                 ("btcusdt@ticker", 1000, 5000), ("ethusdt@ticker", 7, 9)]
GAPS_SQL = "SELECT stream, first_missing, last_missing FROM gaps ORDER BY stream"
