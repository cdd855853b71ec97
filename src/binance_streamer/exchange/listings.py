"""What the synthetic market lists: per symbol its tick size, step size and base price, and which
symbols a market of ``n`` symbols is made of.

One source of truth with the served ``exchangeInfo``: a symbol of the bundled real body (2021-10-12)
takes its ``PRICE_FILTER`` ``tickSize`` and ``LOT_SIZE`` ``stepSize`` from there (rest-api.md
"Filters"), and `ExchangeInfo` lists any other symbol with the filters of its `listing`. Base
prices are real where the bundled `_RECORDED` prices hold them, else plausible for the tick size
(Binance's ticks are about 1e-4 to 1e-3 of the price); both are functions of the symbol alone, so
the served filters never depend on a seed. Amounts are integers of 1e-8 ("units"), as Binance
prints prices and quantities with 8 decimals.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from typing import Any

from binance_streamer.exchange.stats import fmt_units, units

__all__ = ["UNIT", "Listing", "filters", "fmt_units", "listing", "market_symbols"]

UNIT = 100_000_000  # units per 1.0

# Recorded prices (quote per base): the best bid of each REST depth snapshot of the captures of
# 2021-04-04 to 2021-10-12 (shared data binance_spot_rest_depth_snapshots.jsonl), else the close
# of the 2020-06-20 ``!miniTicker@arr`` frame (binance_spot_miniTicker_arr.singletons.jsonl).
# Recorded by bmoscon/cryptofeed and oliver-zehentleitner/unicorn-fy: tests/fixtures/PROVENANCE.md.
_RECORDED = {
    "AAVEUPUSDT": "84.395", "ADARUB": "106.01", "ADAUSDT": "0.08013", "AXSBNB": "0.026703",
    "BADGERBTC": "0.0005835", "BATUSDT": "0.2192", "BEAMUSDT": "0.5034", "BLZETH": "0.00006547",
    "BTCAUD": "76835.74", "BTCSTUSDT": "58.402", "BTCUSDT": "58001.03", "BUSDTRY": "8.13",
    "DATABTC": "0.00000585", "DENTUSDT": "0.0209438", "DOTUSDT": "43.5224",
    "ELFBTC": "0.00001121", "ELFETH": "0.00045625", "ERDBTC": "0.00000057", "ETCBTC": "0.0006851",
    "ETCUSDT": "6.4013", "ETHBRL": "12001.53", "ETHBTC": "0.024567", "ETHUSDT": "2064.73",
    "FETUSDT": "0.03144", "FTMUSDT": "0.33993", "GTOBTC": "0.00000162", "IOSTUSDT": "0.005789",
    "KNCUSDT": "1.199", "LINKBTC": "0.00043725", "LINKETH": "0.01781759", "LRCBTC": "0.00000637",
    "MANAUSDT": "0.99073", "MBLBNB": "0.000117", "NEOUSDC": "56.919", "NKNUSDT": "0.3521",
    "ONTTRY": "19", "PERLBNB": "0.000392", "QSPBTC": "0.00000168", "QTUMETH": "0.005433",
    "RENBTCETH": "27.9175", "RLCBTC": "0.00006922", "RUNEEUR": "6.251", "STEEMETH": "0.000506",
    "SWRVBUSD": "2.272", "SXPBTC": "0.00007471", "TNBBTC": "0.00000031", "TOMOBNB": "0.02937",
    "TOMOBTC": "0.00005045", "TOMOUSDT": "0.4692", "TRXETH": "0.00006977", "VETETH": "0.00009381",
    "VITEBTC": "0.0000019", "VITEUSDT": "0.01773", "XMRBTC": "0.005773", "ZILUSDT": "0.21436",
}

# Rough value of one unit of a quote asset in USD, to size quantities (a trade is worth about
# 10 to 2,000 USD); an unknown quote counts as 1.
_QUOTE_USD = {"BTC": 50_000.0, "ETH": 3_500.0, "BNB": 450.0, "EUR": 1.15, "GBP": 1.35,
              "AUD": 0.73, "TRY": 0.11, "BRL": 0.18, "RUB": 0.014, "UAH": 0.037, "NGN": 0.0024,
              "BIDR": 0.00007, "IDRT": 0.00007, "TRX": 0.1, "XRP": 1.0, "DOGE": 0.25}
# Quotes in the order a market of n symbols takes the real symbols (the busiest quotes first),
# and the quotes of invented symbols.
_QUOTE_ORDER = ("USDT", "BUSD", "BTC", "ETH", "BNB", "USDC", "EUR", "TRY", "BRL", "GBP", "AUD")
_INVENTED_QUOTES = ("USDT", "USDT", "USDT", "BUSD", "BTC", "BTC", "ETH", "BNB")


@dataclass(frozen=True, slots=True)
class Listing:
    """One symbol as listed: ``tick``, ``step`` and ``price`` in units of 1e-8; ``lot_usd`` is
    the rough USD value of one step of quantity at the base price; ``recorded`` says whether the
    price is a real one."""

    symbol: str
    base: str
    quote: str
    tick: int
    step: int
    price: int
    lot_usd: float
    recorded: bool


@functools.cache
def _catalogue() -> dict[str, dict[str, Any]]:
    from binance_streamer.exchange.exchange_info import bundled_body

    return {entry["symbol"]: entry for entry in bundled_body()["symbols"]}


def _filter(entry: dict[str, Any], kind: str, field: str) -> str:
    return str(next(f[field] for f in entry["filters"] if f["filterType"] == kind))


@functools.cache
def listing(symbol: str) -> Listing:
    """The listing of ``symbol`` (upper case): real filters when the bundled body has it."""
    entry = _catalogue().get(symbol)
    rng = random.Random(f"listing:{symbol}")
    if entry is not None:
        base, quote = entry["baseAsset"], entry["quoteAsset"]
        tick = units(_filter(entry, "PRICE_FILTER", "tickSize"))
        step = units(_filter(entry, "LOT_SIZE", "stepSize"))
        recorded = symbol in _RECORDED
        price = units(_RECORDED[symbol]) if recorded else tick * round(10 ** rng.uniform(3.3, 4.3))
    else:
        quote = next((q for q in _QUOTE_ORDER + tuple(_QUOTE_USD) if symbol.endswith(q)
                      and symbol != q), "USDT")
        base, recorded = symbol[: -len(quote)], False
        usd = 10 ** rng.uniform(-2.5, 3.0)  # the base asset's value in USD
        price = max(1, round(usd / _QUOTE_USD.get(quote, 1.0) * UNIT))
        tick = 10 ** max(0, math.floor(math.log10(price)) - 3)
        step = 10 ** min(8, max(0, round(8 - math.log10(usd) - 1)))
    price = max(price - price % tick, 60 * tick)  # on the tick, with room for a book
    lot_usd = price / UNIT * step / UNIT * _QUOTE_USD.get(quote, 1.0)
    return Listing(symbol, base, quote, tick, step, price, lot_usd, recorded)


def filters(item: Listing) -> list[dict[str, Any]]:
    """``exchangeInfo`` filters of an invented symbol, consistent with its ``listing``: the
    shape of BTCUSDT's own (rest-api.md "Filters")."""
    tick, step = fmt_units(item.tick), fmt_units(item.step)
    return [
        {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000",
         "tickSize": tick},
        {"filterType": "PERCENT_PRICE", "multiplierUp": "5", "multiplierDown": "0.2",
         "avgPriceMins": 5},
        {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000000.00000000",
         "stepSize": step},
        {"filterType": "MIN_NOTIONAL", "minNotional": "10.00000000", "applyToMarket": True,
         "avgPriceMins": 5},
        {"filterType": "ICEBERG_PARTS", "limit": 10},
        {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "9000000.00000000",
         "stepSize": "0.00000000"},
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
    ]


def market_symbols(n: int) -> list[str]:
    """``n`` symbols, busiest first: the real TRADING spot symbols with a recorded price
    (BTCUSDT, ETHUSDT first), then the other real TRADING spot symbols by quote, then invented
    well-formed ones (``<3-5 letters><quote>``) once the real ones run out."""
    real = [e for e in _catalogue().values()
            if e["status"] == "TRADING" and e.get("isSpotTradingAllowed", True)]

    def rank(entry: dict[str, Any]) -> tuple[int, int, int]:
        sym, quote = entry["symbol"], entry["quoteAsset"]
        head = ("BTCUSDT", "ETHUSDT")
        order = _QUOTE_ORDER.index(quote) if quote in _QUOTE_ORDER else len(_QUOTE_ORDER)
        return (head.index(sym) if sym in head else 2, 0 if sym in _RECORDED else 1, order)

    names = [e["symbol"] for e in sorted(real, key=rank)][:n]
    taken = set(_catalogue())
    rng = random.Random("invented symbols")
    while len(names) < n:
        base = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.randint(3, 5)))
        name = base + rng.choice(_INVENTED_QUOTES)
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names
