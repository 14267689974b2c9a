"""The cross-account engine (issue 12): fast == reference bit for bit, one-position accounts ==
the isolated formula, the cushion invariant, collateral falls. Populations and paths are random
(SYNTHETIC), never market data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backtest import records as R
from backtest.accounts import (
    account_rows,
    assign_accounts,
    build_grid,
    collateral_series,
    liq_rules,
    parse_collateral_shock,
    path_points,
    run_accounts,
    tiers_from_rows,
)
from backtest.errors import SimError
from backtest.kernels.accounts import account_state_nb
from backtest.margin import liquidation_price

BAR_MS = 60_000


def _bars(rng, nbars, p0, vol, t0=0, jump=None):
    """SYNTHETIC bars: a random walk (log), optional jump (bar, log move)."""
    r = rng.normal(0.0, vol, nbars)
    if jump is not None:
        r[jump[0]] += jump[1]
    c = p0 * np.exp(np.cumsum(r))
    o = np.concatenate([[p0], c[:-1]])
    wig = np.abs(rng.normal(0, vol / 2, (2, nbars)))
    hi = np.maximum(o, c) * np.exp(wig[0])
    lo = np.minimum(o, c) * np.exp(-wig[1])
    ts = t0 + np.arange(nbars, dtype=np.int64) * BAR_MS
    return {"ts": ts, "open": o, "high": hi, "low": lo, "close": c}


def _pop(rng, n, p0, cross_share=0.8):
    side = np.where(rng.random(n) < 0.6, 1, -1).astype(np.int8)
    entry = p0 * np.exp(rng.normal(0, 0.02, n))
    notional = 1000 * np.exp(rng.normal(0, 1, n))
    qty = notional / entry
    lev = rng.choice([2.0, 5.0, 10.0, 20.0, 50.0], n)
    margin = notional / lev * (1 + rng.lognormal(0, 1, n) * (rng.random(n) < 0.5))
    mmr = rng.choice([0.004, 0.005, 0.01, 0.025], n)
    cum = np.where(rng.random(n) < 0.3, notional * mmr * rng.random(n) * 0.5, 0.0)
    return {
        "side": side,
        "margin_mode": np.where(rng.random(n) < cross_share, R.CROSS, R.ISOLATED).astype(np.int8),
        "entry": entry,
        "qty": qty,
        "margin": margin,
        "mmr": mmr,
        "maint_amount": cum,
        "weight": rng.integers(1, 50, n).astype(np.float32),
    }


#: a SYNTHETIC tier table (floor, cap, mmr, cum, max leverage): cum continuous as margin.tier_arrays derives it
_FLOOR = np.array([0.0, 1500.0, 4000.0, 12000.0, 40000.0])
_MMR = np.array([0.005, 0.01, 0.02, 0.04, 0.08])
_CUM = np.concatenate([[0.0], np.cumsum(_FLOOR[1:] * np.diff(_MMR))])
TIERS = (_FLOOR, np.append(_FLOOR[1:], 1e12), _MMR, _CUM, np.array([100.0, 50.0, 25.0, 12.5, 6.0]))


def _tiered(pop, venue):
    """Give a SYNTHETIC book the tier of each row's entry notional (TIERS) and a venue code."""
    k = np.searchsorted(_FLOOR, pop["entry"] * pop["qty"], side="left") - 1
    k = np.clip(k, 0, len(_FLOOR) - 1)
    pop["tier"] = k.astype(np.uint8)
    pop["mmr"] = _MMR[k]
    pop["maint_amount"] = _CUM[k]
    pop["venue"] = np.full(len(k), venue, np.int8)
    return pop


