"""Recorded-format payload rows built at test time from the real data in /work/shared/data.

* ``klines:1m`` BTCUSDT: the 262 real 1m rows of 2025-10-10 19:38-23:59 UTC, already in the
  ``/fapi/v1/klines`` array layout (unlicensed_raw_binance/BTCUSDT_1m_futures_20251010_1938_2359.csv).
* ``markPriceKlines:1h`` BTCUSDT: real 1h mark-price bars (binance_usdm_oct2025).
* ``indexPriceKlines:1h``: no real index-price history exists in shared/data, so the mark bars
  stand in (same layout; only the parsing path is under test).
* ``funding`` BTCUSDT: real settlements 2025-09-26..10-26 (binance_usdm_oct2025).
* ``klines:1h`` BTCUSDT: DERIVED from the real 15m bars (hourly aggregates; see ``klines_1h``).
* ``openInterestHist:5m`` / ``globalLongShortAccountRatio:5m``: no open-interest history exists in
  shared/data (see PROVENANCE.md), so these rows are SYNTHETIC (derived from the real 1m volume so
  they vary), used only to exercise the wire format and paging.
"""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

SHARED = Path(os.environ.get("BACKTEST_SHARED_DATA", "/work/shared/data"))
KLINES_1M = SHARED / "unlicensed_raw_binance" / "BTCUSDT_1m_futures_20251010_1938_2359.csv"
MARK_1H = SHARED / "binance_usdm_oct2025" / "usdm_1h_mark_multi_20250926_20251026.csv.gz"
FUNDING = SHARED / "binance_usdm_oct2025" / "usdm_funding_multi_20250926_20251026.csv"
TIERS = SHARED / "leverage_tiers" / "binance_leverage_tiers_freqtrade_2024-10.json"


def brackets(symbol: str = "BTC/USDT:USDT") -> list[dict]:
    """Binance's raw /fapi/v1/leverageBracket entries for a market, as kept in the ``info`` of the
    real (Oct 2024) ccxt-format tier file in shared/data, with numbers as Binance sends them."""
    import json

    out = []
    for t in json.loads(TIERS.read_text())[symbol]:
        i = t["info"]
        out.append({"bracket": int(i["bracket"]), "initialLeverage": int(i["initialLeverage"]), "notionalCap": int(float(i["notionalCap"])),
                    "notionalFloor": int(float(i["notionalFloor"])), "maintMarginRatio": float(i["maintMarginRatio"]), "cum": float(i["cum"])})
    return out


def klines_1m() -> list[list]:
    out = []
    with open(KLINES_1M, newline="") as f:
        r = csv.reader(f)
        next(r)
        for row in r:
            out.append([int(row[0]), row[1], row[2], row[3], row[4], row[5], int(row[6]), row[7], int(row[8]), row[9], row[10], row[11]])
    return out


def mark_1h(symbol: str = "BTCUSDT") -> list[list]:
    out = []
    with gzip.open(MARK_1H, "rt", newline="") as f:
        for row in csv.DictReader(f):
            if row["symbol"] == symbol:
                t = int(row["timestamp"])
                out.append([t, row["open"], row["high"], row["low"], row["close"], "0", t + 3_599_999, "0", 60, "0", "0", "0"])
    return out


def funding(symbol: str = "BTCUSDT") -> list[dict]:
    out = []
    with open(FUNDING, newline="") as f:
        for row in csv.DictReader(f):
            if row["symbol"] == symbol:
                out.append({"symbol": symbol, "fundingTime": int(row["timestamp"]), "fundingRate": f"{float(row['funding_rate']):.8f}", "markPrice": "0"})
    return out


