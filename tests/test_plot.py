"""Charts of a recording: PNGs of the chosen size with candles, volume and a depth heat map."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from binance_streamer.cli import main
from binance_streamer.errors import ConfigError, MissingExtra
from binance_streamer.plot import FIGURE_SIZE_PX, PRICE_AREA, choose_source, plot
from binance_streamer.samples import bundled_session
from tests.helpers import assert_one_clear_line, record_capture

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
UP, DOWN, LINE = (38, 166, 154), (239, 83, 80), (31, 119, 180)  # the chart's colours


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled capture cf_2021-04-04 recorded through the local exchange."""
    db = tmp_path_factory.mktemp("plot") / "sample.db"
    asyncio.run(record_capture(bundled_session("cf_2021-04-04"), db,  # paced: an early snapshot
                               ["aggTrade", "kline_1m", "depth@100ms"], ["BTCUSDT"], speed=25))
    return db


def _without(db: Path, folder: Path, *tables: str) -> Path:
    """A copy of ``db`` in ``folder`` with every row of ``tables`` deleted."""
    copy = folder / "copy.db"
    shutil.copy(db, copy)
    with sqlite3.connect(copy) as conn:
        for table in tables:
            conn.execute(f"DELETE FROM {table}")
    return copy


def run(*args: str) -> tuple[int, str]:
    """Run the command in-process; its exit code and its stderr."""
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stderr


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk (bytes 16..24)."""
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def _price_panel(path: Path) -> Any:
    """The pixels inside the price panel (RGB, 0-255), a few pixels in from its frame."""
    pixels = np.rint(imread(path)[:, :, :3] * 255).astype(np.uint8)
    height, width = pixels.shape[:2]
    left, bottom, panel_width, panel_height = PRICE_AREA
    rows = slice(int((1 - bottom - panel_height) * height) + 4, int((1 - bottom) * height) - 4)
    columns = slice(int(left * width) + 4, int((left + panel_width) * width) - 4)
    return pixels[rows, columns]


def _colours(pixels: Any) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in p) for p in pixels.reshape(-1, 3)}


def test_a_candle_chart_is_a_png_of_the_chosen_size_with_both_candle_colours(
        recorded: Path, tmp_path: Path) -> None:
    """`plot` writes a PNG of FIGURE_SIZE_PX whose price panel shows rising and falling
    candles."""
    out = tmp_path / "chart.png"
    code, stderr = run("plot", "BTCUSDT", "--db", str(recorded), "--interval", "1s",
                       "-o", str(out))
    assert code == 0, stderr
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    assert _png_size(out) == FIGURE_SIZE_PX
    colours = _colours(_price_panel(out))
    assert {UP, DOWN} <= colours and len(colours) >= 5


def test_the_book_adds_a_heat_map_of_many_colours_behind_the_candles(
        recorded: Path, tmp_path: Path) -> None:
    """With --book the price panel holds a depth heat map: many times more distinct colours
    than the candles alone."""
    plain, heat = tmp_path / "plain.png", tmp_path / "book.png"
    plot(recorded, "BTCUSDT", plain, interval="1s")
    code, stderr = run("plot", "BTCUSDT", "--db", str(recorded), "--interval", "1s", "--book",
                       "-o", str(heat))
    assert code == 0, stderr
    assert _png_size(heat) == FIGURE_SIZE_PX
    with_book, alone = len(_colours(_price_panel(heat))), len(_colours(_price_panel(plain)))
    assert with_book >= 100 and with_book > 3 * alone, (with_book, alone)


def test_more_candles_than_the_limit_are_drawn_as_a_price_line(
        recorded: Path, tmp_path: Path) -> None:
    """Past max_candles the price is a line: its colour appears and no candle body does."""
    out = plot(recorded, "BTCUSDT", tmp_path / "line.png", interval="1s", max_candles=10)
    colours = _colours(_price_panel(out))
    assert LINE in colours and UP not in colours and DOWN not in colours


def test_auto_source_takes_agg_trades_first_and_klines_when_no_trade_is_stored(
        recorded: Path, tmp_path: Path) -> None:
    """auto picks aggTrade when recorded, else the stored klines, which still draw a chart."""
    assert choose_source(recorded, "BTCUSDT") == "aggTrade"
    klines_only = _without(recorded, tmp_path, "agg_trade")
    assert choose_source(klines_only, "btcusdt") == "kline"
    out = plot(klines_only, "BTCUSDT", tmp_path / "klines.png")
    assert {UP} <= _colours(_price_panel(out))


@pytest.mark.parametrize(("args", "words"), [
    (["XRPUSDT"], ["XRPUSDT", "nothing to plot"]),
    (["BTCUSDT", "--until", "2021-04-04T00:00:00"], ["BTCUSDT", "2021-04-04 00:00:00"]),
    (["BTCUSDT", "--from", "trade"], ["BTCUSDT", "trade"]),
    (["BTCUSDT", "--interval", "7x"], ["7x"]),
])
def test_nothing_to_draw_exits_2_with_one_line_and_writes_nothing(
        recorded: Path, tmp_path: Path, args: list[str], words: list[str]) -> None:
    """An unknown symbol, an empty range, an unrecorded source or a bad interval is one line
    on stderr, exit code 2, and no image."""
    out = tmp_path / "chart.png"
    code, stderr = run("plot", *args, "--db", str(recorded), "-o", str(out))
    assert code == 2
    assert_one_clear_line(stderr, *words)
    assert not out.exists()


def test_the_book_without_recorded_depth_exits_2_with_one_line(
        recorded: Path, tmp_path: Path) -> None:
    """--book on a recording without depth of the symbol says so on one line, exit code 2."""
    no_depth = _without(recorded, tmp_path, "depth_update", "depth_snapshot")
    code, stderr = run("plot", "BTCUSDT", "--db", str(no_depth), "--book",
                       "-o", str(tmp_path / "chart.png"))
    assert code == 2
    assert_one_clear_line(stderr, "no depth of BTCUSDT")


def test_an_unwritable_output_exits_1_with_one_line(recorded: Path, tmp_path: Path) -> None:
    """An output in a folder that does not exist is one line naming it, exit code 1; a folder
    as the output is one line, exit code 2."""
    missing = tmp_path / "no-such-folder"
    code, stderr = run("plot", "BTCUSDT", "--db", str(recorded), "-o", str(missing / "c.png"))
    assert code == 1
    assert_one_clear_line(stderr, str(missing))
    code, stderr = run("plot", "BTCUSDT", "--db", str(recorded), "-o", str(tmp_path))
    assert code == 2  # a folder as the output is bad input, refused before any work
    assert_one_clear_line(stderr, "is a directory")


def test_an_unknown_output_format_is_refused(recorded: Path, tmp_path: Path) -> None:
    """An output named .jpg raises ConfigError naming the formats drawn."""
    with pytest.raises(ConfigError, match=r"\.png, \.svg or \.pdf"):
        plot(recorded, "BTCUSDT", tmp_path / "chart.jpg")


def test_without_matplotlib_plot_names_the_extra(recorded: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Without matplotlib installed, plot raises MissingExtra naming the 'plot' extra."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(MissingExtra, match=r"binance-streamer\[plot\]"):
        plot(recorded, "BTCUSDT", tmp_path / "chart.png")