def _event(seed, n_sym, n_rows, nbars, coll_share=0.0, shock=None, ties=False, venue=None):
    rng = np.random.default_rng(seed)
    p0s = [100.0 * (1 + s) for s in range(n_sym)]
    bars = [_bars(rng, nbars, p0, 0.01 * (1 + s), jump=(nbars // 2, -0.1 * s) if s else None) for s, p0 in enumerate(p0s)]
    if ties:  # prices on a coarse lattice: many equal prices, near-ties at the boxes' edges
        for b in bars:
            for k in ("open", "high", "low", "close"):
                b[k] = np.round(b[k], 0)
    pops = [_pop(rng, n_rows, p0) for p0 in p0s]
    if venue is not None:
        pops = [_tiered(p, venue) for p in pops]
    acc = assign_accounts(pops, [1e9 * (n_sym - s) for s in range(n_sym)], positions_per_account={1: 0.3, 2: 0.3, 3: 0.4},
                          seed=seed, collateral_share=coll_share, collateral_haircut=0.1)
    coll = [collateral_series(shock, 0)] if coll_share > 0 else []
    pts = [path_points(b, BAR_MS) for b in bars]
    grid = build_grid(pts, coll, [0.1] * len(coll))
    return pops, acc, account_rows(pops, acc), grid, nbars


def _sorted_records(out):
    o = np.argsort(out.x_row, kind="stable")
    return [a[o] for a in (out.x_row, out.x_grid, out.x_fill, out.x_contagion, out.x_source, out.x_share)]


def _assert_same(fast, ref):
    for a, b in zip(_sorted_records(fast), _sorted_records(ref)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(fast[:6], ref[:6]):  # the records come in one canonical order in both modes
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fast.acc_grid, ref.acc_grid)
    np.testing.assert_array_equal(fast.acc_deficit, ref.acc_deficit)
    np.testing.assert_array_equal(fast.bar_i, ref.bar_i)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), n_sym=st.integers(1, 4), n_rows=st.integers(1, 60), nbars=st.integers(1, 40),
       coll=st.sampled_from([0.0, 0.5]), ties=st.booleans())
def test_fast_equals_reference(seed, n_sym, n_rows, nbars, coll, ties):
    pops, acc, rows, grid, nb = _event(seed, n_sym, n_rows, nbars, coll_share=coll, shock=(-0.35, 20 * BAR_MS) if coll else None, ties=ties)
    fast = run_accounts(acc, rows, grid, nb)
    ref = run_accounts(acc, rows, grid, nb, reference=True)
    _assert_same(fast, ref)
    assert fast.checks <= ref.checks
    stepped = run_accounts(acc, rows, grid, nb, stepped=True)
    _assert_same(stepped, ref)
    assert stepped.checks <= ref.checks


def _rules(grid, hl_usd=2000.0, tiers=True):
    """The venue rules with the SYNTHETIC tier table on every symbol and a small Hyperliquid
    partial size (the synthetic books' positions are ~$1k, the venue's 100k would never bind)."""
    n = grid.n_symbols
    return liq_rules(grid.px.shape[0], [TIERS] * n if tiers else None)._replace(hl_partial_usd=hl_usd)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), n_sym=st.integers(1, 4), n_rows=st.integers(1, 60), nbars=st.integers(1, 40),
       coll=st.sampled_from([0.0, 0.5]), ties=st.booleans(), venue=st.sampled_from(sorted(R.VENUES.values())),
       hl_usd=st.sampled_from([500.0, 2000.0, 1e5]), from_rows=st.booleans())
def test_fast_equals_reference_with_venue_procedures(seed, n_sym, n_rows, nbars, coll, ties, venue, hl_usd, from_rows):
    """Partial liquidations on (Bybit / OKX tier steps, Hyperliquid 20 % + cooldown + backstop):
    fast == reference bit for bit, and a row's exit shares never sum above 1."""
    pops, acc, rows, grid, nb = _event(seed, n_sym, n_rows, nbars, coll_share=coll, shock=(-0.35, 20 * BAR_MS) if coll else None,
                                       ties=ties, venue=venue)
    rules = liq_rules(grid.px.shape[0], tiers_from_rows(pops)) if from_rows else _rules(grid)
    rules = rules._replace(hl_partial_usd=hl_usd, hl_cooldown_ms=3 * BAR_MS)
    fast = run_accounts(acc, rows, grid, nb, rules=rules)
    ref = run_accounts(acc, rows, grid, nb, reference=True, rules=rules)
    _assert_same(fast, ref)
    assert fast.checks <= ref.checks
    _assert_same(run_accounts(acc, rows, grid, nb, rules=rules, stepped=True), ref)
    tot = np.bincount(fast.x_row, weights=fast.x_share, minlength=int(acc.row_offset[-1]))
    assert (tot <= 1.0 + 1e-12).all() and (fast.x_share > 0).all()
    if venue in (R.VENUE_BINANCE, R.VENUE_GATE):  # whole accounts: one exit per row, share 1
        assert (fast.x_share == 1.0).all() and len(np.unique(fast.x_row)) == len(fast.x_row)


