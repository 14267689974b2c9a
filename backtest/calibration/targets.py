"""Targets of a calibration: the comparable figures of an event, the simulated value each is
compared with (read from a run's summary dict only, never from model internals), and the
distance between a simulation and its targets.

Distance (one term per target, in units of the target's own tolerance; total = Euclidean norm):

* lower bound: 0 when met; else shortfall / u, with u the figure's uncertainty or
  :data:`~backtest.calibration.figures.LOWER_BOUND_SCALE` x the bound (one-sided);
* interval: 0 inside; else the distance to the nearer edge / half the width;
* point: |simulated - target| / uncertainty (the peak minute: a time distance in ms over the
  uncertainty in ms);
* a target whose value the run did not produce (no liquidations: no long share, no peak) scores
  :data:`MISSING_DISTANCE`.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Iterable

from backtest.calibration.figures import LOWER_BOUND_SCALE, Figure, load_figures
from backtest.errors import CalibrationError

#: distance of a target the run gave no value for (e.g. the long share of a run with no liquidation)
MISSING_DISTANCE = 10.0


def iso_ms(text: str | None) -> float | None:
    """UTC ms of an ISO time such as the summary's ``peak_minute`` ('2025-10-10T21:13:00Z')."""
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000.0


def event_value(summary: dict, metric: str) -> float | None:
    if metric in summary and metric != "peak_minute":
        v = summary[metric]
        return None if v is None else float(v)
    if metric == "peak_minute":
        return iso_ms(summary.get("peak_minute"))
    if metric == "insurance_fund_used_usd":
        a, b = summary.get("insurance_fund_start_usd"), summary.get("insurance_fund_min_usd")
        return None if a is None or b is None else float(a) - float(b)
    if metric == "open_interest_change":
        on = summary.get("open_notional_usd") or 0.0
        closed = sum(float(summary.get(k) or 0.0) for k in ("liquidated_notional_usd", "stopped_notional_usd", "adl_notional_usd"))
        return -closed / on if on > 0 else None
    raise KeyError(metric)


def venue_result(summary: dict, fig: Figure) -> tuple[str, dict] | None:
    """(exchange, ``summary['venues'][exchange]``) when ``fig`` is scoped to one venue of a
    multi-venue run (its ``venues`` name that one exchange), else None (the event total)."""
    venues = summary.get("venues") or {}
    if len(venues) > 1 and len(fig.venues) == 1 and fig.venues[0] in venues:
        return fig.venues[0], venues[fig.venues[0]]
    return None


def window_value(summary: dict, fig: Figure) -> float | None:
    """An open-interest figure of one symbol with a window, compared over that window: the run's
    point-to-point change there (``per_symbol[KEY]['open_interest_windows']``, results.SymbolSummary;
    KEY the symbol, or ``SYMBOL@EXCHANGE`` off the primary venue), or None when the run has none
    (a figure of another file with a window the catalogue does not have, or an old summary: then it
    compares as :func:`simulated_value` did before windows - the symbol's trough over the run, or the
    event's closed share of open interest when the symbol is the run's only one)."""
    if fig.metric != "open_interest_change" or not fig.window_ms or len(fig.symbols) != 1:
        return None
    from backtest.events import leg_key

    per = summary.get("per_symbol") or {}
    venues = list(summary.get("venues") or {})
    key = leg_key(fig.venues[0], fig.symbols[0], venues[0]) if len(venues) > 1 and len(fig.venues) == 1 else fig.symbols[0]
    w = (per.get(key) or {}).get("open_interest_windows") or {}
    v = w.get(f"{int(fig.window_ms[0])}-{int(fig.window_ms[1])}")
    return None if v is None else float(v)


