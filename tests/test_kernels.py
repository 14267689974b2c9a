"""Kernels: the fast kernel equals the reference scan exactly; invariants of replay and cascade.

Populations here are *synthetic* (backtest.synthetic.synthetic_population or built inline), with
exact ties (prices on a tick grid, path points placed on thresholds) and near-ties (thresholds
one ulp apart). The numba functions are compiled once per process (cache=True shares them
across runs); the module fixture warms them.
"""

from __future__ import annotations

import typing

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backtest import book
from backtest import records as R
from backtest.book import BookProfile
from backtest.engine import ReusedWorkspace, build_lists, make_book, make_kernel_params, make_workspace
from backtest.engine import run_kernel as _run_kernel
from backtest.synthetic import synthetic_population

OUT_KEYS = ("exit_code", "exit_ts", "fill", "exit_round", "exit_usd", "bar_i", "bar_f", "round_units", "stats")


def run_kernel(*args, **kwargs):
    """engine.run_kernel with the per-position outputs, plus ``exit_usd``: each exited position's
    notional from its exit record (NaN for open positions)."""
    out = _run_kernel(*args, per_position=True, **kwargs)
    usd = np.full(out.exit_code.size, np.nan)
    usd[out.x_pos] = out.x_usd
    return {**out._asdict(), "exit_usd": usd}


#: a workspace that runs of every test below write into after one another (and that starts out
#: full of garbage): a run must not depend on what an earlier run left in it
DIRTY_WS = ReusedWorkspace()


@pytest.fixture(scope="module", autouse=True)
def warm_kernels():
    pop = synthetic_population(50, price=100.0, seed=1)
    bars = make_bars(np.array([100.0, 99.0, 101.0]), 60_000)
    run_kernel(pop, bars, make_prm("sqrt"))
    run_kernel(pop, bars, make_prm("sqrt"), reference=True)
    ws = DIRTY_WS.get(1000, 100, 60)
    for name, arr in ws._asdict().items():
        arr[...] = True if arr.dtype == np.bool_ else (np.nan if arr.dtype.kind == "f" else 7)


def make_bars(close: np.ndarray, bar_ms: int, wig: float = 0.0, funding_every: int = 0, rate: float = 1e-4) -> dict:
    close = np.asarray(close, dtype=np.float64)
    n = close.size
    op = np.r_[close[0], close[:-1]]
    hi = np.maximum(op, close) * (1 + wig)
    lo = np.minimum(op, close) * (1 - wig)
    fr = np.zeros(n)
    if funding_every:
        fr[funding_every::funding_every] = rate
    return {
        "ts": np.arange(n, dtype=np.int64) * bar_ms + 1_700_000_000_000,
        "open": op, "high": hi, "low": lo, "close": close,
        "volume_usd": np.zeros(n), "funding_rate": fr,
    }


def make_prm(model: str, *, fund: float = 1e12, volume: float = 1e8, depth: float = 1e6, half_life: float = 60.0,
             max_rounds: int = 50, bar_ms: int = 60_000, no_feedback: bool = False, dd_bar: int = 0, dd_ref: float = 0.0,
             dd_dir: int = -1, coef: float = 1.0) -> R.KernelParams:
    """``no_feedback``: replay with impact - fills pay their own impact, the path is not moved."""
    return make_kernel_params(
        impact_model=model, impact_coef=coef, sigma=0.03, volume_usd=volume, depth_usd=depth, half_life_s=half_life,
        fund_usd=fund, clearance_rate=0.0125, taker_rate=0.0005, max_rounds=max_rounds, bar_ms=bar_ms,
        mode="replay" if no_feedback else "cascade", dd_bar=dd_bar, dd_ref=dd_ref, dd_dir=dd_dir,
    )


def assert_same(a: dict, b: dict) -> None:
    for k in OUT_KEYS:
        x, y = a[k], b[k]
        if x.dtype.kind == "f":
            assert np.array_equal(x, y, equal_nan=True), k
        else:
            assert np.array_equal(x, y), k


def tie_population(rng: np.random.Generator, n: int, price: float, tick: float, near: bool) -> dict:
    pop = synthetic_population(n, price=price, seed=int(rng.integers(0, 2**31)), tick=tick, stop_share=float(rng.uniform(0, 0.5)))
    if near and n > 2:
        # near-ties: copy some thresholds and move them one ulp up or down
        k = max(1, n // 5)
        src = rng.integers(0, n, k)
        dst = rng.integers(0, n, k)
        same_grp = (pop["side"][src] == pop["side"][dst]) & (pop["tier"][src] == pop["tier"][dst])
        src, dst = src[same_grp], dst[same_grp]
        direction = np.where(rng.random(src.size) < 0.5, -np.inf, np.inf)
        pop["liq_price"][dst] = np.nextafter(pop["liq_price"][src], direction)
    return pop


def path_through(rng: np.random.Generator, pop: dict, price: float, nbars: int) -> np.ndarray:
    """Closes that land exactly on some thresholds and stops, plus a random walk."""
    walk = price * np.exp(np.cumsum(rng.normal(0, 0.01, nbars)))
    th = pop["liq_price"][np.isfinite(pop["liq_price"]) & (pop["liq_price"] > 0)]
    stp = pop["stop_price"][np.isfinite(pop["stop_price"])]
    cand = np.r_[th, stp]
    if cand.size:
        k = min(nbars // 2, cand.size)
        pos = rng.choice(nbars, k, replace=False)
        walk[pos] = rng.choice(cand, k)
    return walk


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 400),
    nbars=st.integers(1, 40),
    model=st.sampled_from(["none", "sqrt", "linear"]),
    tick=st.sampled_from([None, 0.5, 5.0]),
    near=st.booleans(),
    fund=st.sampled_from([0.0, 50.0, 1e12]),
    funding_every=st.sampled_from([0, 3, 8]),
    half_life=st.sampled_from([1.0, 60.0, float("inf")]),
    bucket=st.sampled_from([1, 4, 256]),
    no_feedback=st.booleans(),
    max_rounds=st.sampled_from([1, 3, 50]),
    dd=st.sampled_from([(0, 0.0, -1), (1, 0.0, 1), (3, 101.0, -1)]),
    stored_book=st.booleans(),
    external=st.booleans(),
    cuts=st.lists(st.integers(0, 160), max_size=6),
)
def test_fast_equals_reference(seed, n, nbars, model, tick, near, fund, funding_every, half_life, bucket, no_feedback, max_rounds, dd,
                               stored_book, external, cuts):
    """``external``: random external forced flow, fund draws and fees at random path points (the
    account engine's, records.MarketPath ``ext_*``). ``cuts``: both modes again, stopped at those
    path points and continued from the saved state (a co-simulation's steps): the same outputs."""
    rng = np.random.default_rng(seed)
    price = 100.0
    pop = tie_population(rng, n, price, tick or 0.0, near)
    closes = path_through(rng, pop, price, nbars)
    bars = make_bars(closes, 60_000, wig=float(rng.uniform(0, 0.01)), funding_every=funding_every, rate=float(rng.choice([1e-4, -3e-4, 0.01])))
    # small books so the impact matters: notional ~ n * 400 USD
    prm = make_prm(model, fund=fund, volume=float(n) * 2e3, depth=float(n) * 50.0, half_life=half_life, no_feedback=no_feedback,
                   max_rounds=max_rounds, dd_bar=dd[0], dd_ref=dd[1], dd_dir=dd[2])
    depth = random_book(rng, bars, float(n) * 50.0) if stored_book else None
    ext = random_external(rng, nbars, float(n) * 400.0) if external else None
    lists = build_lists(pop, bucket)
    fast = run_kernel(pop, bars, prm, lists=lists, depth=depth, ext=ext)
    ref = run_kernel(pop, bars, prm, reference=True, depth=depth, ext=ext)
    assert_same(fast, ref)
    assert np.array_equal(fast["bar_pt"], ref["bar_pt"])
    if ext is None:
        check_invariants(pop, bars, fast)
    # again on the same, now partly sorted, lists, and into a workspace earlier runs left dirty
    assert_same(run_kernel(pop, bars, prm, lists=lists, workspace=DIRTY_WS, depth=depth, ext=ext), ref)
    assert_same(run_kernel(pop, bars, prm, reference=True, workspace=DIRTY_WS, depth=depth, ext=ext), ref)
    for reference in (False, True):
        steps = run_kernel(pop, bars, prm, lists=None if reference else build_lists(pop, bucket), reference=reference, depth=depth, ext=ext,
                           cuts=cuts)
        assert_same(steps, ref)
        assert np.array_equal(steps["bar_pt"], ref["bar_pt"]) and np.array_equal(steps["pt_fund"], ref["pt_fund"])


