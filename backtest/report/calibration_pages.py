"""Report pages that rest on the calibration machinery (:mod:`backtest.calibration`).

* :func:`comparison_pages`: every published figure of the event (``data/published_figures.toml``,
  read by :mod:`backtest.calibration.figures`) with its kind and, for the comparable kinds, a
  verdict for the replay and the cascade (:func:`backtest.calibration.figures.judge`: a lower bound
  met or not, an interval covering or not, a point within its uncertainty or not); context figures
  are listed, not judged. The observed price lows of the event catalogue follow the judged rows.

The kinds and verdicts live in :mod:`backtest.calibration.figures` only; this module lays them out.
"""

from __future__ import annotations

from typing import Any

#: characters of a context figure's published value shown on the page (the rest is in the file)
VALUE_CHARS = 150


def _short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _value_text(v: Any) -> str:
    """A context figure's published value as one short line (numbers >= 1e6 in $M/$B)."""

    def one(x: Any) -> str:
        if isinstance(x, bool):
            return str(x)
        if isinstance(x, (int, float)) and abs(x) >= 1e6:
            return f"{x / 1e9:,.3g}B" if abs(x) >= 1e8 else f"{x / 1e6:,.3g}M"
        if isinstance(x, list):
            return ", ".join(one(y) for y in x)
        return str(x)

    if isinstance(v, dict):
        return _short("; ".join(f"{k}: {one(x)}" for k, x in v.items()), VALUE_CHARS)
    return _short(one(v), VALUE_CHARS)


def _scope_text(fig) -> str:
    venues = ", ".join(fig.venues) if fig.venues else ""
    syms = ", ".join(s.split("/")[0] for s in fig.symbols) if fig.symbols else ""
    parts = [p for p in (venues, syms) if p]
    return "; ".join(parts) or (fig.scope or "—")


def event_figures(event, figures: list | None = None) -> list:
    """The published figures of ``event`` (default: the committed file), in file order."""
    from backtest.calibration.figures import load_figures

    figs = load_figures(check_events=False) if figures is None else figures
    return [f for f in figs if f.event == event.id]


def verdicts(fig, event, summaries: dict[str, dict | None]) -> dict[str, tuple[float | None, Any]]:
    """Per run name (``replay``, ``cascade``): (simulated value or None, Verdict) of one figure.

    A comparable figure outside the simulated scope (another venue, a symbol not simulated) or one
    the summary cannot answer gets a verdict of ``None`` with the reason."""
    from backtest.calibration.figures import Verdict, judge
    from backtest.calibration.targets import simulated_value, usable

    out: dict[str, tuple[float | None, Any]] = {}
    for name, s in summaries.items():
        if s is None:
            out[name] = (None, Verdict(None, "not run"))
            continue
        if not fig.comparable:
            out[name] = (None, judge(fig, None))
            continue
        why = usable(fig, event, s.get("symbols") or event.symbols)
        if why is not None:
            out[name] = (None, Verdict(None, f"not judged ({why.replace('/USDT:USDT', '').replace('symbol ', '').replace(' is not ', ' not ')})"))
            continue
        try:
            x = simulated_value(s, fig)
        except KeyError:
            out[name] = (None, Verdict(None, "not judged (no value for its scope)"))
            continue
        out[name] = (x, judge(fig, x))
    return out


def _mark(v) -> str:
    return {True: "✓ ", False: "✗ "}.get(v.ok, "") + v.text


