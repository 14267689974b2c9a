"""FAKE stand-in for ``backtest.simulate`` (not a test module: it holds no tests).

It follows the simulation API contract (``prepare``, ``simulate_prepared``, ``run_event``,
``SimResult``) with a synthetic crash path and made-up liquidations, so that the report, sweep
and executor code can be tested fast and independently of the real kernels. Results depend only
on the event id and the parameters (deterministic per seed), like the real API. Nothing here is
a model of anything: never use its numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

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


@dataclass
class FakePrepared:
    event_id: str
    symbols: tuple
    params: dict
    paths: dict  # symbol -> (open, high, low, close) arrays
    ts: np.ndarray


@dataclass
class FakeSimResult:
    summary: dict
    bars: pl.DataFrame
    liquidations: pl.DataFrame
    clusters: pl.DataFrame
    liq_map: pl.DataFrame
    heatmap: pl.DataFrame
    extra: dict = field(default_factory=dict)

    def write(self, out_dir) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(self.summary, indent=2))
        self.bars.write_parquet(out / "bars.parquet")
        self.liquidations.write_parquet(out / "liquidations.parquet")
        self.clusters.write_parquet(out / "clusters.parquet")


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


def simulate_prepared(prepared, overrides=None, mode="cascade", shock=None):
    p = dict(prepared.params)
    p.update(_params(overrides) if overrides else {})
    for k, v in (overrides or {}).items():
        p[k] = v
    rng = np.random.default_rng(int(p["seed"]))
    feedback = 1.0 if mode == "replay" else 1.0 + float(p["impact_coef"]) / float(p["depth_multiplier"])
    scale = 1e8 * float(p["oi_scale"]) * float(p["leverage_scale"]) * feedback
    dt = pl.Datetime("ms", "UTC")
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
            pl.DataFrame(
                {
                    "ts": prepared.ts,
                    "symbol": s,
                    "open": o,
                    "high": h,
                    "low": lo * (1 + endo),
                    "close": c,
                    "long_liq_notional_usd": longs,
                    "short_liq_notional_usd": shorts,
                    "long_liq_count": (longs / 2e4).astype(np.int64),
                    "short_liq_count": (shorts / 2e4).astype(np.int64),
                    "stop_notional_usd": longs * 0.1,
                    "adl_notional_usd": adl,
                    "insurance_fund_usd": fund_path,
                    "rounds": rounds.astype(np.int32),
                    "endogenous_move": endo,
                }
            ).with_columns(pl.col("ts").cast(dt))
        )
        k = max(1, int(longs.sum() / 5e6))
        idx = rng.choice(n, size=min(k, 2000), p=(longs + shorts) / (longs + shorts).sum())
        liqs.append(
            pl.DataFrame(
                {
                    "symbol": s,
                    "side": np.where(rng.random(len(idx)) < float(p["long_share"]), 1, -1).astype(np.int8),
                    "ts": prepared.ts[idx],
                    "fill_price": c[idx],
                    "notional_usd": rng.pareto(1.5, len(idx)) * 1e4 + 1e3,
                }
            ).with_columns(pl.col("ts").cast(dt))
        )
        p0 = c[0]
        edges = p0 * np.linspace(0.75, 1.25, 51)
        mids = 0.5 * (edges[1:] + edges[:-1])
        lm_long = np.where(mids < p0, scale * 3 * np.exp(-((mids / p0 - 0.9) ** 2) / 0.002), 0.0)
        lm_short = np.where(mids > p0, scale * 1.5 * np.exp(-((mids / p0 - 1.07) ** 2) / 0.001), 0.0)
        for side, arr in ((1, lm_long), (-1, lm_short)):
            liq_map.append(
                pl.DataFrame({"symbol": s, "side": np.int8(side), "price_low": edges[:-1], "price_high": edges[1:], "notional_usd": arr})
            )
        low = float(lo.min())
        tot = float(lm_long.sum() + lm_short.sum()) or 1.0
        clusters.append(
            pl.DataFrame(
                {
                    "symbol": [s, s],
                    "side": np.array([1, -1], dtype=np.int8),
                    "price_low": [p0 * 0.88, p0 * 1.05],
                    "price_high": [p0 * 0.92, p0 * 1.09],
                    "notional_usd": [float(lm_long.sum()), float(lm_short.sum())],
                    "share": [float(lm_long.sum()) / tot, float(lm_short.sum()) / tot],
                    "reached": [bool(low <= p0 * 0.92), bool(h.max() >= p0 * 1.05)],
                }
            )
        )
        tb = prepared.ts[::5]
        pe = np.linspace(lo.min() * 0.99, h.max() * 1.01, 41)
        H = np.zeros((len(tb), 40))
        for j in range(n):
            b = min(j // 5, len(tb) - 1)
            q = min(max(int(np.searchsorted(pe, c[j]) - 1), 0), 39)
            H[b, q] += longs[j] + shorts[j]
        bi, qi = np.nonzero(H)
        heat.append(
            pl.DataFrame(
                {"ts": tb[bi], "symbol": s, "price_low": pe[qi], "price_high": pe[qi + 1], "notional_usd": H[bi, qi]}
            ).with_columns(pl.col("ts").cast(dt))
        )
    bars_df = pl.concat(bars)
    per_min = bars_df.group_by("ts").agg((pl.col("long_liq_notional_usd") + pl.col("short_liq_notional_usd")).sum().alias("n")).sort("ts")
    peak = per_min.sort("n", descending=True).row(0)
    long_usd = float(bars_df["long_liq_notional_usd"].sum())
    short_usd = float(bars_df["short_liq_notional_usd"].sum())
    total = long_usd + short_usd
    summary = {
        "event": prepared.event_id,
        "symbols": list(prepared.symbols),
        "positions": 250_000,
        "open_notional_usd": scale * 200,
        "liquidated_notional_usd": total,
        "long_liquidated_usd": long_usd,
        "short_liquidated_usd": short_usd,
        "long_share": long_usd / total if total else 0.0,
        "peak_minute": peak[0].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "peak_minute_notional_usd": float(peak[1]),
        "max_cascade_depth": int(bars_df["rounds"].max()),
        "amplification": 0.0 if mode == "replay" else float(p["impact_coef"]) * 0.3,
        "adl_notional_usd": float(bars_df["adl_notional_usd"].sum()),
        "insurance_fund_min_usd": float(bars_df["insurance_fund_usd"].min()),
        "seed": int(p["seed"]),
        "params": dict(p),
    }
    return FakeSimResult(summary, bars_df, pl.concat(liqs), pl.concat(clusters), pl.concat(liq_map), pl.concat(heat))


def run_event(event_id, *, mode="replay", overrides=None, shock=None, symbols=None, store=None, progress=None):
    return simulate_prepared(prepare(event_id, overrides, symbols, store), None, mode=mode, shock=shock)
