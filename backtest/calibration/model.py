"""The model a calibration samples: parameters in, one simulated value per target out.

:class:`EventModel` runs ``backtest.simulate.simulate_prepared(prepared, overrides, mode=...,
summary_only=True)`` on each of its events, ``prepare``d once per process (the prepared market
data and populations live in a module-level cache, not in the pickled model, so a spawned or dask
worker prepares each event once), and reads each target's value from the summary with
:func:`~backtest.calibration.targets.simulated_value`. Nothing here knows the model's internals.

:func:`run_many` evaluates a list of parameter sets serially, on local processes, or on dask.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from backtest.calibration.figures import Figure
from backtest.calibration.targets import simulated_value
from backtest.errors import CalibrationError

#: reduced population for calibration runs (per symbol); the issue's figure
DEFAULT_N_POSITIONS = 200_000

EXECUTORS = ("serial", "processes", "dask")

#: headline figures recorded with every sample beside the targets (the posterior predictive the
#: report's headline reads), keyed ``EVENT|metric`` (:func:`predicted_key`); not part of the distance
PREDICTED = ("liquidated_notional_usd", "long_share", "peak_minute", "peak_minute_notional_usd", "adl_notional_usd",
             "insurance_fund_used_usd")


def predicted_key(event: str, metric: str) -> str:
    """The statistic name of a headline figure of ``event`` in a sample (and predictive.parquet)."""
    return f"{event}|{metric}"

_PREPARED: dict[str, Any] = {}


@dataclass
class EventModel:
    """Parameters -> {target id: simulated value (nan when the run gave none)} over ``events``.

    ``base`` is applied to every event (e.g. ``n_positions``), ``inputs[event]`` on top of it
    (a figure of kind ``input``), the sampled parameters on top of both.
    """

    events: list[str]
    targets: dict[str, list[Figure]]
    base: dict = field(default_factory=dict)
    inputs: dict[str, dict] = field(default_factory=dict)
    mode: str = "replay"
    store: str | None = None
    symbols: list[str] | None = None  # a subset of each event's symbols (default all)
    #: events that are in no catalogue (ad-hoc ``--window`` events), by id; pickled with the model
    event_objects: dict[str, Any] = field(default_factory=dict)

    def _key(self, event: str) -> str:
        return json.dumps([event, {**self.base, **self.inputs.get(event, {})}, self.store, self.symbols], sort_keys=True, default=str)

    def prepared(self, event: str):
        """The event's prepared data, built once per process."""
        key = self._key(event)
        prep = _PREPARED.get(key)
        if prep is None:
            from backtest.simulate import prepare

            prep = _PREPARED[key] = prepare(self.event_objects.get(event, event), {**self.base, **self.inputs.get(event, {})},
                                            symbols=self.symbols, store=self.store)
            prep.reuse_buffers = True  # samples keep only their statistics: rebuilds reuse the evicted arrays
        return prep

    def prepare_all(self) -> None:
        for ev in self.events:
            self.prepared(ev)

    def summaries(self, params: dict) -> dict[str, dict]:
        """One summary dict per event for the parameter set ``params``."""
        from backtest.simulate import simulate_prepared

        over = {k: float(v) for k, v in dict(params).items()}
        return {ev: simulate_prepared(self.prepared(ev), over, mode=self.mode, summary_only=True).summary for ev in self.events}

    def stats(self, summaries: dict[str, dict]) -> dict[str, float]:
        """{target id: value} of every event's targets, plus the event's headline figures
        (:data:`PREDICTED`, keyed by :func:`predicted_key`); nan where the run gave none."""
        from backtest.calibration.targets import event_value

        out: dict[str, float] = {}
        for ev, s in summaries.items():
            for f in self.targets.get(ev, []):
                try:
                    v = simulated_value(s, f)
                except KeyError:
                    v = None
                out[f.id] = math.nan if v is None else float(v)
            for m in PREDICTED:
                v = event_value(s, m)
                out[predicted_key(ev, m)] = math.nan if v is None else float(v)
        return out

    def __call__(self, params: dict) -> dict[str, float]:
        return self.stats(self.summaries(params))

    @property
    def target_list(self) -> list[Figure]:
        return [f for ev in self.events for f in self.targets.get(ev, [])]


def _call(model: EventModel, params: dict) -> dict[str, float]:
    return model(params)


_WORKER_MODEL: list = []


def _init_worker(model: EventModel) -> None:
    _WORKER_MODEL[:] = [model]


def _worker_call(params: dict) -> dict[str, float]:
    return _WORKER_MODEL[0](params)


def run_many(model: EventModel, param_sets: list[dict], *, executor: str = "processes", workers: int | None = None,
             client: Any = None, progress: Callable[[int], None] | None = None) -> list[dict[str, float]]:
    """``model(p)`` for every ``p`` in ``param_sets``, in order. ``processes`` spawns local workers
    (each prepares the events once); ``dask`` needs a connected ``client``. ``progress(n)`` is called with the number of runs done so far."""
    check_executor(executor)
    out: list[dict[str, float]] = []
    if executor == "serial" or len(param_sets) <= 1:
        for p in param_sets:
            out.append(model(p))
            if progress:
                progress(len(out))
        return out
    if executor == "processes":
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        n = max(1, min(workers or os.cpu_count() or 1, len(param_sets)))
        # spawn: forking after polars' and numba's threads started can deadlock; each worker
        # prepares the events once (the model pickles without its prepared data)
        with ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(model,)) as pool:
            for r in pool.map(_worker_call, param_sets, chunksize=max(1, len(param_sets) // (4 * n))):
                out.append(r)
                if progress:
                    progress(len(out))
        return out
    if client is None:
        raise CalibrationError("the dask executor needs a connected client")
    futures = client.map(_call, [model] * len(param_sets), param_sets, pure=False)
    for f in futures:
        out.append(f.result())
        if progress:
            progress(len(out))
    return out


def check_executor(executor: str) -> None:
    if executor not in EXECUTORS:
        from backtest.params import suggest

        raise CalibrationError(f"unknown executor {executor!r}{suggest(executor, list(EXECUTORS))}; use serial, processes or dask")


def connect_dask(scheduler: str | None, workers: int | None):
    """(client, cluster or None) for the dask executor: the sweeps' connection (a running
    scheduler with a hard connect deadline, else a LocalCluster of ``workers`` processes)."""
    from backtest.errors import SweepError
    from backtest.sweep import _connect_dask

    try:
        client, cluster, _ = _connect_dask(scheduler, max(1, workers or os.cpu_count() or 1))
    except SweepError as e:
        raise CalibrationError(str(e)) from None
    return client, cluster
