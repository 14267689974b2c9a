"""Record dtypes, enums and kernel contracts: the one place where array layouts and codes are defined.

Everything that crosses the boundary between the polars-facing Python API and the numba
kernels is described here: the population's struct of arrays, the market arrays, the integer
codes used for sides, venues, margin modes and event kinds, and the kernel contracts - named
tuples of arrays and scalars that numba compiles to structs (``typing.NamedTuple``; defined in
this importable module so numba's on-disk cache finds them):

- inputs: :class:`Book` (the population arrays the kernel reads), :class:`MarketPath` (the bars),
  :class:`KernelParams` (the scalars of one run), :class:`TriggerLists` (the fast kernel's sorted
  lists and their per-entry payload, :mod:`backtest.kernels.sorting`);
- :class:`Workspace`: the output and scratch arrays a run writes into (reusable run after run);
- :class:`RunOutputs`: what a run returns - exit records in time order and per-bar / run sums;
- :class:`ListState`: the pointer state of the trigger lists inside one run (kernel-internal).

Each is built in one place, :mod:`backtest.engine` (``ListState``: in the kernel).

Units and signs (used everywhere in the package):
- prices in quote currency (USDT for linear contracts, USD for inverse ones);
- quantities in base units for linear contracts, in contracts for inverse ones;
- notional in USD;
- times as UTC milliseconds since the epoch (int64), or polars ``Datetime("ms", "UTC")``;
- side: +1 long, -1 short.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# --- sides -------------------------------------------------------------------------------
LONG: int = 1
SHORT: int = -1

# --- margin modes ------------------------------------------------------------------------
ISOLATED: int = 0
CROSS: int = 1
MARGIN_MODES = {"isolated": ISOLATED, "cross": CROSS}

# --- contract kinds ----------------------------------------------------------------------
LINEAR: int = 0
INVERSE: int = 1
CONTRACTS = {"linear": LINEAR, "inverse": INVERSE}

# --- venues (margin rule families) -------------------------------------------------------
VENUE_BINANCE: int = 0
VENUE_BYBIT: int = 1
VENUE_OKX: int = 2
VENUE_GATE: int = 3
VENUE_HYPERLIQUID: int = 4
VENUES = {
    "binance": VENUE_BINANCE,
    "bybit": VENUE_BYBIT,
    "okx": VENUE_OKX,
    "gate": VENUE_GATE,
    "hyperliquid": VENUE_HYPERLIQUID,
}
VENUE_NAMES = {v: k for k, v in VENUES.items()}

# --- how a position left the book (per-position outcome codes) ---------------------------
EXIT_NONE: int = 0  # still open at the end of the run
EXIT_LIQUIDATED: int = 1  # forced close by the liquidation engine
EXIT_STOPPED: int = 2  # its stop-loss fired (market order)
EXIT_ADL: int = 3  # closed by auto-deleveraging
EXIT_NAMES = {EXIT_NONE: "open", EXIT_LIQUIDATED: "liquidated", EXIT_STOPPED: "stopped", EXIT_ADL: "adl"}

# --- price source flags ------------------------------------------------------------------
PRICE_MARK: int = 0  # the path is the exchange's mark price
PRICE_LAST: int = 1  # no mark data: last traded price stands in (flagged in outputs)

#: ``close_time`` of a position with no voluntary close (INT64 max)
NO_CLOSE: int = int(np.iinfo(np.int64).max)

# --- population: struct of arrays --------------------------------------------------------
# One row per position. Field -> NumPy dtype. ``notional`` (USD at entry) is not stored: it is
# ``entry * qty`` for linear contracts and ``qty * contract_size`` for inverse ones.
# Bytes per position: 84 (target <= 100).
POPULATION_FIELDS: dict[str, np.dtype] = {
    "side": np.dtype(np.int8),  # +1 long, -1 short
    "margin_mode": np.dtype(np.int8),  # ISOLATED or CROSS
    "venue": np.dtype(np.int8),  # VENUE_* code: which margin rule applies
    "tier": np.dtype(np.uint8),  # maintenance tier index (0-based) at the liquidation notional
    "entry": np.dtype(np.float64),  # entry price, quote currency
    "qty": np.dtype(np.float64),  # size, base units (linear) or contracts (inverse), > 0
    "margin": np.dtype(np.float64),  # isolated margin, or cross collateral allotted, USD
    "mmr": np.dtype(np.float64),  # maintenance margin rate of its tier (fraction)
    "maint_amount": np.dtype(np.float64),  # maintenance amount ("cum"), USD
    "open_time": np.dtype(np.int64),  # UTC ms when the position opened
    "close_time": np.dtype(np.int64),  # UTC ms of its voluntary close (in-window flow), NO_CLOSE for none
    "stop_price": np.dtype(np.float64),  # stop-loss trigger price, NaN for none
    "liq_price": np.dtype(np.float64),  # liquidation price at open (before funding), quote ccy
    "leverage": np.dtype(np.float32),  # initial leverage (notional / margin)
    "weight": np.dtype(np.float32),  # how many real positions this row stands for (>= 0)
}

POPULATION_BYTES_PER_ROW: int = sum(dt.itemsize for dt in POPULATION_FIELDS.values())

# --- market arrays handed to kernels -----------------------------------------------------
# One row per bar, contiguous, sorted by time, no duplicates.
BAR_FIELDS: dict[str, np.dtype] = {
    "ts": np.dtype(np.int64),  # bar open time, UTC ms
    "open": np.dtype(np.float64),
    "high": np.dtype(np.float64),
    "low": np.dtype(np.float64),
    "close": np.dtype(np.float64),
    "volume_usd": np.dtype(np.float64),  # traded notional in the bar, USD (0 where unknown)
    "funding_rate": np.dtype(np.float64),  # rate settled at this bar's open time, 0 otherwise
}


def empty_population(n: int) -> dict[str, np.ndarray]:
    """Allocate a population of ``n`` rows (uninitialised values) with the canonical dtypes."""
    return {name: np.empty(n, dtype=dt) for name, dt in POPULATION_FIELDS.items()}


def check_population(pop: dict[str, np.ndarray]) -> None:
    """Raise ``ValueError`` unless ``pop`` has every field, the right dtypes and equal lengths."""
    missing = [k for k in POPULATION_FIELDS if k not in pop]
    if missing:
        raise ValueError(f"population is missing fields {missing}; build it with backtest.population")
    n = len(pop["side"])
    for name, dt in POPULATION_FIELDS.items():
        arr = pop[name]
        if arr.dtype != dt:
            raise ValueError(f"population field {name!r} has dtype {arr.dtype}, expected {dt}")
        if len(arr) != n:
            raise ValueError(f"population field {name!r} has {len(arr)} rows, expected {n}")

# --- kernel outputs (backtest.kernels.cascade) -------------------------------------------
#: fixed-point unit of every USD amount the kernels accumulate (1e-4 USD): integer sums do not
#: depend on summation order, so the fast and the reference kernel agree bit for bit.
USD_SCALE: float = 1e4


def usd_units(x):
    """USD -> fixed-point units of USD_SCALE, round half up, per element (int64; what the kernels'
    ``_u`` gives for one value)."""
    return np.floor(np.asarray(x, np.float64) * USD_SCALE + 0.5).astype(np.int64)

#: impact model codes
IMPACT_NONE: int = 0
IMPACT_SQRT: int = 1
IMPACT_LINEAR: int = 2
IMPACT_MODELS = {"none": IMPACT_NONE, "sqrt": IMPACT_SQRT, "linear": IMPACT_LINEAR}
#: Absolute cap on the impact of forced orders, as a fraction of the price: at one path point a
#: forced flow moves the price by at most the distance at which the book of the side it walks
#: holds that flow (:func:`backtest.kernels.cascade._book_reach`, extrapolated beyond the last
#: stored level by the rule of :mod:`backtest.book`), and never by more than this; the endogenous
#: offset of the path stays within ``[log(1 - MAX_BOOK_MOVE), log(1 + MAX_BOOK_MOVE)]`` too (the
#: simulated price within half and one and a half times the observed one). Replaces the former
#: ``MAX_IMPACT_LOG = 10`` (a factor of 22,000). A modelling bound, not a measured quantity.
MAX_BOOK_MOVE: float = 0.5

#: trigger-list kinds
LIST_LIQ: int = 0
LIST_STOP: int = 1

#: per-bar integer accumulators (units of 1/USD_SCALE USD, or of 1/USD_SCALE positions)
BI_LONG_LIQ = 0
BI_SHORT_LIQ = 1
BI_LONG_LIQ_W = 2  # weighted count (real positions) x USD_SCALE
BI_SHORT_LIQ_W = 3
BI_LONG_STOP = 4
BI_SHORT_STOP = 5
BI_ADL = 6  # notional of the opposite positions ADL closed (at the bar's last price)
BI_FUND = 7  # insurance fund at the bar's end
BI_DEFICIT = 8  # liquidation/stop losses beyond bankruptcy in the bar that the fund paid
BI_UNCOVERED = 9  # deficits the fund could not cover at the rounds' first fills (their share went to ADL)
BI_ROUNDS = 10  # deepest cascade in the bar (rounds after the first)
BI_FUND_IN = 11  # clearance fees paid into the fund
BI_TAKER = 12  # taker fees on stop fills
BI_LONG_ROWS = 13  # rows (not weighted) liquidated
BI_SHORT_ROWS = 14
BI_AT_MAX_ROUNDS = 15  # path points whose cascade was cut by max_rounds (last round still moved the price)
BI_ADL_TAKEN = 16  # notional ADL took over from bankrupt positions, at their bankruptcy prices
BI_ADL_RANKS = 17  # quintiles of the ADL ranking the bar's ADL closes reached (0 none, 1 top fifth only .. 5); not scaled
BI_SIZE = 18

#: per-bar float outputs
BF_OPEN = 0  # simulated path (exogenous x endogenous impact)
BF_HIGH = 1
BF_LOW = 2
BF_CLOSE = 3
BF_ENDO_MIN = 4  # most negative endogenous log move in the bar
BF_ENDO_MAX = 5
BF_SIZE = 6

#: path points per bar (open, then high and low in the order of DESIGN §7, close)
PATH_POINTS = 4
#: per path point float outputs (RunOutputs.bar_pt[j, k, PT_*])
PT_PRICE = 0  # simulated price after every round of the point, quote currency
PT_HIT = 1  # the price its round 0 saw (before the point's own impact), quote currency
PT_FAC = 2  # round 0's impact factor (1.0: no flow): round-0 forced sells fill at PT_HIT x PT_FAC when < 1, buys when > 1
PT_SIZE = 3

#: run statistics (float64)
ST_DD_EXO = 0
ST_DD_SIM = 1
ST_MAX_DEPTH = 2
ST_FUND_MIN = 3  # USD
ST_ADL_SHORTFALL = 4  # taken-over notional ADL could not close (no opposite positions left), USD at the bar's last price
ST_FUNDING_INDEX = 5  # cumulative funding index at the end (quote per unit)
ST_BARS_AT_MAX_ROUNDS = 6  # bars with a cascade cut by max_rounds (depth truncated there)
ST_SIZE = 7


# --- kernel contracts (built in backtest.engine) -----------------------------------------
class Book(NamedTuple):
    """The population arrays the kernel reads, one row per position (:data:`POPULATION_FIELDS`)."""

    side: np.ndarray  # int8: +1 long, -1 short
    venue: np.ndarray  # int8: VENUE_* code (ADL ranking rule)
    entry: np.ndarray  # float64: entry price, quote currency
    qty: np.ndarray  # float64: base units (> 0)
    margin: np.ndarray  # float64: isolated margin or allotted cross collateral, USD
    mmr: np.ndarray  # float64: maintenance margin rate of its tier (fraction)
    liq: np.ndarray  # float64: liquidation price before funding, quote currency
    stop: np.ndarray  # float64: stop-loss trigger price, NaN for none
    weight: np.ndarray  # float32: real positions this row stands for (>= 0)
    open_time: np.ndarray  # int64: UTC ms; the position can trigger at path times t >= open_time
    close_time: np.ndarray  # int64: UTC ms of its voluntary close (NO_CLOSE: none); triggers only at t < close_time


class MarketPath(NamedTuple):
    """One symbol's bars (:data:`BAR_FIELDS`): contiguous, sorted by time, no duplicates."""

    ts: np.ndarray  # int64: bar open time, UTC ms
    open: np.ndarray  # float64: quote currency
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    funding: np.ndarray  # float64: funding rate settled at the bar's open (0 otherwise)
    #: external forced flow per path point (bar j, point k = 0 open .. 3 close, in the kernel's
    #: walking order; float64[nbars, PATH_POINTS]): the account engine's liquidations (issue 12;
    #: backtest.contagion.engine_flows). Zeros (engine.make_market_path's default) give the
    #: kernel's results without it, bit for bit.
    ext_flow: np.ndarray  # signed USD at the point's round-0 price (+ buys, - sells): enters the point's round-0 cumulative flow
    ext_fund: np.ndarray  # USD >= 0: deficits drawn from the fund at the point (BI_DEFICIT; what it cannot cover: BI_UNCOVERED)
    ext_fee: np.ndarray  # USD >= 0: clearance fees paid into the fund at the point (BI_FUND_IN)


