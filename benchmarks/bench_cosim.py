"""Co-simulation PROTOTYPE benchmark (issue 12 point 6): the coupled run of
``bench_accounts_coupled.py`` (5 M positions in ~2 M cross accounts over 5 symbols x 86,400 path
points, cascades on, one core) stepped point by point by ``backtest.kernels.cosim.cosim_nb``
instead of the package's fixed point: one pass, settled by construction.

Everything here is SYNTHETIC (``bench_accounts_coupled``'s event, populations and liquidity). The
prototype leaves out the engine rows' fund draws and fees and catches at the next point the
accounts a point's later rounds would liquidate (``backtest.kernels.cosim``), so its totals are
close to, not equal to, the package's; the package's coupled run is timed in the same run beside
it. No target of its own: the figure says how far a co-simulation is from the 3 s target.

Run: .venv/bin/python benchmarks/bench_cosim.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402

from backtest import records as R  # noqa: E402


def inputs(prep, reference: bool = False):
    """Fresh inputs of one co-simulation run of ``prep`` (after a package run filled its caches);
    ``reference``: for the kernels' reference scans."""
    from backtest.accounts import build_grid, exit_capacity, liq_rules, wake_index
    from backtest.contagion import observed_points
    from backtest.engine import kernel_params, make_book, make_market_path, make_workspace
    from backtest.kernels.cascade import kernel_state_nb
    from backtest.sim_params import resolve_params
    from backtest.simulate import _pop_key, venue_funds

    pop_params, sim = resolve_params(prep.overrides)
    key = _pop_key(pop_params)
    pops = prep._pop_cache[key]
    aset = prep._acc_cache["accounts"][1]
    syms = aset.symbols
    funds = venue_funds(prep, pops, sim.insurance_fund_usd)
    books, tls, paths, depths, prms, wss, kss = [], [], [], [], [], [], []
    for s in syms:
        pe = prep._acc_cache[key, s]
        mk = prep.markets[s]
        nb = len(mk.bars["ts"])
        prm = kernel_params(sim, mk, mode="cascade", fund_usd=funds[s])
        book = make_book(pe.arrays)
        path = make_market_path(mk.bars, tuple(np.zeros((nb, R.PATH_POINTS)) for _ in range(3)))
        ws = make_workspace(len(pe.arrays["side"]), nb, prm.max_rounds)
        books.append(book), tls.append(pe.lists), paths.append(path), depths.append(prep._depth_cache[s][0]), prms.append(prm)
        wss.append(ws), kss.append(kernel_state_nb(book, pe.lists, path, prm, bool(reference), ws))
    pts = observed_points(syms, prep.markets)
    T = len(pts[0][0])
    if any(len(p[0]) != T or not np.array_equal(p[0], pts[0][0]) for p in pts):
        sys.exit("the prototype needs symbols that share their path points' times")
    grid = build_grid(pts, [aset.coll_path], [sim.collateral_haircut])
    rules = liq_rules(grid.px.shape[0], aset.tiers, partial=bool(sim.partial_liquidation))
    acc, rows = aset.sub, aset.rows
    m, A = len(acc.members), len(acc.first)
    cap = exit_capacity(acc, rows, rules)
    xs = (np.empty(cap, np.int64), np.empty(cap, np.int32), np.empty(cap), np.empty(cap, np.int8), np.empty(cap, np.int16), np.empty(cap))
    full = [pops[s].arrays for s in syms]
    g = {k: np.concatenate([a[k] for a in full]) for k in ("side", "qty", "weight")}
    nbars = max(len(prep.markets[s].bars["ts"]) for s in syms)
    eng = (acc, rows, grid, rules, R.AccountState(np.empty((m, 8)), np.empty((A, 8))), wake_index(acc, grid.px.shape[0], T), xs,
           np.empty(A, np.int32), np.empty(A), np.empty((grid.px.shape[0], nbars, R.AB_SIZE), np.int64), np.empty(max(len(syms), 1)))
    return (tuple(books), tuple(tls), tuple(paths), tuple(depths), tuple(prms), tuple(wss), tuple(kss)), eng, g, acc.row_offset, T


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="500 k positions (a smoke run)")
    ap.add_argument("--volume-usd", type=float, default=1e10)
    a = ap.parse_args()
    from bench_accounts_coupled import SYMBOLS, prepared

    from backtest.kernels.cascade import outputs_nb
    from backtest.kernels.cosim import cosim_nb
    from backtest.simulate import simulate_prepared

    n_per = (500_000 if a.quick else 5_000_000) // len(SYMBOLS)
    prep = prepared(n_per, a.volume_usd)
    simulate_prepared(prep, mode="cascade", summary_only=True)  # compiles, assigns the accounts, fills the caches
    t0 = time.perf_counter()
    res = simulate_prepared(prep, mode="cascade", summary_only=True)
    t_fixed = time.perf_counter() - t0
    s = res.summary
    runs = []
    for rep in range(2):  # the first compiles the driver
        ker, eng, g, row_offset, T = inputs(prep)
        t0 = time.perf_counter()
        nx = cosim_nb(*ker, False, *eng, g["side"], g["qty"], g["weight"], row_offset, T)
        runs.append(time.perf_counter() - t0)
    books, tls, paths, depths, prms, wss, kss = ker
    liq = 0.0
    for k in range(len(books)):
        out = outputs_nb(paths[k], prms[k], wss[k], kss[k])
        liq += float(out.x_usd[out.x_code == R.EXIT_LIQUIDATED].sum())
    xs = eng[6]
    gr = xs[0][:nx]
    eng_usd = float(np.sum(g["qty"][gr] * xs[5][:nx] * g["weight"][gr].astype(np.float64) * xs[2][:nx]))
    n_pos = sum(len(p.arrays["side"]) for p in prep._pop_cache[next(iter(prep._pop_cache))].values())
    print(f"co-simulation prototype: {n_pos:,} positions in {len(eng[0].first):,} engine accounts over {len(books)} symbols x {T:,} "
          f"path points (SYNTHETIC)")
    print(f"  machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  co-simulation: {runs[1]:.2f} s wall, one pass (first run, compiling: {runs[0]:.1f} s); liquidated "
          f"${(liq + eng_usd) / 1e9:.2f}B (per-symbol rows ${liq / 1e9:.2f}B, account engine ${eng_usd / 1e9:.2f}B, {nx:,} exits)  "
          f"target <= 3 s: {'met' if runs[1] <= 3 else 'MISSED'}")
    print(f"  the package's fixed point, same run: {t_fixed:.2f} s, {s['contagion_iterations']} passes, converged "
          f"{s['contagion_converged']} (residual {s['contagion_residual']:.1e}); liquidated ${s['liquidated_notional_usd'] / 1e9:.2f}B")


if __name__ == "__main__":
    main()
