"""The exception tree of binance-streamer; library exceptions are translated at the adapter edge.

Every error a user can meet is one of these, and its message says what went wrong and what to do.
The CLI maps them to exit codes: `ConfigError` is bad input (2), everything else is a runtime
failure (1). Whether a failure is worth retrying is decided in one place,
`binance_streamer.core.retry`, from the attributes these errors carry.

::

    StreamerError
    ├── ConfigError                 bad input from the user; the CLI exits with code 2
    │   ├── InvalidStreamName           a stream name or type Binance does not know
    │   ├── UnknownSymbolError          symbols exchangeInfo does not list, or not TRADING
    │   ├── InvalidDatabase             a --db that is not a usable database (wrong scheme,
    │   │                               missing folder, not SQLite, another program's file)
    │   ├── SchemaTooNew                written by a newer binance-streamer
    │   ├── BookUnknown                 no book can be rebuilt at that time (no snapshot, or
    │   │                               a break in the depth chain); names the nearest times
    │   └── MissingExtra                an optional dependency is not installed
    ├── StorageError                the database refused a write
    │   ├── StorageBusy                 locked by another process: retried with back-off
    │   ├── StorageFatal                disk full, read-only, unwritable path: a clean stop
    │   └── DatabaseInUse               another recorder is writing this SQLite file
    └── ExchangeError               the exchange failed us
        ├── RestError                   a REST request answered with an error status
        │   └── RateLimited                 HTTP 429/418; ``retry_after`` from Retry-After
        ├── HandshakeRefused            the WebSocket upgrade was answered with an error status
        ├── Unreachable                 no connection could be made (DNS, refused, timeout)
        ├── BadResponse                 an answer of the wrong shape (not JSON, missing fields)
        ├── IncompleteBackfill          REST returned fewer rows than a gap misses
        └── NoDataReceived              a run ended without data from streams it asked for
"""

from __future__ import annotations

__all__ = [
    "BadResponse",
    "BookUnknown",
    "ConfigError",
    "DatabaseInUse",
    "ExchangeError",
    "HandshakeRefused",
    "IncompleteBackfill",
    "InvalidDatabase",
    "InvalidStreamName",
    "MissingExtra",
    "NoDataReceived",
    "RateLimited",
    "RestError",
    "SchemaTooNew",
    "StorageBusy",
    "StorageError",
    "StorageFatal",
    "StreamerError",
    "UnknownSymbolError",
    "Unreachable",
]


class StreamerError(Exception):
    """Base of every error binance-streamer raises on purpose."""


# -- bad input ---------------------------------------------------------------------------------


class ConfigError(StreamerError):
    """The user asked for something impossible (bad stream name, bad option)."""


class InvalidStreamName(ConfigError, ValueError):
    """A stream name that Binance would reject with ``code 2 invalid stream``."""


class UnknownSymbolError(ConfigError):
    """Symbols that the exchange does not list or that are not trading."""

    def __init__(self, symbols: list[str], detail: str = "") -> None:
        self.symbols = symbols
        msg = f"unknown or non-trading symbol(s): {', '.join(symbols)}"
        super().__init__(msg + (f" ({detail})" if detail else ""))


class InvalidDatabase(ConfigError):
    """``--db`` names something that is not (and cannot become) a binance-streamer database."""


class SchemaTooNew(ConfigError):
    """The database was written by a newer binance-streamer."""

    def __init__(self, found: int, supported: int) -> None:
        self.found, self.supported = found, supported
        super().__init__(f"the database has schema version {found}, newer than this "
                         f"binance-streamer understands ({supported}); upgrade binance-streamer "
                         "(pip install -U binance-streamer)")


class BookUnknown(ConfigError):
    """The recording cannot give a symbol's order book at the asked time; ``earlier`` and
    ``later`` are the nearest times (epoch ms) at which it can, None when there is none."""

    def __init__(self, reason: str, earlier: int | None, later: int | None) -> None:
        self.reason, self.earlier, self.later = reason, earlier, later
        known = [f"{word} {iso_time(ms)} ({ms})" for word, ms in
                 (("until", earlier), ("again from", later)) if ms is not None]
        where = "; the book is known " + " and ".join(known) if known else \
            "; no time at which the book is known"
        super().__init__(reason + where)


def iso_time(ms: int) -> str:
    """Epoch ms as an ISO 8601 UTC date-time with milliseconds."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class MissingExtra(ConfigError):
    """An optional dependency is needed for what was asked (e.g. psycopg for PostgreSQL)."""

    def __init__(self, what: str, extra: str) -> None:
        self.extra = extra
        super().__init__(f"{what} needs the '{extra}' extra: "
                         f"pip install 'binance-streamer[{extra}]'")


# -- storage -----------------------------------------------------------------------------------


class StorageError(StreamerError):
    """A database write failed."""


class StorageBusy(StorageError):
    """The database is locked by another writer; retrying later can succeed."""


class StorageFatal(StorageError):
    """The database cannot be written (disk full, read-only, bad path); stop cleanly."""


class DatabaseInUse(StorageError):
    """Another recorder is already writing this SQLite file."""


# -- the exchange ------------------------------------------------------------------------------


class ExchangeError(StreamerError):
    """The exchange failed us: an error answer, no answer, or an answer we cannot use."""


class RestError(ExchangeError):
    """A REST request answered with an HTTP error status (and Binance's ``code``/``msg``)."""

    def __init__(self, status: int, code: int | None, msg: str, url: str = "") -> None:
        self.status, self.code, self.msg, self.url = status, code, msg, url
        where = f"{url} answered " if url else ""
        detail = f"{msg} (Binance code {code})" if code is not None else msg
        super().__init__(f"{where}HTTP {status}: {detail}")


class RateLimited(RestError):
    """HTTP 429 (rate limit) or 418 (IP banned); wait ``retry_after`` seconds."""

    def __init__(self, status: int, retry_after: float, msg: str = "", url: str = "") -> None:
        self.retry_after = retry_after
        super().__init__(status, None, msg or f"rate limited, retry after {retry_after:g}s", url)


class HandshakeRefused(ExchangeError):
    """The WebSocket upgrade got an HTTP error status instead of ``101 Switching Protocols``."""

    def __init__(self, url: str, status: int, reason: str, retry_after: float | None = None
                 ) -> None:
        self.url, self.status, self.reason, self.retry_after = url, status, reason, retry_after
        super().__init__(f"{url} refused the WebSocket connection: HTTP {status} {reason}".rstrip())


class Unreachable(ExchangeError):
    """No connection to the exchange could be made (or it broke before an answer)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"cannot reach {url}: {reason}")


class BadResponse(ExchangeError):
    """The exchange answered, but not in the shape Binance documents."""


class IncompleteBackfill(ExchangeError):
    """REST returned fewer rows than the gap misses; the gap stays open and is retried."""

    def __init__(self, stream: str, got: int, expected: int, what: str = "rows") -> None:
        self.stream, self.got, self.expected = stream, got, expected
        super().__init__(f"{stream}: REST returned {got} of {expected} {what}; the gap stays "
                         "open and is retried later")


class NoDataReceived(ExchangeError):
    """The run ended without a single message from some of the streams it asked for."""

    def __init__(self, streams: list[str], total: int) -> None:
        self.streams = streams
        shown = ", ".join(streams[:10]) + (f" and {len(streams) - 10} more"
                                           if len(streams) > 10 else "")
        what = "nothing at all" if total == 0 else "nothing from some streams"
        super().__init__(f"received {what}: {shown}")
