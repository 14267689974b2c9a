"""The event commands of the CLI: ``events list/show/add``, ``scan`` and ``fetch``, and the
resolution of an event argument (catalogue, user event file, or an ad-hoc ``--window`` event)
shared with ``replay``, ``cascade``, ``report`` and ``population``.

Registered on the typer apps of :mod:`backtest.cli` by :func:`register`; heavy modules (polars,
ccxt) are imported inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

EventsOpt = typer.Option(
    None, "--events", help="Your event file (TOML, the layout of data/events.toml), merged over the catalogue "
    "(default: $BACKTEST_EVENTS, else ./events.toml when it exists).")
WindowOpt = typer.Option(None, "--window", help="Ad-hoc event window START/END (ISO-8601 with a zone, e.g. "
                         "2025-10-10T20:00Z/2025-10-11T00:00Z); needs --exchange and --symbol; EVENT names it.")
ExchangeOpt = typer.Option(None, "--exchange", help="ccxt exchange id of an ad-hoc --window event (default binanceusdm).")
StoreOpt = typer.Option(None, "--store", help="Store root: folder or s3://bucket/prefix (default: $BACKTEST_STORE or the committed data/).")


def note(message: str) -> None:
    typer.echo(f"note: {message}", err=True)


def resolve_event(event: str, *, events: Optional[Path] = None, window: Optional[str] = None, exchange: Optional[str] = None,
                  symbols: Optional[List[str]] = None, store: Optional[str] = None, lookback: Optional[float] = None):
    """The :class:`~backtest.events.Event` an EVENT argument and the event options name. With
    ``--window`` it is an ad-hoc event called EVENT (``--symbol`` gives its symbols); without, the
    catalogue's or the user file's event (a user event that replaces a catalogue one is noted on
    stderr)."""
    from backtest.errors import EventError
    from backtest.event_file import build_event, event_table
    from backtest.events import get_event

    if window is None:
        if exchange is not None:
            raise EventError("--exchange describes an ad-hoc event: give it with --window START/END and --symbol")
        ev = get_event(event, store, events)
        if ev.overrides:
            note(f"event {ev.id} is taken from {ev.source}, which replaces the catalogue's ({ev.overrides})")
        return ev
    if not symbols:
        raise EventError("an ad-hoc --window event needs its symbols: add --symbol BTC/USDT:USDT (repeatable)")
    try:
        from backtest.event_file import check_id

        check_id(event, "event id")
    except ValueError as e:
        raise EventError(f"{e}") from None
    table = event_table(event, exchange=exchange or "binanceusdm", symbols=list(symbols), window=window, lookback_days=lookback)
    return build_event(table)


def venue_options(event_id: str, exchanges: List[str], proxies: List[str]) -> tuple[str, list[dict]]:
    """The primary exchange and the further venues' tables of repeated ``--exchange EX[=SYM,...]``
    and ``--path-proxy EX=PROXY`` options (validated when the event is parsed)."""
    from backtest.errors import EventError

    items = [(e.split("=", 1)[0].strip(), e.split("=", 1)[1] if "=" in e else None) for e in exchanges or ["binanceusdm"]]
    proxy: dict[str, str] = {}
    for p in proxies or []:
        if "=" not in p:
            raise EventError(f"event {event_id}: --path-proxy {p!r} must be EX=PROXY, e.g. hyperliquid=binanceusdm")
        ex, px = (x.strip() for x in p.split("=", 1))
        proxy[ex] = px
    names = [ex for ex, _ in items]
    stray = [ex for ex in proxy if ex not in names[1:]]
    if stray:
        raise EventError(f"event {event_id}: --path-proxy names {stray[0]!r}, which is not a further --exchange of the event (the primary one needs its own bars)")
    venues = []
    for ex, syms in items[1:]:
        t: dict = {"exchange": ex}
        if syms is not None:
            t["symbols"] = [s.strip() for s in syms.split(",") if s.strip()]
        if ex in proxy:
            t["path_proxy"] = proxy[ex]
        venues.append(t)
    return items[0][0], venues


# ------------------------------------------------------------------------------------------
# events list / show / add
# ------------------------------------------------------------------------------------------
def events_list(store: Optional[str] = StoreOpt, events: Optional[Path] = EventsOpt) -> None:
    """List the crash events: the catalogue's and your own, and where each comes from."""
    import polars as pl

    from backtest.cli import print_frame
    from backtest.events import load_events

    evs = load_events(store, events)
    df = pl.DataFrame(
        {
            "id": [e.id for e in evs],
            "name": [e.name for e in evs],
            "exchange": [", ".join(e.exchanges) for e in evs],
            "symbols": [", ".join(e.symbols) for e in evs],
            "window (UTC)": [f"{e.start_iso} → {e.end_iso}" for e in evs],
            "from": [e.source + (" (replaces the catalogue's)" if e.overrides else "") for e in evs],
        }
    )
    print_frame(df, "crash events")


