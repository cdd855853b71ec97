"""The exception tree of binance-streamer; library exceptions are translated at the adapter edge.

::

    StreamerError
    ├── ConfigError            bad input from the user; the CLI exits with code 2
    │   └── UnknownSymbolError     symbols exchangeInfo does not list, or not TRADING
    ├── StorageError           the database refused a write
    │   ├── StorageBusy            locked by another process: retried with back-off
    │   └── StorageFatal           disk full, read-only, unwritable path: a clean stop
    └── ExchangeError          the exchange answered with an error
        ├── RateLimited            HTTP 429/418; ``retry_after`` seconds from Retry-After
        └── Unreachable            no connection could be made (retried, then reported)
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ExchangeError",
    "RateLimited",
    "StorageBusy",
    "StorageError",
    "StorageFatal",
    "StreamerError",
    "UnknownSymbolError",
    "Unreachable",
]


class StreamerError(Exception):
    """Base of every error binance-streamer raises on purpose."""


class ConfigError(StreamerError):
    """The user asked for something impossible (bad stream name, bad option)."""


class UnknownSymbolError(ConfigError):
    """Symbols that the exchange does not list or that are not trading."""

    def __init__(self, symbols: list[str], detail: str = "") -> None:
        self.symbols = symbols
        msg = f"unknown or non-trading symbol(s): {', '.join(symbols)}"
        super().__init__(msg + (f" ({detail})" if detail else ""))


class StorageError(StreamerError):
    """A database write failed."""


class StorageBusy(StorageError):
    """The database is locked by another writer; retrying later can succeed."""


class StorageFatal(StorageError):
    """The database cannot be written (disk full, read-only, bad path); stop cleanly."""


class ExchangeError(StreamerError):
    """The exchange answered with an error (HTTP status and Binance ``code``/``msg``)."""

    def __init__(self, status: int, code: int | None, msg: str) -> None:
        self.status, self.code, self.msg = status, code, msg
        super().__init__(f"HTTP {status}: {msg}" + (f" (code {code})" if code is not None else ""))


class RateLimited(ExchangeError):
    """HTTP 429 (rate limit) or 418 (IP banned); wait ``retry_after`` seconds."""

    def __init__(self, status: int, retry_after: float, msg: str = "") -> None:
        self.retry_after = retry_after
        super().__init__(status, None, msg or f"rate limited, retry after {retry_after:g}s")


class Unreachable(ExchangeError):
    """No connection to the exchange could be made."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(0, None, f"cannot reach {url}: {reason}")