def random_external(rng: np.random.Generator, nbars: int, scale: float) -> tuple:
    """External flow (signed USD, up to ``scale``), fund draws and fees at a random share of the
    path points, zero elsewhere (records.MarketPath ``ext_*``)."""
    shape = (nbars, R.PATH_POINTS)
    on = rng.random(shape) < rng.uniform(0.05, 0.6)
    flow = np.where(on, rng.uniform(-1.0, 0.3, shape) * scale, 0.0)
    draw = np.where(on & (rng.random(shape) < 0.5), rng.uniform(0.0, 0.05, shape) * scale, 0.0)
    fee = np.where(on & (rng.random(shape) < 0.5), rng.uniform(0.0, 0.01, shape) * scale, 0.0)
    return flow, draw, fee


def add_flow(rng: np.random.Generator, pop: dict, bars: dict, bar_ms: int = 60_000) -> dict:
    """Positions that open and close during the run (issue 11 point 5): a random share opens at
    bar boundaries, path-point times or any millisecond (some at the first bar's open), another
    closes voluntarily at random times (some before they would trigger, some after they open)."""
    n = pop["side"].size
    t0 = int(bars["ts"][0])
    t1 = int(bars["ts"][-1]) + bar_ms
    ot = pop["open_time"].copy()
    ct = pop["close_time"].copy()
    late = rng.random(n) < rng.uniform(0.0, 0.8)
    kind = rng.integers(0, 4, n)
    nb = bars["ts"].size
    j = rng.integers(0, nb, n)
    k = rng.integers(0, 4, n)
    ot_late = np.where(kind == 0, bars["ts"][j], np.where(kind == 1, bars["ts"][j] + (k * (bar_ms - 1)) // 3,
                       np.where(kind == 2, rng.integers(t0, t1, n), t0)))
    ot[late] = ot_late[late]
    closes = rng.random(n) < rng.uniform(0.0, 0.6)
    ct_new = np.maximum(ot + 1, rng.integers(t0, t1 + 1, n))
    ct_new = np.where(rng.random(n) < 0.3, bars["ts"][rng.integers(0, nb, n)], ct_new)  # on path points, or before opening
    ct[closes] = ct_new[closes]
    pop = dict(pop)
    pop["open_time"] = ot.astype(np.int64)
    pop["close_time"] = ct.astype(np.int64)
    return pop


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 400),
    nbars=st.integers(1, 40),
    model=st.sampled_from(["none", "sqrt", "linear"]),
    tick=st.sampled_from([None, 0.5, 5.0]),
    fund=st.sampled_from([0.0, 50.0, 1e12]),
    funding_every=st.sampled_from([0, 1, 3]),
    bucket=st.sampled_from([1, 4, 256]),
    no_feedback=st.booleans(),
    max_rounds=st.sampled_from([1, 50]),
    stored_book=st.booleans(),
)
def test_fast_equals_reference_with_flow(seed, n, nbars, model, tick, fund, funding_every, bucket, no_feedback, max_rounds, stored_book):
    """In-window openings and voluntary closes: the fast kernel (one cohort of lists per opening
    time) equals the reference scan bit for bit; no position exits outside [open_time, close_time)."""
    rng = np.random.default_rng(seed)
    price = 100.0
    pop = tie_population(rng, n, price, tick or 0.0, bool(rng.random() < 0.5))
    closes = path_through(rng, pop, price, nbars)
    bars = make_bars(closes, 60_000, wig=float(rng.uniform(0, 0.01)), funding_every=funding_every, rate=float(rng.choice([1e-4, -3e-4, 0.01])))
    pop = add_flow(rng, pop, bars)
    prm = make_prm(model, fund=fund, volume=float(n) * 2e3, depth=float(n) * 50.0, no_feedback=no_feedback, max_rounds=max_rounds)
    depth = random_book(rng, bars, float(n) * 50.0) if stored_book else None
    lists = build_lists(pop, bucket, window_start_ms=int(bars["ts"][0]))
    fast = run_kernel(pop, bars, prm, lists=lists, depth=depth)
    ref = run_kernel(pop, bars, prm, reference=True, depth=depth)
    assert_same(fast, ref)
    check_invariants(pop, bars, fast)
    hit = fast["exit_code"] != R.EXIT_NONE
    # forced exits happen while the position is open (ADL at a bar's last millisecond included)
    assert np.all(fast["exit_ts"][hit] >= pop["open_time"][hit])
    assert np.all(fast["exit_ts"][hit] < pop["close_time"][hit])
    assert_same(run_kernel(pop, bars, prm, lists=lists, workspace=DIRTY_WS, depth=depth), ref)
    assert_same(run_kernel(pop, bars, prm, reference=True, workspace=DIRTY_WS, depth=depth), ref)


def test_flow_off_is_todays_kernel_and_base_lists_must_predate_the_run():
    """No in-window flow: the lists and results are those of a population without the fields'
    new values; lists built without the window start refuse a population that opens inside it."""
    rng = np.random.default_rng(11)
    pop = synthetic_population(3000, price=100.0, seed=11)
    bars = make_bars(100 * np.exp(np.cumsum(rng.normal(-0.003, 0.01, 120))), 60_000, wig=0.003)
    prm = make_prm("sqrt", fund=1e3, volume=5e6)
    a = run_kernel(pop, bars, prm, lists=build_lists(pop))
    b = run_kernel(pop, bars, prm, lists=build_lists(pop, window_start_ms=int(bars["ts"][0])))
    assert_same(a, b)
    late = add_flow(rng, pop, bars)
    with pytest.raises(ValueError, match="window_start_ms"):
        _run_kernel(late, bars, prm, lists=build_lists(late))