class KernelParams(NamedTuple):
    """The scalars of one run (built by :func:`backtest.engine.make_kernel_params`)."""

    impact_model: int  # IMPACT_* code
    impact_coef: float  # Y of the square-root law
    sigma: float  # daily volatility of log returns (fraction)
    volume_usd: float  # effective daily volume, USD (already times depth and liquidity multipliers)
    depth_usd: float  # effective notional within 1 % of mid, USD (already times the multipliers)
    half_life_s: float  # transient impact half-life, seconds (inf = permanent)
    fund_usd: float  # insurance fund at start, USD
    clearance_rate: float  # clearance fee rate on liquidated notional (capped at the remaining margin)
    taker_rate: float  # taker fee rate on stop fills
    max_rounds: int  # cascade rounds per path point, at most (0: round 0 only)
    dd_bar: int  # drawdowns (amplification) are measured from this bar on
    dd_ref: float  # reference price for the drawdowns (0 = the open of bar dd_bar), quote currency
    dd_dir: int  # -1 drawdown (down moves), +1 draw-up
    bar_ms: int  # bar length, ms
    no_feedback: bool  # replay: fills pay their round's impact, the path is not moved (one round)


class TriggerLists(NamedTuple):
    """Positions ordered by trigger level, list by list, bucket by bucket (:mod:`backtest.kernels.sorting`).

    Entries (one per position and list it belongs to; ``m`` of them): ``order`` and ``key`` hold
    the position and its key (``-level`` for longs, ``+level`` for shorts: keys ascend in trigger
    order); ``key`` and the payload (``qw``, ``weight``, ``bankruptcy``, ``stop``) are filled when
    the kernel first enters a bucket. Lists (one row per list, ``L`` of them): ``kind``
    (LIST_LIQ / LIST_STOP), ``side``, entries ``[start, end)``, buckets ``[first_bucket,
    first_bucket + n_buckets)``, ``has_stops`` (liquidation lists whose members carry stops),
    ``has_closes`` (members with a voluntary close), ``act`` (activation time: the list's
    positions open at the first path point at or after it; INT64 min for the positions open
    before the window, the "base" lists). Lists are ordered by ``act``: the base lists first,
    then one cohort of lists per in-window opening time (:func:`backtest.engine.build_lists`).
    ``base_max_open``: the latest ``open_time`` among the base lists' positions (INT64 min when
    none); a run needs it before its first bar.
    """

    order: np.ndarray  # int32[m]: position index
    key: np.ndarray  # float64[m]: trigger key (filled per bucket)
    bucket_start: np.ndarray  # int64[buckets + 1]: first entry of each bucket
    bucket_sorted: np.ndarray  # bool[buckets]: bucket sorted (and its payload filled) already
    kind: np.ndarray  # int64[L]: LIST_LIQ or LIST_STOP
    side: np.ndarray  # int64[L]: +1 long, -1 short
    start: np.ndarray  # int64[L]: first entry
    end: np.ndarray  # int64[L]: one past the last entry
    first_bucket: np.ndarray  # int64[L]
    n_buckets: np.ndarray  # int64[L]: including the last, "never triggers" bucket
    has_stops: np.ndarray  # bool[L]
    qw: np.ndarray  # float64[m]: qty x weight
    weight: np.ndarray  # float32[m]
    bankruptcy: np.ndarray  # float64[m]: bankruptcy price before funding, quote currency
    stop: np.ndarray  # float64[m]: stop price (liquidation lists whose members have stops)
    close: np.ndarray  # int64[m]: voluntary close time, UTC ms (lists with closes)
    act: np.ndarray  # int64[L]: activation time, UTC ms (INT64 min: open from the start)
    has_closes: np.ndarray  # bool[L]
    bucket_size: int  # entries per bucket the layout aimed at
    base_max_open: int  # latest open_time among the base lists' positions, UTC ms


