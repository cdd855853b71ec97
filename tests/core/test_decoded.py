"""`Decoded` is a plain slotted class for speed: it still compares and prints like a value."""

from __future__ import annotations

from binance_streamer.core.decoding import Decoded, FrameDecoder

FRAME = (b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"BTCUSDT","a":7,'
         b'"p":"1.0","q":"2.0","f":1,"l":1,"T":1,"m":true,"M":true}}')


def test_decoded_compares_by_value_and_prints_its_parts() -> None:
    decoder = FrameDecoder()
    first, second = decoder.decode(FRAME), decoder.decode(FRAME)
    assert type(first) is Decoded and first == second and first != (first.route, first.event)
    assert repr(first).startswith("Decoded(route=Route(stream=") and "AggTrade(" in repr(first)
