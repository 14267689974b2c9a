"""The Python side of the kernels: builds their contracts, runs them, reads their outputs.

Every kernel contract of :mod:`backtest.records` is built here and nowhere else:

- :func:`make_book` - ``Book``, the population arrays the kernel reads;
- :func:`make_market_path` - ``MarketPath``, the bars;
- :func:`make_kernel_params` - ``KernelParams``, the scalars of one run (the one builder: the
  API's :func:`kernel_params`, the tests and the benchmarks call it);
- :func:`build_lists` - ``TriggerLists``, the fast kernel's sorted lists (sorting step);
- :func:`depth_profile` - the order book forced orders walk (``book.BookProfile``): the stored
  depth where the store has it, else the estimate from daily volume (:func:`estimated_depth`);
- :func:`make_workspace` - ``Workspace``, output and scratch arrays; :class:`ReusedWorkspace`
  keeps one from run to run (:func:`summary_workspace`: one per symbol slot and thread).

:func:`run_kernel` runs :func:`backtest.kernels.cascade.simulate_nb` on them and returns a
:class:`KernelRun` (the kernel's ``RunOutputs`` plus timings); :func:`per_position_arrays` and
:func:`exit_split` read its exit records.

numba and the kernels are imported lazily (inside the functions), so importing this module -
and the CLI - stays cheap.
"""

from __future__ import annotations

import threading
import time
from collections import namedtuple
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import numpy as np

from backtest import records as R

if TYPE_CHECKING:  # pragma: no cover
    from backtest.market import Market
    from backtest.sim_params import SimParams


# ---- contracts ---------------------------------------------------------------------------
def make_book(pop: dict[str, np.ndarray]) -> R.Book:
    """The kernel's view of a population (records.POPULATION_FIELDS arrays)."""
    return R.Book(
        pop["side"], pop["venue"], pop["entry"], pop["qty"], pop["margin"], pop["mmr"], pop["liq_price"], pop["stop_price"], pop["weight"],
        pop["open_time"], pop["close_time"],
    )


def make_market_path(bars: dict[str, np.ndarray], ext: tuple | None = None) -> R.MarketPath:
    """The kernel's view of one symbol's bars (records.BAR_FIELDS arrays). ``ext``: the external
    forced flow, fund draws and fees per path point ``(ext_flow, ext_fund, ext_fee)`` (USD,
    float64[nbars, records.PATH_POINTS] each; records.MarketPath), None for none (zeros)."""
    n = len(bars["ts"])
    if ext is None:
        z = np.zeros((n, R.PATH_POINTS))
        ext = (z, z, z)
    flow, fund, fee = (np.ascontiguousarray(a, np.float64) for a in ext)
    for a in (flow, fund, fee):
        if a.shape != (n, R.PATH_POINTS):
            raise ValueError(f"external flow arrays must have shape ({n}, {R.PATH_POINTS}), got {a.shape}")
    return R.MarketPath(bars["ts"], bars["open"], bars["high"], bars["low"], bars["close"], bars["funding_rate"], flow, fund, fee)


