"""The real Binance recordings bundled with the package (see tests/fixtures/PROVENANCE.md).

Captured by bmoscon/cryptofeed's test suite from the live exchange. This product includes
software developed by Bryant Moscon (http://www.bryantmoscon.com/).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DATA_DIR", "bundled_names", "bundled_session", "bundled_sessions"]

DATA_DIR = Path(__file__).parent / "exchange" / "data"


def bundled_session(name: str) -> Path:
    """The capture file ``<name>.session.jsonl.gz`` (``cf_2021-04-04`` or ``cf_2021-04-05``)."""
    path = DATA_DIR / f"{name}.session.jsonl.gz"
    if not path.exists():
        raise FileNotFoundError(f"no bundled session {name!r}; have {bundled_names()}")
    return path


def bundled_names() -> list[str]:
    """Names of the bundled sessions."""
    return sorted(p.name.removesuffix(".session.jsonl.gz") for p in DATA_DIR.glob("*.session.*"))


def bundled_sessions() -> list[Path]:
    """Every bundled capture file."""
    return [bundled_session(n) for n in bundled_names()]
