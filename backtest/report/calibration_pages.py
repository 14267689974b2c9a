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
            context.append((_short(f.what, 80), _short(value, 240), _short(f.source, 90)))
            continue
        v = verdicts(f, event, {"replay": replay, "cascade": cascade})
        (rx, rv), (cx, cv) = v["replay"], v["cascade"]
        tally["held" if cv.ok else ("failed" if cv.ok is False else "not judged")] += 1
        src = f.source + (f" (basis: {f.basis})" if f.basis else "")
        judged.append((_short(f.what, 90), KIND_TEXT[f.kind], f.published_text(), format_value(rx, f.metric), _mark(rv),
                       format_value(cx, f.metric), _mark(cv), _scope_text(f), _short(src, 320)))
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
    """The comparison pages: the judged figures (continued on more pages if they do not fit), then
    a page listing the context figures (not judged; rows that do not fit are counted on it)."""
    from backtest.report.common import GREY, draw_table, iso, new_figure, wrap
    from backtest.report.figures import short_sym

    judged, context, tally = comparison_rows(event, replay, cascade, path_lows, figures)
    cols = ["published figure", "kind", "published", "replay", "verdict", "cascade", "verdict", "scope", "source"]
    widths = [27, 13, 14, 9, 11, 9, 11, 17, 70]
    pages = []
    rows = judged
    while True:
        fig = new_figure()
        fig.set_layout_engine("none")
        fig.text(0.04, 0.95, "Simulated against published figures" + (" (continued)" if pages else ""), fontsize=15, fontweight="bold", va="top")
        n = tally["held"] + tally["failed"]
        note = (
            f"Simulated: {event.exchange}, {len(event.symbols)} symbols ({', '.join(short_sym(s) for s in event.symbols)})"
            + "".join(f"; {v.exchange}, {len(v.symbols)} symbol(s)" + (f" on {v.path_proxy}'s bars (PROXY)" if v.path_proxy else "")
                      for v in getattr(event, "venues", ()))
            + ", "
            f"{iso(event.start_ms)} → {iso(event.end_ms)}. Each figure is judged by its kind (data/published_figures.toml): "
            "a lower bound is met or not, an interval covers the simulated value or not, a point holds it within its "
            "uncertainty or not; context figures are listed on the next page, not judged. Published liquidation totals are lower bounds "
            "(venues publish at most one forced order per symbol per second). 'replay' = observed price path without "
            "feedback; 'cascade' = forced orders move the price; observed lows: simulated ÷ observed."
            + (f" Cascade: {tally['held']} of {n} judged figures hold." if n else " No figure of this event can be judged.")
        )
        fig.text(0.04, 0.912, wrap(note, 176), fontsize=7.8, va="top", color="#333333", linespacing=1.3)
        if rows:
            rows, _ = draw_table(fig, (0.04, 0.05, 0.92, 0.765), cols, rows, widths, fontsize=6.9)
        pages.append(fig)
        if not rows:
            break
    if context:  # their own page: listed in full, not judged
        fig = new_figure()
        fig.set_layout_engine("none")
        fig.text(0.04, 0.95, f"Published figures for context: {len(context)}, listed, not judged", fontsize=15, fontweight="bold", va="top")
        fig.text(0.04, 0.905, wrap(
            "Figures of this event in data/published_figures.toml that no simulated value compares with like for like "
            "(other venues, all-venue totals, open interest of other vendors, timelines, statements): kind 'context'. "
            "Values abridged; each figure's verbatim quote, window, scope and confidence are in the file.", 190),
            fontsize=7.8, va="top", color="#333333", linespacing=1.3)
        half = (len(context) + 1) // 2
        over = []
        yb = 0.86
        for k, part in enumerate((context[:half], context[half:])):
            if part:
                left, yk = draw_table(fig, (0.04 + k * 0.465, 0.03, 0.455, 0.83), ["figure", "published value", "source"],
                                      part, [26, 56, 30], fontsize=6.2, wrap_widths=[24, 54, 27])
                over += left
                yb = min(yb, yk)
        if over:  # never silently
            fig.text(0.04, max(yb - 0.004, 0.012), f"(+{len(over)} more context figures in data/published_figures.toml)",
                     fontsize=6.5, color=GREY, va="top")
        pages.append(fig)
    return pages


