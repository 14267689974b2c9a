"""Commands ``calibrate``, ``validate`` and ``sensitivity`` (registered on the main app by
:func:`register`). Thin: parse, call one API function of :mod:`backtest.calibration`, print.
Progress goes to stderr, only when it is a terminal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

# backtest.cli imports this module to register the commands, so nothing of it is imported here at
# module level (``python -m backtest.cli`` would import it twice); its helpers are taken at run time.
StoreOpt = typer.Option(None, "--store", help="Store root: folder or s3://bucket/prefix (default: $BACKTEST_STORE or the committed data/).")
SetOpt = typer.Option(None, "--set", help="Override a parameter: key=value (repeatable).")


def fail(message: str, code: int = 2) -> None:
    from backtest.cli import fail as cli_fail

    cli_fail(message, code)


def print_frame(df, title: str | None = None) -> None:
    from backtest.cli import print_frame as cli_print_frame

    cli_print_frame(df, title)

ExecutorOpt = typer.Option("processes", "--executor", help="serial, processes (all cores) or dask.")
WorkersOpt = typer.Option(None, "--workers", help="Worker processes (default: one per core).")
SchedulerOpt = typer.Option(None, "--scheduler", help="Address of a running dask scheduler (else a local cluster).")
TargetsOpt = typer.Option(None, "--targets", help="Figures file (TOML, as data/published_figures.toml); default the committed one.")
ModeOpt = typer.Option("replay", "--mode", help="replay (observed path) or cascade (feedback).")
SeedOpt = typer.Option(0, "--seed", help="Seed of the sampler (reproducible on the serial executor).")


def _progress(label: str):
    """A rich progress bar on stderr when it is a terminal, else None; called as (text, done, total)."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(f"{label} " + "{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    task = bar.add_task("starting", total=1)
    bar.start()

    class _P:
        def __call__(self, text: str, done: int, total: int) -> None:
            bar.update(task, description=text, completed=done, total=max(total, 1))

        def close(self) -> None:
            bar.stop()

    return _P()


def _adhoc(events, window, exchange, symbols) -> dict | None:
    """The event table of an ad-hoc ``--window`` event (as ``replay`` takes one), or None; the
    checks and messages are the event resolution's (:func:`backtest.cli_events.resolve_event`)."""
    from backtest.cli_events import resolve_event
    from backtest.errors import EventError

    if window is None:
        if exchange is not None or symbols:
            raise EventError("--exchange and --symbol describe an ad-hoc event: give it with --window START/END")
        return None
    if len(events) != 1:
        raise EventError(f"--window names one ad-hoc event: give one EVENT id for it, got {len(events)}")
    ev = resolve_event(events[0], window=window, exchange=exchange, symbols=symbols)
    from backtest.event_file import event_table

    return event_table(ev.id, exchange=ev.exchange, symbols=list(ev.symbols), window=window)


def _spec(events, fit, targets, samples, generations, seed, mode, n_positions, set_, store, adhoc=None):
    from backtest.calibration.abc import CalibrationSpec
    from backtest.params import parse_set_options

    return CalibrationSpec(events=list(events), fit=list(fit or []), samples=samples, generations=generations, seed=seed,
                           mode=mode, n_positions=n_positions, targets_file=str(targets) if targets else None,
                           base=parse_set_options(set_), store=store, adhoc=adhoc)


def _run(label: str, fn, *args, mode: str, workers: int | None, interrupted=None, **kwargs):
    """Check the shared options, call ``fn(*args, mode=, workers=, progress=, **kwargs)`` with a
    progress display (closed whatever happens) and return its result. ``interrupted``: the line
    (or a function giving it, asked after the interruption) that Ctrl-C prints, exit 130."""
    if mode not in ("replay", "cascade"):
        fail(f"--mode must be replay or cascade, got {mode!r}")
    if workers is not None and workers < 1:
        fail("--workers must be at least 1")
    progress = _progress(label)
    try:
        return fn(*args, mode=mode, workers=workers, progress=progress, **kwargs)
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        fail(interrupted() if callable(interrupted) else interrupted, 130)
    finally:
        if progress is not None:
            progress.close()


def calibrate(
    event: List[str] = typer.Argument(..., help="Event id(s), e.g. 2025-10-10 (several: one fit over all of them)."),
    fit: Optional[List[str]] = typer.Option(None, "--fit", help="Parameter to fit (repeatable); see 'fittable' in the error for the list."),
    targets: Optional[Path] = TargetsOpt,
    samples: int = typer.Option(100, "--samples", help="Particles per generation (accepted samples)."),
    generations: int = typer.Option(4, "--generations", help="ABC-SMC generations (in total, also when resuming)."),
    executor: str = ExecutorOpt,
    workers: Optional[int] = WorkersOpt,
    scheduler: Optional[str] = SchedulerOpt,
    seed: int = SeedOpt,
    mode: str = ModeOpt,
    n_positions: int = typer.Option(200_000, "--n-positions", help="Positions per symbol in each sample's population."),
    set_: Optional[List[str]] = SetOpt,
    out: Path = typer.Option(..., "--out", help="Run folder: abc.db, posterior/predictive.parquet, params.toml, diagnostics.json, calibration.pdf."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run stored in --out (its abc.db)."),
    store: Optional[str] = StoreOpt,
    window: Optional[str] = typer.Option(None, "--window", help="Ad-hoc event window START/END (ISO-8601 with a zone, e.g. "
                                         "2025-10-10T20:00Z/2025-10-11T00:00Z); needs --symbol and --targets naming EVENT."),
    exchange: Optional[str] = typer.Option(None, "--exchange", help="ccxt exchange id of an ad-hoc --window event (default binanceusdm)."),
    symbol: Optional[List[str]] = typer.Option(None, "--symbol", help="ccxt symbol of an ad-hoc --window event (repeatable)."),
) -> None:
    """Fit parameters to an event's published figures (ABC-SMC with pyabc); posterior, --config file, diagnostics, PDF."""
    from backtest.calibration.abc import calibrate as run, check_run_dir

    adhoc = _adhoc(list(event), window, exchange, list(symbol or []))
    if adhoc is not None and targets is None:
        fail(f"an ad-hoc --window event has no published figures: give --targets FILE with figures whose event is {adhoc['id']!r}")
    check_run_dir(out, resume)  # a bad --out fails before any work
    spec = _spec(event, fit, targets, samples, generations, seed, mode, n_positions, set_, store, adhoc)

    def go(spec, out, mode, **kw):  # the mode is the spec's
        return run(spec, out, **kw)

    res = _run("calibrate", go, spec, out, mode=mode, workers=workers, executor=executor, scheduler=scheduler, resume=resume,
               interrupted=lambda: (f"interrupted; the finished generations are kept in {out}/abc.db: continue with --resume"
                                    if (Path(out) / "abc.db").exists() else
                                    "interrupted before the calibration history was started; nothing is kept: run it again"))
    import polars as pl

    print_frame(pl.DataFrame({
        "parameter": [p.name for p in res.priors],
        "median": [res.medians[p.name] for p in res.priors],
        "5 %": [res.bands[p.name][0] for p in res.priors],
        "95 %": [res.bands[p.name][1] for p in res.priors],
        "prior": [f"{p.shape} {p.low:g}..{p.high:g}" for p in res.priors],
    }), f"posterior ({', '.join(spec.events)}; {len(res.targets)} targets)")
    last = res.generations[-1] if res.generations else {}
    typer.echo(f"{len(res.generations)} generations, {sum(g['evaluations'] for g in res.generations)} simulations in {res.seconds:.1f} s; "
               f"last: epsilon {last.get('epsilon', float('nan')):.3g}, acceptance {last.get('acceptance_rate') or 0:.2f}, "
               f"ESS {last.get('effective_sample_size', 0):.0f}; wrote {', '.join(str(p) for p in res.files)}")


def validate(
    train: Optional[str] = typer.Option(None, "--train", help="Training events, comma-separated (default: all but the test events)."),
    test: Optional[str] = typer.Option(None, "--test", help="Test events, comma-separated (default: 2025-10-10)."),
    loo: bool = typer.Option(False, "--loo", help="Leave-one-event-out over the catalogued events with comparable figures."),
    fit: Optional[List[str]] = typer.Option(None, "--fit", help="Parameters to fit (repeatable; default leverage_scale, cross_extra_collateral, long_share)."),
    targets: Optional[Path] = TargetsOpt,
    samples: int = typer.Option(24, "--samples", help="Particles per generation (small default: minutes on 2 cores)."),
    generations: int = typer.Option(2, "--generations", help="ABC-SMC generations per fit."),
    draws: int = typer.Option(24, "--draws", help="Posterior draws simulated per test event (posterior predictive)."),
    n_positions: int = typer.Option(20_000, "--n-positions", help="Positions per symbol (small default; the issue's figure is 200,000)."),
    executor: str = ExecutorOpt,
    workers: Optional[int] = WorkersOpt,
    scheduler: Optional[str] = SchedulerOpt,
    seed: int = SeedOpt,
    mode: str = ModeOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Path = typer.Option(..., "--out", help="Folder for validation.parquet, validation.json and one calibration folder per fit."),
    store: Optional[str] = StoreOpt,
) -> None:
    """Fit on training events, predict every comparable figure of the test events; table of coverage."""
    from backtest.calibration.validate import validate as run
    from backtest.params import parse_set_options

    def events(text, option):
        if text is None:
            return None
        ids = [e.strip() for e in text.split(",") if e.strip()]
        if not ids:
            fail(f"{option} {text!r} names no event; give event ids separated by commas (e.g. {option} 2025-04-07,2024-08-05) or leave it out")
        return ids

    res = _run("validate", run, train=events(train, "--train"), test=events(test, "--test"), loo=loo, fit=list(fit or []) or None,
               targets_file=str(targets) if targets else None, samples=samples, generations=generations, draws=draws,
               n_positions=n_positions, executor=executor, workers=workers, scheduler=scheduler, seed=seed, mode=mode,
               base=parse_set_options(set_), out=out, store=store)
    print_frame(res.display(), "out-of-sample validation (90 % posterior predictive band)")
    typer.echo(res.verdict_line() + f"; wrote {', '.join(str(p) for p in res.files)}")


def sensitivity(
    event: str = typer.Argument(..., help="Event id, e.g. 2025-10-10."),
    params: Optional[List[str]] = typer.Option(None, "--param", help="Parameter (repeatable; default every parameter with a prior)."),
    samples: int = typer.Option(32, "--samples", help="Sobol base samples N, a power of two (runs = N x (parameters + 2))."),
    n_positions: int = typer.Option(20_000, "--n-positions", help="Positions per symbol (small default)."),
    executor: str = ExecutorOpt,
    workers: Optional[int] = WorkersOpt,
    scheduler: Optional[str] = SchedulerOpt,
    seed: int = SeedOpt,
    mode: str = ModeOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Path = typer.Option(..., "--out", help="Folder for sobol.parquet, sobol.json and sensitivity.pdf."),
    store: Optional[str] = StoreOpt,
) -> None:
    """Global sensitivity (Sobol indices, SALib) of the headline figures over the uncertain parameters."""
    from backtest.calibration.sensitivity import run_sensitivity
    from backtest.params import parse_set_options

    res = _run("sensitivity", run_sensitivity, event, params=list(params or []) or None, samples=samples, n_positions=n_positions,
               executor=executor, workers=workers, scheduler=scheduler, seed=seed, mode=mode, base=parse_set_options(set_), out=out,
               store=store)
    print_frame(res.ranked(), f"Sobol indices ({event}; {res.runs} runs; ranked by total order)")
    typer.echo(f"{res.runs} runs in {res.seconds:.1f} s; wrote {', '.join(str(p) for p in res.files)}")


def register(app: typer.Typer, user_errors) -> None:
    """Add the commands to the main app, each wrapped by the CLI's ``user_errors``."""
    for fn in (calibrate, validate, sensitivity):
        app.command(fn.__name__)(user_errors(fn))