def test_fast_visits_few_accounts():
    pops, acc, rows, grid, nb = _event(7, 4, 2000, 300)
    fast = run_accounts(acc, rows, grid, nb)
    ref = run_accounts(acc, rows, grid, nb, reference=True)
    _assert_same(fast, ref)
    assert fast.checks * 20 < ref.checks, (fast.checks, ref.checks)
    assert (fast.acc_grid >= 0).sum() > 10  # the jumps liquidate some accounts
    stepped = run_accounts(acc, rows, grid, nb, stepped=True)
    _assert_same(stepped, ref)
    assert stepped.checks * 20 < ref.checks, (stepped.checks, ref.checks)


def _step_by_step(acc, rows, grid, nb, rules, pool, width=R.WAKE_LOG_WIDTH):
    """The time-major engine (backtest.kernels.account_steps) driven point by point, as a
    co-simulation would: every grid column after the current point is NaN when the point is
    stepped; ``pool``: its entry pool's size factor (0: as small as it may be); ``width``: of a
    wake bucket in log price (coarse: 40 buckets either side of the first price, the price
    often in the bucket of a level, and beyond the end buckets)."""
    from backtest.accounts import _canonical, exit_capacity, wake_index
    from backtest.kernels.account_steps import step_init_nb, step_point_nb

    m, A, S = len(acc.members), len(acc.first), grid.px.shape[0]
    cap = exit_capacity(acc, rows, rules)
    xs = (np.empty(cap, np.int64), np.empty(cap, np.int32), np.empty(cap), np.empty(cap, np.int8), np.empty(cap, np.int16), np.empty(cap))
    st_ = R.AccountState(np.empty((m, 8)), np.empty((A, 8)))
    ag, ad = np.full(A, -1, np.int32), np.zeros(A)
    bar_i = np.zeros((S, nb, R.AB_SIZE), np.int64)
    wk = wake_index(acc, S, len(grid.ts), pool_factor=pool, width=width, buckets=R.WAKE_BUCKETS if width == R.WAKE_LOG_WIDTH else 80)
    blind = grid._replace(px=np.full_like(grid.px, np.nan))
    blind.px[:, 0] = grid.px[:, 0]
    step_init_nb(acc, rows, blind, st_, wk)
    nx = 0
    for t in range(len(grid.ts)):
        blind.px[:, t] = grid.px[:, t]
        nx = step_point_nb(acc, rows, blind, rules, st_, wk, t, bar_i, xs, nx, ag, ad, np.empty(max(grid.n_symbols, 1)))
    return _canonical(xs, nx, acc, ag, ad, bar_i, int(wk.counts[R.WC_CHECKS])), wk


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), n_sym=st.integers(1, 3), n_rows=st.integers(1, 40), nbars=st.integers(1, 30),
       coll=st.sampled_from([0.0, 0.5]), venue=st.sampled_from(sorted(R.VENUES.values())), pool=st.sampled_from([0.0, 1.0, 2.0]),
       width=st.sampled_from([R.WAKE_LOG_WIDTH, 0.003, 0.02]), ties=st.booleans())
def test_time_major_engine_reads_no_later_point(seed, n_sym, n_rows, nbars, coll, venue, pool, width, ties):
    """Stepped point by point with the later grid columns unknown (NaN), any pool size and wake
    buckets fine or coarse: the reference's outputs bit for bit."""
    pops, acc, rows, grid, nb = _event(seed, n_sym, n_rows, nbars, coll_share=coll, shock=(-0.35, 20 * BAR_MS) if coll else None,
                                       venue=venue, ties=ties)
    rules = _rules(grid)._replace(hl_cooldown_ms=3 * BAR_MS)
    out, _wk = _step_by_step(acc, rows, grid, nb, rules, pool, width)
    _assert_same(out, run_accounts(acc, rows, grid, nb, reference=True, rules=rules))


