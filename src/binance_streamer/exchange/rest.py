"""REST market-data endpoints under ``/api/v3`` with Binance's request weights, the
``X-MBX-USED-WEIGHT-1M`` header, 429 with ``Retry-After`` past the limit and 418 bans after
continued abuse (rest-api.md "LIMITS", "Market Data endpoints").

Answers come from the same history the streams published. Every error, including an unknown
path or method, is Binance's JSON error shape ``{"code":..,"msg":..}`` (rest-api.md "Error
Codes"; codes and messages from errors.md), never aiohttp's text/plain.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from bisect import bisect_left, bisect_right
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from binance_streamer.core.backfill_queue import depth_weight
from binance_streamer.core.streams import KLINE_INTERVAL_MS
from binance_streamer.exchange import stats
from binance_streamer.exchange.exchange_info import ExchangeInfo
from binance_streamer.exchange.faults import Faults
from binance_streamer.exchange.limits import Limits
from binance_streamer.exchange.market import Market, SymbolState

__all__ = ["RestApi", "RestError"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RestError(Exception):
    """A Binance error answer: HTTP ``status`` and body ``{"code":..,"msg":..}``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


def _mandatory(name: str) -> RestError:
    return RestError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, "
                            "or malformed.")


# errors.md -1100 ILLEGAL_CHARS, with the legal ranges Binance prints for these parameters.
_SYMBOL_RANGE = "^[A-Z0-9-_.]{1,20}$"
_SYMBOLS_RANGE = '^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$'
_SYMBOL = re.compile(r"[A-Z0-9\-_.]{1,20}")
_SYMBOLS = re.compile(r'\[("[A-Z0-9\-_.]{1,20}"(,"[A-Z0-9\-_.]{1,20}")*)?\]')
_MAX_ROLLING_SYMBOLS = 100  # rest-api.md "Rolling window price change statistics"


def _illegal(name: str, legal: str) -> RestError:
    return RestError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                            f"'{legal}'.")


def _check_symbol(symbol: str) -> str:
    """``symbol`` if it is well formed (upper case, at most 20 characters), else -1100."""
    if not _SYMBOL.fullmatch(symbol):
        raise _illegal("symbol", _SYMBOL_RANGE)
    return symbol


def _int(req: web.Request, name: str, default: int | None = None) -> int | None:
    raw = req.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise RestError(-1100, f"Illegal characters found in parameter '{name}'; legal range "
                               f"is '^[0-9]{{1,20}}$'.") from None


_ZERO = "0.00000000"
_MICROS_FROM = 10**15  # a time parameter this large is in microseconds (ms: the year 33658)


