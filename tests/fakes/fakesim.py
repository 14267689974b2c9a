"""FAKE stand-in for ``backtest.simulate`` (not a test module: it holds no tests).

It implements the simulation API protocol (:class:`backtest.sim_api.SimulationAPI`:
``param_groups``, ``population_param_names``, ``prepare``, ``simulate_prepared``) with a
synthetic crash path and made-up liquidations, returning a real ``results.SimResult`` (a typed
``Summary`` and frames of the declared ``results.FRAME_SCHEMAS``), so that the report, sweep and
executor code can be tested fast and independently of the real kernels; pass the module as
``sim=``. Results depend only
on the event id and the parameters (deterministic per seed), like the real API. Nothing here is
a model of anything: never use its numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from backtest.results import FRAME_SCHEMAS, SimResult, Summary, SymbolSummary

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT")
START_MS = 1760126400000  # 2025-10-10T20:00:00Z
BAR_MS = 60_000
N_BARS = 240
PRICE0 = {"BTC/USDT:USDT": 121_000.0, "ETH/USDT:USDT": 4_350.0}

#: flat parameters the fake understands (the real ones come from PopulationParams / SimParams)
DEFAULTS = {
    "seed": 7,
    "long_share": 0.6,
    "leverage_scale": 1.0,
    "oi_scale": 1.0,
    "impact_coef": 0.5,
    "depth_multiplier": 1.0,
    "insurance_fund_usd": 1.0e9,
    "impact_model": "sqrt",
}


@dataclass(frozen=True)
class FakeParams:
    """The fake's parameter group (stands in for PopulationParams + SimParams)."""

    seed: int = 7
    long_share: float = 0.6
    leverage_scale: float = 1.0
    oi_scale: float = 1.0
    impact_coef: float = 0.5
    depth_multiplier: float = 1.0
    insurance_fund_usd: float = 1.0e9
    impact_model: str = "sqrt"

    def validate(self):
        if not 0 <= self.long_share <= 1:
            raise ValueError(f"long_share must be in [0, 1], got {self.long_share}")


def param_groups():
    return [FakeParams()]


def population_param_names() -> set[str]:
    return set()


def _frame(name: str, data: dict) -> pl.DataFrame:
    """A frame of the declared schema ``name`` (columns not given are zeros)."""
    schema = FRAME_SCHEMAS[name]
    n = len(next(iter(data.values())))
    # the venue columns, when not given: the catalogue event's primary exchange
    defaults = {"exchange": ["binanceusdm"] * n, "path_exchange": ["binanceusdm"] * n}
    cols = {c: (data[c] if c in data else defaults.get(c, np.zeros(n))) for c in schema}
    return pl.DataFrame(cols).with_columns([pl.col(c).cast(t) for c, t in schema.items()]).select(list(schema))


@dataclass
class FakePrepared:
    event_id: str
    symbols: tuple
    params: dict
    paths: dict  # symbol -> (open, high, low, close) arrays
    ts: np.ndarray


def _params(overrides):
    p = dict(DEFAULTS)
    for k, v in (overrides or {}).items():
        if k not in DEFAULTS:
            raise ValueError(f"unknown parameter {k!r}")
        p[k] = v
    return p


def prepare(event_id, overrides=None, symbols=None, store=None):
    syms = tuple(symbols or SYMBOLS)
    ts = START_MS + BAR_MS * np.arange(N_BARS, dtype=np.int64)
    t = np.arange(N_BARS)
    paths = {}
    for i, s in enumerate(syms):
        p0 = PRICE0.get(s, 100.0)
        drop = 0.08 + 0.06 * i
        crash = np.where(t < 75, 0.0, np.where(t < 80, (t - 75) / 5.0, np.exp(-(t - 80) / 60.0)))
        close = p0 * (1 - 0.01 * np.sin(t / 17.0) - drop * crash)
        open_ = np.concatenate([[p0], close[:-1]])
        wig = p0 * 0.002 * (1 + 3 * crash)
        paths[s] = (open_, np.maximum(open_, close) + wig, np.minimum(open_, close) - wig, close)
    return FakePrepared(getattr(event_id, "id", event_id), syms, _params(overrides), paths, ts)