def test_time_major_engine_pool_rebuilds_keep_the_results():
    """A pool as small as it may be fills and is rebuilt from the accounts' anchors (twice
    here): the results stay the reference's."""
    pops, acc, rows, grid, nb = _event(8, 3, 40, 30)
    rules = _rules(grid)
    out, wk = _step_by_step(acc, rows, grid, nb, rules, 0.0)
    assert wk.counts[R.WC_REBUILDS] >= 2
    _assert_same(out, run_accounts(acc, rows, grid, nb, reference=True, rules=rules))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_invariant_equity_above_maintenance_until_liquidated(seed):
    pops, acc, rows, grid, nb = _event(seed, 3, 40, 30)
    out = run_accounts(acc, rows, grid, nb)
    T = len(grid.ts)
    for a in range(len(acc.first)):
        end = out.acc_grid[a] if out.acc_grid[a] >= 0 else T
        for t in range(end):
            eq, mm, _, _ = account_state_nb(acc, rows, grid, a, t)
            assert not eq < mm
        if out.acc_grid[a] >= 0:
            eq, mm, _, _ = account_state_nb(acc, rows, grid, a, out.acc_grid[a])
            assert eq < mm


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), side=st.sampled_from([1, -1]), lev=st.sampled_from([3.0, 10.0, 25.0, 50.0]),
       mmr=st.sampled_from([0.004, 0.01, 0.025]), cum_frac=st.sampled_from([0.0, 0.3]))
def test_single_position_accounts_match_isolated_formula(seed, side, lev, mmr, cum_frac):
    rng = np.random.default_rng(seed)
    bars = _bars(rng, 50, 100.0, 0.02)
    entry, qty = 100.0, 10.0
    wallet = entry * qty / lev
    cum = cum_frac * entry * qty * mmr
    try:
        lp = liquidation_price("binance", side, entry, qty, wallet, margin_mode="cross", mmr=mmr, maint_amount=cum)
    except ValueError:
        return  # below maintenance at entry
    pop = {"side": np.array([side], np.int8), "margin_mode": np.array([R.CROSS], np.int8), "entry": np.array([entry]),
           "qty": np.array([qty]), "margin": np.array([wallet]), "mmr": np.array([mmr]), "maint_amount": np.array([cum]),
           "weight": np.array([1.0], np.float32)}
    acc = assign_accounts([pop], [1.0], positions_per_account={1: 1.0}, seed=seed)
    grid = build_grid([path_points(bars, BAR_MS)])
    out = run_accounts(acc, account_rows([pop], acc), grid, 50)
    px = grid.px[0]
    if np.any(np.abs(px - lp) <= 1e-9 * lp):
        return  # a tie with the solved price: rounding decides
    hit = np.flatnonzero(px <= lp if side > 0 else px >= lp)
    want = int(hit[0]) if len(hit) else -1
    assert out.acc_grid[0] == want


def test_collateral_drop_liquidates_accounts_whose_positions_did_not_move():
    """Flat prices, a collateral asset falling 35 %: accounts holding it are liquidated, the
    others are not; every such liquidation is contagion with the collateral as its source."""
    n = 200
    rng = np.random.default_rng(3)
    bars = {"ts": np.arange(30, dtype=np.int64) * BAR_MS, **{k: np.full(30, 100.0) for k in ("open", "high", "low", "close")}}
    pop = _pop(rng, n, 100.0, cross_share=1.0)
    pop["entry"][:] = 100.0
    pop["margin"] = pop["entry"] * pop["qty"] / 40.0  # 40x, no excess, mmr 2 %: a 35 % collateral drop is fatal
    pop["mmr"][:] = 0.02
    pop["maint_amount"][:] = 0.0
    acc = assign_accounts([pop], [1.0], positions_per_account={1: 1.0}, seed=1, collateral_share=0.5, collateral_haircut=0.1)
    shock = parse_collateral_shock("-0.35@1970-01-01T00:10:00Z")
    assert shock == (-0.35, 600_000)
    grid = build_grid([path_points(bars, BAR_MS)], [collateral_series(shock, 0)], [0.1])
    out = run_accounts(acc, account_rows([pop], acc), grid, 30)
    ref = run_accounts(acc, account_rows([pop], acc), grid, 30, reference=True)
    _assert_same(out, ref)
    held = acc.coll_asset == 1
    assert held.any() and (~held).any()
    assert (out.acc_grid[held] >= 0).all()
    assert (out.acc_grid[~held] == -1).all()
    assert (grid.ts[out.acc_grid[held]] >= 600_000).all()
    assert (out.x_contagion == 1).all() and (out.x_source == R.SOURCE_COLLATERAL).all()


