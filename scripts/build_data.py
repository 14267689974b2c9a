"""Rebuild the committed default store ``data/`` from ``../shared/data`` (see data/PROVENANCE.md).

Usage: ``python scripts/build_data.py [--shared ../shared/data] [--store data]``

Everything goes through the same importer as ``backtest data import-csv``; the 1h history files
are cut to each catalogued event's 30-day lookback plus its window and one day after it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backtest.events import load_events
from backtest.sources.csv_import import import_csv, import_tiers
from backtest.store import Store

DAY = 86_400_000

OCT = "binance_usdm_oct2025"
HIST = "binance_usdm_history_1h"
APR = "binance_usdm_apr2025"
RAW = "unlicensed_raw_binance"

WHOLE_FILES = [
    f"{OCT}/BTCUSDT_15m_futures_20251006_20251017.csv",
    f"{OCT}/ETHUSDT_15m_futures_20251006_20251017.csv",
    f"{OCT}/XRPUSDT_15m_futures_20251006_20251017.csv",
    f"{OCT}/DOGEUSDT_15m_futures_20251006_20251017.csv",
    f"{OCT}/SOLUSDT_5m_futures_20251006_20251017.csv",
    f"{OCT}/DOGEUSDT_5m_futures_20251006_20251017.csv",
    f"{OCT}/usdm_1h_futures_multi_20250926_20251026.csv.gz",
    f"{OCT}/usdm_1h_mark_multi_20250926_20251026.csv.gz",
    f"{OCT}/usdm_funding_multi_20250926_20251026.csv",
    f"{RAW}/BTCUSDT_1m_futures_20251010_1938_2359.csv",
    f"{APR}/BTCUSDT_5m_futures_20250330_20250413.csv",
    f"{APR}/ETHUSDT_5m_futures_20250330_20250413.csv",
    f"{APR}/usdm_8h_funding_BTC_ETH_SOL_20250306_20250603.csv",
    f"{APR}/usdm_8h_mark_BTC_ETH_SOL_20250306_20250603.csv",
    f"{RAW}/BTCUSDT_15m_futures_20240801_20240809.csv",
    f"{RAW}/ETHUSDT_15m_futures_20240801_20240809.csv",
]

HISTORY_FILES = [
    f"{HIST}/{s}USDT_1h_futures_full.csv.gz" for s in ("BTC", "ETH", "XRP", "LTC", "ADA", "BCH")
] + [f"{HIST}/BTCUSDT_1h_mark_full.csv.gz", f"{HIST}/ETHUSDT_1h_mark_full.csv.gz", f"{HIST}/usdm_funding_history_BTC_ETH_XRP_LTC_ADA.csv.gz"]

TIERS = "leverage_tiers/binance_leverage_tiers_freqtrade_2024-10.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--store", default=str(Path(__file__).resolve().parents[1] / "data"))
    args = ap.parse_args()
    shared, store = Path(args.shared), Store(args.store)
    for rel in WHOLE_FILES:
        for line in import_csv(store, shared / rel, exchange="binanceusdm"):
            print(line)
    for ev in load_events(args.store):
        since, until = ev.lookback_start_ms, ev.end_ms + DAY
        for rel in HISTORY_FILES:
            for line in import_csv(store, shared / rel, exchange="binanceusdm", since=since, until=until):
                print(f"[{ev.id}] {line}")
    n = import_tiers(store, shared / TIERS, exchange="binanceusdm")
    print(f"leverage tiers: {n} markets")


if __name__ == "__main__":
    main()
