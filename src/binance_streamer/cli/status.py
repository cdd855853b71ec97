"""``binance-streamer status``: what a database holds (being written by another session)."""

from __future__ import annotations

import click


@click.command()
def status() -> None:
    """Show what a database holds per stream (not written yet)."""
    raise click.UsageError("status is not available yet")
