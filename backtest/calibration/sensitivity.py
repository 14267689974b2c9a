"""Global sensitivity of the headline figures: Sobol indices (SALib) over every uncertain parameter
(``backtest sensitivity``).

The parameters vary together over their priors (:mod:`~backtest.calibration.priors`; a Saltelli
design of ``N x (D + 2)`` runs for ``D`` parameters, first and total order, no second order); each
run is one ``simulate_prepared(..., summary_only=True)`` of the event, and the headline figures
(:data:`HEADLINE`) are read from its summary. :func:`sobol` returns the indices as a table: one
row per (metric, parameter) with S1, S1_conf, ST, ST_conf and the rank by ST within the metric.
The figure for the report is :func:`backtest.calibration.plots.sensitivity_figure`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from backtest.calibration.model import EventModel, check_executor, connect_dask, run_many
from backtest.calibration.priors import PRIORS, Prior, priors_for
from backtest.errors import CalibrationError

#: summary metrics whose variance is decomposed (see backtest.calibration.figures.METRICS)
HEADLINE = ("liquidated_notional_usd", "long_share", "peak_minute_notional_usd", "adl_notional_usd", "insurance_fund_used_usd")


@dataclass
class HeadlineModel(EventModel):
    """An :class:`EventModel` that returns the headline metrics of its (single) event's summary."""

    metrics: tuple[str, ...] = HEADLINE

    def stats(self, summaries: dict[str, dict]) -> dict[str, float]:
        from backtest.calibration.targets import event_value

        (s,) = summaries.values()
        out = {}
        for m in self.metrics:
            v = event_value(s, m)
            out[m] = math.nan if v is None else float(v)
        return out


@dataclass
class SensitivityResult:
    event: str
    table: Any  # polars: metric, param, S1, S1_conf, ST, ST_conf, rank
    runs: int
    seconds: float
    samples: Any = None  # polars: the design (parameters) and the metrics of each run
    files: list[Path] = field(default_factory=list)

    def ranked(self):
        """Parameters ranked by their largest total-order index over the metrics, one column per metric."""
        import polars as pl

        t = self.table
        wide = t.pivot(on="metric", index="param", values="ST")
        metrics = [c for c in wide.columns if c != "param"]
        return wide.with_columns(pl.max_horizontal(*metrics).alias("max ST")).sort("max ST", descending=True, nulls_last=True).select(
            "param", "max ST", *metrics)


def _now_utc() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _version() -> str:
    import backtest

    return backtest.__version__


def _command(event: str, priors: list[Prior], samples: int, n_positions: int, seed: int, mode: str, base: dict | None) -> str:
    """The command that recomputes a result (``--param`` only when not every prior is varied)."""
    import shlex

    cmd = ["backtest", "sensitivity", event, "--samples", str(samples), "--n-positions", str(n_positions), "--seed", str(seed), "--mode", mode]
    if [p.name for p in priors] != list(PRIORS):
        cmd += sum((["--param", p.name] for p in priors), [])
    for k, v in (base or {}).items():
        cmd += ["--set", f"{k}={v}"]
    return shlex.join(cmd + ["--out", "DIR"])


def read_result(path: str | os.PathLike) -> dict | None:
    """A written result (``sobol.json`` of :func:`run_sensitivity`, or the folder holding it) as
    ``{"meta": {...}, "table": polars frame}``; None when the file does not exist. A file that is
    not such a result raises :class:`CalibrationError` (one line)."""
    import polars as pl

    p = Path(path)
    if p.is_dir():
        p = p / "sobol.json"
    if not p.is_file():
        return None
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        rows = doc["indices"]
        table = pl.DataFrame(rows, schema={"metric": pl.String, "param": pl.String, "S1": pl.Float64, "S1_conf": pl.Float64,
                                           "ST": pl.Float64, "ST_conf": pl.Float64, "rank": pl.Int64})
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CalibrationError(f"{p} is not a Sobol result of 'backtest sensitivity' ({type(e).__name__}: {e})") from None
    meta = {k: v for k, v in doc.items() if k != "indices"}
    return {"meta": meta, "table": table, "path": p}


def design(priors: list[Prior], n: int, seed: int) -> np.ndarray:
    """Saltelli/Sobol design in the unit cube: ``n x (D + 2)`` rows (first and total order)."""
    from SALib.sample import sobol as sobol_sample

    problem = {"num_vars": len(priors), "names": [p.name for p in priors], "bounds": [[0.0, 1.0]] * len(priors)}
    return sobol_sample.sample(problem, n, calc_second_order=False, seed=seed)


