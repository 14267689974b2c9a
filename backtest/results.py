"""Results of a run: the typed summary, the declared output frames, and how both are assembled
from the kernels' outputs.

* :class:`Summary` (with :class:`SymbolSummary` per symbol and :class:`PublishedFigure` per
  catalogued figure): the fields of ``summary.json``, in its order; ``Summary.to_dict()`` is the
  JSON form (``json.dumps`` of it is byte-identical to the file). Fields are read by name
  (``summary.liquidated_notional_usd``; ``summary["liquidated_notional_usd"]`` and ``.get`` read
  the same fields, for code that takes a summary as a mapping).
* :data:`FRAME_SCHEMAS`: the columns and dtypes of the output frames ``bars``, ``liquidations``,
  ``clusters``, ``liq_map`` and ``heatmap`` (``ts`` as ``Datetime("ms", "UTC")``; prices in
  quote currency, notional in USD, ``side`` +1 long / -1 short, or "long"/"short" in the maps).
  The CLI, sweeps and the report read columns by these names.
* :class:`SimResult`: the summary and the frames of one run; ``write`` puts them in a folder.

Sources of the figures: the kernels' exit records and per-bar arrays (``backtest.records``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from backtest import records as R
from backtest.errors import SimError
from backtest.liqmap import clusters_frame, heatmap_frame, liq_map_frame
from backtest.params import as_dict

TS = pl.Datetime("ms", "UTC")

# ------------------------------------------------------------------------------------------
# declared frame schemas
# ------------------------------------------------------------------------------------------
#: one row per symbol and bar: the observed bar, the simulated bar, forced flow, fund, fees.
#: Fund and ADL columns (USD): ``deficit_usd`` losses beyond bankruptcy the insurance fund paid,
#: ``insurance_fund_usd`` its balance at the bar's end, ``uncovered_usd`` deficits it could not pay
#: (their positions' share went to ADL), ``adl_taken_usd`` the notional ADL took over from those
#: bankrupt positions (at their bankruptcy prices; it is not sold into the book), ``adl_usd`` the
#: notional of the opposite positions ADL closed for it (at the bar's last price), ``adl_ranks_hit``
#: how deep into the side's ADL ranking those closes went, in fifths (0 none; 1 only the top 20 %,
#: the five lights of Binance's ADL indicator and Bybit's ADL rank; 5 down to the bottom fifth).
#: ``exchange`` is the venue whose positions the row is about (a multi-venue event has one set of
#: rows per venue and symbol); ``path_exchange`` the exchange whose bars drove it: the venue
#: itself, or the proxy a venue without bars of its own runs on (events.Venue.path_proxy).
#: Open interest (USD): ``open_interest_usd`` the simulated one - sum over the population's open
#: positions of qty x weight x the bar's simulated close, after the bar's exits and flows
#: (:func:`simulated_open_interest`; hedged holders, not in the population, are not counted);
#: ``observed_open_interest_usd`` the store's series at the bar's end where it has one, else null.
BARS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String, "exchange": pl.String, "ts": TS, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64, "close": pl.Float64,
    "sim_open": pl.Float64, "sim_high": pl.Float64, "sim_low": pl.Float64, "sim_close": pl.Float64,
    "long_liq_usd": pl.Float64, "short_liq_usd": pl.Float64, "long_liq_count": pl.Float64, "short_liq_count": pl.Float64,
    "long_stop_usd": pl.Float64, "short_stop_usd": pl.Float64, "adl_usd": pl.Float64, "insurance_fund_usd": pl.Float64,
    "deficit_usd": pl.Float64, "uncovered_usd": pl.Float64, "adl_taken_usd": pl.Float64, "clearance_fees_usd": pl.Float64,
    "taker_fees_usd": pl.Float64, "rounds": pl.Int32, "cascades_at_max_rounds": pl.Int32, "adl_ranks_hit": pl.Int8, "endo_move_min_pct": pl.Float64, "endo_move_max_pct": pl.Float64,
    "funding_rate": pl.Float64, "price_source": pl.String, "path_exchange": pl.String,
    "open_interest_usd": pl.Float64, "observed_open_interest_usd": pl.Float64,
    # accounts (issue 12; backtest.contagion): notional liquidated by another symbol's or the collateral's move,
    # by the own symbol's move (both engines), and the account engine's deficits (at its fills; charged to the
    # symbol's fund: what it paid is also in deficit_usd, the rest in uncovered_usd)
    "contagion_usd": pl.Float64, "own_market_usd": pl.Float64, "account_deficit_usd": pl.Float64,
}
#: one row per position that left the book (liquidated, stopped, ADL'd), by time then position
LIQUIDATIONS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String, "exchange": pl.String, "position": pl.Int64, "side": pl.Int8, "exit": pl.String, "ts": TS, "fill": pl.Float64,
    "round": pl.Int16, "qty": pl.Float64, "notional_usd": pl.Float64, "weight": pl.Float64, "leverage": pl.Float32,
    "margin_mode": pl.Int8, "entry": pl.Float64, "liq_price": pl.Float64,
    # accounts (issue 12): the row's account (-1 isolated, or accounts off); contagion 1 when another symbol's (or the
    # collateral's) move liquidated it; source: the symbol whose loss contributed most ("collateral"; null own-market)
    "account": pl.Int64, "contagion": pl.Int8, "source": pl.String,
}
#: price ranges where open notional concentrates (see liqmap.clusters_frame), ranked by notional
CLUSTERS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String, "exchange": pl.String, "side": pl.String, "rank": pl.Int32, "price_lo": pl.Float64, "price_hi": pl.Float64,
    "open_notional_usd": pl.Float64, "share": pl.Float64, "distance_pct": pl.Float64, "reached": pl.Boolean,
    "liquidated_usd": pl.Float64,
}
#: pre-event open notional by liquidation-price bucket and side (see liqmap.bucket_frame)
LIQ_MAP_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String, "exchange": pl.String, "side": pl.String, "bucket": pl.Int64, "price_lo": pl.Float64, "price_hi": pl.Float64,
    "open_notional_usd": pl.Float64, "positions": pl.Float64,
}
#: realised liquidations by time bucket x fill-price bucket (see liqmap.heatmap_frame)
HEATMAP_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String, "exchange": pl.String, "ts": TS, "bucket": pl.Int64, "price_lo": pl.Float64, "price_hi": pl.Float64,
    "long_usd": pl.Float64, "short_usd": pl.Float64,
}
#: every output frame, by the name of its Parquet file
FRAME_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "bars": BARS_SCHEMA, "liquidations": LIQUIDATIONS_SCHEMA, "clusters": CLUSTERS_SCHEMA,
    "liq_map": LIQ_MAP_SCHEMA, "heatmap": HEATMAP_SCHEMA,
}


# ------------------------------------------------------------------------------------------
# the typed summary
# ------------------------------------------------------------------------------------------
class _ByName:
    """Read a dataclass's fields by their JSON names too, as a read-only mapping (``s["x"]``,
    ``s.get("x")``, ``"x" in s``, ``set(s)``)."""

    def __getitem__(self, name: str) -> Any:
        if name not in self.keys():
            raise KeyError(name)
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default) if name in self.keys() else default

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def __contains__(self, name: object) -> bool:
        return name in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (nested dataclasses as dicts, in field order)."""
        return dataclasses.asdict(self)