class Workspace(NamedTuple):
    """Output and scratch arrays of one run, at least ``n`` positions, ``nbars`` bars and
    ``max_rounds + 1`` round slots long; a run (re)initialises every element it uses, so one
    workspace can serve run after run (fresh memory costs page faults on first touch)."""

    alive: np.ndarray  # bool[n]: position still open
    x_pos: np.ndarray  # int32[n]: exit records - position index,
    x_ts: np.ndarray  # int64[n]: time (UTC ms),
    x_fill: np.ndarray  # float64[n]: fill price (quote currency),
    x_round: np.ndarray  # int16[n]: cascade round (-1 for ADL),
    x_code: np.ndarray  # int8[n]: EXIT_* code,
    x_usd: np.ndarray  # float64[n]: notional qty x weight x fill, USD
    bar_i: np.ndarray  # int64[nbars, BI_SIZE]
    bar_f: np.ndarray  # float64[nbars, BF_SIZE]
    round_units: np.ndarray  # int64[max_rounds + 1]: forced notional per round (1/USD_SCALE USD)
    stats: np.ndarray  # float64[ST_SIZE]
    t_pos: np.ndarray  # int32[n]: one round's triggered positions - index,
    t_level: np.ndarray  # float64[n]: trigger level (after funding), quote currency,
    t_qw: np.ndarray  # float64[n]: qty x weight,
    t_bankruptcy: np.ndarray  # float64[n]: bankruptcy price before funding,
    t_weight: np.ndarray  # float64[n]: weight,
    t_side: np.ndarray  # int8[n]: side,
    t_code: np.ndarray  # int8[n]: EXIT_LIQUIDATED or EXIT_STOPPED
    f0: np.ndarray  # float64[n]: reference scan only - funding index when the position opened (NaN: not yet)
    bar_pt: np.ndarray  # float64[nbars, PATH_POINTS, PT_SIZE]: per path point outputs
    pt_fund: np.ndarray  # int64[nbars, PATH_POINTS]: per path point, the lowest fund (RunOutputs.pt_fund)