def make_kernel_params(
    *,
    impact_model: str,
    impact_coef: float,
    sigma: float,
    volume_usd: float,
    depth_usd: float,
    half_life_s: float,
    fund_usd: float,
    clearance_rate: float,
    taker_rate: float,
    max_rounds: int,
    bar_ms: int,
    mode: str = "cascade",
    dd_bar: int = 0,
    dd_ref: float = 0.0,
    dd_dir: int = -1,
) -> R.KernelParams:
    """The scalars of one run (records.KernelParams), typed as the kernel is compiled for.

    ``impact_model``: a key of records.IMPACT_MODELS. ``volume_usd`` / ``depth_usd``: the
    effective daily volume and 1 %-depth (already times any multipliers), USD. ``mode``:
    "cascade" (forced orders move the path, up to ``max_rounds`` rounds after the first) or
    "replay" (their fills pay their impact, the path is not moved: round 0 only); impact "none"
    also has round 0 only. Drawdowns are measured from bar ``dd_bar`` on, from ``dd_ref`` (0: that
    bar's open), downwards (``dd_dir`` -1) or upwards (+1).
    """
    if mode not in ("replay", "cascade"):
        raise ValueError(f"mode must be 'replay' or 'cascade', got {mode!r}")
    model = R.IMPACT_MODELS[impact_model]
    replay = mode == "replay"
    return R.KernelParams(
        impact_model=int(model),
        impact_coef=float(impact_coef),
        sigma=float(sigma),
        volume_usd=float(volume_usd),
        depth_usd=float(depth_usd),
        half_life_s=float(half_life_s),
        fund_usd=float(fund_usd),
        clearance_rate=float(clearance_rate),
        taker_rate=float(taker_rate),
        max_rounds=int(max_rounds) if (model != R.IMPACT_NONE and not replay) else 0,
        dd_bar=int(dd_bar),
        dd_ref=float(dd_ref),
        dd_dir=int(dd_dir),
        bar_ms=int(bar_ms),
        no_feedback=replay,
    )


def kernel_params(sim: "SimParams", market: "Market", *, mode: str, fund_usd: float, dd_bar: int = 0, dd_ref: float = 0.0, dd_dir: int = -1) -> R.KernelParams:
    """:func:`make_kernel_params` from simulation parameters and one symbol's market: volume and
    depth (``depth_usd_1pct``, else ``depth_volume_ratio`` x daily volume) times the depth and
    liquidity multipliers."""
    scale = sim.depth_multiplier * sim.liquidity_multiplier
    depth = sim.depth_usd_1pct if sim.depth_usd_1pct is not None else sim.depth_volume_ratio * market.volume_daily_usd
    return make_kernel_params(
        impact_model=sim.impact_model,
        impact_coef=sim.impact_coef,
        sigma=market.sigma_daily,
        volume_usd=market.volume_daily_usd * scale,
        depth_usd=depth * scale,
        half_life_s=sim.impact_half_life_s,
        fund_usd=fund_usd,
        clearance_rate=sim.clearance_fee_rate,
        taker_rate=sim.taker_fee_rate,
        max_rounds=sim.max_rounds,
        bar_ms=market.bar_ms,
        mode=mode,
        dd_bar=dd_bar,
        dd_ref=dd_ref,
        dd_dir=dd_dir,
    )


def estimated_depth(volume_daily_usd: float) -> Any:
    """The estimated book (book.estimated_profile) of a symbol trading ``volume_daily_usd`` USD a
    day; with no known volume ($0), a book of $1 within 1 % of mid (impact then reaches
    records.MAX_BOOK_MOVE at once: the bound is the only one left)."""
    from backtest.book import estimated_profile

    v = float(volume_daily_usd)
    if not (np.isfinite(v) and v > 0.0):
        from backtest.book import DEPTH_1PCT_PER_DAILY_VOLUME

        v = 1.0 / DEPTH_1PCT_PER_DAILY_VOLUME
    return estimated_profile(v)[0]


def depth_profile(store: Any, exchange: str, symbol: str, market: "Market", start: int, end: int) -> tuple[Any, str]:
    """The order book of ``symbol`` over ``[start, end)`` (UTC ms) that its forced orders walk:
    ``book.load_profile`` where the store has depth snapshots, else ``book.estimated_profile``
    from ``market.volume_daily_usd``; with the one-line note on how it was derived."""
    from backtest.book import estimated_profile, load_profile
    from backtest.store import ms_to_iso

    got = load_profile(store, exchange, symbol, ms_to_iso(start), ms_to_iso(end)) if store is not None else None
    if got is not None:
        return got
    if market.volume_daily_usd > 0:
        return estimated_profile(market.volume_daily_usd, int(start))
    return estimated_depth(0.0), "order-book depth unknown (no volume): a $1 book, impact at its cap"


