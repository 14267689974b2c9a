"""Account engine with cascades on (issue 12 point 6, the coupled reading): 5 M positions in ~2 M
cross accounts over 5 symbols x 86,400 path points, run through ``simulate_prepared(mode="cascade")``
- the account engine coupled with the per-symbol kernels by the fixed point of backtest.simulate
(the engine's liquidations become each symbol's forced flow, move its price through the impact
model, and the engine runs again on the moved path) - one core.

Everything here is SYNTHETIC: the paths of ``bench_accounts.py`` (seeded one-second random walks
with a crash of -5 % to -30 % at 55 % of the day) cut into 21,600 bars of 4 s (4 path points per
bar: 86,400 per symbol), a made-up population (``bench_accounts.synthetic_population``: every row
cross, so every position is in an account; survivors only, so every account is above its maintenance
margin at the first path point), made-up liquidity (1e10 USD a day per symbol by default,
``--volume-usd``; the kernels' impact model), a large insurance fund, no in-window openings (no traded volume).

Reported: the wall time of the coupled run (numba compiled and the accounts assigned by an
untimed first run), its passes, the peak memory per position, the account engine's time per pass, the per-symbol kernels' time,
and the reference: the coupled run's own figures with the engine's time replaced by the
reference engine's (every account at every grid point), timed on the first ``--ref-accounts``
accounts over the whole grid of the last pass and scaled by the account count (said so).

``--passes N --trace [--watch POINT]`` reproduces the README's account of why the run does not settle
(each pass's residual, first moved path point and moved points, and the prices at one point); ``--damp W`` is an experiment on top of the
package's coupling (the engine's flows mixed with the previous pass's), not a mode of it.

Run: .venv/bin/python benchmarks/bench_accounts_coupled.py [--quick] [--passes N] [--trace [--watch POINT]] [--damp W]
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

SYMBOLS = [f"SYN{s}/USDT:USDT" for s in range(5)]
BAR_S = 4


def bars_of(s: int) -> dict[str, np.ndarray]:
    """SYNTHETIC 4-second bars of symbol ``s`` from bench_accounts' one-second path."""
    from bench_accounts import POINTS, synthetic_points

    t, px, _ = synthetic_points(s, POINTS)
    p = px.reshape(-1, BAR_S)
    n = p.shape[0]
    return {"ts": t[::BAR_S].copy(), "open": p[:, 0].copy(), "high": p.max(axis=1), "low": p.min(axis=1), "close": p[:, -1].copy(),
            "volume_usd": np.zeros(n), "funding_rate": np.zeros(n)}


def population(s: int, n: int) -> dict[str, np.ndarray]:
    """SYNTHETIC cross rows of symbol ``s`` as a full population (records.POPULATION_FIELDS)."""
    from bench_accounts import synthetic_population

    from backtest.margin import solve_liq_linear_nb

    src = synthetic_population(s, n)
    pop = R.empty_population(n)
    for k, v in {"venue": R.VENUE_BINANCE, "tier": 0, "open_time": 0, "close_time": R.NO_CLOSE, "stop_price": np.nan}.items():
        pop[k][:] = v
    for k in ("side", "margin_mode", "entry", "qty", "margin", "mmr", "maint_amount", "weight"):
        pop[k][:] = src[k]
    pop["tier"][:] = np.searchsorted(np.unique(src["mmr"]), src["mmr"])  # one rate per tier
    sd = pop["side"].astype(np.float64)
    pop["liq_price"][:] = np.maximum(solve_liq_linear_nb(sd, pop["entry"], pop["qty"], pop["margin"], pop["mmr"], pop["maint_amount"]), 0.0)
    pop["leverage"][:] = (pop["entry"] * pop["qty"] / pop["margin"]).astype(np.float32)
    R.check_population(pop)
    return pop