class RunOutputs(NamedTuple):
    """What one run returns: views into its :class:`Workspace`, valid until the workspace's next run.

    Exit records (``x_*``, one per exit, in time order; within a round the order depends on the
    mode) and the per-bar (``bar_i``: BI_*, ``bar_f``: BF_*) and run (``round_units``, ``stats``:
    ST_*) outputs, and per path point ``bar_pt`` (PT_*).
    """

    x_pos: np.ndarray
    x_ts: np.ndarray
    x_fill: np.ndarray
    x_round: np.ndarray
    x_code: np.ndarray
    bar_i: np.ndarray
    bar_f: np.ndarray
    round_units: np.ndarray
    stats: np.ndarray
    x_usd: np.ndarray
    bar_pt: np.ndarray  # float64[nbars, PATH_POINTS, PT_SIZE]: each path point's price, round-0 price and factor
    #: int64[nbars, PATH_POINTS]: each path point's lowest insurance fund (1/USD_SCALE USD) after its
    #: external payments and after each of its rounds (the fund carried into it when it has none):
    #: what engine.with_external_fund needs to re-price a run's fund without running it again
    pt_fund: np.ndarray


class ListState(NamedTuple):
    """Pointer state of the trigger lists during one run (one element per list; kernel-internal)."""

    ptr: np.ndarray  # int64: next entry not yet triggered
    bucket: np.ndarray  # int64: bucket the pointer is in
    bucket_end: np.ndarray  # int64: one past that bucket's last entry
    div: np.ndarray  # float64: 1 - side x mmr (liquidation lists): funding shift divisor
    shift: np.ndarray  # float64: funding shift of the list's levels, quote currency
    head: np.ndarray  # float64: trigger level (before the shift) at the pointer; NaN when done
    f0: np.ndarray  # float64: funding index when the list was activated (0 for lists open from the start)


