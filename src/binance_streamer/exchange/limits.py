"""Binance's documented limits, as one value object that tests can shrink.

Values from web-socket-streams.md ("WebSocket Limits") and rest-api.md ("LIMITS": "IP Limits",
429 and 418 with ``Retry-After``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Every limit the local exchange enforces.

    ``max_incoming_per_s`` counts pings, pongs and control messages in a sliding one-second window;
    going over closes the connection with 1008. ``connect_attempts`` per ``connect_window_s`` is
    per client IP. ``rest_weight_per_min`` is the REQUEST_WEIGHT budget per IP per minute; after
    ``ban_after_429`` further requests while limited the IP gets 418 for ``ban_s`` seconds.
    ``max_pending_bytes`` is how far a connection may fall behind before it is dropped.
    """

    max_streams_per_connection: int = 1024
    max_incoming_per_s: int = 5
    ping_interval_s: float = 20.0
    pong_timeout_s: float = 60.0
    lifetime_s: float = 86_400.0
    connect_attempts: int = 300
    connect_window_s: float = 300.0
    rest_weight_per_min: int = 6000
    rest_window_s: float = 60.0
    ban_after_429: int = 5
    ban_s: float = 120.0
    max_pending_bytes: int = 512 * 1024 * 1024
