"""Decoding real Binance frames: every field lands in its column exactly as sent."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binance_streamer.core import decoding
from binance_streamer.core.decoding import ControlReply, Decoded, FrameDecoder, Reject, Shutdown
from binance_streamer.core.tables import TABLE_FOR_KIND
from tests.helpers import KEYS, KLINE_KEYS, frames


def expected_value(payload: dict[str, object], column: str, key: str) -> object:
    value = payload.get(key)
    if column in ("bids", "asks"):
        return json.dumps(value, separators=(",", ":"))
    return value


def decode_rows(name: str) -> list[tuple[dict[str, object], dict[str, object]]]:
    """(source payload, stored row as a dict) for every frame of fixture ``name``."""
    decoder = FrameDecoder()
    pairs = []
    for raw in frames(name):
        out = decoder.decode(raw)
        assert isinstance(out, Decoded), out
        cols = out.route.table.column_names
        for row in out.route.rows(out.event, 123, "ws"):
            pairs.append((json.loads(raw)["data"], dict(zip(cols, row, strict=True))))
    return pairs


def test_agg_trades_keep_every_field() -> None:
    """Every aggTrade field of 400 real frames is stored exactly as Binance sent it."""
    pairs = decode_rows("binance_spot_aggTrade.head400.jsonl")
    assert len(pairs) == 400
    for payload, row in pairs:
        assert {c: row[c] for c in KEYS["agg_trade"]} == {
            c: payload[k] for c, k in KEYS["agg_trade"].items()}
        assert (row["received_ns"], row["source"]) == (123, "ws")


def test_singletons_keep_every_field() -> None:
    """The real trade, 24 h ticker and miniTicker frames keep all fields, exact strings included."""
    for name, table in [("binance_spot_trade.singletons.jsonl", "trade"),
                        ("binance_spot_24hrTicker.singletons.jsonl", "ticker"),
                        ("binance_spot_miniTicker.singletons.jsonl", "mini_ticker")]:
        [(payload, row)] = decode_rows(name)
        assert {c: row[c] for c in KEYS[table]} == {
            c: payload.get(k) for c, k in KEYS[table].items()}


def test_book_tickers_and_depth_keep_every_field() -> None:
    """bookTicker rows and diff-depth rows (levels kept as the exact JSON text) equal the source."""
    for name, table in [("binance_spot_bookTicker.head300.jsonl", "book_ticker"),
                        ("binance_spot_depthUpdate_100ms.head600.jsonl", "depth_update")]:
        for payload, row in decode_rows(name):
            assert {c: row[c] for c in KEYS[table]} == {
                c: expected_value(payload, c, k) for c, k in KEYS[table].items()}


def test_klines_flatten_the_k_object() -> None:
    """Kline rows hold every field of the nested ``k`` object plus symbol and event time."""
    for payload, row in decode_rows("binance_spot_kline_1m.0404.jsonl"):
        k = payload["k"]
        assert isinstance(k, dict)
        assert {c: row[c] for c in KLINE_KEYS} == {c: k[key] for c, key in KLINE_KEYS.items()}
        assert (row["symbol"], row["event_time"]) == (payload["s"], payload["E"])


def test_all_market_mini_tickers_become_one_row_each() -> None:
    """A ``!miniTicker@arr`` frame (a bare array, wrapped as on /stream) gives a row per symbol."""
    bare = frames("binance_spot_miniTicker_arr.singletons.jsonl")[0]
    wrapped = b'{"stream":"!miniTicker@arr","data":' + bare + b"}"
    out = FrameDecoder().decode(wrapped)
    assert isinstance(out, Decoded)
    rows = out.route.rows(out.event, None, "ws")
    assert [r[0] for r in rows] == [e["s"] for e in json.loads(bare)]
    assert out.route.table is TABLE_FOR_KIND[out.route.stream.kind]


def test_partial_depth_takes_symbol_and_levels_from_the_stream_name() -> None:
    """Partial depth has no symbol in its payload; the stream name supplies it."""
    frame = (b'{"stream":"bnbbtc@depth5@100ms","data":{"lastUpdateId":160,'
             b'"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}}')
    out = FrameDecoder().decode(frame)
    assert isinstance(out, Decoded)
    assert out.route.rows(out.event, 1, "ws") == [
        ("BNBBTC", 5, 160, '[["0.0024","10"]]', '[["0.0026","100"]]', 1, "ws")]


def test_control_replies_and_shutdown_are_recognised() -> None:
    """SUBSCRIBE replies, error replies and both serverShutdown forms decode to their types."""
    d = FrameDecoder()
    assert d.decode(b'{"result":null,"id":1}') == ControlReply(1, None, None)
    err = d.decode(b'{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":2}')
    assert isinstance(err, ControlReply) and err.error["code"] == 2
    assert d.decode(b'{"e":"serverShutdown","E":1770123456789}') == Shutdown(1770123456789)
    wrapped = b'{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}'
    assert d.decode(wrapped) == Shutdown(1770123456789)


def test_bad_frames_become_rejects_with_reasons() -> None:
    """Truncated, malformed, unknown-stream and wrong-shape frames are rejects, never exceptions."""
    d = FrameDecoder()
    good = frames("binance_spot_aggTrade.head400.jsonl")[0]
    cases = {
        good[:40]: "malformed aggTrade",
        b"not json": "invalid JSON",
        b'{"stream":"btcusdt@nonsense","data":{}}': "unknown stream",
        b'{"stream":"btcusdt@ticker","data":{"e":"24hrTicker"}}': "malformed ticker",
        b"[1,2,3]": "not a combined-stream frame",
        b'{"e":"24hrTicker","E":1}': "not a combined-stream frame",
        b'{"e":"serverShutdown","E":"soon"}': "not a combined-stream frame",
        b'{"stream":"!serverShutdown","data":{"e":"serverShutdown"}}': "malformed serverShutdown",
    }
    for raw, reason in cases.items():
        out = d.decode(raw)
        assert isinstance(out, Reject) and out.reason.startswith(reason) and out.raw == raw


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.builds(
    lambda s, b: b'{"stream":"' + s.encode() + b'","data":' + b,
    st.sampled_from(["btcusdt@aggTrade", "btcusdt@ticker", "x@depth", "!serverShutdown", ""]),
    st.binary(max_size=200)))
def test_no_input_crashes_the_decoder(raw: bytes) -> None:
    """Any bytes at all decode to an outcome, never an exception."""
    out = FrameDecoder().decode(raw)
    assert isinstance(out, Decoded | ControlReply | Shutdown | Reject)


def test_truncating_a_real_frame_anywhere_is_rejected() -> None:
    """Every strict prefix of a real frame is a reject that keeps the bytes."""
    d = FrameDecoder()
    raw = frames("binance_spot_24hrTicker.singletons.jsonl")[0]
    for cut in range(len(raw)):
        out = d.decode(raw[:cut])
        assert isinstance(out, Reject) and out.raw == raw[:cut]
    assert isinstance(d.decode(raw), Decoded)
    assert msgspec.json.decode(raw)["data"]["c"] == "9318.48000000"


def test_routes_are_built_once_per_stream() -> None:
    """route() returns the same cached route for a name, and repr counts the routes built."""
    d = FrameDecoder()
    assert repr(d) == "<FrameDecoder routes=0>"
    assert d.route("btcusdt@trade") is d.route("btcusdt@trade")
    d.decode(frames("binance_spot_aggTrade.head400.jsonl")[0])
    assert repr(d) == "<FrameDecoder routes=2>"


def test_streams_of_one_kind_share_their_decoder() -> None:
    """Every stream of one kind decodes with the same decoder; other kinds with their own."""
    d = FrameDecoder()
    assert d.route("btcusdt@aggTrade").decoder is d.route("ethusdt@aggTrade").decoder
    assert d.route("btcusdt@aggTrade").decoder is not d.route("btcusdt@trade").decoder


def test_past_the_cache_bound_new_streams_still_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the route caches are full, frames of further streams decode all the same, their
    routes built anew each time instead of cached."""
    monkeypatch.setattr(decoding, "_MAX_ROUTES", 1)
    d = FrameDecoder()
    first = frames("binance_spot_aggTrade.head400.jsonl")[0]
    other = first.replace(first[11:first.index(b'"', 11)], b"zzzusdt@aggTrade")
    assert other != first and other.startswith(b'{"stream":"zzzusdt@aggTrade"')
    outs = [d.decode(f) for f in (first, other, other, first)]
    assert all(isinstance(o, Decoded) for o in outs)
    assert [o.route.stream.name for o in outs if isinstance(o, Decoded)] == [
        "btcusdt@aggTrade", "zzzusdt@aggTrade", "zzzusdt@aggTrade", "btcusdt@aggTrade"]
    assert repr(d) == "<FrameDecoder routes=1>"
