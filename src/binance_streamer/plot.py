"""Charts of a recording: candles (or a close-price line) with a volume panel, and optionally a
depth heat map of the rebuilt order books behind them.

Drawn with matplotlib (the ``plot`` extra) on a `matplotlib.figure.Figure` rendered by the Agg
backend: no pyplot, no global state, safe in threads and servers. Times are shown in UTC.
Candles come from `binance_streamer.candles.ohlcv`; books from `binance_streamer.books`.
"""

from __future__ import annotations

import errno
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from binance_streamer.candles import Source as CandleSource
from binance_streamer.errors import ConfigError, MissingExtra
from binance_streamer.storage.bookkeeping import exchange_time_scale
from binance_streamer.storage.id_range import KEY_ORDERED, id_bounds
from binance_streamer.storage.open import Reader, open_reader

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["FIGURE_SIZE_PX", "MAX_CANDLES", "PRICE_AREA", "Source", "choose_source", "plot"]

Source = Literal["auto", "aggTrade", "trade", "kline"]  # where candles come from
FIGURE_SIZE_PX = (1200, 700)  # width, height of the image
_DPI = 100
MAX_CANDLES = 2000  # more candles than this are drawn as a close-price line
# Panels as (left, bottom, width, height) fractions of the figure: fixed, so the image's layout
# is the same for every chart (the heat map's colour bar sits right of the price panel).
PRICE_AREA = (0.08, 0.33, 0.82, 0.58)
_VOLUME_AREA = (0.08, 0.09, 0.82, 0.2)
_COLOUR_BAR_AREA = (0.915, 0.33, 0.015, 0.58)
_UP, _DOWN = "#26a69a", "#ef5350"
_HEAT_COLUMNS, _HEAT_ROWS = 300, 200  # books rebuilt across the chart; price bins
_BOOK_DEPTH = 1000  # levels per side read from each rebuilt book
_MS_PER_DAY = 86_400_000
# Each candle source, its table and that table's exchange-time column, in `auto`'s order.
_SOURCE_TABLES: tuple[tuple[CandleSource, str, str], ...] = (
    ("aggTrade", "agg_trade", "trade_time"), ("trade", "trade", "trade_time"),
    ("kline", "kline", "open_time"))


@dataclass(frozen=True)
class _Series:
    """Candles as float columns, and the time range drawn (``[start_ms, end_ms)``, epoch ms:
    the asked range, widened to whole candles)."""

    start_ms: int
    end_ms: int
    open_ms: Any  # numpy arrays
    close_ms: Any
    open: Any
    high: Any
    low: Any
    close: Any
    volume: Any

    def __len__(self) -> int:
        return len(self.open_ms)


def plot(db: str | Path, symbol: str, output: str | Path, since: int | None = None,
         until: int | None = None, interval: str = "1m", book: bool = False,
         source: Source = "auto", *, max_candles: int = MAX_CANDLES) -> Path:
    """Draw ``symbol``'s candles at ``interval`` with their volume into ``output`` (PNG, or SVG
    or PDF by its suffix) and return its path; ``since``/``until`` in epoch ms.

    ``source`` is where candles come from; ``auto`` picks aggTrade if any is stored in the
    range, else trade, else kline. More than ``max_candles`` candles become a close-price line.
    ``book`` adds a heat map of the resting quantity of the rebuilt order books.

    Raises `MissingExtra` without matplotlib, `ConfigError` when there is nothing to draw (no
    trades or klines, no depth for ``book``) or for an unknown output format, `OSError` when
    ``output`` cannot be written.
    """
    _matplotlib()
    path, symbol = Path(output), symbol.upper()
    fmt = _format_of(path)
    _check_folder(path)
    chosen = choose_source(db, symbol, since, until) if source == "auto" else source
    series = _series(db, symbol, interval, since, until, chosen)
    heat = _heat_map(db, symbol, series) if book else None
    as_line = len(series) > max_candles
    figure = _figure(series, heat, as_line, _title(symbol, interval, chosen, series, as_line))
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=_DPI)
    path.write_bytes(buffer.getvalue())
    return path