def test_shorts_opened_on_the_way_down_are_liquidated_on_the_rebound():
    """A short opened at the low (20x) is liquidated when the price recovers 5 %; the same short
    opened after the rebound is not; one closed voluntarily before the rebound is not either."""
    pop = synthetic_population(3, price=100.0, seed=2)
    bars = make_bars(np.r_[np.linspace(100, 80, 20), np.linspace(80, 90, 20)], 60_000)
    for k in pop:
        pop[k] = pop[k].copy()
    pop["side"][:] = -1
    pop["entry"][:] = 80.0
    pop["qty"][:] = 1.0
    pop["margin"][:] = 4.0
    pop["stop_price"][:] = np.nan
    pop["liq_price"][:] = 83.6
    pop["entry"][1], pop["liq_price"][1] = 90.0, 94.05  # opened at the top of the rebound
    pop["open_time"][:] = [bars["ts"][19], bars["ts"][39], bars["ts"][19]]
    pop["close_time"][:] = [R.NO_CLOSE, R.NO_CLOSE, bars["ts"][21]]
    lists = build_lists(pop, window_start_ms=int(bars["ts"][0]))
    for out in (run_kernel(pop, bars, make_prm("none"), lists=lists), run_kernel(pop, bars, make_prm("none"), reference=True)):
        assert list(out["exit_code"]) == [R.EXIT_LIQUIDATED, R.EXIT_NONE, R.EXIT_NONE]


def random_book(rng: np.random.Generator, bars: dict, one_pct: float) -> BookProfile:
    """A stored-like book: snapshots every 30 s over the bars (some before them), cumulative
    depth per side of about ``one_pct`` USD within 1 %, thinning and refilling at random."""
    t0 = int(bars["ts"][0]) - 60_000
    k = max(2, int((int(bars["ts"][-1]) + 120_000 - t0) // 30_000))
    ts = t0 + 30_000 * np.arange(k, dtype=np.int64)
    inc = rng.uniform(0.0, 2.0, (2, k, 5)) * one_pct
    inc[rng.random((2, k, 5)) < 0.1] = 0.0  # empty stretches of the book
    cum = np.cumsum(inc, axis=2)
    return BookProfile(ts, book.LEVELS.copy(), cum[0], cum[1])


def check_invariants(pop: dict, bars: dict, out: dict) -> None:
    code = out["exit_code"]
    hit = code != R.EXIT_NONE
    # no position leaves twice: one exit record per position
    assert np.unique(out["x_pos"]).size == out["x_pos"].size == hit.sum()
    # every exited position has one exit with a time inside the run and a finite fill
    assert np.all(np.isfinite(out["fill"][hit]))
    assert np.all(np.isnan(out["fill"][~hit]))
    t0, t1 = bars["ts"][0], bars["ts"][-1] + 60_000
    assert np.all((out["exit_ts"][hit] >= t0) & (out["exit_ts"][hit] < t1))
    # liquidated notional never exceeds open notional (at fill prices, per position and in total)
    bi = out["bar_i"]
    liq_units = bi[:, R.BI_LONG_LIQ].sum() + bi[:, R.BI_SHORT_LIQ].sum()
    q = pop["qty"] * pop["weight"].astype(np.float64)
    liq_rows = code == R.EXIT_LIQUIDATED
    assert liq_units / R.USD_SCALE <= np.sum(q[liq_rows] * out["fill"][liq_rows]) + 1e-3 * max(1, liq_rows.sum())
    assert bi[:, R.BI_LONG_ROWS].sum() + bi[:, R.BI_SHORT_ROWS].sum() == liq_rows.sum() <= code.size
    # the fund never goes negative; what it could not cover went to ADL (or is reported)
    assert np.all(bi[:, R.BI_FUND] >= 0)
    assert out["stats"][R.ST_FUND_MIN] >= 0
    unc = bi[:, R.BI_UNCOVERED]
    for j in np.flatnonzero(unc > 0):
        assert bi[j, R.BI_ADL] > 0 or out["stats"][R.ST_ADL_SHORTFALL] > 0


def test_no_position_exits_twice_and_outputs_consistent():
    rng = np.random.default_rng(5)
    pop = synthetic_population(5000, price=100.0, seed=5)
    bars = make_bars(100 * np.exp(np.cumsum(rng.normal(-0.002, 0.01, 300))), 60_000, wig=0.003, funding_every=60)
    out = run_kernel(pop, bars, make_prm("sqrt", fund=1e3, volume=5e6))
    code = out["exit_code"]
    assert set(np.unique(code)) <= {R.EXIT_NONE, R.EXIT_LIQUIDATED, R.EXIT_STOPPED, R.EXIT_ADL}
    # each exit is counted once in the per-bar rows
    bi = out["bar_i"]
    assert bi[:, R.BI_LONG_ROWS].sum() == np.sum((code == R.EXIT_LIQUIDATED) & (pop["side"] > 0))
    assert bi[:, R.BI_SHORT_ROWS].sum() == np.sum((code == R.EXIT_LIQUIDATED) & (pop["side"] < 0))
    # running it again on the same (already partly sorted) lists gives the same result
    lists = build_lists(pop)
    a = run_kernel(pop, bars, make_prm("sqrt", fund=1e3, volume=5e6), lists=lists)
    b = run_kernel(pop, bars, make_prm("sqrt", fund=1e3, volume=5e6), lists=lists)
    assert_same(a, b)
    assert_same(a, out)
    check_invariants(pop, bars, out)


@pytest.mark.parametrize("model", ["none", "sqrt", "linear"])
def test_flat_path_liquidates_nothing(model):
    pop = synthetic_population(20_000, price=100.0, seed=3)
    # positions already beyond their trigger at the start are not part of a live book
    s = pop["side"].astype(np.float64)
    live = (s * (100.0 - pop["liq_price"]) > 0) & ~(np.isfinite(pop["stop_price"]) & (s * (100.0 - pop["stop_price"]) <= 0))
    pop = {k: v[live].copy() for k, v in pop.items()}
    bars = make_bars(np.full(500, 100.0), 60_000)
    for ref in (False, True):
        out = run_kernel(pop, bars, make_prm(model), reference=ref)
        assert np.all(out["exit_code"] == R.EXIT_NONE)
        assert out["bar_i"].sum() == out["bar_i"][:, R.BI_FUND].sum()
        assert out["stats"][R.ST_MAX_DEPTH] == 0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.2, 0.95), model=st.sampled_from(["none", "linear"]))
