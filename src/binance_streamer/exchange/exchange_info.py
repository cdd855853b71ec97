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
    """The symbol catalogue; ``known(symbol)`` decides ``-1121 Invalid symbol.``.

    ``served_only``: list only ``extra_symbols`` (the symbols the exchange serves), not the
    thousands of the bundled body, so ``record --all`` against it records a handful. `add` and
    `set_status` change the listing at run time (a new symbol, a halt, a delisting).
    """

    def __init__(self, extra_symbols: Iterable[str], weight_per_min: int,
                 base: dict[str, Any] | None = None, *, served_only: bool = False) -> None:
        self.body = base if base is not None else bundled_body()
        extra_symbols = list(extra_symbols)
        if served_only:
            wanted = set(extra_symbols)
            self._template = copy.deepcopy(next(
                (s for s in self.body["symbols"] if s["symbol"] == "BTCUSDT"),
                self.body["symbols"][0]))
            self.body["symbols"] = [s for s in self.body["symbols"] if s["symbol"] in wanted]
        self.body["rateLimits"] = [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": weight_per_min},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5,
             "limit": 300_000},
        ]
        self.by_symbol: dict[str, dict[str, Any]] = {s["symbol"]: s for s in self.body["symbols"]}
        if not served_only:
            self._template = copy.deepcopy(
                self.by_symbol.get("BTCUSDT") or next(iter(self.by_symbol.values())))
        for symbol in extra_symbols:
            if symbol not in self.by_symbol:  # a real one keeps its recorded status
                self.add(symbol)

    def add(self, symbol: str) -> None:
        """List ``symbol`` as ``TRADING`` (with the filters of its `listings.listing`), or set
        an already listed one back to ``TRADING``."""
        if symbol in self.by_symbol:
            self.by_symbol[symbol]["status"] = "TRADING"
            return
        entry = copy.deepcopy(self._template)
        item = listing(symbol)
        entry.update(symbol=symbol, status="TRADING", quoteAsset=item.quote,
                     baseAsset=item.base or symbol, filters=filters(item))
        self.by_symbol[symbol] = entry
        self.body["symbols"].append(entry)

    def set_status(self, symbol: str, status: str | None) -> None:
        """Give listed ``symbol`` another status (``HALT``, ``BREAK``...), or delist it (None):
        exchangeInfo then no longer names it. Raises KeyError for a symbol not listed."""
        entry = self.by_symbol[symbol]
        if status is None:
            del self.by_symbol[symbol]
            self.body["symbols"].remove(entry)
        else:
            entry["status"] = status

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
