"""Likelihood-free calibration with pyabc (ABC-SMC): ``backtest calibrate``.

:func:`calibrate` fits the chosen parameters (priors in :mod:`~backtest.calibration.priors`) of
one or more events against their targets (:mod:`~backtest.calibration.targets`): pyabc's
``ABCSMC`` with the model :class:`~backtest.calibration.model.EventModel` (reduced populations,
``summary_only`` runs) and the targets' distance (lower bounds one-sided, intervals zero inside,
points over their uncertainty, the peak minute as a time distance). Generations run one at a
time so progress can be shown and a run interrupted between (or inside) generations resumes from
its sqlite history (``abc.db``; ``resume=True`` continues it with ``ABCSMC.load``).

Outputs in the run folder (:func:`write_outputs`): ``posterior.parquet`` (one row per particle of
the last generation: the parameters and its weight), ``predictive.parquet`` (the accepted
particles' simulated target values and the events' headline figures, ``EVENT|metric``: the
posterior predictive), ``params.toml`` (posterior
medians, usable as ``--config``; a ``[calibration]`` table says how they were obtained),
``diagnostics.json`` (per generation: epsilon, evaluations, acceptance rate, effective sample
size, distances), ``calibration.pdf`` and ``run.json`` (the request, checked on resume).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from backtest.calibration.figures import Figure, load_figures
from backtest.calibration.model import DEFAULT_N_POSITIONS, EventModel, check_executor, connect_dask
from backtest.calibration.priors import Prior, distribution, priors_for
from backtest.calibration.targets import distance, event_inputs, load_targets
from backtest.errors import CalibrationError

DB_NAME = "abc.db"
RUN_NAME = "run.json"


@dataclass
class CalibrationSpec:
    """What a calibration fits, against what, and how (saved as run.json; compared on resume)."""

    events: list[str]
    fit: list[str]
    samples: int = 100  # particles per generation
    generations: int = 4
    seed: int = 0
    mode: str = "replay"
    n_positions: int = DEFAULT_N_POSITIONS
    targets_file: str | None = None
    base: dict = field(default_factory=dict)  # further overrides for every event (--set)
    store: str | None = None
    symbols: list[str] | None = None  # a subset of the event's symbols (tests; default all)
    #: an ad-hoc event (``--window`` with ``--exchange``/``--symbol``): its event table
    #: (:func:`backtest.event_file.event_table`); ``events`` is then its id alone
    adhoc: dict | None = None

    def identity(self) -> dict:
        """The fields a resumed run must share with the stored one."""
        d = asdict(self)
        d.pop("generations")
        d.pop("store")
        return d


@dataclass
class CalibrationResult:
    spec: CalibrationSpec
    priors: list[Prior]
    targets: list[Figure]
    posterior: Any  # polars frame: parameters + weight
    predictive: Any  # polars frame: target ids + weight
    generations: list[dict]
    medians: dict[str, float]
    bands: dict[str, tuple[float, float]]
    seconds: float
    files: list[Path] = field(default_factory=list)


def weighted_quantile(x: np.ndarray, w: np.ndarray, q: float | list[float]) -> np.ndarray:
    """Quantiles of ``x`` under weights ``w`` (midpoint rule on the weighted CDF; nan ignored)."""
    x = np.asarray(x, float)
    w = np.asarray(w, float)
    ok = np.isfinite(x) & (w > 0)
    qs = np.atleast_1d(np.asarray(q, float))
    if not ok.any():
        return np.full(qs.shape, np.nan)
    x, w = x[ok], w[ok]
    o = np.argsort(x, kind="stable")
    x, w = x[o], w[o]
    c = (np.cumsum(w) - 0.5 * w) / w.sum()
    return np.interp(qs, c, x)


def model_for(spec: CalibrationSpec, figures: list[Figure] | None = None) -> EventModel:
    """The :class:`EventModel` of a spec: each event's targets and inputs; CalibrationError when an
    event has no target."""
    from backtest.events import get_event

    adhoc = None
    if spec.adhoc is not None:
        from backtest.event_file import build_event

        adhoc = build_event(spec.adhoc)
        if list(spec.events) != [adhoc.id]:
            raise CalibrationError(f"an ad-hoc --window event is calibrated alone: give one EVENT ({adhoc.id}), got {', '.join(spec.events)}")
    # an ad-hoc event is in no catalogue: its figures (--targets) name it
    figs = figures if figures is not None else load_figures(spec.targets_file, check_events=adhoc is None)
    evs = [adhoc] if adhoc is not None else [get_event(e, spec.store) for e in spec.events]
    targets: dict[str, list[Figure]] = {}
    inputs: dict[str, dict] = {}
    for ev in evs:
        targets[ev.id] = load_targets(ev, figs, spec.targets_file, spec.symbols)
        inputs[ev.id] = {k: v for k, v in event_inputs(ev, figs).items() if k not in spec.fit}
    base = {"n_positions": spec.n_positions, **spec.base}
    return EventModel([ev.id for ev in evs], targets, base, inputs, spec.mode, spec.store, spec.symbols,
                      event_objects={adhoc.id: adhoc} if adhoc is not None else {})


class TargetDistance:
    """pyabc distance: the targets' distance of a simulation (the observed data are the targets)."""

    def __init__(self, targets: list[Figure]):
        self.targets = targets

    def __call__(self, x: dict, x0: dict) -> float:
        return distance({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in x.items()}, self.targets)