def test_more_leverage_never_liquidates_less(seed, scale, model):
    """Same positions with less margin: every position liquidated before is liquidated again, no
    later. With feedback the law needs a one-sided book (longs: forced sells only push the price
    down; with both sides short liquidations push it up and can rescue longs) and permanent,
    additive impact (linear, no decay): a transient or concave (square-root) impact lets the
    lower-leverage book's later, concentrated cascade dip deeper for a moment than the
    higher-leverage book's earlier, spread-out one, so there is no such law for them."""
    rng = np.random.default_rng(seed)
    pop = synthetic_population(3000, price=100.0, seed=seed % 1000, stop_share=0.0)
    if model != "none":
        longs = pop["side"] > 0
        pop = {k: v[longs].copy() for k, v in pop.items()}
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 60)))
    bars = make_bars(closes, 60_000, wig=0.002, funding_every=20)
    hi = dict(pop)
    s = pop["side"].astype(np.float64)
    hi["margin"] = pop["margin"] * scale  # same positions, less margin = more leverage
    cum = pop["maint_amount"]
    liq = (pop["entry"] * pop["qty"] - s * hi["margin"] - s * cum) / (pop["qty"] * (1 - s * pop["mmr"]))
    hi["liq_price"] = np.where(liq > 0, liq, 0.0)
    prm = make_prm(model, depth=5e4, half_life=float("inf"))
    a = run_kernel(pop, bars, prm)
    b = run_kernel(hi, bars, prm)
    was = a["exit_code"] == R.EXIT_LIQUIDATED
    now = b["exit_code"] == R.EXIT_LIQUIDATED
    assert np.all(now[was])
    # and no later than before
    assert np.all(b["exit_ts"][was] <= a["exit_ts"][was])


def test_stop_fires_before_liquidation_when_nearer():
    pop = synthetic_population(4, price=100.0, seed=0, stop_share=0.0)
    pop["side"][:] = [1, 1, -1, -1]
    pop["tier"][:] = 0
    pop["mmr"][:] = 0.004
    pop["entry"][:] = 100.0
    pop["qty"][:] = 1.0
    pop["margin"][:] = 10.0
    pop["liq_price"][:] = [90.0, 90.0, 110.0, 110.0]
    pop["stop_price"][:] = [95.0, 85.0, 105.0, 115.0]
    bars = make_bars(np.array([100.0, 80.0, 120.0]), 60_000)
    for ref in (False, True):
        out = run_kernel(pop, bars, make_prm("none"), reference=ref)
        assert list(out["exit_code"]) == [R.EXIT_STOPPED, R.EXIT_LIQUIDATED, R.EXIT_STOPPED, R.EXIT_LIQUIDATED]
        # the path jumps 100 -> 80 and 80 -> 120: each forced order fills at the first path
        # price past its trigger, not at the trigger level (issue 11: fills after a gap)
        assert list(out["fill"]) == [80.0, 80.0, 120.0, 120.0]


def test_funding_moves_thresholds():
    """Longs paying funding are liquidated at a higher price (liq + F / (1 - mmr))."""
    pop = synthetic_population(1, price=100.0, seed=0, stop_share=0.0)
    pop["side"][:] = 1
    pop["mmr"][:] = 0.004
    pop["entry"][:] = 100.0
    pop["qty"][:] = 1.0
    pop["margin"][:] = 10.0
    pop["liq_price"][:] = (100.0 - 10.0) / (1 - 0.004)
    closes = np.array([100.0, 100.0, 90.5, 90.5])
    bars = make_bars(closes, 60_000)
    assert run_kernel(pop, bars, make_prm("none"))["exit_code"][0] == R.EXIT_NONE
    bars = make_bars(closes, 60_000, funding_every=1, rate=0.001)  # 3 x 0.1 % of ~100
    out = run_kernel(pop, bars, make_prm("none"))
    assert out["exit_code"][0] == R.EXIT_LIQUIDATED
    assert out["stats"][R.ST_FUNDING_INDEX] > 0.2


def test_adl_covers_what_the_fund_cannot():
    rng = np.random.default_rng(2)
    pop = synthetic_population(4000, price=100.0, seed=2)
    bars = make_bars(np.r_[100.0, 100.0 * np.exp(np.cumsum(rng.normal(-0.01, 0.01, 30)))], 60_000)
    prm = make_prm("linear", fund=0.0, depth=2e4)
    fast = run_kernel(pop, bars, prm)
    ref = run_kernel(pop, bars, prm, reference=True)
    assert_same(fast, ref)
    bi = fast["bar_i"]
    assert bi[:, R.BI_UNCOVERED].sum() > 0
    assert bi[:, R.BI_ADL].sum() > 0
    assert np.sum(fast["exit_code"] == R.EXIT_ADL) > 0
    # ADL'd positions are on the side opposite to the liquidations that caused the deficits
    check_invariants(pop, bars, fast)


def test_cascade_amplifies_and_replay_does_not():
    pop = synthetic_population(20_000, price=100.0, seed=9)
    closes = np.r_[np.full(5, 100.0), np.full(20, 96.0)]
    bars = make_bars(closes, 60_000)
    rep = run_kernel(pop, bars, make_prm("none"))
    cas = run_kernel(pop, bars, make_prm("sqrt", volume=2e8))
    assert rep["stats"][R.ST_MAX_DEPTH] == 0
    assert rep["stats"][R.ST_DD_SIM] == pytest.approx(rep["stats"][R.ST_DD_EXO])
    assert cas["stats"][R.ST_MAX_DEPTH] >= 1
    assert cas["stats"][R.ST_DD_SIM] > cas["stats"][R.ST_DD_EXO]
    assert np.sum(cas["exit_code"] != 0) >= np.sum(rep["exit_code"] != 0)


def test_large_population_sampled_bucket_layout():
    """Above 131,072 rows the bucket layout comes from a sample; results stay exact."""
    rng = np.random.default_rng(17)
    pop = synthetic_population(200_000, price=100.0, seed=17, tick=0.01)
    bars = make_bars(100 * np.exp(np.cumsum(rng.normal(-0.003, 0.01, 25))), 60_000, wig=0.004, funding_every=8)
    prm = make_prm("sqrt", fund=1e5, volume=4e8)
    fast = run_kernel(pop, bars, prm, lists=build_lists(pop, 64))
    ref = run_kernel(pop, bars, prm, reference=True)
    assert_same(fast, ref)
    assert np.sum(fast["exit_code"] != 0) > 1000
    check_invariants(pop, bars, fast)