def _matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise MissingExtra("plotting", "plot") from exc


def _check_folder(path: Path) -> None:
    """`FileNotFoundError` before any work when ``path``'s folder does not exist."""
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "No such folder", str(path.parent))


def _format_of(path: Path) -> str:
    fmt = path.suffix.lower().lstrip(".") or "png"
    if fmt not in ("png", "svg", "pdf"):
        raise ConfigError(f"cannot draw a {path.suffix} file: name the output .png, .svg or .pdf")
    return fmt


# -- what to draw ------------------------------------------------------------------------------


def choose_source(db: str | Path, symbol: str, since: int | None = None,
                  until: int | None = None) -> CandleSource:
    """The first of aggTrade, trade, kline with a row of ``symbol`` in the range;
    `ConfigError` when none has."""
    with open_reader(db) as reader:
        for name, table, column in _SOURCE_TABLES:
            if _any_row(reader.conn, reader.mark, table, column, symbol.upper(), since, until):
                return name
    raise ConfigError(f"nothing to plot: no trades or klines of {symbol.upper()} are recorded "
                      f"in {db}{_range_words(since, until)}")


def _any_row(conn: Any, mark: str, table: str, column: str, symbol: str, since: int | None,
             until: int | None) -> bool:
    """Whether ``table`` holds a row of ``symbol`` with ``since <= column < until`` (ms; no
    bound when None)."""
    scale = exchange_time_scale(conn, mark)
    if table in KEY_ORDERED and (since is not None or until is not None):  # no time index:
        # the key range by bisection; margin 0 for trades, so any row in it is in range
        return id_bounds(Reader(conn, mark), table, symbol, None if since is None
                         else since * scale, None if until is None else until * scale) is not None
    # table and column come from _SOURCE_TABLES, never from the user
    sql = f"SELECT 1 FROM {table} WHERE symbol = {mark}"  # noqa: S608
    params: list[Any] = [symbol]
    if since is not None:
        sql, params = sql + f" AND {column} >= {mark}", [*params, since * scale]
    if until is not None:
        sql, params = sql + f" AND {column} < {mark}", [*params, until * scale]
    return conn.execute(sql + " LIMIT 1", params).fetchone() is not None


def _range_words(since: int | None, until: int | None) -> str:
    words = ([f" from {_utc(since)} UTC"] if since is not None else []) + \
            ([f" before {_utc(until)} UTC"] if until is not None else [])
    return "".join(words)


def _series(db: str | Path, symbol: str, interval: str, since: int | None, until: int | None,
            source: str) -> _Series:
    """The candles as columns; `ConfigError` when there are none."""
    import numpy as np

    from binance_streamer.candles import ohlcv

    rows = [(c.open_time, c.close_time, float(c.open), float(c.high), float(c.low),
             float(c.close), float(c.volume))
            for c in ohlcv(db, symbol, interval=interval, since=since, until=until,
                           source=source)]
    if not rows:
        raise ConfigError(f"nothing to plot: no {interval} candles of {symbol} from {source} "
                          f"in {db}{_range_words(since, until)}")
    columns = np.array(rows, dtype=np.float64).T
    start = rows[0][0] if since is None else min(since, rows[0][0])
    end = rows[-1][1] + 1 if until is None else max(until, rows[-1][1] + 1)
    return _Series(start, end, *columns)


# -- the depth heat map ------------------------------------------------------------------------


@dataclass(frozen=True)
class _HeatMap:
    """Resting quantity per price bin (rows, lowest price first) per time column."""

    grid: Any  # numpy array, NaN where nothing rests or the book is unknown
    start_ms: int
    end_ms: int
    low: float
    high: float


