"""The dry run of a sweep (``backtest sweep FILE --dry-run``): its memory and time estimated from
its sizes alone (positions, symbols, bars, combinations) and the measured per-position costs of
:mod:`backtest.resources` - nothing is simulated, no population is built, and the grid is counted,
never listed, so a grid of 10^9 combinations costs nothing to plan (:func:`plan_sweep`,
:class:`Plan`, :func:`sweep_estimate`). Times in seconds, memory in bytes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from backtest.params import apply_overrides, suggest
from backtest.sweep import EXECUTORS, SweepError, SweepSpec, default_chunk_size, param_groups, population_names


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
            + f"  (from the sizes and the per-position costs of backtest.resources: preparing {_dur(self.prepare_s)}, "
            f"one combination {_dur(self.per_combination_s)}"
            + (f", rebuilding a population {_dur(self.rebuild_s)} x {self.populations} population settings" if self.populations else "")
            + ")\n"
            f"estimated memory: {_mib(self.estimate_bytes)} in all (market arrays + population {_mib(self.prepared_bytes)}, "
            f"held by this process and each worker with room for one rebuilt population; "
            f"{_mib(self.sim_peak_bytes)} working memory per simulation)" + _free_note(self.estimate_bytes)
        )


def _free_note(need: int) -> str:
    from backtest.resources import MEMORY_HEADROOM, available_bytes

    free = available_bytes()
    if free is None:
        return ""
    fits = "fits" if need <= MEMORY_HEADROOM * free else "does NOT fit: the run would be refused without --force"
    return f"\nthis machine has {_mib(free)} available: {fits}"


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


def sweep_sizes(spec: SweepSpec, sim: Any = None, store: str | None = None) -> tuple[int, int, int]:
    """(positions per symbol, symbols, bars per symbol) of a sweep's base, from its parameters and
    the event's catalogue entry alone: no bar is loaded, no population built."""
    from backtest.events import get_event

    groups = apply_overrides(param_groups(sim), spec.base)
    n_pos = max([int(getattr(g, "n_positions")) for g in groups if hasattr(g, "n_positions")]
                + [int(v) for v in spec.grid.get("n_positions", [])] or [1_000_000])
    ev = get_event(spec.event, store)
    n_sym = len(spec.symbols or ev.symbols)
    n_bars = max(1, (ev.end_ms - ev.lookback_start_ms) // 60_000)
    return n_pos, n_sym, n_bars


def sweep_estimate(spec: SweepSpec, workers: int, sim: Any = None, store: str | None = None, executor: str = "processes"):
    """The sweep's memory and time (:mod:`backtest.resources`), from sizes alone."""
    from backtest.resources import sweep_estimate as estimate

    n_pos, n_sym, n_bars = sweep_sizes(spec, sim, store)
    return estimate(n_pos, n_sym, n_bars, spec.n_combinations, workers, parallel=executor != "serial", what=f"the sweep of {spec.event}")


def plan_sweep(spec: SweepSpec, *, executor: str = "processes", workers: int | None = None, chunk_size: int | None = None,
               store: str | None = None, sim: Any = None) -> Plan:
    """Estimate a sweep from its sizes (positions, symbols, bars, combinations) and the measured
    per-position costs of :mod:`backtest.resources`: nothing is simulated, no population is
    built, and the grid is counted, never listed (10^9 combinations take no memory)."""
    from backtest import resources as R

    if executor not in EXECUTORS:
        raise SweepError(f"unknown executor {executor!r}{suggest(executor, list(EXECUTORS))}; use serial, processes or dask")
    workers = max(1, workers or os.cpu_count() or 1) if executor != "serial" else 1
    n = spec.n_combinations
    size = chunk_size or default_chunk_size(n, workers)
    n_pos, n_sym, n_bars = sweep_sizes(spec, sim, store)
    blob = R.prepared_bytes(n_pos, n_sym, n_bars)
    peak = n_pos * n_sym * R.KERNEL_WORKSPACE_BYTES_PER_POSITION
    per = n_pos * n_sym * R.SIM_SECONDS_PER_POSITION
    prep_s = n_pos * n_sym * R.BUILD_SECONDS_PER_POSITION
    pop_names = population_names(sim)
    pop_grid = [k for k in spec.grid if k in pop_names]
    n_pops = math.prod(len(spec.grid[k]) for k in pop_grid) if pop_grid else 0
    rebuild = prep_s if n_pops else 0.0
    startup = {"serial": 0.0, "processes": 2.0, "dask": 4.0}[executor]
    work = per * n + rebuild * n_pops
    est = prep_s + startup + (per * n + rebuild * max(n_pops, workers if n_pops else 0)) / workers
    est_hi = prep_s + startup + work + (rebuild * workers if n_pops and executor != "serial" else 0.0)
    mem = sweep_estimate(spec, workers, sim, store, executor).bytes
    return Plan(n, executor, workers, math.ceil(n / size), size, prep_s, per, est, blob, peak, mem, n_pops, rebuild, est_hi)
