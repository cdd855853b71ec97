"""Stored rows as Arrow tables with real types: what Parquet export and `read` produce.

Decimal strings become ``decimal128(38, 8)`` (Binance sends at most 8 decimals; 30 integer
digits) or ``float64``; exchange times ``timestamp[ms|us, UTC]`` in the database's unit; receive
times (integer ns) ``timestamp[ns, UTC]``; booleans stay booleans, integers are int64, and depth
levels stay the JSON text Binance sent. pyarrow is imported only here, lazily.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from binance_streamer.core.tables import TableSpec
from binance_streamer.errors import ConfigError, MissingExtra

__all__ = ["DECIMAL_SCALE", "arrow_schema", "cast_batch", "pyarrow", "to_table"]

DECIMAL_SCALE = 8
_TEXT = frozenset({"symbol", "interval", "window", "source", "bids", "asks"})
_EXCHANGE_TIMES = frozenset({"event_time", "trade_time", "open_time", "close_time",
                             "last_trade_time", "time", "updated_time"})


def pyarrow() -> ModuleType:
    """The pyarrow module, or `MissingExtra` naming the ``parquet`` extra."""
    try:
        return importlib.import_module("pyarrow")
    except ImportError as exc:
        raise MissingExtra("Parquet export and DataFrames", "parquet") from exc


def column_type(name: str, kind: str, unit: str, as_float: bool) -> Any:
    """The Arrow type of stored column ``name`` of SQL type ``kind``."""
    pa = pyarrow()
    if kind == "BOOLEAN":
        return pa.bool_()
    if kind == "INTEGER":
        if name == "received_ns":
            return pa.timestamp("ns", tz="UTC")
        return pa.timestamp(unit, tz="UTC") if name in _EXCHANGE_TIMES else pa.int64()
    if name in _TEXT:
        return pa.string()
    return pa.float64() if as_float else pa.decimal128(38, DECIMAL_SCALE)


def arrow_schema(spec: TableSpec, unit: str = "ms", as_float: bool = False) -> Any:
    """The Arrow schema of ``spec``'s rows (``unit``: ``ms`` or ``us`` exchange times)."""
    pa = pyarrow()
    return pa.schema([(c, column_type(c, k, unit, as_float)) for c, k in spec.columns])


def to_table(rows: Sequence[tuple[Any, ...]], schema: Any) -> Any:
    """A pyarrow Table of ``rows`` (tuples in ``schema``'s column order) with ``schema``'s types.

    `ConfigError` when a decimal has more digits than ``decimal128(38, 8)`` holds."""
    pa = pyarrow()
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    arrays = [_array(pa, list(col), field.type) for col, field in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def _array(pa: ModuleType, values: list[Any], typ: Any) -> Any:
    if pa.types.is_boolean(typ):
        try:
            return pa.array(values, pa.bool_())
        except pa.ArrowInvalid:  # SQLite's 0/1
            return pa.array(values, pa.int8()).cast(pa.bool_())
    if pa.types.is_decimal(typ) or pa.types.is_floating(typ):
        text = pa.array(values, pa.string())
        try:
            return text.cast(typ)
        except pa.ArrowInvalid as exc:
            raise ConfigError(f"a decimal does not fit {typ} ({exc}); export with --float "
                              "for float64 values") from exc
    return pa.array(values, typ)


def cast_batch(batch: Any, schema: Any) -> Any:
    """A RecordBatch of stored values (int64, string, booleans as 0/1) cast to ``schema``."""
    pa = pyarrow()
    arrays = []
    for column, field in zip(batch.columns, schema, strict=True):
        if pa.types.is_boolean(field.type) and not pa.types.is_boolean(column.type):
            column = column.cast(pa.int8())
        try:
            arrays.append(column.cast(field.type))
        except pa.ArrowInvalid as exc:
            raise ConfigError(f"{field.name}: a value does not fit {field.type} ({exc}); "
                              "export with --float for float64 values") from exc
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
