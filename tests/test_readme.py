"""The README's library snippet runs as written (pointed at the local exchange)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

import binance_streamer
from binance_streamer.exchange import LocalExchange

README = Path(__file__).parent.parent / "README.md"


def library_snippet() -> str:
    """The Python block after 'The async library the CLI is built on'."""
    text = README.read_text()
    after = text[text.index("The async library the CLI is built on"):]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match is not None
    return match.group(1)


async def test_the_library_snippet_records_and_queries(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The snippet, with only its URLs pointed at the local exchange and a shorter duration,
    records aggTrades into market.db and reads them back with query()."""
    code = library_snippet().replace("duration=60", "duration=3")
    assert "asyncio.run(" in code
    monkeypatch.chdir(tmp_path)
    async with LocalExchange(synthetic=["BTCUSDT"], rate=50) as ex:
        real = binance_streamer.RecorderConfig

        def local(**kw: Any) -> binance_streamer.RecorderConfig:
            return real(ws_url=ex.ws_url, rest_url=ex.rest_url, **kw)

        monkeypatch.setattr(binance_streamer, "RecorderConfig", local)
        scope: dict[str, Any] = {}
        await asyncio.to_thread(exec, code, scope)
    rows = scope["rows"]
    assert "agg_id" in rows.columns and len(rows.rows) == 100
    assert scope["stats"].messages["aggTrade"] >= 100
