"""Parameter sweeps: TOML grids run serially, on local processes, or on a dask cluster.

Sweep file
----------
A sweep file names an event, a base scenario and a grid; every combination of the grid's values
is simulated, and one row per combination (its parameters + the summary metrics) goes into
``results.parquet``::

    event = "2025-10-10"          # required: an event id of the catalogue
    mode = "cascade"              # "cascade" (default: forced orders move the price) or "replay"
    # shock = "-5%@2025-10-10T21:00:00Z"   # optional exogenous shock (cascade mode)
    # symbols = ["BTC/USDT:USDT"]          # optional subset of the event's symbols (a further venue's: "BTC/USDT:USDT@bybit")

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
``backtest.sim_params.SimParams`` (the same names ``--set`` accepts); an unknown name is refused
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

Each scenario asks the simulation for its summary only (``summary_only=True``): a sweep keeps no
per-bar or per-position frames. The simulation is any :class:`backtest.sim_api.SimulationAPI`
(``sim=``; default :mod:`backtest.simulate`).

``--dry-run`` (:mod:`backtest.sweep_plan`) builds the event once, times one combination (and one population rebuild when
the grid changes population parameters) and prints the number of combinations, chunks, an
estimated time (from perfect scaling over the workers to none) and memory.

Outputs (``out`` folder, created if missing; its parent folder must exist): ``results.parquet``
(one row per combination, keyed by ``combo`` and the grid's parameters, sorted by ``combo``, then
one column per scalar summary metric (``results.SCALAR_FIELDS``), named ``result_NAME`` where a
grid parameter has the metric's name, e.g. ``long_share``), ``heatmaps.pdf`` (drawn by
:mod:`backtest.report.sweep_pages`: the metric over two parameters, other parameters averaged;
then the other metrics that vary; then the other pairs of parameters), ``sweep.json`` (the
resolved sweep: event, mode, base, grid, executor, timings). All three are written at the
end, each atomically: an interrupted or failed sweep leaves no half-written files.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import pickle
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from backtest.errors import SweepError, UserError
from backtest.params import ParamError, apply_overrides, field_names, suggest, unknown_hint
from backtest.paths import write_atomic_group
from backtest.progress import Progress
from backtest.sim_api import SimulationAPI, simulation

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
def param_groups(sim: SimulationAPI | None = None) -> list[Any]:
    """Default instances of the parameter groups that flat names resolve against."""
    return list(simulation(sim).param_groups())


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
            raise SweepError(f"{source}: [grid] unknown parameter {name!r}{unknown_hint(name, valid)}")
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
        keys = [leg.key for leg in ev.legs()] if hasattr(ev, "legs") else list(ev.symbols)
        bad = [s for s in symbols if s not in keys]
        if bad:
            raise SweepError(f"{source}: symbols {bad} are not symbols of event {ev.id} ({', '.join(keys)}; a further venue's is SYMBOL@EXCHANGE)")
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
    from backtest.shocks import parse_shock

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


def run_chunk(simulate_prepared: Callable, prepared: Any, mode: str, shock: str | None, base: dict, chunk: list[tuple[int, dict]]) -> list[tuple]:
    """Simulate one chunk of combinations (summaries only); one (combo index, parameters,
    metrics) tuple each, the metrics being the summary's scalar fields (results.SCALAR_FIELDS)."""
    from backtest.results import metrics

    rows = []
    for i, combo in chunk:
        res = simulate_prepared(prepared, {**base, **combo}, mode=mode, shock=shock, summary_only=True)
        rows.append((i, combo, metrics(res.summary)))
    return rows


def sweep_prepared(simulate_prepared: Callable, prepared: Any, combos: list[dict], *, mode: str = "cascade", shock: str | None = None,
                   base: dict | None = None, progress: Any = None, label: str = "sweep") -> list[dict[str, Any]]:
    """The summary metrics of each combination on an event already prepared, serially and in
    the order given (the report's sensitivity page); ``progress`` as in :mod:`backtest.progress`."""
    out = []
    with Progress(label, progress) as shown:
        task = shown.add(label, len(combos))
        for i, combo in enumerate(combos):
            shown.update(task, description=f"{label} {i + 1}/{len(combos)}")
            ((_, _, m),) = run_chunk(simulate_prepared, prepared, mode, shock, dict(base or {}), [(i, combo)])
            out.append(m)
            shown.advance(task)
    return out