#: the loop-carried integers of a kernel run between path points (KernelState.i): the book
#: snapshot in use, exit records written, lists and cohorts active, cohorts, the window's first
#: time and the last path point's time (UTC ms), the previous point's time, the deepest cascade,
#: bars cut by max_rounds, ADL shortfall (USD units), quantities ADL took over this bar from
#: longs and shorts (units of the ADL quantum), some position ADL'd (0/1), the ADL pools' live
#: lengths (-1 not built) and the shorts' pool offset, the fund and its minimum (USD units)
(KI_SNAP, KI_NX, KI_N_ACT, KI_N_COH, KI_N_COHORTS, KI_T0, KI_T_LAST, KI_T_PREV, KI_MAX_DEPTH, KI_BARS_CUT, KI_SHORTFALL, KI_Q_LONG,
 KI_Q_SHORT, KI_ADL_DONE, KI_M_PL, KI_M_PS, KI_POOL_S, KI_FUND, KI_FUND_MIN, KI_SIZE) = range(20)
#: ... and its floats (KernelState.f): the fast mode's side bounds, the funding index, the
#: endogenous log offset E, the previous point's price, the running peaks and drawdowns of the
#: exogenous and simulated paths, the ADL quantum
(KF_BOUND_L, KF_BOUND_S, KF_F, KF_E, KF_P_PREV, KF_PEAK_EXO, KF_PEAK_SIM, KF_DD_EXO, KF_DD_SIM, KF_QUANTUM, KF_SIZE) = range(11)


class KernelState(NamedTuple):
    """What a kernel run carries from one path point to the next
    (backtest.kernels.cascade.run_points_nb; with the Workspace's per-position and per-bar
    arrays): a run can stop after any point and go on from there, bit for bit the run in one go."""

    i: np.ndarray  # int64[KI_SIZE]
    f: np.ndarray  # float64[KF_SIZE]
    ls: ListState  # the trigger lists' pointers
    coh: np.ndarray  # int64: the cohorts' first lists (backtest.kernels.cascade._cohorts)
    cbl: np.ndarray  # float64 per cohort: its highest long trigger
    cbs: np.ndarray  # float64 per cohort: its lowest short trigger
    pool: np.ndarray  # int32[n]: the ADL pools, longs from 0, shorts from i[KI_POOL_S]


# --- accounts: cross margin shared across an event's symbols (issue 12) -------------------
#: account id of a row that belongs to no shared account (isolated rows)
NO_ACCOUNT: int = -1
#: collateral asset code of the settlement coin (USDT for linear contracts: price 1, no haircut)
COLLATERAL_SETTLEMENT: int = 0

#: account classes (outputs: counts and notional per class)
ACCOUNT_CLASS_ISOLATED: int = 0
ACCOUNT_CLASS_SINGLE: int = 1  # a cross account with positions on one symbol only
ACCOUNT_CLASS_MULTI: int = 2  # a cross account with positions on two or more symbols
ACCOUNT_CLASS_NAMES = {ACCOUNT_CLASS_ISOLATED: "isolated", ACCOUNT_CLASS_SINGLE: "single_symbol_cross", ACCOUNT_CLASS_MULTI: "multi_symbol_cross"}

#: source code of a contagion liquidation whose largest loss was the collateral's fall (not a symbol)
SOURCE_COLLATERAL: int = -2

