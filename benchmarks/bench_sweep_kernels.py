"""Sweep throughput at the kernel level (DESIGN §11): scenarios/s at 1 M positions x 86,400 bars.

Many scenarios share one population (the real 2025-10-10 BTC population at 1 M rows, see
bench_kernels.population) and its trigger lists (sorted once, outside the timing); the path is a
1-second random walk (3 %/day) with a -3 % flush;
each scenario is one kernel run with its own impact coefficient, depth multiplier and insurance
fund. Each worker keeps one kernel workspace (backtest.engine.ReusedWorkspace: output arrays reused
run after run, as summary-only sweep runs do), so no run pays page faults on fresh memory. Two
worker processes (the machine's two cores) each run half of the scenarios; the figure is
scenarios / wall time. Output assembly (polars frames, summary) is not included: see
bench_sweep.py (the sweep engineer's, through backtest.sweep) for the end-to-end figure.

Run: .venv/bin/python benchmarks/bench_sweep_kernels.py [--scenarios 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


N = 1_000_000
_STATE: dict = {}


def _init() -> None:
    from bench_kernels import make_path, population, prm_for

    from backtest.engine import ReusedWorkspace, build_lists, run_kernel

    pop, what, p0 = population(N, seed=11)
    bars = make_path(86_400, 1.0, price=p0, crash=-0.03)
    lists = build_lists(pop, window_start_ms=int(bars["ts"][0]))
    base = prm_for(1000, pop)
    ws = ReusedWorkspace()  # output arrays reused run after run, as summary-only sweep runs do
    run_kernel(pop, bars, base, lists=lists, workspace=ws)  # warm: load from cache, sort the touched buckets once
    _STATE.update(pop=pop, bars=bars, lists=lists, base=base, run=run_kernel, ws=ws)


def _run(k: int) -> float:
    base = _STATE["base"]
    prm = base._replace(
        impact_coef=0.5 + (k % 8) * 0.25,
        volume_usd=base.volume_usd * (0.5 + (k // 8 % 4) * 0.5),
        fund_usd=base.fund_usd * (1.0 + (k % 3)),
    )
    out = _STATE["run"](_STATE["pop"], _STATE["bars"], prm, lists=_STATE["lists"], workspace=_STATE["ws"])
    return float(out.bar_i[:, 0].sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenarios", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    ctx = mp.get_context("fork")
    with ctx.Pool(args.workers, initializer=_init) as pool:
        pool.map(_run, range(args.workers * 2))  # warm every worker
        t = time.perf_counter()
        pool.map(_run, range(args.scenarios), chunksize=max(1, args.scenarios // (4 * args.workers)))
        wall = time.perf_counter() - t
    rate = args.scenarios / wall
    print("cascade backtester - sweep throughput, kernel level (DESIGN §11)")
    print(f"   {args.scenarios} scenarios of {N:,} positions x 86,400 1-s bars (cascade, one shared population), {args.workers} processes")
    print(f"   wall {wall:.2f} s -> {rate:,.1f} scenarios/s   target >= 100/s   {'PASS' if rate >= 100 else 'FAIL'}")
    print(f"   per scenario per core: {wall * args.workers / args.scenarios * 1000:.1f} ms")


if __name__ == "__main__":
    main()
