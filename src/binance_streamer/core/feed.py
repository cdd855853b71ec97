"""Stored rows back into Binance's combined-stream frames, keys in the order Binance sends them.

Shapes and key order follow web-socket-streams.md (binance/binance-spot-api-docs), section by
section: "Aggregate Trade Streams", "Trade Streams", "Block Trade Streams", "Kline/Candlestick
Streams", "Individual Symbol Mini Ticker Stream", "Individual Symbol Ticker Streams",
"Individual Symbol Rolling Window Statistics Streams", "Individual Symbol Book Ticker Streams",
"Average Price", "Reference Price Streams", "Partial Book Depth Streams" and "Diff. Depth Stream".
Combined frames are ``{"stream":<name>,"data":<payload>}`` ("General WSS information").
The kline's ``B`` field ("Ignore") is not stored; Binance sends ``"0"`` there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

__all__ = ["FRAME_BUILDERS", "frame_line"]

Row = tuple[Any, ...]
Payload = tuple[str, dict[str, Any]]  # (stream name suffix after the symbol, payload)
_encode = msgspec.json.Encoder().encode


def _b(value: Any) -> Any:
    return value if value is None else bool(value)  # SQLite stores booleans as 0/1


def _agg_trade(r: Row) -> Payload:
    s, a, p, q, f, lt, t, m, mm, e = r[:10]
    return "aggTrade", {"e": "aggTrade", "E": e, "s": s, "a": a, "p": p, "q": q, "f": f,
                        "l": lt, "T": t, "m": _b(m), "M": _b(mm)}


def _trade(r: Row) -> Payload:
    s, t, p, q, tt, m, mm, e = r[:8]
    return "trade", {"e": "trade", "E": e, "s": s, "t": t, "p": p, "q": q, "T": tt,
                     "m": _b(m), "M": _b(mm)}


def _block_trade(r: Row) -> Payload:
    s, t, p, q, tt, m, e = r[:7]
    return "blockTrade", {"e": "blockTrade", "E": e, "s": s, "t": t, "p": p, "q": q, "T": tt,
                          "m": _b(m)}


def _kline(r: Row) -> Payload:
    (s, i, t, tt, f, lt, o, c, h, low, v, n, x, q, vv, qq, e) = r[:17]
    k = {"t": t, "T": tt, "s": s, "i": i, "f": f, "L": lt, "o": o, "c": c, "h": h, "l": low,
         "v": v, "n": n, "x": _b(x), "q": q, "V": vv, "Q": qq, "B": "0"}
    return f"kline_{i}", {"e": "kline", "E": e, "s": s, "k": k}


def _stats(r: Row) -> dict[str, Any]:
    o, h, low, v, q, oo, cc, ff, ll, n = r
    return {"o": o, "h": h, "l": low, "v": v, "q": q, "O": oo, "C": cc, "F": ff, "L": ll, "n": n}


def _ticker(r: Row) -> Payload:
    s, e, p, pp, w, x, c, qq, b, bb, a, aa = r[:12]
    return "ticker", {"e": "24hrTicker", "E": e, "s": s, "p": p, "P": pp, "w": w, "x": x,
                      "c": c, "Q": qq, "b": b, "B": bb, "a": a, "A": aa, **_stats(r[12:22])}


def _window_ticker(r: Row) -> Payload:
    s, window, e, p, pp, w, c = r[:7]
    st = _stats(r[7:17])
    payload = {"e": f"{window}Ticker", "E": e, "s": s, "p": p, "P": pp, "o": st.pop("o"),
               "h": st.pop("h"), "l": st.pop("l"), "c": c, "w": w, **st}
    return f"ticker_{window}", payload


def _mini_ticker(r: Row) -> Payload:
    s, e, c, o, h, low, v, q = r[:8]
    return "miniTicker", {"e": "24hrMiniTicker", "E": e, "s": s, "c": c, "o": o, "h": h,
                          "l": low, "v": v, "q": q}


def _book_ticker(r: Row) -> Payload:
    s, u, b, bb, a, aa = r[:6]
    return "bookTicker", {"u": u, "s": s, "b": b, "B": bb, "a": a, "A": aa}


def _avg_price(r: Row) -> Payload:
    s, e, i, w, t = r[:5]
    return "avgPrice", {"e": "avgPrice", "E": e, "s": s, "i": i, "w": w, "T": t}


def _reference_price(r: Row) -> Payload:
    s, t, price = r[:3]
    return "referencePrice", {"e": "referencePrice", "s": s, "r": price, "t": t}


def _partial_depth(r: Row) -> Payload:
    _, levels, u, bids, asks = r[:5]
    return f"depth{levels}", {"lastUpdateId": u, "bids": msgspec.Raw(bids.encode()),
                              "asks": msgspec.Raw(asks.encode())}


def _depth_update(r: Row) -> Payload:
    s, first, final, e, bids, asks = r[:6]
    return "depth", {"e": "depthUpdate", "E": e, "s": s, "U": first, "u": final,
                     "b": msgspec.Raw(bids.encode()), "a": msgspec.Raw(asks.encode())}


FRAME_BUILDERS: dict[str, Callable[[Row], Payload]] = {
    "agg_trade": _agg_trade, "trade": _trade, "block_trade": _block_trade, "kline": _kline,
    "ticker": _ticker, "window_ticker": _window_ticker, "mini_ticker": _mini_ticker,
    "book_ticker": _book_ticker, "avg_price": _avg_price, "reference_price": _reference_price,
    "partial_depth": _partial_depth, "depth_update": _depth_update,
}
"""Per market table (all but ``depth_snapshot``, a REST answer): row -> (stream suffix, payload)."""


def frame_line(table: str, row: Row, received_ns: int, speed: str = "") -> bytes:
    """One feed line: ``<received_ns> <combined-stream frame>\\n`` for ``row`` of ``table``;
    ``speed`` (``@100ms`` or empty) completes depth stream names, which rows do not hold."""
    suffix, payload = FRAME_BUILDERS[table](row)
    if table in ("partial_depth", "depth_update"):
        suffix += speed
    stream = f"{row[0].lower()}@{suffix}"
    return b"%d %s\n" % (received_ns, _encode({"stream": stream, "data": payload}))