@dataclass
class SymbolSummary(_ByName):
    """One symbol's inputs and outcome (``summary.json`` ``per_symbol[SYMBOL]``)."""

    price_source: str  # "last-anchored-to-mark", "last" or "mark" (see backtest.market)
    timeframe: str
    bars: int
    gaps: int  # missing bars bridged inside the window
    positions: int  # population rows
    population_source: str
    open_notional_usd: float
    open_interest_kind: str  # published, estimate, store, parameter or unknown
    open_interest_source: str
    sigma_daily: float  # daily volatility of log returns over the lookback
    volume_daily_usd: float
    insurance_fund_start_usd: float  # this symbol's share of the fund
    insurance_fund_min_usd: float
    adl_shortfall_usd: float
    drawdown_exogenous: float
    drawdown_simulated: float
    amplification: float  # (simulated - exogenous drawdown) / exogenous, cascade mode
    max_cascade_depth: int
    bars_at_max_rounds: int
    funding_index: float
    exchange: str = ""  # the venue (ccxt id) whose positions these are
    path_exchange: str = ""  # whose bars drove them: the venue, or a proxy exchange (labelled)
    liquidated_notional_usd: float = 0.0  # longs + shorts liquidated (both engines), USD at the fills
    long_liquidated_usd: float = 0.0
    short_liquidated_usd: float = 0.0
    adl_notional_usd: float = 0.0
    #: simulated open interest (results.simulated_open_interest) at its lowest bar end in the window,
    #: relative to the window start (a fraction, <= 0; None without bars); a catalogued figure of
    #: metric open_interest_change with a window compares with open_interest_windows instead
    open_interest_change: float | None = None
    #: for each catalogued open-interest figure of this symbol (backtest.calibration.figures, metric
    #: open_interest_change, with a window): ``"START_MS-END_MS"`` -> the simulated open interest's
    #: relative change from the window's start to its end, each at the last bar end at or before it
    #: (the run's start value when the window starts there) - the figure's own point-to-point change,
    #: which the calibration compares (backtest.calibration.targets); None when there is none
    open_interest_windows: dict | None = None


@dataclass
class VenueSummary(_ByName):
    """One venue's outcome (``summary.json`` ``venues[EXCHANGE]``): the headline keys of the
    event total over this venue's symbols. Notional USD, times ISO-8601 UTC."""

    exchange: str
    margin_rule: str  # the records.VENUES rule its population was built with
    symbols: list[str]  # ccxt symbols
    path_proxy: str | None  # the exchange whose bars stood in for this venue's (None: its own)
    positions: int
    open_notional_usd: float
    liquidated_notional_usd: float
    long_liquidated_usd: float
    short_liquidated_usd: float
    long_share: float | None
    stopped_notional_usd: float
    peak_minute: str | None
    peak_minute_notional_usd: float
    adl_notional_usd: float
    insurance_fund_start_usd: float
    insurance_fund_min_usd: float
    open_interest_kinds: dict[str, str]  # symbol -> published, estimate, store, parameter


@dataclass
class PublishedFigure(_ByName):
    """A catalogued published figure beside the simulated one (``summary.json`` ``published``)."""

    metric: str
    scope: Any
    published: Any
    simulated: Any
    source: Any


@dataclass
class Summary(_ByName):
    """Headline figures of a run (``summary.json``): notional in USD, times ISO-8601 UTC."""

    event: str
    mode: str  # "replay" or "cascade"
    shock: str | None
    symbols: list[str]
    positions: int
    open_notional_usd: float
    liquidated_notional_usd: float
    long_liquidated_usd: float
    short_liquidated_usd: float
    long_share: float | None
    stopped_notional_usd: float
    peak_minute: str | None
    peak_minute_notional_usd: float
    max_cascade_depth: int
    bars_at_max_rounds: int
    amplification: float
    branching_ratio: float
    round_notional_usd: list[float]
    adl_notional_usd: float
    insurance_fund_min_usd: float
    insurance_fund_start_usd: float
    seed: int | None
    price_source: dict[str, str]
    per_symbol: dict[str, SymbolSummary]
    #: per venue (keyed by ccxt exchange id, the primary first): the same headline keys; the
    #: top-level keys are their totals over venues
    venues: dict[str, VenueSummary]
    published: list[PublishedFigure]
    timings_s: dict[str, float]
    params: dict[str, Any]
    notes: list[str]
    #: forced orders the exchange published for the event's symbols and window (a lower bound where
    #: the feed is throttled; backtest.observed), only when the store holds any; omitted otherwise
    observed_liquidated_usd: float | None = None
    observed_liquidated_note: str | None = None
    #: accounts (issue 12; backtest.contagion), only when the account engine ran (replay, accounts on):
    #: the definition; notional liquidated by contagion and by own-market moves (USD); contagion's share;
    #: contagion rows; per account class (isolated, single_symbol_cross, multi_symbol_cross) accounts,
    #: positions liquidated (weighted), liquidated and contagion notional; source symbol -> liquidated
    #: symbol contagion notional; the account engine's deficits (USD, at its fills; charged to the
    #: fund of each row's symbol); the accounts it ran (its account checks, a speed figure, are in timings_s)
    contagion_definition: str | None = None
    contagion_liquidated_usd: float | None = None
    contagion_own_market_usd: float | None = None
    contagion_share: float | None = None
    contagion_rows: int | None = None
    contagion_by_class: dict | None = None
    contagion_matrix_usd: dict | None = None
    contagion_account_deficit_usd: float | None = None
    contagion_engine_accounts: int | None = None
    #: the account engine's clearance fees paid into the fund (USD); the coupling of the engine with
    #: the per-symbol kernels: kernel passes with its external flow, the last pass's residual (largest
    #: relative move of a path point from the pass before) and whether it fell to contagion_tolerance
    contagion_account_fees_usd: float | None = None
    contagion_iterations: int | None = None
    contagion_residual: float | None = None
    contagion_converged: bool | None = None
    #: the residual at which the coupling counts as converged (contagion.coupling_tolerance: 1e-9 in a
    #: cascade, 1e-6 in replay, where the path does not move and the passes only settle the fills)
    contagion_tolerance: float | None = None
    #: where the non-settlement collateral asset's price path came from (store proxy or constant)
    contagion_collateral_source: str | None = None

    def keys(self) -> list[str]:
        return [k for k in super().keys() if not (k in _OPTIONAL_FIELDS and getattr(self, k) is None)]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in _OPTIONAL_FIELDS:
            if d[k] is None:
                del d[k]
        return d

    def json_text(self) -> str:
        """The text of ``summary.json``."""
        return json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n"


