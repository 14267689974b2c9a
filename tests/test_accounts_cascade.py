"""Accounts in the cascade (issue 12): the account engine coupled with the per-symbol kernels by a
fixed point (backtest.simulate._coupled), its liquidations entering each symbol's kernel as an
external forced flow, fund draws and fees (records.MarketPath ``ext_*``).

The hand-built event below is SYNTHETIC (two made-up symbols, flat and crashing bars): it checks
the mechanics, not a market."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from backtest import records as R
from backtest.contagion import CONTAGION_TOL, REPLAY_TOL
from backtest.engine import make_kernel_params, run_kernel
from backtest.events import Event
from backtest.market import Market
from backtest.results import CONTAGION_KEYS
from backtest.sim_params import resolve_params
from backtest.simulate import PopEntry, Prepared, _pop_key, prepare, simulate_prepared
from backtest.synthetic import synthetic_population
from tests.golden.make_pre_accounts import NEW_COLUMNS, NEW_PARAMS

A, B = "A/USDT:USDT", "B/USDT:USDT"
T0 = 1_760_000_000_000
BAR_MS = 60_000


# ------------------------------------------------------------------------------------------
# the kernel: zero external flow is today's kernel
# ------------------------------------------------------------------------------------------
def _bars(close: np.ndarray, low: np.ndarray | None = None) -> dict[str, np.ndarray]:
    close = np.asarray(close, np.float64)
    op = np.r_[close[0], close[:-1]]
    lo = np.minimum(op, close) if low is None else np.asarray(low, np.float64)
    return {"ts": T0 + np.arange(close.size, dtype=np.int64) * BAR_MS, "open": op, "high": np.maximum(op, close), "low": lo,
            "close": close, "volume_usd": np.zeros(close.size), "funding_rate": np.zeros(close.size)}


@pytest.mark.parametrize("mode", ["cascade", "replay"])
@pytest.mark.parametrize("reference", [False, True])
def test_zero_external_flow_is_todays_kernel(mode, reference):
    rng = np.random.default_rng(4)
    pop = synthetic_population(3000, price=100.0, seed=4)
    bars = _bars(100 * np.exp(np.cumsum(rng.normal(-0.004, 0.01, 90))))
    prm = make_kernel_params(impact_model="sqrt", impact_coef=1.0, sigma=0.03, volume_usd=5e6, depth_usd=5e4, half_life_s=60.0,
                             fund_usd=1e3, clearance_rate=0.0125, taker_rate=0.0005, max_rounds=50, bar_ms=BAR_MS, mode=mode)
    z = np.zeros((90, R.PATH_POINTS))
    a = run_kernel(pop, bars, prm, reference=reference)
    b = run_kernel(pop, bars, prm, reference=reference, ext=(z, z.copy(), z.copy()))
    for k in R.RunOutputs._fields:
        assert np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True), k
    # the per-point outputs are the bars' simulated path: open and close are points 0 and 3
    assert np.array_equal(a.bar_pt[:, 0, R.PT_PRICE], a.bar_f[:, R.BF_OPEN])
    assert np.array_equal(a.bar_pt[:, 3, R.PT_PRICE], a.bar_f[:, R.BF_CLOSE])


def test_external_flow_moves_the_price_in_a_cascade_only():
    pop = synthetic_population(10, price=100.0, seed=1)
    pop["liq_price"][:] = np.where(pop["side"] > 0, 1.0, 1e6)  # nothing of its own triggers
    bars = _bars(np.full(5, 100.0))
    flow = np.zeros((5, R.PATH_POINTS))
    flow[2, 1] = -1e5
    z = np.zeros_like(flow)
    kw = dict(impact_model="sqrt", impact_coef=1.0, sigma=0.05, volume_usd=2.5e6, depth_usd=1e5, half_life_s=60.0, fund_usd=1e6,
              clearance_rate=0.0125, taker_rate=0.0005, max_rounds=50, bar_ms=BAR_MS)
    cas = run_kernel(pop, bars, make_kernel_params(**kw, mode="cascade"), ext=(flow, z, z))
    rep = run_kernel(pop, bars, make_kernel_params(**kw, mode="replay"), ext=(flow, z, z))
    assert cas.bar_pt[2, 1, R.PT_PRICE] < 100.0 and cas.bar_pt[2, 1, R.PT_HIT] == 100.0
    assert cas.bar_pt[2, 1, R.PT_FAC] < 1.0 and cas.bar_pt[2, 1, R.PT_PRICE] == pytest.approx(100.0 * cas.bar_pt[2, 1, R.PT_FAC])
    assert np.all(rep.bar_pt[:, :, R.PT_PRICE] == 100.0)  # replay: the path does not move ...
    assert rep.bar_pt[2, 1, R.PT_FAC] == cas.bar_pt[2, 1, R.PT_FAC]  # ... but the flow walks the same book


# ------------------------------------------------------------------------------------------
# a hand-built, SYNTHETIC two-symbol event
# ------------------------------------------------------------------------------------------
def _rows(spec: list[dict]) -> dict[str, np.ndarray]:
    """Linear Binance-style rows (tier 0, mmr 0.4 %), liquidation prices by the margin formula."""
    from backtest.margin import solve_liq_linear_nb

    n = len(spec)
    pop = R.empty_population(n)
    for k, v in {"side": 1, "margin_mode": R.ISOLATED, "venue": R.VENUE_BINANCE, "tier": 0, "mmr": 0.004, "maint_amount": 0.0,
                 "open_time": 0, "close_time": R.NO_CLOSE, "stop_price": np.nan, "weight": 1.0}.items():
        pop[k][:] = v
    for i, r in enumerate(spec):
        for k, v in r.items():
            pop[k][i] = v
    s = pop["side"].astype(np.float64)
    pop["liq_price"][:] = np.maximum(solve_liq_linear_nb(s, pop["entry"], pop["qty"], pop["margin"], pop["mmr"], pop["maint_amount"]), 0.0)
    pop["leverage"][:] = (pop["entry"] * pop["qty"] / pop["margin"]).astype(np.float32)
    R.check_population(pop)
    return pop


def synthetic_prepared(overrides: dict) -> Prepared:
    """Symbol A flat at 100; symbol B falls from 100 to 50 inside bar 3. One cross account holds a
    large long on each (its B loss liquidates it: contagion on A); an isolated A long sits just
    below 100 (only the account's forced selling of A can reach it)."""
    n = 8
    end = T0 + n * BAR_MS
    ev = Event("synthetic-accounts", "synthetic", "SYNTHETIC two-symbol crash", "binanceusdm", (A, B), T0, end, T0 - 86_400_000)
    closes = {A: np.full(n, 100.0), B: np.r_[np.full(3, 100.0), np.full(n - 3, 50.0)]}
    markets = {s: Market(s, "1m", "mark", _bars(c), 0.05, 1e7, 0) for s, c in closes.items()}
    pops_a = _rows([{"margin_mode": R.CROSS, "entry": 100.0, "qty": 1000.0, "margin": 5000.0},
                    {"entry": 100.0, "qty": 1.0, "margin": 0.5}])
    pops_b = _rows([{"margin_mode": R.CROSS, "entry": 100.0, "qty": 1000.0, "margin": 5000.0}])
    pops = {A: PopEntry(pops_a, 100_100.0, "hand-built (SYNTHETIC)"), B: PopEntry(pops_b, 100_000.0, "hand-built (SYNTHETIC)")}
    ov = {"positions_per_account": {"2": 1.0}, "insurance_fund_usd": 1e6, **overrides}
    pop_params, sim = resolve_params(ov)
    prep = Prepared(ev, [A, B], markets, pop_params, sim, pops, None, ov, legs={leg.key: leg for leg in ev.legs()})
    prep._pop_cache[_pop_key(pop_params)] = pops
    return prep


@pytest.fixture(scope="module")
def synthetic():
    prep = synthetic_prepared({})
    return prep, simulate_prepared(prep, mode="cascade"), simulate_prepared(prep, mode="replay", summary_only=True)


def test_an_accounts_liquidation_moves_another_symbol_and_liquidates_an_isolated_row(synthetic):
    _prep, cas, rep = synthetic
    liq = cas.liquidations
    acc_rows = liq.filter(pl.col("account") >= 0)
    assert acc_rows.height == 2 and set(acc_rows["symbol"]) == {"A/USDT:USDT", "B/USDT:USDT"}
    assert acc_rows.filter(pl.col("symbol") == A)["contagion"].to_list() == [1]  # A did not move: B's loss took it
    assert acc_rows.filter(pl.col("symbol") == A)["source"].to_list() == [B]
    iso = liq.filter((pl.col("symbol") == A) & (pl.col("account") == -1))
    assert iso.height == 1 and iso["position"].to_list() == [1]  # the isolated A row, liquidated by the account's selling
    # it goes at the account's path point, in a later round (the account's flow enters round 0),
    # timed within the segment that leads to it
    t_acc = acc_rows.filter(pl.col("symbol") == A)["ts"].item()
    assert t_acc - timedelta(milliseconds=BAR_MS // 3) <= iso["ts"].item() <= t_acc and iso["round"].to_list() == [1]
    bars_a = cas.bars.filter(pl.col("symbol") == A)
    assert bars_a["sim_low"].min() < 99.9 and bars_a["low"].min() == 100.0  # the account's selling pushed A down
    # the account's A row fills at the point's price moved by its own impact (not at 100)
    assert acc_rows.filter(pl.col("symbol") == A)["fill"].item() < 100.0
    # replay: the same account liquidation does not move A, so the isolated row stays open
    ps = rep.summary.per_symbol[A]
    assert ps.liquidated_notional_usd == pytest.approx(acc_rows.filter(pl.col("symbol") == A)["notional_usd"].item(), rel=0.02)
    assert ps.liquidated_notional_usd < cas.summary.per_symbol[A].liquidated_notional_usd
    assert rep.summary.contagion_liquidated_usd > 0


def test_the_fund_pays_the_engines_deficits(synthetic):
    _prep, cas, rep = synthetic
    s = cas.summary
    bars = cas.bars
    assert s.contagion_account_deficit_usd > 30_000  # B at 50: the account's loss is far beyond its $10k wallet
    assert float(bars["account_deficit_usd"].sum()) == pytest.approx(s.contagion_account_deficit_usd, rel=1e-9)
    # charged to the symbols' funds: in deficit_usd, and the fund falls by the deficits less the fees
    assert float(bars["deficit_usd"].sum()) >= s.contagion_account_deficit_usd - 1e-3
    fund0 = sum(v.insurance_fund_start_usd for v in s.per_symbol.values())
    fund_end = float(bars.group_by("symbol").agg(pl.col("insurance_fund_usd").last())["insurance_fund_usd"].sum())
    paid = float(bars["deficit_usd"].sum() - bars["clearance_fees_usd"].sum())
    assert fund0 - fund_end == pytest.approx(paid, abs=1e-2)
    assert s.insurance_fund_min_usd < fund0 - s.contagion_account_deficit_usd + 1.0
    # in replay too (fills and fund draws apply, the path stays)
    assert rep.summary.contagion_account_deficit_usd > 30_000
    assert rep.summary.insurance_fund_min_usd < fund0 - rep.summary.contagion_account_deficit_usd + 1.0


def test_a_fund_too_small_leaves_the_rest_uncovered():
    prep = synthetic_prepared({"insurance_fund_usd": 1000.0})
    res = simulate_prepared(prep, mode="cascade")
    bars = res.bars
    assert res.summary.insurance_fund_min_usd == 0.0
    assert float(bars["uncovered_usd"].sum()) > 0.5 * res.summary.contagion_account_deficit_usd
    # the fund pays what it holds (deficit_usd), the rest is uncovered: together the engine's deficits
    paid_and_not = float(bars["deficit_usd"].sum() + bars["uncovered_usd"].sum())
    assert paid_and_not == pytest.approx(res.summary.contagion_account_deficit_usd, rel=1e-6, abs=1.0)
    assert float(bars["deficit_usd"].sum()) <= 1000.0 + float(bars["clearance_fees_usd"].sum()) + 1e-6


def test_the_coupling_converges_on_the_synthetic_event(synthetic):
    _prep, cas, rep = synthetic
    for s, tol in ((cas.summary, CONTAGION_TOL), (rep.summary, REPLAY_TOL)):
        assert s.contagion_converged is True and s.contagion_residual <= tol and s.contagion_tolerance == tol
        assert 1 <= s.contagion_iterations <= 8
        assert {"contagion_iterations", "contagion_residual", "contagion_converged", "contagion_tolerance"} <= set(s.keys())
    # one pass is not enough to settle the engine's fills: the cap is reported as not converged
    one = simulate_prepared(synthetic_prepared({"account_iterations": 1}), mode="cascade", summary_only=True).summary
    assert one.contagion_iterations == 1 and one.contagion_converged is False and one.contagion_residual > CONTAGION_TOL
    # ... and says so in its notes (the report's last page prints them; the CLI warns on stderr)
    assert any(n.startswith("NOT CONVERGED") and "account_iterations" in n for n in one.notes)
    assert not any(n.startswith("NOT CONVERGED") for s in (cas.summary, rep.summary) for n in s.notes)


# ------------------------------------------------------------------------------------------
# the committed store: every row isolated gives accounts off bit for bit; the CLI
# ------------------------------------------------------------------------------------------
def _digest(res) -> dict:
    summary = res.summary.to_dict()
    for k in [*CONTAGION_KEYS, "notes", "timings_s"]:
        summary.pop(k, None)
    for k in NEW_PARAMS:
        summary["params"].pop(k, None)
    frames = {}
    for name in ("bars", "liquidations", "clusters", "liq_map", "heatmap"):
        df = getattr(res, name).drop(NEW_COLUMNS.get(name, []))
        frames[name] = df.hash_rows().to_list()
    return {"summary": json.dumps(summary, sort_keys=True, default=str), "frames": frames}


def test_every_row_isolated_in_a_cascade_equals_accounts_off():
    prep = prepare("2025-10-10", {"n_positions": 4000, "seed": 3, "isolated_share": 1.0}, symbols=["BTC/USDT:USDT", "ETH/USDT:USDT"])
    on = simulate_prepared(prep, mode="cascade")
    off = simulate_prepared(prep, {"accounts": False}, mode="cascade")
    assert on.summary.contagion_engine_accounts == 0 and on.summary.contagion_iterations == 0
    assert _digest(on) == _digest(off)


def test_cli_cascade_has_the_contagion_keys(tmp_path):
    exe = Path(sys.executable).with_name("backtest")
    out = tmp_path / "c"
    r = subprocess.run([str(exe), "cascade", "2025-10-10", "--set", "n_positions=20000", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    for k in CONTAGION_KEYS:
        assert k in s, k
    assert s["mode"] == "cascade" and s["contagion_liquidated_usd"] > 0 and s["contagion_iterations"] >= 1
    assert s["contagion_converged"] in (True, False) and s["contagion_residual"] >= 0
    liq = pl.read_parquet(out / "liquidations.parquet")
    assert (liq["account"] >= 0).any() and (liq["contagion"] == 1).any()


def test_a_cached_engine_run_gives_the_same_replay(synthetic):
    """Replay keeps the engine's run (the observed path) from call to call: each call prices its own copy."""
    prep, _cas, rep = synthetic
    again = simulate_prepared(prep, mode="replay", summary_only=True).summary
    other = simulate_prepared(prep, {"impact_model": "none"}, mode="replay", summary_only=True).summary
    back = simulate_prepared(prep, mode="replay", summary_only=True).summary
    assert again.timings_s["account_engine_runs"] == 0.0  # cached
    for s in (again, back):
        assert s.contagion_account_deficit_usd == rep.summary.contagion_account_deficit_usd
        assert s.liquidated_notional_usd == rep.summary.liquidated_notional_usd
    assert other.contagion_account_deficit_usd != rep.summary.contagion_account_deficit_usd  # no impact: fills at the price reached


def _stub_run(x_row, x_grid, x_share, wallet, n_rows):
    """An engine run of ONE account (sub id 0) over the rows 0..n_rows-1 of one symbol (stub: only
    what contagion.engine_flows reads)."""
    from types import SimpleNamespace as NS

    out = NS(x_row=np.asarray(x_row, np.int64), x_grid=np.asarray(x_grid, np.int64), x_share=np.asarray(x_share, np.float64))
    acc = NS(row_offset=np.array([0, n_rows], np.int64))
    sub = NS(row_account=np.zeros(n_rows, np.int32), members=np.arange(n_rows, dtype=np.int64), first=np.array([0], np.int64),
             count=np.array([n_rows], np.int32), coll_asset=np.zeros(1, np.int8), wallet_usd=np.array([float(wallet)]),
             coll_amount=np.zeros(1))
    return NS(out=out, acc=acc, sub=sub, grid=None, symbols=["X"], grid_ts=np.arange(8, dtype=np.int64) * 1000)


def _stub_inputs(prices):
    from types import SimpleNamespace as NS

    from backtest import records as R

    pops = {"X": NS(arrays={"side": np.array([1, -1], np.int8), "qty": np.array([10.0, 10.0]), "entry": np.array([100.0, 100.0]),
                            "weight": np.array([1.0, 1.0], np.float32)})}
    pt = np.ones((2, R.PATH_POINTS, R.PT_SIZE))
    flat = pt.reshape(-1, R.PT_SIZE)
    flat[:, R.PT_PRICE] = flat[:, R.PT_HIT] = prices
    return pops, {"X": pt}, {"X": np.arange(8, dtype=np.int64) * 1000}


def test_an_account_cut_in_part_owes_no_deficit_and_a_closed_one_pays_it_at_its_final_close():
    """SYNTHETIC. A hedged account (long 10 @100, short 10 @100, wallet $100): a venue procedure cuts
    half the long at 70 (grid point 1) and the account stays open - no deficit, only the fee on what
    it closed. Closed in full later (the rest of the long at 50, the short at 120: equity
    100 - 150 - 250 - 200 = -500), its deficit falls at the final grid point's records only."""
    from backtest.contagion import engine_flows

    prices = np.array([100.0, 70.0, 60.0, 60.0, 50.0, 50.0, 50.0, 50.0])
    pops, bar_pt, pts = _stub_inputs(prices)
    part = engine_flows(_stub_run([0], [1], [0.5], 100.0, 2), pops, bar_pt, pts, 0.01)
    assert part.deficit_usd.sum() == 0.0
    assert part.fee_usd.sum() == pytest.approx(0.01 * 5 * 70.0)
    prices[5] = 120.0  # the short's fill at grid point 5
    pops, bar_pt, pts = _stub_inputs(prices)
    full = engine_flows(_stub_run([0, 0, 1], [1, 4, 5], [0.5, 0.5, 1.0], 100.0, 2), pops, bar_pt, pts, 0.01)
    assert full.deficit_usd.sum() == pytest.approx(500.0)
    assert full.deficit_usd[0] == 0.0 and full.deficit_usd[1] == 0.0 and full.deficit_usd[2] == pytest.approx(500.0)


def test_cli_warns_when_the_coupling_does_not_converge(tmp_path):
    exe = Path(sys.executable).with_name("backtest")
    out = tmp_path / "r"
    r = subprocess.run([str(exe), "replay", "2025-10-10", "--symbol", "BTC/USDT:USDT", "--symbol", "ETH/USDT:USDT", "--set", "n_positions=4000",
                        "--set", "account_iterations=1", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["contagion_converged"] is False
    assert "warning: NOT CONVERGED" in r.stderr and "account_iterations" in r.stderr
    assert "NOT converged" in r.stdout


# ------------------------------------------------------------------------------------------
# re-pricing the fund of a run without running it again (engine.with_external_fund)
# ------------------------------------------------------------------------------------------
from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), fund=st.sampled_from([1e2, 3e3, 1e5, 1e8]), scale=st.floats(0.0, 3.0),
       mode=st.sampled_from(["cascade", "replay"]), reference=st.booleans())
def test_fund_repricing_is_a_fresh_run(seed, fund, scale, mode, reference):
    """Whenever engine.with_external_fund answers, its run is the kernel's own with the new
    payments, every output bit for bit (also re-pricing a re-priced run again, the old run's
    outputs living in a reused workspace, with funding); it answers None when the flow differs,
    when the old run found its fund short, or when the new payments would."""
    from backtest.engine import ReusedWorkspace, with_external_fund

    rng = np.random.default_rng(seed)
    nb = 40
    pop = synthetic_population(400, price=100.0, seed=seed)
    bars = _bars(100 * np.exp(np.cumsum(rng.normal(-0.006, 0.012, nb))))
    bars["funding_rate"] = np.where(np.arange(nb) % 8 == 7, rng.normal(0.0, 3e-4, nb), 0.0)
    prm = make_kernel_params(impact_model="sqrt", impact_coef=1.0, sigma=0.03, volume_usd=5e6, depth_usd=5e4, half_life_s=60.0,
                             fund_usd=fund, clearance_rate=0.0125, taker_rate=0.0005, max_rounds=50, bar_ms=BAR_MS, mode=mode)
    hit = rng.random((nb, R.PATH_POINTS)) < 0.2
    flow = np.where(hit, rng.normal(0.0, 2e4, (nb, R.PATH_POINTS)), 0.0)
    draw = np.where(hit, rng.exponential(fund * 0.02, (nb, R.PATH_POINTS)), 0.0)
    fee = np.where(hit, rng.exponential(50.0, (nb, R.PATH_POINTS)), 0.0)
    old = (flow, draw, fee)
    a = run_kernel(pop, bars, prm, reference=reference, ext=old, workspace=ReusedWorkspace())
    for _ in range(2):  # a re-priced run re-priced again
        new = (flow.copy(), draw * scale * rng.uniform(0.5, 1.5), fee * rng.uniform(0.0, 2.0, fee.shape))
        fresh = run_kernel(pop, bars, prm, reference=reference, ext=new)
        got = with_external_fund(a, fund, old, new)
        short = bool(a.bar_i[:, R.BI_UNCOVERED].any() or fresh.bar_i[:, R.BI_UNCOVERED].any())
        if got is None:
            assert short  # it declines only when a fund is (or would be) short
            break
        assert not short
        for k in R.RunOutputs._fields:
            assert np.array_equal(getattr(got, k), getattr(fresh, k), equal_nan=True), k
        a, old = got, new
    moved = (flow + 1.0, draw, fee)
    assert with_external_fund(a, fund, old, moved) is None


def _both_pricings(monkeypatch, calls):
    """Make every pricing of the coupling run the numba kernels and the numpy reference and compare them."""
    import backtest.contagion as C

    fast, ref = C.engine_flows, C.engine_flows_reference

    def both(run, pops, bar_pt, point_ts, rate, cache=None):
        a = fast(run, pops, bar_pt, point_ts, rate, cache=cache)
        b = ref(run, pops, bar_pt, point_ts, rate)
        for k in ("fill", "usd", "deficit_usd", "fee_usd", "bar", "side"):
            assert np.array_equal(getattr(a, k), getattr(b, k)), k
        assert a.ext.keys() == b.ext.keys()
        for s in a.ext:
            for x, y in zip(a.ext[s], b.ext[s]):
                assert np.array_equal(x, y), s
        calls.append(len(a.fill))
        return a

    monkeypatch.setattr(C, "engine_flows", both)


@pytest.mark.parametrize("mode", ["cascade", "replay"])
def test_the_pricing_kernels_equal_the_numpy_reference(monkeypatch, mode):
    """contagion.engine_flows (backtest.kernels.pricing) equals engine_flows_reference bit for bit
    at every pass of the coupling: the SYNTHETIC two-symbol event, and the committed 2025-10-10 data
    (two symbols, a non-settlement collateral held by some accounts, partial liquidations)."""
    calls: list[int] = []
    _both_pricings(monkeypatch, calls)
    simulate_prepared(synthetic_prepared({}), mode=mode, summary_only=True)
    prep = prepare("2025-10-10", {"n_positions": 3000, "collateral_share": 0.3}, symbols=["BTC/USDT:USDT", "ETH/USDT:USDT"])
    simulate_prepared(prep, mode=mode, summary_only=True)
    assert len(calls) >= 3 and max(calls) > 100  # several passes, real engine runs priced