def sobol(priors: list[Prior], unit: np.ndarray, outputs: dict[str, np.ndarray], seed: int = 0):
    """Sobol indices of each output over ``priors`` (``unit``: the design of :func:`design`).

    A run that gave no value for a metric (e.g. no long share without liquidations) takes the
    metric's mean over the runs; a metric that does not vary gets indices of 0.
    """
    import polars as pl
    from SALib.analyze import sobol as sobol_analyze

    problem = {"num_vars": len(priors), "names": [p.name for p in priors], "bounds": [[0.0, 1.0]] * len(priors)}
    rows = []
    for m, y in outputs.items():
        y = np.asarray(y, float)
        fill = np.nanmean(y) if np.isfinite(y).any() else 0.0
        y = np.where(np.isfinite(y), y, fill)
        if np.ptp(y) == 0.0:
            si = {k: np.zeros(len(priors)) for k in ("S1", "S1_conf", "ST", "ST_conf")}
        else:
            si = sobol_analyze.analyze(problem, y, calc_second_order=False, seed=seed)
        order = np.argsort(-np.asarray(si["ST"]), kind="stable")
        rank = np.empty(len(priors), int)
        rank[order] = np.arange(1, len(priors) + 1)
        for i, p in enumerate(priors):
            rows.append({"metric": m, "param": p.name, "S1": float(si["S1"][i]), "S1_conf": float(si["S1_conf"][i]),
                         "ST": float(si["ST"][i]), "ST_conf": float(si["ST_conf"][i]), "rank": int(rank[i])})
    return pl.DataFrame(rows)


def run_sensitivity(event: str, *, params: list[str] | None = None, samples: int = 32, n_positions: int = 20_000,
                    executor: str = "processes", workers: int | None = None, scheduler: str | None = None, seed: int = 0,
                    mode: str = "replay", base: dict | None = None, out: str | os.PathLike | None = None, store: str | None = None,
                    progress: Callable[[str, int, int], None] | None = None, model: EventModel | None = None) -> SensitivityResult:
    """Sobol indices of the headline figures of ``event`` over ``params`` (default: every prior).

    ``samples`` is N (a power of two); the runs are ``N x (D + 2)``. Writes ``sobol.parquet``,
    ``runs.parquet``, ``sobol.json`` and ``sensitivity.pdf`` in ``out`` when given. ``model``
    replaces the simulator (tests).
    """
    import polars as pl

    from backtest.events import get_event
    from backtest.paths import check_out_dir, write_atomic

    check_executor(executor)
    if samples < 2 or samples & (samples - 1):
        raise CalibrationError(f"--samples must be a power of two >= 2 (Sobol sequences), got {samples}")
    d = check_out_dir(out, error=CalibrationError) if out is not None else None
    priors = priors_for(list(params or PRIORS))
    ev = get_event(event, store)
    if model is None:
        model = HeadlineModel([ev.id], {}, {"n_positions": n_positions, **(base or {})}, {}, mode, store)
    unit = design(priors, samples, seed)
    sets = [{p.name: p.from_unit(u) for p, u in zip(priors, row)} for row in unit]
    t0 = time.perf_counter()
    client = cluster = None
    if executor == "dask":
        client, cluster = connect_dask(scheduler, workers)
    try:
        say = (lambda n: progress("runs", n, len(sets))) if progress else None
        outs = run_many(model, sets, executor=executor, workers=workers, client=client, progress=say)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    metrics = list(outs[0]) if outs else []
    outputs = {m: np.array([o[m] for o in outs], float) for m in metrics}
    table = sobol(priors, unit, outputs, seed)
    runs = pl.DataFrame({**{p.name: [s[p.name] for s in sets] for p in priors}, **{m: outputs[m] for m in metrics}})
    res = SensitivityResult(ev.id, table, len(sets), time.perf_counter() - t0, runs)
    if d is not None:
        d.mkdir(exist_ok=True)
        files = [d / "sobol.parquet", d / "runs.parquet", d / "sobol.json", d / "sensitivity.pdf"]
        write_atomic(files[0], lambda p: table.write_parquet(p))
        write_atomic(files[1], lambda p: runs.write_parquet(p))
        doc = {"event": ev.id, "runs": len(sets), "samples": samples, "seed": seed, "mode": mode, "n_positions": n_positions,
               "computed_utc": _now_utc(), "command": _command(ev.id, priors, samples, n_positions, seed, mode, base),
               "version": _version(),
               "priors": {p.name: {"shape": p.shape, "low": p.low, "high": p.high, "basis": p.basis} for p in priors},
               "indices": table.to_dicts(), "seconds": round(res.seconds, 3)}
        write_atomic(files[2], lambda p: p.write_text(json.dumps(doc, indent=2), encoding="utf-8"))
        from backtest.calibration.plots import sensitivity_figure, write_pdf

        write_atomic(files[3], lambda p: write_pdf([sensitivity_figure(table, m) for m in metrics], p))
        res.files = files
    return res
