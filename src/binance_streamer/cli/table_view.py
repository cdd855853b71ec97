"""Rows as a plain-text table that fits the terminal, written as rows come.

Column widths come from the first rows; later cells longer than their column are cut with ``…``.
A table too wide for the terminal either leaves out its last columns (``fit``: the caller names
them) or, when the user chose the columns, turns into one block per row (``name  value`` lines).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from typing import Any

__all__ = ["fit_table", "terminal_width"]

SAMPLE_ROWS = 200  # rows that set the column widths
WIDEST_CELL = 40  # longer values (depth levels, raw frames) are cut to this in the table
_GAP = "  "


def terminal_width() -> int:
    """The terminal's width in columns (``COLUMNS`` when set; 80 when unknown)."""
    return shutil.get_terminal_size((80, 24)).columns


def fit_table(names: list[str], records: Iterable[tuple[Any, ...]], width: int, fit: bool,
              hidden: list[str]) -> Iterator[str]:
    """Lines of a table of ``records`` under ``names``, none longer than ``width``.

    With ``fit`` the columns that do not fit are left out and appended to ``hidden``; without,
    a table that does not fit is written as one block per record instead.
    """
    rows = iter(records)
    sample = [_cells(r) for r in islice(rows, SAMPLE_ROWS)]
    widths = [min(WIDEST_CELL, max([len(n)] + [len(r[i]) for r in sample]))
              for i, n in enumerate(names)]
    all_rows = chain(sample, (_cells(r) for r in rows))
    if fit:
        keep = _fitting(widths, width)
        hidden.extend(n for i, n in enumerate(names) if i not in keep)
    elif sum(widths) + len(_GAP) * (len(widths) - 1) > width:
        yield from _blocks(names, all_rows, width)
        return
    else:
        keep = list(range(len(names)))
    widths = [min(widths[i], width) for i in keep]
    yield _line([names[i] for i in keep], widths)
    yield _line(["-" * w for w in widths], widths)
    for row in all_rows:
        yield _line([row[i] for i in keep], widths)


def _fitting(widths: list[int], width: int) -> list[int]:
    """Indexes of the leading columns that fit in ``width`` (the first one always)."""
    keep, used = [0], widths[0]
    for i, w in enumerate(widths[1:], start=1):
        if used + len(_GAP) + w > width:
            continue
        keep.append(i)
        used += len(_GAP) + w
    return keep


def _cells(record: tuple[Any, ...]) -> list[str]:
    return ["" if v is None else str(v) for v in record]


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _line(cells: list[str], widths: list[int]) -> str:
    return _GAP.join(_cut(c, w).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def _blocks(names: list[str], rows: Iterable[list[str]], width: int) -> Iterator[str]:
    label = max(len(n) for n in names)
    value = max(width - label - len(_GAP), 1)
    for number, row in enumerate(rows, start=1):
        yield (f"-[ row {number} ]" + "-" * width)[:width]
        for name, cell in zip(names, row, strict=True):
            yield _cut(f"{name.ljust(label)}{_GAP}{_cut(cell, value)}".rstrip(), width)
