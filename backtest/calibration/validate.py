"""Out-of-sample validation: fit on training events, predict the test events' figures
(``backtest validate``).

Each fold fits the chosen parameters on its training events with :func:`~backtest.calibration.abc.calibrate`
(one run folder per fold inside the output folder; a folder left by an interrupted validation is
resumed), draws ``draws`` parameter sets from the posterior (resampled by weight, seeded), simulates
every test event at each, and sets each comparable figure of the test events beside the
predictive median and 90 % band (5-95 %): a lower bound is met when the band reaches it, an
interval or a point (± its uncertainty) is covered when the band overlaps it
(:func:`~backtest.calibration.figures.judge_band`); the median is also judged alone.

Leave-one-event-out (``loo``): one fold per catalogued event that has comparable figures and
committed data, trained on all the others.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from backtest.calibration.abc import CalibrationSpec, calibrate, check_budget, model_for
from backtest.calibration.figures import format_value, judge, judge_band, load_figures
from backtest.calibration.model import check_executor, connect_dask, run_many
from backtest.calibration.priors import DEFAULT_FIT, priors_for
from backtest.calibration.targets import event_targets
from backtest.errors import CalibrationError

#: the test event when none is given (the one with the most comparable figures)
DEFAULT_TEST = ("2025-10-10",)

TABLE_COLUMNS = ("fold", "event", "figure", "metric", "kind", "published", "median", "p05", "p95", "band", "median_alone", "trained_on")


@dataclass
class ValidationResult:
    table: Any  # polars frame, TABLE_COLUMNS
    folds: list[dict]
    seconds: float
    files: list[Path] = field(default_factory=list)

    def display(self):
        """The table as text columns (values in their metric's unit)."""
        import polars as pl

        t = self.table
        fmt = lambda col: [format_value(v, m) for v, m in zip(t[col].to_list(), t["metric"].to_list())]  # noqa: E731
        return pl.DataFrame({
            "event": t["event"], "figure": t["figure"].str.replace(r"^[^/]*/", ""), "kind": t["kind"], "published": t["published"],
            "median": fmt("median"), "90 % band": [f"{a} .. {b}" for a, b in zip(fmt("p05"), fmt("p95"))],
            "band": t["band"], "median alone": t["median_alone"], "trained on": t["trained_on"],
        })

    def verdict_line(self) -> str:
        ok = sum(1 for v in self.table["band"].to_list() if v in ("met", "covered"))
        return f"{ok} of {self.table.height} figures met or covered by the 90 % band over {len(self.folds)} fold(s) in {self.seconds:.0f} s"

    def markdown(self) -> str:
        d = self.display()
        head = "| " + " | ".join(d.columns) + " |\n|" + "---|" * len(d.columns) + "\n"
        return head + "".join("| " + " | ".join(str(x) for x in r) + " |\n" for r in d.iter_rows())


def comparable_events(figures: list, store: str | None = None) -> list[str]:
    """Catalogued events with at least one comparable figure (catalogue order)."""
    from backtest.events import load_events

    return [e.id for e in load_events(store) if event_targets(e, None, figures)]


def _events(names: list[str] | None, store: str | None) -> list[str] | None:
    from backtest.events import get_event

    return None if names is None else [get_event(n, store).id for n in names]


def folds_for(train: list[str] | None, test: list[str] | None, loo: bool, figures: list, store: str | None) -> list[tuple[list[str], list[str]]]:
    """(training events, test events) per fold; CalibrationError for an empty or overlapping split."""
    cands = comparable_events(figures, store)
    train, test = _events(train, store), _events(test, store)
    if loo:
        if train or test:
            raise CalibrationError("--loo chooses the folds itself; give it without --train and --test")
        if len(cands) < 2:
            raise CalibrationError(f"--loo needs two or more events with comparable figures, found {len(cands)}")
        return [([e for e in cands if e != t], [t]) for t in cands]
    test = test or [e for e in DEFAULT_TEST if e in cands] or cands[-1:]
    train = train or [e for e in cands if e not in test]
    both = sorted(set(train) & set(test))
    if both:
        raise CalibrationError(f"event {both[0]} is in both --train and --test; an out-of-sample test needs disjoint events")
    for e in [*train, *test]:
        if e not in cands:
            raise CalibrationError(f"event {e} has no comparable figure to fit or predict; events with figures: {', '.join(cands)}")
    if not train:
        raise CalibrationError("no training event left; give --train EVENTS")
    return [(train, test)]


def validate(*, train: list[str] | None = None, test: list[str] | None = None, loo: bool = False, fit: list[str] | None = None,
             targets_file: str | None = None, samples: int = 24, generations: int = 2, draws: int = 24, n_positions: int = 20_000,
             executor: str = "processes", workers: int | None = None, scheduler: str | None = None, seed: int = 0,
             mode: str = "replay", base: dict | None = None, out: str | os.PathLike, store: str | None = None,
             progress: Callable[[str, int, int], None] | None = None) -> ValidationResult:
    """Fit on the training events, predict every comparable figure of the test events; write
    ``validation.parquet``, ``validation.json`` and ``validation.md`` in ``out``."""
    from backtest.paths import check_out_dir, no_empty_leftover

    check_executor(executor)
    if draws < 2:
        raise CalibrationError("--draws must be at least 2 (posterior draws per test event)")
    check_budget(samples, generations)
    priors_for(list(fit or DEFAULT_FIT))  # an unknown --fit fails before any folder is made
    d = check_out_dir(out, error=CalibrationError)
    figures = load_figures(targets_file)
    folds = folds_for(train, test, loo, figures, store)
    with no_empty_leftover(d):  # a fold refused on its inputs leaves no empty folders behind
        return _run_folds(d, folds, figures, fit=fit, targets_file=targets_file, samples=samples, generations=generations, draws=draws,
                          n_positions=n_positions, executor=executor, workers=workers, scheduler=scheduler, seed=seed, mode=mode,
                          base=base, store=store, progress=progress)


def _run_folds(d, folds, figures, *, fit, targets_file, samples, generations, draws, n_positions, executor, workers, scheduler, seed,
               mode, base, store, progress) -> ValidationResult:
    """The folds of :func:`validate` in ``d`` (checked, not yet created) and its outputs."""
    import polars as pl

    from backtest.paths import write_atomic

    d.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    rows: list[dict] = []
    info: list[dict] = []
    client = cluster = None
    if executor == "dask":
        client, cluster = connect_dask(scheduler, workers)
    try:
        for i, (tr, te) in enumerate(folds):
            name = f"fold-{i + 1}-test-{'+'.join(te)}"
            spec = CalibrationSpec(events=tr, fit=list(fit or DEFAULT_FIT), samples=samples, generations=generations, seed=seed, mode=mode,
                                   n_positions=n_positions, targets_file=targets_file, base=dict(base or {}), store=store)
            say = (lambda text, *_: progress(f"fold {i + 1}/{len(folds)}: {text}", i, len(folds))) if progress else None
            fdir = d / name
            fit_res = calibrate(spec, fdir, executor=executor, workers=workers, scheduler=scheduler,
                                resume=(fdir / "abc.db").exists(), progress=say)
            rng = np.random.default_rng(seed + i)
            post = fit_res.posterior
            w = post["weight"].to_numpy()
            pick = rng.choice(post.height, size=draws, replace=True, p=w / w.sum())
            sets = [{p.name: float(post[p.name][int(k)]) for p in fit_res.priors} for k in pick]
            tmodel = model_for(CalibrationSpec(**{**spec.__dict__, "events": te}), figures)
            if say:
                say(f"predicting {', '.join(te)} ({draws} draws)")
            preds = run_many(tmodel, sets, executor=executor, workers=workers, client=client)
            for f in tmodel.target_list:
                v = np.array([p.get(f.id, np.nan) for p in preds], float)
                ok = v[np.isfinite(v)]
                med, lo, hi = (None, None, None) if not ok.size else (float(np.median(ok)), float(np.quantile(ok, 0.05)), float(np.quantile(ok, 0.95)))
                rows.append({
                    "fold": i + 1, "event": f.event, "figure": f.id, "metric": f.metric, "kind": f.kind, "published": f.published_text(),
                    "median": med, "p05": lo, "p95": hi, "band": judge_band(f, lo, hi).text, "median_alone": judge(f, med).text,
                    "trained_on": ", ".join(tr),
                })
            info.append({"fold": i + 1, "train": tr, "test": te, "folder": str(fdir), "medians": fit_res.medians,
                         "bands_90": {k: list(v) for k, v in fit_res.bands.items()}, "evaluations": sum(g["evaluations"] for g in fit_res.generations)})
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    schema = {c: (pl.Float64 if c in ("median", "p05", "p95") else pl.Int64 if c == "fold" else pl.String) for c in TABLE_COLUMNS}
    table = pl.DataFrame(rows, schema=schema)
    res = ValidationResult(table, info, time.perf_counter() - t0)
    files = [d / "validation.parquet", d / "validation.json", d / "validation.md"]
    write_atomic(files[0], lambda p: table.write_parquet(p))
    doc = {"folds": info, "rows": rows, "settings": {"samples": samples, "generations": generations, "draws": draws, "n_positions": n_positions,
                                                      "seed": seed, "mode": mode, "fit": list(fit or DEFAULT_FIT), "executor": executor},
           "summary": res.verdict_line()}
    write_atomic(files[1], lambda p: p.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8"))
    write_atomic(files[2], lambda p: p.write_text(res.markdown(), encoding="utf-8"))
    res.files = files
    return res