def simulate_prepared(prepared, overrides=None, mode="cascade", shock=None, summary_only=False):
    p = dict(prepared.params)
    p.update(_params(overrides) if overrides else {})
    for k, v in (overrides or {}).items():
        p[k] = v
    rng = np.random.default_rng(int(p["seed"]))
    feedback = 1.0 if mode == "replay" else 1.0 + float(p["impact_coef"]) / float(p["depth_multiplier"])
    scale = 1e8 * float(p["oi_scale"]) * float(p["leverage_scale"]) * feedback
    bars, liqs, clusters, liq_map, heat = [], [], [], [], []
    fund = float(p["insurance_fund_usd"])
    for s, (o, h, lo, c) in prepared.paths.items():
        n = len(c)
        ret = np.diff(np.log(c), prepend=math.log(c[0]))
        longs = scale * float(p["long_share"]) * np.clip(-ret, 0, None) * 100 * (1 + rng.random(n))
        shorts = scale * (1 - float(p["long_share"])) * np.clip(ret, 0, None) * 100 * (1 + rng.random(n))
        rounds = np.where(longs + shorts > scale * 0.5, np.minimum(8, (longs / scale).astype(int) + 1), 0)
        adl = np.where(longs > scale * 2, longs * 0.05, 0.0)
        fund_path = fund - np.cumsum(longs * 0.001) + np.cumsum(shorts * 0.0002)
        endo = -0.001 * rounds * (0 if mode == "replay" else 1)
        bars.append(
            _frame("bars", {
                "symbol": [s] * n, "ts": prepared.ts, "open": o, "high": h, "low": lo, "close": c,
                "sim_open": o, "sim_high": h, "sim_low": lo * (1 + endo), "sim_close": c,
                "long_liq_usd": longs, "short_liq_usd": shorts,
                "long_liq_count": (longs / 2e4).astype(np.int64), "short_liq_count": (shorts / 2e4).astype(np.int64),
                "long_stop_usd": longs * 0.1, "adl_usd": adl, "insurance_fund_usd": fund_path,
                "rounds": rounds.astype(np.int32), "endo_move_min_pct": endo * 100.0, "price_source": ["last"] * n,
            })
        )
        k = max(1, int(longs.sum() / 5e6))
        idx = rng.choice(n, size=min(k, 2000), p=(longs + shorts) / (longs + shorts).sum())
        m = len(idx)
        liqs.append(
            _frame("liquidations", {
                "symbol": [s] * m, "position": np.arange(m), "side": np.where(rng.random(m) < float(p["long_share"]), 1, -1),
                "exit": ["liquidated"] * m, "ts": prepared.ts[idx], "fill": c[idx], "round": np.zeros(m),
                "qty": np.ones(m), "notional_usd": rng.pareto(1.5, m) * 1e4 + 1e3, "weight": np.ones(m),
                "leverage": np.full(m, 20.0), "margin_mode": np.zeros(m), "entry": c[idx], "liq_price": c[idx],
            })
        )
        p0 = c[0]
        edges = p0 * np.linspace(0.75, 1.25, 51)
        mids = 0.5 * (edges[1:] + edges[:-1])
        lm_long = np.where(mids < p0, scale * 3 * np.exp(-((mids / p0 - 0.9) ** 2) / 0.002), 0.0)
        lm_short = np.where(mids > p0, scale * 1.5 * np.exp(-((mids / p0 - 1.07) ** 2) / 0.001), 0.0)
        for side, arr in (("long", lm_long), ("short", lm_short)):
            liq_map.append(_frame("liq_map", {
                "symbol": [s] * len(mids), "side": [side] * len(mids), "bucket": np.arange(len(mids)),
                "price_lo": edges[:-1], "price_hi": edges[1:], "open_notional_usd": arr, "positions": arr / 2e4,
            }))
        low = float(lo.min())
        tot = float(lm_long.sum() + lm_short.sum()) or 1.0
        clusters.append(_frame("clusters", {
            "symbol": [s, s], "side": ["long", "short"], "rank": [1, 2],
            "price_lo": [p0 * 0.88, p0 * 1.05], "price_hi": [p0 * 0.92, p0 * 1.09],
            "open_notional_usd": [float(lm_long.sum()), float(lm_short.sum())],
            "share": [float(lm_long.sum()) / tot, float(lm_short.sum()) / tot], "distance_pct": [-10.0, 7.0],
            "reached": [bool(low <= p0 * 0.92), bool(h.max() >= p0 * 1.05)], "liquidated_usd": [float(longs.sum()) * 0.5, 0.0],
        }))
        tb = prepared.ts[::5]
        pe = np.linspace(lo.min() * 0.99, h.max() * 1.01, 41)
        H = np.zeros((len(tb), 40))
        for j in range(n):
            b = min(j // 5, len(tb) - 1)
            q = min(max(int(np.searchsorted(pe, c[j]) - 1), 0), 39)
            H[b, q] += longs[j] + shorts[j]
        bi, qi = np.nonzero(H)
        heat.append(_frame("heatmap", {
            "symbol": [s] * len(bi), "ts": tb[bi], "bucket": qi, "price_lo": pe[qi], "price_hi": pe[qi + 1],
            "long_usd": H[bi, qi] * 0.7, "short_usd": H[bi, qi] * 0.3,
        }))
    bars_df = pl.concat(bars)
    per_min = bars_df.group_by("ts").agg((pl.col("long_liq_usd") + pl.col("short_liq_usd")).sum().alias("n")).sort("ts")
    peak = per_min.sort("n", descending=True).row(0)
    long_usd = float(bars_df["long_liq_usd"].sum())
    short_usd = float(bars_df["short_liq_usd"].sum())
    total = long_usd + short_usd
    per_symbol = {
        s: SymbolSummary(
            price_source="last", timeframe="1m", bars=N_BARS, gaps=0, positions=125_000, population_source="fake",
            open_notional_usd=scale * 100, open_interest_kind="parameter", open_interest_source="open_interest_usd parameter (fake)",
            sigma_daily=0.03, volume_daily_usd=2e10, insurance_fund_start_usd=fund / len(prepared.symbols),
            insurance_fund_min_usd=float(bars_df.filter(pl.col("symbol") == s)["insurance_fund_usd"].min()), adl_shortfall_usd=0.0,
            drawdown_exogenous=0.1, drawdown_simulated=0.1, amplification=0.0, max_cascade_depth=8, bars_at_max_rounds=0, funding_index=0.0,
        )
        for s in prepared.symbols
    }
    summary = Summary(
        event=prepared.event_id, mode=mode, shock=shock, symbols=list(prepared.symbols), positions=250_000,
        open_notional_usd=scale * 200, liquidated_notional_usd=total, long_liquidated_usd=long_usd, short_liquidated_usd=short_usd,
        long_share=long_usd / total if total else 0.0, stopped_notional_usd=float(bars_df["long_stop_usd"].sum()),
        peak_minute=peak[0].strftime("%Y-%m-%dT%H:%M:%SZ"), peak_minute_notional_usd=float(peak[1]),
        max_cascade_depth=int(bars_df["rounds"].max()), bars_at_max_rounds=0,
        amplification=0.0 if mode == "replay" else float(p["impact_coef"]) * 0.3, branching_ratio=0.5, round_notional_usd=[total],
        adl_notional_usd=float(bars_df["adl_usd"].sum()), insurance_fund_min_usd=float(bars_df["insurance_fund_usd"].min()),
        insurance_fund_start_usd=fund, seed=int(p["seed"]), price_source={s: "last" for s in prepared.symbols},
        per_symbol=per_symbol, venues={}, published=[], timings_s={}, params=dict(p), notes=["FAKE simulation: never use its numbers"],
    )
    if summary_only:
        empty = pl.DataFrame()
        return SimResult(summary, empty, empty, empty, empty, empty)
    return SimResult(summary, bars_df, pl.concat(liqs), pl.concat(clusters), pl.concat(liq_map), pl.concat(heat))
