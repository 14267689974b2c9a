"""The dry run of a sweep (``backtest sweep FILE --dry-run``): build the event once, time one
combination (and one population rebuild when the grid changes population parameters), measure
the memory it takes, and extrapolate to the whole grid on the chosen executor (:func:`plan_sweep`,
:class:`Plan`). Times in seconds, memory in bytes.
"""

from __future__ import annotations

import math
import os
import pickle
import time
from dataclasses import dataclass
from typing import Any

from backtest.params import suggest
from backtest.sim_api import simulation
from backtest.sweep import EXECUTORS, SweepError, SweepSpec, default_chunk_size, population_names


@dataclass
class Plan:
    combinations: int
    executor: str
    workers: int
    chunks: int
    chunk_size: int
    prepare_s: float
    per_combination_s: float
    estimate_s: float
    prepared_bytes: int
    sim_peak_bytes: int
    estimate_bytes: int
    populations: int = 0
    rebuild_s: float = 0.0
    estimate_hi_s: float = 0.0  # the same work without any parallel gain

    def describe(self) -> str:
        return (
            f"{self.combinations:,} combinations in {self.chunks:,} chunks of up to {self.chunk_size:,} on {self.executor} "
            f"({self.workers} worker{'s' if self.workers > 1 else ''})\n"
            + (
                f"estimated time: {_dur(self.estimate_s)} with perfect scaling over {self.workers} workers, up to "
                f"{_dur(self.estimate_hi_s)} if they gain nothing (each simulation already uses several cores)\n"
                if self.workers > 1 and self.estimate_hi_s > self.estimate_s * 1.05
                else f"estimated time: {_dur(self.estimate_s)}\n"
            )
            + f"  (measured: preparing {_dur(self.prepare_s)}, "
            f"one combination {_dur(self.per_combination_s)}"
            + (f", rebuilding a population {_dur(self.rebuild_s)} x {self.populations} population settings" if self.populations else "")
            + ")\n"
            f"estimated memory: {_mib(self.estimate_bytes)} in all (market arrays + population {_mib(self.prepared_bytes)}, "
            f"held by this process and each worker with room for one rebuilt population; "
            f"{_mib(self.sim_peak_bytes)} working memory per simulation)"
        )


def _dur(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _mib(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB" if b >= 2**20 else f"{b / 1024:,.0f} KiB"


class _RssPeak:
    """Peak growth of this process's resident memory while the block runs (sampled every 2 ms
    from /proc/self/statm; counts NumPy, numba and polars allocations alike). 0 where /proc is
    not available."""

    def __enter__(self):
        import threading

        self.peak_increase = 0
        self._base = self._rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def _run(self):
        while not self._stop.wait(0.002):
            self.peak_increase = max(self.peak_increase, self._rss() - self._base)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak_increase = max(self.peak_increase, self._rss() - self._base, 0)
        return False


def plan_sweep(spec: SweepSpec, *, executor: str = "processes", workers: int | None = None, chunk_size: int | None = None,
               store: str | None = None, sim: Any = None) -> Plan:
    """Measure one combination (after building the base once) and extrapolate to the sweep."""
    if executor not in EXECUTORS:
        raise SweepError(f"unknown executor {executor!r}{suggest(executor, list(EXECUTORS))}; use serial, processes or dask")
    simulate = simulation(sim)
    workers = max(1, workers or os.cpu_count() or 1) if executor != "serial" else 1
    n = spec.n_combinations
    size = chunk_size or default_chunk_size(n, workers)
    t = time.perf_counter()
    prepared = simulate.prepare(spec.event, spec.base or None, symbols=spec.symbols, store=store)
    prep_s = time.perf_counter() - t
    pop_names = population_names(sim)
    first = spec.combinations()[0]
    same_pop = {**spec.base, **{k: v for k, v in first.items() if k not in pop_names}}
    blob = len(pickle.dumps(prepared, protocol=pickle.HIGHEST_PROTOCOL))
    with _RssPeak() as warm_probe:  # warm-up (compiles); its memory growth is the honest one
        simulate.simulate_prepared(prepared, same_pop, mode=spec.mode, shock=spec.shock, summary_only=True)
    with _RssPeak() as mem_probe:
        t = time.perf_counter()
        simulate.simulate_prepared(prepared, same_pop, mode=spec.mode, shock=spec.shock, summary_only=True)
        per = time.perf_counter() - t
    peak = max(mem_probe.peak_increase, warm_probe.peak_increase)
    # populations: one rebuild per distinct value set of the grid's population parameters
    pop_grid = [k for k in spec.grid if k in pop_names]
    n_pops = math.prod(len(spec.grid[k]) for k in pop_grid) if pop_grid else 0
    rebuild = 0.0
    if n_pops:
        t = time.perf_counter()
        simulate.simulate_prepared(prepared, {**spec.base, **first}, mode=spec.mode, shock=spec.shock, summary_only=True)
        rebuild = max(0.0, time.perf_counter() - t - per)
    startup = {"serial": 0.0, "processes": 2.0, "dask": 4.0}[executor]
    work = per * n + rebuild * n_pops
    est = prep_s + startup + (per * n + rebuild * max(n_pops, workers if n_pops else 0)) / workers
    est_hi = prep_s + startup + work + (rebuild * workers if n_pops and executor != "serial" else 0.0)
    mem = blob + (workers * (2 * blob + peak) if executor != "serial" else blob + peak) + n * 400
    return Plan(n, executor, workers, math.ceil(n / size), size, prep_s, per, est, blob, peak, mem, n_pops, rebuild, est_hi)