#: per-bar integer accumulators of the account engine (units of 1/USD_SCALE USD, or of
#: 1/USD_SCALE positions for the weighted counts; rows unscaled), per symbol and bar
AB_LONG_LIQ = 0  # notional of liquidated longs, qty x weight x fill
AB_SHORT_LIQ = 1
AB_LONG_ROWS = 2  # rows liquidated (not weighted)
AB_SHORT_ROWS = 3
AB_LONG_W = 4  # weighted count (real positions) x USD_SCALE, longs
AB_SHORT_W = 5
AB_DEFICIT = 6  # the accounts' losses beyond their equity, split over their rows by notional (USD)
AB_CONTAGION = 7  # notional of rows liquidated by another symbol's (or the collateral's) move
AB_OWN = 8  # notional of rows their own symbol's move alone would have liquidated then
AB_CONTAGION_ROWS = 9
AB_SIZE = 10


class Accounts(NamedTuple):
    """Cross accounts over one event's symbols (built by :func:`backtest.accounts.assign_accounts`).

    Rows are those of the event's per-symbol populations concatenated in symbol order (global
    row ``g = row_offset[s] + i`` for row ``i`` of symbol ``s``). CSR layout: account ``a`` holds
    the rows ``members[first[a] : first[a] + count[a]]``.
    """

    row_account: np.ndarray  # int32[n_rows]: account id of each row, NO_ACCOUNT (-1) for isolated rows
    row_offset: np.ndarray  # int64[S + 1]: first global row of each symbol
    first: np.ndarray  # int64[A]: first entry of the account in ``members``
    count: np.ndarray  # int32[A]: rows of the account
    members: np.ndarray  # int64[m]: global row indices, account by account
    wallet_usd: np.ndarray  # float64[A]: wallet balance at the window start, USD (collateral value after haircut)
    coll_asset: np.ndarray  # int16[A]: collateral asset code (COLLATERAL_SETTLEMENT or 1.. of the asset table)
    coll_amount: np.ndarray  # float64[A]: collateral held, units of the asset (USD for the settlement coin)
    n_symbols: np.ndarray  # int8[A]: distinct symbols of the account (its class: 1 single, >= 2 multi)


class AccountRows(NamedTuple):
    """The per-row arrays the account kernel reads, in member order: entry ``j`` is the row
    ``Accounts.members[j]`` (an account's rows are contiguous; built by
    :func:`backtest.accounts.account_rows`)."""

    sym: np.ndarray  # int16: symbol (series) index of the row
    side: np.ndarray  # int8: +1 long, -1 short
    entry: np.ndarray  # float64: entry price, quote currency
    qty: np.ndarray  # float64: base units (> 0)
    mmr: np.ndarray  # float64: maintenance margin rate of its tier (fraction)
    cum: np.ndarray  # float64: maintenance amount of its tier, USD
    weight: np.ndarray  # float32: real positions the row stands for
    venue: np.ndarray  # int8: VENUE_* code of the row (an account's procedure: its first row's venue)
    tier: np.ndarray  # uint8: the row's maintenance tier index (0-based; ``mmr``/``cum`` are that tier's)


class LiqRules(NamedTuple):
    """What each venue's cross-liquidation procedure needs (built by
    :func:`backtest.accounts.liq_rules`; sources in :mod:`backtest.accounts_params`).

    Tier tables per symbol (series) ``s`` and tier ``k`` (0-based, the rows' ``tier``):
    ``tier_floor[s, k]`` the notional floor of tier ``k`` (USD; the cap of tier ``k - 1``),
    ``tier_mmr`` / ``tier_cum`` its rate and maintenance amount; NaN where unknown (a procedure
    never lowers a row into or across an unknown tier: it liquidates instead)."""

    tier_floor: np.ndarray  # float64[S, K]
    tier_mmr: np.ndarray  # float64[S, K]
    tier_cum: np.ndarray  # float64[S, K]
    partial: bool  # False: every venue's account goes whole at its trigger (the issue-12 first model)
    hl_partial_usd: float  # Hyperliquid: positions above this notional (USD) are liquidated in part first
    hl_partial_share: float  # ... by this share of the position
    hl_cooldown_ms: int  # ... then this cooldown (UTC ms) before the whole remaining position goes
    hl_backstop: float  # ... unless equity < this x maintenance (backstop: the whole account at once)


#: columns of the account engine's packed per-row state (AccountState.row, float64)
RS_ENTRY, RS_QTY, RS_MMR, RS_CUM, RS_SIDE, RS_SYM, RS_TIER, RS_SLOT = 0, 1, 2, 3, 4, 5, 6, 7
#: columns of its packed per-account state (AccountState.acc, float64)
AS_FIRST, AS_COUNT, AS_CSER, AS_CVAL, AS_HC, AS_REAL, AS_PHASE, AS_COOL = 0, 1, 2, 3, 4, 5, 6, 7