def test_adl_partial_selection_matches_full_ranking():
    """ADL sorts only the top of the ranking; the positions it closes are a full sort's prefix,
    just long enough for their quantity to cover the quantity taken over."""
    from backtest.kernels.cascade import _adl, _q, _quantum
    from backtest.kernels.units import usd_units_nb
    from backtest.margin import adl_key_nb

    rng = np.random.default_rng(4)
    pop = synthetic_population(6000, price=100.0, seed=4)
    n = pop["side"].size
    book = make_book(pop)
    quantum = _quantum(book)
    assert quantum > 0 and np.log2(quantum) == np.floor(np.log2(quantum))  # a power of two
    p, F = 93.0, 0.02
    for units_qty in (0.5, 5e2, 5e3, 1e5):  # the book holds ~7e4: the last one takes every short
        alive = rng.random(n) < 0.9
        ws = make_workspace(n, 1, 0)
        ws.alive[:] = alive
        need = _q(units_qty, quantum)
        closed, closed_q, nx, ranks = _adl(-1, need, p, F, book, ws, 0, 0, quantum)
        cand = np.flatnonzero(alive & (pop["side"] == -1))
        keys = np.array([-adl_key_nb(pop["venue"][i], -1, pop["entry"][i], p, pop["qty"][i], pop["margin"][i] + pop["qty"][i] * F) for i in cand])
        order = cand[np.argsort(keys, kind="mergesort")]
        acc, usd, k = 0, 0, 0
        while k < order.size and acc < need:
            i = order[k]
            acc += _q(pop["qty"][i] * np.float64(pop["weight"][i]), quantum)
            usd += usd_units_nb(pop["qty"][i] * np.float64(pop["weight"][i]) * p)
            k += 1
        assert list(ws.x_pos[:nx]) == list(order[:k])
        assert (closed, closed_q) == (usd, acc)
        assert ranks == (5 * (k - 1)) // cand.size + 1  # quintiles of the ranking reached
        assert 1 <= ranks <= 5 and (units_qty < 1e5 or ranks == 5)  # the last one reaches the bottom fifth
        assert np.all(ws.x_code[:nx] == R.EXIT_ADL) and np.all(ws.x_round[:nx] == -1) and np.all(ws.x_fill[:nx] == p)
        assert not ws.alive[order[:k]].any() and ws.alive[order[k:]].all()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([-np.inf, -2.0, -1.0, 0.0, 0.5, 1.0, 3.0, np.inf]) | st.floats(-5, 5), st.integers(0, 50)), min_size=1, max_size=120),
       st.integers(-5, 3000))
def test_weighted_cut_is_the_key_a_sorted_walk_stops_at(items, units):
    """ADL's weighted selection (kernels.cascade._weighted_cut) finds the key at which a walk of
    the sorted ranking first covers ``units`` (ties, zero quantities, infinite keys, and more
    than everyone holds), whatever the pivots."""
    from backtest.kernels.cascade import _weighted_cut

    keys = np.array([k for k, _ in items], np.float64)
    qq = np.array([q for _, q in items], np.int64)
    order = np.argsort(keys, kind="mergesort")
    cum = np.cumsum(qq[order])
    hit = np.flatnonzero(cum >= units)
    v, found = _weighted_cut(keys.copy(), qq.copy(), len(keys), units)
    if hit.size:
        assert found and v == keys[order[hit[0]]]
    else:
        assert not found and v == np.inf


def test_adl_pool_over_calls_matches_a_fresh_scan():
    """The kernel's ADL keeps each side's candidates in a pool over its calls (dead and closed
    positions dropped as it goes): call after call, at increasing times, it closes what a call
    on a fresh pool (a scan of the whole book) closes."""
    from backtest.kernels.cascade import _adl, _adl_pool, _adl_top, _q, _quantum

    pop = synthetic_population(6000, price=100.0, seed=5)
    rng = np.random.default_rng(5)
    n = pop["side"].size
    pop["open_time"] = np.where(rng.random(n) < 0.3, rng.integers(0, 50, n), np.iinfo(np.int64).min).astype(np.int64)
    pop["close_time"] = np.where(rng.random(n) < 0.3, rng.integers(10, 80, n), R.NO_CLOSE).astype(np.int64)
    book = make_book(pop)
    quantum = _quantum(book)
    ws_a, ws_b = make_workspace(n, 1, 0), make_workspace(n, 1, 0)
    pool = _adl_pool(book, -1)
    m = pool.shape[0]
    for t in range(0, 100, 7):
        ws_a.alive[rng.integers(0, n, 40)] = False  # liquidations between the calls
        ws_b.alive[:] = ws_a.alive
        need = _q(float(rng.choice([0.5, 50.0, 500.0])), quantum)
        ca, qa, nxa, ra, m = _adl_top(-1, need, 93.0, 0.01, book, ws_a, 0, t, quantum, pool, m)
        cb, qb, nxb, rb = _adl(-1, need, 93.0, 0.01, book, ws_b, 0, t, quantum)
        assert (ca, qa, nxa, ra) == (cb, qb, nxb, rb)
        assert np.array_equal(ws_a.x_pos[:nxa], ws_b.x_pos[:nxb]) and np.array_equal(ws_a.alive, ws_b.alive)


def test_replay_fills_pay_their_own_impact_but_do_not_move_the_path():
    """Replay with an impact model: the same positions exit at the same times as with no impact
    (the path is not moved, no second round), but forced sells fill lower and forced buys
    higher, so a thin book and an empty fund leave deficits that ADL covers."""
    pop = synthetic_population(20_000, price=100.0, seed=11)
    rng = np.random.default_rng(11)
    bars = make_bars(np.r_[100.0, 100.0 * np.exp(np.cumsum(rng.normal(-0.01, 0.01, 30)))], 60_000)
    flat = run_kernel(pop, bars, make_prm("none", fund=0.0))
    walk = run_kernel(pop, bars, make_prm("sqrt", fund=0.0, volume=2e6, no_feedback=True))
    ref = run_kernel(pop, bars, make_prm("sqrt", fund=0.0, volume=2e6, no_feedback=True), reference=True)
    assert_same(walk, ref)
    liq_or_stop = np.isin(flat["exit_code"], [R.EXIT_LIQUIDATED, R.EXIT_STOPPED])
    assert liq_or_stop.sum() > 100
    assert np.array_equal(liq_or_stop, np.isin(walk["exit_code"], [R.EXIT_LIQUIDATED, R.EXIT_STOPPED]))
    assert np.array_equal(flat["exit_ts"][liq_or_stop], walk["exit_ts"][liq_or_stop])
    assert np.all(walk["exit_round"][liq_or_stop] == 0) and walk["stats"][R.ST_MAX_DEPTH] == 0
    s = pop["side"][liq_or_stop]
    worse = s * (walk["fill"][liq_or_stop] - flat["fill"][liq_or_stop])
    assert np.all(worse <= 0) and np.any(worse < 0)
    assert walk["stats"][R.ST_DD_SIM] == pytest.approx(walk["stats"][R.ST_DD_EXO])
    # losses beyond bankruptcy: what the fund paid plus what it could not (ADL took that share over)
    lost = [d["bar_i"][:, [R.BI_DEFICIT, R.BI_UNCOVERED]].sum() for d in (walk, flat)]
    assert lost[0] > lost[1]
    assert walk["bar_i"][:, R.BI_ADL].sum() > 0
    check_invariants(pop, bars, walk)


@pytest.mark.parametrize("no_feedback", [False, True])
def test_absurd_impact_parameters_keep_prices_finite(no_feedback):
    """A linear book of $1 against millions of forced notional: the impact is bounded by the
    book (records.MAX_BOOK_MOVE), so fills and prices stay finite and positive."""
    pop = synthetic_population(5000, price=100.0, seed=4)
    bars = make_bars(100 * np.exp(np.cumsum(np.full(40, -0.01))), 60_000)
    out = run_kernel(pop, bars, make_prm("linear", depth=1.0, half_life=float("inf"), no_feedback=no_feedback))
    hit = out["exit_code"] != R.EXIT_NONE
    assert hit.any()
    assert np.all(np.isfinite(out["fill"][hit])) and np.all(out["fill"][hit] > 0)
    assert np.all(np.isfinite(out["bar_f"]))
    check_invariants(pop, bars, out)


