"""Binance REST client for symbol validation and backfill (rest-api.md, "Market Data endpoints").

Thin adapter over aiohttp: HTTP and connection errors become `binance_streamer.errors`
exceptions here and nowhere else. Market-data bodies are decoded straight into the typed payloads
of `binance_streamer.core.rest_payloads`; a body of another shape is a `BadResponse` saying what
is wrong. The used request weight (``X-MBX-USED-WEIGHT-1M``, rest-api.md "IP Limits": every
request from this IP counts, other processes' too) is tracked so the backfill can pace itself
under the limit (6000/min on Binance), and a 429/418 becomes `RateLimited` with its
``Retry-After`` ("LIMITS").
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import aiohttp
import msgspec

from binance_streamer.core.backoff import retry_after_s
from binance_streamer.core.listings import ExchangeListing, ListedSymbol
from binance_streamer.core.rest_payloads import (
    DepthSnapshot,
    ExchangeInfo,
    RestAggTrade,
    RestKline,
    RestTrade,
)
from binance_streamer.errors import (
    BadResponse,
    RateLimited,
    RestError,
    UnknownSymbolError,
    Unreachable,
)

__all__ = ["BINANCE_REST_URL", "RestClient"]

BINANCE_REST_URL = "https://api.binance.com"
# A 429 without a usable Retry-After (a 418 gets the 2-minute ban fallback of retry_after_s).
_DEFAULT_WAIT_S = 60.0
_T = TypeVar("_T")
_AGG_TRADES = msgspec.json.Decoder(list[RestAggTrade])
_TRADES = msgspec.json.Decoder(list[RestTrade])
_KLINES = msgspec.json.Decoder(list[RestKline])
_DEPTH = msgspec.json.Decoder(DepthSnapshot)
_EXCHANGE_INFO = msgspec.json.Decoder(ExchangeInfo)
_ANY: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
_LISTING = msgspec.json.Decoder(ExchangeListing)


class RestClient:
    """Calls ``<base>/api/v3/...``; use as ``async with RestClient(url) as rest``.

    ``used_weight`` is the last ``X-MBX-USED-WEIGHT-1M`` answered, of ``weight_limit`` per
    minute (Binance's REQUEST_WEIGHT limit; a local exchange may be configured with another).
    """

    def __init__(
        self, base_url: str = BINANCE_REST_URL, timeout_s: float = 10.0, microseconds: bool = False,
        weight_limit: int = 6000,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        # rest-api.md "General API Information": times in µs with this header.
        self.microseconds = microseconds
        self._headers = {"X-MBX-TIME-UNIT": "MICROSECOND"} if microseconds else {}
        self._session: aiohttp.ClientSession | None = None
        self.used_weight = 0
        self.weight_limit = weight_limit
        self.requests = 0

    def __repr__(self) -> str:
        return f"<RestClient {self.base_url} used_weight={self.used_weight}/{self.weight_limit}>"

    async def __aenter__(self) -> RestClient:
        self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, path: str, **params: Any) -> Any:
        """GET ``/api/v3/<path>`` and return the decoded JSON body."""
        return await self._get(_ANY, path, params)

    async def _get(self, decoder: msgspec.json.Decoder[_T], path: str, params: dict[str, Any]
                   ) -> _T:
        """GET ``/api/v3/<path>`` and decode the body with ``decoder``.

        Raises `RateLimited`, `RestError` or `Unreachable` for a failed request, and
        `BadResponse` for a body that is not JSON or not of the shape ``decoder`` expects.
        """
        assert self._session is not None, "use RestClient as an async context manager"
        url = f"{self.base_url}/api/v3/{path}"
        query = {k: _param(v) for k, v in params.items() if v is not None}
        self.requests += 1
        try:
            async with self._session.get(url, params=query) as resp:
                body = await resp.read()
                self._track_weight(resp.headers)
                if resp.status in (418, 429):
                    wait = retry_after_s(resp.status, resp.headers.get("Retry-After"))
                    raise RateLimited(resp.status, wait if wait is not None else _DEFAULT_WAIT_S,
                                      _message(body), url)
                if resp.status != 200:
                    raise RestError(resp.status, _code(body), _message(body), url)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unreachable(url, _reason(exc)) from exc
        try:
            return decoder.decode(body)
        except msgspec.ValidationError as exc:  # valid JSON, wrong shape (a DecodeError too)
            raise BadResponse(f"{url} answered with an unexpected shape: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise BadResponse(f"{url} answered with invalid JSON: {body[:80]!r}") from exc

    def _track_weight(self, headers: Any) -> None:
        used = headers.get("X-MBX-USED-WEIGHT-1M") or headers.get("x-mbx-used-weight-1m")
        if used is not None and used.isdigit():
            self.used_weight = int(used)

    async def trading_symbols(self) -> dict[str, str]:
        """Every listed symbol and its status (``TRADING``, ``HALT``, ``BREAK``...)."""
        info = await self._get(_EXCHANGE_INFO, "exchangeInfo", {})
        return {s.symbol: s.status for s in info.symbols}

    async def validate_symbols(self, symbols: list[str]) -> None:
        """Raise `UnknownSymbolError` naming every symbol that is unknown or not trading."""
        listed = await self.trading_symbols()
        unknown = [s for s in symbols if s.upper() not in listed]
        halted = [f"{s} ({listed[s.upper()]})" for s in symbols
                  if s.upper() in listed and listed[s.upper()] != "TRADING"]
        if unknown or halted:
            detail = "not listed by exchangeInfo" if unknown else "not trading"
            raise UnknownSymbolError(unknown + halted, detail)

    async def agg_trades(self, symbol: str, from_id: int, limit: int = 1000
                         ) -> list[RestAggTrade]:
        """Aggregate trades from ``from_id`` (inclusive), oldest first; weight 4 (rest-api.md,
        "Compressed/Aggregate trades list")."""
        params = {"symbol": symbol.upper(), "fromId": from_id, "limit": limit}
        return await self._get(_AGG_TRADES, "aggTrades", params)

    async def historical_trades(self, symbol: str, from_id: int, limit: int = 1000
                                ) -> list[RestTrade]:
        """Trades from ``from_id`` (inclusive), oldest first; weight 25 (rest-api.md, "Old trade
        lookup")."""
        params = {"symbol": symbol.upper(), "fromId": from_id, "limit": limit}
        return await self._get(_TRADES, "historicalTrades", params)

    async def klines(
        self, symbol: str, interval: str, start_time: int, end_time: int | None = None,
        limit: int = 1000,
    ) -> list[RestKline]:
        """Klines opening at or after ``start_time``, oldest first; weight 2 (rest-api.md,
        "Kline/Candlestick data")."""
        params = {"symbol": symbol.upper(), "interval": interval, "startTime": start_time,
                  "endTime": end_time, "limit": limit}
        return await self._get(_KLINES, "klines", params)

    async def depth(self, symbol: str, limit: int = 1000) -> DepthSnapshot:
        """An order book snapshot with its ``lastUpdateId`` (rest-api.md, "Order book")."""
        return await self._get(_DEPTH, "depth", {"symbol": symbol.upper(), "limit": limit})

    async def listing(self) -> list[ListedSymbol]:
        """Every listed symbol with its status and assets (rest-api.md, "Exchange
        information"; weight 20): what ``record --all`` records."""
        return (await self._get(_LISTING, "exchangeInfo", {})).symbols


def _reason(exc: BaseException) -> str:
    """A one-line reason for a failed request: what aiohttp or the OS said, or the error type."""
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "no answer within the timeout"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _param(v: Any) -> str:
    return json.dumps(v, separators=(",", ":")) if isinstance(v, list) else str(v)


def _decode_error(body: bytes) -> dict[str, Any]:
    try:
        obj = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _code(body: bytes) -> int | None:
    code = _decode_error(body).get("code")
    return code if isinstance(code, int) else None


def _message(body: bytes) -> str:
    msg = _decode_error(body).get("msg")
    return msg if isinstance(msg, str) else body[:200].decode("utf-8", "replace")