_INT64_MIN = int(np.iinfo(np.int64).min)


def _trigger_lists(order, okey, bstart, kind, side, start, end, first_bucket, n_buckets, has_stops, bucket_size: int, act=None, has_closes=None, base_max_open: int = _INT64_MIN) -> R.TriggerLists:
    m = len(order)
    L = len(kind)
    return R.TriggerLists(
        order=order,
        key=okey,
        bucket_start=bstart,
        bucket_sorted=np.zeros(len(bstart) - 1, np.bool_),  # buckets sorted so far (the kernel sets them)
        kind=kind,
        side=side,
        start=start,
        end=end,
        first_bucket=first_bucket,
        n_buckets=n_buckets,
        has_stops=has_stops,
        # per-entry payload in list order, filled with the keys when a bucket is first entered
        # (sorting.sort_bucket)
        qw=np.empty(m),
        weight=np.empty(m, np.float32),
        bankruptcy=np.empty(m),
        stop=np.empty(m),
        close=np.empty(m, np.int64),
        act=np.full(L, _INT64_MIN, np.int64) if act is None else np.ascontiguousarray(act, np.int64),
        has_closes=np.zeros(L, np.bool_) if has_closes is None else np.ascontiguousarray(has_closes, np.bool_),
        bucket_size=int(bucket_size),
        base_max_open=int(base_max_open),
    )


def _lists_of(pop: dict[str, np.ndarray], idx: np.ndarray | None, bucket_size: int) -> tuple:
    """build_lists_nb on the rows ``idx`` of ``pop`` (all rows when None), ``order`` mapped back to
    population indices; raises on a bad status."""
    from backtest.kernels.sorting import build_lists_nb

    cols = ("side", "venue", "tier", "mmr", "liq_price", "stop_price")
    arrs = [pop[c] if idx is None else np.ascontiguousarray(pop[c][idx]) for c in cols]
    *arrays, status = build_lists_nb(*arrs, int(bucket_size))
    _check_status(status)
    if idx is not None:
        arrays[0] = np.ascontiguousarray(idx[arrays[0]], dtype=np.int32)
    return tuple(arrays)


def _cohort_lists_of(pop: dict[str, np.ndarray], rows: np.ndarray, cstart: np.ndarray, bucket_size: int) -> tuple[tuple, np.ndarray]:
    """The lists of each cohort ``rows[cstart[c]:cstart[c + 1]]`` of ``pop``, compacted and
    concatenated (sorting.build_cohort_lists_nb: the same arrays as :func:`_lists_of` and
    :func:`_compact` per cohort, concatenated), and each list's cohort; raises on a bad status."""
    from backtest.kernels.sorting import build_cohort_lists_nb

    cols = ("side", "venue", "tier", "mmr", "liq_price", "stop_price")
    *arrays, coh, status = build_cohort_lists_nb(*(pop[c] for c in cols), rows, cstart, int(bucket_size))
    _check_status(status)
    return tuple(arrays), coh


def _check_status(status: int) -> None:
    from backtest.kernels.sorting import SORT_BAD_CODE, SORT_MIXED_MMR

    if status == SORT_MIXED_MMR:
        raise ValueError("population has different maintenance rates within one (side, venue, tier) group")
    if status == SORT_BAD_CODE:
        raise ValueError("population has a side, venue or tier code out of range")


def _compact(order, okey, bstart, kind, side, start, end, first, nbk, has_stops):
    """The same lists without the buckets of empty groups (build_lists_nb lays out a bucket pair
    for every possible group): each list's buckets follow the previous list's, entries unchanged."""
    parts = [bstart[f : f + n] for f, n in zip(first.tolist(), nbk.tolist())]
    new_first = np.zeros(len(kind), np.int64)
    if len(kind):
        new_first[1:] = np.cumsum(nbk)[:-1]
    tail = np.array([bstart[-1] if not len(kind) else end[-1]], np.int64)
    nb = np.concatenate(parts + [tail]).astype(np.int64) if parts else np.zeros(1, np.int64)
    return order, okey, nb, kind, side, start, end, new_first, nbk, has_stops