def test_kernel_params_builder_rules():
    """One builder (engine.make_kernel_params): replay and impact "none" have round 0 only; the
    fields are typed as the kernel is compiled for; an unknown mode or model is refused."""
    cas = make_prm("sqrt", max_rounds=7)
    assert (cas.max_rounds, cas.no_feedback, cas.impact_model) == (7, False, R.IMPACT_SQRT)
    assert make_prm("sqrt", max_rounds=7, no_feedback=True).max_rounds == 0
    assert make_prm("sqrt", max_rounds=7, no_feedback=True).no_feedback is True
    assert make_prm("none", max_rounds=7).max_rounds == 0
    for name, typ in typing.get_type_hints(R.KernelParams).items():
        assert type(getattr(cas, name)) is typ, name
    with pytest.raises(ValueError, match="mode"):
        make_kernel_params(impact_model="sqrt", impact_coef=1.0, sigma=0.03, volume_usd=1.0, depth_usd=1.0, half_life_s=1.0,
                           fund_usd=0.0, clearance_rate=0.0, taker_rate=0.0, max_rounds=1, bar_ms=60_000, mode="feedback")
    with pytest.raises(KeyError):
        make_prm("cubic")


def test_reused_workspace_grows_and_gives_fresh_results():
    """A run into a reused workspace (smaller after larger, larger after smaller) equals a run into
    fresh arrays; the workspace grows to the largest run and is then reused as it is."""
    rng = np.random.default_rng(8)
    big = synthetic_population(3000, price=100.0, seed=8)
    small = synthetic_population(300, price=100.0, seed=9)
    b_long = make_bars(100 * np.exp(np.cumsum(rng.normal(-0.003, 0.01, 80))), 60_000, wig=0.003, funding_every=10)
    b_short = make_bars(100 * np.exp(np.cumsum(rng.normal(0.003, 0.01, 20))), 60_000, wig=0.003)
    ws = ReusedWorkspace()
    runs = [(small, b_short, make_prm("sqrt", fund=10.0, volume=6e5, max_rounds=5)),
            (big, b_long, make_prm("linear", fund=0.0, depth=5e4)),
            (small, b_short, make_prm("sqrt", fund=10.0, volume=6e5, max_rounds=5)),
            (big, b_short, make_prm("none", fund=1e3))]
    for pop, bars, prm in runs:
        assert_same(run_kernel(pop, bars, prm, workspace=ws), run_kernel(pop, bars, prm))
    first = ws.get(1, 1, 0)
    assert first.alive.size == 3000 and first.bar_i.shape[0] == 80 and first.round_units.size == 51
    assert ws.get(3000, 80, 50) is first


def test_cascade_rounds_get_later_times_within_the_path_point():
    """Issue 11: exits after a cascade's first round carried the path point's time, piling up
    there (a spurious peak, e.g. 20:39 on 1-hour bars). Each round's exits now come at or after
    the round before's, spread within the path point's segment, never after the path point."""
    pop = synthetic_population(20_000, price=100.0, seed=9)
    bar_ms = 3_600_000
    bars = make_bars(np.array([100.0, 96.0]), bar_ms)  # bar 1: open 100 -> high 100 -> low 96 -> close 96
    t1 = bars["ts"][1] + (1 * (bar_ms - 1)) // 3  # the path point before the low
    t2 = bars["ts"][1] + (2 * (bar_ms - 1)) // 3  # the low
    for ref in (False, True):
        out = run_kernel(pop, bars, make_prm("sqrt", volume=2e8, bar_ms=bar_ms), reference=ref)
        assert out["stats"][R.ST_MAX_DEPTH] >= 3
        crash = out["x_ts"] >= bars["ts"][1]  # (bar 0 exits positions already beyond their trigger)
        ts, rnd = out["x_ts"][crash], out["x_round"][crash]
        assert np.all(rnd >= 0)  # no ADL here
        assert np.all((ts > t1) & (ts <= t2))  # the whole cascade happens on the way to the low
        for r in range(1, int(rnd.max()) + 1):
            assert ts[rnd == r].min() >= ts[rnd == r - 1].max(), r
        later = ts[rnd >= 1]
        assert np.unique(later).size > 1 and later.min() < t2  # not all at the path point's time


def closed_once(pop: dict, out: dict) -> None:
    """Each liquidated quantity is closed once, in the market or by ADL: per side, the quantity
    ADL took over from bankrupt positions (their qty x weight less their market share, ``x_usd /
    fill``) is what ADL closed on the other side, up to one whole position per bar (ADL closes
    whole positions) - less only where no opposite position was left (shortfall)."""
    code, x_pos = out["x_code"], out["x_pos"]
    qw = pop["qty"] * pop["weight"].astype(np.float64)
    side = pop["side"][x_pos]
    forced = (code == R.EXIT_LIQUIDATED) | (code == R.EXIT_STOPPED)
    market = np.where(forced, out["x_usd"] / np.where(forced, out["x_fill"], 1.0), 0.0)
    taken = np.where(forced, qw[x_pos] - market, 0.0)
    assert np.all(taken >= -1e-9 * qw[x_pos])  # no position closed for more than its quantity
    adl = code == R.EXIT_ADL
    n_adl_bars = max(1, int(np.sum(out["bar_i"][:, R.BI_ADL] > 0)))
    biggest = float(qw.max()) if qw.size else 0.0
    short_usd = out["stats"][R.ST_ADL_SHORTFALL]
    for s in (1, -1):
        t = float(taken[side == s].sum())
        c = float(qw[x_pos[adl & (side == -s)]].sum())
        tol = 1e-9 * max(t, c, 1.0)
        assert c <= t + n_adl_bars * biggest + tol, (s, t, c)  # not closed again by ADL
        if short_usd == 0.0:
            assert c >= t - tol, (s, t, c)  # ... and all of it closed