def _init_process(simulate_prepared: Callable, prepared_bytes: bytes, parent_pid: int | None = None) -> None:
    from backtest.lifetimes import die_with_parent

    die_with_parent(parent_pid)  # a killed sweep leaves no worker behind
    _WORKER["fn"] = simulate_prepared
    _WORKER["prepared"] = pickle.loads(prepared_bytes)


def _process_chunk(mode, shock, base, chunk):
    return run_chunk(_WORKER["fn"], _WORKER["prepared"], mode, shock, base, chunk)


def population_names(sim: SimulationAPI | None = None) -> set[str]:
    """Names of the parameters that change the population (rebuilding it costs more than a run)."""
    return set(simulation(sim).population_param_names())


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
    simulate = simulation(sim)
    workers = max(1, workers or os.cpu_count() or 1) if executor != "serial" else 1
    from backtest.sweep_plan import sweep_estimate

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
        rows: list[dict] = []
        t = time.perf_counter()
        with Progress("sweep", progress) as shown:
            task = shown.add(f"{executor}×{workers}", n)
            bar = functools.partial(shown.advance, task)
            if executor == "serial":
                for ch in chunks:
                    rows.extend(run_chunk(fn, prepared, spec.mode, spec.shock, spec.base, ch))
                    bar(len(ch))
            elif executor == "processes":
                rows = _run_processes(fn, prepared, spec, chunks, workers, bar)
            else:
                rows = _run_dask(client, fn, prepared, spec, chunks, bar)
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


def _run_processes(fn, prepared, spec: SweepSpec, chunks, workers: int, bar: Callable[[int], None]) -> list[dict]:
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
                bar(futs[f])
        except BaseException:
            for f in futs:
                f.cancel()
            raise
    return rows


def _run_dask(client, fn, prepared, spec: SweepSpec, chunks, bar: Callable[[int], None]) -> list[dict]:
    from distributed import as_completed

    [pf] = client.scatter([prepared], broadcast=True)  # market arrays + population: once per worker
    futs = [client.submit(run_chunk, fn, pf, spec.mode, spec.shock, spec.base, ch, pure=False) for ch in chunks]
    sizes = {f.key: len(ch) for f, ch in zip(futs, chunks)}
    rows: list[dict] = []
    try:
        for f in as_completed(futs):
            rows.extend(f.result())
            bar(sizes[f.key])
    except BaseException:
        client.cancel(futs)
        raise
    return rows


def metric_column(metric: str, spec: SweepSpec) -> str:
    """The results-table column of a summary metric: its own name, or ``result_NAME`` when a
    grid parameter has the same name (``long_share`` is both a parameter and a metric)."""
    return f"result_{metric}" if metric in spec.grid else metric


def heatmap_columns(spec: SweepSpec) -> list[str]:
    """Results-table columns the heatmap pages draw: the chosen metric first, then the other
    :data:`HEATMAP_METRICS`."""
    return [metric_column(m, spec) for m in (spec.metric, *[m for m in HEATMAP_METRICS if m != spec.metric])]


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
    from backtest.report.sweep_pages import sweep_figures, write_sweep_pdf

    figs = sweep_figures(res.table, spec, heatmap_columns(spec))
    meta = {
        "event": spec.event, "mode": spec.mode, "shock": spec.shock, "symbols": spec.symbols, "base": spec.base,
        "grid": spec.grid, "metric": spec.metric, "x": spec.x, "y": spec.y, "combinations": spec.n_combinations,
        "executor": res.executor, "workers": res.workers, "seconds": round(res.seconds, 3),
        "timings": {k: round(v, 3) for k, v in res.timings.items()}, "source": spec.source,
    }
    # all three to temporary names first, renamed together; sweep.json (last) marks a whole result
    files = [out_dir / "results.parquet", out_dir / "heatmaps.pdf", out_dir / "sweep.json"]
    text = json.dumps(meta, indent=2, default=str) + "\n"
    write_atomic_group([(files[0], lambda t: res.table.write_parquet(t)), (files[1], lambda t: write_sweep_pdf(figs, t, spec)),
                        (files[2], lambda t: t.write_text(text))])
    return files