def test_contagion_from_another_symbol():
    """Symbol 1 crashes, symbol 0 is flat: two-symbol accounts lose their symbol-0 rows by contagion."""
    flat = {"ts": np.arange(10, dtype=np.int64) * BAR_MS, **{k: np.full(10, 100.0) for k in ("open", "high", "low", "close")}}
    crash = {k: v.copy() for k, v in flat.items()}
    for k in ("open", "high", "low", "close"):
        crash[k][5:] = 50.0
    mk = lambda side: {"side": np.array([side], np.int8), "margin_mode": np.array([R.CROSS], np.int8), "entry": np.array([100.0]),  # noqa: E731
                       "qty": np.array([1.0]), "margin": np.array([10.0]), "mmr": np.array([0.01]), "maint_amount": np.array([0.0]),
                       "weight": np.array([2.0], np.float32)}
    pops = [mk(1), mk(1)]
    acc = assign_accounts(pops, [1.0, 1.0], positions_per_account={2: 1.0}, seed=0)
    assert len(acc.first) == 1 and acc.count[0] == 2
    grid = build_grid([path_points(flat, BAR_MS), path_points(crash, BAR_MS)])
    out = run_accounts(acc, account_rows(pops, acc), grid, 10)
    rec = dict(zip(out.x_row.tolist(), zip(out.x_contagion.tolist(), out.x_source.tolist())))
    assert rec == {0: (1, 1), 1: (0, 1)}  # row 0 (symbol 0): contagion from symbol 1; row 1: own market
    assert out.bar_i[0, 5, R.AB_CONTAGION] == 200 * R.USD_SCALE  # 1 x 2 x $100
    assert out.bar_i[1, 5, R.AB_OWN] == 100 * R.USD_SCALE  # 1 x 2 x $50, at bar 5's open
    # deficit: wallet 20 - 50 = -30 at the fills; per bar split by notional (100 : 50) times weight 2
    assert out.acc_deficit[0] == 30.0
    assert out.bar_i[0, 5, R.AB_DEFICIT] == 40 * R.USD_SCALE and out.bar_i[1, 5, R.AB_DEFICIT] == 20 * R.USD_SCALE


def test_assignment_keeps_the_book():
    rng = np.random.default_rng(0)
    pops = [_pop(rng, 500, 100.0), _pop(rng, 300, 10.0)]
    acc = assign_accounts(pops, [3e9, 1e9], positions_per_account={1: 0.5, 2: 0.5}, seed=5)
    cross = np.concatenate([p["margin_mode"] == R.CROSS for p in pops])
    assert ((acc.row_account >= 0) == cross).all()
    assert np.isclose(acc.wallet_usd.sum(), np.concatenate([p["margin"] for p in pops])[cross].sum())
    rows = account_rows(pops, acc)
    for a in range(len(acc.first)):
        m = slice(acc.first[a], acc.first[a] + acc.count[a])
        assert len(set(rows.sym[m].tolist())) == acc.count[a]  # distinct symbols
    assert set(acc.count.tolist()) <= {1, 2}
    again = assign_accounts(pops, [3e9, 1e9], positions_per_account={1: 0.5, 2: 0.5}, seed=5)
    np.testing.assert_array_equal(acc.members, again.members)


def test_collateral_shock_errors():
    with pytest.raises(SimError, match="no zone"):
        parse_collateral_shock("-0.35@2025-10-10T21:00")
    with pytest.raises(SimError, match="cannot read"):
        parse_collateral_shock("minus 35")
    assert parse_collateral_shock("-35%@2025-10-10T21:00Z")[0] == -0.35


def _one(venue, qty, entry, wallet, tier, mmr=None, cum=None):
    """One cross position (SYNTHETIC) of ``venue`` in its own account, on the TIERS table."""
    return {"side": np.array([1], np.int8), "margin_mode": np.array([R.CROSS], np.int8), "entry": np.array([entry]),
            "qty": np.array([qty]), "margin": np.array([wallet]), "mmr": np.array([_MMR[tier] if mmr is None else mmr]),
            "maint_amount": np.array([_CUM[tier] if cum is None else cum]), "weight": np.array([3.0], np.float32),
            "venue": np.array([venue], np.int8), "tier": np.array([tier], np.uint8)}


def _steps(prices_per_bar):
    """SYNTHETIC bars given as (open, first extreme, second extreme, close) path points per bar."""
    p = np.asarray(prices_per_bar, np.float64)
    o, x1, x2, c = p.T
    down = c < o
    hi = np.where(down, x1, x2)
    lo = np.where(down, x2, x1)
    return {"ts": np.arange(len(p), dtype=np.int64) * BAR_MS, "open": o, "high": hi, "low": lo, "close": c}


