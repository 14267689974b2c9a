"""A co-simulation PROTOTYPE (issue 12 point 6): the per-symbol kernels and the time-major account
engine advanced together, one common path point after another, so that the coupling is settled
by construction instead of by the fixed point of :mod:`backtest.simulate`. Not used by the
package's commands; ``benchmarks/bench_cosim.py`` times it.

At path point ``q`` (every symbol's point ``q``: the symbols must share their path points'
times, which the benchmark's do):

1. each symbol's round-0 price (:func:`backtest.kernels.cascade.round0_price_nb`: the exogenous
   point times the impact offset ``E`` carried from the points before) goes into the engine's
   grid column ``q``;
2. the engine steps to ``q`` (:func:`backtest.kernels.account_steps.step_point_nb`) on those
   prices; each exit becomes forced flow of its symbol at ``q`` (signed USD: an account long's
   liquidation sells), ``-side x qty x share x weight x fill``;
3. each symbol's kernel runs point ``q`` (:func:`backtest.kernels.cascade.run_points_nb`) with
   that flow in round 0: it moves the price through the impact model, and the kernel's own rows
   feel it in the same point.

What this prototype leaves out (so its results are not the package's): the engine's rows' fills
at the point's impact and their deficits and fees in the fund (``ext_fund`` / ``ext_fee`` stay
zero); accounts that the point's later rounds would liquidate are caught at the next point
(their trigger is the round-0 price).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from backtest.kernels.account_steps import step_init_nb, step_point_nb
from backtest.kernels.cascade import round0_price_nb, run_points_nb


@njit(cache=True)
def cosim_nb(books, tls, paths, depths, prms, wss, kss, reference, acc, rows, grid, rules, st, wk, xs, acc_grid, acc_deficit, bar_i,
             loss, g_side, g_qty, g_weight, row_offset, n_points):
    """Run ``n_points`` common path points (module docstring). Per symbol ``s`` (tuples, one
    entry each): the kernel's inputs ``books[s]``, ``tls[s]``, ``paths[s]`` (records.MarketPath:
    its ``ext_flow`` is written here), ``depths[s]``, ``prms[s]``, workspace ``wss[s]`` and
    state ``kss[s]`` (backtest.kernels.cascade.kernel_state_nb); ``reference``: the kernels'
    reference scans. The engine's inputs as
    :func:`backtest.kernels.account_steps.run_steps_nb` takes them (``grid.px``: the symbols'
    rows written here, the collateral's given); ``g_side`` / ``g_qty`` / ``g_weight``: the
    engine's rows by global row (``row_offset``: each symbol's first). Returns the engine's
    exit record count."""
    S = len(books)
    bar_i[:, :, :] = 0
    for a in range(acc.first.shape[0]):
        acc_grid[a] = -1
        acc_deficit[a] = 0.0
    for s in range(S):
        grid.px[s, 0] = round0_price_nb(paths[s], prms[s], kss[s], 0)
    step_init_nb(acc, rows, grid, st, wk)
    x_row, x_share, x_fill = xs[0], xs[5], xs[2]
    nx = 0
    for q in range(n_points):
        if q > 0:
            for s in range(S):
                grid.px[s, q] = round0_price_nb(paths[s], prms[s], kss[s], q)
        nx0 = nx
        nx = step_point_nb(acc, rows, grid, rules, st, wk, q, bar_i, xs, nx, acc_grid, acc_deficit, loss)
        j = q // 4
        k = q % 4
        for r in range(nx0, nx):
            g = x_row[r]
            s = 0
            while g >= row_offset[s + 1]:
                s += 1
            paths[s].ext_flow[j, k] += -np.float64(g_side[g]) * g_qty[g] * x_share[r] * np.float64(g_weight[g]) * x_fill[r]
        for s in range(S):
            run_points_nb(books[s], tls[s], paths[s], depths[s], prms[s], reference, wss[s], kss[s], q, q + 1)
    return nx
