"""``python -m binance_streamer``: the same command as ``binance-streamer``."""

from binance_streamer.cli import main

main(prog_name="binance-streamer")
