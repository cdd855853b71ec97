"""``GET /api/v3/exchangeInfo`` bodies: the bundled real 2021-10-12 body, extended with the
symbols the local exchange serves (with the filters of their `listings.listing`, which the
synthetic market's prices and quantities follow), with our own rate limits and server time."""

from __future__ import annotations

import copy
import gzip
import json
from collections.abc import Iterable
from importlib import resources
from typing import Any

from binance_streamer.exchange.listings import filters, listing

__all__ = ["ExchangeInfo", "bundled_body"]


def bundled_body() -> dict[str, Any]:
    """A fresh copy of the bundled real ``exchangeInfo`` body (2021-10-12)."""
    data = resources.files("binance_streamer.exchange").joinpath(
        "data/exchange_info_2021-10-12.json.gz").read_bytes()
    body: dict[str, Any] = json.loads(gzip.decompress(data))
    return body


class ExchangeInfo:
    """The symbol catalogue; ``known(symbol)`` decides ``-1121 Invalid symbol.``."""

    def __init__(self, extra_symbols: Iterable[str], weight_per_min: int,
                 base: dict[str, Any] | None = None) -> None:
        self.body = base if base is not None else bundled_body()
        self.body["rateLimits"] = [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": weight_per_min},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5,
             "limit": 300_000},
        ]
        self.by_symbol: dict[str, dict[str, Any]] = {s["symbol"]: s for s in self.body["symbols"]}
        template = self.by_symbol.get("BTCUSDT") or next(iter(self.by_symbol.values()))
        for symbol in extra_symbols:
            if symbol not in self.by_symbol:
                entry = copy.deepcopy(template)
                item = listing(symbol)
                entry.update(symbol=symbol, status="TRADING", quoteAsset=item.quote,
                             baseAsset=item.base or symbol, filters=filters(item))
                self.by_symbol[symbol] = entry
                self.body["symbols"].append(entry)

    def known(self, symbol: str) -> bool:
        """True if ``symbol`` is listed."""
        return symbol in self.by_symbol

    def answer(self, symbols: list[str] | None, server_time: int) -> dict[str, Any]:
        """The body for ``symbols`` (all when None); every symbol must be `known`."""
        body = dict(self.body)
        body["serverTime"] = server_time
        if symbols is not None:
            body["symbols"] = [self.by_symbol[s] for s in symbols]
        return body
