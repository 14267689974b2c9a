"""Accounts: cross margin shared across an event's symbols (issue 12).

The population (:mod:`backtest.population`) builds one symbol's rows at a time; a cross row carries
the collateral its holder keeps behind it (initial margin plus the lognormal excess). Here the
cross rows of all of an event's symbols are grouped into accounts (:func:`assign_accounts`):

- an account holds ``k`` rows on ``k`` distinct symbols, ``k`` drawn from
  :data:`backtest.accounts_params.DEFAULT_POSITIONS_PER_ACCOUNT` (capped by the symbols that still
  have unassigned cross rows); each of its symbols is drawn without replacement with probability
  proportional to the symbol's open-interest share (its population's open notional), among the
  symbols with rows left. When the large symbols' rows run out, the remaining accounts are drawn
  among the rest (so late accounts are mostly single-symbol accounts of the small symbols);
- its wallet balance is the sum of the collateral its rows carry today (``margin``), so sizes,
  leverage and collateral stay those of the book; isolated rows stay isolated (account -1);
- a share ``collateral_share`` of accounts holds its collateral in a non-settlement asset with a
  haircut: the amount is set so that its value after the haircut at the window start equals the
  wallet (:func:`collateral_series` gives the asset's price path: a scenario step, see
  :func:`parse_collateral_shock`).

Weights. A row stands for ``weight`` real positions; an account of rows with different weights is
read as one prototype real account holding one real position of each row (equity, maintenance and
liquidation time are those of that prototype, with unweighted quantities), whose liquidation time
applies to every real position its rows stand for. Notional sums use each row's weight; the
prototype's deficit is split over its rows by notional and weighted by each row's weight.

Cross liquidation per venue (:mod:`backtest.kernels.accounts`): an account is liquidated when its
equity (collateral value + unrealised PnL of all its cross positions, each at its own symbol's
mark, + PnL realised by earlier partial closes) falls below the sum of their maintenance margins
(``margin.position_maint_margin_nb``, the row's tier held until a procedure lowers it). Then each
venue's documented procedure (``records.LiqRules``; ``partial_liquidation=false`` turns them all
into whole-account liquidation):

- Binance USDⓈ-M cross ("Liquidation Protocols", binance.com/en/support/faq/360033525271):
  cross positions under one margin asset share its cross margin balance; Binance uses "Smart
  Liquidation" to avoid full liquidation when possible: it cancels the orders, then tries to reduce
  the margin level with one large Immediate-or-Cancel order and stops once the account is margin
  compliant, else closes the positions at the bankruptcy price (the IOC step as restated by
  docs.traderwagon.com "Liquidation Protocol"); "users who hold relatively smaller positions will
  almost always be fully liquidated". The size
  of that order is not documented: modelled as the whole account at the trigger (as the docs say of
  small holders; a choice for the large ones).
- Bybit Unified Trading Account, cross margin ("Trading Rules: Liquidation Process (Unified Trading
  Account)", bybit.com/en/help-center/article/UTA-Trading-Rules, and "Liquidation Process"
  id=000001098): triggered when the account's maintenance margin rate reaches 100 %; for
  positions above the lowest risk limit it lowers the risk limit (keeping the position), then sends
  a FillOrKill order for the difference between the position value and the lower risk limit that
  meets the margin requirement, and if the position still cannot avoid liquidation it is taken
  over whole (paraphrased). Modelled: one tier step per re-check, the cut to
  the lower tier's cap; which position first is not documented for several: the one with the
  largest maintenance margin (a choice).
- OKX cross ("Tiered maintenance margin ratio rules", okx.com/help/v-tiered-maintenance-margin-ratio-rules,
  and its forced-liquidation pages): liquidation when the margin ratio falls to 100 %; for
  positions at tier 3 or above whose ratio is still above tier 1's requirement, the system
  reduces the position by two tiers and repeats while needed (as restated by mirrors of OKX's
  help pages; paraphrased); below tier 1's requirement (or in
  tier 1-2) the whole position goes. Modelled per account: two tier steps per re-check for
  positions at tier 3+ (0-based index >= 2), largest maintenance margin first (a choice); the
  whole account when its equity is below the maintenance margin at every position's first-tier
  rate. The liquidation fee in OKX's requirement is not added.
- Hyperliquid cross ("Liquidations", hyperliquid.gitbook.io/hyperliquid-docs/trading/liquidations):
  liquidation when account equity < maintenance margin (half the initial margin at max leverage);
  market orders for the full positions; below 2/3 of the maintenance margin the backstop
  (liquidator vault) takes over all cross positions and margin. Partial liquidation: for positions
  above 100k USDC only 20 % is sent at first, then a 30-second cooldown, after which every order
  is for the whole remaining position (the Hyperliquid docs' rule as restated by docs built on it:
  docs.hyena.trade/trading/liquidation, cortex-vigil.com/wiki/liquidations; paraphrased). Modelled as said
  (constants in :mod:`backtest.accounts_params`); the vault's retained maintenance margin is not.
- Gate: not looked up; whole accounts like Binance (a choice).

Tier tables: given per symbol (:func:`liq_rules`) or rebuilt from the rows' ``tier``/``mmr``/
``maint_amount`` (:func:`tiers_from_rows`: every populated tier's rate, floors from the continuity
of the maintenance margin); a tier nobody holds is unknown and never entered (the account goes
whole instead).

Other simplifications: funding during the window is not applied to accounts (the per-symbol
kernel applies it to isolated rows). The engine's own deficits (at the grid point's prices) are
per bar in its outputs; the simulation prices its exits again at the per-symbol kernels' path
points and charges those deficits to the symbol's insurance fund (not handed to ADL), its
clearance fees into it (backtest.contagion.engine_flows). In replay the engine runs on the
observed path; in a cascade on the kernels' simulated path, coupled by a fixed point
(backtest.simulate).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
from numba import njit

from backtest import records as R
from backtest.errors import SimError


# ------------------------------------------------------------------------------------------
# assignment
# ------------------------------------------------------------------------------------------
@njit(cache=True)
def _assign_nb(cross_start, cross_rows, w, kcdf, seed, members, first, count):
    """Group the cross rows (symbol by symbol in ``cross_rows``, symbol ``s`` holding entries
    ``cross_start[s] : cross_start[s + 1]``, in the order they are taken) into accounts; returns
    the number of accounts. ``kcdf[k - 1]``: P(positions <= k)."""
    np.random.seed(seed)
    S = w.shape[0]
    ptr = cross_start[:S].copy()
    chosen = np.zeros(S, np.bool_)
    A = 0
    nm = 0
    K = kcdf.shape[0]
    while True:
        n_avail = 0
        for s in range(S):
            if ptr[s] < cross_start[s + 1]:
                n_avail += 1
        if n_avail == 0:
            break
        u = np.random.random()
        k = K
        for i in range(K):
            if u < kcdf[i]:
                k = i + 1
                break
        if k > n_avail:
            k = n_avail
        first[A] = nm
        for s in range(S):
            chosen[s] = False
        for _ in range(k):
            tot = 0.0
            for s in range(S):
                if ptr[s] < cross_start[s + 1] and not chosen[s]:
                    tot += w[s]
            x = np.random.random() * tot
            pick = -1
            for s in range(S):
                if ptr[s] < cross_start[s + 1] and not chosen[s]:
                    pick = s
                    x -= w[s]
                    if x < 0.0:
                        break
            chosen[pick] = True
            members[nm] = cross_rows[ptr[pick]]
            ptr[pick] += 1
            nm += 1
        count[A] = k
        A += 1
    return A


def positions_cdf(dist: dict) -> np.ndarray:
    """``{k: probability}`` (k = 1, 2, ...) -> cumulative probabilities for k = 1..max(k)."""
    ks = sorted(int(k) for k in dist)
    if not ks or ks[0] < 1:
        raise SimError("positions_per_account needs keys 1, 2, ... (positions per account) with probabilities")
    p = np.zeros(ks[-1])
    for k, v in dist.items():
        p[int(k) - 1] += float(v)
    if abs(p.sum() - 1.0) > 1e-6 or (p < 0).any():
        raise SimError(f"positions_per_account probabilities must be >= 0 and sum to 1, they sum to {p.sum():.6g}")
    c = np.cumsum(p)
    c[-1] = 1.0 + 1e-12
    return c


def assign_accounts(
    pops: Sequence[dict[str, np.ndarray]],
    oi_usd: Sequence[float],
    *,
    positions_per_account: dict,
    seed: int,
    collateral_share: float = 0.0,
    collateral_price0: float = 1.0,
    collateral_haircut: float = 0.0,
    as_of_ms: int | None = None,
) -> R.Accounts:
    """Group the cross rows of an event's per-symbol populations ``pops`` (records' dicts of
    arrays, in symbol order) into accounts (module docstring). With ``as_of_ms`` (the window
    start, UTC ms) only rows open by then and never closed voluntarily (``close_time`` NO_CLOSE)
    join accounts: the account engine holds every member open over the whole window, so rows
    that open or close during it stay positions of their own (the per-symbol kernel). ``oi_usd``: each symbol's open
    interest (USD) weighting which symbols an account holds. A share ``collateral_share`` of the
    accounts (drawn with ``seed``) holds collateral asset 1 (price ``collateral_price0`` USD at
    the window start, haircut ``collateral_haircut``) worth their wallet after the haircut."""
    S = len(pops)
    sizes = np.array([len(p["side"]) for p in pops], np.int64)
    row_offset = np.zeros(S + 1, np.int64)
    row_offset[1:] = np.cumsum(sizes)
    rng = np.random.default_rng([int(seed), 12])
    parts = []
    cross_start = np.zeros(S + 1, np.int64)
    for s, p in enumerate(pops):
        ok = p["margin_mode"] == R.CROSS
        if as_of_ms is not None:
            ok &= p["open_time"] <= as_of_ms
            if "close_time" in p:
                ok &= p["close_time"] == R.NO_CLOSE
        idx = np.flatnonzero(ok).astype(np.int64) + row_offset[s]
        parts.append(idx[rng.permutation(len(idx))])
        cross_start[s + 1] = cross_start[s] + len(idx)
    cross_rows = np.concatenate(parts) if parts else np.empty(0, np.int64)
    w = np.asarray(oi_usd, np.float64).copy()
    w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
    w = w / w.sum() if w.sum() > 0 else np.ones(S) / max(S, 1)
    w = np.maximum(w, 1e-12)  # a symbol without open interest still gets its rows assigned
    m = len(cross_rows)
    members = np.empty(m, np.int64)
    first = np.empty(m, np.int64)
    count = np.empty(m, np.int32)
    A = int(_assign_nb(cross_start, cross_rows, w, positions_cdf(positions_per_account), int(seed) % (2**32), members, first, count))
    first, count = first[:A].copy(), count[:A].copy()
    n = int(row_offset[-1])
    row_account = np.full(n, R.NO_ACCOUNT, np.int32)
    acc_of_member = np.repeat(np.arange(A, dtype=np.int32), count)
    row_account[members] = acc_of_member
    margin = np.concatenate([p["margin"] for p in pops]) if S else np.empty(0)
    wallet = np.bincount(acc_of_member, weights=margin[members], minlength=A).astype(np.float64) if A else np.empty(0)
    coll_asset = np.zeros(A, np.int16)
    coll_amount = wallet.copy()
    if collateral_share > 0 and A:
        pick = rng.random(A) < float(collateral_share)
        coll_asset[pick] = 1
        coll_amount[pick] = wallet[pick] / (float(collateral_price0) * (1.0 - float(collateral_haircut)))
    return R.Accounts(row_account, row_offset, first, count, members, wallet, coll_asset, coll_amount, count.astype(np.int8))


def account_rows(pops: Sequence[dict[str, np.ndarray]], acc: R.Accounts) -> R.AccountRows:
    """The account kernel's per-row arrays (records.AccountRows) of the concatenated populations,
    in ``acc``'s member order (an account's rows contiguous: the kernel reads them in sequence)."""
    m = acc.members
    cat = lambda k: np.ascontiguousarray(np.concatenate([p[k] for p in pops])[m]) if pops else np.empty(0)  # noqa: E731
    sym = np.concatenate([np.full(len(p["side"]), s, np.int16) for s, p in enumerate(pops)])[m] if pops else np.empty(0, np.int16)
    # a population without venue / tier fields (hand-made test books): Binance rules, tier 0 (said here, not market data)
    opt = lambda k, dt, v: (np.ascontiguousarray(np.concatenate([p[k] if k in p else np.full(len(p["side"]), v, dt)  # noqa: E731
                                                                 for p in pops]).astype(dt)[m]) if pops else np.empty(0, dt))
    return R.AccountRows(sym, cat("side"), cat("entry"), cat("qty"), cat("mmr"), cat("maint_amount"), cat("weight"),
                         opt("venue", np.int8, R.VENUE_BINANCE), opt("tier", np.uint8, 0))


def subset_accounts(acc: R.Accounts, keep: np.ndarray, rows: R.AccountRows | None = None):
    """The accounts ``keep`` (bool per account) of ``acc``, renumbered (rows of the others become
    -1); with ``rows`` (member order), also the subset's rows: ``(accounts, rows)``."""
    ids = np.flatnonzero(keep)
    new_id = np.full(len(acc.first), -1, np.int32)
    new_id[ids] = np.arange(len(ids), dtype=np.int32)
    count = acc.count[ids].copy()
    first = np.zeros(len(ids), np.int64)
    if len(ids):
        first[1:] = np.cumsum(count[:-1].astype(np.int64))
    slots = np.repeat(acc.first[ids], count) + (np.arange(int(count.sum())) - np.repeat(first, count))
    members = acc.members[slots]
    if len(new_id):
        row_account = np.where(acc.row_account >= 0, new_id[np.maximum(acc.row_account, 0)], -1).astype(np.int32)
    else:  # no account at all (every row isolated)
        row_account = np.full(len(acc.row_account), R.NO_ACCOUNT, np.int32)
    sub = R.Accounts(row_account, acc.row_offset, first, count, members, acc.wallet_usd[ids].copy(), acc.coll_asset[ids].copy(),
                     acc.coll_amount[ids].copy(), acc.n_symbols[ids].copy())
    if rows is None:
        return sub
    return sub, R.AccountRows(*(np.ascontiguousarray(a[slots]) for a in rows))


