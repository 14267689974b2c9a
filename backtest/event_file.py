"""Event files: read and validate the TOML layout of ``data/events.toml``, and write a user's events.

One layout for the catalogue and for a user's file: an array of tables ``[[events]]``, each with

==================  =========================================================================
key                 value
==================  =========================================================================
``id``              required; a path-safe name (letters, digits, ``.``, ``_``, ``-``; 1-64)
``slug``            optional path-safe name (default: the id)
``name``            optional text (default: the id)
``exchange``        ccxt exchange id of the primary venue (default ``binanceusdm``)
``symbols``         required, non-empty list of ccxt symbols (``BTC/USDT:USDT``) on that venue
``venues``          optional list of further venues the event spans, each a table
                    ``{ exchange = "bybit", symbols = [...] }`` (symbols default to the event's),
                    optionally ``path_proxy = "binanceusdm"``: the venue has no bars of its own and
                    its population runs on that exchange's bars (labelled as a proxy in every
                    output). An exchange appears once per event (the primary one not again).
``window``          required ``[start, end)``: ISO-8601 times with a zone (``Z`` or ``+hh:mm``)
                    or TOML offset date-times, or plain dates (00:00 UTC); start < end, up to
                    :data:`MAX_WINDOW_DAYS`
``lookback``        optional ``[start, end]`` ending where the window starts, 1 to
                    :data:`MAX_LOOKBACK_DAYS` days (default :data:`DEFAULT_LOOKBACK_DAYS`)
``core_window``     optional ``[start, end)`` inside the window
``figures``         optional tables with ``what`` and ``source`` (and ``value_usd``/``value``
                    numbers, ``metric``/``scope``/``detail`` text)
``pre_event_inputs`` optional tables with ``what``, ``value_usd`` and ``source``
``observed``        optional tables with ``what`` and a number ``value``
==================  =========================================================================

Every mistake is one :class:`~backtest.errors.EventError` line naming the file, the event and the
field. Times are UTC milliseconds once read.
"""

from __future__ import annotations

import importlib.util
import re
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from backtest.errors import EventError, UserError

DAY_MS = 86_400_000
#: population lookback when an event gives none: the catalogue's 30 days (data/events.toml)
DEFAULT_LOOKBACK_DAYS = 30
#: the longest lookback accepted: a year of hourly bars; longer is a typo, not a lookback
MAX_LOOKBACK_DAYS = 365
#: the longest replay window accepted: a cascade lasts hours to days (the catalogue's longest is 2 days)
MAX_WINDOW_DAYS = 31

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: ccxt unified symbols: BASE/QUOTE (spot), BASE/QUOTE:SETTLE (perpetual), ...:SETTLE-YYMMDD (dated)
SYMBOL_RE = re.compile(r"^[A-Za-z0-9]+/[A-Za-z0-9]+(:[A-Za-z0-9]+(-\d{6}(-[0-9.]+-[CP])?)?)?$")
EVENT_KEYS = ("id", "slug", "name", "exchange", "symbols", "venues", "window", "lookback", "core_window", "figures", "pre_event_inputs", "observed")
#: list-of-table fields: required keys, keys that must be numbers, keys that must be text
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "figures": (("what", "source"), ("value_usd", "value"), ("what", "source", "metric", "scope", "detail")),
    "pre_event_inputs": (("what", "value_usd", "source"), ("value_usd",), ("what", "source", "detail", "symbol", "exchange")),
    "observed": (("what", "value"), ("value",), ("what", "time", "hour")),
}