# ---------------------------------------------------------------------------------------------
# global sensitivity: Sobol indices read from a committed result of `backtest sensitivity`
# ---------------------------------------------------------------------------------------------
#: the headline figures the Sobol page shows (summary metrics; backtest.calibration.figures.METRICS)
SOBOL_METRICS = ("liquidated_notional_usd", "long_share", "peak_minute_notional_usd", "adl_notional_usd")
SOBOL_LABELS = {
    "liquidated_notional_usd": "liquidated notional",
    "long_share": "long share of liquidations",
    "peak_minute_notional_usd": "peak-minute notional",
    "adl_notional_usd": "ADL notional",
}


def calibration_dir() -> "Path":
    """``data/calibration/`` of the repository (committed calibration results)."""
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "data" / "calibration"


def sobol_path(event_id: str) -> "Path":
    """Where the report looks for the event's Sobol result: ``data/calibration/sobol-EVENT/sobol.json``."""
    return calibration_dir() / f"sobol-{event_id}" / "sobol.json"


def sobol_make_command(event_id: str) -> str:
    return f"backtest sensitivity {event_id} --samples 64 --n-positions 20000 --mode cascade --out data/calibration/sobol-{event_id}"


def sobol_page(event, result: dict | None, title: str):
    """Ranked S1 and ST (with their confidence intervals) of each headline figure over every
    prior, from ``result`` (:func:`backtest.calibration.sensitivity.read_result`); without one, the
    page says how to make it."""
    import numpy as np

    from backtest.calibration.priors import PRIORS
    from backtest.report.common import GREY, new_figure, wrap

    fig = new_figure()
    fig.suptitle(title, fontsize=14, fontweight="bold")
    rel = f"data/calibration/sobol-{event.id}/sobol.json"
    if result is None:
        fig.set_layout_engine("none")
        fig.text(0.05, 0.8, wrap(
            f"No global-sensitivity result for {event.id} in {rel}. The report reads a precomputed one (the runs take minutes, "
            f"the report seconds). Make it with:\n\n    {sobol_make_command(event.id)}\n\nthen run the report again. It decomposes "
            "the variance of the headline figures (liquidated notional, long share, peak minute, ADL) over every parameter "
            "with a prior (backtest/calibration/priors.py) into Sobol indices (SALib): first order S1 and total order ST.", 120),
            fontsize=10, va="top")
        return fig
    meta, table = result["meta"], result["table"]
    priors = meta.get("priors") or {}
    changed = sorted(set(priors) ^ set(PRIORS)) + sorted(
        n for n in set(priors) & set(PRIORS) if (priors[n].get("low"), priors[n].get("high"), priors[n].get("shape"))
        != (PRIORS[n].low, PRIORS[n].high, PRIORS[n].shape))
    note = (
        f"Sobol indices (SALib, Saltelli design, first and total order) of the headline figures over every parameter with a prior "
        f"(backtest/calibration/priors.py: {len(priors)} parameters varied together over their priors). Read from {rel}: computed "
        f"{str(meta.get('computed_utc', 'at an unrecorded time')).replace('T', ' ').replace('Z', ' UTC')} by backtest "
        f"{meta.get('version', '?')}, N = {meta.get('samples', '?')} ({meta.get('runs', '?'):,} runs of "
        f"{meta.get('n_positions', 0):,} positions per symbol, {meta.get('mode', '?')} mode, seed {meta.get('seed', '?')}). "
        f"Bars: ST (total order: the parameter with all its interactions) and S1 (alone), lines their 95 % confidence "
        f"intervals; ranked by ST. Recompute: {meta.get('command', sobol_make_command(event.id))}."
        + (f" The priors have changed since ({', '.join(changed)}): recompute." if changed else "")
    )
    fig.set_layout_engine("none")
    fig.text(0.05, 0.905, wrap(note, 180), fontsize=7.6, va="top", color="#333333", linespacing=1.3)
    metrics = [m for m in SOBOL_METRICS if m in set(table["metric"].to_list())]
    for k, m in enumerate(metrics[:4]):
        ax = fig.add_axes((0.16 + (k % 2) * 0.47, 0.47 - (k // 2) * 0.41, 0.32, 0.31))
        t = table.filter(table["metric"] == m).sort("ST", descending=True)
        y = np.arange(t.height)[::-1]
        st, s1 = t["ST"].to_numpy(), t["S1"].to_numpy()
        ax.barh(y + 0.18, st, height=0.36, color="#4477aa", label="ST (total order)")
        ax.errorbar(st, y + 0.18, xerr=t["ST_conf"].to_numpy(), fmt="none", ecolor="#222222", lw=0.7, capsize=1.5)
        ax.barh(y - 0.18, s1, height=0.36, color="#ccbb44", label="S1 (first order)")
        ax.errorbar(s1, y - 0.18, xerr=t["S1_conf"].to_numpy(), fmt="none", ecolor="#222222", lw=0.7, capsize=1.5)
        ax.set_yticks(y)
        ax.set_yticklabels([f"{r}. {p}" for r, p in zip(range(1, t.height + 1), t["param"].to_list())], fontsize=7)
        ax.axvline(0, color="black", lw=0.5)
        ax.set_title(f"what moves the {SOBOL_LABELS.get(m, m)}", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        if k >= 2 or len(metrics) <= 2:
            ax.set_xlabel("Sobol index (share of the variance)", fontsize=7.5)
        if k == 0:
            ax.legend(loc="lower right", fontsize=6.5)
    if not metrics:
        fig.text(0.05, 0.5, f"{rel} holds none of the headline figures ({', '.join(SOBOL_METRICS)}).", fontsize=10, color=GREY)
    return fig


# ---------------------------------------------------------------------------------------------
# headline figures as posterior predictive medians with 90 % bands (a committed calibration)
# ---------------------------------------------------------------------------------------------
#: title-page headline rows (their labels in backtest.report.figures.title_page) and the metric each is predicted by
HEADLINE_ROWS = {
    "liquidated notional": "liquidated_notional_usd",
    "long share of liquidations": "long_share",
    "peak minute (UTC)": "peak_minute",
    "ADL notional": "adl_notional_usd",
    "insurance fund, minimum": "insurance_fund_used_usd",
}


def posterior_path(event_id: str) -> "Path":
    """Where the report looks for the event's calibration: ``data/calibration/posterior-EVENT/``
    (the ``--out`` folder of ``backtest calibrate EVENT``, without its abc.db)."""
    return calibration_dir() / f"posterior-{event_id}"


def posterior_make_command(event_id: str) -> str:
    return (f"backtest calibrate {event_id} --fit leverage_scale --fit cross_extra_collateral --fit long_share --samples 40 "
            f"--generations 3 --mode cascade --n-positions 20000 --out data/calibration/posterior-{event_id}")


def read_posterior(path, event_id: str) -> dict | None:
    """The posterior predictive of ``event_id``'s headline figures in a calibration folder:
    ``{"bands": {metric: (median, 5 %, 95 %)}, "fitted": {param: (median, 5 %, 95 %)}, "meta":
    provenance, "path"}`` (weighted quantiles of the last generation's particles); None when the
    folder has no ``predictive.parquet`` or it records none of the event's headline figures."""
    import json
    from pathlib import Path

    import polars as pl

    from backtest.calibration.abc import weighted_quantile
    from backtest.calibration.model import PREDICTED, predicted_key
    from backtest.errors import CalibrationError

    d = Path(path)
    pred_f, post_f, diag_f = d / "predictive.parquet", d / "posterior.parquet", d / "diagnostics.json"
    if not pred_f.is_file():
        return None
    try:
        pred = pl.read_parquet(pred_f)
        post = pl.read_parquet(post_f) if post_f.is_file() else None
        meta = json.loads(diag_f.read_text(encoding="utf-8")).get("provenance", {}) if diag_f.is_file() else {}
    except (OSError, ValueError, pl.exceptions.PolarsError) as e:
        raise CalibrationError(f"{d} is not a calibration folder of 'backtest calibrate' ({type(e).__name__}: {e})") from None
    if "weight" not in pred.columns:
        raise CalibrationError(f"{pred_f} has no weight column; it is not a posterior predictive of 'backtest calibrate'")
    w = pred["weight"].to_numpy()
    bands = {}
    for m in PREDICTED:
        k = predicted_key(event_id, m)
        if k in pred.columns:
            q = weighted_quantile(pred[k].to_numpy(), w, [0.5, 0.05, 0.95])
            bands[m] = tuple(float(x) for x in q)
    if not bands:
        return None
    fitted = {}
    if post is not None:
        pw = post["weight"].to_numpy()
        for c in post.columns:
            if c != "weight":
                fitted[c] = tuple(float(x) for x in weighted_quantile(post[c].to_numpy(), pw, [0.5, 0.05, 0.95]))
    return {"bands": bands, "fitted": fitted, "meta": meta, "path": d, "particles": pred.height}


def _band_text(metric: str, b: tuple[float, float, float]) -> str:
    import math

    from backtest.report.common import usd

    med, lo, hi = b
    if any(math.isnan(x) for x in b):
        return "—"
    if metric == "long_share":
        return f"{100 * med:.1f} % [{100 * lo:.1f}–{100 * hi:.1f}]"
    if metric == "peak_minute":
        from datetime import datetime, timezone

        t = lambda x: datetime.fromtimestamp(x / 1000.0, tz=timezone.utc).strftime("%H:%M")  # noqa: E731
        return f"{t(med)} [{t(lo)}–{t(hi)}]"
    pre = "used " if metric == "insurance_fund_used_usd" else ""
    return f"{pre}{usd(med, 1)} [{usd(lo, 1)}–{usd(hi, 1)}]"


def headline_predictive(post: dict | None) -> dict[str, str]:
    """Title-page headline label -> 'median [5 %–95 %]' text of its posterior predictive."""
    if post is None:
        return {}
    return {label: _band_text(m, post["bands"][m]) for label, m in HEADLINE_ROWS.items() if m in post["bands"]}


def defaults_note() -> str:
    """Which package defaults are fitted, on what (backtest.fitted_defaults), or that none is."""
    from backtest.fitted_defaults import FITTED, FITTED_AT

    if not FITTED:
        return " The package defaults are sourced or assumed: none is fitted yet."
    names = ", ".join(f"{k} {v:.3g}" for k, v in FITTED.items())
    return (f" The one-run figures use the package defaults, of which {names} are posterior medians of a fit over the "
            f"training events (data/calibration/defaults.toml, {FITTED_AT})")


def fit_note(post: dict | None, event_id: str) -> str:
    """Which parameters are fitted (with their posterior) and which are assumed or sourced; or, without
    a posterior, that there is none and how to make it."""
    from backtest.calibration.priors import PRIORS
    from backtest.fitted_defaults import FITTED, FITTED_EVENTS

    dn = defaults_note()
    if FITTED:
        dn += ", out of sample for this event." if event_id not in FITTED_EVENTS else ", this event among them."
    if post is None:
        return (f"No posterior for {event_id} in data/calibration/posterior-{event_id}/: the figures are one run at the "
                f"parameters shown, not fitted. Make one with: {posterior_make_command(event_id)}. Every parameter is "
                "sourced or assumed (sources: population_params.PARAM_SOURCES, calibration/priors.py)." + dn)
    meta = post["meta"]
    fitted = post["fitted"]
    fmt = lambda v: f"{v:.3g}"  # noqa: E731
    fit_txt = "; ".join(f"{k} {fmt(m)} [{fmt(lo)}–{fmt(hi)}]" for k, (m, lo, hi) in fitted.items()) or "?"
    assumed = [p for p in PRIORS if p not in fitted]
    events = ", ".join(meta.get("events") or [event_id])
    insample = " (in-sample: its own figures)" if list(meta.get("events") or []) == [event_id] else ""
    return (
        f"Predictive: {post['particles']} particles of ABC-SMC on {events}{insample}, {meta.get('mode', '?')}, "
        f"{meta.get('n_positions', 0):,} positions/symbol (data/calibration/posterior-{event_id}/). Fitted, median [90 %]: "
        f"{fit_txt}. Assumed with a prior, not fitted: {', '.join(assumed)}. Others: sourced defaults "
        "(population_params.PARAM_SOURCES; last page)." + dn + _disagreement(fitted, FITTED)
    )


def _disagreement(fitted: dict[str, tuple[float, float, float]], defaults: dict[str, float]) -> str:
    """A sentence naming the fitted defaults that lie outside this posterior's 90 % band (then the
    one-run column and the predictive column differ for that reason, not by noise), else ""."""
    out = [f"{k} {defaults[k]:.3g} vs [{lo:.3g}–{hi:.3g}]" for k, (_m, lo, hi) in fitted.items()
           if k in defaults and not lo <= defaults[k] <= hi]
    if not out:
        return ""
    return (" The defaults lie outside this posterior's 90 % band for " + "; ".join(out)
            + ": the two columns differ for that reason, the training events and this event's own figures disagree.")
