"""A *synthetic* position population for tests and benchmarks: never for event runs.

Named as synthetic wherever it is used; event runs build their populations from the store with
:mod:`backtest.population`.
"""

from __future__ import annotations

import numpy as np

from backtest import records as R


def synthetic_population(
    n: int,
    *,
    price: float = 100_000.0,
    seed: int = 0,
    long_share: float = 0.6,
    entry_spread: float = 0.03,
    leverage: tuple[float, ...] = (2, 3, 5, 10, 20, 25, 50, 75, 100, 125),
    leverage_weights: tuple[float, ...] = (0.1, 0.1, 0.2, 0.25, 0.15, 0.05, 0.08, 0.03, 0.03, 0.01),
    stop_share: float = 0.2,
    tick: float | None = None,
) -> dict[str, np.ndarray]:
    """A *synthetic* population for tests and benchmarks (not for event runs).

    Binance-style linear isolated positions with a small two-tier table; ``tick`` rounds entry
    and liquidation prices to a grid (exact ties). Pure NumPy, fast at 10 M rows.
    """
    from backtest.margin import solve_liq_linear_nb

    rng = np.random.default_rng(seed)
    pop = R.empty_population(n)
    side = np.where(rng.random(n) < long_share, 1, -1).astype(np.int8)
    entry = price * (1.0 + rng.normal(0.0, entry_spread, n))
    if tick:
        entry = np.round(entry / tick) * tick
    lw = np.asarray(leverage_weights, dtype=np.float64)
    lev = np.asarray(leverage, dtype=np.float64)[np.searchsorted(np.cumsum(lw / lw.sum()), rng.random(n), side="right").clip(0, len(leverage) - 1)]
    notional = np.exp(rng.normal(6.0, 1.5, n))  # mean ~$1,250: 10 M rows ~ $12B, Binance-BTC-sized
    qty = notional / entry
    margin = notional / lev
    tier = (notional > 50_000).astype(np.uint8)
    mmr = np.where(tier == 0, 0.004, 0.005)
    cum = np.where(tier == 0, 0.0, 250.0)
    s = side.astype(np.float64)
    liq = solve_liq_linear_nb(s, entry, qty, margin, mmr, cum)  # the margin module's formula, on arrays
    liq = np.where(liq > 0, liq, 0.0)
    if tick:
        liq = np.round(liq / tick) * tick
    dead = s * (price - liq) <= 0  # would be liquidated at the start: re-enter at the price
    if np.any(dead):
        entry = np.where(dead, price, entry)
        qty = notional / entry
        liq = solve_liq_linear_nb(s, entry, qty, margin, mmr, cum)
        liq = np.where(liq > 0, liq, 0.0)
    has_stop = rng.random(n) < stop_share
    stop = np.where(has_stop, entry * (1.0 - s * rng.uniform(0.005, 0.08, n)), np.nan)
    if tick:
        stop = np.round(stop / tick) * tick
    pop["side"][:] = side
    pop["margin_mode"][:] = R.ISOLATED
    pop["venue"][:] = R.VENUE_BINANCE
    pop["tier"][:] = tier
    pop["entry"][:] = entry
    pop["qty"][:] = qty
    pop["margin"][:] = margin
    pop["mmr"][:] = mmr
    pop["maint_amount"][:] = cum
    pop["open_time"][:] = 0
    pop["close_time"][:] = R.NO_CLOSE
    pop["stop_price"][:] = stop
    pop["liq_price"][:] = liq
    pop["leverage"][:] = lev.astype(np.float32)
    pop["weight"][:] = 1.0
    return pop
