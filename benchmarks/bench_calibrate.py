"""Calibration benchmark (issue 13: a 10,000-sample calibration of 2025-10-10, five symbols x
200,000 positions, populations rebuilt per sample, on this 2-core machine; target <= 10 minutes).

Measures, in one run, on the committed data and through the public API
(``simulate.prepare(..., symbols=...)`` / ``simulate_prepared(..., summary_only=True)``), with
the parts timed by wrapping the functions ``simulate_prepared`` calls (nothing else changes):

* the cost per sample split into population build (``simulate._build_population``), list sort
  (``engine.build_lists``: the trigger lists, one cohort per in-window opening time), simulation
  kernel (``run_kernel``: its lazy bucket sorts + the point loop), account engine (assign + run,
  the summary's ``timings_s.accounts_s``) and summary (the rest of ``simulate_prepared``):
  samples that change a population parameter (``leverage_scale``: population rebuilt from the
  inputs read once, into the evicted arrays, as a calibration does) against samples that change
  only a simulation parameter (``impact_coef``: population kept);
* the floor of any calibration at this size: samples that change a simulation parameter with the
  accounts off (population kept, one kernel pass per symbol and the summary, no account engine);
* a real ABC-SMC calibration (``backtest.calibration.abc.calibrate``, processes executor on
  ``--workers`` workers, ``--particles`` x ``--generations``) fitting ``leverage_scale`` and
  ``cross_extra_collateral``: its wall time per simulation, start-up included;

and prints the projected time of 10,000 samples on the workers, from the per-sample cost and
from the measured calibration throughput, with their ratio to the 10-minute target.

``--symbols`` restricts the event to the issue's setup (default: the five Binance symbols BTC,
ETH, SOL, XRP, DOGE); ``--symbols all`` runs every leg of the event (three venues).

Run: .venv/bin/python benchmarks/bench_calibrate.py [--symbols five|all|S,S,...] [--positions N] [--samples K]
     [--particles P] [--generations G] [--workers W] [--no-abc]
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
EVENT = "2025-10-10"
#: the issue's setup: the five Binance symbols
FIVE = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT", "DOGE/USDT:USDT"]
PARTS = ("population build", "list sort (cohorts)", "simulation kernel", "account engine", "summary")


def _symbols(arg: str) -> list[str] | None:
    if arg == "five":
        return list(FIVE)
    if arg == "all":
        return None
    return [s.strip() for s in arg.split(",") if s.strip()]


class _Clock:
    """Wall time spent in wrapped functions, by part, since the last reset."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}

    def wrap(self, part: str, fn):
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.t[part] = self.t.get(part, 0.0) + time.perf_counter() - t0

        return timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", default="five", help="five (default: the issue's five Binance symbols), all, or a comma list of results keys")
    ap.add_argument("--positions", type=int, default=200_000, help="population rows per symbol")
    ap.add_argument("--samples", type=int, default=8, help="timed samples of each kind")
    ap.add_argument("--particles", type=int, default=16, help="particles per generation of the measured calibration")
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--no-abc", action="store_true", help="skip the measured pyabc calibration")
    a = ap.parse_args()

    import numpy as np

    from backtest import simulate as S
    from backtest.calibration.abc import CalibrationSpec, calibrate

    symbols = _symbols(a.symbols)
    clock = _Clock()
    S._build_population = clock.wrap("population build", S._build_population)
    S.build_lists = clock.wrap("list sort (cohorts)", S.build_lists)
    S.run_kernel = clock.wrap("simulation kernel", S.run_kernel)

    t = time.perf_counter()
    prep = S.prepare(EVENT, {"n_positions": a.positions}, symbols=symbols)
    prep.reuse_buffers = True  # as a calibration's model runs it (backtest.calibration.model.EventModel)
    t_prep = time.perf_counter() - t
    S.simulate_prepared(prep, {}, mode="replay", summary_only=True)  # compile / warm
    S.simulate_prepared(prep, {"leverage_scale": 1.01}, mode="replay", summary_only=True)  # a rebuild's buffers

    def timed(overrides: dict) -> dict[str, float]:
        clock.t = {}
        t0 = time.perf_counter()
        s = S.simulate_prepared(prep, overrides, mode="replay", summary_only=True).summary
        total = time.perf_counter() - t0
        parts = {p: clock.t.get(p, 0.0) for p in PARTS[:3]}
        parts["account engine"] = float(s["timings_s"].get("accounts_s", 0.0))
        parts["summary"] = max(0.0, total - sum(parts.values()))
        parts["total"] = total
        return parts

    rng = np.random.default_rng(0)
    pop = [timed({"leverage_scale": float(x)}) for x in rng.uniform(0.5, 2.0, a.samples)]
    sim = [timed({"impact_coef": float(x)}) for x in rng.uniform(0.1, 4.0, a.samples)]
    # the floor of any calibration of this event at this size: one kernel pass per symbol and the
    # summary (population kept, accounts off: no engine, no coupling passes)
    floor = [timed({"impact_coef": float(x), "accounts": False}) for x in rng.uniform(0.1, 4.0, a.samples)]
    med_pop = {k: statistics.median(x[k] for x in pop) for k in pop[0]}
    med_sim = {k: statistics.median(x[k] for x in sim) for k in sim[0]}
    n_sym = len(prep.symbols)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, load average {load:.2f} "
          "(other jobs slow every figure below)")
    print(f"event {EVENT}: {n_sym} legs ({', '.join(prep.symbols)}) x {a.positions:,} positions; prepare once {t_prep:.2f} s")
    print(f"per sample (median of {a.samples}), population rebuilt (leverage_scale) | population kept (impact_coef):")
    for p in PARTS:
        print(f"  {p:20s} {med_pop[p] * 1e3:8.1f} ms ({med_pop[p] / med_pop['total']:5.1%}) | {med_sim[p] * 1e3:8.1f} ms")
    print(f"  {'total':20s} {med_pop['total'] * 1e3:8.1f} ms          | {med_sim['total'] * 1e3:8.1f} ms "
          f"(rebuilt / kept = {med_pop['total'] / med_sim['total']:.1f}x; parts are medians, total the median of totals)")
    proj_pop = N_CALIBRATION * med_pop["total"] / a.workers
    proj_sim = N_CALIBRATION * med_sim["total"] / a.workers
    print(f"projected {N_CALIBRATION:,} samples on {a.workers} workers (ideal split): population parameters "
          f"{proj_pop / 60:.1f} min ({proj_pop / TARGET_S:.2f}x the 10-min target); simulation parameters only "
          f"{proj_sim / 60:.1f} min ({proj_sim / TARGET_S:.2f}x)")
    med_floor = {k: statistics.median(x[k] for x in floor) for k in floor[0]}
    proj_floor = N_CALIBRATION * med_floor["total"] / a.workers
    print(f"floor (population kept, accounts off: one kernel pass per symbol + summary): {med_floor['total'] * 1e3:.1f} ms per sample "
          f"(kernel {med_floor['simulation kernel'] * 1e3:.1f}, summary {med_floor['summary'] * 1e3:.1f}) -> "
          f"{proj_floor / 60:.1f} min for {N_CALIBRATION:,} samples ({proj_floor / TARGET_S:.2f}x the target)")
    if a.no_abc:
        return

    with tempfile.TemporaryDirectory() as d:
        spec = CalibrationSpec(events=[EVENT], fit=["leverage_scale", "cross_extra_collateral"], samples=a.particles,
                               generations=a.generations, n_positions=a.positions, symbols=symbols)
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
          f"({proj / TARGET_S:.2f}x the 10-min target; measured / ideal per sample = {per / (med_pop['total'] / a.workers):.2f}x)")


if __name__ == "__main__":
    main()
