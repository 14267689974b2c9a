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
class Venue:
    """A further venue an event spans (``venues`` in an event file).

    ``path_proxy``: the exchange whose bars stand in for this venue's (it has none of its own,
    e.g. Hyperliquid); "" for the venue's own bars. Labelled as a proxy in every output."""

    exchange: str
    symbols: tuple[str, ...]
    path_proxy: str = ""


@dataclass(frozen=True)
class Leg:
    """One simulated (exchange, symbol) of an event. ``key`` names it in a run's results: the
    bare symbol on the event's primary exchange (as for a single-venue event), else
    ``SYMBOL@EXCHANGE``. ``path_exchange`` is the exchange whose bars drive it (its own, or a
    proxy's)."""

    key: str
    exchange: str
    symbol: str
    path_exchange: str
    #: the symbol whose bars drive it on ``path_exchange`` (the same coin on a proxy: proxy_symbol)
    path_symbol: str = ""

    def __post_init__(self) -> None:
        if not self.path_symbol:
            object.__setattr__(self, "path_symbol", self.symbol)

    @property
    def proxy(self) -> bool:
        return self.path_exchange != self.exchange


def proxy_symbol(symbol: str, candidates: "tuple[str, ...] | list[str]") -> str:
    """The symbol of the same coin among ``candidates`` (the primary venue's symbols: a proxy's
    bars are read for it), e.g. Hyperliquid's ``BTC/USDC:USDC`` -> ``BTC/USDT:USDT``; the symbol
    itself when it is one of them or no candidate has its base coin."""
    if symbol in candidates:
        return symbol
    base = symbol.split("/")[0]
    return next((c for c in candidates if c.split("/")[0] == base), symbol)


def leg_key(exchange: str, symbol: str, primary: str) -> str:
    """The results key of ``symbol`` on ``exchange`` in an event whose primary exchange is ``primary``."""
    return symbol if exchange == primary else f"{symbol}@{exchange}"


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
    #: further venues (:class:`Venue`) beside the primary ``exchange``; () for a single venue
    venues: tuple[Venue, ...] = ()
    #: where the event was defined: an event file's path, or "command line"
    source: str = ""
    #: the catalogue file whose event of the same id this one replaces ("" when none)
    overrides: str = ""

    #: set on the per-venue view of a multi-venue event (:meth:`venue_event`): the exchange whose
    #: bars drive the venue when they are a proxy ("" otherwise), and the event's primary exchange
    path_exchange: str = ""
    primary_exchange: str = ""
    #: (venue symbol, the proxy's symbol of the same coin) pairs of a proxied venue's view
    path_symbols: tuple[tuple[str, str], ...] = ()

    def path_symbol(self, symbol: str) -> str:
        """The symbol whose bars drive ``symbol`` (itself, unless a proxy reads another one)."""
        return dict(self.path_symbols).get(symbol, symbol)

    @property
    def exchanges(self) -> tuple[str, ...]:
        """Every exchange of the event, the primary one first."""
        return (self.exchange, *(v.exchange for v in self.venues))

    def legs(self, symbols: "list[str] | tuple[str, ...] | None" = None) -> list[Leg]:
        """Every (exchange, symbol) the event simulates, venue by venue (primary first), in
        catalogue order; ``symbols``: keep only these results keys (:class:`Leg`: a bare symbol is
        the primary venue's, ``SYMBOL@EXCHANGE`` a further venue's), in the event's order."""
        keep = set(symbols) if symbols else None
        out = [Leg(s, self.exchange, s, self.exchange) for s in self.symbols]
        for v in self.venues:
            out += [Leg(leg_key(v.exchange, s, self.exchange), v.exchange, s, v.path_proxy or v.exchange,
                        proxy_symbol(s, self.symbols) if v.path_proxy else s) for s in v.symbols]
        return [x for x in out if keep is None or x.key in keep]

    @property
    def all_symbols(self) -> tuple[str, ...]:
        """Every symbol on any venue (primary's first), once each."""
        out = list(self.symbols)
        for v in self.venues:
            out += [s for s in v.symbols if s not in out]
        return tuple(out)

    def venue_event(self, exchange: str) -> "Event":
        """This event as seen by one venue: its exchange and symbols, no further venues;
        ``primary_exchange`` names the event's primary exchange (the reference of cross-venue
        estimates) and ``path_exchange`` the proxy whose bars drive it, if any. The primary
        exchange of a single-venue event returns the event itself."""
        if exchange == self.exchange:
            return self if not self.venues else replace(self, venues=(), primary_exchange=self.exchange)
        for v in self.venues:
            if v.exchange == exchange:
                pairs = tuple((x, proxy_symbol(x, self.symbols)) for x in v.symbols) if v.path_proxy else ()
                return replace(self, exchange=exchange, symbols=v.symbols, venues=(), path_exchange=v.path_proxy,
                               primary_exchange=self.exchange, path_symbols=pairs)
        raise EventError(f"exchange {exchange!r} is not a venue of event {self.id}; its venues: {', '.join(self.exchanges)}")

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
            x for x in self.pre_event_inputs if x.get("symbol") == symbol and x.get("exchange", self.primary_exchange or self.exchange) == exchange and "value_usd" in x
        ]
        return found[-1] if found else None

    def describe(self) -> str:
        """Multi-line human description (for ``backtest events show``)."""
        lines = [
            f"{self.id}  {self.name}",
            f"  from:      {self.source}" + (f" (replaces the event of {self.overrides})" if self.overrides else ""),
            f"  exchange:  {self.exchange}",
            f"  symbols:   {', '.join(self.symbols)}",
            *(f"  venue:     {v.exchange}: {', '.join(v.symbols)}" + (f" (bars: {v.path_proxy}'s, a proxy)" if v.path_proxy else "")
              for v in self.venues),
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
