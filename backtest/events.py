"""The crash-event catalogue (``events.toml`` at the store root, default ``data/events.toml``)
merged with the user's own event file.

Each event has an id (``2025-10-10``), a name, the exchange and ccxt symbols it covers, the
replay window ``[start, end)``, the lookback window over which populations are built, an
optional core window (the minutes of the cascade), published figures with their sources, and
pre-event inputs (published levels such as open interest). Times are UTC.

The user's event file (same layout, see :mod:`backtest.event_file`) is ``--events FILE``, else
``$BACKTEST_EVENTS``, else ``./events.toml`` when it exists. Its events are merged over the
catalogue: a user event with a catalogue id replaces that event, and :attr:`Event.overrides`
names the catalogue it replaced (the CLI says so on stderr). An ad-hoc event built from command
options (``--window``/``--exchange``/``--symbol``) needs no file at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from backtest.errors import EventError
from backtest.store import default_root, ms_to_iso




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
    #: where the event was defined: an event file's path, or "command line"
    source: str = ""
    #: the catalogue file whose event of the same id this one replaces ("" when none)
    overrides: str = ""

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
            f"  from:      {self.source}" + (f" (replaces the event of {self.overrides})" if self.overrides else ""),
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


def committed_catalogue() -> Path:
    """The project's committed catalogue, ``data/events.toml``."""
    return Path(__file__).resolve().parent.parent / "data" / "events.toml"


def catalogue_path(store: str | None = None) -> Path:
    """The catalogue: ``events.toml`` of the given local store root when it has one, else the
    committed ``data/events.toml`` (so a store of your own, filled by ``backtest download``,
    replays the catalogued events too)."""
    committed = committed_catalogue()
    if store and not str(store).startswith("s3://") and not Path(store).expanduser().is_dir():
        why = "is a file, not a folder" if Path(store).expanduser().exists() else "does not exist"
        raise EventError(f"store path {store} {why}; pass --store with a store folder (or omit it for the committed data/)")
    root = store or default_root()
    if str(root).startswith("s3://"):
        return committed
    own = Path(root) / "events.toml"
    return own if own.exists() or not committed.exists() else committed


#: the user's event file when neither --events nor $BACKTEST_EVENTS names one
DEFAULT_USER_FILE = "events.toml"


def user_events_path(events_file: str | os.PathLike | None = None) -> Path:
    """Where the user's events are read from and written to: ``events_file``, else
    ``$BACKTEST_EVENTS``, else ``./events.toml`` (which need not exist)."""
    if events_file:
        return Path(events_file).expanduser()
    if os.environ.get("BACKTEST_EVENTS"):
        return Path(os.environ["BACKTEST_EVENTS"]).expanduser()
    return Path(DEFAULT_USER_FILE)


def load_events(store: str | None = None, events_file: str | os.PathLike | None = None, *, user: bool = True) -> list[Event]:
    """All events: the catalogue's in file order, each replaced by the user's event of the same
    id, then the user's other events (``user=False``: the catalogue only). A named
    ``events_file`` (or ``$BACKTEST_EVENTS``) must exist; ``./events.toml`` is read only when it
    exists."""
    from backtest.event_file import read_event_file

    path = catalogue_path(store)
    if not path.exists():
        raise EventError(f"no event catalogue at {path}; use the committed data/ store or pass --store with a store that has one")
    catalogue = read_event_file(path, "event catalogue")
    if not user:
        return catalogue
    own = user_events_path(events_file)
    named = bool(events_file or os.environ.get("BACKTEST_EVENTS"))
    if named and not own.exists():
        raise EventError(f"event file {own} does not exist; create it with 'backtest events add' or check --events / BACKTEST_EVENTS")
    if not own.exists() or own.resolve() == path.resolve():
        return catalogue
    mine = {e.id: e for e in read_event_file(own)}
    out = [replace(mine.pop(e.id), overrides=str(path)) if e.id in mine else e for e in catalogue]
    return out + list(mine.values())


def get_event(event_id: "str | Event", store: str | None = None, events_file: str | os.PathLike | None = None) -> Event:
    """The event with this id (or slug, or a unique prefix of either); an :class:`Event` is
    returned as it is (an ad-hoc event, or one resolved earlier)."""
    if isinstance(event_id, Event):
        return event_id
    events = load_events(store, events_file)
    for e in events:
        if event_id in (e.id, e.slug):
            return e
    matches = [e for e in events if e.id.startswith(event_id) or e.slug.startswith(event_id)]
    if len(matches) == 1:
        return matches[0]
    ids = ", ".join(e.id for e in events)
    raise EventError(f"unknown event {event_id!r}; known events: {ids} (see 'backtest events list', or add one with 'backtest events add')")