def events_show(event_id: str = typer.Argument(..., help="Event id, e.g. 2025-10-10"), store: Optional[str] = StoreOpt,
                events: Optional[Path] = EventsOpt) -> None:
    """Show one event: where it comes from, windows, symbols, published figures with sources."""
    typer.echo(resolve_event(event_id, events=events, store=store).describe())


def events_add(
    event_id: str = typer.Argument(..., help="New event id: a path-safe name, e.g. 2026-02-03-alt-crash."),
    exchange: List[str] = typer.Option(["binanceusdm"], "--exchange",
                                       help="ccxt exchange id; repeat it for an event over several venues (the first is the primary one). "
                                            "EX=SYM,SYM gives that venue its own symbols (default: --symbols)."),
    path_proxy: List[str] = typer.Option([], "--path-proxy",
                                         help="EX=PROXY: venue EX has no bars of its own; its path is PROXY's bars (labelled as a proxy), e.g. hyperliquid=binanceusdm."),
    symbols: List[str] = typer.Option(..., "--symbols", "--symbol", help="ccxt symbols, comma-separated or repeated, e.g. BTC/USDT:USDT."),
    window: str = typer.Option(..., "--window", help="Replay window START/END, ISO-8601 with a zone, e.g. 2026-02-03T10:00Z/2026-02-03T16:00Z."),
    lookback: float = typer.Option(30.0, "--lookback", help="Days before the window over which populations are built (1 to 365)."),
    core: Optional[str] = typer.Option(None, "--core", help="Core window START/END of the cascade, inside the window."),
    name: Optional[str] = typer.Option(None, "--name", help="A human name (default: the id)."),
    replace: bool = typer.Option(False, "--replace", help="Overwrite an event of the same id in your file."),
    events: Optional[Path] = EventsOpt,
    store: Optional[str] = StoreOpt,
) -> None:
    """Add an event to your event file (--events, else $BACKTEST_EVENTS, else ./events.toml); never to the package's catalogue."""
    from backtest.event_file import add_events, check_id, event_table
    from backtest.errors import EventError
    from backtest.events import catalogue_path, user_events_path

    try:
        check_id(event_id, "event id")
    except ValueError as e:
        raise EventError(str(e)) from None
    syms = [s.strip() for item in symbols for s in item.split(",") if s.strip()]
    primary, venues = venue_options(event_id, exchange, path_proxy)
    if "=" in exchange[0]:
        syms = [s.strip() for s in exchange[0].split("=", 1)[1].split(",") if s.strip()] or syms
    table = event_table(event_id, exchange=primary, symbols=syms, window=window, lookback_days=lookback, core=core, name=name, venues=venues)
    path = user_events_path(events)
    for line in add_events(path, [table], replace=replace):
        typer.echo(line)
    from backtest.event_file import read_event_file

    if any(e.id == event_id for e in read_event_file(catalogue_path(store), "event catalogue")):
        note(f"the catalogue ({catalogue_path(store)}) has an event {event_id} too: yours replaces it while {path} is your event file")


