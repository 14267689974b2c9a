"""Exogenous shocks of the cascade command (``--shock -5%@2025-10-10T21:00Z``): reading the
option (:func:`parse_shock`) and applying it to a symbol's bars (:func:`shocked_path`).

A shock is a relative move (a fraction: -0.05 for -5 %) at a UTC time (ms): the path follows the
observed bars until then and stays flat at ``(1 + shock)`` x the open of the bar holding it.
"""

from __future__ import annotations

import re

import numpy as np

from backtest.errors import SimError

_SHOCK_RE = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*(%?)\s*(?:@\s*(\S+))?\s*$")


def parse_shock(text: str, default_ms: int | None = None) -> tuple[float, int]:
    """``"-5%@2025-10-10T21:00Z"`` -> (-0.05, UTC ms). Without ``@time``, ``default_ms``. A time
    without a zone is refused, with the corrected option in the message."""
    from datetime import datetime

    from backtest.store import to_ms

    m = _SHOCK_RE.match(text or "")
    if not m:
        raise SimError(f"cannot read shock {text!r}; give e.g. --shock -5%@2025-10-10T21:00Z")
    if not m.group(2):
        raise SimError(f"shock {text!r} needs a percent sign; give e.g. --shock -5%@2025-10-10T21:00Z")
    value = float(m.group(1)) / 100.0
    if not -0.95 <= value <= 5.0 or value == 0.0:
        raise SimError(f"shock {text!r} is out of range; give a move between -95% and +500%, not 0")
    when = m.group(3)
    if when is None:
        if default_ms is None:
            raise SimError(f"shock {text!r} has no time; give e.g. -5%@2025-10-10T21:00Z")
        return value, int(default_ms)
    move = f"{m.group(1)}{m.group(2)}"
    try:
        naive = datetime.fromisoformat(when).tzinfo is None and "T" in when
    except ValueError:
        naive = False
    if naive:  # times are UTC and must say so (as everywhere else); say exactly how
        raise SimError(f"time of --shock {when!r} has no zone; add Z for UTC: --shock={move}@{when}Z")
    try:
        return value, to_ms(when.replace("Z", "+00:00") if when.endswith("Z") else when)
    except Exception:
        raise SimError(f"cannot read the time of shock {text!r}; give ISO-8601 UTC, e.g. --shock={move}@2025-10-10T21:00Z") from None


def shocked_path(bars: dict[str, np.ndarray], shock: float, t_ms: int) -> tuple[dict[str, np.ndarray], int, float]:
    """Observed path until ``t_ms``; from the bar holding it, flat at ``(1 + shock)`` x its open."""
    ts = bars["ts"]
    j = int(np.searchsorted(ts, t_ms, side="right") - 1)
    j = max(j, 0)
    ref = float(bars["open"][j])
    level = ref * (1.0 + shock)
    out = {k: v.copy() for k, v in bars.items()}
    for k in ("open", "high", "low", "close"):
        out[k][j:] = level
    return out, j, ref
