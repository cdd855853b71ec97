"""``GET /api/v3/exchangeInfo`` bodies: the bundled real 2021-10-12 body, extended with the
symbols the local exchange serves, with our own rate limits and server time."""

from __future__ import annotations

import copy
import gzip
import json
from collections.abc import Iterable
from importlib import resources
from typing import Any

__all__ = ["ExchangeInfo"]

_QUOTES = ("USDT", "BUSD", "USDC", "TUSD", "FDUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "AUD",
           "BRL", "GBP", "RUB", "USD")


def _bundled() -> dict[str, Any]:
    data = resources.files("binance_streamer.exchange").joinpath(
        "data/exchange_info_2021-10-12.json.gz").read_bytes()
    body: dict[str, Any] = json.loads(gzip.decompress(data))
    return body


class ExchangeInfo:
    """The symbol catalogue; ``known(symbol)`` decides ``-1121 Invalid symbol.``."""

    def __init__(self, extra_symbols: Iterable[str], weight_per_min: int,
                 base: dict[str, Any] | None = None) -> None:
        self.body = base if base is not None else _bundled()
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
                quote = next((q for q in _QUOTES if symbol.endswith(q) and symbol != q), "USDT")
                entry.update(symbol=symbol, status="TRADING", quoteAsset=quote,
                             baseAsset=symbol[: -len(quote)] if symbol.endswith(quote) else symbol)
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
