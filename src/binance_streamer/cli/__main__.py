"""``python -m binance_streamer.cli``: the ``binance-streamer`` command."""

from binance_streamer.cli import main

main(prog_name="binance-streamer")
