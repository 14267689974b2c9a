"""Parameter sweeps: TOML grids run serially, on local processes, or on a dask cluster.

Sweep file
----------
A sweep file names an event, a base scenario and a grid; every combination of the grid's values
is simulated, and one row per combination (its parameters + the summary metrics) goes into
``results.parquet``::

    event = "2025-10-10"          # required: an event id of the catalogue
    mode = "cascade"              # "cascade" (default: forced orders move the price) or "replay"
    # shock = "-5%@2025-10-10T21:00:00Z"   # optional exogenous shock (cascade mode)
    # symbols = ["BTC/USDT:USDT"]          # optional subset of the event's symbols

    [base]                        # flat parameters applied to every combination (optional)
    seed = 7

    [grid]                        # parameter -> list of values (at least one parameter)
    leverage_scale = [0.5, 1.0, 1.5, 2.0]
    depth_multiplier = [0.5, 1.0, 2.0]

    [output]                      # optional
    metric = "liquidated_notional_usd"   # colour of the heatmaps
    x = "leverage_scale"                 # heatmap axes (default: the first two grid parameters)
    y = "depth_multiplier"

Parameter names are the flat names of ``backtest.population.PopulationParams`` and
``backtest.simulate.SimParams`` (the same names ``--set`` accepts); an unknown name is refused
with the closest valid one suggested. ``backtest sweep FILE --set key=value`` changes the base.

Seeds: every combination runs with the seed of its own parameters (``seed`` from ``[base]`` or
from the grid), so a combination's result does not depend on which worker runs it, in which
order, or in which chunk: results are identical whichever executor runs them. With ``seed`` not
in the grid, all combinations share one population (the fair comparison); put ``seed`` in the
grid to see the sampling spread.

Execution
---------
Combinations that share a population (same values of the population's parameters) run one
after the other, so each population is rebuilt once per value set, not once per combination.
The event's market arrays and base population are built once (``simulate.prepare``) and sent
to each worker once: as the initialiser argument of each ``processes`` worker, or with
``Client.scatter(..., broadcast=True)`` on dask. Combinations travel in chunks of many
(``chunk_size``, by default about four chunks per worker), each chunk returning its rows.

Executors: ``serial`` (this process), ``processes`` (default; a spawn-context process pool,
one worker per core), ``dask`` (``scheduler`` = the address of a running scheduler, e.g.
``tcp://10.0.0.5:8786``, given ``connect_timeout`` seconds, 5 by default, to connect and shake
hands; else a ``LocalCluster`` of ``workers`` single-threaded processes).

Each scenario asks the simulation for its summary only (``summary_only=True``, when the API
offers it): a sweep keeps no per-bar or per-position frames.

``--dry-run`` builds the event once, times one combination (and one population rebuild when
the grid changes population parameters) and prints the number of combinations, chunks, an
estimated time (from perfect scaling over the workers to none) and memory.

Outputs (``out`` folder, created if missing; its parent folder must exist): ``results.parquet`` (one row per
combination, keyed by ``combo`` and the grid's parameters, sorted by ``combo``, then one column
per scalar summary metric, named ``result_NAME`` where a grid parameter has the metric's name,
e.g. ``long_share``), ``heatmaps.pdf`` (the metric over two parameters, other parameters
averaged; then the other metrics that vary; then the other pairs of parameters), ``sweep.json``
(the resolved sweep: event, mode, base, grid, executor, timings). All three are written at the
end, each atomically: an interrupted or failed sweep leaves no half-written files.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import pickle
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from backtest.errors import SweepError, UserError
from backtest.params import ParamError, apply_overrides, field_names, suggest
from backtest.paths import write_atomic_group

EXECUTORS = ("serial", "processes", "dask")
MODES = ("cascade", "replay")
TOP_KEYS = ("event", "mode", "shock", "symbols", "base", "grid", "output", "name", "description")
OUTPUT_KEYS = ("metric", "x", "y", "metrics")
#: summary metrics (DESIGN §10); a sweep's table carries every scalar of the summary
SUMMARY_METRICS = (
    "positions",
    "open_notional_usd",
    "liquidated_notional_usd",
    "long_liquidated_usd",
    "short_liquidated_usd",
    "long_share",
    "peak_minute",
    "peak_minute_notional_usd",
    "max_cascade_depth",
    "amplification",
    "adl_notional_usd",
    "insurance_fund_min_usd",
)
#: metrics drawn on the extra heatmap pages when present
HEATMAP_METRICS = ("liquidated_notional_usd", "long_share", "peak_minute_notional_usd", "max_cascade_depth", "amplification", "adl_notional_usd")
#: seconds allowed for connecting to a running scheduler (TCP connect + dask handshake)
DASK_CONNECT_TIMEOUT_S = 5.0




@dataclass
class SweepSpec:
    """A parsed, validated sweep file."""

    event: str
    mode: str = "cascade"
    shock: str | None = None
    symbols: list[str] | None = None
    base: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    metric: str = "liquidated_notional_usd"
    x: str | None = None
    y: str | None = None
    source: str = ""

    @property
    def n_combinations(self) -> int:
        return math.prod(len(v) for v in self.grid.values())

    def combinations(self) -> list[dict[str, Any]]:
        """Every combination of the grid, in a fixed order (the last parameter varies fastest)."""
        names = list(self.grid)
        return [dict(zip(names, vals)) for vals in itertools.product(*(self.grid[n] for n in names))]


@dataclass
class SweepResult:
    spec: SweepSpec
    table: Any  # polars DataFrame
    executor: str
    workers: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# parsing and validation
# ---------------------------------------------------------------------------------------------
def _sim_module(sim):
    if sim is not None:
        return sim
    import backtest.simulate as simulate

    return simulate


def param_groups(sim=None) -> list[Any]:
    """Default instances of the parameter groups that flat names resolve against."""
    sim = _sim_module(sim)
    if hasattr(sim, "param_groups"):
        return list(sim.param_groups())
    from backtest.population import PopulationParams

    return [PopulationParams(), sim.SimParams()]


def load_sweep(path: str | os.PathLike, *, set_overrides: dict | None = None, sim=None, store: str | None = None) -> SweepSpec:
    """Read and validate a sweep file (see the module docstring). Raises :class:`SweepError`."""
    from backtest.params import read_toml

    raw = read_toml(path, "sweep file", SweepError, example="examples/sweep_2025-10-10.toml")
    return parse_sweep(raw, source=str(path), set_overrides=set_overrides, sim=sim, store=store)


def parse_sweep(raw: dict, *, source: str = "<sweep>", set_overrides: dict | None = None, sim=None, store: str | None = None) -> SweepSpec:
    """Validate a sweep given as a dict (the parsed TOML)."""
    for k in raw:
        if k not in TOP_KEYS:
            raise SweepError(f"{source}: unknown key {k!r}{suggest(k, list(TOP_KEYS))}; keys are {', '.join(TOP_KEYS)}")
    if "event" not in raw:
        raise SweepError(f"{source}: no event; add e.g. event = \"2025-10-10\"")
    from backtest.events import get_event

    ev = get_event(str(raw["event"]), store)
    mode = str(raw.get("mode", "cascade"))
    if mode not in MODES:
        raise SweepError(f"{source}: mode {mode!r} is not one of {', '.join(MODES)}")
    base = raw.get("base", {}) or {}
    grid_raw = raw.get("grid", {}) or {}
    if not isinstance(base, dict) or not isinstance(grid_raw, dict):
        raise SweepError(f"{source}: [base] and [grid] must be tables of name = value(s)")
    if not grid_raw:
        raise SweepError(f"{source}: the grid is empty; add a [grid] table with at least one parameter = [values...]")
    base = {**base, **(set_overrides or {})}

    groups = param_groups(sim)
    valid = field_names(*groups)
    try:
        resolved_base = apply_overrides(groups, base)
    except ParamError as e:
        raise SweepError(f"{source}: [base] {e}") from None
    grid: dict[str, list[Any]] = {}
    for name, values in grid_raw.items():
        if name not in valid:
            raise SweepError(f"{source}: [grid] unknown parameter {name!r}{suggest(name, valid)}")
        vals = values if isinstance(values, list) else [values]
        if not vals:
            raise SweepError(f"{source}: [grid] {name} has no values; the grid is empty")
        coerced = []
        for v in vals:
            try:
                g = apply_overrides(resolved_base, {name: v})
            except ParamError as e:
                raise SweepError(f"{source}: [grid] {e}") from None
            coerced.append(next(getattr(x, name) for x in g if name in {f.name for f in dataclasses.fields(x)}))
        if len(set(map(repr, coerced))) != len(coerced):
            raise SweepError(f"{source}: [grid] {name} lists a value twice")
        grid[name] = coerced
    out = raw.get("output", {}) or {}
    for k in out:
        if k not in OUTPUT_KEYS:
            raise SweepError(f"{source}: [output] unknown key {k!r}{suggest(k, list(OUTPUT_KEYS))}")
    metric = str(out.get("metric", "liquidated_notional_usd"))
    if metric not in SUMMARY_METRICS:
        raise SweepError(f"{source}: [output] metric {metric!r} is not a summary metric{suggest(metric, list(SUMMARY_METRICS))}")
    names = list(grid)
    x = out.get("x", names[0])
    y = out.get("y", names[1] if len(names) > 1 else None)
    for axis, v in (("x", x), ("y", y)):
        if v is not None and v not in grid:
            raise SweepError(f"{source}: [output] {axis} = {v!r} is not a grid parameter{suggest(str(v), names)}")
    if x is not None and x == y:
        raise SweepError(f"{source}: [output] x and y are both {x!r}; choose two different grid parameters")
    shock = raw.get("shock")
    if shock is not None:
        _check_shock(shock, mode, ev, source)
    symbols = raw.get("symbols")
    if symbols is not None:
        bad = [s for s in symbols if s not in ev.symbols]
        if bad:
            raise SweepError(f"{source}: symbols {bad} are not symbols of event {ev.id} ({', '.join(ev.symbols)})")
    return SweepSpec(
        event=ev.id, mode=mode, shock=shock, symbols=list(symbols) if symbols else None,
        base=base, grid=grid, metric=metric, x=x, y=y, source=source,
    )


def _check_shock(shock: Any, mode: str, ev: Any, source: str) -> None:
    """A bad shock fails when the file is read, not in every worker after the event is built."""
    if not isinstance(shock, str):
        raise SweepError(f"{source}: shock must be a string such as \"-5%@2025-10-10T21:00:00Z\", got {shock!r}")
    if mode != "cascade":
        raise SweepError(f"{source}: a shock needs mode = \"cascade\" (mode is {mode!r})")
    try:
        from backtest.simulate import parse_shock
    except ImportError:  # pragma: no cover - the simulation checks it itself
        return
    try:
        _, ms = parse_shock(shock, getattr(ev, "core_start_ms", None))
    except UserError as e:  # its fixes are written as the option; here it is the file's key
        msg = re.sub(r"--shock[= ](\S+)", r'shock = "\1"', str(e).replace("time of --shock", "time of shock"))
        raise SweepError(f"{source}: {msg}") from None
    if not ev.start_ms <= ms < ev.end_ms:
        from backtest.store import ms_to_iso

        raise SweepError(f"{source}: shock time {ms_to_iso(ms)} is outside the event window {ev.start_iso} → {ev.end_iso}")


# ---------------------------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _metrics(summary: dict) -> dict[str, Any]:
    out = {}
    for k, v in summary.items():
        if k in ("params", "symbols", "event", "seed"):
            continue
        if v is None or isinstance(v, (bool, int, float, str)):
            out[k] = v
    return out


def run_chunk(simulate_prepared: Callable, prepared: Any, mode: str, shock: str | None, base: dict, chunk: list[tuple[int, dict]]) -> list[tuple]:
    """Simulate one chunk of combinations; one (combo index, parameters, metrics) tuple each."""
    rows = []
    kw = summary_kwargs(simulate_prepared)
    for i, combo in chunk:
        res = simulate_prepared(prepared, {**base, **combo}, mode=mode, shock=shock, **kw)
        rows.append((i, combo, _metrics(res.summary)))
    return rows


def summary_kwargs(simulate_prepared: Callable) -> dict:
    """``{"summary_only": True}`` when the simulation API can skip building the per-bar and
    per-position frames (a sweep keeps only the summary), else ``{}``."""
    import inspect

    try:
        params = inspect.signature(simulate_prepared).parameters
    except (TypeError, ValueError):
        return {}
    return {"summary_only": True} if "summary_only" in params else {}


def _init_process(simulate_prepared: Callable, prepared_bytes: bytes, parent_pid: int | None = None) -> None:
    from backtest.lifetimes import die_with_parent

    die_with_parent(parent_pid)  # a killed sweep leaves no worker behind
    _WORKER["fn"] = simulate_prepared
    _WORKER["prepared"] = pickle.loads(prepared_bytes)


def _process_chunk(mode, shock, base, chunk):
    return run_chunk(_WORKER["fn"], _WORKER["prepared"], mode, shock, base, chunk)


def population_names(sim=None) -> set[str]:
    """Names of the parameters that change the population (rebuilding it costs more than a run)."""
    groups = param_groups(sim)
    return set(field_names(groups[0])) if len(groups) > 1 else set()


def execution_order(spec: SweepSpec, sim=None) -> list[tuple[int, dict]]:
    """(combo index, combination) pairs ordered so that combinations sharing a population run
    one after the other (each worker then rebuilds a population once per value, not once per
    combination). The combo index stays the file's order; results are sorted back by it."""
    pop = [n for n in spec.grid if n in population_names(sim)]
    combos = list(enumerate(spec.combinations()))
    if pop:
        combos.sort(key=lambda ic: tuple(spec.grid[n].index(ic[1][n]) for n in pop))
    return combos