#: summary fields written only when they have a value
_OPTIONAL_FIELDS = ("observed_liquidated_usd", "observed_liquidated_note", "contagion_definition", "contagion_liquidated_usd",
                    "contagion_own_market_usd", "contagion_share", "contagion_rows", "contagion_by_class", "contagion_matrix_usd",
                    "contagion_account_deficit_usd", "contagion_engine_accounts", "contagion_account_fees_usd", "contagion_iterations",
                    "contagion_residual", "contagion_converged", "contagion_tolerance", "contagion_collateral_source")
#: the contagion_* keys of summary.json (issue 12)
CONTAGION_KEYS = tuple(k for k in _OPTIONAL_FIELDS if k.startswith("contagion_"))


#: scalar fields of the summary (the metrics a sweep keeps per combination, in summary order)
SCALAR_FIELDS = tuple(f.name for f in dataclasses.fields(Summary)
                      if f.name not in ("params", "symbols", "event", "seed", "round_notional_usd", "price_source",
                                        "per_symbol", "venues", "published", "timings_s", "notes", *_OPTIONAL_FIELDS))


def metrics(summary: Any) -> dict[str, Any]:
    """The scalar metrics of a summary (:data:`SCALAR_FIELDS`), by name."""
    return {k: summary[k] for k in SCALAR_FIELDS}


def oi_source_kind(source: str) -> str:
    """Short label of an open-interest source: published, estimate, store, parameter or unknown."""
    for prefix, kind in (("event catalogue", "published"), ("estimate", "estimate"), ("store", "store"), ("open_interest_usd", "parameter")):
        if source.startswith(prefix):
            return kind
    return "unknown"


def estimated_open_interest(summary: Any) -> tuple[int, int]:
    """(symbols whose open interest is an estimate, symbols) of a run's ``summary``."""
    kinds = [v.get("open_interest_kind") for v in (summary.get("per_symbol") or {}).values()]
    return sum(k == "estimate" for k in kinds), len(kinds)


@dataclass
class SimResult:
    """Outputs of one run: the summary and the frames of :data:`FRAME_SCHEMAS`."""

    summary: Summary
    bars: pl.DataFrame
    liquidations: pl.DataFrame
    clusters: pl.DataFrame
    liq_map: pl.DataFrame
    heatmap: pl.DataFrame

    def write(self, out_dir: str | Path) -> Path:
        """Write summary.json and the frames as Parquet into ``out_dir`` (created if missing; its
        parent folder must exist, see :func:`backtest.paths.check_out_dir`)."""
        from backtest.paths import check_out_dir, write_atomic_group

        out = check_out_dir(out_dir, error=SimError)
        out.mkdir(exist_ok=True)
        # every file goes to a temporary name first (a full disk leaves the folder as it was);
        # summary.json is renamed last: its presence says the folder holds one whole run
        files = [(out / f"{name}.parquet", getattr(self, name).write_parquet) for name in FRAME_SCHEMAS]
        text = self.summary.json_text()
        write_atomic_group([*files, (out / "summary.json", lambda t: t.write_text(text))])
        return out


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)


# ------------------------------------------------------------------------------------------
# assembling a run's result from the kernel outputs
# ------------------------------------------------------------------------------------------
@dataclass
class SymbolRun:
    """What one symbol's kernel run hands to :func:`assemble`."""

    out: Any  # the kernel's outputs (engine.run_kernel -> engine.KernelRun): exit records, per-bar arrays, stats
    bars: dict[str, np.ndarray]  # the path the kernel ran on (records.BAR_FIELDS; shocked if --shock)
    market: Any  # its market.Market (price source, timeframe, liquidity estimates)
    pop: Any  # the population entry (simulate.PopEntry: arrays, open notional, sources)
    fund0: float  # this symbol's share of the insurance fund at the start, USD
    split: tuple  # exit notional by kind (kernels.cascade.exit_split_nb)
    #: accounts on (backtest.contagion): the full-population index of each row the kernel ran
    #: (its ``x_pos`` index into this), and the account engine's part of this symbol
    #: (contagion.symbol_part); None otherwise
    rows: Any = None
    accounts: Any = None

    @cached_property
    def open_interest_usd(self) -> np.ndarray:
        """Simulated open interest per bar (USD, :func:`simulated_open_interest` at the simulated
        close), computed once for the summary and the bars frame."""
        if not len(self.bars["ts"]):
            return np.zeros(0)
        x_pos, x_ts, x_share = _exits_by_row(self)
        return simulated_open_interest(self.pop.arrays, x_pos, x_ts, self.bars["ts"], self.market.bar_ms,
                                       self.out.bar_f[:, R.BF_CLOSE], x_share=x_share)


def _engine_liqs(d: SymbolRun) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The account engine's liquidations of one symbol: (side, notional USD, UTC minute)."""
    ap = d.accounts
    a = d.pop.arrays
    return a["side"][ap["row"]], _engine_usd(d), ap["ts"] // 60_000


def _engine_usd(d: SymbolRun) -> np.ndarray:
    """Notional (USD at the fills) of the account engine's liquidations of one symbol."""
    ap, a = d.accounts, d.pop.arrays
    if ap.get("usd") is not None:
        return ap["usd"]
    return a["qty"][ap["row"]] * ap["share"] * a["weight"][ap["row"]].astype(np.float64) * ap["fill"]


def _add_totals(tot: dict, d: SymbolRun) -> dict:
    """Add one symbol's liquidated long / short, stopped and ADL notional (USD, both engines) to ``tot``."""
    kind_usd, _liq, nl, ns, nst, na, _n, _m0, _m1 = d.split
    a, b, c = nl, nl + ns, nl + ns + nst
    tot["long"] += float(np.sum(kind_usd[:a]))
    tot["short"] += float(np.sum(kind_usd[a:b]))
    tot["stopped"] += float(np.sum(kind_usd[b:c]))
    tot["adl"] += float(np.sum(kind_usd[c : c + na]))
    if d.accounts is not None and len(d.accounts["row"]):
        side, usd, _minute = _engine_liqs(d)
        tot["long"] += float(np.sum(usd[side > 0]))
        tot["short"] += float(np.sum(usd[side < 0]))
    return tot