def comparison_rows(event, replay: dict | None, cascade: dict, path_lows: dict[str, tuple], figures: list | None = None):
    """(judged rows, context rows, tally): the judged rows are the comparable figures (kind, published,
    replay and its verdict, cascade and its verdict, scope, source), then the observed price lows;
    the context rows are (figure, kind, published value, source); ``tally`` counts the cascade's
    verdicts ``{"held": n, "failed": m, "not judged": k}``."""
    from backtest.calibration.figures import KIND_TEXT, format_value

    judged, context = [], []
    tally = {"held": 0, "failed": 0, "not judged": 0}
    for f in event_figures(event, figures):
        if not f.comparable:
            value = f.published_text() if f.kind == "input" else _value_text(f.value)
            context.append((_short(f.what, 48), _short(value, 100), _short(f.source, 26)))
            continue
        v = verdicts(f, event, {"replay": replay, "cascade": cascade})
        (rx, rv), (cx, cv) = v["replay"], v["cascade"]
        tally["held" if cv.ok else ("failed" if cv.ok is False else "not judged")] += 1
        src = f.source + (f" (basis: {f.basis})" if f.basis else "")
        judged.append((_short(f.what, 58), KIND_TEXT[f.kind], f.published_text(), format_value(rx, f.metric), _mark(rv),
                       format_value(cx, f.metric), _mark(cv), _scope_text(f), _short(src, 118)))
    for o in event.observed:
        sym = o.get("what", "").split("_")[0]
        rlow, clow = path_lows.get(sym, (None, None))
        when = o.get("time") or o.get("hour") or ""
        judged.append((
            f"{o['what']} (USDT)", "observed low", f"{o['value']:,.6g}",
            f"{rlow:,.6g}" if rlow is not None else "—", f"{rlow / o['value']:.3f}×" if rlow else "—",
            f"{clow:,.6g}" if clow is not None else "—", f"{clow / o['value']:.3f}×" if clow else "—", "committed data",
            f"committed market data{(', ' + when.replace('T', ' ')[:16]) if when else ''} (simulated: path's lowest)",
        ))
    return judged, context, tally


def comparison_pages(event, replay: dict | None, cascade: dict, path_lows: dict[str, tuple], figures: list | None = None):
    """The comparison page(s): judged figures, then the context figures (listed, not judged).

    Judged rows that do not fit continue on another page; context rows that do not fit are counted
    on the page (they are all in ``data/published_figures.toml``)."""
    from backtest.report.common import GREY, draw_table, iso, new_figure, wrap
    from backtest.report.figures import short_sym

    judged, context, tally = comparison_rows(event, replay, cascade, path_lows, figures)
    cols = ["published figure", "kind", "published", "replay", "verdict", "cascade", "verdict", "scope", "source"]
    widths = [31, 12, 13, 9, 11, 9, 11, 17, 72]
    pages = []
    rows = judged
    y = 0.82
    while True:
        fig = new_figure()
        fig.set_layout_engine("none")
        fig.text(0.04, 0.95, "Simulated against published figures" + (" (continued)" if pages else ""), fontsize=15, fontweight="bold", va="top")
        n = tally["held"] + tally["failed"]
        note = (
            f"Simulated: {event.exchange}, {len(event.symbols)} symbols ({', '.join(short_sym(s) for s in event.symbols)}), "
            f"{iso(event.start_ms)} → {iso(event.end_ms)}. Each figure is judged by its kind (data/published_figures.toml): "
            "a lower bound is met or not, an interval covers the simulated value or not, a point holds it within its "
            "uncertainty or not; context figures are listed, not judged. Published liquidation totals are lower bounds "
            "(venues publish at most one forced order per symbol per second). 'replay' = observed price path without "
            "feedback; 'cascade' = forced orders move the price; observed lows: simulated ÷ observed."
            + (f" Cascade: {tally['held']} of {n} judged figures hold." if n else " No figure of this event can be judged.")
        )
        fig.text(0.04, 0.912, wrap(note, 190), fontsize=7.8, va="top", color="#333333", linespacing=1.3)
        if rows:
            rows, y = draw_table(fig, (0.04, 0.05, 0.92, 0.785), cols, rows, widths, fontsize=6.4)
        pages.append(fig)
        if not rows:
            break
    if context:
        fig = pages[-1]
        top = y - 0.022
        fig.text(0.04, top, f"Context only: {len(context)} figures, listed, not judged (values abridged; in full in data/published_figures.toml)",
                 fontsize=9, fontweight="bold", va="top")
        half = (len(context) + 1) // 2
        over = []
        yb = top
        for k, part in enumerate((context[:half], context[half:])):
            if not part:
                continue
            if top - 0.06 <= 0.035:
                over += part
                continue
            left, yk = draw_table(fig, (0.04 + k * 0.465, 0.03, 0.455, top - 0.02 - 0.03), ["figure", "published value", "source"],
                                  part, [28, 62, 29], fontsize=5.2)
            over += left
            yb = min(yb, yk)
        if over:  # never silently
            fig.text(0.04, max(yb - 0.004, 0.012), f"(+{len(over)} more context figures in data/published_figures.toml)",
                     fontsize=6.5, color=GREY, va="top")
    return pages