def cohort_lists_reference(pop: dict[str, np.ndarray], rows: np.ndarray, cstart: np.ndarray, bucket_size: int) -> tuple[tuple, np.ndarray]:
    """What :func:`_cohort_lists_of` returns, one :func:`_lists_of` and :func:`_compact` per
    cohort, concatenated in Python (the reference the tests compare it with, bit for bit)."""
    cat: list[list] = [[] for _ in range(10)]
    coh = []
    m_off = b_off = 0
    for c in range(len(cstart) - 1):
        idx = np.asarray(rows[cstart[c] : cstart[c + 1]], np.int64)
        order, okey, bst, kind, side, start, end, first, nbk, hs = _compact(*_lists_of(pop, idx, bucket_size))
        for j, x in enumerate((order, okey, bst[:-1] + m_off, kind, side, start + m_off, end + m_off, first + b_off, nbk, hs)):
            cat[j].append(x)
        coh.append(np.full(len(kind), c, np.int64))
        m_off += len(order)
        b_off += len(bst) - 1
    cat[2].append(np.array([m_off], np.int64))
    return tuple(np.ascontiguousarray(np.concatenate(c)) for c in cat), np.concatenate(coh) if coh else np.empty(0, np.int64)


def build_lists(pop: dict[str, np.ndarray], bucket_size: int = 1024, window_start_ms: int | None = None) -> R.TriggerLists:
    """Trigger lists of a population (sorting step of the fast kernel, :mod:`backtest.kernels.sorting`).

    Positions open by ``window_start_ms`` (UTC ms, the first bar's open; None: every position) go
    into the base lists, active from the run's start; those opening after it get one cohort of lists per
    distinct ``open_time``, activated at the first path point at or after that time (their
    pointers start there: a level the price crossed before the position opened does not count).
    Runs that share them (sweeps) sort each bucket once: the lists keep what was sorted.
    """
    ot = pop["open_time"]
    closes = pop["close_time"] != R.NO_CLOSE
    if window_start_ms is None or not np.any(ot > window_start_ms):
        arrays = _lists_of(pop, None, bucket_size)
        act = None
        base_max = int(ot.max()) if len(ot) else _INT64_MIN
    else:
        late = ot > window_start_ms
        base_idx = np.flatnonzero(~late)
        late_idx = np.flatnonzero(late)
        # cohorts: the base rows, then the late rows by opening time (stable: row order within one)
        by = np.argsort(ot[late_idx], kind="stable")
        late_idx = late_idx[by]
        lt = ot[late_idx]
        cut = np.flatnonzero(lt[1:] != lt[:-1]) + 1
        times = lt[np.r_[0, cut]]
        rows = np.concatenate([base_idx, late_idx]).astype(np.int64)
        cstart = np.r_[0, len(base_idx) + np.r_[0, cut], len(rows)].astype(np.int64)
        t_acts = np.r_[_INT64_MIN, times].astype(np.int64)
        if len(base_idx) == 0:  # no base cohort
            cstart, t_acts = cstart[1:], t_acts[1:]
        arrays, coh = _cohort_lists_of(pop, rows, cstart, bucket_size)
        act = t_acts[coh]
        base_max = int(ot[base_idx].max()) if len(base_idx) else _INT64_MIN
    order, start, end = arrays[0], arrays[5], arrays[6]
    if np.any(closes) and len(order):
        c_ent = closes[order].astype(np.int64)
        cs = np.concatenate([[0], np.cumsum(c_ent)])
        has_closes = (cs[end] - cs[start]) > 0
    else:
        has_closes = None
    return _trigger_lists(*arrays, bucket_size, act=act, has_closes=has_closes, base_max_open=base_max)