# ------------------------------------------------------------------------------------------
# the common grid
# ------------------------------------------------------------------------------------------
#: grid points per block of the fast kernel's tables (records.GridPaths; speed only)
BLOCK = 64
#: grid points per sub-block of the fast kernel's tables (records.GridPaths.fine; divides BLOCK)
FINE_BLOCK = 8


def path_points(bars: dict[str, np.ndarray], bar_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A symbol's path points as ``simulate_nb`` walks them: per bar open, then high and low (high
    first in a bar closing below its open, else low first), close, at ``ts + k * (bar_ms - 1) // 3``
    (k = 0..3). Returns ``(times UTC ms, prices, bar index)``."""
    ts = np.asarray(bars["ts"], np.int64)
    op, hi, lo, cl = (np.asarray(bars[k], np.float64) for k in ("open", "high", "low", "close"))
    down = cl < op
    px = np.stack([op, np.where(down, hi, lo), np.where(down, lo, hi), cl], axis=1).ravel()
    t = (ts[:, None] + (np.arange(4)[None, :] * (int(bar_ms) - 1)) // 3).ravel()
    b = np.repeat(np.arange(len(ts), dtype=np.int32), 4)
    return t, px, b


def build_grid(points: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], collateral: Sequence[tuple[np.ndarray, np.ndarray]] = (),
               haircuts: Sequence[float] = ()) -> R.GridPaths:
    """The common grid (records.GridPaths) of symbols given as ``(times, prices, bar)`` path
    points (:func:`path_points`; times ascending) and collateral assets 1, 2, ... given as
    ``(times, prices)`` step paths (price from each time on; before the first, the first) with
    their ``haircuts``. The grid is the union of the symbols' point times; each series holds its
    last own point's price, and the fast kernel's tables of block maxima and minima."""
    ts = np.unique(np.concatenate([p[0] for p in points])) if points else np.empty(0, np.int64)
    T = len(ts)
    series = [*points, *[(c[0], c[1], np.zeros(len(c[0]), np.int32)) for c in collateral]]
    S = len(series)
    px = np.empty((S, T))
    bar = np.empty((S, T), np.int32)
    for s, (t, p, b) in enumerate(series):
        t = np.asarray(t, np.int64)
        j = np.searchsorted(t, ts, side="right") - 1
        j = np.maximum(j, 0)
        px[s] = np.asarray(p, np.float64)[j]
        bar[s] = np.asarray(b, np.int32)[j]
    B, F = BLOCK, FINE_BLOCK
    assert B % F == 0, (B, F)
    NB = -(-T // B)
    LB = max(int(NB).bit_length(), 1)
    suf = np.empty((NB + 1, 2, S))
    pre = np.empty((NB, 2, S))
    blk = np.empty((NB, LB, 2, S))
    fine = np.empty((-(-T // F), 2, S))
    if T:
        from backtest.kernels.accounts import sparse_tables_nb

        sparse_tables_nb(px, B, F, suf, pre, blk, fine)
    coll_series = np.array([-1, *range(len(points), S)], np.int64)
    haircut = np.array([0.0, *[float(h) for h in haircuts]], np.float64)
    return R.GridPaths(ts, px, bar, suf, blk, B, coll_series, haircut, len(points), fine, F, pre)


# ------------------------------------------------------------------------------------------
# collateral scenarios
# ------------------------------------------------------------------------------------------
_SHOCK_RE = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*(%?)\s*@\s*(\S+)\s*$")


def parse_collateral_shock(text: str) -> tuple[float, int]:
    """``"-0.35@2025-10-10T21:00Z"`` (a fraction) or ``"-35%@2025-10-10T21:00Z"`` -> (-0.35, UTC ms):
    the collateral asset's price falls by that share at that time (a step)."""
    from backtest.store import to_ms

    m = _SHOCK_RE.match(str(text or ""))
    if not m:
        raise SimError(f"cannot read collateral_shock {text!r}; give e.g. --set collateral_shock=-0.35@2025-10-10T21:00Z")
    v = float(m.group(1)) / (100.0 if m.group(2) else 1.0)
    if not -0.99 <= v <= 10.0 or v == 0.0:
        raise SimError(f"collateral_shock {text!r} is out of range; give a move between -0.99 and +10 (a fraction), not 0")
    when = m.group(3)
    if not (when.endswith("Z") or "+" in when[10:]):
        raise SimError(f"time of collateral_shock {when!r} has no zone; add Z for UTC: collateral_shock={m.group(1)}{m.group(2)}@{when}Z")
    try:
        return v, to_ms(when.replace("Z", "+00:00") if when.endswith("Z") else when)
    except Exception:
        raise SimError(f"cannot read the time of collateral_shock {text!r}; give ISO-8601 UTC, e.g. -0.35@2025-10-10T21:00Z") from None