def synthetic_oi_5m(kl: list[list]) -> tuple[list[dict], list[dict]]:
    oi, lsr = [], []
    for i in range(len(kl) - 4):
        chunk = kl[i:i + 5]
        t = chunk[0][0]
        if t % 300_000:
            continue
        vol = sum(float(r[5]) for r in chunk)
        amount = 90_000 + vol
        price = float(chunk[-1][4])
        oi.append({"symbol": "BTCUSDT", "sumOpenInterest": f"{amount:.4f}", "sumOpenInterestValue": f"{amount * price:.8f}", "timestamp": t})
        la = 0.5 + (vol % 100) / 1000
        lsr.append({"symbol": "BTCUSDT", "longAccount": f"{la:.4f}", "longShortRatio": f"{la / (1 - la):.4f}", "shortAccount": f"{1 - la:.4f}", "timestamp": t})
    return oi, lsr


def klines_15m(symbol: str) -> list[list]:
    """Real 15m bars (binance_usdm_oct2025) in the klines array layout; quote volume and trade
    count are not in the source file and are sent as 0."""
    out = []
    with open(SHARED / "binance_usdm_oct2025" / f"{symbol}_15m_futures_20251006_20251017.csv", newline="") as f:
        for row in csv.DictReader(f):
            t = int(row["timestamp"])
            out.append([t, row["open"], row["high"], row["low"], row["close"], row["volume"], t + 899_999, "0", 0, "0", "0", "0"])
    return out


def klines_1h(symbol: str) -> list[list]:
    """1h bars DERIVED from the real 15m bars (first open, max high, min low, last close, summed
    volume; quote volume estimated as the sum of volume x close) in the klines array layout:
    shared/data has no 1h last-price bars for these days."""
    by_hour: dict[int, list[list]] = {}
    for r in klines_15m(symbol):
        by_hour.setdefault(r[0] // 3_600_000 * 3_600_000, []).append(r)
    out = []
    for t, rs in sorted(by_hour.items()):
        if len(rs) != 4:
            continue
        vol = sum(float(r[5]) for r in rs)
        quote = sum(float(r[5]) * float(r[4]) for r in rs)  # estimated: volume x close of each 15m bar
        out.append([t, rs[0][1], str(max(float(r[2]) for r in rs)), str(min(float(r[3]) for r in rs)), rs[-1][4], f"{vol:.3f}",
                    t + 3_599_999, f"{quote:.2f}", 0, "0", "0", "0"])
    return out


def hyperliquid_funding_hourly() -> list[dict]:
    """SYNTHETIC hourly funding in Hyperliquid's ``fundingHistory`` layout: each real Binance
    8-hourly BTC rate spread evenly over the 8 hours it covers (Hyperliquid settles every hour);
    only the wire format and paging are under test."""
    out = []
    for f in funding():
        t, r = int(f["fundingTime"]), float(f["fundingRate"])
        for k in range(8):
            out.append({"coin": "BTC", "fundingRate": repr(r / 8), "premium": "0.0", "time": t + k * 3_600_000})
    return out


def all_data() -> dict:
    kl = klines_1m()
    mk = mark_1h()
    oi, lsr = synthetic_oi_5m(kl)
    return {
        ("binance", "klines:1m", "BTCUSDT"): kl,
        ("binance", "klines:15m", "BTCUSDT"): klines_15m("BTCUSDT"),
        ("binance", "klines:15m", "ETHUSDT"): klines_15m("ETHUSDT"),
        ("binance", "klines:1h", "BTCUSDT"): klines_1h("BTCUSDT"),
        ("binance", "markPriceKlines:1h", "BTCUSDT"): mk,
        ("binance", "indexPriceKlines:1h", "BTCUSDT"): mk,
        ("binance", "funding", "BTCUSDT"): funding(),
        ("binance", "brackets", "BTCUSDT"): brackets(),
        ("binance", "openInterestHist:5m", "BTCUSDT"): oi,
        ("binance", "globalLongShortAccountRatio:5m", "BTCUSDT"): lsr,
        ("hyperliquid", "funding", "BTC"): hyperliquid_funding_hourly(),
    }
