"""Bar periods: the one table of timeframe names and their lengths.

A timeframe is ``<count><unit>`` with unit ``s`` (second), ``m`` (minute), ``h`` (hour), ``d`` (day)
or ``w`` (week), as ccxt names them (``1m``, ``15m``, ``1h``, ``8h``, ``1d``). Lengths are in
milliseconds. ``"event"`` is not a timeframe: it is the store's partition name for irregular
series such as funding settlements (``backtest.store.EVENT_TIMEFRAME``).
"""

from __future__ import annotations

import re

from backtest.errors import TimeframeError

#: milliseconds per unit
UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
#: the longest bar period accepted (one week): anything longer is a typo, not a bar
MAX_TIMEFRAME_MS = UNIT_MS["w"]
#: bar periods that resolve the minutes of a cascade, finest first (the simulation's path)
FINE_TIMEFRAMES = ("1m", "5m", "15m")
#: the timeframes the store's readers and importers name, shortest first
COMMON_TIMEFRAMES = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")

_TF_RE = re.compile(r"^([1-9]\d{0,5})([smhdw])$")



def timeframe_ms(tf: str) -> int:
    """Length of a bar period such as ``1m``, ``15m``, ``1h``, ``8h``, ``1d`` in milliseconds.

    Raises :class:`TimeframeError` (one line) for anything else: ``0m``, ``1.5h``, a count too
    large to be a bar (over one week), or an unknown unit."""
    m = _TF_RE.match(tf) if isinstance(tf, str) else None
    ms = int(m.group(1)) * UNIT_MS[m.group(2)] if m else 0
    if not m or ms > MAX_TIMEFRAME_MS:
        raise TimeframeError(f"unknown timeframe {tf!r}; use a positive count and a unit up to one week, e.g. 1m, 5m, 15m, 1h, 4h, 1d")
    return ms


def timeframe_name(ms: int) -> str | None:
    """The common name of a bar length in ms (``60_000`` -> ``"1m"``), or None."""
    return _NAMES.get(int(ms))


_NAMES = {timeframe_ms(t): t for t in COMMON_TIMEFRAMES}