def _no_lists() -> R.TriggerLists:
    """Empty trigger lists (the reference kernel scans the population instead)."""
    z = np.empty(0, np.int64)
    return _trigger_lists(np.empty(0, np.int32), np.empty(0), np.zeros(1, np.int64), z, z, z, z, z, z, np.empty(0, np.bool_), 0)


def make_workspace(n: int, nbars: int, max_rounds: int) -> R.Workspace:
    """Fresh (uninitialised) output and scratch arrays for runs of up to ``n`` positions, ``nbars``
    bars and ``max_rounds`` rounds after the first (records.Workspace)."""
    return R.Workspace(
        alive=np.empty(n, np.bool_),
        x_pos=np.empty(n, np.int32),
        x_ts=np.empty(n, np.int64),
        x_fill=np.empty(n),
        x_round=np.empty(n, np.int16),
        x_code=np.empty(n, np.int8),
        x_usd=np.empty(n),
        bar_i=np.empty((nbars, R.BI_SIZE), np.int64),
        bar_f=np.empty((nbars, R.BF_SIZE)),
        round_units=np.empty(max_rounds + 1, np.int64),
        stats=np.empty(R.ST_SIZE),
        t_pos=np.empty(n, np.int32),
        t_level=np.empty(n),
        t_qw=np.empty(n),
        t_bankruptcy=np.empty(n),
        t_weight=np.empty(n),
        t_side=np.empty(n, np.int8),
        t_code=np.empty(n, np.int8),
        f0=np.empty(n),
        bar_pt=np.empty((nbars, R.PATH_POINTS, R.PT_SIZE)),
        pt_fund=np.empty((nbars, R.PATH_POINTS), np.int64),
    )


class ReusedWorkspace:
    """A kernel workspace kept from run to run (see :func:`run_kernel`).

    Grows to the largest run seen (positions, bars, cascade rounds); never shrinks.
    """

    def __init__(self) -> None:
        self._ws: R.Workspace | None = None
        self._cap = (-1, -1, -1)

    def get(self, n: int, nbars: int, max_rounds: int) -> R.Workspace:
        """A workspace at least as large as a run of ``n`` positions, ``nbars`` bars and
        ``max_rounds`` rounds needs."""
        if self._ws is None or n > self._cap[0] or nbars > self._cap[1] or max_rounds > self._cap[2]:
            cap = (max(n, self._cap[0]), max(nbars, self._cap[1]), max(max_rounds, self._cap[2]))
            self._ws = None  # free the old arrays first
            self._ws = make_workspace(*cap)
            self._cap = cap
        return self._ws


_SUMMARY_WS = threading.local()


def summary_workspace(slot: int) -> ReusedWorkspace:
    """The kernel workspace of symbol slot ``slot`` for summary-only runs (kept by the thread:
    runs in other threads, e.g. a multi-threaded dask worker, get their own)."""
    slots = getattr(_SUMMARY_WS, "slots", None)
    if slots is None:
        slots = _SUMMARY_WS.slots = []
    while len(slots) <= slot:
        slots.append(ReusedWorkspace())
    return slots[slot]


# ---- running -------------------------------------------------------------------------------
#: One kernel run: the fields of records.RunOutputs (exit records ``x_*`` in path-point order,
#: per-bar and run outputs), then ``sort_s`` and ``sim_s`` (timings, s), ``lists`` (the
#: records.TriggerLists used) and - with ``per_position=True``, else None - the full-length
#: per-position outputs ``exit_code, exit_ts, fill, exit_round`` (:func:`per_position_arrays`).
KernelRun = namedtuple(
    "KernelRun",
    [*R.RunOutputs._fields, "sort_s", "sim_s", "lists", "exit_code", "exit_ts", "fill", "exit_round"],
    defaults=(None, None, None, None),
)