# ------------------------------------------------------------------------------------------
# scan
# ------------------------------------------------------------------------------------------
def scan(
    exchange: str = typer.Argument(..., help="ccxt exchange id whose stored bars to scan, e.g. binanceusdm."),
    symbol: Optional[List[str]] = typer.Option(None, "--symbol", help="ccxt symbol (repeatable); default: every symbol stored at the timeframe."),
    timeframe: str = typer.Option("1h", "--timeframe", help="Bar timeframe to scan (stored ohlcv)."),
    since: Optional[str] = typer.Option(None, "--since", help="Scan from this time (ISO-8601 UTC)."),
    until: Optional[str] = typer.Option(None, "--until", help="Scan up to this time (ISO-8601 UTC, exclusive)."),
    min_drawdown: float = typer.Option(8.0, "--min-drawdown", help="Percent below the 24h high that flags a bar."),
    min_spike: float = typer.Option(5.0, "--min-spike", help="Range and volume multiple of the 7-day baseline that together flag a bar."),
    min_oi_drop: float = typer.Option(10.0, "--min-oi-drop", help="Percent of open interest gone from its 24h high that flags a bar."),
    top: int = typer.Option(20, "--top", help="Show this many windows (ranked by drawdown)."),
    as_json: bool = typer.Option(False, "--json", help="Print the windows as JSON instead of a table."),
    add: bool = typer.Option(False, "--add", help="Add every shown window that is not a known event to your event file."),
    add_top: Optional[int] = typer.Option(None, "--add-top", help="Add the N best-ranked windows that are not known events."),
    lookback: float = typer.Option(30.0, "--lookback", help="Lookback days of added events."),
    events: Optional[Path] = EventsOpt,
    store: Optional[str] = StoreOpt,
) -> None:
    """Find crash windows in the stored bars: drawdown from a rolling high, range and volume spikes, open-interest drops."""
    from backtest.errors import ScanError
    from backtest.events import load_events
    from backtest.scan import scan_store

    if top < 1 or (add_top is not None and add_top < 1):
        raise ScanError("--top and --add-top must be at least 1")
    windows = scan_store(store, exchange, symbols=list(symbol) if symbol else None, timeframe=timeframe, since=since, until=until,
                         min_drawdown=min_drawdown / 100, min_spike=min_spike, min_oi_drop=min_oi_drop / 100,
                         events=load_events(store, events))
    shown = windows[:top]
    if as_json:
        typer.echo(json.dumps([w.to_dict() for w in shown], indent=1))
    else:
        _print_windows(shown, len(windows), exchange, timeframe)
    if add or add_top:
        _add_windows(shown if add_top is None else [w for w in windows if not w.known][:add_top], timeframe, lookback, events)


def _print_windows(windows, total: int, exchange: str, timeframe: str) -> None:
    import polars as pl

    from backtest.cli import print_frame

    def pct(x):
        return "-" if x is None else f"{100 * x:+.1f} %"

    def mult(x):
        return "-" if x is None else f"{x:.1f}x"

    if not windows:
        typer.echo(f"no crash windows found in the {exchange} {timeframe} bars (try a lower --min-drawdown or --min-spike)")
        return
    rows = [w.to_dict() for w in windows]
    print_frame(pl.DataFrame({
        "rank": [str(i) for i in range(1, len(rows) + 1)],
        "id": [r["id"] for r in rows],
        "window (UTC)": [f"{r['start'][:16]} → {r['end'][:16]}" for r in rows],
        "worst": [r["worst_symbol"] for r in rows],
        "drawdown": [pct(-r["drawdown"]) for r in rows],
        "low at": [r["low_time"][:16] for r in rows],
        "range": [mult(r["range_x"]) for r in rows],
        "volume": [mult(r["volume_x"]) for r in rows],
        "OI change": [pct(r["oi_change"]) for r in rows],
        "symbols": [str(len(r["symbols"])) for r in rows],
        "known event": [r["known_event"] or "" for r in rows],
    }), f"crash windows, {exchange} {timeframe} bars ({len(rows)} of {total}; range and volume as multiples of the 7-day median)")