@lru_cache(maxsize=1)
def known_exchanges() -> frozenset[str]:
    """ccxt's exchange ids, read from the installed package's module names (the same list as
    ``ccxt.exchanges``) without importing ccxt, which takes over a second."""
    spec = importlib.util.find_spec("ccxt")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - ccxt is a dependency
        return frozenset()
    folder = Path(list(spec.submodule_search_locations)[0])
    return frozenset(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def check_id(value: Any, field: str = "id") -> str:
    if not isinstance(value, str) or not ID_RE.match(value) or ".." in value:
        raise ValueError(f"{field} {value!r} is not a path-safe name; use 1-64 letters, digits, '.', '_' or '-' (e.g. 2025-10-10)")
    return value


VENUE_KEYS = ("exchange", "symbols", "path_proxy")


def check_exchange(value: Any) -> str:
    if isinstance(value, list):
        raise ValueError("exchange must be one ccxt exchange id; for an event over several venues list the others as venues = [{ exchange = \"bybit\", symbols = [...] }]")
    if not isinstance(value, str):
        raise ValueError(f"exchange must be a ccxt exchange id such as binanceusdm, not {value!r}")
    known = known_exchanges()
    if known and value not in known:
        close = sorted(e for e in known if value.lower().replace("-", "").replace("_", "") in e)[:4]
        raise ValueError(f"exchange {value!r} is not a ccxt exchange id{' (did you mean ' + ', '.join(close) + '?)' if close else ''}; "
                         "give one such as binanceusdm, bybit or okx (the list: python -c 'import ccxt; print(ccxt.exchanges)')")
    return value


def check_symbols(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [s.strip() for s in value.split(",") if s.strip()]
    if not isinstance(value, list) or not value:
        raise ValueError("symbols must be a non-empty list of ccxt symbols, e.g. [\"BTC/USDT:USDT\"]")
    for s in value:
        if not isinstance(s, str) or not SYMBOL_RE.match(s):
            raise ValueError(f"symbol {s!r} is not a ccxt symbol; write it as BASE/QUOTE:SETTLE, e.g. BTC/USDT:USDT")
    if len(set(value)) != len(value):
        raise ValueError("symbols lists a symbol twice")
    return tuple(value)


def check_venues(value: Any, primary: str, symbols: tuple[str, ...]) -> tuple:
    """The event's further venues (:class:`~backtest.events.Venue`, in file order) from a list of
    tables ``{exchange, symbols?, path_proxy?}``; ``symbols`` default to the event's."""
    from backtest.events import Venue

    if not isinstance(value, list):
        raise ValueError("venues must be a list of tables, e.g. venues = [{ exchange = \"bybit\", symbols = [\"BTC/USDT:USDT\"] }]")
    out: list = []
    seen = {primary}
    for i, t in enumerate(value, 1):
        if not isinstance(t, dict):
            raise ValueError(f"venues entry {i} must be a table {{ exchange = ..., symbols = [...] }}, not {t!r}")
        unknown = [k for k in t if k not in VENUE_KEYS]
        if unknown:
            raise ValueError(f"venues entry {i}: unknown key {unknown[0]!r}; keys are {', '.join(VENUE_KEYS)}")
        if "exchange" not in t:
            raise ValueError(f"venues entry {i} has no exchange; add exchange = \"bybit\" (a ccxt id)")
        try:
            ex = check_exchange(t["exchange"])
            syms = check_symbols(t["symbols"]) if "symbols" in t else symbols
            proxy = check_exchange(t["path_proxy"]) if "path_proxy" in t else ""
        except ValueError as e:
            raise ValueError(f"venues entry {i}: {e}") from None
        if ex in seen:
            raise ValueError(f"venues entry {i}: exchange {ex} is already a venue of this event; list each exchange once")
        if proxy == ex:
            raise ValueError(f"venues entry {i}: path_proxy must be another exchange than {ex} (omit it to use {ex}'s own bars)")
        seen.add(ex)
        out.append(Venue(ex, syms, proxy))
    return tuple(out)


def time_ms(value: Any, field: str) -> int:
    """UTC ms of an ISO-8601 string with a zone, a TOML offset date-time, or a date (00:00 UTC)."""
    from backtest.store import to_ms

    if isinstance(value, date) and not isinstance(value, datetime):
        value = value.isoformat()
    if isinstance(value, (int, float)) or not isinstance(value, (str, datetime)):
        raise ValueError(f"{field} {value!r} is not a time; give ISO-8601 with a zone, e.g. \"2025-10-10T20:00:00Z\"")
    try:
        return to_ms(value)
    except UserError as e:
        raise ValueError(f"{field}: {e}") from None


def check_span(value: Any, field: str, *, text: bool = False) -> tuple[int, int]:
    """``[start, end]`` (a 2-list; with ``text``, also ``"START/END"`` as on the command line) as
    UTC ms with start < end."""
    if text and isinstance(value, str) and "/" in value:
        value = value.split("/", 1)
    if not isinstance(value, list) or len(value) != 2:
        if text:
            raise ValueError(f"{field} must be START/END in UTC, e.g. 2025-10-10T20:00Z/2025-10-11T00:00Z")
        raise ValueError(f"{field} must be [start, end], e.g. [\"2025-10-10T20:00:00Z\", \"2025-10-11T00:00:00Z\"]")
    a, b = time_ms(value[0], f"{field} start"), time_ms(value[1], f"{field} end")
    if a >= b:
        raise ValueError(f"{field} starts at or after its end ({_iso(a)} >= {_iso(b)}); swap them")
    return a, b


def check_lookback_days(days: Any) -> float:
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not 1 <= days <= MAX_LOOKBACK_DAYS:
        raise ValueError(f"lookback must be 1 to {MAX_LOOKBACK_DAYS} days, not {days!r}")
    return float(days)


def _iso(ms: int) -> str:
    from backtest.store import ms_to_iso

    return ms_to_iso(ms)


def _tables(d: dict, field: str) -> tuple[dict, ...]:
    value = d.get(field, [])
    required, numbers, texts = TABLES[field]
    if not isinstance(value, list):
        raise ValueError(f"{field} must be a list of tables ([[events.{field}]]), not {type(value).__name__}")
    for i, t in enumerate(value, 1):
        if not isinstance(t, dict):
            raise ValueError(f"{field} entry {i} must be a table with {', '.join(required)}, not {t!r}")
        missing = [k for k in required if k not in t]
        if missing:
            raise ValueError(f"{field} entry {i} has no {', '.join(missing)}")
        for k in numbers:
            if k in t and (isinstance(t[k], bool) or not isinstance(t[k], (int, float))):
                raise ValueError(f"{field} entry {i}: {k} must be a number, not {t[k]!r}")
        for k in texts:
            if k in t and not isinstance(t[k], str):
                raise ValueError(f"{field} entry {i}: {k} must be text, not {t[k]!r}")
    return tuple(value)


def parse_event(d: Any, source: str, index: int = 1):
    """One validated :class:`~backtest.events.Event` from a table of an event file."""
    from backtest.events import Event

    where = f"{source}: event {d.get('id', index) if isinstance(d, dict) else index}"
    if not isinstance(d, dict):
        raise EventError(f"{where}: each entry of events must be a table ([[events]]), not {d!r}")
    field = "id"
    try:
        if "id" not in d:
            raise ValueError("id is missing; add id = \"NAME\"")
        check_id(d["id"])
        unknown = [k for k in d if k not in EVENT_KEYS]
        if unknown:
            field = unknown[0]
            raise ValueError(f"unknown key {unknown[0]!r}; keys are {', '.join(EVENT_KEYS)}")
        for field in ("slug",):
            if field in d:
                check_id(d[field], field)
        field = "name"
        if "name" in d and not isinstance(d["name"], str):
            raise ValueError(f"name must be text, not {d['name']!r}")
        field = "exchange"
        exchange = check_exchange(d.get("exchange", "binanceusdm"))
        field = "symbols"
        if "symbols" not in d:
            raise ValueError("symbols is missing; add e.g. symbols = [\"BTC/USDT:USDT\"]")
        symbols = check_symbols(d["symbols"])
        field = "venues"
        venues = check_venues(d["venues"], exchange, symbols) if "venues" in d else ()
        field = "window"
        if "window" not in d:
            raise ValueError("window is missing; add window = [\"START\", \"END\"] (ISO-8601 UTC)")
        start, end = check_span(d["window"], "window")
        if end - start > MAX_WINDOW_DAYS * DAY_MS:
            raise ValueError(f"window is longer than {MAX_WINDOW_DAYS} days; split it into several events")
        field = "lookback"
        lb = start - DEFAULT_LOOKBACK_DAYS * DAY_MS
        if "lookback" in d:
            lb, lb_end = check_span(d["lookback"], "lookback")
            if lb_end != start:
                raise ValueError(f"lookback must end where the window starts ({_iso(start)}), not at {_iso(lb_end)}")
            check_lookback_days((start - lb) / DAY_MS)
        field = "core_window"
        core: tuple[int | None, int | None] = (None, None)
        if "core_window" in d:
            core = check_span(d["core_window"], "core_window")
            if core[0] < start or core[1] > end:
                raise ValueError(f"core_window must lie inside the window {_iso(start)} → {_iso(end)}")
        tables = {}
        for field in TABLES:
            tables[field] = _tables(d, field)
    except ValueError as e:
        raise EventError(f"{where}: {field}: {e}") from None
    return Event(
        id=d["id"], slug=d.get("slug", d["id"]), name=d.get("name", d["id"]), exchange=exchange, symbols=symbols, venues=venues,
        start_ms=start, end_ms=end, lookback_start_ms=lb, core_start_ms=core[0], core_end_ms=core[1],
        figures=tables["figures"], pre_event_inputs=tables["pre_event_inputs"], observed=tables["observed"], source=source,
    )


def read_event_file(path: str | Path, what: str = "event file") -> list:
    """Every event of a file, validated; duplicate ids are refused."""
    from backtest.params import read_toml

    path = Path(path)
    raw = read_toml(path, what, EventError)
    events = raw.get("events", [])
    extra = [k for k in raw if k != "events"]
    if extra:
        raise EventError(f"{path}: unknown top-level key {extra[0]!r}; an event file holds only [[events]] tables")
    if not isinstance(events, list):
        raise EventError(f"{path}: events must be a list of tables ([[events]]), not {type(events).__name__} {events!r}")
    out = [parse_event(d, str(path), i) for i, d in enumerate(events, 1)]
    seen: set[str] = set()
    for e in out:
        if e.id in seen:
            raise EventError(f"{path}: event {e.id}: id: the file defines this id twice; rename or remove one")
        seen.add(e.id)
    return out


# --------------------------------------------------------------------------------------------
# building and writing
# --------------------------------------------------------------------------------------------
def event_table(
    event_id: str,
    *,
    exchange: str,
    symbols: Any,
    window: Any,
    lookback_days: float | None = None,
    core: Any = None,
    name: str | None = None,
    observed: list[dict] | None = None,
    venues: list[dict] | None = None,
) -> dict[str, Any]:
    """The TOML table of a new event (times as ISO-8601 UTC strings); validated by :func:`parse_event`
    when read back. ``window`` and ``core`` are ``"START/END"`` or ``[start, end]``; ``venues``
    the further venues as tables (``{"exchange": ..., "symbols": [...]}``, see the module table)."""
    try:
        start, end = check_span(window, "--window", text=True)
        days = check_lookback_days(lookback_days if lookback_days is not None else DEFAULT_LOOKBACK_DAYS)
    except ValueError as e:
        raise EventError(f"event {event_id}: {e}") from None
    d: dict[str, Any] = {"id": event_id, "name": name or event_id, "exchange": exchange,
                         "symbols": list(check_symbols_or_fail(event_id, symbols)),
                         "window": [_iso(start), _iso(end)],
                         "lookback": [_iso(start - int(days * DAY_MS)), _iso(start)]}
    if core is not None:
        try:
            a, b = check_span(core, "--core", text=True)
        except ValueError as e:
            raise EventError(f"event {event_id}: {e}") from None
        d["core_window"] = [_iso(a), _iso(b)]
    if venues:
        d["venues"] = [dict(v) for v in venues]
    if observed:
        d["observed"] = observed
    return d


def check_symbols_or_fail(event_id: str, symbols: Any) -> tuple[str, ...]:
    try:
        return check_symbols(list(symbols) if isinstance(symbols, tuple) else symbols)
    except ValueError as e:
        raise EventError(f"event {event_id}: symbols: {e}") from None


def build_event(table: dict[str, Any], source: str = "command line"):
    """An :class:`~backtest.events.Event` from a table (an ad-hoc event: no file is written)."""
    return parse_event(table, source)


def add_events(path: str | Path, tables: list[dict[str, Any]], *, replace: bool = False) -> list[str]:
    """Add event tables to a user's event file atomically; return one line per event saying what
    was done. Refuses (EventError) an id the file already has unless ``replace``; refuses the
    package's own catalogue. New events are appended as text (comments are kept); a replaced
    event rewrites the file (its comments are lost, and the message says so)."""
    import tomli_w

    from backtest.paths import check_out_file, write_atomic

    path = Path(path)
    if _protected(path):
        raise EventError(f"{path} is inside the package or its committed data/; write user events elsewhere, e.g. --events ./events.toml")
    check_out_file(path, option="event file", error=EventError)
    for t in tables:
        parse_event(t, str(path))  # every table is valid before anything is written
    existing = read_event_file(path) if path.exists() else []
    have = {e.id for e in existing}
    clash = [t["id"] for t in tables if t["id"] in have]
    if clash and not replace:
        raise EventError(f"{path} already has event {clash[0]}; pass --replace to overwrite it or choose another id")
    text = path.read_text(encoding="utf-8") if path.exists() else "# User events of the cascade backtester (same layout as data/events.toml).\n"
    if clash:
        import tomllib

        raw = tomllib.loads(text)
        by_id = {t["id"]: t for t in tables}
        raw["events"] = [by_id.pop(e["id"], e) for e in raw.get("events", [])] + list(by_id.values())
        text = tomli_w.dumps(raw)
    else:
        text = text.rstrip("\n") + "\n\n" + tomli_w.dumps({"events": tables})
    import tomllib

    try:
        tomllib.loads(text)  # the file still parses (e.g. not appended after an inline 'events = [...]')
    except tomllib.TOMLDecodeError as e:
        raise EventError(f"{path}: cannot add to this file ({str(e).splitlines()[0]}); write its events as [[events]] tables") from None
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    read_event_file(path)  # and still validates
    return [f"{'replaced' if t['id'] in have else 'added'} event {t['id']} in {path}"
            + (" (the file was rewritten: its comments are not kept)" if t["id"] in have else "") for t in tables]


def _protected(path: Path) -> bool:
    """True for a path inside the package or the project's committed ``data/`` folder."""
    pkg = Path(__file__).resolve().parent
    target = path.expanduser().resolve()
    return any(target.is_relative_to(p) for p in (pkg, pkg.parent / "data"))