def run_kernel(
    pop: dict[str, np.ndarray],
    bars: dict[str, np.ndarray],
    prm: R.KernelParams,
    *,
    reference: bool = False,
    lists: R.TriggerLists | None = None,
    bucket_size: int = 1024,
    per_position: bool = False,
    workspace: ReusedWorkspace | None = None,
    depth: Any = None,
    ext: tuple | None = None,
    cuts: Sequence[int] | None = None,
) -> KernelRun:
    """Run the kernel on plain arrays (a population and bars as records' dicts of arrays).

    ``reference=True`` runs the reference scan (no lists); else the fast kernel on ``lists``
    (built here with ``bucket_size`` when not given). ``per_position=True`` adds full-length
    ``exit_code, exit_ts, fill, exit_round`` arrays (NONE / 0 / NaN / -1 for positions still
    open), which do not depend on the mode.

    ``workspace`` (a :class:`ReusedWorkspace`, grown as needed) makes the kernel write into arrays
    reused run after run instead of fresh ones (fresh memory costs a page fault per 4 KiB on
    first touch, more than the simulation of a quiet day): the outputs are then views into it,
    valid until the workspace's next run. Results are the same either way.

    ``depth`` (book.BookProfile): the book forced orders walk (:func:`depth_profile`); None: the
    estimate from the run's effective daily volume ``prm.volume_usd`` (:func:`estimated_depth`).

    ``ext``: external forced flow, fund draws and fees per path point (:func:`make_market_path`;
    the account engine's, backtest.contagion); None: none.

    ``cuts``: path point indices (point ``q`` is point ``q % 4`` of bar ``q // 4``) at which the
    run stops and goes on from its saved state (:func:`backtest.kernels.cascade.run_points_nb`,
    as a co-simulation would step it); the outputs are those of the run in one go.
    """
    from backtest.kernels.cascade import kernel_state_nb, outputs_nb, run_points_nb, simulate_nb

    t0 = time.perf_counter()
    if reference:
        lists = _no_lists()
    elif lists is None:
        lists = build_lists(pop, bucket_size, int(bars["ts"][0]) if len(bars["ts"]) else None)
    if not reference and len(bars["ts"]) and lists.base_max_open > int(bars["ts"][0]):
        raise ValueError("trigger lists hold positions opening inside the run in their base lists; build them with build_lists(pop, window_start_ms=<first bar time>)")
    t1 = time.perf_counter()
    n, nbars = len(pop["side"]), len(bars["ts"])
    ws = make_workspace(n, nbars, prm.max_rounds) if workspace is None else workspace.get(n, nbars, prm.max_rounds)
    if depth is None:
        depth = estimated_depth(prm.volume_usd)
    if cuts is None:
        out = simulate_nb(make_book(pop), lists, make_market_path(bars, ext), depth, prm, bool(reference), ws)
    else:
        bk, path = make_book(pop), make_market_path(bars, ext)
        ks = kernel_state_nb(bk, lists, path, prm, bool(reference), ws)
        q = 0
        for c in [*sorted({int(x) for x in cuts if 0 < int(x) < 4 * nbars}), 4 * nbars]:
            run_points_nb(bk, lists, path, depth, prm, bool(reference), ws, ks, q, c)
            q = c
        out = outputs_nb(path, prm, ws, ks)
    t2 = time.perf_counter()
    run = KernelRun(*out, sort_s=t1 - t0, sim_s=t2 - t1, lists=lists)
    if per_position:
        run = run._replace(**per_position_arrays(run, n))
    return run