def _add_windows(windows, timeframe: str, lookback: float, events: Optional[Path]) -> None:
    from backtest.event_file import add_events, read_event_file
    from backtest.events import user_events_path

    path = user_events_path(events)
    have = {e.id for e in read_event_file(path)} if path.exists() else set()
    tables = []
    for w in windows:
        if w.known:
            note(f"window {w.event_id} overlaps event {w.known}: not added")
        elif w.event_id in have:
            note(f"{path} already has event {w.event_id}: not added again")
        else:
            tables.append(w.event_table(timeframe, lookback))
    if tables:
        for line in add_events(path, tables):
            typer.echo(line)


# ------------------------------------------------------------------------------------------
# fetch
# ------------------------------------------------------------------------------------------
def fetch(
    event: str = typer.Argument(..., help="Event id (catalogue or your event file), or the name of an ad-hoc --window event."),
    window: Optional[str] = WindowOpt,
    exchange: Optional[str] = ExchangeOpt,
    symbol: Optional[List[str]] = typer.Option(None, "--symbol", help="ccxt symbol of an ad-hoc --window event (repeatable)."),
    lookback: float = typer.Option(30.0, "--lookback", help="Lookback days of an ad-hoc --window event."),
    ccxt_config: Optional[Path] = typer.Option(None, "--ccxt-config", help="JSON/TOML for the exchange (urls, apiKey/secret for tiers, "
                                               "archive_base_url, retry, page_limits), as for 'backtest download'."),
    json_out: bool = typer.Option(False, "--json", help="Print the closing table as JSON."),
    venue: Optional[str] = typer.Option(None, "--venue", help="Fetch for this venue of a multi-venue event (its exchange id; "
                                        "default the primary one). Each venue takes its own --ccxt-config."),
    events: Optional[Path] = EventsOpt,
    store: Optional[str] = StoreOpt,
) -> None:
    """Download everything an event needs: bars, mark, funding, open interest, long/short ratios, tiers."""
    import os

    import polars as pl

    from backtest.cli import print_frame
    from backtest.sources.fetch import run_fetch

    new_store = store is not None and not str(store).startswith("s3://") and not Path(store).expanduser().exists()
    # a store that does not exist yet (fetch creates it) has no catalogue of its own: the committed one serves
    ev = resolve_event(event, events=events, window=window, exchange=exchange, symbols=symbol, store=None if new_store else store,
                       lookback=lookback)
    if venue is not None:
        ev = ev.venue_event(venue)  # EventError (one line) for an exchange the event does not span
    elif getattr(ev, "venues", ()):
        note(f"event {ev.id} spans {', '.join(ev.exchanges)}: fetching for {ev.exchange}; "
             f"fetch the others with --venue EXCHANGE (each with its own --ccxt-config)")
    progress_on = sys.stderr.isatty() and not os.environ.get("BACKTEST_NO_PROGRESS")
    rep = run_fetch(ev, store=store, ccxt_config=ccxt_config, progress_on=progress_on)
    rows = rep.rows()
    if json_out:
        typer.echo(json.dumps({"event": rep.event_id, "exchange": rep.exchange, "store": rep.store, "ok": rep.ok, "items": rows}, indent=1))
    else:
        print_frame(pl.DataFrame(rows, schema={k: (pl.Int64 if k in ("rows", "new") else pl.String) for k in rows[0]}),
                    f"fetch {rep.event_id} ({rep.exchange}) into {rep.store}")
    bad = [r for r, o in zip(rows, rep.outcomes) if o.failed]
    if bad:
        typer.echo(f"error: {len(bad)} required item(s) missing: " + "; ".join(f"{r['item']} {r['symbol']}: {r['why'] or r['status']}" for r in bad[:3]),
                   err=True)
        raise typer.Exit(1)
    typer.echo(f"everything {rep.event_id} needs is in {rep.store}", err=json_out)  # stdout stays JSON


def register(app: typer.Typer, events_app: typer.Typer, user_errors) -> None:
    """Add the event commands to the CLI's apps."""
    events_app.command("list")(user_errors(events_list))
    events_app.command("show")(user_errors(events_show))
    events_app.command("add")(user_errors(events_add))
    app.command("scan")(user_errors(scan))
    app.command("fetch")(user_errors(fetch))