def chunks_of(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def default_chunk_size(n: int, workers: int) -> int:
    """About four chunks per worker (load balance) and at most 512 combinations per chunk."""
    return max(1, min(512, math.ceil(n / max(1, workers * 4))))


# ---------------------------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------------------------
class _Bar:
    def __init__(self, total: int, label: str, progress: Any):
        self.cb = progress if callable(progress) else None
        on = sys.stderr.isatty() if progress is None else bool(progress) and not callable(progress)
        self.done = 0
        self.total = total
        self.p = None
        if on:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.p = Progress(
                TextColumn("[bold]sweep[/bold] {task.description}"), BarColumn(bar_width=None), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self.p.start()
            self.t = self.p.add_task(label, total=total)

    def advance(self, n: int) -> None:
        self.done += n
        if self.p is not None:
            self.p.update(self.t, advance=n)
        if self.cb:
            self.cb(self.done, self.total)

    def close(self) -> None:
        if self.p is not None:
            self.p.stop()


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
def _connect_dask(scheduler: str | None, workers: int, timeout: float = DASK_CONNECT_TIMEOUT_S):
    """A dask Client: to ``scheduler``, else to a new LocalCluster. Returns (client,
    cluster-or-None, number of workers).

    Connecting to ``scheduler`` has a hard deadline of ``timeout`` seconds for the whole connect
    and handshake: ``Client(..., timeout=)`` bounds only the TCP connect, and a listener that
    accepts but never speaks dask would keep it waiting for the handshake forever. So the Client
    is built in a daemon thread that is given up on at the deadline (a client that connects after
    that is closed at once). Any failure - no listener, silence, an answer that is not dask's
    protocol - becomes one :class:`SweepError` line.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - dask is a dependency
        raise SweepError("the dask executor needs the 'distributed' package") from None
    if scheduler:
        client, n = _connect_scheduler(Client, scheduler, timeout)
        return client, None, n
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster), cluster, workers


def _connect_scheduler(client_cls, scheduler: str, timeout: float):
    import threading

    if not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and 0 < timeout <= 3600):
        raise SweepError(f"the dask connect timeout must be a number of seconds in (0, 3600], got {timeout!r}")
    box: dict[str, Any] = {}
    lock = threading.Lock()

    def failed(e: BaseException) -> None:
        # keep only what the message needs: the exception's traceback would keep the half-built
        # Client alive until exit, whose __del__ then blocks the exit and prints a traceback
        with lock:
            box["error"] = (type(e).__name__, str(e).strip(), isinstance(e, (OSError, TimeoutError)))

    class _Client(client_cls):  # type: ignore[misc, valid-type]
        """A Client whose failed construction is not closed again at garbage collection: its
        ``__del__`` would wait (twice the timeout) on a connection that is already broken and
        print a traceback at exit."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._backtest_failed = False
            try:
                super().__init__(*args, **kwargs)
            except BaseException:
                self._backtest_failed = True
                raise

        def __del__(self) -> None:
            if getattr(self, "_backtest_failed", False):
                return
            try:
                super().__del__()
            except Exception:  # noqa: BLE001 - nothing to report at garbage collection
                pass

    def close_quietly(c) -> None:
        try:
            c.close()
        except Exception:  # noqa: BLE001 - nothing to report about a connection given up on
            pass

    def connect() -> None:
        try:
            # dask's own timeout (TCP connect, retried) ends a little earlier, so a refused
            # connection is reported with its reason rather than as a silent deadline
            c = _Client(scheduler, timeout=f"{0.8 * timeout:g}s")
        except BaseException as e:  # noqa: BLE001 - reported to the caller below
            failed(e)
            return
        try:  # the worker count is one more round trip: inside the deadline too
            n_workers = len(c.scheduler_info().get("workers", {}))
        except BaseException as e:  # noqa: BLE001
            failed(e)
            close_quietly(c)
            return
        with lock:
            late = box.get("abandoned", False)
            if not late:
                box["client"] = (c, n_workers)
        if late:  # the caller has given up: do not leak a connection
            close_quietly(c)

    t = threading.Thread(target=connect, name="backtest-dask-connect", daemon=True)
    t.start()
    t.join(timeout)
    with lock:
        if "client" in box:
            return box["client"]
        box["abandoned"] = True
        err = box.get("error")
    hint = "is it running, and is that its address? (start one with 'dask scheduler')"
    if err is None:
        raise SweepError(f"cannot reach the dask scheduler at {scheduler} within {timeout:g} s (no dask handshake); {hint}")
    kind, text, unreachable = err
    why = text.splitlines()[0] if text else kind
    if unreachable:
        raise SweepError(f"cannot reach the dask scheduler at {scheduler} within {timeout:g} s ({why[:120]}); {hint}")
    raise SweepError(f"cannot use the dask scheduler at {scheduler}: connecting failed ({kind}: {why[:120]}); "
                     "is that the address of a running dask scheduler (tcp://HOST:PORT)?")


def check_out_dir(out: str | os.PathLike) -> Path:
    """The output folder: created when the results are written (like ``replay --out``), but only
    inside a folder that exists; refused when it is an existing file (see ``backtest.paths``)."""
    from backtest.paths import check_out_dir as check

    return check(out, error=SweepError)


def run_sweep(
    spec: SweepSpec,
    *,
    executor: str = "processes",
    workers: int | None = None,
    scheduler: str | None = None,
    chunk_size: int | None = None,
    out: str | os.PathLike | None = None,
    store: str | None = None,
    progress: Any = None,
    sim: Any = None,
    connect_timeout: float = DASK_CONNECT_TIMEOUT_S,
) -> SweepResult:
    """Run every combination of ``spec`` and return the results table (written to ``out``).

    ``connect_timeout``: seconds allowed for connecting to ``scheduler`` (connect + handshake)."""
    if executor not in EXECUTORS:
        raise SweepError(f"unknown executor {executor!r}{suggest(executor, list(EXECUTORS))}; use serial, processes or dask")
    if scheduler is not None and not scheduler.strip():
        raise SweepError("--scheduler is empty; give the address of a running dask scheduler (e.g. tcp://127.0.0.1:8786) or omit it")
    if scheduler and executor != "dask":
        raise SweepError("--scheduler needs --executor dask")
    out_dir = check_out_dir(out) if out is not None else None
    simulate = _sim_module(sim)
    workers = max(1, workers or os.cpu_count() or 1) if executor != "serial" else 1
    sweep_estimate(spec, workers, sim, store, executor).check()  # before the grid is materialised or anything built
    combos = execution_order(spec, sim)
    n = len(combos)
    size = chunk_size or default_chunk_size(n, workers)
    chunks = chunks_of(combos, size)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    client = cluster = None
    if executor == "dask":  # connect first: an unreachable scheduler fails before any work
        client, cluster, n_workers = _connect_dask(scheduler, workers, connect_timeout)
        workers = max(1, n_workers or workers)
    try:
        t = time.perf_counter()
        prepared = simulate.prepare(spec.event, spec.base or None, symbols=spec.symbols, store=store)
        timings["prepare_s"] = time.perf_counter() - t
        fn = simulate.simulate_prepared
        bar = _Bar(n, f"{executor}×{workers}", progress)
        rows: list[dict] = []
        t = time.perf_counter()
        try:
            if executor == "serial":
                for ch in chunks:
                    rows.extend(run_chunk(fn, prepared, spec.mode, spec.shock, spec.base, ch))
                    bar.advance(len(ch))
            elif executor == "processes":
                rows = _run_processes(fn, prepared, spec, chunks, workers, bar)
            else:
                rows = _run_dask(client, fn, prepared, spec, chunks, bar)
        finally:
            bar.close()
        timings["simulate_s"] = time.perf_counter() - t
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    table = _table(rows, spec)
    res = SweepResult(spec, table, executor, workers, time.perf_counter() - t0, timings)
    if out_dir is not None:
        res.files = write_outputs(res, out_dir, sim=sim)
    return res


def _run_processes(fn, prepared, spec: SweepSpec, chunks, workers: int, bar: _Bar) -> list[dict]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    blob = pickle.dumps(prepared, protocol=pickle.HIGHEST_PROTOCOL)
    rows: list[dict] = []
    ctx = mp.get_context("spawn")  # fork after polars/numba threads started is unsafe
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=ctx, initializer=_init_process, initargs=(fn, blob, os.getpid())) as pool:
        futs = {pool.submit(_process_chunk, spec.mode, spec.shock, spec.base, ch): len(ch) for ch in chunks}
        try:
            for f in as_completed(futs):
                rows.extend(f.result())
                bar.advance(futs[f])
        except BaseException:
            for f in futs:
                f.cancel()
            raise
    return rows


def _run_dask(client, fn, prepared, spec: SweepSpec, chunks, bar: _Bar) -> list[dict]:
    from distributed import as_completed

    [pf] = client.scatter([prepared], broadcast=True)  # market arrays + population: once per worker
    futs = [client.submit(run_chunk, fn, pf, spec.mode, spec.shock, spec.base, ch, pure=False) for ch in chunks]
    sizes = {f.key: len(ch) for f, ch in zip(futs, chunks)}
    rows: list[dict] = []
    try:
        for f in as_completed(futs):
            rows.extend(f.result())
            bar.advance(sizes[f.key])
    except BaseException:
        client.cancel(futs)
        raise
    return rows


def metric_column(metric: str, spec: SweepSpec) -> str:
    """The results-table column of a summary metric: its own name, or ``result_NAME`` when a
    grid parameter has the same name (``long_share`` is both a parameter and a metric)."""
    return f"result_{metric}" if metric in spec.grid else metric


def _table(rows: list[tuple], spec: SweepSpec):
    import polars as pl

    rows = [{"combo": i, **combo, **{metric_column(k, spec): v for k, v in m.items()}} for i, combo, m in sorted(rows, key=lambda r: r[0])]
    df = pl.DataFrame(rows, infer_schema_length=None, strict=False)
    key = ["combo", *spec.grid]
    rest = [c for c in df.columns if c not in key]
    return df.select(*key, *rest)


# ---------------------------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------------------------
def write_outputs(res: SweepResult, out_dir: Path, sim: Any = None) -> list[Path]:
    """``results.parquet``, ``heatmaps.pdf`` and ``sweep.json`` in ``out_dir`` (atomic writes;
    the folder is created if missing, its parent must exist)."""
    out_dir = check_out_dir(out_dir)
    out_dir.mkdir(exist_ok=True)
    spec = res.spec
    # draw first: a plotting failure must not leave a results table without its report
    figs = heatmap_figures(res.table, spec)
    meta = {
        "event": spec.event, "mode": spec.mode, "shock": spec.shock, "symbols": spec.symbols, "base": spec.base,
        "grid": spec.grid, "metric": spec.metric, "x": spec.x, "y": spec.y, "combinations": spec.n_combinations,
        "executor": res.executor, "workers": res.workers, "seconds": round(res.seconds, 3),
        "timings": {k: round(v, 3) for k, v in res.timings.items()}, "source": spec.source,
    }
    # all three to temporary names first, renamed together; sweep.json (last) marks a whole result
    files = [out_dir / "results.parquet", out_dir / "heatmaps.pdf", out_dir / "sweep.json"]
    text = json.dumps(meta, indent=2, default=str) + "\n"
    write_atomic_group([(files[0], lambda t: res.table.write_parquet(t)), (files[1], lambda t: _write_pdf(figs, t, spec)),
                        (files[2], lambda t: t.write_text(text))])
    return files


def heatmap_figures(table, spec: SweepSpec) -> list:
    """Figures of the sweep PDF: the chosen metric over x × y, then the other metrics that vary,
    then the chosen metric over the other pairs of grid parameters."""
    from backtest.report.common import RC, mpl, new_figure, usd_axis
    from backtest.report.figures import metric_label, sweep_heatmap_figure

    mpl()
    import matplotlib

    names = list(spec.grid)
    others = [n for n in names if n not in (spec.x, spec.y)]
    avg = f"; mean over {', '.join(others)}" if others else ""
    title = f"Sweep of {spec.event} ({spec.mode}, {spec.n_combinations} combinations)"
    figs = []
    with matplotlib.rc_context(RC):
        if spec.y is None:  # one parameter: a line, not a heatmap
            for metric in [metric_column(m, spec) for m in (spec.metric, *[m for m in HEATMAP_METRICS if m != spec.metric])]:
                if metric not in table.columns:
                    continue
                fig = new_figure()
                fig.suptitle(title, fontsize=14, fontweight="bold")
                ax = fig.add_subplot(1, 1, 1)
                d = table.sort(spec.x)
                ax.plot([str(v) for v in d[spec.x].to_list()], d[metric].to_numpy(), marker="o")
                ax.set_xlabel(spec.x)
                ax.set_ylabel(metric_label(metric))
                ax.set_title(f"{metric_label(metric)} against {spec.x}", fontsize=10)
                if metric.endswith("_usd"):
                    usd_axis(ax)
                figs.append(fig)
            return figs
        metrics = [metric_column(m, spec) for m in (spec.metric, *[m for m in HEATMAP_METRICS if m != spec.metric])]
        for k, metric in enumerate(metrics):
            if metric in table.columns and table[metric].dtype.is_numeric() and (k == 0 or table[metric].n_unique() > 1):
                figs.append(sweep_heatmap_figure(table, spec.x, spec.y, metric, title, f"{metric_label(metric)} by {spec.x} and {spec.y}{avg}"))
        for a, b in itertools.combinations(names, 2):
            if {a, b} == {spec.x, spec.y} or len(figs) >= 16:
                continue
            rest = [n for n in names if n not in (a, b)]
            note = f"{metric_label(spec.metric)} by {a} and {b}" + (f"; mean over {', '.join(rest)}" if rest else "")
            figs.append(sweep_heatmap_figure(table, a, b, metric_column(spec.metric, spec), title, note))
        for k, fig in enumerate(figs, 1):
            fig.text(0.995, 0.004, f"{spec.event} sweep · page {k}/{len(figs)}", ha="right", va="bottom", fontsize=7, color="#7f8c8d")
    return figs


def _write_pdf(figs, path: Path, spec: SweepSpec) -> None:
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    import backtest
    from backtest.events import get_event
    from backtest.report.common import RC, report_date

    try:
        end_ms = get_event(spec.event).end_ms
    except UserError:
        end_ms = None
    date = report_date(end_ms)
    meta = {
        "Title": f"Parameter sweep of {spec.event} ({spec.mode}): {', '.join(spec.grid)}",
        "Author": "cascade-backtest",
        "Creator": f"cascade-backtest {backtest.__version__}",
        "CreationDate": date,
        "ModDate": date,
    }
    with matplotlib.rc_context(RC), PdfPages(path, metadata=meta) as pp:
        for fig in figs:
            pp.savefig(fig)


# ---------------------------------------------------------------------------------------------
# dry run
# ---------------------------------------------------------------------------------------------
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