def _run_one(pop, bars, rules=None):
    acc = assign_accounts([pop], [1.0], positions_per_account={1: 1.0}, seed=0)
    rows = account_rows([pop], acc)
    grid = build_grid([path_points(bars, BAR_MS)])
    rules = rules if rules is not None else liq_rules(grid.px.shape[0], [TIERS])
    out = run_accounts(acc, rows, grid, len(bars["ts"]), rules=rules)
    _assert_same(out, run_accounts(acc, rows, grid, len(bars["ts"]), reference=True, rules=rules))
    return out, grid


def test_bybit_cuts_a_large_position_to_a_lower_tier_and_it_survives():
    """Bybit UTA: 50 x $100 = $5,000 (tier 2). At $95 equity 40 < maintenance 47.5; cutting the
    position to tier 1's cap ($4,000) leaves maintenance 32.5 <= 40: the account survives with the
    rest open. Binance (whole account) liquidates the same account whole."""
    bars = _steps([(100, 100, 100, 100), (95, 95, 95, 95), (95, 95, 95, 95)])
    out, grid = _run_one(_one(R.VENUE_BYBIT, 50.0, 100.0, 290.0, 2), bars)
    assert len(out.x_row) == 1 and grid.ts[out.x_grid[0]] == BAR_MS
    assert out.x_share[0] == pytest.approx((50 - 4000 / 95) / 50)
    assert out.bar_i[0, 1, R.AB_LONG_LIQ] == round((50 - 4000 / 95) * 3 * 95 * R.USD_SCALE)  # qty x share x weight x fill
    assert out.acc_grid[0] == 4 and out.acc_deficit[0] == 0.0
    whole, _ = _run_one(_one(R.VENUE_BINANCE, 50.0, 100.0, 290.0, 2), bars)
    assert len(whole.x_row) == 1 and whole.x_share[0] == 1.0 and whole.x_grid[0] == 4
    # a further fall: tier by tier, then the account goes; the shares sum to 1
    out, _ = _run_one(_one(R.VENUE_BYBIT, 50.0, 100.0, 290.0, 2), _steps([(100, 100, 100, 100), (95, 95, 95, 95), (93, 93, 93, 93)]))
    assert len(out.x_row) >= 2 and out.x_share.sum() == pytest.approx(1.0)


def test_okx_lowers_two_tiers_or_liquidates_below_the_first_tier():
    """OKX: a tier-4 position (index 3, $13,000) is cut two tiers down, to tier 2's cap ($4,000);
    below the first tier's requirement the account goes whole at once."""
    bars = _steps([(100, 100, 100, 100), (98, 98, 98, 98)])
    pop = _one(R.VENUE_OKX, 130.0, 100.0, 0.0, 3)
    mm = lambda n, k: n * _MMR[k] - _CUM[k]  # noqa: E731
    # equity at 98 between the tier-2 cap's requirement and tier 4's at 130 x 98
    eq = 0.5 * (mm(130 * 98, 3) + mm(4000, 1))
    pop["margin"][:] = eq + 130 * 2.0
    assert mm(4000, 1) < eq < mm(130 * 98, 3) and eq > 130 * 98 * _MMR[0]
    out, _ = _run_one(pop, bars)
    assert len(out.x_row) == 1 and out.x_share[0] == pytest.approx((130 - 4000 / 98) / 130)
    pop["margin"][:] = 0.5 * 130 * 98 * _MMR[0] + 130 * 2.0  # below the first tier's requirement: whole
    out, _ = _run_one(pop, bars)
    assert len(out.x_row) == 1 and out.x_share[0] == 1.0


