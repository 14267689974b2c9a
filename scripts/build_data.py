"""Rebuild the committed default store ``data/`` from ``../shared/data`` (see data/PROVENANCE.md).

Usage: ``python scripts/build_data.py [--shared ../shared/data] [--store data]``

Everything goes through the same importer as ``backtest data import-csv``; the 1h history files
are cut to each catalogued event's 30-day lookback plus its window and one day after it. Funding
for those spans, for every event symbol and every symbol with kept 1h history, comes from
whichever funding source holds the most settlements in the span (ties go to the first source of
``FUNDING_SOURCES``, the licensed ones before the unlicensed raw file).

The store is built afresh in a temporary folder, then ``--store`` is updated in place: a file is
replaced only when its rows changed (``fetched_at``, the time of the import, is ignored), files
the build no longer makes are removed, and files at the top of the store (``events.toml``,
``PROVENANCE.md``) are left alone. Re-running on unchanged sources therefore changes nothing.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import polars as pl

from backtest.events import load_events
from backtest.paths import write_atomic
from backtest.sources.csv_import import import_csv, import_tiers, parse_file
from backtest.store import Store

DAY = 86_400_000

OCT = "binance_usdm_oct2025"
HIST = "binance_usdm_history_1h"
APR = "binance_usdm_apr2025"
RAW = "unlicensed_raw_binance"
M5 = "unlicensed_binance_usdm_5m_oct2025"

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
    "unlicensed_binance_bookdepth/BTCUSDT-bookDepth-2025-10-10.csv.gz",  # depth (stale bids flagged)
    # Binance 5m bars, 1h mark and funding of 14 perps, 2025-09-08 -> 10-17 (ETH, XRP at 5m; BNB, HYPE...)
    f"{M5}/binance_usdm_5m_14sym_20250908_20251017.csv.gz",
    f"{M5}/binance_usdm_1h_mark_14sym_20250908_20251017.csv",
    f"{M5}/binance_usdm_funding_14sym_20250908_20251017.csv",
    # HYPEUSDT 5-minute open interest and long/short ratio (Binance public-archive metrics)
    "unlicensed_binance_metrics/HYPEUSDT-metrics-5m-20250908-20251012.csv",
]

#: other venues' files, imported whole: (file, ccxt exchange id)
OTHER_VENUE_FILES = [
    ("unlicensed_bybit_linear_oct2025/bybit_linear_5m_8sym_20250924_20251017.csv.gz", "bybit"),
    ("unlicensed_bybit_linear_oct2025/bybit_linear_1h_mark_8sym_20250924_20251017.csv", "bybit"),
    ("unlicensed_bybit_linear_oct2025/bybit_linear_funding_8sym_20250924_20251017.csv", "bybit"),
    ("unlicensed_okx_swap_oct2025/OKX_BTCUSDTSWAP_15m_20251006_20251017.csv", "okx"),
]

HISTORY_SYMBOLS = ("BTC", "ETH", "XRP", "LTC", "ADA", "BCH")
HISTORY_FILES = [f"{HIST}/{s}USDT_1h_futures_full.csv.gz" for s in HISTORY_SYMBOLS] + [
    f"{HIST}/BTCUSDT_1h_mark_full.csv.gz",
    f"{HIST}/ETHUSDT_1h_mark_full.csv.gz",
]

#: funding settlement sources, in order of preference when two hold as many settlements of a span
FUNDING_SOURCES = [
    f"{OCT}/usdm_funding_multi_20250926_20251026.csv",
    f"{APR}/usdm_8h_funding_BTC_ETH_SOL_20250306_20250603.csv",
    f"{HIST}/usdm_funding_history_BTC_ETH_XRP_LTC_ADA.csv.gz",
    f"{RAW}/binance_usdm_funding_all_2020_2026.csv.gz",
]

TIERS = "leverage_tiers/binance_leverage_tiers_freqtrade_2024-10.json"


def build(shared: Path, store: Store, events) -> None:
    """Import everything into ``store`` (a fresh folder), printing one line per import."""
    for rel, exchange in [*((r, "binanceusdm") for r in WHOLE_FILES), *OTHER_VENUE_FILES]:
        for line in import_csv(store, shared / rel, exchange=exchange):
            print(line)
    for ev in events:
        since, until = ev.lookback_start_ms, ev.end_ms + DAY
        for rel in HISTORY_FILES:
            for line in import_csv(store, shared / rel, exchange="binanceusdm", since=since, until=until):
                print(f"[{ev.id}] {line}")
    funding = {rel: parse_file(shared / rel, exchange="binanceusdm")[1] for rel in FUNDING_SOURCES}
    for ev in events:
        since, until = ev.lookback_start_ms, ev.end_ms + DAY
        symbols = list(dict.fromkeys([*ev.symbols, *(f"{s}/USDT:USDT" for s in HISTORY_SYMBOLS)]))
        chosen: dict[str, list[str]] = {}
        for sym in symbols:
            counts = {
                rel: f.filter((pl.col("symbol") == sym) & (pl.col("ts") >= since) & (pl.col("ts") < until)).height
                for rel, f in funding.items()
            }
            best = max(counts, key=lambda rel: (counts[rel], -FUNDING_SOURCES.index(rel)))
            if counts[best] == 0:
                print(f"[{ev.id}] funding {sym}: no source has settlements in the span")
                continue
            chosen.setdefault(best, []).append(sym)
        for rel, syms in chosen.items():
            for line in import_csv(store, shared / rel, exchange="binanceusdm", since=since, until=until, symbols=syms):
                print(f"[{ev.id}] {line} ({', '.join(s.split('/')[0] for s in syms)})")
    n = import_tiers(store, shared / TIERS, exchange="binanceusdm")
    print(f"leverage tiers: {n} markets")


def _same(a: Path, b: Path) -> bool:
    """Same file content; Parquet partitions compare their rows without ``fetched_at``."""
    if a.suffix != ".parquet":
        return a.read_bytes() == b.read_bytes()
    try:
        x, y = pl.read_parquet(a), pl.read_parquet(b)
    except Exception:  # noqa: BLE001 - an unreadable old file is replaced
        return False
    return x.schema == y.schema and x.drop("fetched_at", strict=False).equals(y.drop("fetched_at", strict=False))


def sync(built: Path, target: Path) -> dict[str, int]:
    """Make the data files under ``target``'s sub-folders those of ``built``, touching only what changed."""
    counts = {"unchanged": 0, "changed": 0, "added": 0, "removed": 0}
    new = {p.relative_to(built) for p in built.rglob("*") if p.is_file()}
    old = {p.relative_to(target) for p in target.rglob("*") if p.is_file() and len(p.relative_to(target).parts) > 1}
    for rel in sorted(new):
        src, dst = built / rel, target / rel
        if dst.exists() and _same(src, dst):
            counts["unchanged"] += 1
            continue
        counts["changed" if dst.exists() else "added"] += 1
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(dst, lambda t, src=src: shutil.copyfile(src, t))
    for rel in sorted(old - new):
        (target / rel).unlink()
        counts["removed"] += 1
        parent = (target / rel).parent
        while parent != target and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--store", default=str(Path(__file__).resolve().parents[1] / "data"))
    args = ap.parse_args()
    shared, target = Path(args.shared), Path(args.store)
    if str(args.store).startswith("s3://"):
        ap.error("--store must be a local folder (build locally, then copy)")
    events = load_events(args.store if (target / "events.toml").exists() else None, user=False)  # the catalogue only
    with tempfile.TemporaryDirectory(prefix="build_data_") as tmp:
        build(shared, Store(tmp), events)
        target.mkdir(parents=True, exist_ok=True)
        counts = sync(Path(tmp), target)
    print(f"{target}: " + ", ".join(f"{n} files {k}" for k, n in counts.items()))


if __name__ == "__main__":
    main()