def test_adl_takes_over_the_bankrupt_quantity_once():
    """Issue 11: ADL took over the bankrupt positions' quantity although they had been filled in
    the market in full, so that quantity was closed twice. Now the fund's shortfall decides the
    share ADL takes over (at the bankruptcy price), and that share is neither filled in the
    market nor part of the round's flow."""
    rng = np.random.default_rng(2)
    pop = synthetic_population(4000, price=100.0, seed=2)
    bars = make_bars(np.r_[100.0, 100.0 * np.exp(np.cumsum(rng.normal(-0.01, 0.01, 30)))], 60_000)
    for fund in (0.0, 200.0):
        prm = make_prm("linear", fund=fund, depth=2e4)
        out = run_kernel(pop, bars, prm)
        assert_same(out, run_kernel(pop, bars, prm, reference=True))
        bi = out["bar_i"]
        assert bi[:, R.BI_ADL].sum() > 0 and bi[:, R.BI_ADL_TAKEN].sum() > 0
        closed_once(pop, out)
        # the market part of a bankrupt position is smaller than the position
        forced = np.isin(out["x_code"], [R.EXIT_LIQUIDATED, R.EXIT_STOPPED])
        qw = (pop["qty"] * pop["weight"].astype(np.float64))[out["x_pos"]]
        assert np.any(out["x_usd"][forced] < qw[forced] * out["x_fill"][forced] * (1 - 1e-9))
        # the fund pays what it has, never more
        assert np.all(bi[:, R.BI_FUND] >= 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(2, 400),
    nbars=st.integers(2, 30),
    model=st.sampled_from(["none", "sqrt", "linear"]),
    fund=st.sampled_from([0.0, 5.0, 200.0]),
    no_feedback=st.booleans(),
    funding_every=st.sampled_from([0, 4]),
)
def test_each_liquidated_quantity_closed_once(seed, n, nbars, model, fund, no_feedback, funding_every):
    """Hypothesis: whatever the book, path and fund, no quantity is closed twice (market and
    ADL), the fund never goes negative, and the fast kernel equals the reference."""
    rng = np.random.default_rng(seed)
    pop = tie_population(rng, n, 100.0, 0.0, False)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.03, nbars)))
    bars = make_bars(closes, 60_000, wig=float(rng.uniform(0, 0.02)), funding_every=funding_every)
    prm = make_prm(model, fund=fund, volume=float(n) * 500.0, depth=float(n) * 20.0, no_feedback=no_feedback)
    out = run_kernel(pop, bars, prm)
    assert_same(out, run_kernel(pop, bars, prm, reference=True))
    closed_once(pop, out)
    assert np.all(out["bar_i"][:, R.BI_FUND] >= 0) and out["stats"][R.ST_FUND_MIN] >= 0


# ---- issue 11: fills after a gap, impact bounded by the book, resilience in wall-clock time ----
def gap_book(rng: np.random.Generator, n_long: int, n_short: int) -> dict:
    """Longs at entry 100 with leverage 2-50x (liquidation between bankruptcy and entry) and
    shorts that a fall never triggers; random sizes and weights."""
    n = n_long + n_short
    pop = synthetic_population(n, price=100.0, seed=int(rng.integers(0, 2**31)), stop_share=0.0)
    pop["side"][:] = np.r_[np.ones(n_long), -np.ones(n_short)].astype(np.int8)
    pop["tier"][:] = 0
    pop["venue"][:] = 0
    pop["mmr"][:] = 0.004
    pop["entry"][:] = 100.0
    pop["qty"][:] = rng.uniform(0.1, 10.0, n)
    lev = rng.uniform(2.0, 50.0, n)
    pop["margin"][:] = 100.0 * pop["qty"] / lev
    bk = 100.0 - pop["side"] * pop["margin"] / pop["qty"]
    pop["liq_price"][:] = np.where(pop["side"] > 0, bk + rng.uniform(0.01, 0.9, n) * (100.0 - bk), 1e9)
    pop["stop_price"][:] = np.nan
    pop["weight"][:] = rng.uniform(0.5, 3.0, n).astype(np.float32)
    return pop


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n_long=st.integers(1, 60), n_short=st.integers(1, 30),
       depth_of_gap=st.floats(0.05, 0.95), fund_share=st.sampled_from([0.0, 0.3, 0.999, 2.0]))
def test_gap_through_bankruptcy_is_a_deficit_the_fund_pays(seed, n_long, n_short, depth_of_gap, fund_share):
    """Issue 11: a forced order fills at the price the market reached. A path that jumps from 100
    to below every long's bankruptcy price fills them all there; the fund pays exactly the per-
    position deficits (bankruptcy - fill) x qty x weight, summed (fixed point, 1e-4 USD), and
    never goes negative; when it cannot pay them all, the rest is handed to ADL."""
    from backtest.margin import bankruptcy_linear_nb

    rng = np.random.default_rng(seed)
    pop = gap_book(rng, n_long, n_short)
    longs = np.flatnonzero(pop["side"] > 0)
    bk = np.array([bankruptcy_linear_nb(1, pop["entry"][i], pop["qty"][i], pop["margin"][i]) for i in longs])
    gap = float(bk.min() * (1.0 - depth_of_gap))
    qw = pop["qty"][longs] * pop["weight"][longs].astype(np.float64)
    want = int(sum(np.floor(-(gap - b) * q * R.USD_SCALE + 0.5) for b, q in zip(bk, qw)))
    fund = fund_share * want / R.USD_SCALE
    bars = make_bars(np.array([100.0, gap, gap]), 60_000)
    outs = [run_kernel(pop, bars, make_prm("none", fund=fund), reference=ref) for ref in (False, True)]
    assert_same(*outs)
    out = outs[0]
    bi = out["bar_i"]
    assert np.all(out["exit_code"][longs] != R.EXIT_NONE)
    assert np.all(out["fill"][longs][out["exit_code"][longs] == R.EXIT_LIQUIDATED] == gap)
    assert np.all(bi[:, R.BI_FUND] >= 0) and out["stats"][R.ST_FUND_MIN] >= 0
    if fund_share >= 1.0:  # the fund covers every deficit, to the unit
        assert bi[:, R.BI_DEFICIT].sum() == want
        assert bi[-1, R.BI_FUND] == np.floor(fund * R.USD_SCALE + 0.5) - want
        assert bi[:, R.BI_UNCOVERED].sum() == 0 and bi[:, R.BI_ADL_TAKEN].sum() == 0
    else:  # it pays what it has; the rest is ADL's (taken over at the bankruptcy prices)
        paid, unc = bi[:, R.BI_DEFICIT].sum(), bi[:, R.BI_UNCOVERED].sum()
        assert abs(paid + unc - want) <= 2 * n_long
        assert paid <= np.floor(fund * R.USD_SCALE + 0.5) + n_long
        assert bi[:, R.BI_ADL_TAKEN].sum() > 0 and (bi[:, R.BI_ADL].sum() > 0 or out["stats"][R.ST_ADL_SHORTFALL] > 0)
        closed_once(pop, out)


def thin_book(one_pct: float) -> BookProfile:
    """One snapshot, ``one_pct`` USD within 1 % on each side, the archive's levels to 5 %."""
    row = one_pct * np.array([1.0, 1.5, 2.0, 2.5, 3.0])
    return BookProfile(np.array([0], np.int64), book.LEVELS.copy(), row[None, :].copy(), row[None, :].copy())


def test_book_reach_rule():
    """The book bound's rule (book.book_reach): linear between the stored levels, beyond 5 % at
    the stored range's mean density, at most records.MAX_BOOK_MOVE."""
    p = thin_book(100.0)
    assert book.book_reach(p, 0, -1, 50.0) == pytest.approx(0.005)
    assert book.book_reach(p, 0, 1, 125.0) == pytest.approx(0.015)
    assert book.book_reach(p, 0, -1, 300.0) == pytest.approx(0.05)
    assert book.book_reach(p, 0, -1, 600.0) == pytest.approx(0.10)  # 300 more at 300 per 5 %
    assert book.book_reach(p, 0, -1, 1e12) == R.MAX_BOOK_MOVE
    empty = BookProfile(np.array([0], np.int64), book.LEVELS.copy(), np.zeros((1, 5)), np.zeros((1, 5)))
    assert book.book_reach(empty, 0, 1, 1.0) == R.MAX_BOOK_MOVE


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), model=st.sampled_from(["sqrt", "linear"]), coef=st.sampled_from([1.0, 1e3]),
       depth=st.sampled_from([1.0, 1e3, 1e9]), no_feedback=st.booleans(), half_life=st.sampled_from([1.0, float("inf")]))
