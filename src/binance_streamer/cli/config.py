"""Settings for ``record`` from a TOML file and the environment (being written by another
session); ``binance-streamer init`` writes an example file."""

from __future__ import annotations

import click


@click.command()
def init() -> None:
    """Write a commented example configuration file (not written yet)."""
    raise click.UsageError("init is not available yet")


def configure(command: click.Command) -> None:
    """Let ``command`` take its options from a file and the environment too (not yet)."""
