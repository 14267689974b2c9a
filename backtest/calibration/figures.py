"""Published figures of the catalogued events, machine-readable (``data/published_figures.toml``).

The file is built by ``scripts/build_published_figures.py`` from ``../shared/data/published_figures.json``
and keeps each figure's published fields (value, unit, window_utc, scope, source, verbatim quote,
confidence). Each record adds:

* ``event``: a ``data/events.toml`` id (``methodology`` for caveats that belong to no event);
* ``kind``: ``point`` (``target`` within ``uncertainty``), ``lower_bound`` (``target``: met when the
  simulated value is at least it), ``interval`` (``low``..``high``: covered or not), ``context``
  (not compared) or ``input`` (a pre-event level the simulation of that event takes: ``param``
  set to ``target``);
* ``metric``: the summary key it compares with (see :data:`METRICS`); ``venues`` (ccxt ids, or
  ``all``), ``symbols`` (ccxt symbols the figure is compared over) and ``window_ms`` (UTC ms);
* ``scale`` and ``basis``: how a published number was turned into the compared ``target`` (a
  venue total scaled to the simulated symbols, a share widened for a different scope...).

Units: USD for notionals, fractions (0-1) for shares and open-interest changes, UTC ms for times.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backtest.errors import CalibrationError

#: the kinds a figure can have
KINDS = ("point", "lower_bound", "interval", "context", "input")

#: how each kind is named on the report's comparison page
KIND_TEXT = {
    "point": "point ± uncertainty",
    "lower_bound": "lower bound",
    "interval": "interval",
    "context": "context only",
    "input": "input (pre-event level)",
}

#: summary metrics a figure can compare with, and their unit. ``peak_minute`` is the summary's
#: ISO minute read as UTC ms; ``insurance_fund_used_usd`` is the fund's start minus its minimum;
#: ``open_interest_change`` is the relative change of open interest over the window.
METRICS = {
    "liquidated_notional_usd": "USD",
    "long_share": "fraction",
    "peak_minute": "UTC ms",
    "peak_minute_notional_usd": "USD",
    "adl_notional_usd": "USD",
    "insurance_fund_used_usd": "USD",
    "open_interest_change": "fraction",
}

#: a lower bound without its own uncertainty is scored as shortfall / (this share of the bound)
LOWER_BOUND_SCALE = 0.25


def default_path() -> Path:
    """``$BACKTEST_FIGURES``, else the committed ``data/published_figures.toml``."""
    env = os.environ.get("BACKTEST_FIGURES")
    return Path(env) if env else Path(__file__).resolve().parent.parent.parent / "data" / "published_figures.toml"


@dataclass(frozen=True)
class Figure:
    """One published figure with what a simulation compares with it (see the module docstring)."""

    id: str
    event: str
    what: str
    kind: str
    value: Any = None
    unit: str = ""
    window_utc: str = ""
    scope: str = ""
    source: str = ""
    quote: str = ""
    confidence: str = ""
    metric: str | None = None
    param: str | None = None
    venues: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()
    window_ms: tuple[int, int] | None = None
    target: float | None = None
    low: float | None = None
    high: float | None = None
    uncertainty: float | None = None
    scale: float | None = None
    basis: str = ""
    source_index: int | None = None
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def comparable(self) -> bool:
        return self.kind in ("point", "lower_bound", "interval")

    def published_text(self) -> str:
        """The compared number as text: '>= $1.55B', '0.80-0.95', '21:15 UTC ± 10 min'..."""
        f = lambda x: format_value(x, self.metric)  # noqa: E731
        if self.kind == "lower_bound":
            return f">= {f(self.target)}"
        if self.kind == "interval":
            return f"{f(self.low)} .. {f(self.high)}"
        if self.kind == "point":
            u = f"{self.uncertainty / 60_000:g} min" if self.metric == "peak_minute" else f(self.uncertainty)
            return f"{f(self.target)} ± {u}"
        if self.kind == "input":
            return f"{self.param} = {self.target:g}"
        return str(self.value)


def format_value(x: float | None, metric: str | None) -> str:
    """A compared value as text in the metric's unit."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    unit = METRICS.get(metric or "", "")
    if unit == "USD":
        return f"${x / 1e9:,.3g}B" if abs(x) >= 1e8 else f"${x / 1e6:,.3g}M"
    if unit == "UTC ms":
        from datetime import datetime, timezone

        return datetime.fromtimestamp(x / 1000.0, tz=timezone.utc).strftime("%m-%d %H:%M")
    return f"{x:.3g}"


def _num(rec: dict, key: str, where: str) -> float | None:
    v = rec.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise CalibrationError(f"{where}: {key} must be a finite number, got {v!r}")
    return float(v)