def check_collateral_asset(asset: Any) -> str:
    """The collateral asset's code (upper case), or a SimError naming the known ones."""
    from backtest.accounts_params import COLLATERAL_ASSETS

    name = str(asset or "").strip().upper()
    if name not in COLLATERAL_ASSETS:
        raise SimError(f"unknown collateral_asset {asset!r}; give one of {', '.join(COLLATERAL_ASSETS)} (e.g. --set collateral_asset=BTC)")
    return name


def collateral_path(asset: str, shock: tuple[float, int] | None, start_ms: int, end_ms: int | None = None, *,
                    markets: dict[str, Any] | None = None, store: Any = None, exchange: str | None = None,
                    ) -> tuple[tuple[np.ndarray, np.ndarray], str]:
    """The collateral asset's price path (USD per unit, ``(times UTC ms, prices)`` step path for
    :func:`build_grid`) and where it came from.

    1. the event's own ``ASSET/USDT:USDT`` market (``markets``, already read from the store: the
       primary venue's mark or last bars), its path points (:func:`path_points`);
    2. else the store's bars of that perpetual on ``exchange`` (``store``, ``end_ms`` given);
    3. else a constant price 1 (the value is then the scenario's alone).

    A perpetual's price stands in for the spot asset (a proxy, said in the source). The scenario
    ``shock`` applies on top: the price times ``1 + shock`` from the shock's time on."""
    asset = check_collateral_asset(asset)
    sym = f"{asset}/USDT:USDT"
    mk = (markets or {}).get(sym)
    source = ""
    if mk is None and store is not None and exchange and end_ms is not None:
        from backtest.market import load_market

        try:
            mk = load_market(store, exchange, sym, int(start_ms), int(end_ms), int(start_ms))
        except Exception:  # noqa: BLE001 - no stored series for the asset: the constant path below
            mk = None
        if mk is not None and not len(mk.bars["ts"]):
            mk = None
    if mk is not None:
        t, p, _b = path_points(mk.bars, mk.bar_ms)
        where = exchange if exchange else "the event's primary venue"
        source = f"store: {where} {sym} {mk.price_source} price ({mk.timeframe} bars), the perpetual as a proxy for spot {asset}"
        t, p = np.asarray(t, np.int64), np.asarray(p, np.float64).copy()
    else:
        t, p = np.array([int(start_ms)], np.int64), np.array([1.0])
        source = f"constant: no store series for {sym} (the collateral's value moves by the scenario only)"
    if shock is not None:
        v, ts = shock
        if ts > t[-1]:
            t, p = np.append(t, ts), np.append(p, p[-1])
        elif ts < t[0]:
            t, p = np.insert(t, 0, ts), np.insert(p, 0, p[0])
        elif not (t == ts).any():
            k = int(np.searchsorted(t, ts))
            t, p = np.insert(t, k, ts), np.insert(p, k, p[k - 1])
        p[t >= ts] *= 1.0 + v
        source += f"; scenario collateral_shock {v:+.0%} from {ts} ms on"
    return (t, p), source


