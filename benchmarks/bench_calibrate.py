"""Calibration benchmark (issue 13: a 10,000-sample calibration of 2025-10-10, five symbols x
200,000 positions, populations rebuilt per sample, on this 2-core machine; target <= 10 minutes).

Measures, in one run, on the committed data and through the public API only
(``simulate.prepare`` / ``simulate_prepared(..., summary_only=True)``):

* the cost per sample split into population build, simulation (the kernels' own
  ``timings_s``: sort + simulate) and summary (the rest of ``simulate_prepared``): samples that
  change a population parameter (``leverage_scale``: population rebuilt from the inputs read
  once, into the evicted arrays, as a calibration does) against samples that change only a
  simulation parameter (``impact_coef``: population kept);
* a real ABC-SMC calibration (``backtest.calibration.abc.calibrate``, processes executor on
  ``--workers`` workers, ``--particles`` x ``--generations``) fitting ``leverage_scale`` and
  ``cross_extra_collateral``: its wall time per simulation, start-up included;

and prints the projected time of 10,000 samples on the workers, from the per-sample cost and
from the measured calibration throughput, with their ratio to the 10-minute target.

Run: .venv/bin/python benchmarks/bench_calibrate.py [--positions N] [--samples K] [--particles P] [--generations G] [--workers W]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

TARGET_S = 600.0
N_CALIBRATION = 10_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=200_000, help="population rows per symbol")
    ap.add_argument("--samples", type=int, default=8, help="timed samples of each kind")
    ap.add_argument("--particles", type=int, default=16, help="particles per generation of the measured calibration")
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()

    import numpy as np

    from backtest.calibration.abc import CalibrationSpec, calibrate
    from backtest.simulate import prepare, simulate_prepared

    t = time.perf_counter()
    prep = prepare("2025-10-10", {"n_positions": a.positions})
    prep.reuse_buffers = True  # as a calibration's model runs it (backtest.calibration.model.EventModel)
    t_prep = time.perf_counter() - t
    simulate_prepared(prep, {}, mode="replay", summary_only=True)  # compile / warm

    def timed(overrides: dict) -> tuple[float, float]:
        t0 = time.perf_counter()
        s = simulate_prepared(prep, overrides, mode="replay", summary_only=True).summary
        total = time.perf_counter() - t0
        return total, s["timings_s"]["sort_s"] + s["timings_s"]["simulate_s"]

    rng = np.random.default_rng(0)
    pop = [timed({"leverage_scale": float(x)}) for x in rng.uniform(0.5, 2.0, a.samples)]
    sim = [timed({"impact_coef": float(x)}) for x in rng.uniform(0.1, 4.0, a.samples)]
    t_pop_sample = statistics.median(x[0] for x in pop)
    t_sim_sample = statistics.median(x[0] for x in sim)
    t_kernel = statistics.median(x[1] for x in sim)
    t_build = max(0.0, t_pop_sample - t_sim_sample)
    t_summary = max(0.0, t_sim_sample - t_kernel)
    n_sym = len(prep.symbols)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, load average {load:.2f} "
          "(other jobs slow every figure below)")
    print(f"event 2025-10-10: {n_sym} symbols x {a.positions:,} positions; prepare once {t_prep:.2f} s")
    print(f"per sample, population rebuilt (leverage_scale): {t_pop_sample * 1e3:8.1f} ms")
    print(f"  population build   {t_build * 1e3:8.1f} ms  ({t_build / t_pop_sample:5.1%})")
    print(f"  simulation kernels {t_kernel * 1e3:8.1f} ms  ({t_kernel / t_pop_sample:5.1%})")
    print(f"  summary            {t_summary * 1e3:8.1f} ms  ({t_summary / t_pop_sample:5.1%})")
    print(f"per sample, population kept (impact_coef):       {t_sim_sample * 1e3:8.1f} ms  "
          f"(rebuilt / kept = {t_pop_sample / t_sim_sample:.1f}x)")
    proj_pop = N_CALIBRATION * t_pop_sample / a.workers
    proj_sim = N_CALIBRATION * t_sim_sample / a.workers
    print(f"projected {N_CALIBRATION:,} samples on {a.workers} workers (ideal split): population parameters "
          f"{proj_pop / 60:.1f} min ({proj_pop / TARGET_S:.2f}x the 10-min target); simulation parameters only "
          f"{proj_sim / 60:.1f} min ({proj_sim / TARGET_S:.2f}x)")

    with tempfile.TemporaryDirectory() as d:
        spec = CalibrationSpec(events=["2025-10-10"], fit=["leverage_scale", "cross_extra_collateral"], samples=a.particles,
                               generations=a.generations, n_positions=a.positions)
        t = time.perf_counter()
        res = calibrate(spec, os.path.join(d, "run"), executor="processes", workers=a.workers, write=False)
        wall = time.perf_counter() - t
    n_eval = sum(g["evaluations"] for g in res.generations)
    sampling = sum(g["wall_time_s"] or 0.0 for g in res.generations)
    per = sampling / n_eval
    proj = N_CALIBRATION * per
    print(f"measured calibration ({a.particles} particles x {a.generations} generations, processes x {a.workers}): "
          f"{n_eval} simulations in {wall:.1f} s wall ({sampling:.1f} s sampling, worker start-up included) = "
          f"{per * 1e3:.0f} ms per simulation")
    print(f"projected {N_CALIBRATION:,}-sample calibration from the measured throughput: {proj / 60:.1f} min "
          f"({proj / TARGET_S:.2f}x the 10-min target; measured / ideal per sample = {per / (t_pop_sample / a.workers):.2f}x)")


if __name__ == "__main__":
    main()