def _quiet_pyabc() -> None:
    for name in ("ABC", "ABC.History", "ABC.Sampler", "ABC.Distance", "ABC.Epsilon", "ABC.Adaptation", "ABC.Population"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _sampler(executor: str, workers: int | None, client: Any):
    """(pyabc sampler, pool to shut down or None). ``processes``: pyabc's ConcurrentFutureSampler
    on a spawned process pool kept for the whole run (pyabc's multicore samplers fork, and forking
    after polars' and numba's threads started can deadlock); each worker prepares the events once."""
    import pyabc

    if executor == "serial":
        return pyabc.sampler.SingleCoreSampler(), None
    if executor == "processes":
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        n = max(1, workers or os.cpu_count() or 1)
        pool = ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"))
        return pyabc.sampler.ConcurrentFutureSampler(cfuture_executor=pool, client_max_jobs=2 * n, batch_size=1), pool
    return pyabc.sampler.DaskDistributedSampler(dask_client=client, batch_size=1), None


def check_budget(samples: int, generations: int) -> None:
    """CalibrationError unless an ABC-SMC run has at least 2 particles and 1 generation."""
    if samples < 2 or generations < 1:
        raise CalibrationError("give --samples >= 2 (particles per generation) and --generations >= 1")


def check_run_dir(out: str | os.PathLike, resume: bool) -> Path:
    """The run folder: new (or without a history) unless ``resume``; with ``resume`` it must hold one."""
    from backtest.paths import check_out_dir

    d = check_out_dir(out, error=CalibrationError)
    db = d / DB_NAME
    if resume and not db.exists():
        raise CalibrationError(f"--resume: {d} holds no calibration history ({DB_NAME}); run without --resume to start one")
    if not resume and db.exists():
        raise CalibrationError(f"{d} already holds a calibration ({DB_NAME}); pass --resume to continue it or choose another --out")
    return d


def calibrate(spec: CalibrationSpec, out: str | os.PathLike, *, executor: str = "serial", workers: int | None = None,
              scheduler: str | None = None, resume: bool = False, progress: Callable[[str, int, int], None] | None = None,
              write: bool = True, model: EventModel | None = None) -> CalibrationResult:
    """Run (or resume) an ABC-SMC calibration; write its outputs in ``out``.

    ``progress(text, generations_done, generations)`` is called before and after each generation.
    ``model`` replaces the simulator (tests: anything with ``target_list``, ``prepare_all`` and
    ``__call__(params) -> {target id: value}``).
    """
    check_executor(executor)
    check_budget(spec.samples, spec.generations)
    d = check_run_dir(out, resume)
    priors = priors_for(spec.fit)
    model = model or model_for(spec)
    targets = model.target_list
    run_file = d / RUN_NAME
    if resume:
        try:
            stored = json.loads(run_file.read_text())
        except (OSError, ValueError):
            raise CalibrationError(f"--resume: {run_file} is missing or unreadable; cannot check the stored run matches") from None
        mine = json.loads(json.dumps(spec.identity(), default=str))
        diff = [k for k in mine if stored.get(k) != mine[k]]
        if diff:
            raise CalibrationError(f"--resume: the stored run differs in {', '.join(diff)} "
                                   f"({diff[0]}={stored.get(diff[0])!r} stored); repeat its options or choose another --out")
    import pyabc

    _quiet_pyabc()
    client = cluster = None
    if executor == "dask":
        client, cluster = connect_dask(scheduler, workers)
    t0 = time.perf_counter()
    pool = None
    try:
        if progress:
            progress("preparing events", 0, spec.generations)
        model.prepare_all()  # checks the data before any sampling (workers prepare their own copy)
        d.mkdir(exist_ok=True)  # only once the run's inputs are checked: a refused run leaves no folder
        np.random.seed(spec.seed)
        sampler, pool = _sampler(executor, workers, client)

        def smc():
            return pyabc.ABCSMC(model, distribution(priors), TargetDistance(targets), population_size=spec.samples, sampler=sampler)

        db = "sqlite:///" + str((d / DB_NAME).resolve())
        if not resume:
            run_file.write_text(json.dumps({**spec.identity(), "generations": spec.generations}, indent=2, default=str))
            smc().new(db, {f.id: 0.0 for f in targets})
        # one generation per run() on a freshly loaded ABCSMC, exactly as a resumed run continues
        # (a second run() on the same object would re-use its first calibration sample for epsilon)
        abc = smc()
        abc.load(db, 1)
        history = abc.history
        for g in range(_generations_done(history), spec.generations):
            if progress:
                progress(f"generation {g + 1}/{spec.generations}", g, spec.generations)
            abc = smc()
            abc.load(db, 1)
            history = abc.run(max_nr_populations=1)
        if progress:
            progress("writing outputs", spec.generations, spec.generations)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    res = _result(spec, priors, targets, history, time.perf_counter() - t0)
    if write:
        res.files = write_outputs(res, d)
    return res


def _generations_done(history) -> int:
    return 0 if history.max_t is None or history.max_t < 0 else int(history.max_t) + 1


def _result(spec, priors, targets, history, seconds) -> CalibrationResult:
    import polars as pl

    t = history.max_t
    df, w = history.get_distribution(m=0, t=t)
    post = pl.DataFrame({p.name: df[p.name].to_numpy(dtype=float) for p in priors}).with_columns(pl.Series("weight", np.asarray(w, float)))
    ws, stats = history.get_weighted_sum_stats_for_model(m=0, t=t)
    ids = [f.id for f in targets]
    # the targets, then the headline figures each sample recorded (EVENT|metric; model.PREDICTED)
    ids += sorted({k for s in stats for k in s if "|" in k and k not in ids})
    pred = pl.DataFrame({k: [float(s.get(k, math.nan)) for s in stats] for k in ids}, schema={k: pl.Float64 for k in ids}).with_columns(
        pl.Series("weight", np.asarray(ws, float)))
    wv = post["weight"].to_numpy()
    medians = {p.name: float(weighted_quantile(post[p.name].to_numpy(), wv, 0.5)[0]) for p in priors}
    bands = {p.name: tuple(float(x) for x in weighted_quantile(post[p.name].to_numpy(), wv, [0.05, 0.95])) for p in priors}
    return CalibrationResult(spec, priors, targets, post, pred, _generations(history), medians, bands, seconds)


def _generations(history) -> list[dict]:
    import pyabc

    pops = history.get_all_populations()
    out = []
    for _, r in pops.iterrows():
        t = int(r["t"])
        if t < 0:
            continue
        _, w = history.get_distribution(m=0, t=t)
        dists = history.get_weighted_distances(t=t)
        dv, dw = dists["distance"].to_numpy(float), dists["w"].to_numpy(float)
        out.append({
            "generation": t,
            "epsilon": float(r["epsilon"]),
            "evaluations": int(r["samples"]),
            "particles": int(r["particles"]),
            "acceptance_rate": float(r["particles"]) / float(r["samples"]) if r["samples"] else None,
            "effective_sample_size": float(pyabc.effective_sample_size(np.asarray(w, float))),
            "distance_median": float(weighted_quantile(dv, dw, 0.5)[0]),
            "distance_min": float(np.min(dv)) if dv.size else None,
            "wall_time_s": float(r["wall_time"]) if r.get("wall_time") is not None else None,
        })
    return out


def provenance(res: CalibrationResult) -> dict:
    """How a fit was obtained: events, targets, seed, settings, library and package versions and
    the command that refits it."""
    import importlib.metadata as md

    s = res.spec

    def ver(p: str) -> str:
        try:
            return md.version(p)
        except md.PackageNotFoundError:
            return "?"

    cmd = ["backtest", "calibrate", *s.events, *sum((["--fit", f] for f in s.fit), []), "--samples", str(s.samples),
           "--generations", str(s.generations), "--seed", str(s.seed), "--mode", s.mode, "--n-positions", str(s.n_positions)]
    if s.targets_file:
        cmd += ["--targets", s.targets_file]
    for k, v in s.base.items():
        cmd += ["--set", f"{k}={v}"]
    if s.adhoc is not None:
        cmd += ["--window", "/".join(s.adhoc["window"]), "--exchange", s.adhoc["exchange"], *sum((["--symbol", x] for x in s.adhoc["symbols"]), [])]
    return {
        "events": s.events,
        "targets": [f.id for f in res.targets],
        "fitted": s.fit,
        "samples": s.samples,
        "generations": s.generations,
        "seed": s.seed,
        "mode": s.mode,
        "n_positions": s.n_positions,
        "overrides": s.base,
        "method": "ABC-SMC (pyabc.ABCSMC), posterior medians of the last generation",
        "versions": {p: ver(p) for p in ("cascade-backtest", "pyabc", "numpy", "numba", "polars")},
        "refit": shlex.join(cmd + ["--out", "DIR"]),
        "bands_90": {k: list(v) for k, v in res.bands.items()},
    }


def write_params(res: CalibrationResult, path: Path) -> None:
    """Posterior medians as a ``--config`` file (table ``[params]``) with its ``[calibration]`` provenance."""
    import tomli_w

    from backtest.paths import write_atomic

    doc = {"params": {k: float(v) for k, v in res.medians.items()}, "calibration": provenance(res)}
    text = ("# Posterior medians of a calibration (backtest calibrate); usable as --config.\n"
            "# [calibration] says how they were obtained and the command that refits them.\n\n") + tomli_w.dumps(doc)
    write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_outputs(res: CalibrationResult, d: Path) -> list[Path]:
    from backtest.paths import write_atomic

    files = [d / "posterior.parquet", d / "predictive.parquet", d / "params.toml", d / "diagnostics.json", d / "calibration.pdf"]
    write_atomic(files[0], lambda p: res.posterior.write_parquet(p))
    write_atomic(files[1], lambda p: res.predictive.write_parquet(p))
    write_params(res, files[2])
    diag = {
        "generations": res.generations,
        "evaluations": int(sum(g["evaluations"] for g in res.generations)),
        "seconds": round(res.seconds, 3),
        "medians": res.medians,
        "bands_90": {k: list(v) for k, v in res.bands.items()},
        "provenance": provenance(res),
    }
    write_atomic(files[3], lambda p: p.write_text(json.dumps(diag, indent=2, default=str), encoding="utf-8"))
    from backtest.calibration.plots import calibration_pdf

    write_atomic(files[4], lambda p: calibration_pdf(res, p))
    return files