def collateral_series(shock: tuple[float, int] | None, start_ms: int, price0: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Step price path of the collateral asset (USD per unit): ``price0`` from ``start_ms``, times
    ``1 + shock`` from the shock's time on (scenario, not market data)."""
    if shock is None:
        return np.array([start_ms], np.int64), np.array([price0])
    v, t = shock
    return np.array([min(start_ms, t - 1), t], np.int64), np.array([price0, price0 * (1.0 + v)])


# ------------------------------------------------------------------------------------------
# venue rules
# ------------------------------------------------------------------------------------------
def tiers_from_rows(pops: Sequence[dict[str, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per symbol, ``(floor, mmr, cum)`` of tiers 0..K-1 as the rows carry them (``tier``, ``mmr``,
    ``maint_amount``), NaN where no row is in a tier. The floor of tier ``k`` comes from the
    continuity of ``notional x mmr - cum`` at it (:func:`backtest.margin.tier_arrays` derives
    ``cum`` that way, Binance publishes it that way): ``(cum_k - cum_{k-1}) / (mmr_k - mmr_{k-1})``,
    NaN when tier ``k - 1`` is unknown or both rates are equal. For a run without the tier tables
    (:func:`liq_rules` takes them when given)."""
    out = []
    for p in pops:
        tier = np.asarray(p["tier"], np.int64) if "tier" in p else np.zeros(len(p["side"]), np.int64)
        K = int(tier.max()) + 1 if len(tier) else 1
        mmr = np.full(K, np.nan)
        cum = np.full(K, np.nan)
        # one row per tier (the last one in row order: every row of a tier carries its tier's rate)
        mmr[tier] = np.asarray(p["mmr"], np.float64)
        cum[tier] = np.asarray(p["maint_amount"], np.float64)
        floor = np.full(K, np.nan)
        floor[0] = 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            f = (cum[1:] - cum[:-1]) / (mmr[1:] - mmr[:-1])
        floor[1:] = np.where(np.isfinite(f) & (f > 0), f, np.nan)
        out.append((floor, mmr, cum))
    return out


def liq_rules(n_series: int, tiers: Sequence[tuple] | None = None, *, partial: bool = True) -> R.LiqRules:
    """The venue rules of a run (records.LiqRules): the symbols' tier tables, given per symbol
    either as :func:`backtest.margin.tier_arrays` output ``(floor, cap, mmr, cum, lev)`` or as
    ``(floor, mmr, cum)`` (:func:`tiers_from_rows`), padded to ``n_series`` rows (collateral series
    have none); Hyperliquid's partial-liquidation constants from :mod:`backtest.accounts_params`."""
    from backtest import accounts_params as AP

    tiers = list(tiers or [])
    K = max([len(t[0]) for t in tiers] + [1])
    fl, mr, cu = (np.full((max(n_series, 1), K), np.nan) for _ in range(3))
    for s, t in enumerate(tiers):
        floor, mmr, cum = (t[0], t[2], t[3]) if len(t) == 5 else t
        n = len(floor)
        fl[s, :n], mr[s, :n], cu[s, :n] = floor, mmr, cum
    return R.LiqRules(fl, mr, cu, bool(partial), float(AP.HL_PARTIAL_USD), float(AP.HL_PARTIAL_SHARE), int(AP.HL_COOLDOWN_MS),
                      float(AP.HL_BACKSTOP))


def exit_capacity(acc: R.Accounts, rows: R.AccountRows, rules: R.LiqRules) -> int:
    """Exit records a run can write at most: one per row whose account goes whole; up to its tier
    + 2 for a Bybit / OKX row (one cut per tier step, the last close), 2 for a Hyperliquid row;
    plus the largest account (the kernel writes a step's flags ahead of its exits)."""
    slack = int(acc.count.max()) if len(acc.count) else 0
    if not rules.partial or not len(rows.venue):
        return len(acc.members) + slack
    v = rows.venue
    stepped = (v == R.VENUE_BYBIT) | (v == R.VENUE_OKX)
    # 1 per row, + (tier + 1) per Bybit / OKX row, + 1 per Hyperliquid row
    extra = int(rows.tier[stepped].sum(dtype=np.int64)) + int(np.count_nonzero(stepped)) if stepped.any() else 0
    return len(v) + extra + int(np.count_nonzero(v == R.VENUE_HYPERLIQUID)) + slack


# ------------------------------------------------------------------------------------------
# running
# ------------------------------------------------------------------------------------------
def wake_index(acc: R.Accounts, n_series: int, n_points: int, pool_factor: float = 2.0, width: float = R.WAKE_LOG_WIDTH,
               buckets: int = R.WAKE_BUCKETS) -> R.WakeIndex:
    """Empty scratch of the time-major engine (records.WakeIndex; filled by
    :func:`backtest.kernels.account_steps.step_init_nb`); its entry pool holds ``pool_factor``
    times an entry per row and per account (full, it is rebuilt from the accounts' anchors);
    ``buckets`` wake buckets of ``width`` of log price per series and direction (the tests use
    coarse ones, where a bucket's edges matter)."""
    m, A = len(acc.members), len(acc.first)
    cap = max(int(pool_factor * (m + A)), m + A + 1)
    k = (int(acc.count.max()) if A else 0) + 1
    return R.WakeIndex(np.empty((n_series, 2, int(buckets)), np.int32), np.empty((cap, 3), np.int32), np.empty((A, 4)),
                       np.empty(n_series), np.empty(n_series, np.int64), np.empty(A, np.int64), np.empty(A, np.int64),
                       np.empty(A, np.int64), np.empty(A, np.int64), np.zeros(R.WC_SIZE, np.int64),
                       np.empty((n_points // R.WAKE_EPOCH + 1, n_series)), np.empty(n_series), np.empty(n_series),
                       np.empty(A, np.int64), np.array([1.0 / float(width)]), np.empty((k, 3), np.int64), np.empty(k, np.int64), np.empty(k),
                       np.empty(k), np.empty(k, np.int8))


def run_accounts(acc: R.Accounts, rows: R.AccountRows, grid: R.GridPaths, nbars: int, *, reference: bool = False,
                 rules: R.LiqRules | None = None, stepped: bool = False) -> R.AccountOutputs:
    """Run the account engine (:func:`backtest.kernels.accounts.run_accounts_nb`); ``nbars``: the
    largest bar count of the symbols (per-bar sums ``bar_i[s, bar, AB_*]``); ``rules``: the venue
    procedures (:func:`liq_rules`; default: on, tier tables from the rows, :func:`tiers_from_rows`
    is not needed there - without tables a Bybit / OKX account cannot lower a tier and goes whole).
    ``stepped``: the time-major engine (:mod:`backtest.kernels.account_steps`, every account
    advanced point by point), the same outputs."""
    from backtest.kernels.accounts import run_accounts_nb

    if rules is None:
        rules = liq_rules(grid.px.shape[0])
    m = len(acc.members)
    A = len(acc.first)
    cap = exit_capacity(acc, rows, rules)
    xs = (np.empty(cap, np.int64), np.empty(cap, np.int32), np.empty(cap), np.empty(cap, np.int8), np.empty(cap, np.int16), np.empty(cap))
    if stepped:
        from backtest.kernels.account_steps import run_steps_nb

        st = R.AccountState(np.empty((m, 8)), np.empty((A, 8)))
        acc_grid, acc_def = np.empty(A, np.int32), np.empty(A)
        bar_i = np.empty((grid.px.shape[0], max(int(nbars), 1), R.AB_SIZE), np.int64)
        nx, checks = run_steps_nb(acc, rows, grid, rules, st, wake_index(acc, grid.px.shape[0], len(grid.ts)), xs, acc_grid, acc_def, bar_i,
                                  np.empty(max(grid.n_symbols, 1)))
        return _canonical(xs, nx, acc, acc_grid, acc_def, bar_i, checks)
    if reference:  # every account at once
        st = R.AccountState(np.empty((m, 8)), np.empty((A, 8)))
    else:  # one account at a time
        st = R.AccountState(np.empty((int(acc.count.max()) if A else 1, 8)), np.empty((1, 8)))
    acc_grid = np.empty(A, np.int32)
    acc_def = np.empty(A)
    bar_i = np.empty((grid.px.shape[0], max(int(nbars), 1), R.AB_SIZE), np.int64)
    k = (int(acc.count.max()) if A else 0) + 1
    work = R.AccountWork(np.empty(max(grid.n_symbols, 1)), np.empty(A if reference else 0, np.bool_), np.empty(k, np.int64),
                         np.empty(k), np.empty(k), np.empty(k, np.int8))
    nx, checks = run_accounts_nb(acc, rows, grid, rules, st, int(nbars), bool(reference), xs, acc_grid, acc_def, bar_i, work)
    return _canonical(xs, nx, acc, acc_grid, acc_def, bar_i, checks)


def _canonical(xs: tuple, nx: int, acc: R.Accounts, acc_grid: np.ndarray, acc_def: np.ndarray, bar_i: np.ndarray,
               checks: int) -> R.AccountOutputs:
    """The engine's outputs with the records in one canonical order (grid point, then row; a
    row's exits at one point in procedure order: the sort is stable), whatever order the kernel
    visited the accounts in: sums over them then do not depend on the mode (the reference writes
    them grid point by grid point, the fast kernel account by account, the time-major one in wake
    order; one stable sort on grid x rows + row)."""
    x_row, x_grid = xs[0][:nx], xs[1][:nx]
    n_rows = int(acc.row_offset[-1]) + 1 if len(acc.row_offset) else 1
    o = np.argsort(x_grid.astype(np.int64) * n_rows + x_row, kind="stable") if n_rows < 2**31 else np.lexsort((x_row, x_grid))
    return R.AccountOutputs(*(x[:nx][o] for x in xs), acc_grid, acc_def, bar_i, int(checks))
