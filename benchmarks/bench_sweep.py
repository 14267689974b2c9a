"""Sweep benchmark (DESIGN §11: >= 100 scenarios/s sharing one population, on 2 cores).

Runs one grid of scenarios that share the event's population (only simulation parameters vary:
impact coefficient x depth multiplier, so no population is rebuilt) through ``backtest.sweep``
on the serial and processes executors (and dask with ``--dask``), on the committed 2025-10-10
data, and prints scenarios per second, the time to prepare the event once, and the executors'
start-up cost (measured as the difference to serial at equal work). Results are checked to be
identical across executors.

Run: .venv/bin/python benchmarks/bench_sweep.py [--positions N] [--grid K] [--dask]
(--grid K gives K x K scenarios; defaults: 200,000 positions per symbol, 10 x 10 = 100 scenarios.)

Sweeps ask the simulation for the summary only (``summary_only=True``) when it offers it; the
figure printed as "kernel share" says how much of a scenario's time the kernels themselves take.
The processes/dask rates include starting the workers (spawned interpreters importing numba and
loading the prepared event once each), which short sweeps do not amortise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=200_000, help="population rows per symbol")
    ap.add_argument("--grid", type=int, default=10, help="K: a K x K grid of impact_coef x depth_multiplier")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--dask", action="store_true", help="also run the dask executor on a LocalCluster")
    args = ap.parse_args()

    import numpy as np

    from backtest import simulate
    from backtest.sweep import parse_sweep, run_sweep

    k = args.grid
    spec = parse_sweep(
        {
            "event": "2025-10-10",
            "mode": "cascade",
            "base": {"seed": 1, "n_positions": args.positions},
            "grid": {
                "impact_coef": [round(float(x), 4) for x in np.linspace(0.25, 2.0, k)],
                "depth_multiplier": [round(float(x), 4) for x in np.geomspace(0.25, 4.0, k)],
            },
        }
    )
    n = spec.n_combinations
    print(f"sweep benchmark: 2025-10-10 cascade, {args.positions:,} positions per symbol, {n} scenarios sharing one population")

    # warm-up: compile the kernels once in this process and measure one scenario's split
    prep = simulate.prepare(spec.event, spec.base)
    for _ in range(2):  # the first call compiles
        t = time.perf_counter()
        r = simulate.simulate_prepared(prep, {**spec.base, **spec.combinations()[0]}, mode="cascade", summary_only=True)  # what the sweep asks for
        one = time.perf_counter() - t
    # the kernels' seconds: list sort, cascade kernel, account engine (timings_s also holds counts:
    # account_checks, account_engine_runs, and the account assignment, which is set-up)
    kern = sum(float(r.summary.timings_s.get(k, 0.0)) for k in ("sort_s", "simulate_s", "accounts_s"))
    print(f"  one scenario (summary only): {one * 1000:.0f} ms, of which kernels {kern * 1000:.0f} ms (kernel share {kern / one:.0%})")

    tables = {}
    executors = ["serial", "processes"] + (["dask"] if args.dask else [])
    for ex in executors:
        res = run_sweep(spec, executor=ex, workers=args.workers, progress=False)
        sim_s = res.timings.get("simulate_s", res.seconds)
        tables[ex] = res.table
        print(
            f"  {ex:<9} {res.workers} worker(s): {n / sim_s:7.1f} scenarios/s including worker start-up "
            f"({sim_s:.2f} s; prepare {res.timings.get('prepare_s', 0):.2f} s; total {res.seconds:.2f} s)"
        )
    same = all(tables[ex].equals(tables["serial"]) for ex in executors)
    print(f"  identical results across executors: {same}")
    print("  target (DESIGN §11): >= 100 scenarios/s at 1 M positions x 86,400 bars on 2 cores")


if __name__ == "__main__":
    main()