def prepared(n_per: int, volume_usd: float = 1e10):
    """A SYNTHETIC event's Prepared (no store): 5 symbols, the populations above."""
    from bench_accounts import K_DIST

    from backtest.events import Event
    from backtest.market import Market
    from backtest.sim_params import resolve_params
    from backtest.simulate import PopEntry, Prepared, _pop_key

    bars = [bars_of(s) for s in range(len(SYMBOLS))]
    t0 = int(bars[0]["ts"][0])
    end = int(bars[0]["ts"][-1]) + BAR_S * 1000
    ev = Event("synthetic-coupled", "synthetic-coupled", "SYNTHETIC five-symbol crash", "binanceusdm", tuple(SYMBOLS), t0, end, t0 - 86_400_000)
    markets = {sym: Market(sym, f"{BAR_S}s", "mark", b, 0.05, float(volume_usd), 0) for sym, b in zip(SYMBOLS, bars)}
    pops = {}
    for s, sym in enumerate(SYMBOLS):
        p = population(s, n_per)
        pops[sym] = PopEntry(p, float(np.sum(p["entry"] * p["qty"])), "bench_accounts_coupled (SYNTHETIC)")
    ov = {"positions_per_account": {str(k): v for k, v in K_DIST.items()}, "insurance_fund_usd": 1e12}
    pop_params, sim = resolve_params(ov)
    prep = Prepared(ev, list(SYMBOLS), markets, pop_params, sim, pops, None, ov, legs={leg.key: leg for leg in ev.legs()})
    prep._pop_cache[_pop_key(pop_params)] = pops
    return prep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="500 k positions (a smoke run)")
    ap.add_argument("--ref-accounts", type=int, default=1000)
    ap.add_argument("--volume-usd", type=float, default=1e10,
                    help="made-up traded notional per symbol and day, USD (default 1e10, about 0.9x each symbol's open interest)")
    ap.add_argument("--passes", type=int, default=None,
                    help="account_iterations of the timed run (default: the package's, SimParams.account_iterations)")
    ap.add_argument("--trace", action="store_true",
                    help="print each pass's residual, the first path point that still moved and how many moved")
    ap.add_argument("--watch", type=int, default=None, metavar="POINT",
                    help="with --trace: also print each pass's price of every symbol at path point POINT")
    ap.add_argument("--damp", type=float, default=1.0,
                    help="EXPERIMENT, not the package's coupling (1, the default): each pass's external flows, fund draws "
                         "and fees mixed as DAMP x the engine's + (1 - DAMP) x the previous pass's")
    a = ap.parse_args()
    from bench_accounts import POINTS

    n_points = POINTS // BAR_S * R.PATH_POINTS  # path points per symbol (bars_of: BAR_S seconds a bar)
    if a.watch is not None and not 0 <= a.watch < n_points:
        sys.exit(f"--watch must be a path point in [0, {n_points:,}), got {a.watch}")
    if not 0.0 < a.damp <= 1.0:
        sys.exit(f"--damp must be in (0, 1], got {a.damp}")
    n_per = (500_000 if a.quick else 5_000_000) // len(SYMBOLS)
    from backtest.simulate import simulate_prepared

    import resource

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # bytes (Linux: KiB)
    t0 = time.perf_counter()
    prep = prepared(n_per, a.volume_usd)
    t_build = time.perf_counter() - t0
    import backtest.contagion as C

    last = []
    run_on = C.run_on

    def recording_run_on(*args, **kw):  # keeps the engine's last grid for the reference below
        r = run_on(*args, **kw)
        last[:] = [r]
        return r

    C.run_on = recording_run_on
    # per pass: (residual, first moved point over the symbols, moved points per symbol, largest move's point, --watch prices)
    trace: list = []
    prev_ext: dict = {}
    path_residual, engine_flows = C.path_residual, C.engine_flows
    from dataclasses import replace

    tol = C.coupling_tolerance("cascade")

    def tracing_residual(new, old):  # a path point "moved" when its price moved by more than the tolerance
        r = path_residual(new, old)
        firsts, n_moved, worst = [], 0, (0.0, -1)
        for sym in new:
            x, y = new[sym][:, :, R.PT_PRICE].ravel(), old[sym][:, :, R.PT_PRICE].ravel()
            rel = np.abs(x - y) / np.maximum(np.abs(y), 1e-300)
            moved = np.flatnonzero(rel > tol)
            n_moved += len(moved)
            if len(moved):
                firsts.append(int(moved[0]))
                worst = max(worst, (float(rel.max()), int(np.argmax(rel))))
        watched = [(sym, float(new[sym][:, :, R.PT_PRICE].ravel()[a.watch])) for sym in new] if a.watch is not None else []
        trace.append((r, min(firsts) if firsts else -1, n_moved / len(new), worst[1], watched))
        return r

    def damped_flows(run, *args, **kw):
        pr = engine_flows(run, *args, **kw)
        if "ext" in prev_ext:
            pr = replace(pr, ext={sym: tuple(a.damp * x + (1.0 - a.damp) * y for x, y in zip(pr.ext[sym], prev_ext["ext"][sym])) for sym in pr.ext})
        prev_ext["ext"] = pr.ext
        return pr

    if a.trace:
        C.path_residual = tracing_residual
    if a.damp < 1.0:
        C.engine_flows = damped_flows
    ov = {} if a.passes is None else {"account_iterations": a.passes}
    first = simulate_prepared(prep, mode="cascade", summary_only=True)  # compiles, assigns the accounts (cached after)
    trace.clear()
    prev_ext.clear()
    t0, c0 = time.perf_counter(), time.process_time()
    res = simulate_prepared(prep, ov, mode="cascade", summary_only=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak so far: the populations, the accounts, two runs
    s, ts = res.summary, res.summary.timings_s
    runs = max(ts.get("account_engine_runs", 1.0), 1.0)
    eng = ts["accounts_s"] - ts.get("account_assign_s", 0.0)
    # the reference engine on a subset of the accounts over the last pass's grid, scaled
    from backtest.accounts import liq_rules, run_accounts, subset_accounts

    aset = prep._acc_cache["accounts"][1]
    grid = last[0].grid
    A = len(aset.sub.first)
    keep = np.arange(A) < a.ref_accounts
    sub, sub_rows = subset_accounts(aset.sub, keep, aset.rows)
    rules = liq_rules(grid.px.shape[0], aset.tiers)
    nbars = len(prep.markets[SYMBOLS[0]].bars["ts"])
    run_accounts(sub, sub_rows, grid, nbars, rules=rules, reference=True)
    t1 = time.perf_counter()
    ref_out = run_accounts(sub, sub_rows, grid, nbars, rules=rules, reference=True)
    t_ref_sub = time.perf_counter() - t1
    fast_out = run_accounts(sub, sub_rows, grid, nbars, rules=rules)
    from bench_accounts import _same

    same = _same(fast_out, ref_out)
    ref_pass = t_ref_sub * A / len(sub.first)
    ref_wall = wall - eng + runs * ref_pass
    n = n_per * len(SYMBOLS)
    print(f"coupled cascade: {n:,} positions in {A:,} accounts over {len(SYMBOLS)} symbols x {len(grid.ts):,} path points (SYNTHETIC); "
          f"build {t_build:.1f} s, first run (compile + assignment) untimed")
    oi = sum(pe.open_notional_usd for pe in prep.populations.values()) / len(SYMBOLS)
    print(f"  made-up liquidity ${a.volume_usd:.2g} traded per symbol and day ({a.volume_usd / oi:.2f}x its open interest of ${oi / 1e9:.1f}B)")
    print(f"  machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  coupled run: {wall:.2f} s wall, {cpu:.2f} s CPU; {s.contagion_iterations} kernel passes with the engine's flow, "
          f"converged {s.contagion_converged} (residual {s.contagion_residual:.1e}); liquidated ${s.liquidated_notional_usd / 1e9:.2f}B, "
          f"contagion ${(s.contagion_liquidated_usd or 0.0) / 1e9:.2f}B  target <= 3 s: {'met' if wall <= 3 else 'MISSED'}")
    print(f"  memory: peak resident {rss / 2**30:.2f} GiB, {(rss - rss0) / n:,.0f} bytes per position above the interpreter and "
          f"libraries loaded before the build (populations, accounts, kernels' and engine's outputs of the coupled run)")
    print(f"  account engine {eng:.2f} s over {runs:.0f} runs ({eng / runs:.2f} s per pass, pricing included); "
          f"per-symbol kernels {ts['simulate_s']:.2f} s + sorts {ts['sort_s']:.2f} s")
    print(f"  reference engine: {t_ref_sub:.2f} s on {len(sub.first):,} accounts over the last pass's grid, scaled "
          f"x{A / len(sub.first):,.0f} -> {ref_pass:,.0f} s per pass; the coupled run with it ~{ref_wall:,.0f} s; "
          f"speed-up {ref_wall / wall:,.0f}x (target >= 100x: {'met' if ref_wall / wall >= 100 else 'MISSED'}); fast == reference on that subset: {same}")
    if a.damp < 1.0:
        print(f"  EXPERIMENT: the engine's external inputs damped, {a.damp:g} x this pass's + {1 - a.damp:g} x the previous pass's")
    for k, (r, first_pt, n_moved, worst, watched) in enumerate(trace, 1):
        print(f"  pass {k}: residual {r:.1e}; prices moved by more than the tolerance ({tol:.0e}): from path point {first_pt:,}, "
              f"{n_moved:,.0f} of {len(grid.ts):,} points per symbol (mean), the largest price move at point {worst:,}"
              + (f"; at point {a.watch:,}: " + ", ".join(f"{sym.split('/')[0]} {x:.9g}" for sym, x in watched) if watched else ""))
    del first
    if not same:
        sys.exit("fast and reference kernels disagree")


if __name__ == "__main__":
    main()
