"""Build ``data/published_figures.toml`` from ``../shared/data/published_figures.json``.

Usage: ``python scripts/build_published_figures.py [--shared ../shared/data] [--out data/published_figures.toml]``

Every figure of the JSON file is carried over with its published fields unchanged (value, unit,
window_utc, scope, source, quote, confidence) and its index in the file (``source_index``). Each is
mapped to a catalogued event (``data/events.toml`` id; ``methodology`` for the caveats) and given
a ``kind``: ``context`` unless it is listed in :data:`COMPARABLE` below, which says, per figure,
what a simulation of the event's committed symbols on Binance can be compared with, and why.

Rules followed (issue 13):

* published liquidation totals are LOWER BOUNDS: Binance, OKX and, until 2025, Bybit publish at
  most one forced order per symbol per second (figure 57);
* all-venue totals are not comparable with a simulation of one venue's few symbols: they stay
  ``context``; a venue total is scaled to the simulated symbols explicitly (``scale`` and
  ``basis`` say by what and why);
* shares (long share) and times (peak minute) are market-wide properties; an all-venue share is
  applied to the simulated scope as an interval or a point with a widened uncertainty, and says so;
* open interest is compared only as a change within one source.

Re-running on the same JSON writes the same file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import tomli_w

from backtest.store import to_ms

EVENT_IDS = {
    "2020-03-12/13 Black Thursday": "2020-03-12",
    "2021-05-19 China ban crash": "2021-05-19",
    "2022-11-08/09 FTX collapse": "2022-11-08",
    "2024-08-05 yen carry-trade unwind": "2024-08-05",
    "2025-04-06/07 Liberation Day tariff sell-off": "2025-04-07",
    "2025-10-10/11 tariff crash": "2025-10-10",
    "methodology caveat": "methodology",
}

B = "binanceusdm"
OCT_SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT", "DOGE/USDT:USDT"]
BTC_ETH = ["BTC/USDT:USDT", "ETH/USDT:USDT"]

#: all-venue coin share of the 2025-10-10 total (figure 58): BTC 5.36 + ETH 4.42 + SOL 2.00 + XRP
#: 0.7075 of $19.31B (DOGE not given, so left out: the share, and the bound, are lower)
OCT_COIN_SHARE = (5.36 + 4.42 + 2.00 + 0.7075) / 19.31
#: all-venue BTC + ETH share of the 2024-08-05 total (figure 43): 362 + 345.7 of $1,060M
AUG_COIN_SHARE = (362.0 + 345.7) / 1060.0

#: Figures a simulation can be compared with, keyed by (source_index, component). ``target`` is
#: the number compared after ``scale``; intervals give ``low``/``high``; points an ``uncertainty``
#: (same unit as the target). ``window_ms`` is the figure's window in UTC ms where it is known.
COMPARABLE: list[dict] = [
    {
        "id": "2025-10-10/binance-liquidations-5sym", "source_index": 58, "component": "Binance",
        "kind": "lower_bound", "metric": "liquidated_notional_usd", "venues": [B], "symbols": OCT_SYMBOLS,
        "window": ["2025-10-10T05:13:00Z", "2025-10-11T05:13:00Z"],
        "scale": OCT_COIN_SHARE,
        "basis": "Binance's $2.4B (all its symbols, throttled feed: a lower bound) x the all-venue share of "
                 "BTC+ETH+SOL+XRP in the $19.31B total (0.647, figure 58), assuming Binance's coin mix is the "
                 "all-venue one; DOGE left out, so the bound is conservative. The 24 h window holds the "
                 "simulated 20:00-00:00 window.",
    },
    {
        "id": "2025-10-10/long-share", "source_index": 72, "component": "long_share_pct",
        "kind": "interval", "metric": "long_share", "venues": ["all"], "symbols": OCT_SYMBOLS,
        "window": ["2025-10-10T00:00:00Z", "2025-10-11T00:00:00Z"],
        "low": 0.80, "high": 0.95,
        "basis": "CoinGlass's 85-90 % long share over all venues (figure 72; 87 % from longs $16.81B of $19.31B, "
                 "figure 58), widened by 5 points on each side because it is applied to Binance's five symbols.",
    },
    {
        "id": "2025-10-10/peak-minute", "source_index": 68, "component": "peak_minute",
        "kind": "point", "metric": "peak_minute", "venues": ["all"], "symbols": OCT_SYMBOLS,
        "window": ["2025-10-10T21:15:00Z", "2025-10-10T21:16:00Z"],
        "target_iso": "2025-10-10T21:15:00Z", "uncertainty": 10 * 60_000,
        "basis": "the all-venue peak minute 21:15 UTC (figure 68); timing is market-wide, so it is compared with "
                 "the simulated peak minute, within 10 minutes (bars of 1-15 minutes, secondary source).",
    },
    {
        "id": "2024-08-05/binance-liquidations-btc-eth", "source_index": 43, "component": "Binance.total",
        "kind": "lower_bound", "metric": "liquidated_notional_usd", "venues": [B], "symbols": BTC_ETH,
        "window": ["2024-08-04T12:00:00Z", "2024-08-05T12:00:00Z"],
        "scale": AUG_COIN_SHARE,
        "basis": "Binance's $412M (all its symbols, throttled feed: a lower bound) x the all-venue BTC+ETH share "
                 "of the $1.06B total (0.668, figure 43), assuming Binance's coin mix is the all-venue one; the "
                 "24 h window overlaps the simulated 18 h window.",
    },
    {
        "id": "2024-08-05/binance-long-share", "source_index": 43, "component": "Binance.long/Binance.total",
        "kind": "point", "metric": "long_share", "venues": [B], "symbols": BTC_ETH,
        "window": ["2024-08-04T12:00:00Z", "2024-08-05T12:00:00Z"],
        "uncertainty": 0.05,
        "basis": "Binance's long liquidations $342.6M of $412.5M (figure 43, all Binance symbols), within 5 points "
                 "(other coins, throttled feed).",
    },
    {
        "id": "2025-04-07/long-share", "source_index": 51, "component": "long_share_pct",
        "kind": "point", "metric": "long_share", "venues": ["all"], "symbols": BTC_ETH,
        "window": ["2025-04-06T00:00:00Z", "2025-04-07T12:00:00Z"],
        "uncertainty": 0.06,
        "basis": "CoinGlass's 86 % long share over all venues (figure 51), applied to Binance BTC/ETH within 6 points.",
    },
    {
        "id": "2022-11-08/long-share", "source_index": 35, "component": "all_longs/total",
        "kind": "point", "metric": "long_share", "venues": ["all"], "symbols": BTC_ETH,
        "window": ["2022-11-08T00:00:00Z", "2022-11-09T00:00:00Z"],
        "uncertainty": 0.08,
        "basis": "CoinGlass's long liquidations $670M of $915M on Nov 8 over all venues (figure 35); applied to "
                 "Binance BTC/ETH over Nov 8-9 within 8 points (a one-day figure for a two-day window).",
    },
    {
        "id": "2021-05-19/binance-liquidations-btc-eth", "source_index": 28, "component": "Binance_USD",
        "kind": "lower_bound", "metric": "liquidated_notional_usd", "venues": [B], "symbols": BTC_ETH,
        "window": ["2021-05-19T00:00:00Z", "2021-05-20T00:00:00Z"],
        "scale": 0.5,
        "basis": "Binance's $1.0B (all its symbols; Binance had stopped streaming every forced order: a lower bound) "
                 "x the all-venue BTC share 50 % (figure 27): a lower bound for Binance BTC, hence for BTC+ETH.",
    },
    {
        "id": "2020-03-12/binance-insurance-fund-used", "source_index": 12, "component": "used_24h_USD",
        "kind": "lower_bound", "metric": "insurance_fund_used_usd", "venues": [B], "symbols": BTC_ETH,
        "window": ["2020-03-12T00:00:00Z", "2020-03-14T00:00:00Z"],
        "target": 6.0e6, "scale": 1.0,
        "basis": "Binance Futures' fund fell from ~12.86M to ~6.23M USDT (figure 12, 'used >$6M'); all its symbols, "
                 "compared with BTC+ETH only on the assumption that they held most of its open interest in March "
                 "2020 (not sourced).",
    },
    {
        "id": "2020-03-12/binance-insurance-fund-start", "source_index": 12, "component": "2020-03-12",
        "kind": "input", "param": "insurance_fund_usd", "venues": [B], "symbols": BTC_ETH,
        "target": 12.864e6,
        "basis": "the fund balance before the crash (figure 12, thousands of USDT as printed): an input of the "
                 "simulation of this event, not a target.",
    },
]

#: figures added here (same fields), read off committed or shared data
ADDED: list[dict] = [
    {
        "event": "2025-10-10",
        "what": "Binance HYPEUSDT open interest, 20:05 -> 21:20 UTC (the rows labelled 20:00 and 21:15)",
        "value": {"before": 221e6, "after": 152e6},
        "unit": "USD",
        "window_utc": "2025-10-10 20:05 to 21:20 UTC (a row labelled T is the state at T + 5 min: the rows of 20:00 and 21:15)",
        "scope": "Binance USD-M HYPEUSDT",
        "source": "Binance public-archive metrics file HYPEUSDT-metrics-5m (../shared/data/unlicensed_binance_metrics, "
                  "via github.com/Lazzmatazz74/btc-futures-data commit 15c91c585c9988b649d9ef97c0f853d80f9c6bd7)",
        "quote": "On 2025-10-10: OI value $221M at 20:00 -> $152M at 21:15 (../shared/data/PROVENANCE.md)",
        "confidence": "high (exchange's own series)",
        "id": "2025-10-10/hype-open-interest-change", "kind": "point", "metric": "open_interest_change",
        "venues": [B], "symbols": ["HYPE/USDT:USDT"],
        "window": ["2025-10-10T20:05:00Z", "2025-10-10T21:20:00Z"],
        "target": 152e6 / 221e6 - 1.0, "uncertainty": 0.05,
        "basis": "relative change of one source's series (Binance's own); compared once HYPE is simulated "
                 "(issue 11 adds it to the event), within 5 points.",
    },
]

PUBLISHED_FIELDS = ("what", "value", "unit", "window_utc", "scope", "source", "quote", "confidence")


def _component(value, path: str) -> float:
    """The number a comparable figure uses: a key (``a.b``), a ratio of keys (``a/b``), or the value."""
    if "/" in path:
        num, den = path.split("/")
        return _component(value, num) / _component(value, den)
    v = value
    for part in path.split("."):
        if isinstance(v, dict) and part in v:
            v = v[part]
        else:
            return float(value) if isinstance(value, (int, float)) else float("nan")
    if isinstance(v, str) and "-" in v and path.endswith("_pct"):
        lo, hi = (float(x) for x in v.split("-"))
        return (lo + hi) / 200.0
    return float(v) / (100.0 if path.endswith("_pct") else 1.0)


def _record(base: dict, spec: dict | None, index: int | None) -> dict:
    rec = {"id": spec["id"] if spec else f"{EVENT_IDS.get(base['event'], base['event'])}/figure-{index}"}
    rec["event"] = EVENT_IDS.get(base["event"], base["event"])
    for k in PUBLISHED_FIELDS:
        rec[k] = base[k]
    if index is not None:
        rec["source_index"] = index
    if not spec:
        rec["kind"] = "context"
        return rec
    rec["kind"] = spec["kind"]
    for k in ("metric", "param", "venues", "symbols", "basis"):
        if k in spec:
            rec[k] = spec[k]
    if "window" in spec:
        rec["window_ms"] = [to_ms(x) for x in spec["window"]]
    if spec.get("component"):
        rec["component"] = spec["component"]
    if spec["kind"] == "interval":
        rec["low"], rec["high"] = spec["low"], spec["high"]
    elif "target_iso" in spec:
        rec["target"] = float(to_ms(spec["target_iso"]))
        rec["unit_compared"] = "UTC ms"
    else:
        t = spec.get("target")
        if t is None:
            t = _component(base["value"], spec["component"])
        rec["target"] = float(t) * float(spec.get("scale", 1.0))
        if "scale" in spec:
            rec["scale"] = float(spec["scale"])
    if "uncertainty" in spec:
        rec["uncertainty"] = float(spec["uncertainty"])
    return rec


def build(shared: Path) -> dict:
    raw = json.loads((shared / "published_figures.json").read_text(encoding="utf-8"))
    by_index: dict[int, list[dict]] = {}
    for spec in COMPARABLE:
        by_index.setdefault(spec["source_index"], []).append(spec)
    out = []
    for i, f in enumerate(raw["figures"]):
        specs = by_index.get(i)
        if not specs:
            out.append(_record(f, None, i))
        for spec in specs or []:
            out.append(_record(f, spec, i))
    for a in ADDED:
        rec = _record(a, a, None)
        rec["added"] = True
        out.append(rec)
    return {
        "about": raw["about"]
        + " Converted by scripts/build_published_figures.py: each figure mapped to a catalogued event (data/events.toml id) "
        "with its kind (point, lower_bound, interval, context, or input: a pre-event level the simulation takes), the "
        "summary metric it compares with, its scope (venues, symbols, window_ms in UTC ms) and, for comparable figures, "
        "the number compared (target / low, high / uncertainty) with its basis.",
        "figures": out,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "data" / "published_figures.toml"))
    a = ap.parse_args()
    doc = build(Path(a.shared))
    header = "# Published figures of the catalogued events, built by scripts/build_published_figures.py from\n" \
             "# ../shared/data/published_figures.json (see data/PROVENANCE.md). Do not edit by hand: edit the script.\n\n"
    Path(a.out).write_text(header + tomli_w.dumps(doc), encoding="utf-8")
    print(f"wrote {a.out}: {len(doc['figures'])} figures")


if __name__ == "__main__":
    main()