def exit_totals(per: dict[str, SymbolRun]) -> dict:
    """Totals and the peak minute straight from the kernels' exit records (same in both paths).

    ``per[symbol].split`` is the symbol's exit split (kernels.cascade.exit_split_nb); the account
    engine's liquidations (``per[symbol].accounts``, accounts on) are added after the kernel's."""
    tot = {"long": 0.0, "short": 0.0, "stopped": 0.0, "adl": 0.0}
    from backtest.kernels.cascade import minute_sums_nb

    splits = []
    extra = []
    for d in per.values():
        _add_totals(tot, d)
        kind_usd, liq_usd, nl, ns, nst, na, nliq, mmin, mmax = d.split
        if nliq:
            splits.append((d.out, liq_usd, nliq, mmin, mmax))
        if d.accounts is not None and len(d.accounts["row"]):
            _side, usd, minute = _engine_liqs(d)
            extra.append((minute, usd))
    tot["peak_minute"], tot["peak_usd"] = None, 0.0
    if splits or extra:
        m0 = int(min([x[3] for x in splits] + [int(e[0].min()) for e in extra]))
        m1 = int(max([x[4] for x in splits] + [int(e[0].max()) for e in extra]))
        if m1 - m0 < 50_000_000:  # minutes as bins, no sort; sums add in record order, as bincount
            u = None
            sums = np.zeros(m1 - m0 + 1)
            for out, liq_usd, _, _, _ in splits:
                minute_sums_nb(out.x_code, out.x_ts, liq_usd, m0, sums)
            for minute, usd in extra:
                np.add.at(sums, minute - m0, usd)
        else:
            m = np.concatenate([out.x_ts[out.x_code == R.EXIT_LIQUIDATED] // 60_000 for out, *_ in splits] + [e[0] for e in extra])
            u, inv = np.unique(m, return_inverse=True)
            sums = np.bincount(inv, weights=np.concatenate([x[1][: x[2]] for x in splits] + [e[1] for e in extra]))
        k = int(np.argmax(sums))  # first (earliest) of equal maxima
        from datetime import datetime, timezone

        minute = m0 + k if u is None else int(u[k])
        tot["peak_minute"] = datetime.fromtimestamp(minute * 60, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        tot["peak_usd"] = float(sums[k])
    return tot


def _oi_windows(prep: Any, leg: Any) -> list[tuple[int, int]]:
    """The windows (UTC ms) of the catalogued open-interest figures of ``leg``'s venue and symbol
    in ``prep``'s event (:class:`SymbolSummary` ``open_interest_windows``)."""
    ev = getattr(prep, "event", None)
    if ev is None or leg is None:
        return []
    from backtest.calibration.figures import figures_of

    return [tuple(f.window_ms) for f in figures_of(getattr(ev, "id", ""))
            if f.metric == "open_interest_change" and f.window_ms and leg.symbol in f.symbols and (not f.venues or leg.exchange in f.venues)]


def _window_changes(oi: np.ndarray, ends: np.ndarray, start_usd: float, windows: list[tuple[int, int]],
                    run_start: int | None = None) -> dict[str, float] | None:
    """:class:`SymbolSummary` ``open_interest_windows``: per window, the change of the per-bar
    open interest ``oi`` (USD at the bar ends ``ends``, UTC ms) from its value at the last bar end at
    or before the window's start (``start_usd`` before the first bar's end) to the value at the last
    bar end at or before its end; a window that does not overlap the run (``run_start`` to the
    last bar end) has none."""
    if not windows or not len(oi):
        return None
    out = {}
    lo = int(ends[0]) if run_start is None else int(run_start)
    for a, b in windows:
        if a >= int(ends[-1]) or b <= lo:
            continue
        ia = int(np.searchsorted(ends, a, side="right")) - 1
        ib = int(np.searchsorted(ends, b, side="right")) - 1
        v0 = start_usd if ia < 0 else float(oi[ia])
        v1 = start_usd if ib < 0 else float(oi[ib])
        if v0 > 0:
            out[f"{int(a)}-{int(b)}"] = v1 / v0 - 1.0
    return out or None


def _symbol_summary(d: SymbolRun, mode: str, leg: Any = None, oi_windows: list[tuple[int, int]] = ()) -> SymbolSummary:
    out, bars, mk, pe = d.out, d.bars, d.market, d.pop
    st = out.stats
    amp = (st[R.ST_DD_SIM] - st[R.ST_DD_EXO]) / st[R.ST_DD_EXO] if mode == "cascade" and st[R.ST_DD_EXO] > 0 else 0.0
    tot = _add_totals({"long": 0.0, "short": 0.0, "stopped": 0.0, "adl": 0.0}, d)
    oi_change = None
    n = len(bars["ts"])
    if n:
        a = pe.arrays
        qw0 = a["qty"] * a["weight"].astype(np.float64)
        t0 = int(bars["ts"][0])
        start = float(np.sum(qw0[(a["open_time"] <= t0) & (a["close_time"] > t0)])) * float(bars["open"][0])
        oi = d.open_interest_usd
        oi_change = float(oi.min() / start - 1.0) if start > 0 else None
        windows = _window_changes(oi, np.asarray(bars["ts"], np.int64) + int(mk.bar_ms), start, list(oi_windows), t0) if oi_windows else None
    else:
        windows = None
    return SymbolSummary(
        price_source=mk.price_source,
        timeframe=mk.timeframe,
        bars=int(len(bars["ts"])),
        gaps=mk.gaps,
        positions=int(pe.arrays["side"].size),
        population_source=pe.source,
        open_notional_usd=pe.open_notional_usd,
        open_interest_kind=oi_source_kind(pe.oi_source),
        open_interest_source=pe.oi_source,
        sigma_daily=mk.sigma_daily,
        volume_daily_usd=mk.volume_daily_usd,
        insurance_fund_start_usd=d.fund0,
        insurance_fund_min_usd=float(st[R.ST_FUND_MIN]),
        adl_shortfall_usd=float(st[R.ST_ADL_SHORTFALL]),
        drawdown_exogenous=float(st[R.ST_DD_EXO]),
        drawdown_simulated=float(st[R.ST_DD_SIM]),
        amplification=float(amp),
        max_cascade_depth=int(st[R.ST_MAX_DEPTH]),
        bars_at_max_rounds=int(st[R.ST_BARS_AT_MAX_ROUNDS]),
        funding_index=float(st[R.ST_FUNDING_INDEX]),
        exchange=leg.exchange if leg is not None else "",
        path_exchange=leg.path_exchange if leg is not None else "",
        liquidated_notional_usd=tot["long"] + tot["short"],
        long_liquidated_usd=tot["long"],
        short_liquidated_usd=tot["short"],
        adl_notional_usd=tot["adl"],
        open_interest_change=oi_change,
        open_interest_windows=windows,
    )


#: bars columns read from the kernel's fixed-point per-bar sums (records.BI_*, in units of 1/USD_SCALE)
_BAR_SCALED = (
    ("long_liq_usd", R.BI_LONG_LIQ), ("short_liq_usd", R.BI_SHORT_LIQ), ("long_liq_count", R.BI_LONG_LIQ_W),
    ("short_liq_count", R.BI_SHORT_LIQ_W), ("long_stop_usd", R.BI_LONG_STOP), ("short_stop_usd", R.BI_SHORT_STOP),
    ("adl_usd", R.BI_ADL), ("insurance_fund_usd", R.BI_FUND), ("deficit_usd", R.BI_DEFICIT), ("uncovered_usd", R.BI_UNCOVERED),
    ("adl_taken_usd", R.BI_ADL_TAKEN), ("clearance_fees_usd", R.BI_FUND_IN), ("taker_fees_usd", R.BI_TAKER),
)


def simulated_open_interest(arrays: dict[str, np.ndarray], x_pos: np.ndarray, x_ts: np.ndarray, ts: np.ndarray, bar_ms: int,
                            close: np.ndarray, x_share: np.ndarray | None = None) -> np.ndarray:
    """Per bar, the simulated open interest (USD): qty x weight of the positions open at the bar's
    end ``ts + bar_ms`` (UTC ms: opened by then, not closed voluntarily by then, no exit record
    before it) times the bar's ``close``. One pass over the positions (a difference array).
    ``x_share`` (per exit record, 1.0 = the whole row): a row with a partial exit (the account
    engine's partial liquidations) leaves by its exits' shares, each at its exit's time.

    The kernel :func:`backtest.kernels.cascade.simulated_oi_nb` (one pass, bar indices by
    arithmetic on a regular grid); :func:`simulated_open_interest_reference` is the numpy
    reference it equals bit for bit (tests)."""
    from backtest.kernels.cascade import simulated_oi_nb

    if len(ts) == 0:
        return np.zeros(0)
    share = np.zeros(0) if x_share is None else np.ascontiguousarray(x_share, np.float64)
    return simulated_oi_nb(arrays["qty"], arrays["weight"], arrays["open_time"], arrays["close_time"], np.ascontiguousarray(x_pos, np.int64),
                           np.ascontiguousarray(x_ts, np.int64), share, np.asarray(ts, np.int64) + int(bar_ms), np.ascontiguousarray(close, np.float64))


def simulated_open_interest_reference(arrays: dict[str, np.ndarray], x_pos: np.ndarray, x_ts: np.ndarray, ts: np.ndarray, bar_ms: int,
                                      close: np.ndarray, x_share: np.ndarray | None = None) -> np.ndarray:
    """:func:`simulated_open_interest` in numpy (searchsorted and bincounts): the reference."""
    n = len(ts)
    if n == 0:
        return np.zeros(0)
    ends = np.asarray(ts, np.int64) + int(bar_ms)
    qw = arrays["qty"] * arrays["weight"].astype(np.float64)
    a = np.searchsorted(ends, arrays["open_time"], side="left")
    b = np.searchsorted(ends, arrays["close_time"], side="left")
    part = None
    if len(x_pos):
        b_x = np.searchsorted(ends, x_ts, side="right")
        whole = np.ones(len(x_pos), np.bool_)
        if x_share is not None and (x_share < 1.0).any():
            partial_rows = np.zeros(len(qw), np.bool_)
            partial_rows[x_pos[x_share < 1.0]] = True
            whole = ~partial_rows[x_pos]
            px, pb, ps = x_pos[~whole], b_x[~whole], x_share[~whole]
            keep = (a[px] < pb) & (pb < b[px])  # exits while the row is open (a voluntary close takes what is left)
            part = np.bincount(pb[keep], weights=qw[px[keep]] * ps[keep], minlength=n + 1)[: n + 1]
        b[x_pos[whole]] = np.minimum(b[x_pos[whole]], b_x[whole])
    ok = a < b
    d = np.bincount(a[ok], weights=qw[ok], minlength=n + 1)[: n + 1] - np.bincount(b[ok], weights=qw[ok], minlength=n + 1)[: n + 1]
    if part is not None:
        d = d - part
    return np.cumsum(d)[:n] * np.asarray(close, np.float64)


def _exits_by_row(d: SymbolRun) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Every exit of one symbol as (population row, time UTC ms, quantity share or None for all
    whole): the per-symbol kernel's (its rows mapped back to the population's where the account
    engine took some) and the engine's (a partial liquidation: its share of the row)."""
    x_pos, x_ts = d.out.x_pos.astype(np.int64), d.out.x_ts
    if d.rows is not None:
        x_pos = d.rows[x_pos]
    ap = d.accounts
    if ap is not None and len(ap["row"]):
        x_share = np.concatenate([np.ones(len(x_pos)), ap["share"]])
        x_pos = np.concatenate([x_pos, ap["row"].astype(np.int64)])
        x_ts = np.concatenate([x_ts, ap["ts"].astype(np.int64)])
        return x_pos, x_ts, x_share
    return x_pos, x_ts, None


def bars_frame(s: str, d: SymbolRun, exchange: str = "", path_exchange: str = "", observed_oi: np.ndarray | None = None) -> pl.DataFrame:
    """The ``bars`` rows of one symbol on one venue (:data:`BARS_SCHEMA`); ``observed_oi`` the
    store's open interest (USD) at each bar's end, None where it has none."""
    S = R.USD_SCALE
    out, bars, mk = d.out, d.bars, d.market
    bi, bf = out.bar_i, out.bar_f
    if d.accounts is not None:  # the account engine's liquidations join the kernel's columns
        ab = d.accounts["bar_i"]
        bi = bi.copy()
        bi[:, R.BI_LONG_LIQ] += ab[:, R.AB_LONG_LIQ]
        bi[:, R.BI_SHORT_LIQ] += ab[:, R.AB_SHORT_LIQ]
        bi[:, R.BI_LONG_LIQ_W] += ab[:, R.AB_LONG_W]
        bi[:, R.BI_SHORT_LIQ_W] += ab[:, R.AB_SHORT_W]
    n = len(bars["ts"])
    oi = d.open_interest_usd
    return pl.DataFrame(
        {
            "symbol": [s] * n,
            "exchange": [exchange] * n,
            "ts": bars["ts"],
            "open": bars["open"],
            "high": bars["high"],
            "low": bars["low"],
            "close": bars["close"],
            "sim_open": bf[:, R.BF_OPEN],
            "sim_high": bf[:, R.BF_HIGH],
            "sim_low": bf[:, R.BF_LOW],
            "sim_close": bf[:, R.BF_CLOSE],
            **{name: bi[:, col] / S for name, col in _BAR_SCALED},
            "rounds": bi[:, R.BI_ROUNDS].astype(np.int32),
            "cascades_at_max_rounds": bi[:, R.BI_AT_MAX_ROUNDS].astype(np.int32),
            "adl_ranks_hit": bi[:, R.BI_ADL_RANKS].astype(np.int8),
            "endo_move_min_pct": np.expm1(bf[:, R.BF_ENDO_MIN]) * 100.0,
            "endo_move_max_pct": np.expm1(bf[:, R.BF_ENDO_MAX]) * 100.0,
            "funding_rate": bars["funding_rate"],
            "price_source": [mk.price_source] * n,
            "path_exchange": [path_exchange or exchange] * n,
            "open_interest_usd": oi,
            "observed_open_interest_usd": pl.Series(observed_oi if observed_oi is not None else [None] * n, dtype=pl.Float64),
            **_account_bar_columns(d, n),
        },
        schema_overrides={"symbol": pl.String, "exchange": pl.String, "price_source": pl.String, "path_exchange": pl.String},
    ).with_columns(pl.col("ts").cast(pl.Int64).cast(TS), pl.col("observed_open_interest_usd").fill_nan(None))


def _account_bar_columns(d: SymbolRun, n: int) -> dict[str, np.ndarray]:
    """The accounts' bar columns; with the account engine on, its liquidations are added to the
    kernel's liquidation columns (records.AB_*)."""
    z = np.zeros(n)
    if d.accounts is None:
        liq = d.out.bar_i[:, R.BI_LONG_LIQ] + d.out.bar_i[:, R.BI_SHORT_LIQ]
        return {"contagion_usd": z, "own_market_usd": liq / R.USD_SCALE if n else z, "account_deficit_usd": z}
    ab = d.accounts["bar_i"]
    S = R.USD_SCALE
    liq = d.out.bar_i[:, R.BI_LONG_LIQ] + d.out.bar_i[:, R.BI_SHORT_LIQ]
    return {"contagion_usd": ab[:, R.AB_CONTAGION] / S, "own_market_usd": (liq + ab[:, R.AB_OWN]) / S,
            "account_deficit_usd": ab[:, R.AB_DEFICIT] / S}


def liquidations_frame(s: str, d: SymbolRun, exchange: str = "", symbols: list[str] | None = None) -> pl.DataFrame:
    """The ``liquidations`` rows of one symbol on one venue (:data:`LIQUIDATIONS_SCHEMA`);
    ``symbols`` (the run's results keys, in order) names the contagion sources."""
    out, a = d.out, d.pop.arrays
    hit = out.x_pos.astype(np.int64)
    if d.rows is not None:  # the kernel ran the rows the account engine left: back to population rows
        hit = d.rows[hit]
    w = a["weight"][hit].astype(np.float64)
    fill = out.x_fill
    ap = d.accounts
    account = ap["row_account"][hit].astype(np.int64) if ap is not None else np.full(hit.size, R.NO_ACCOUNT, np.int64)
    df = (
        pl.DataFrame(
            {
                "symbol": pl.Series([s] * hit.size, dtype=pl.String),
                "exchange": pl.Series([exchange] * hit.size, dtype=pl.String),
                "position": hit,
                "side": a["side"][hit],
                "exit": pl.Series(out.x_code).replace_strict(R.EXIT_NAMES, return_dtype=pl.String),
                "ts": out.x_ts,
                "fill": fill,
                "round": out.x_round,
                "qty": a["qty"][hit] * w,
                "notional_usd": out.x_usd,  # market share (kernel: a bankrupt position ADL took over in part)
                "weight": w,
                "leverage": a["leverage"][hit],
                "margin_mode": a["margin_mode"][hit],
                "entry": a["entry"][hit],
                "liq_price": a["liq_price"][hit],
                "account": account,
                "contagion": np.zeros(hit.size, np.int8),
                "source": pl.Series([None] * hit.size, dtype=pl.String),
            }
        )
        .with_columns(pl.col("ts").cast(pl.Int64).cast(TS))
    )
    if ap is not None and len(ap["row"]):
        r = ap["row"]
        wr = a["weight"][r].astype(np.float64)
        names = list(symbols or [])
        src = [("collateral" if x == R.SOURCE_COLLATERAL else names[x]) if c else None for x, c in zip(ap["source"].tolist(), ap["contagion"].tolist())]
        qr = a["qty"][r] * ap["share"] * wr  # a partial liquidation's exit: its share of the row
        eng = pl.DataFrame(
            {
                "symbol": [s] * r.size, "exchange": [exchange] * r.size, "position": r, "side": a["side"][r], "exit": ["liquidated"] * r.size, "ts": ap["ts"],
                "fill": ap["fill"], "round": np.zeros(r.size, np.int16), "qty": qr, "notional_usd": _engine_usd(d),
                "weight": wr, "leverage": a["leverage"][r], "margin_mode": a["margin_mode"][r], "entry": a["entry"][r],
                "liq_price": a["liq_price"][r], "account": ap["account"].astype(np.int64), "contagion": ap["contagion"].astype(np.int8),
                "source": pl.Series(src, dtype=pl.String),
            }
        ).with_columns(pl.col("ts").cast(pl.Int64).cast(TS))
        df = pl.concat([df, eng])
    return df.sort("ts", "position")  # records come by path point; order them by time, then position


def assemble(prep: Any, per: dict[str, SymbolRun], mode: str, shock: str | None, pop_params: Any, sim: Any, timings: dict,
             summary_only: bool = False, accounts: Any = None) -> SimResult:
    """The :class:`SimResult` of a run from each symbol's :class:`SymbolRun`.
    ``summary_only``: the frames stay empty (sweeps). ``accounts``: the account engine's run
    (contagion.EngineRun) when accounts were on: the summary gets its ``contagion_*`` fields."""
    frames: dict[str, list[pl.DataFrame]] = {name: [] for name in FRAME_SCHEMAS}
    rounds_total = None
    per_symbol: dict[str, SymbolSummary] = {}
    for s, d in per.items():
        leg = _leg(prep, s)
        ru = d.out.round_units
        rounds_total = ru.copy() if rounds_total is None else _add_padded(rounds_total, ru)
        per_symbol[s] = _symbol_summary(d, mode, leg, _oi_windows(prep, leg))
        if summary_only:
            continue
        bars, bf = d.bars, d.out.bar_f
        sym, ex = leg.symbol, leg.exchange
        obs_oi = None
        if getattr(prep, "store", None) is not None and len(bars["ts"]):
            from backtest.population_inputs import open_interest_at

            obs_oi = open_interest_at(prep.store, ex, sym, np.asarray(bars["ts"], np.int64) + d.market.bar_ms, "open_interest_usd")
        frames["bars"].append(bars_frame(sym, d, ex, leg.path_exchange, obs_oi))
        liqs = liquidations_frame(sym, d, ex, accounts.symbols if accounts is not None else None)
        frames["liquidations"].append(liqs)
        p0 = float(bars["open"][0])
        arr = d.pop.arrays
        late = arr["open_time"] > int(bars["ts"][0])
        if late.any():  # the map is of the book before the event: not the positions opening during it
            arr = {k: v[~late] for k, v in arr.items()}
        lm = _with_exchange(liq_map_frame(arr, sym, p0, sim.bucket_pct), ex)
        frames["liq_map"].append(lm)
        frames["heatmap"].append(_with_exchange(heatmap_frame(liqs, p0, sim.bucket_pct, sim.heatmap_minutes), ex))
        path_lo = float(np.min(bf[:, R.BF_LOW])) if len(bars["ts"]) else p0
        path_hi = float(np.max(bf[:, R.BF_HIGH])) if len(bars["ts"]) else p0
        frames["clusters"].append(_with_exchange(clusters_frame(lm, liqs, p0, path_lo, path_hi, sim), ex))
    funded: dict[str, bool] = {}
    for k, d in per.items():
        ex = _leg(prep, k).exchange
        funded[ex] = funded.get(ex, False) or bool(np.any(d.bars["funding_rate"] != 0.0))
    try:
        prep._funded = funded
    except AttributeError:  # pragma: no cover - a read-only stand-in
        pass
    summary = make_summary(prep, per_symbol, exit_totals(per), rounds_total, mode, shock, pop_params, sim, timings,
                           venues=venue_summaries(prep, per, per_symbol))
    if accounts is not None:
        from backtest.contagion import notes, summary_fields

        for k, v in summary_fields(accounts, {s: _liq_arrays(d, accounts.symbols) for s, d in per.items() if d.accounts is not None}).items():
            setattr(summary, k, v)
        summary.notes = [n for n in summary.notes if not n.startswith("cross positions are simulated")] + notes(accounts)
    if summary_only:
        empty = pl.DataFrame()
        return SimResult(summary, empty, empty, empty, empty, empty)
    return SimResult(summary, **{name: pl.concat(fs) for name, fs in frames.items()})


def _liq_arrays(d: SymbolRun, symbols: list[str]) -> dict[str, np.ndarray]:
    """Every liquidation of one symbol (both engines) for contagion.summary_fields."""
    out, a = d.out, d.pop.arrays
    liq = out.x_code == R.EXIT_LIQUIDATED
    hit = out.x_pos[liq].astype(np.int64)
    if d.rows is not None:
        hit = d.rows[hit]
    ap = d.accounts
    acc = ap["row_account"][hit].astype(np.int64)
    usd = out.x_usd[liq]
    w = a["weight"][hit].astype(np.float64)
    cont = np.zeros(hit.size, np.int8)
    src = np.full(hit.size, -1, np.int64)
    if len(ap["row"]):
        r = ap["row"]
        acc = np.concatenate([acc, ap["account"].astype(np.int64)])
        wr = a["weight"][r].astype(np.float64) * ap["share"]  # a partial exit counts its share of the row
        usd = np.concatenate([usd, _engine_usd(d)])
        w = np.concatenate([w, wr])
        cont = np.concatenate([cont, ap["contagion"]])
        src = np.concatenate([src, ap["source"].astype(np.int64)])
    return {"account": acc, "usd": usd, "weight": w, "contagion": cont, "source": src}


def _leg(prep: Any, key: str) -> Any:
    """The events.Leg of a results key (an object without legs: the event's primary exchange)."""
    if hasattr(prep, "leg"):
        return prep.leg(key)
    from backtest.events import Leg

    ex = getattr(prep.event, "exchange", "")
    return Leg(key, ex, key, ex)


def _with_exchange(df: pl.DataFrame, exchange: str) -> pl.DataFrame:
    """``df`` with an ``exchange`` column right after ``symbol``."""
    if "exchange" in df.columns:
        df = df.drop("exchange")
    cols = df.columns
    df = df.with_columns(pl.lit(exchange, dtype=pl.String).alias("exchange"))
    at = cols.index("symbol") + 1 if "symbol" in cols else 0
    return df.select([*cols[:at], "exchange", *cols[at:]])


def venue_summaries(prep: Any, per: dict[str, SymbolRun], per_symbol: dict[str, SymbolSummary]) -> dict[str, VenueSummary]:
    """Each venue's :class:`VenueSummary` (primary exchange first), from its legs' runs."""
    groups: dict[str, list[str]] = {}
    for k in per:
        groups.setdefault(_leg(prep, k).exchange, []).append(k)
    out: dict[str, VenueSummary] = {}
    for ex, keys in groups.items():
        tot = exit_totals({k: per[k] for k in keys})
        long_usd, short_usd = tot["long"], tot["short"]
        total = long_usd + short_usd
        legs = [_leg(prep, k) for k in keys]
        proxy = next((leg.path_exchange for leg in legs if leg.path_exchange != leg.exchange), None)
        rule = str(getattr(per[keys[0]].pop, "venue", "") or "")
        if not rule:
            code = per[keys[0]].pop.arrays["venue"]
            rule = R.VENUE_NAMES.get(int(code[0]), "") if code.size else ""
        out[ex] = VenueSummary(
            exchange=ex,
            margin_rule=rule,
            symbols=[leg.symbol for leg in legs],
            path_proxy=proxy,
            positions=int(sum(per_symbol[k].positions for k in keys)),
            open_notional_usd=float(sum(per_symbol[k].open_notional_usd for k in keys)),
            liquidated_notional_usd=total,
            long_liquidated_usd=long_usd,
            short_liquidated_usd=short_usd,
            long_share=long_usd / total if total > 0 else None,
            stopped_notional_usd=tot["stopped"],
            peak_minute=tot["peak_minute"],
            peak_minute_notional_usd=tot["peak_usd"],
            adl_notional_usd=tot["adl"],
            insurance_fund_start_usd=float(sum(per[k].fund0 for k in keys)),
            insurance_fund_min_usd=float(sum(per_symbol[k].insurance_fund_min_usd for k in keys)),
            open_interest_kinds={leg.symbol: per_symbol[k].open_interest_kind for leg, k in zip(legs, keys)},
        )
    return out


def _add_padded(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = max(a.size, b.size)
    out = np.zeros(n, np.int64)
    out[: a.size] += a
    out[: b.size] += b
    return out


#: notes every summary carries
NOTES = (
    "price_source: 'last-anchored-to-mark' = finest last-price bars scaled and clipped to the hourly mark; 'last' = last price stands in for the mark (flagged); 'mark' = 1h mark",
    "insurance_fund_min_usd is the sum of the per-symbol minima (each symbol holds its share of the fund)",
    "cross positions are simulated with their allotted collateral, like isolated ones",
    "amplification is the open-notional-weighted mean of the per-symbol values",
    "cascade depth counts rounds after the first that triggered forced orders (liquidations or stops)",
    "liquidated notional is valued at fill prices: the price the path reached (after a gap, the first path price past the trigger), moved by the forced orders' own impact, bounded by the order book; in replay that impact does not move the path (impact_model=none: fills at the price reached)",
)


def _notes(per_symbol: dict[str, SymbolSummary], mode: str, shock: str | None, sim: Any) -> list[str]:
    notes = list(NOTES)
    n_cut = sum(v.bars_at_max_rounds for v in per_symbol.values())
    if n_cut:
        notes.append(f"{n_cut} bar(s) had a cascade cut by max_rounds={sim.max_rounds} while its last round still moved the price: cascade depth is truncated there (raise max_rounds)")
    if mode == "cascade" and not shock:
        notes.append("cascade on the observed path: the observed moves already contain the real cascade's impact, so feedback is counted on top of it (use --shock for a clean exogenous move)")
    return notes + _estimate_notes(per_symbol)


def make_summary(prep: Any, per_symbol: dict[str, SymbolSummary], tot: dict, rounds_total: Any, mode: str, shock: str | None,
                 pop_params: Any, sim: Any, timings: dict, venues: dict[str, VenueSummary] | None = None) -> Summary:
    """The run's :class:`Summary` from the per-symbol summaries and the exit totals."""
    long_usd, short_usd = tot["long"], tot["short"]
    total = long_usd + short_usd
    on = sum(v.open_notional_usd for v in per_symbol.values())
    amp = sum(v.amplification * v.open_notional_usd for v in per_symbol.values()) / on if on > 0 else 0.0
    ru = (rounds_total / R.USD_SCALE) if rounds_total is not None else np.zeros(1)
    last = int(np.max(np.flatnonzero(ru))) if np.any(ru > 0) else 0
    ru = ru[: last + 1]
    branching = float(ru[1:].sum() / ru[:-1].sum()) if ru.size > 1 and ru[:-1].sum() > 0 else 0.0
    long_share = long_usd / total if total > 0 else None
    return Summary(
        event=prep.event.id,
        mode=mode,
        shock=shock,
        symbols=list(prep.symbols),
        positions=int(sum(v.positions for v in per_symbol.values())),
        open_notional_usd=on,
        liquidated_notional_usd=total,
        long_liquidated_usd=long_usd,
        short_liquidated_usd=short_usd,
        long_share=long_share,
        stopped_notional_usd=tot["stopped"],
        peak_minute=tot["peak_minute"],
        peak_minute_notional_usd=tot["peak_usd"],
        max_cascade_depth=int(max((v.max_cascade_depth for v in per_symbol.values()), default=0)),
        bars_at_max_rounds=int(sum(v.bars_at_max_rounds for v in per_symbol.values())),
        amplification=float(amp),
        branching_ratio=branching,
        round_notional_usd=[float(x) for x in ru],
        adl_notional_usd=tot["adl"],
        insurance_fund_min_usd=float(sum(v.insurance_fund_min_usd for v in per_symbol.values())),
        # over every venue's fund (each venue's own; one venue: the insurance_fund_usd parameter)
        insurance_fund_start_usd=float(sum(v.insurance_fund_start_usd for v in venues.values())) if venues and len(venues) > 1
        else float(sim.insurance_fund_usd),
        seed=pop_params.seed,
        price_source={s: v.price_source for s, v in per_symbol.items()},
        per_symbol=per_symbol,
        venues=venues or {},
        published=_published(prep.event, total, long_share, tot["peak_usd"], venues or {}),
        timings_s=timings,
        params={**as_dict(pop_params), **as_dict(sim)},
        notes=_notes(per_symbol, mode, shock, sim) + _venue_notes(prep, venues or {}, getattr(prep, "_funded", None)),
    )


def _published(ev: Any, total: float, long_share: float | None, peak: float, venues: dict[str, VenueSummary] | None = None) -> list[PublishedFigure]:
    """The event's catalogued figures beside the simulated ones: a figure whose ``scope`` is one
    of the run's venues (an exchange id) beside that venue's result, any other beside the total."""
    sim = {"liquidated_notional_usd": total, "long_share": long_share, "peak_minute_notional_usd": peak}
    out = []
    for f in getattr(ev, "figures", ()) or ():
        m = f.get("metric")
        if m in sim:
            pub = f.get("value_usd", f.get("value"))
            v = (venues or {}).get(f.get("scope"))
            simulated = v[m] if v is not None else sim[m]
            out.append(PublishedFigure(metric=m, scope=f.get("scope"), published=pub, simulated=simulated, source=f.get("source")))
    return out


def _venue_notes(prep: Any, venues: dict[str, VenueSummary], funded: dict[str, bool] | None = None) -> list[str]:
    """Notes on a multi-venue run's assumptions (none for a single venue). ``funded``: venue ->
    whether any funding payment fell in the window (from the store's funding of that venue)."""
    if len(venues) < 2:
        return []
    primary = next(iter(venues))
    notes = [
        f"venues: {', '.join(venues)}; the top-level figures are totals over venues, venues[EXCHANGE] each venue's own; "
        "each venue's population is built from its own open interest, tiers and margin rule, on its own bars and funding",
        f"insurance fund of each venue other than {primary}: insurance_fund_usd x its open notional / {primary}'s "
        "(assumption: no per-venue fund is catalogued); each venue's fund covers only its own positions",
    ]
    for ex, v in venues.items():
        if v.path_proxy:
            notes.append(f"{ex} has no bars in the store: its path is a PROXY, {v.path_proxy}'s bars for the same symbols "
                         f"(bars.parquet path_exchange = {v.path_proxy}); its prices on the day differed")
    unfunded = [ex for ex, ok in (funded or {}).items() if not ok]
    if unfunded:
        notes.append(f"no funding payment stored in the window for {', '.join(unfunded)}: none charged there "
                     "(download the venue's funding: Binance, Bybit and OKX settle every 8 h, Hyperliquid every hour)")
    pops = getattr(prep, "populations", {}) or {}
    borrowed: dict[str, list[str]] = {}
    for k, pe in pops.items():
        src = getattr(pe, "tiers_source", "")
        if src.startswith("assumption"):
            borrowed.setdefault(src, []).append(k.split("@")[0])
    for src, syms in borrowed.items():
        notes.append(f"leverage tiers, {src.removeprefix('assumption: ')}: an assumption, for {', '.join(syms)} "
                     "(fetch the venue's own with backtest fetch or import them with backtest data import-tiers)")
    return notes


def _estimate_notes(per_symbol: dict[str, Any]) -> list[str]:
    """One note naming the symbols whose open interest is an estimate, with the first one's
    derivation (every symbol's is in ``per_symbol[...]["open_interest_source"]``)."""
    est = [(s, v["open_interest_source"]) for s, v in per_symbol.items() if v.get("open_interest_kind") == "estimate"]
    if not est:
        return []
    names = ", ".join(s for s, _ in est)
    first_sym, first = est[0]
    more = "; the others' in summary.json, per_symbol.open_interest_source" if len(est) > 1 else ""
    return [f"open interest estimated, no published level, for {names}. {first_sym}: {first.removeprefix('estimate: ')}{more}"]
