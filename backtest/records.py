"""Record dtypes and enums: the one place where array layouts and codes are defined.

Everything that crosses the boundary between the polars-facing Python API and the numba
kernels is described here: the population's struct of arrays, the market arrays, and the
integer codes used for sides, venues, margin modes and event kinds.

Units and signs (used everywhere in the package):
- prices in quote currency (USDT for linear contracts, USD for inverse ones);
- quantities in base units for linear contracts, in contracts for inverse ones;
- notional in USD;
- times as UTC milliseconds since the epoch (int64), or polars ``Datetime("ms", "UTC")``;
- side: +1 long, -1 short.
"""

from __future__ import annotations

import numpy as np

# --- sides -------------------------------------------------------------------------------
LONG: int = 1
SHORT: int = -1

# --- margin modes ------------------------------------------------------------------------
ISOLATED: int = 0
CROSS: int = 1
MARGIN_MODES = {"isolated": ISOLATED, "cross": CROSS}

# --- contract kinds ----------------------------------------------------------------------
LINEAR: int = 0
INVERSE: int = 1
CONTRACTS = {"linear": LINEAR, "inverse": INVERSE}

# --- venues (margin rule families) -------------------------------------------------------
VENUE_BINANCE: int = 0
VENUE_BYBIT: int = 1
VENUE_OKX: int = 2
VENUE_GATE: int = 3
VENUE_HYPERLIQUID: int = 4
VENUES = {
    "binance": VENUE_BINANCE,
    "bybit": VENUE_BYBIT,
    "okx": VENUE_OKX,
    "gate": VENUE_GATE,
    "hyperliquid": VENUE_HYPERLIQUID,
}
VENUE_NAMES = {v: k for k, v in VENUES.items()}

# --- how a position left the book (per-position outcome codes) ---------------------------
EXIT_NONE: int = 0  # still open at the end of the run
EXIT_LIQUIDATED: int = 1  # forced close by the liquidation engine
EXIT_STOPPED: int = 2  # its stop-loss fired (market order)
EXIT_ADL: int = 3  # closed by auto-deleveraging
EXIT_NAMES = {EXIT_NONE: "open", EXIT_LIQUIDATED: "liquidated", EXIT_STOPPED: "stopped", EXIT_ADL: "adl"}

# --- price source flags ------------------------------------------------------------------
PRICE_MARK: int = 0  # the path is the exchange's mark price
PRICE_LAST: int = 1  # no mark data: last traded price stands in (flagged in outputs)

# --- population: struct of arrays --------------------------------------------------------
# One row per position. Field -> NumPy dtype. ``notional`` (USD at entry) is not stored: it is
# ``entry * qty`` for linear contracts and ``qty * contract_size`` for inverse ones.
# Bytes per position: 76 (target <= 100).
POPULATION_FIELDS: dict[str, np.dtype] = {
    "side": np.dtype(np.int8),  # +1 long, -1 short
    "margin_mode": np.dtype(np.int8),  # ISOLATED or CROSS
    "venue": np.dtype(np.int8),  # VENUE_* code: which margin rule applies
    "tier": np.dtype(np.uint8),  # maintenance tier index (0-based) at the liquidation notional
    "entry": np.dtype(np.float64),  # entry price, quote currency
    "qty": np.dtype(np.float64),  # size, base units (linear) or contracts (inverse), > 0
    "margin": np.dtype(np.float64),  # isolated margin, or cross collateral allotted, USD
    "mmr": np.dtype(np.float64),  # maintenance margin rate of its tier (fraction)
    "maint_amount": np.dtype(np.float64),  # maintenance amount ("cum"), USD
    "open_time": np.dtype(np.int64),  # UTC ms when the position opened
    "stop_price": np.dtype(np.float64),  # stop-loss trigger price, NaN for none
    "liq_price": np.dtype(np.float64),  # liquidation price at open (before funding), quote ccy
    "leverage": np.dtype(np.float32),  # initial leverage (notional / margin)
    "weight": np.dtype(np.float32),  # how many real positions this row stands for (>= 0)
}

POPULATION_BYTES_PER_ROW: int = sum(dt.itemsize for dt in POPULATION_FIELDS.values())

# --- market arrays handed to kernels -----------------------------------------------------
# One row per bar, contiguous, sorted by time, no duplicates.
BAR_FIELDS: dict[str, np.dtype] = {
    "ts": np.dtype(np.int64),  # bar open time, UTC ms
    "open": np.dtype(np.float64),
    "high": np.dtype(np.float64),
    "low": np.dtype(np.float64),
    "close": np.dtype(np.float64),
    "volume_usd": np.dtype(np.float64),  # traded notional in the bar, USD (0 where unknown)
    "funding_rate": np.dtype(np.float64),  # rate settled at this bar's open time, 0 otherwise
}


def empty_population(n: int) -> dict[str, np.ndarray]:
    """Allocate a population of ``n`` rows (uninitialised values) with the canonical dtypes."""
    return {name: np.empty(n, dtype=dt) for name, dt in POPULATION_FIELDS.items()}


def check_population(pop: dict[str, np.ndarray]) -> None:
    """Raise ``ValueError`` unless ``pop`` has every field, the right dtypes and equal lengths."""
    missing = [k for k in POPULATION_FIELDS if k not in pop]
    if missing:
        raise ValueError(f"population is missing fields {missing}; build it with backtest.population")
    n = len(pop["side"])
    for name, dt in POPULATION_FIELDS.items():
        arr = pop[name]
        if arr.dtype != dt:
            raise ValueError(f"population field {name!r} has dtype {arr.dtype}, expected {dt}")
        if len(arr) != n:
            raise ValueError(f"population field {name!r} has {len(arr)} rows, expected {n}")