def _heat_map(db: str | Path, symbol: str, series: _Series) -> _HeatMap:
    """The rebuilt books over the candles' time and price range, binned."""
    import numpy as np

    from binance_streamer.books import order_books

    if not _has_depth(db, symbol):
        raise ConfigError(f"no depth of {symbol} is recorded in {db}: record the depth or "
                          "depth@100ms stream (or depth<N>) to draw the book")
    start, end = series.start_ms, series.end_ms
    low, high = _price_limits(series)
    step = max(100, math.ceil((end - start) / _HEAT_COLUMNS))
    grid = np.zeros((_HEAT_ROWS, math.ceil((end - start) / step)))
    books = 0
    for found in order_books(db, symbol, start, end - 1, depth=_BOOK_DEPTH, every=f"{step}ms"):
        books += 1
        column = grid[:, (found.time_ms - start) // step]
        _add_levels(column, [*found.bids, *found.asks], low, high)
    if not books:
        raise ConfigError(f"the order book of {symbol} cannot be rebuilt between "
                          f"{_utc(start)} and {_utc(end)}: no depth snapshot bridges the "
                          "recorded updates there (see `binance-streamer book`)")
    grid[grid <= 0] = np.nan
    return _HeatMap(grid, start, end, low, high)


def _has_depth(db: str | Path, symbol: str) -> bool:
    """Whether diff-depth updates or partial books of ``symbol`` are stored."""
    with open_reader(db) as reader:
        return any(_any_row(reader.conn, reader.mark, table, "", symbol, None, None)
                   for table in ("depth_update", "partial_depth"))


def _add_levels(column: Any, levels: Iterable[tuple[str, str]], low: float, high: float
                ) -> None:
    """Add each level's quantity to the price bin of ``column`` holding its price."""
    import numpy as np

    pairs = np.array([(float(p), float(q)) for p, q in levels], dtype=np.float64).reshape(-1, 2)
    rows = np.floor((pairs[:, 0] - low) / (high - low) * len(column)).astype(np.int64)
    inside = (rows >= 0) & (rows < len(column))
    np.add.at(column, rows[inside], pairs[inside, 1])


# -- drawing -----------------------------------------------------------------------------------


def _figure(series: _Series, heat: _HeatMap | None, as_line: bool, title: str) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = FIGURE_SIZE_PX
    figure = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    FigureCanvasAgg(figure)  # Agg, explicitly: no display needed
    price = figure.add_axes(PRICE_AREA)
    volume = figure.add_axes(_VOLUME_AREA, sharex=price)
    if heat is not None:
        _draw_heat_map(figure, price, heat)
    if as_line:
        _draw_line(price, volume, series)
    else:
        _draw_candles(price, volume, series)
    _style(price, volume, series)
    figure.suptitle(title, x=PRICE_AREA[0], y=0.965, ha="left", fontsize=13)
    return figure


def _dates(ms: Any) -> Any:
    """Epoch ms -> matplotlib date numbers (days since matplotlib's epoch)."""
    from matplotlib.dates import date2num

    epoch = date2num(datetime(1970, 1, 1, tzinfo=UTC))  # type: ignore[no-untyped-call]
    return epoch + ms / _MS_PER_DAY


def _draw_candles(price: Axes, volume: Axes, s: _Series) -> None:
    """Bodies, wicks and volume bars; green when the close is at or above the open."""
    import numpy as np
    from matplotlib.collections import LineCollection, PolyCollection

    left, right = _dates(s.open_ms), _dates(s.close_ms + 1)
    middle, margin = (left + right) / 2, (right - left) * 0.15
    colours = np.where(s.close >= s.open, _UP, _DOWN)
    wicks = np.stack([np.column_stack([middle, s.low]), np.column_stack([middle, s.high])], 1)
    price.add_collection(LineCollection(list(wicks), colors=colours, linewidths=0.8, zorder=2))
    bodies = _rectangles(left + margin, right - margin, np.minimum(s.open, s.close),
                         np.maximum(s.open, s.close))
    price.add_collection(PolyCollection(bodies, facecolors=colours, edgecolors=colours,
                                        linewidths=0.8, zorder=3))
    bars = _rectangles(left + margin, right - margin, np.zeros(len(s)), s.volume)
    volume.add_collection(PolyCollection(bars, facecolors=colours, edgecolors="none",
                                         alpha=0.8))


def _rectangles(x0: Any, x1: Any, y0: Any, y1: Any) -> list[Any]:
    import numpy as np

    corners = np.stack([np.column_stack(c) for c in
                        ((x0, y0), (x0, y1), (x1, y1), (x1, y0))], axis=1)
    return list(corners)


def _draw_line(price: Axes, volume: Axes, s: _Series) -> None:
    """The close of each candle at its close time, and the volume as a filled step line."""
    times = _dates(s.close_ms + 1)
    price.plot(times, s.close, color="#1f77b4", linewidth=0.9, zorder=3)
    volume.fill_between(times, s.volume, step="pre", color="#7f7f7f", linewidth=0)


def _draw_heat_map(figure: Figure, price: Axes, heat: _HeatMap) -> None:
    """The binned book behind the candles (log colour scale) and its colour bar."""
    import numpy as np
    from matplotlib.colors import LogNorm

    finite = heat.grid[np.isfinite(heat.grid)]
    norm = LogNorm(vmin=float(finite.min()), vmax=float(finite.max())) if finite.size else None
    image = price.imshow(heat.grid, origin="lower", aspect="auto", interpolation="nearest",
                         cmap="cividis", norm=norm, zorder=0,
                         extent=(float(_dates(heat.start_ms)), float(_dates(heat.end_ms)),
                                 heat.low, heat.high))
    price.set_facecolor("black")
    bar = figure.colorbar(image, cax=figure.add_axes(_COLOUR_BAR_AREA))
    bar.set_label("resting quantity (book depth)")


def _price_limits(s: _Series) -> tuple[float, float]:
    low, high = float(s.low.min()), float(s.high.max())
    pad = (high - low) * 0.08 or abs(high) * 0.001 or 1.0
    return low - pad, high + pad


def _style(price: Axes, volume: Axes, s: _Series) -> None:
    """Limits, UTC date axis, plain (never offset) numbers, labels and grids."""
    import matplotlib.dates as mdates

    price.set_xlim(float(_dates(s.start_ms)), float(_dates(s.end_ms)))
    price.set_ylim(*_price_limits(s))
    volume.set_ylim(0, float(s.volume.max()) * 1.1 or 1.0)
    locator = mdates.AutoDateLocator(tz=UTC, minticks=4, maxticks=10)  # type: ignore[no-untyped-call]
    formatter = mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
    volume.xaxis.set_major_locator(locator)
    volume.xaxis.set_major_formatter(formatter)
    price.tick_params(labelbottom=False)
    for axes in (price, volume):
        axes.ticklabel_format(axis="y", style="plain", useOffset=False)
        axes.grid(True, color="#999999", alpha=0.3, linewidth=0.6)
    price.set_ylabel("price")
    volume.set_ylabel("volume")
    volume.set_xlabel("time (UTC)")


def _title(symbol: str, interval: str, source: str, s: _Series, as_line: bool) -> str:
    what = "close price" if as_line else "candles"
    return (f"{symbol}  {interval} {what} from {source}  ·  {_utc(s.start_ms)} to "
            f"{_utc(s.end_ms)} UTC"
            f"  ·  {len(s):,} candles")


def _utc(ms: int) -> str:
    """Epoch ms as ``YYYY-MM-DD HH:MM:SS`` in UTC (with milliseconds when they are not 0)."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return text + (f".{ms % 1000:03d}" if ms % 1000 else "")