class AccountState(NamedTuple):
    """The account engine's working state, one 64-byte record per account and per row (the kernel
    packs it from Accounts / AccountRows; integers held as float64 are exact). The reference holds
    every account at once (``row`` in member order, ``acc`` by account); the fast kernel, which
    runs one account after another, holds one account (``acc[0]``, its rows from ``row[0]`` on).

    ``row[i]``: RS_ENTRY entry price; RS_QTY quantity still open (base units); RS_MMR /
    RS_CUM the current tier's rate and maintenance amount (a procedure may lower the tier); RS_SIDE
    +1 / -1; RS_SYM the symbol; RS_TIER the current tier index; RS_SLOT the row's entry in
    Accounts.members / AccountRows (member order). ``acc[a]``: AS_FIRST / AS_COUNT its
    rows in ``row``; AS_CSER its collateral's series (-1: the settlement coin); AS_CVAL the wallet (USD) or
    the asset amount; AS_HC 1 - haircut; AS_REAL PnL realised by partial closes (USD, joins the
    equity); AS_PHASE 0 untouched, 1 partly liquidated; AS_COOL UTC ms until which a Hyperliquid
    cooldown holds (backstop threshold only).
    """

    row: np.ndarray  # float64[m, 8] (reference) or [the largest account's rows, 8] (fast)
    acc: np.ndarray  # float64[A, 8] (reference) or [1, 8] (fast)


class AccountWork(NamedTuple):
    """Scratch of one account-engine run (the kernels are compiled without numba's runtime, so
    the caller allocates): ``loss`` one slot per symbol; ``alive`` one flag per account (the
    reference); ``ws`` / ``wc`` / ``wp`` / ``wk`` the exposures of the account the fast kernel
    runs (the largest account's rows + its collateral): series, loss rate, price at the anchor,
    1 = loses as the price falls (0: as it rises)."""

    loss: np.ndarray  # float64[max(n_symbols, 1)]
    alive: np.ndarray  # bool[A] (reference) or bool[0]
    ws: np.ndarray  # int64[k + 1]
    wc: np.ndarray  # float64[k + 1]
    wp: np.ndarray  # float64[k + 1]
    wk: np.ndarray  # int8[k + 1]


#: wake buckets of the time-major account engine (WakeIndex): the width of one, in log price
#: (1e-4: a bucket is 0.01 % of the price), and how many per series and direction (centred on
#: the series' first grid price: 0.1 % to 1,000x of it; prices beyond fall into the end buckets)
WAKE_LOG_WIDTH = 1e-4
WAKE_BUCKETS = 138_156
#: directions of a wake level: the exposure loses as its price falls (a long row, a
#: non-settlement collateral) or as it rises (a short row)
WAKE_FALLS, WAKE_RISES = 0, 1
#: the budget of an account's cushion is split over its exposures by notional times each
#: series' move scale: a moving average of its absolute log moves per grid point (weight
#: WAKE_DECAY per point), frozen every WAKE_EPOCH grid points (so an anchor's levels can be
#: rebuilt from its grid point alone), at least WAKE_VOL_FLOOR
WAKE_EPOCH = 64
WAKE_DECAY = 0.99
WAKE_VOL_FLOOR = 1e-6


class WakeIndex(NamedTuple):
    """The time-major account engine's wake levels (backtest.kernels.account_steps), the
    analogue of the per-symbol kernel's sorted trigger lists for accounts that share a collateral.

    Each account anchored at a grid point has, per exposure (an open row; a non-settlement
    collateral), a price level the exposure's series must cross before the account can be below
    its threshold. The levels sit in buckets of :data:`WAKE_LOG_WIDTH` of log price: singly
    linked lists of entries in an append-only pool, one list per series, direction and bucket.
    When a series' price enters a bucket, every live entry there wakes its account. An entry is
    live while its version is its account's: anchoring an account again, or closing it, bumps
    the version (the old entries go stale in place); a full pool is rebuilt from the accounts'
    anchors (grid point and relative budget ``rho``: the same levels, bit for bit)."""

    head: np.ndarray  # int32[S, 2, buckets (WAKE_BUCKETS)]: first pool entry of each bucket, -1 empty
    pool: np.ndarray  # int32[cap, 3]: next entry in its bucket (-1 last), account, version
    arec: np.ndarray  # float64[A, 4]: per account WA_* (integers held as float64 are exact)
    base: np.ndarray  # float64[S]: log price of bucket 0's upper edge minus one width
    cur: np.ndarray  # int64[S]: bucket of each series' price at the last grid point
    todo: np.ndarray  # int64[A]: accounts to evaluate at this grid point
    hot: np.ndarray  # int64[A]: accounts to evaluate at the next grid point (thin cushion)
    cool_acc: np.ndarray  # int64[A]: accounts in a Hyperliquid cooldown, by its end (FIFO)
    cool_ms: np.ndarray  # int64[A]: that end, UTC ms
    counts: np.ndarray  # int64[WC_SIZE]
    vol: np.ndarray  # float64[T // WAKE_EPOCH + 1, S]: each epoch's move scale per series
    ewma: np.ndarray  # float64[S]: the moving average of absolute log moves
    last_log: np.ndarray  # float64[S]: log price at the last grid point
    perm: np.ndarray  # int64[A]: the account in each slot of the engine's state (its memory order)
    geom: np.ndarray  # float64[1]: buckets per unit of log price (1 / WAKE_LOG_WIDTH)
    lv: np.ndarray  # int64[the largest account's rows + 1, 3]: scratch, one account's levels (series, direction, bucket)
    ex_ser: np.ndarray  # int64[the largest account's rows + 1]: scratch, one account's exposures (AccountWork ws / wc / wp / wk)
    ex_rate: np.ndarray  # float64[...]: their loss rates per unit of adverse price move
    ex_px: np.ndarray  # float64[...]: their prices at the anchor
    ex_falls: np.ndarray  # int8[...]: 1 = loses as the price falls, 0 as it rises