def _figure(rec: dict, where: str, event_ids: set[str] | None) -> Figure:
    if not isinstance(rec, dict):
        raise CalibrationError(f"{where}: a figure must be a table, got {type(rec).__name__}")
    for k in ("id", "event", "what", "kind"):
        if not isinstance(rec.get(k), str) or not rec[k]:
            raise CalibrationError(f"{where}: figure lacks {k!r} (a non-empty string)")
    where = f"{where} ({rec['id']})"
    kind = rec["kind"]
    if kind not in KINDS:
        raise CalibrationError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if event_ids is not None and rec["event"] not in event_ids and rec["event"] != "methodology":
        raise CalibrationError(f"{where}: event {rec['event']!r} is not in the catalogue; known: {', '.join(sorted(event_ids))}")
    nums = {k: _num(rec, k, where) for k in ("target", "low", "high", "uncertainty", "scale")}
    metric = rec.get("metric")
    if kind in ("point", "lower_bound", "interval"):
        if metric not in METRICS:
            raise CalibrationError(f"{where}: a {kind} needs a metric, one of {', '.join(METRICS)}; got {metric!r}")
        if kind == "interval":
            if nums["low"] is None or nums["high"] is None or not nums["low"] <= nums["high"]:
                raise CalibrationError(f"{where}: an interval needs low <= high")
        elif nums["target"] is None:
            raise CalibrationError(f"{where}: a {kind} needs a target")
        if kind == "point" and not (nums["uncertainty"] or 0) > 0:
            raise CalibrationError(f"{where}: a point needs an uncertainty > 0 (same unit as its target)")
    if kind == "input" and (not isinstance(rec.get("param"), str) or nums["target"] is None):
        raise CalibrationError(f"{where}: an input needs param (a parameter name) and target (its value)")
    win = rec.get("window_ms")
    if win is not None and (not isinstance(win, list) or len(win) != 2 or not all(isinstance(x, int) for x in win) or win[0] >= win[1]):
        raise CalibrationError(f"{where}: window_ms must be [start, end] in UTC ms with start < end")
    known = set(Figure.__dataclass_fields__) - {"extra"}
    return Figure(
        id=rec["id"], event=rec["event"], what=rec["what"], kind=kind, value=rec.get("value"), unit=str(rec.get("unit", "")),
        window_utc=str(rec.get("window_utc", "")), scope=str(rec.get("scope", "")), source=str(rec.get("source", "")),
        quote=str(rec.get("quote", "")), confidence=str(rec.get("confidence", "")), metric=metric, param=rec.get("param"),
        venues=tuple(rec.get("venues", ())), symbols=tuple(rec.get("symbols", ())), window_ms=tuple(win) if win else None,
        target=nums["target"], low=nums["low"], high=nums["high"], uncertainty=nums["uncertainty"], scale=nums["scale"],
        basis=str(rec.get("basis", "")), source_index=rec.get("source_index"),
        extra={k: v for k, v in rec.items() if k not in known},
    )


_BY_FILE: dict[Path, dict[str, list]] = {}


def figures_of(event_id: str) -> list["Figure"]:
    """The catalogued figures (:func:`default_path`) of ``event_id``, read once per process and
    file; none when the file is missing or malformed (a simulation does not depend on it: the
    calibration commands load it themselves and report what is wrong with it)."""
    path = default_path()
    by_event = _BY_FILE.get(path)
    if by_event is None:
        by_event = {}
        try:
            for f in load_figures(path, check_events=False):
                by_event.setdefault(f.event, []).append(f)
        except CalibrationError:
            pass
        _BY_FILE[path] = by_event
    return by_event.get(event_id, [])


def load_figures(path: str | os.PathLike | None = None, *, check_events: bool = True) -> list[Figure]:
    """All figures of the file (default :func:`default_path`), validated; ids must be unique.

    With ``check_events`` every figure's event must be in the catalogue (``data/events.toml``).
    Raises :class:`CalibrationError` with one line for a malformed file.
    """
    from backtest.params import read_toml

    p = Path(path) if path else default_path()
    raw = read_toml(p, "figures file", CalibrationError, example="data/published_figures.toml")
    recs = raw.get("figures")
    if not isinstance(recs, list):
        raise CalibrationError(f"figures file {p} has no [[figures]] tables; give each figure as a [[figures]] table "
                               "(id, event, kind, metric, value, ...) as in data/published_figures.toml")
    event_ids = None
    if check_events:
        from backtest.events import load_events

        event_ids = {e.id for e in load_events()}
    figs = [_figure(r, f"figures file {p}, figure {i + 1}", event_ids) for i, r in enumerate(recs)]
    seen: set[str] = set()
    for f in figs:
        if f.id in seen:
            raise CalibrationError(f"figures file {p}: figure id {f.id!r} appears twice; ids must be unique")
        seen.add(f.id)
    return figs


@dataclass(frozen=True)
class Verdict:
    """How a simulated value stands against a figure: ``ok`` True/False (None: not compared)."""

    ok: bool | None
    text: str


def judge(fig: Figure, simulated: float | None) -> Verdict:
    """Judge a simulated value by the figure's kind: a lower bound is met or not, an interval
    covers it or not, a point holds it within its uncertainty or not; context is not compared."""
    if not fig.comparable:
        return Verdict(None, "context")
    if simulated is None or (isinstance(simulated, float) and math.isnan(simulated)):
        return Verdict(False, "not simulated (no value)")
    x = float(simulated)
    if fig.kind == "lower_bound":
        ok = x >= fig.target
        return Verdict(ok, "met" if ok else "not met")
    if fig.kind == "interval":
        ok = fig.low <= x <= fig.high
        return Verdict(ok, "covered" if ok else ("below" if x < fig.low else "above"))
    ok = abs(x - fig.target) <= fig.uncertainty
    return Verdict(ok, "within" if ok else "outside")


def judge_band(fig: Figure, lo: float | None, hi: float | None) -> Verdict:
    """Judge a predictive band [lo, hi] against a figure: a lower bound is met when the band
    reaches it (hi >= bound), an interval or a point (target ± uncertainty) when the band overlaps it."""
    if not fig.comparable:
        return Verdict(None, "context")
    if lo is None or hi is None:
        return Verdict(False, "not simulated (no value)")
    if fig.kind == "lower_bound":
        ok = hi >= fig.target
        return Verdict(ok, "met" if ok else "not met")
    a, b = (fig.low, fig.high) if fig.kind == "interval" else (fig.target - fig.uncertainty, fig.target + fig.uncertainty)
    ok = lo <= b and hi >= a
    return Verdict(ok, "covered" if ok else ("below" if hi < a else "above"))