def _times(req: web.Request) -> tuple[int | None, int | None]:
    """``startTime`` and ``endTime`` in milliseconds. Both may be sent in microseconds
    (rest-api.md "General API Information": timestamp parameters can be passed in milliseconds
    or microseconds); a start then rounds up and an end down, so the same items are selected."""
    start, end = _int(req, "startTime"), _int(req, "endTime")
    if start is not None and start >= _MICROS_FROM:
        start = -(-start // 1000)
    if end is not None and end >= _MICROS_FROM:
        end //= 1000
    return start, end


def _limit(req: web.Request, default: int, top: int) -> int:
    value = _int(req, "limit", default)
    assert value is not None
    return max(1, min(value, top))


def _ticker_weight(req: web.Request) -> int:
    if "symbol" in req.query:
        return 2
    if "symbols" in req.query:
        n = len(_symbols_param(req) or [])
        return 2 if n <= 20 else 40 if n <= 100 else 80
    return 80


def _price_weight(req: web.Request) -> int:
    """``ticker/price`` and ``ticker/bookTicker``: 2 for one symbol, else 4."""
    return 2 if "symbol" in req.query else 4


def _rolling_weight(req: web.Request) -> int:
    """``ticker``: 4 per symbol, capped at 200 past 50 symbols."""
    n = len(_symbols_param(req) or []) if "symbols" in req.query else 1
    return min(4 * n, 200)


def _symbols_param(req: web.Request) -> list[str] | None:
    """The ``symbols`` parameter, a compact JSON array of well-formed symbols (-1100 if not,
    -1151 if one repeats), or None when absent."""
    raw = req.query.get("symbols")
    if raw is None:
        return None
    if not _SYMBOLS.fullmatch(raw):
        raise _illegal("symbols", _SYMBOLS_RANGE)
    value: list[str] = json.loads(raw)
    if len(set(value)) != len(value):
        raise RestError(-1151, "Symbol is present multiple times in the list.")
    return value


_WEIGHTS: dict[str, Callable[[web.Request], int]] = {
    "ping": lambda r: 1, "time": lambda r: 1, "exchangeInfo": lambda r: 20,
    "aggTrades": lambda r: 4, "trades": lambda r: 25, "historicalTrades": lambda r: 25,
    "klines": lambda r: 2, "uiKlines": lambda r: 2, "avgPrice": lambda r: 2,
    "depth": lambda r: depth_weight(_limit(r, 100, 5000)), "ticker/24hr": _ticker_weight,
    "ticker/price": _price_weight, "ticker/bookTicker": _price_weight,
    "ticker": _rolling_weight,
}

# rest-api.md "Rolling window price change statistics": 1m..59m, 1h..23h, 1d..7d.
_WINDOW_UNITS = {"m": (59, 60_000), "h": (23, 3_600_000), "d": (7, stats.DAY_MS)}


def _window_ms(req: web.Request) -> int:
    """``windowSize`` in milliseconds (default 1d), or -1130 for an unsupported value."""
    raw = req.query.get("windowSize", "1d")
    top, unit_ms = _WINDOW_UNITS.get(raw[-1:], (0, 0))
    digits = raw[:-1]
    if not (digits.isascii() and digits.isdigit() and 1 <= int(digits) <= top
            and digits[0] != "0"):
        raise RestError(-1130, "Data sent for parameter 'windowSize' is not valid.")
    return int(digits) * unit_ms


def _ticker_type(req: web.Request) -> bool:
    """True for ``type=MINI``; FULL is the default; anything else is -1139."""
    kind = req.query.get("type", "FULL")
    if kind not in ("FULL", "MINI"):
        raise RestError(-1139, "Invalid ticker type.")
    return kind == "MINI"


class _Weights:
    """Used weight per IP in fixed windows, strikes past the limit, and bans."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.used: dict[str, tuple[int, int]] = {}
        self.strikes: dict[str, int] = {}
        self.banned_until: dict[str, float] = {}

    def add(self, ip: str, weight: int) -> tuple[int, float]:
        """Add ``weight``; returns the window's used weight and seconds until it resets."""
        span = self.limits.rest_window_s
        now = time.time()
        window = int(now // span)
        win, used = self.used.get(ip, (window, 0))
        if win != window:
            used, self.strikes[ip] = 0, 0
        used += weight
        self.used[ip] = (window, used)
        return used, (window + 1) * span - now


class RestApi:
    """The ``/api/v3`` routes of one exchange."""

    def __init__(self, market: Market, info: ExchangeInfo, limits: Limits, faults: Faults,
                 clock_ms: Callable[[], int]) -> None:
        self.market = market
        self.info = info
        self.limits = limits
        self.faults = faults
        self.clock_ms = clock_ms
        self.weights = _Weights(limits)

    def routes(self) -> list[web.RouteDef]:
        """The aiohttp route table."""
        return [web.get(f"/api/v3/{name}", self._wrap(name)) for name in _WEIGHTS]

    @web.middleware
    async def json_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Answer aiohttp's own HTTP errors (no such path: 404, no such method: 405) in
        Binance's JSON error shape instead of text/plain.

        Binance answers an unknown path with 404 (and HTML only when the client accepts
        text/html, CHANGELOG 2023-12-04); the body here is errors.md -1020 UNSUPPORTED_OPERATION
        so that clients see a Binance error rather than an undecodable body.
        """
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return self._json({"code": -1020, "msg": "This operation is not supported."},
                              exc.status, request.remote or "?")

    def _wrap(self, name: str) -> Handler:
        handler: Callable[[web.Request], Any] = getattr(self, "_" + name.replace("/", "_"))

        async def serve(req: web.Request) -> web.StreamResponse:
            ip = req.remote or "?"
            try:
                early = await self._gate(ip, name, req)
                if early is not None:
                    return early
                body = handler(req)
            except RestError as exc:
                return self._json({"code": exc.code, "msg": exc.msg}, exc.status, ip)
            if req.headers.get("X-MBX-TIME-UNIT", "").upper() == "MICROSECOND":
                body = _micros(body)
            return self._json(body, 200, ip)
        return serve

    def _json(self, body: Any, status: int, ip: str, extra: dict[str, str] | None = None
              ) -> web.Response:
        used = self.weights.used.get(ip, (0, 0))[1]
        headers = {"X-MBX-USED-WEIGHT-1M": str(used), **(extra or {})}
        return web.Response(text=json.dumps(body, separators=(",", ":")), status=status,
                            content_type="application/json", headers=headers)

    async def _gate(self, ip: str, name: str, req: web.Request) -> web.Response | None:
        """Bans, armed REST faults and the weight limit; None lets the request through."""
        now = time.time()
        banned = self.weights.banned_until.get(ip, 0.0)
        if banned > now:
            return self._banned(ip, banned)
        fault = self.faults.take_rest()
        if fault is not None and fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault is not None and fault.status is not None:
            return self._fault_answer(ip, fault.status, fault.retry_after)
        used, reset_s = self.weights.add(ip, _WEIGHTS[name](req))
        if used <= self.limits.rest_weight_per_min:
            return None
        strikes = self.weights.strikes.get(ip, 0) + 1
        self.weights.strikes[ip] = strikes
        if strikes > self.limits.ban_after_429:
            until = now + self.limits.ban_s
            self.weights.banned_until[ip] = until
            return self._banned(ip, until)
        return self._json({"code": -1003, "msg": (
            f"Too much request weight used; current limit is {self.limits.rest_weight_per_min} "
            "request weight per 1 MINUTE. Please use WebSocket Streams for live updates to "
            "avoid polling the API.")}, 429, ip, {"Retry-After": str(math.ceil(reset_s))})

    def _banned(self, ip: str, until: float) -> web.Response:
        return self._json({"code": -1003, "msg": (
            f"Way too much request weight used; IP banned until {int(until * 1000)}. Please use "
            "WebSocket Streams for live updates to avoid bans.")}, 418, ip,
            {"Retry-After": str(math.ceil(until - time.time()))})

    def _fault_answer(self, ip: str, status: int, retry_after: int | None) -> web.Response:
        extra = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if status in (418, 429):
            msg = "Too much request weight used; injected fault."
            return self._json({"code": -1003, "msg": msg}, status, ip, extra)
        return self._json({"code": -1000, "msg": "An unknown error occurred while processing "
                           "the request."}, status, ip, extra)

    # -- endpoints ---------------------------------------------------------------------------

    def _symbol(self, req: web.Request) -> SymbolState | None:
        """The requested symbol's state (None if listed but without data), or -1102 when it is
        missing, -1100 when malformed (lower case, say) and -1121 when unknown."""
        symbol = req.query.get("symbol", "")
        if not symbol:
            raise _mandatory("symbol")
        self._check_known(_check_symbol(symbol))
        return self.market.symbols.get(symbol)

    def _check_known(self, symbol: str) -> None:
        if not self.info.known(symbol) and symbol not in self.market.symbols:
            raise RestError(-1121, "Invalid symbol.")

    def _chosen(self, req: web.Request, required: bool = False) -> tuple[list[str], bool]:
        """``(symbols, single)`` for endpoints taking ``symbol`` or ``symbols``: one symbol, the
        listed ones, or (unless ``required``) every symbol the exchange serves. Sending both is
        -1128; with ``required`` sending neither is -1102."""
        has_one, has_many = "symbol" in req.query, "symbols" in req.query
        if has_one and has_many:
            raise RestError(-1128, "Combination of optional parameters invalid.")
        if has_one:
            self._symbol(req)
            return [req.query["symbol"]], True
        names = _symbols_param(req)
        if names is None:
            if required:
                raise RestError(-1102, "Param 'symbol' or 'symbols' must be sent, but both "
                                       "were empty/null!")
            return sorted(self.market.symbols), False
        for name in names:
            self._check_known(name)
        return names, False

    def _ping(self, req: web.Request) -> Any:
        return {}

    def _time(self, req: web.Request) -> Any:
        return {"serverTime": self.clock_ms()}

    def _exchangeInfo(self, req: web.Request) -> Any:
        wanted = None
        if "symbol" in req.query or "symbols" in req.query:
            wanted, _ = self._chosen(req)
        for symbol in wanted or ():
            if not self.info.known(symbol):
                raise RestError(-1121, "Invalid symbol.")
        return self.info.answer(wanted, self.clock_ms())

    def _aggTrades(self, req: web.Request) -> Any:
        state = self._symbol(req)
        limit = _limit(req, 500, 1000)
        if state is None:
            return []
        recs = state.aggs
        from_id, (start, end) = _int(req, "fromId"), _times(req)
        if from_id is not None:  # ids are increasing: bisect instead of scanning
            first = bisect_left(recs, from_id, key=lambda r: r.agg_id)
            chosen = recs[first:first + limit]
        elif start is not None or end is not None:
            lo = bisect_left(state.agg_times, start) if start is not None else 0
            hi = bisect_right(state.agg_times, end) if end is not None else len(recs)
            chosen = recs[lo:min(hi, lo + limit)] if start is not None else recs[
                max(lo, hi - limit):hi]
        else:
            chosen = recs[-limit:]
        return [r.rest_row() for r in chosen]

    def _trades(self, req: web.Request) -> Any:
        state = self._symbol(req)
        limit = _limit(req, 500, 1000)
        return state.trades[-limit:] if state is not None else []

    def _historicalTrades(self, req: web.Request) -> Any:
        state = self._symbol(req)
        limit = _limit(req, 500, 1000)
        if state is None:
            return []
        from_id = _int(req, "fromId")
        if from_id is None:
            return state.trades[-limit:]
        first = bisect_left(state.trades, from_id, key=lambda t: t["id"])
        return state.trades[first:first + limit]

    def _depth(self, req: web.Request) -> Any:
        state = self._symbol(req)
        limit = _limit(req, 100, 5000)
        if state is None:
            return {"lastUpdateId": 0, "bids": [], "asks": []}
        return state.current_book().top(limit)

    def _klines(self, req: web.Request) -> Any:
        state = self._symbol(req)
        interval = req.query.get("interval", "")
        if not interval:
            raise _mandatory("interval")
        if interval not in KLINE_INTERVAL_MS:
            raise RestError(-1120, "Invalid interval.")
        limit = _limit(req, 500, 1000)
        if state is None:
            return []
        start, end = _times(req)
        stream = f"{state.symbol.lower()}@kline_{interval}"
        if stream in state.recorded:
            return recorded_kline_rows(self.market.history.events(stream), start, end, limit)
        if not state.aggs:
            return []
        return kline_rows(state, interval, start, end, limit)

    _uiKlines = _klines

    def _avgPrice(self, req: web.Request) -> Any:
        state = self._symbol(req)
        if state is None or not state.aggs:
            return {"mins": 5, "price": "0.00000000", "closeTime": 0}
        now = state.aggs[-1].time
        window, _ = state.window(now - 300_000, now)
        avg = stats.avg_price(state.symbol, now, window)
        return {"mins": 5, "price": avg["w"], "closeTime": avg["T"]}

    def _each(self, req: web.Request, row: Callable[[str, SymbolState | None], Any],
              required: bool = False) -> Any:
        """``row`` of the one requested symbol, or the list of rows of the chosen symbols."""
        names, single = self._chosen(req, required)
        rows = [row(n, self.market.symbols.get(n)) for n in names]
        return rows[0] if single else rows

    def _ticker_24hr(self, req: web.Request) -> Any:
        mini = _ticker_type(req)
        return self._each(req, lambda name, state: rest_ticker(name, state, mini))

    def _ticker(self, req: web.Request) -> Any:
        """rest-api.md "Rolling window price change statistics"."""
        mini, window_ms = _ticker_type(req), _window_ms(req)
        count = len(_symbols_param(req) or ())
        if count > _MAX_ROLLING_SYMBOLS:
            raise RestError(-1101, f"Too many parameters; expected '{_MAX_ROLLING_SYMBOLS}' and "
                                   f"received '{count}'.")
        return self._each(req, lambda name, state: rolling_ticker(name, state, window_ms, mini),
                          required=True)

    def _ticker_price(self, req: web.Request) -> Any:
        """rest-api.md "Symbol price ticker": the last trade's price."""
        def row(name: str, state: SymbolState | None) -> Any:
            aggs = state.aggs if state is not None else []
            return {"symbol": name, "price": aggs[-1].p if aggs else _ZERO}
        return self._each(req, row)

    def _ticker_bookTicker(self, req: web.Request) -> Any:
        """rest-api.md "Symbol order book ticker": the best bid and ask now."""
        return self._each(req, self._book_ticker_row)

    def _book_ticker_row(self, symbol: str, state: SymbolState | None) -> Any:
        """From the order book, or from the last ``@bookTicker`` event when that is newer (a
        recording may carry book tickers but no depth)."""
        bid: tuple[str, str] | None = None
        ask: tuple[str, str] | None = None
        book_id = 0
        if state is not None:
            book = state.current_book()
            book_id = book.last_update_id
            bid, ask = book.best()
        stream = f"{symbol.lower()}@bookTicker"
        if self.market.history.count(stream):
            last = self.market.history.events(stream)[-1]
            if last["u"] > book_id:
                bid, ask = (last["b"], last["B"]), (last["a"], last["A"])
        (bid_p, bid_q), (ask_p, ask_q) = bid or (_ZERO, _ZERO), ask or (_ZERO, _ZERO)
        return {"symbol": symbol, "bidPrice": bid_p, "bidQty": bid_q, "askPrice": ask_p,
                "askQty": ask_q}


_TIME_KEYS = frozenset({"T", "time", "serverTime", "openTime", "closeTime"})


def _micros(body: Any) -> Any:
    """``body`` with its times in microseconds (header ``X-MBX-TIME-UNIT: MICROSECOND``)."""
    if isinstance(body, dict):
        return {k: v * 1000 if k in _TIME_KEYS and isinstance(v, int) else
                _micros(v) if k != "symbols" else v for k, v in body.items()}
    if isinstance(body, list) and body and isinstance(body[0], list):
        return [[r[0] * 1000, *r[1:6], r[6] * 1000, *r[7:]] for r in body]  # kline rows
    if isinstance(body, list):
        return [_micros(v) for v in body]
    return body


_FULL = (("symbol", "s"), ("priceChange", "p"), ("priceChangePercent", "P"),
         ("weightedAvgPrice", "w"), ("prevClosePrice", "x"), ("lastPrice", "c"),
         ("lastQty", "Q"), ("bidPrice", "b"), ("bidQty", "B"), ("askPrice", "a"),
         ("askQty", "A"), ("openPrice", "o"), ("highPrice", "h"), ("lowPrice", "l"),
         ("volume", "v"), ("quoteVolume", "q"), ("openTime", "O"), ("closeTime", "C"),
         ("firstId", "F"), ("lastId", "L"), ("count", "n"))
_MINI = ("symbol", "openPrice", "highPrice", "lowPrice", "lastPrice", "volume", "quoteVolume",
         "openTime", "closeTime", "firstId", "lastId", "count")


_ROLLING = (("symbol", "s"), ("priceChange", "p"), ("priceChangePercent", "P"),
            ("weightedAvgPrice", "w"), ("openPrice", "o"), ("highPrice", "h"),
            ("lowPrice", "l"), ("lastPrice", "c"), ("volume", "v"), ("quoteVolume", "q"),
            ("openTime", "O"), ("closeTime", "C"), ("firstId", "F"), ("lastId", "L"),
            ("count", "n"))


def rolling_ticker(symbol: str, state: SymbolState | None, window_ms: int, mini: bool
                   ) -> dict[str, Any]:
    """The REST ``ticker`` object of ``symbol`` over ``window_ms``: ``openTime`` on a minute,
    ``closeTime`` now (the last trade), so the window is up to 59999 ms wider (rest-api.md
    "Rolling window price change statistics"); zeros and ids -1 without trades in it."""
    row: dict[str, Any] = {rest: _ZERO for rest, _ in _ROLLING}
    row.update(symbol=symbol, priceChangePercent="0.000", openTime=0, closeTime=0, firstId=-1,
               lastId=-1, count=0)
    if state is not None and state.aggs:
        now = state.aggs[-1].time
        open_ms = (now - window_ms) // 60_000 * 60_000
        trades, before = state.window(open_ms - 1, now)  # open_ms <= T <= now
        if trades:
            event = stats.ticker(symbol, now, trades, before, (None, None))
            event.update(O=open_ms, C=now)
            row = {rest: event[ws] for rest, ws in _ROLLING}
    return {k: row[k] for k in _MINI} if mini else row


def rest_ticker(symbol: str, state: SymbolState | None, mini: bool) -> dict[str, Any]:
    """The REST ``ticker/24hr`` object of ``symbol`` (zeros and ids -1 without trades)."""
    if state is not None and state.aggs:
        now = state.aggs[-1].time
        window, before = state.window(now - stats.DAY_MS, now)
        event = stats.ticker(symbol, now, window, before, state.current_book().best())
        row = {rest: event[ws] for rest, ws in _FULL}
    else:
        zero = "0.00000000"
        row = {rest: zero for rest, _ in _FULL}
        row.update(symbol=symbol, priceChangePercent="0.000", openTime=0, closeTime=0,
                   firstId=-1, lastId=-1, count=0)
    return {k: row[k] for k in _MINI} if mini else row


def recorded_kline_rows(events: list[Any], start: int | None, end: int | None, limit: int
                        ) -> list[list[Any]]:
    """REST kline rows from replayed kline events: the latest update of each candle."""
    latest: dict[int, dict[str, Any]] = {}
    for event in events:
        latest[event["k"]["t"]] = event["k"]
    ks = [k for t, k in sorted(latest.items())
          if (start is None or t >= start) and (end is None or t <= end)]
    ks = ks[:limit] if start is not None else ks[-limit:]
    return [[k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"], k["q"], k["n"], k["V"],
             k["Q"], "0"] for k in ks]


def kline_rows(state: SymbolState, interval: str, start: int | None, end: int | None,
               limit: int) -> list[list[Any]]:
    """REST kline rows of ``state``'s trades: oldest first from ``start``, else the most recent
    ``limit`` up to ``end``; empty buckets between trades are flat at the previous close.

    Candles are selected by open time, ``start <= openTime <= end`` (rest-api.md
    "Kline/Candlestick data": klines are uniquely identified by their open time). The candles
    that exist run from the one holding the first trade to the one holding the last: the first
    opens before its first trade, so the bounds are clamped to open times, never to trade times
    (clamping ``start`` to the first trade made ``startTime = endTime =`` the first candle's
    open time answer ``[]``).
    """
    first_open = stats.bucket_bounds(state.agg_times[0], interval)[0]
    last_open = stats.bucket_bounds(state.agg_times[-1], interval)[0]
    lo = max(start, first_open) if start is not None else first_open
    hi = min(end, last_open) if end is not None else last_open
    buckets: list[tuple[int, int]] = []
    if start is not None:
        b = stats.bucket_bounds(lo, interval)
        if b[0] < lo:  # ``start`` inside a candle: that candle opened before it
            b = stats.bucket_bounds(b[1] + 1, interval)
        while b[0] <= hi and len(buckets) < limit:
            buckets.append(b)
            b = stats.bucket_bounds(b[1] + 1, interval)
    elif hi >= lo:
        b = stats.bucket_bounds(hi, interval)  # the candle holding ``end`` opened at or before it
        while b[0] >= lo and len(buckets) < limit:
            buckets.append(b)
            b = stats.bucket_bounds(b[0] - 1, interval)
        buckets.reverse()
    if not buckets:
        return []
    rows = []
    before = bisect_left(state.agg_times, buckets[0][0])
    close = state.aggs[before - 1].p if before else state.aggs[0].p
    for b in buckets:
        row = stats.kline_row(b, state.bucket(b), close)
        close = row[4]
        rows.append(row)
    return rows
