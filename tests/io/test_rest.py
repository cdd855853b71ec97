"""The REST client against the local exchange: results, weights and translated errors."""

from __future__ import annotations

import pytest

from binance_streamer.errors import RateLimited, RestError, UnknownSymbolError, Unreachable
from binance_streamer.exchange import LocalExchange
from binance_streamer.io.rest import RestClient
from binance_streamer.samples import bundled_session


async def test_agg_trades_from_id_match_the_stream_history() -> None:
    """aggTrades?fromId returns the replayed aggregate trades from that id, fields as streamed."""
    async with LocalExchange(replay=[bundled_session("cf_2021-04-04")], speed=None,
                             start="manual") as ex, RestClient(ex.rest_url) as rest:
        await ex.start()
        await ex.finished()
        sent = ex.history.events("btcusdt@aggTrade")
        items = await rest.agg_trades("btcusdt", sent[100]["a"], limit=5)
        assert items == [{k: e[k] for k in "apqflTmM"} for e in sent[100:105]]
        assert rest.used_weight > 0


async def test_errors_are_translated_at_the_edge() -> None:
    """429 -> RateLimited with Retry-After, 418 too, 5xx -> RestError, -1121 keeps its code."""
    async with LocalExchange(synthetic=["BTCUSDT"]) as ex, RestClient(ex.rest_url) as rest:
        ex.faults.rest_error(429, retry_after=3)
        with pytest.raises(RateLimited) as limited:
            await rest.get("ping")
        assert (limited.value.status, limited.value.retry_after) == (429, 3.0)
        ex.faults.rest_error(418)
        with pytest.raises(RateLimited) as banned:
            await rest.get("ping")
        assert banned.value.status == 418 and banned.value.retry_after > 0
        ex.faults.rest_error(503)
        with pytest.raises(RestError) as unavailable:
            await rest.get("ping")
        assert unavailable.value.status == 503
        with pytest.raises(RestError) as invalid:
            await rest.get("depth", symbol="NOPEUSDT")
        assert invalid.value.code == -1121
        with pytest.raises(UnknownSymbolError, match="NOPEUSDT"):
            await rest.validate_symbols(["BTCUSDT", "NOPEUSDT"])


async def test_an_unreachable_server_is_reported_with_its_url() -> None:
    """No listener: Unreachable names the URL."""
    async with RestClient("http://127.0.0.1:9") as rest:
        with pytest.raises(Unreachable, match=r"127\.0\.0\.1:9"):
            await rest.get("ping")