def test_hyperliquid_twenty_percent_then_the_rest_after_the_cooldown():
    """Hyperliquid: $200k > $100k, so 20 % goes at the trigger; within the 30 s cooldown a fall
    below maintenance (not below 2/3 of it) closes nothing; after it the whole rest goes. A fall
    below 2/3 of maintenance during the cooldown is the backstop: the rest goes at once."""
    pop = _one(R.VENUE_HYPERLIQUID, 2000.0, 100.0, 3900.0, 0, mmr=0.01, cum=0.0)
    rules = liq_rules(1, [TIERS])
    # points at 0, 19,999, 39,998, 59,997 ms of each bar; the trigger at bar 1's open (t = 60,000)
    bars = _steps([(100, 100, 100, 100), (99, 98.5, 99, 99), (98.5, 98.5, 98.5, 98.5)])
    out, grid = _run_one(pop, bars, rules)
    assert grid.ts[out.x_grid].tolist() == [60_000, 120_000]
    assert out.x_share.tolist() == pytest.approx([0.2, 0.8])
    assert out.acc_grid[0] == 4
    bars = _steps([(100, 100, 100, 100), (99, 98.3, 99, 99), (99, 99, 99, 99)])
    out, grid = _run_one(pop, bars, rules)
    assert grid.ts[out.x_grid].tolist() == [60_000, 79_999]  # the backstop inside the cooldown
    assert out.x_share.tolist() == pytest.approx([0.2, 0.8])
    small = _one(R.VENUE_HYPERLIQUID, 500.0, 100.0, 975.0, 0, mmr=0.01, cum=0.0)  # $50k: whole at once
    out, _ = _run_one(small, _steps([(100, 100, 100, 100), (99, 99, 99, 99)]), rules)
    assert out.x_share.tolist() == [1.0]


def test_collateral_price_from_a_synthetic_store_liquidates_accounts_on_a_flat_symbol(tmp_path):
    """A SYNTHETIC store holds BTC/USDT:USDT 1m bars falling 40 % over the window; the accounts'
    positions sit on a flat symbol. The collateral path comes from the store (the perpetual as a
    proxy, said in the source), the accounts holding BTC are liquidated by the collateral's fall
    alone, the others are not; a scenario shock applies on top of the stored path."""
    import polars as pl

    from backtest.accounts import check_collateral_asset, collateral_path
    from backtest.store import Store

    n = 60
    t0 = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
    ts = t0 + np.arange(n, dtype=np.int64) * 60_000
    close = 50_000.0 * np.linspace(1.0, 0.6, n)
    open_ = np.r_[close[0], close[:-1]]
    st_ = Store(tmp_path / "st")
    st_.write("ohlcv", pl.DataFrame({"ts": ts, "symbol": "BTC/USDT:USDT", "open": open_, "high": np.maximum(open_, close),
                                     "low": np.minimum(open_, close), "close": close, "volume": np.full(n, 1e3)}),
              exchange="binanceusdm", timeframe="1m")
    (t, p), src = collateral_path("btc", None, int(ts[0]), int(ts[-1]) + 60_000, store=st_, exchange="binanceusdm")
    assert src.startswith("store: binanceusdm BTC/USDT:USDT") and "proxy" in src
    assert p[0] == pytest.approx(50_000.0) and p[-1] == pytest.approx(close[-1])
    (_t, pc), src_c = collateral_path("ETH", None, int(ts[0]), int(ts[-1]) + 60_000, store=st_, exchange="binanceusdm")
    assert src_c.startswith("constant") and (pc == 1.0).all()
    (_t, ps), src_s = collateral_path("BTC", (-0.5, int(ts[30])), int(ts[0]), int(ts[-1]) + 60_000, store=st_, exchange="binanceusdm")
    assert "scenario" in src_s and ps[-1] == pytest.approx(0.5 * close[-1])
    with pytest.raises(SimError, match="unknown collateral_asset 'FOO'; give one of BTC"):
        check_collateral_asset("FOO")

    rng = np.random.default_rng(5)
    flat = {"ts": ts, **{k: np.full(n, 100.0) for k in ("open", "high", "low", "close")}}
    pop = _pop(rng, 300, 100.0, cross_share=1.0)
    pop["entry"][:] = 100.0
    pop["margin"] = pop["entry"] * pop["qty"] / 40.0  # 40x, mmr 2 %: a 40 % fall of the collateral is fatal
    pop["mmr"][:] = 0.02
    pop["maint_amount"][:] = 0.0
    acc = assign_accounts([pop], [1.0], positions_per_account={1: 1.0}, seed=2, collateral_share=0.5, collateral_price0=p[0],
                          collateral_haircut=0.1)
    grid = build_grid([path_points(flat, BAR_MS)], [(t, p)], [0.1])
    rows = account_rows([pop], acc)
    out = run_accounts(acc, rows, grid, n)
    _assert_same(out, run_accounts(acc, rows, grid, n, reference=True))
    held = acc.coll_asset == 1
    assert held.any() and (~held).any()
    assert (out.acc_grid[held] >= 0).all() and (out.acc_grid[~held] == -1).all()
    assert (out.x_contagion == 1).all() and (out.x_source == R.SOURCE_COLLATERAL).all()
