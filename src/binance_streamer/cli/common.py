"""What every command shares: the time options."""

from __future__ import annotations

from datetime import UTC, datetime

import click

__all__ = ["parse_time"]

# Epoch milliseconds have 13 digits since 2001; 10 or fewer digits are epoch seconds.
_SMALLEST_EPOCH_MS = 10**11


def parse_time(value: str | None, option: str = "--since") -> int | None:
    """Milliseconds since the epoch, from epoch ms or an ISO 8601 date-time (UTC if naive).

    Epoch seconds are refused with the millisecond value to use instead, never guessed.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        ms = int(text)
        if ms < _SMALLEST_EPOCH_MS:
            raise click.BadParameter(
                f"{value!r} looks like epoch seconds; give milliseconds ({ms * 1000}) or an "
                "ISO date-time such as 2021-04-04T20:03:00", param_hint=option)
        return ms
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is neither epoch ms nor an ISO date-time "
                                 "(e.g. 2021-04-04T20:03:00)", param_hint=option) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)