def simulated_value(summary: dict, fig: Figure) -> float | None:
    """The value of ``fig.metric`` in a run's summary, over the figure's venue and symbols.

    A figure scoped to one venue of a multi-venue run (``venues = ["bybit"]``) compares with that
    venue's result (``summary['venues']['bybit']``); any other with the event total. Venue- or
    event-wide when the figure's symbols are the venue's (event's) symbols (or not given); for a
    subset, the per-symbol entries must carry the metric (``summary['per_symbol'][s][metric]``,
    summed for notionals): otherwise :class:`KeyError` (the summary cannot answer it; see
    :func:`usable`). On a multi-venue run, a market-wide figure (``all``) compares with the total
    over every venue once its symbols are all simulated somewhere.
    """
    from backtest.events import leg_key

    w = window_value(summary, fig)
    if w is not None:
        return w
    syms = set(fig.symbols)
    venues = summary.get("venues") or {}
    scoped = venue_result(summary, fig)
    keys = list(fig.symbols)
    if scoped is not None:
        ex, v = scoped
        if not syms or syms == set(v.get("symbols") or ()):
            return event_value(v, fig.metric)
        primary = next(iter(venues))
        keys = [leg_key(ex, s, primary) for s in fig.symbols]
    elif len(venues) > 1:
        everywhere = {x for v in venues.values() for x in (v.get("symbols") or ())}
        if syms <= everywhere:
            return event_value(summary, fig.metric)
        raise KeyError(fig.metric)
    else:
        run = set(summary.get("symbols") or ())
        if not syms or syms == run:
            return event_value(summary, fig.metric)
    per = summary.get("per_symbol") or {}
    vals = [per.get(s, {}).get(fig.metric) for s in keys]
    if any(v is None for v in vals):
        raise KeyError(fig.metric)
    if len(vals) == 1:
        return float(vals[0])
    if fig.metric not in ("liquidated_notional_usd", "adl_notional_usd", "insurance_fund_used_usd"):
        raise KeyError(fig.metric)  # a share or a time of several symbols is not their sum
    return float(sum(vals))


def usable(fig: Figure, event: Any, symbols: Iterable[str]) -> str | None:
    """Why a comparable figure cannot be a target of a run of ``event`` over ``symbols``, or None.

    Its venues must be one of the event's exchanges (or ``all`` for market-wide shares and times)
    and its symbols must be simulated (on that venue, for a venue's figure).
    """
    if not fig.comparable:
        return "context"
    exchanges = tuple(getattr(event, "exchanges", (event.exchange,)))
    if fig.venues and not ({"all", *exchanges} & set(fig.venues)):
        return f"venue {', '.join(fig.venues)} is not simulated ({', '.join(exchanges)})"
    # symbols: the run's results keys (a bare symbol on the primary venue, SYMBOL@EXCHANGE elsewhere)
    on = [(k.partition("@")[0], k.partition("@")[2] or exchanges[0]) for k in symbols]
    if len(fig.venues) == 1 and fig.venues[0] in exchanges:
        simulated = {s for s, ex in on if ex == fig.venues[0]}
    else:
        simulated = {s for s, _ in on}
    missing = [s for s in fig.symbols if s not in simulated]
    if missing:
        return f"symbol {', '.join(missing)} is not simulated"
    return None


def event_targets(event: Any, symbols: Iterable[str] | None = None, figures: list[Figure] | None = None) -> list[Figure]:
    """The comparable figures of ``event`` a run over ``symbols`` (default: all its symbols) is scored on."""
    figs = load_figures() if figures is None else figures
    syms = list(symbols or ([leg.key for leg in event.legs()] if hasattr(event, "legs") else event.symbols))
    return [f for f in figs if f.event == event.id and usable(f, event, syms) is None]


def event_inputs(event: Any, figures: list[Figure] | None = None) -> dict[str, float]:
    """Parameter overrides the figures give for ``event`` (kind ``input``: e.g. the fund's balance)."""
    figs = load_figures() if figures is None else figures
    return {f.param: f.target for f in figs if f.event == event.id and f.kind == "input"}


def load_targets(event: Any, figures: list[Figure] | None = None, path: str | None = None, symbols: Iterable[str] | None = None) -> list[Figure]:
    """Targets of ``event`` among ``figures`` (default: the file ``path``, default the committed
    one); raises :class:`CalibrationError` when the event has none."""
    figs = load_figures(path) if figures is None else figures
    targets = event_targets(event, symbols, figs)
    if not targets:
        n = sum(1 for f in figs if f.event == event.id)
        raise CalibrationError(
            f"event {event.id} has no comparable figure ({n} figure(s), all context or out of scope) in "
            f"{path or 'data/published_figures.toml'}; give --targets FILE with point, lower_bound or interval figures for it"
        )
    return targets


def term(fig: Figure, x: float | None) -> float:
    """One target's distance (see the module docstring)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING_DISTANCE
    if fig.kind == "lower_bound":
        u = fig.uncertainty or LOWER_BOUND_SCALE * abs(fig.target) or 1.0
        return max(0.0, fig.target - x) / u
    if fig.kind == "interval":
        half = (fig.high - fig.low) / 2.0 or 1.0
        return max(0.0, fig.low - x, x - fig.high) / half
    if fig.kind == "point":
        return abs(x - fig.target) / fig.uncertainty
    raise CalibrationError(f"figure {fig.id} of kind {fig.kind} is not a target")


def distance(stats: dict[str, float | None], targets: list[Figure]) -> float:
    """Euclidean norm of the per-target terms; ``stats`` maps figure id -> simulated value."""
    return math.sqrt(sum(term(f, stats.get(f.id)) ** 2 for f in targets))