#: columns of WakeIndex.arec: the last grid point the account was queued at (-1 never), the
#: version of its live entries (-1: closed), the grid point of its anchor (-1: none, hot or
#: closed), the anchor's budget factor kappa (backtest.kernels.account_steps)
WA_STAMP, WA_VER, WA_ANCHOR, WA_KAPPA = 0, 1, 2, 3
#: WakeIndex.counts: hot accounts queued, cooldown FIFO head and tail, account states evaluated,
#: pool entries used, pool rebuilds
WC_HOT, WC_COOL_HEAD, WC_COOL_TAIL, WC_CHECKS, WC_POOL, WC_REBUILDS, WC_SIZE = 0, 1, 2, 3, 4, 5, 6


class GridPaths(NamedTuple):
    """Prices of an event's symbols and collateral assets on one common time grid.

    ``px[s, t]``: series ``s`` (symbols first, then collateral assets) at grid point ``t``, each
    symbol holding its last own path point between its points (quote currency; collateral in
    USD per unit). ``bar[s, t]``: the bar (of symbol ``s``'s own bars) of that point, for the
    per-bar sums. Read by the fast kernel only: ``suf[b, 0 / 1, s]`` the max / min
    of ``px[s]`` from block ``b`` on; ``blk[b, l, 0 / 1, s]`` a sparse table over blocks of
    ``block`` grid points: the max / min of ``px[s]`` over blocks ``[b, b + 2**l)``; ``fine[f, 0 /
    1, s]`` the max / min over sub-blocks of ``fine_block`` points, ``pre[b, 0 / 1, s]`` over blocks
    0 to ``b`` (series innermost: one query of
    an account reads one or two cache lines). A search lifts over the blocks, walks the
    sub-blocks of a block whose bound does not fit, and evaluates the points of a sub-block whose
    bound does not fit (backtest.kernels.accounts.next_liquidation_nb).
    """

    ts: np.ndarray  # int64[T]: UTC ms, ascending, unique
    px: np.ndarray  # float64[S, T]
    bar: np.ndarray  # int32[S, T]
    suf: np.ndarray  # float64[NB + 1, 2, S]: max, min of px[s] from block b on
    blk: np.ndarray  # float64[NB, LB, 2, S]: max, min over blocks [b, b + 2**l)
    block: int  # grid points per block (a multiple of fine_block)
    coll_series: np.ndarray  # int64[n_assets]: series of each collateral asset code (-1: the settlement coin)
    haircut: np.ndarray  # float64[n_assets]: haircut of each asset (0 for the settlement coin)
    n_symbols: int  # series 0 .. n_symbols - 1 are symbols
    fine: np.ndarray  # float64[NF, 2, S]: max, min of px[s] over sub-blocks of fine_block points
    fine_block: int  # grid points per sub-block
    pre: np.ndarray  # float64[NB, 2, S]: max, min of px[s] over blocks 0 .. b


class AccountOutputs(NamedTuple):
    """What one account-engine run returns (:func:`backtest.kernels.accounts.run_accounts_nb`).

    Exit records (one per exit of a row - a row partly liquidated has several - by grid point then
    row, a row's exits at one grid point in procedure order: the same in both modes), per account
    the grid index of its first liquidation, partial or whole (-1: never) and its deficit (USD, before weights), and
    the per-symbol, per-bar sums ``bar_i[s, bar, AB_*]``.
    """

    x_row: np.ndarray  # int64: global row
    x_grid: np.ndarray  # int32: grid index of the liquidation
    x_fill: np.ndarray  # float64: fill, the row's symbol at that grid point, quote currency
    x_contagion: np.ndarray  # int8: 1 contagion, 0 own market
    x_source: np.ndarray  # int16: symbol whose loss contributed most to the equity drop (SOURCE_COLLATERAL: the collateral)
    #: float64: the exit's share of the row's quantity (1.0 = the whole row; a partial liquidation
    #: gives a row several exits whose shares sum to at most 1); notional = qty x share x weight x fill
    x_share: np.ndarray
    acc_grid: np.ndarray  # int32[A]
    acc_deficit: np.ndarray  # float64[A]: loss beyond equity of the account (one real account), USD
    bar_i: np.ndarray  # int64[S, nbars, AB_SIZE]
    checks: int  # account checks made (speed statistic)
