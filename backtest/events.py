"""The crash-event catalogue: ``events.toml`` at the store root (default ``data/events.toml``).

Each event has an id (``2025-10-10``), a name, the exchange and ccxt symbols it covers, the
replay window ``[start, end)``, the lookback window over which populations are built, an
optional core window (the minutes of the cascade), published figures with their sources, and
pre-event inputs (published levels such as open interest). Times are UTC.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backtest.errors import EventError, UserError
from backtest.store import default_root, ms_to_iso, to_ms




@dataclass(frozen=True)
class Event:
    """One catalogued crash event. Times are UTC milliseconds."""

    id: str
    slug: str
    name: str
    exchange: str
    symbols: tuple[str, ...]
    start_ms: int
    end_ms: int
    lookback_start_ms: int
    core_start_ms: int | None = None
    core_end_ms: int | None = None
    figures: tuple[dict, ...] = ()
    pre_event_inputs: tuple[dict, ...] = ()
    observed: tuple[dict, ...] = field(default=())

    @property
    def start_iso(self) -> str:
        return ms_to_iso(self.start_ms)

    @property
    def end_iso(self) -> str:
        return ms_to_iso(self.end_ms)

    def figure(self, metric: str, scope: str | None = None) -> dict | None:
        """The published figure for a summary metric (optionally of one scope), or None."""
        for f in self.figures:
            if f.get("metric") == metric and (scope is None or f.get("scope") == scope):
                return f
        return None

    def open_interest_input(self, symbol: str, exchange: str | None = None) -> dict | None:
        """The most recent published pre-event open interest for a symbol on this exchange."""
        exchange = exchange or self.exchange
        found = [
            x for x in self.pre_event_inputs if x.get("symbol") == symbol and x.get("exchange", exchange) == exchange and "value_usd" in x
        ]
        return found[-1] if found else None

    def describe(self) -> str:
        """Multi-line human description (for ``backtest events show``)."""
        lines = [
            f"{self.id}  {self.name}",
            f"  exchange:  {self.exchange}",
            f"  symbols:   {', '.join(self.symbols)}",
            f"  window:    {self.start_iso} → {self.end_iso} (UTC)",
            f"  lookback:  {ms_to_iso(self.lookback_start_ms)} → {self.start_iso}",
        ]
        if self.core_start_ms is not None:
            lines.append(f"  core:      {ms_to_iso(self.core_start_ms)} → {ms_to_iso(self.core_end_ms)}")
        if self.observed:
            lines.append("  observed in the committed data:")
            for o in self.observed:
                when = o.get("time") or o.get("hour") or ""
                lines.append(f"    {o['what']}: {o['value']:,} {when}")
        if self.figures:
            lines.append("  published figures:")
            for f in self.figures:
                val = f"${f['value_usd'] / 1e9:,.2f}B" if "value_usd" in f else (f"{f['value']:,}" if "value" in f else "")
                lines.append(f"    - {f['what']}: {val}".rstrip(": "))
                if f.get("detail"):
                    lines.append(f"        {f['detail']}")
                lines.append(f"        source: {f['source']}")
        if self.pre_event_inputs:
            lines.append("  pre-event inputs:")
            for f in self.pre_event_inputs:
                lines.append(f"    - {f['what']}: ${f['value_usd'] / 1e9:,.2f}B  (source: {f['source']})")
        return "\n".join(lines)


def catalogue_path(store: str | None = None) -> Path:
    """The catalogue: ``$BACKTEST_EVENTS``, else ``events.toml`` of the given local store root
    when it has one, else the committed ``data/events.toml`` (so a store of your own, filled
    by ``backtest download``, replays the catalogued events too)."""
    if os.environ.get("BACKTEST_EVENTS"):
        return Path(os.environ["BACKTEST_EVENTS"])
    committed = Path(__file__).resolve().parent.parent / "data" / "events.toml"
    if store and not str(store).startswith("s3://") and not Path(store).expanduser().is_dir():
        why = "is a file, not a folder" if Path(store).expanduser().exists() else "does not exist"
        raise EventError(f"store path {store} {why}; pass --store with a store folder (or omit it for the committed data/)")
    root = store or default_root()
    if str(root).startswith("s3://"):
        return committed
    own = Path(root) / "events.toml"
    return own if own.exists() or not committed.exists() else committed


def load_events(store: str | None = None) -> list[Event]:
    """All events of the catalogue, in file order."""
    from backtest.params import read_toml

    path = catalogue_path(store)
    if not path.exists():
        raise EventError(f"no event catalogue at {path}; use the committed data/ store or set BACKTEST_EVENTS")
    raw = read_toml(path, "event catalogue", EventError)
    return [_event(d, path) for d in raw.get("events", [])]


def get_event(event_id: "str | Event", store: str | None = None) -> Event:
    """The event with this id (or slug, or a unique prefix of either)."""
    if isinstance(event_id, Event):
        return event_id
    events = load_events(store)
    for e in events:
        if event_id in (e.id, e.slug):
            return e
    matches = [e for e in events if e.id.startswith(event_id) or e.slug.startswith(event_id)]
    if len(matches) == 1:
        return matches[0]
    ids = ", ".join(e.id for e in events)
    raise EventError(f"unknown event {event_id!r}; known events: {ids} (see 'backtest events list')")


def _event(d: dict[str, Any], path: Path) -> Event:
    try:
        start, end = (to_ms(x) for x in d["window"])
        lb = to_ms(d["lookback"][0]) if "lookback" in d else start - 30 * 86_400_000
        core = [to_ms(x) for x in d["core_window"]] if "core_window" in d else [None, None]
        return Event(
            id=d["id"],
            slug=d.get("slug", d["id"]),
            name=d["name"],
            exchange=d.get("exchange", "binanceusdm"),
            symbols=tuple(d["symbols"]),
            start_ms=start,
            end_ms=end,
            lookback_start_ms=lb,
            core_start_ms=core[0],
            core_end_ms=core[1],
            figures=tuple(d.get("figures", [])),
            pre_event_inputs=tuple(d.get("pre_event_inputs", [])),
            observed=tuple(d.get("observed", [])),
        )
    except (KeyError, TypeError, ValueError, UserError) as e:
        raise EventError(f"event {d.get('id', '?')} in {path} is malformed: {e}") from None
