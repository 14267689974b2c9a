"""What a population is scaled and tilted to, from the store and the event catalogue: the open
interest target (:func:`resolve_open_interest`: a parameter, the store, the catalogue, or an
estimate from a reference symbol or another event, each named in the returned source), the long
share (:func:`long_share_from_store`), traded notional over the last days (:func:`recent_volume`)
and the margin rule of an exchange (:func:`venue_for_exchange`).

Notional in USD, times UTC ms. Store errors (a damaged file) are not caught here: they reach the
user as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from backtest.errors import PopulationError
from backtest.market import market_bars
from backtest.records import VENUES
from backtest.timeframes import UNIT_MS

DAY_MS = UNIT_MS["d"]


#: Stand-in tier tables for symbols whose own tiers are not in the store: (exchange, symbol) ->
#: (the symbol whose tiers are used, why). An assumption, named in the population's stats.
TIER_STANDINS: dict[tuple[str, str], tuple[str, str]] = {
    ("binanceusdm", "HYPE/USDT:USDT"): (
        "SOL/USDT:USDT",
        "HYPEUSDT is not in the committed tiers file (freqtrade's of 2024-10, before Binance listed it); "
        "SOLUSDT's tiers stand in (assumption)",
    ),
}


def tiers_for(store: Any, exchange: str, symbol: str) -> tuple[Any, str]:
    """The store's leverage tiers of ``symbol`` and a note on where they came from (its own, or a
    :data:`TIER_STANDINS` stand-in); ``(None, "")`` when neither is stored."""
    tiers = store.read_tiers(exchange, symbol)
    if tiers:
        return tiers, f"store tiers of {symbol}"
    alt = TIER_STANDINS.get((exchange, symbol))
    if alt is not None:
        tiers = store.read_tiers(exchange, alt[0])
        if tiers:
            return tiers, alt[1]
    return None, ""


def venue_for_exchange(exchange: str) -> str:
    ex = exchange.lower()
    for v in VENUES:
        if ex.startswith(v) or (v == "gate" and ex.startswith("gateio")):
            return v
    if ex in ("binanceusdm", "binancecoinm", "binance"):
        return "binance"
    raise PopulationError(f"no margin rule for exchange {exchange!r}; set venue= one of {', '.join(VENUES)}")


def _catalogue_oi(event: Any, symbol: str, exchange: str) -> dict | None:
    if hasattr(event, "open_interest_input"):
        try:
            return event.open_interest_input(symbol, exchange)
        except TypeError:
            return event.open_interest_input(symbol)
    found = [x for x in getattr(event, "pre_event_inputs", ()) if x.get("symbol") == symbol and "value_usd" in x]
    return found[-1] if found else None


def resolve_open_interest(store: Any, event: Any, symbol: str, params: Any, lookback_volume_usd: float,
                          bars: dict[str, np.ndarray] | None = None) -> tuple[float, str, np.ndarray | None]:
    """Target open interest (USD, before ``oi_scale``), where it came from, and the stored OI
    points ``[[ts_ms...], [usd...]]`` when the store has them (else None).

    Order: the parameter, the store, the catalogue, an estimate from a reference symbol of the
    same venue, from another catalogued event, and - on a further venue of a multi-venue event
    (``event.primary_exchange`` set), with ``bars`` the lookback bars the population is built on -
    the primary venue's level for the symbol times the ratio of the two venues' daily traded
    notional (:func:`_cross_venue_estimate`; a labelled assumption)."""
    if params.open_interest_usd is not None:
        return float(params.open_interest_usd), "open_interest_usd parameter", None
    ex = event.exchange
    path_ex = getattr(event, "path_exchange", "") or ex
    oi = store.read("open_interest", exchange=ex, symbol=symbol, start=event.lookback_start_ms, end=event.start_ms)
    if oi.height:
        usd = oi["open_interest_usd"].to_numpy()
        if np.all(np.isnan(usd.astype(float))):
            usd = None
        if usd is not None and np.isfinite(usd[-1]):
            pts = np.stack([oi["ts"].dt.epoch("ms").to_numpy().astype(np.float64), usd.astype(np.float64)])
            return float(usd[-1]), f"store open_interest ({ex}) at {oi['ts'][-1]}", pts
    rec = _catalogue_oi(event, symbol, ex)
    if rec is not None:
        return float(rec["value_usd"]), f"event catalogue: {rec.get('what', 'pre-event open interest')} ({rec.get('source', 'no source')})", None
    # estimate from a reference symbol's catalogue level and the volume ratio
    for ref in getattr(event, "symbols", ()):
        if ref == symbol:
            continue
        r = _catalogue_oi(event, ref, ex)
        if r is None:
            continue
        try:
            ref_path = event.path_symbol(ref) if hasattr(event, "path_symbol") else ref
            ref_bars = market_bars(store, path_ex, ref_path, event.lookback_start_ms, event.start_ms)
        except Exception:  # the reference has no bars on this venue: try the next one
            continue
        ref_vol = recent_volume(ref_bars, event.start_ms)
        if ref_vol > 0 and lookback_volume_usd > 0:
            est = float(r["value_usd"]) * lookback_volume_usd / ref_vol
            return est, (
                f"estimate: {ref} catalogue level ${float(r['value_usd']) / 1e9:.2f}B ({r.get('what', '')}) x ratio of "
                f"{symbol} to {ref} traded notional over the last 7 days ({lookback_volume_usd / ref_vol:.3f}); "
                "assumes the same open-interest-to-volume ratio"
            ), None
    # estimate from another catalogued event's published level for this symbol: the same ratio of
    # open interest to the 7 days of traded notional before the event (a stated assumption)
    est = _estimate_from_other_event(store, event, symbol, ex, lookback_volume_usd)
    if est is not None:
        return est
    est = _cross_venue_estimate(store, event, symbol, params, bars)
    if est is not None:
        return est
    raise PopulationError(
        f"no open-interest level for {symbol} on {ex}: the store has none and the event catalogue gives none; "
        "pass --set open_interest_usd=VALUE"
    )


def _estimate_from_other_event(store: Any, event: Any, symbol: str, ex: str, lookback_volume_usd: float) -> tuple[float, str, None] | None:
    """OI target = ``lookback_volume_usd`` x (OI / 7-day traded notional) measured on the
    nearest-in-time catalogued event that publishes a pre-event open interest (for ``symbol``
    itself when one does, else for another symbol of that event)."""
    if lookback_volume_usd <= 0:
        return None
    from backtest.events import load_events

    root = getattr(store, "root", None)
    if root is None or not (str(root).startswith("s3://") or (Path(str(root)) / "events.toml").exists()):
        return None  # only a store that carries its catalogue (or S3) is calibrated from it
    others = [e for e in load_events(str(root), user=False) if e.id != getattr(event, "id", None) and e.exchange == ex]
    others.sort(key=lambda e: abs(e.start_ms - event.start_ms))
    candidates = [(o, symbol) for o in others] + [(o, ref) for o in others for ref in o.symbols if ref != symbol]
    for other, ref in candidates:
        rec = _catalogue_oi(other, ref, ex)
        if rec is None:
            continue
        bars = market_bars(store, ex, ref, other.lookback_start_ms, other.start_ms)
        vol = recent_volume(bars, other.start_ms)
        if vol <= 0:
            continue
        ratio = float(rec["value_usd"]) / vol
        return ratio * lookback_volume_usd, (
            f"estimate: {ref} open interest / 7-day traded notional before event {other.id} "
            f"(${float(rec['value_usd']) / 1e9:.2f}B / ${vol / 1e9:.1f}B = {ratio:.3f}, {rec.get('source', 'no source')}) "
            f"x {symbol}'s 7 days before this event (${lookback_volume_usd / 1e9:.1f}B); assumes the same ratio"
        ), None
    return None


def daily_volume(bars: dict[str, np.ndarray], as_of_ms: int, days: float = 7.0) -> float:
    """Mean traded notional per day (USD) over the last ``days`` before ``as_of_ms``, over the
    part of them the bars cover (a venue whose bars start later is not undercounted)."""
    if bars is None or not len(bars["ts"]):
        return 0.0
    covered = min(days, (as_of_ms - int(bars["ts"][0])) / DAY_MS)
    return recent_volume(bars, as_of_ms, days) / covered if covered > 0 else 0.0


def _cross_venue_estimate(store: Any, event: Any, symbol: str, params: Any, bars: dict[str, np.ndarray] | None) -> tuple[float, str, None] | None:
    """Open interest of ``symbol`` on a further venue of a multi-venue event whose own level is
    not sourced: the primary venue's level for the symbol (its own source named) x this venue's
    daily traded notional / the primary's over the last 7 days. Assumes the same
    open-interest-to-volume ratio on both venues (labelled "estimate: ..."). None on a
    single-venue event, or when the primary venue has no level or no bars for the symbol."""
    import dataclasses

    primary = getattr(event, "primary_exchange", "") or ""
    if not primary or primary == event.exchange or bars is None or not dataclasses.is_dataclass(event):
        return None
    if symbol not in getattr(event, "all_symbols", ()) and symbol not in getattr(event, "symbols", ()):
        return None
    psym = event.path_symbol(symbol) if hasattr(event, "path_symbol") else symbol  # the same coin on the primary venue
    try:
        pbars = market_bars(store, primary, psym, event.lookback_start_ms, event.start_ms)
    except Exception:  # the primary venue has no bars for this symbol
        return None
    view = dataclasses.replace(event, exchange=primary, path_exchange="", primary_exchange="", path_symbols=())
    if psym not in view.symbols:
        view = dataclasses.replace(view, symbols=(*view.symbols, psym))
    try:
        level, src, _ = resolve_open_interest(store, view, psym, params, recent_volume(pbars, event.start_ms))
    except PopulationError:
        return None
    mine, theirs = daily_volume(bars, event.start_ms), daily_volume(pbars, event.start_ms)
    if not (mine > 0 and theirs > 0):
        return None
    path_ex = getattr(event, "path_exchange", "") or event.exchange
    whose = f"{path_ex}'s bars (a proxy for {event.exchange})" if path_ex != event.exchange else event.exchange
    return level * mine / theirs, (
        f"estimate: {primary} {psym} level ${level / 1e9:.2f}B ({src.removeprefix('estimate: ')}) x ratio of {symbol}'s daily traded "
        f"notional on {whose} to {primary}'s over the last 7 days ({mine / theirs:.3f}); assumption: no published "
        f"{event.exchange} open interest, the same open-interest-to-volume ratio as on {primary}"
    ), None


def recent_volume(bars: dict[str, np.ndarray], as_of_ms: int, days: float = 7.0) -> float:
    m = bars["ts"] >= as_of_ms - days * DAY_MS
    return float(bars["volume_usd"][m].sum())


def long_share_from_store(store: Any, exchange: str, symbol: str, start_ms: int, end_ms: int) -> tuple[float | None, str]:
    df = store.read("long_short_ratio", exchange=exchange, symbol=symbol, start=start_ms, end=end_ms)
    if df.height == 0:
        return None, ""
    v = df["long_account"][-1]
    if v is None or not (0.0 <= float(v) <= 1.0):
        r = df["long_short_ratio"][-1]
        if r is None or not float(r) > 0:
            return None, ""
        v = float(r) / (1.0 + float(r))
    return float(v), f"store long/short account ratio at {df['ts'][-1]}"


def open_interest_at(store: Any, exchange: str, symbol: str, times_ms: np.ndarray, column: str = "open_interest_usd") -> np.ndarray | None:
    """The stored open interest (``column``: "open_interest" base units or "open_interest_usd")
    as of each of ``times_ms`` (UTC ms): the last row whose state time is at or before it, NaN
    before the first row or more than one step after the last; None when the store has no series.

    State time: a row labelled T is the state at T + its timeframe (Binance's ``metrics`` files,
    measured in data/PROVENANCE.md: the value of the row labelled T matches the close of the bar
    opening at T).
    """
    from backtest.timeframes import timeframe_ms

    t = np.asarray(times_ms, np.int64)
    if t.size == 0:
        return None
    df = store.read("open_interest", exchange=exchange, symbol=symbol, start=int(t.min()) - DAY_MS, end=int(t.max()) + 1)
    if df.height == 0 or column not in df.columns:
        return None
    df = df.sort("ts")
    step = timeframe_ms(str(df["timeframe"][0])) if "timeframe" in df.columns and df["timeframe"][0] else 300_000
    st = df["ts"].dt.epoch("ms").to_numpy().astype(np.int64) + step
    v = df[column].cast(float).to_numpy().astype(np.float64)
    k = np.searchsorted(st, t, side="right") - 1
    out = np.where(k >= 0, v[np.maximum(k, 0)], np.nan)
    stale = (k >= 0) & (t - st[np.maximum(k, 0)] > step)
    out[stale] = np.nan
    if not np.any(np.isfinite(out)):
        return None
    return out
