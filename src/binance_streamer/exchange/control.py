"""Live control messages of a market-stream connection: SUBSCRIBE, UNSUBSCRIBE,
LIST_SUBSCRIPTIONS, SET_PROPERTY and GET_PROPERTY (web-socket-streams.md "Live
Subscribing/Unsubscribing to streams", "Error Messages"). Pure: text in, reply and changes out.

Errors go on the wire as ``{"error":{"code":N,"msg":".."},"id":ID}`` (observed in practice; the
docs print the inner object). Codes: 0 unknown property, 1 bad value type, 2 invalid request
(also "invalid stream"), 3 invalid JSON, 4 too many subscriptions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from binance_streamer.core.streams import InvalidStreamName, parse_stream

__all__ = ["ControlResult", "SessionState", "handle_control", "is_valid_stream"]

METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
# web-socket-streams.md "Live Subscribing/Unsubscribing to streams": an ``id`` is a 64-bit signed
# integer, an alphanumeric string of at most 36 characters, or null. The CHANGELOG entry that
# introduced string ids says they are "the same values as used for id in the WebSocket API", whose
# docs (web-socket-api.md) suggest UUIDs: 36 characters with hyphens, as the official connector
# (binance-sdk-spot) sends them. So hyphens count; anything else fails with code 2.
_ID_STR = re.compile(r"[A-Za-z0-9-]{1,36}")
# Stream types Binance documents that core.streams does not parse (yet).
_EXTRA = re.compile(r"^([a-z0-9_\-.]{1,30}@(blockTrade|referencePrice)|!ticker_(1h|4h|1d)@arr)$")
_INT64 = 2**63


def is_valid_stream(name: object) -> bool:
    """True if Binance accepts the stream name, i.e. would not answer ``invalid stream``.

    An upper-case symbol is accepted (and then gets no data), as Binance does.
    """
    if not isinstance(name, str) or not name:
        return False
    for candidate in (name, _lower_symbol(name)):
        try:
            parse_stream(candidate)
            return True
        except InvalidStreamName:
            pass
    return bool(_EXTRA.fullmatch(name) or _EXTRA.fullmatch(_lower_symbol(name)))


def _lower_symbol(name: str) -> str:
    symbol, sep, rest = name.partition("@")
    return symbol.lower() + sep + rest


@dataclass(slots=True)
class SessionState:
    """What a connection has subscribed (in order) and its ``combined`` property."""

    subscriptions: dict[str, None] = field(default_factory=dict)
    combined: bool = False


@dataclass(slots=True)
class ControlResult:
    """The reply to send and the subscription changes to apply to the hub."""

    reply: dict[str, Any]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _error(code: int, msg: str, req_id: Any = None) -> ControlResult:
    return ControlResult({"error": {"code": code, "msg": msg}, "id": req_id})


def _valid_id(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -_INT64 <= value < _INT64
    return isinstance(value, str) and bool(_ID_STR.fullmatch(value))


def handle_control(text: str, state: SessionState, max_streams: int) -> ControlResult:
    """Apply one client text message to ``state`` and return Binance's reply."""
    try:
        msg = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        line, col = (exc.lineno, exc.colno) if isinstance(exc, json.JSONDecodeError) else (1, 1)
        return _error(3, f"Invalid JSON: expected value at line {line} column {col}")
    if not isinstance(msg, dict):
        return _error(2, "Invalid request: expected a JSON object")
    req_id = msg.get("id")
    if "id" not in msg or not _valid_id(req_id):
        return _error(2, "Invalid request: request ID must be an unsigned integer")
    method = msg.get("method")
    if "method" not in msg:
        return _error(2, f"Invalid request: missing field `method` at line 1 column {len(text)}",
                      req_id)
    if method not in METHODS:
        return _unknown_method(text, method, req_id)
    params = msg.get("params", [])
    if not isinstance(params, list):
        return _error(2, "Invalid request: params must be an array", req_id)
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        return _subscription(method, params, state, max_streams, req_id)
    if method == "LIST_SUBSCRIPTIONS":
        if params:
            return _error(2, "Invalid request: too many parameters", req_id)
        return ControlResult({"result": list(state.subscriptions), "id": req_id})
    return _property(method, params, state, req_id)


def _unknown_method(text: str, method: Any, req_id: Any) -> ControlResult:
    shown = json.dumps(method)
    pos = text.find(shown)
    col = pos + len(shown) if pos >= 0 else len(text)
    variant = method if isinstance(method, str) else shown
    return _error(2, f"Invalid request: unknown variant `{variant}`, expected one of "
                     "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, "
                     f"`GET_PROPERTY` at line 1 column {col}", req_id)


def _subscription(method: str, params: list[Any], state: SessionState, max_streams: int,
                  req_id: Any) -> ControlResult:
    if not all(is_valid_stream(p) for p in params):
        return _error(2, "Invalid request: invalid stream", req_id)
    subs = state.subscriptions
    if method == "UNSUBSCRIBE":
        removed = [p for p in dict.fromkeys(params) if p in subs]
        for p in removed:
            del subs[p]
        return ControlResult({"result": None, "id": req_id}, removed=removed)
    added = [p for p in dict.fromkeys(params) if p not in subs]
    if len(subs) + len(added) > max_streams:
        return _error(4, "Too many subscriptions", req_id)
    for p in added:
        subs[p] = None
    return ControlResult({"result": None, "id": req_id}, added=added)


def _property(method: str, params: list[Any], state: SessionState, req_id: Any
              ) -> ControlResult:
    wanted = 2 if method == "SET_PROPERTY" else 1
    if len(params) > wanted:
        return _error(2, "Invalid request: too many parameters", req_id)
    if not params or not isinstance(params[0], str):
        return _error(2, "Invalid request: property name must be a string", req_id)
    if params[0] != "combined":
        return _error(0, "Unknown property", req_id)
    if method == "GET_PROPERTY":
        return ControlResult({"result": state.combined, "id": req_id})
    if len(params) < 2 or not isinstance(params[1], bool):
        return _error(1, "Invalid value type: expected Boolean", req_id)
    state.combined = params[1]
    return ControlResult({"result": None, "id": req_id})