def with_external_fund(run: KernelRun, fund_usd: float, old: tuple | None, new: tuple | None) -> KernelRun | None:
    """``run`` (made with the external inputs ``old``: :func:`make_market_path`'s ``(ext_flow,
    ext_fund, ext_fee)``, None for none) as the kernel would return it with ``new`` instead, when
    that is certain without running it; else None (run the kernel).

    Certain when the two differ only in the fund draws and fees (the flow identical, bit for bit),
    the run never found its fund short (no uncovered deficit: every round closed its bankrupt
    positions in full, nothing went to ADL) and the new payments keep the fund at or above zero
    at every path point (``pt_fund`` plus the cumulative change): then every trigger, fill,
    round and price of the run is the same, and only the fund moves - by the cumulative
    difference of the payments (fixed-point units, exact). Returns the run with ``bar_i``'s
    fees in (BI_FUND_IN), fund draws (BI_DEFICIT) and fund at each bar's end (BI_FUND),
    ``pt_fund`` and ``stats[ST_FUND_MIN]`` changed (new arrays; the rest shared with ``run``).

    The caller vouches that nothing else of the run's inputs changed (population, lists, bars,
    book, kernel parameters) and that ``fund_usd`` is the run's initial fund (its ``fund_usd``
    parameter): only the external payments are compared here."""
    if old is None or new is None or not np.array_equal(old[0], new[0]):
        return None
    if any(np.shape(x) != run.pt_fund.shape for x in (*old, *new)):
        raise ValueError(f"external inputs must have the run's shape {run.pt_fund.shape}")
    if run.bar_i.shape[0] == 0 or run.bar_i[:, R.BI_UNCOVERED].any():
        return None
    d_fee = R.usd_units(new[2]) - R.usd_units(old[2])
    d_def = R.usd_units(new[1]) - R.usd_units(old[1])
    shift = np.cumsum((d_fee - d_def).ravel()).reshape(d_fee.shape)  # the fund's change after each path point
    pt_fund = run.pt_fund + shift
    if pt_fund.min() < 0:
        return None
    bar_i = run.bar_i.copy()
    bar_i[:, R.BI_FUND_IN] += d_fee.sum(axis=1)
    bar_i[:, R.BI_DEFICIT] += d_def.sum(axis=1)
    bar_i[:, R.BI_FUND] += shift[:, -1]
    stats = run.stats.copy()
    stats[R.ST_FUND_MIN] = min(int(R.usd_units(fund_usd)), int(pt_fund.min())) / R.USD_SCALE
    return run._replace(bar_i=bar_i, stats=stats, pt_fund=pt_fund)


def per_position_arrays(run: KernelRun, n: int) -> dict[str, np.ndarray]:
    """Full-length per-position outputs from the exit records of :func:`run_kernel`:
    ``exit_code`` (EXIT_*), ``exit_ts`` (UTC ms, 0 when open), ``fill`` (NaN) and ``exit_round`` (-1)."""
    code = np.zeros(n, np.int8)
    ts = np.zeros(n, np.int64)
    fill = np.full(n, np.nan)
    rnd = np.full(n, -1, np.int16)
    p = run.x_pos
    code[p] = run.x_code
    ts[p] = run.x_ts
    fill[p] = run.x_fill
    rnd[p] = run.x_round
    return {"exit_code": code, "exit_ts": ts, "fill": fill, "exit_round": rnd}


class ExitSplit(NamedTuple):
    """Exit notional by kind (USD, each part in record order; see kernels.cascade.exit_split_nb)."""

    kind_usd: np.ndarray  # liquidated longs, liquidated shorts, stops, ADL closes, one after the other
    liq_usd: np.ndarray  # every liquidation
    n_long: int
    n_short: int
    n_stopped: int
    n_adl: int
    n_liq: int
    first_minute: int  # UTC minutes (ts // 60_000) of the liquidations
    last_minute: int


def exit_split(run: KernelRun, pop: dict[str, Any]) -> ExitSplit:
    """Exit notional by kind of one run of population ``pop``: taken right after the run, while
    its records and the positions they touch are still in cache."""
    from backtest.kernels.cascade import exit_split_nb

    m = len(run.x_pos)
    kind_usd, liq_usd = np.empty(m), np.empty(m)
    # one pass over the exit records: x_usd is qty x weight x fill, the product the frames use
    counts = exit_split_nb(run.x_pos, run.x_code, run.x_usd, run.x_ts, pop["side"], kind_usd, liq_usd)
    return ExitSplit(kind_usd, liq_usd, *(int(c) for c in counts))