def test_impact_bounded_by_the_book(seed, model, coef, depth, no_feedback, half_life):
    """Issue 11: impact_model linear took ETH from 3,425-4,022 to 1,072-52,020 on impact alone
    (MAX_IMPACT_LOG = 10). At any coefficient the simulated path now stays within the range the
    book can reach: within MAX_BOOK_MOVE of the observed path, and each path point's impact at
    most the distance at which the book holds the run's whole forced notional."""
    rng = np.random.default_rng(seed)
    pop = synthetic_population(3000, price=100.0, seed=int(rng.integers(0, 2**31)))
    bars = make_bars(100 * np.exp(np.cumsum(rng.normal(0, 0.03, 30))), 60_000, wig=0.01)
    prof = thin_book(float(rng.choice([1e3, 1e5, 1e7])))
    prm = make_prm(model, coef=coef, volume=depth, depth=depth, half_life=half_life, no_feedback=no_feedback)
    outs = [run_kernel(pop, bars, prm, reference=ref, depth=prof) for ref in (False, True)]
    assert_same(*outs)
    out = outs[0]
    bf = out["bar_f"]
    eps = 1e-12
    assert np.all(bf[:, R.BF_LOW] >= bars["low"] * (1 - R.MAX_BOOK_MOVE) * (1 - eps))
    assert np.all(bf[:, R.BF_HIGH] <= bars["high"] * (1 + R.MAX_BOOK_MOVE) * (1 + eps))
    total = out["round_units"].sum() / R.USD_SCALE
    if half_life == 1.0:  # the book recovers (2**-20 per 20 s): each point's move is its own flow's
        reach = max(book.book_reach(prof, 0, -1, total), book.book_reach(prof, 0, 1, total))
        assert np.all(bf[:, R.BF_ENDO_MIN] >= np.log1p(-reach) - 1e-9)
        assert np.all(bf[:, R.BF_ENDO_MAX] <= np.log1p(reach) + 1e-9)
    check_invariants(pop, bars, out)


def test_linear_impact_is_capped_where_the_book_holds_the_flow():
    """One crash into a $1 linear book (a model impact of thousands of %): the path point's
    move is exactly where the book's bids hold the forced flow, replay and cascade alike."""
    pop = gap_book(np.random.default_rng(3), 50, 5)
    bars = make_bars(np.array([100.0, 40.0, 40.0]), 60_000)
    prof = thin_book(500.0)
    for no_feedback in (True, False):
        out = run_kernel(pop, bars, make_prm("linear", depth=1.0, max_rounds=0, no_feedback=no_feedback, half_life=float("inf")), depth=prof)
        q = out["round_units"][0] / R.USD_SCALE
        want = np.log1p(-book.book_reach(prof, 0, -1, q))
        assert out["bar_f"][1, R.BF_ENDO_MIN] == pytest.approx(want, rel=1e-12)
        if no_feedback:
            assert out["bar_f"][1, R.BF_LOW] == 40.0  # replay: the path is not moved
        else:
            assert out["bar_f"][1, R.BF_LOW] == pytest.approx(40.0 * np.exp(want), rel=1e-12)


@pytest.mark.parametrize("bar_ms", [60_000, 900_000])
def test_resilience_in_wall_clock_time(bar_ms):
    """Issue 11: the transient impact decays with a half-life in seconds of elapsed path time
    (0.5 ** (elapsed s / half_life_s)), whatever the bar length; replay and cascade carry the
    same impact (only the cascade moves the path)."""
    pop = gap_book(np.random.default_rng(4), 1, 1)
    bars = make_bars(np.array([100.0, 40.0, 40.0, 40.0]), bar_ms)
    hl = 120.0
    t_hit = bars["ts"][1] + (2 * (bar_ms - 1)) // 3  # the forced sell: bar 1's low
    t_end = bars["ts"][2] + (3 * (bar_ms - 1)) // 3  # bar 2's close (a flat bar: E largest there)
    endo = {}
    for no_feedback in (True, False):
        out = run_kernel(pop, bars, make_prm("sqrt", volume=1e3, max_rounds=0, half_life=hl, no_feedback=no_feedback, bar_ms=bar_ms))
        e0 = out["bar_f"][1, R.BF_ENDO_MIN]
        assert e0 < 0
        want = e0 * 0.5 ** ((t_end - t_hit) / 1000.0 / hl)
        assert out["bar_f"][2, R.BF_ENDO_MAX] == pytest.approx(want, rel=1e-9)
        endo[no_feedback] = out["bar_f"][:, R.BF_ENDO_MIN:].copy()
    assert np.array_equal(endo[True], endo[False])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 400), nbars=st.integers(1, 40), bucket=st.sampled_from([1, 4, 256]),
       no_base=st.booleans())
def test_cohort_lists_in_one_call_equal_one_call_per_cohort(seed, n, nbars, bucket, no_base):
    """engine.build_lists lays out every opening cohort's lists in one kernel call
    (sorting.build_cohort_lists_nb): the same arrays, bit for bit, as one build_lists_nb and
    compaction per cohort (engine.cohort_lists_reference)."""
    from backtest.engine import _cohort_lists_of, cohort_lists_reference

    rng = np.random.default_rng(seed)
    pop = tie_population(rng, n, 100.0, 0.5, bool(rng.random() < 0.5))
    bars = make_bars(path_through(rng, pop, 100.0, nbars), 60_000)
    pop = add_flow(rng, pop, bars)
    if no_base:  # every row opens in the window
        pop = {k: v[pop["open_time"] > int(bars["ts"][0])] for k, v in pop.items()}
    ot = pop["open_time"]
    late = np.flatnonzero(ot > int(bars["ts"][0]))
    late = late[np.argsort(ot[late], kind="stable")]
    base = np.flatnonzero(ot <= int(bars["ts"][0]))
    rows = np.concatenate([base, late]).astype(np.int64)
    if not len(rows):
        return  # no cohort (build_lists never asks)
    cut = np.flatnonzero(np.diff(ot[late]) != 0) + 1
    cstart = np.unique(np.r_[0, len(base) + np.r_[0, cut], len(rows)]).astype(np.int64)
    fast, fc = _cohort_lists_of(pop, rows, cstart, bucket)
    ref, rc = cohort_lists_reference(pop, rows, cstart, bucket)
    np.testing.assert_array_equal(fc, rc)
    for j, (a, b) in enumerate(zip(fast, ref)):
        if j == 1:  # the keys: filled per bucket by the kernel
            assert a.shape == b.shape
            continue
        assert a.dtype == b.dtype, j
        np.testing.assert_array_equal(a, b)
