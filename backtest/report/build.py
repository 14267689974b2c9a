"""``backtest report EVENT``: simulate an event and write the PDF report (plus one PNG per page).

Pages (DESIGN §9): title with the scenario, the headline results, the parameters, the tool's
version and the data's provenance; simulated against published figures with their sources; the
price path with liquidations per bar (long and short) and cascade rounds; the liquidation heatmap
(price × time); the pre-event liquidation map with clusters marked; insurance fund and ADL;
sensitivity from a small built-in sweep.

Reproducibility: the same inputs, parameters and seed give the same bytes. Fonts are the DejaVu
fonts bundled with matplotlib, the PDF's CreationDate/ModDate come from ``$SOURCE_DATE_EPOCH``
when it is set and otherwise from the end of the event window (never from the clock), and the
files are written atomically (temporary file, then rename), so an interrupted run leaves nothing
half-written.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from backtest.errors import UserError
from backtest.progress import Progress
from backtest.sim_api import SimulationAPI, simulation

#: the built-in sensitivity sweep: (parameter, factors applied to its base value, fallback values)
SENS_X = (("leverage_scale", (0.5, 1.0, 1.5), (0.5, 1.0, 1.5)), ("oi_scale", (0.5, 1.0, 1.5), (0.5, 1.0, 1.5)))
SENS_Y = (("depth_multiplier", (0.5, 1.0, 2.0), (0.5, 1.0, 2.0)), ("impact_coef", (0.5, 1.0, 2.0), (0.25, 0.5, 1.0)))
SENS_LINE = (("impact_coef", (0.0, 0.5, 1.0, 2.0, 4.0), (0.0, 0.25, 0.5, 1.0, 2.0)), ("depth_multiplier", (0.25, 0.5, 1.0, 2.0, 4.0), (0.25, 0.5, 1.0, 2.0, 4.0)))
SENS_METRIC = "liquidated_notional_usd"
#: population size of the sensitivity runs (a sample of the same model; keeps the page cheap)
SENS_POSITIONS = 200_000
#: extra population seeds run at the base parameters: the sampling noise of the synthetic book
SENS_SEEDS = 4


@dataclass
class ReportResult:
    pdf: Path
    pngs: list[Path]
    summary: dict
    replay_summary: dict | None
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def check_output(out: Path, *, default: bool) -> Path:
    """Refuse an output path in a folder that does not exist (the default folder is created);
    the rule shared by every command that writes: :func:`backtest.paths.check_out_file`."""
    from backtest.paths import check_out_file

    out = Path(out)
    if default and out.suffix.lower() == ".pdf":
        (out.parent if str(out.parent) else Path(".")).mkdir(parents=True, exist_ok=True)
    return check_out_file(out, suffix=".pdf", option="-o")


def _check_overrides(simulate: SimulationAPI, overrides: dict) -> None:
    """Reject unknown parameter names early (with a suggestion), before any work starts."""
    from backtest.params import apply_overrides

    apply_overrides(simulate.param_groups(), overrides)


def provenance_lines(event, store: str | None) -> tuple[list[str], str]:
    """One line per stored series the event uses, plus a short name for the store."""
    from backtest.store import Store

    st = Store(store)
    root = str(st.root)
    repo_data = str(Path(__file__).resolve().parents[2] / "data")
    try:
        same = os.path.samefile(root, repo_data)
    except OSError:
        same = False
    name = "data/ (the project's committed store)" if same else root
    lines = [f"store: {name}; sources and licences in {'data/PROVENANCE.md' if same else 'the store'}; exchange {event.exchange}"]
    try:
        summ = st.summary()
    except Exception as e:  # provenance must never stop a report
        return lines + [f"(store summary unavailable: {type(e).__name__})"], name
    import polars as pl

    from backtest.report.common import iso

    summ = summ.filter(pl.col("symbol").is_in(list(event.symbols)) & (pl.col("exchange") == event.exchange))
    summ = summ.filter((pl.col("last").dt.epoch("ms") >= event.lookback_start_ms) & (pl.col("first").dt.epoch("ms") < event.end_ms))
    groups = summ.group_by("dataset", "timeframe").agg(
        pl.col("symbol").sort(), pl.col("first").min(), pl.col("last").max(), pl.col("rows").sum()
    ).sort("dataset", "timeframe")
    for r in groups.iter_rows(named=True):
        syms = ", ".join(s.split(":")[0].replace("/", "") for s in r["symbol"])
        lines.append(
            f"{r['dataset']:<17} {r['timeframe']:>5}  {iso(int(r['first'].timestamp() * 1000))} → "
            f"{iso(int(r['last'].timestamp() * 1000))}  {r['rows']:>9,} rows  {syms}"
        )
    if groups.height == 0:
        lines.append("(no stored series for the event's symbols: the simulation used what the store offered)")
    missing = [d for d in ("mark", "funding", "open_interest") if d not in set(groups["dataset"].to_list())]
    if missing:
        lines.append(f"not in the store for this event: {', '.join(missing)} (the simulation says how it substitutes)")
    return lines, name


def _sens_param(choices, params: dict, taken: set):
    for name, factors, fallback in choices:
        if name in params and name not in taken and isinstance(params[name], (int, float)) and not isinstance(params[name], bool):
            b = float(params[name])
            vals = [round(b * f, 10) for f in factors] if b > 0 else list(fallback)
            return name, sorted(set(vals))
    return None, []


def build_report(
    event_id: str,
    out: str | os.PathLike | None = None,
    *,
    overrides: dict | None = None,
    store: str | None = None,
    png_dir: str | os.PathLike | None = None,
    progress: Any = None,
    sensitivity: bool = True,
    sim: Any = None,
) -> ReportResult:
    """Simulate ``event_id`` (replay and cascade) and write the PDF report and PNGs.

    ``out`` defaults to ``reports/EVENT.pdf`` (the folder is created); PNGs go to
    ``png_dir`` (default: a folder named like the PDF, e.g. ``reports/2025-10-10/``).
    ``sim`` is the simulation API (:class:`backtest.sim_api.SimulationAPI`; default
    :mod:`backtest.simulate`); ``progress`` as in :mod:`backtest.progress`.
    """
    t_start = time.perf_counter()
    from backtest.events import get_event

    ev = get_event(event_id, store)
    default = out is None
    pdf = check_output(Path(out) if out is not None else Path("reports") / f"{ev.id}.pdf", default=default)
    pngs_at = Path(png_dir) if png_dir is not None else pdf.with_suffix("")
    if png_dir is not None and not pngs_at.parent.is_dir():
        raise UserError(f"folder {pngs_at.parent} does not exist; create it first")
    if pngs_at.exists() and not pngs_at.is_dir():
        raise UserError(f"the PNGs go to {pngs_at}, which is a file; move it or give --png-dir")
    overrides = dict(overrides or {})
    simulate = simulation(sim)
    _check_overrides(simulate, overrides)

    timings: dict[str, float] = {}
    with Progress("report", progress) as shown:
        task = shown.add("starting", 6)

        def step(description: str) -> None:
            shown.update(task, description=description)

        def advance() -> None:
            shown.advance(task)

        t = time.perf_counter()
        step("loading market data, building the population")
        prepared = simulate.prepare(ev, overrides or None, store=store)
        advance()
        timings["prepare"] = time.perf_counter() - t

        t = time.perf_counter()
        step("replaying the observed path")
        replay = simulate.simulate_prepared(prepared, None, mode="replay")
        advance()
        step("simulating the cascade (with feedback)")
        cascade = simulate.simulate_prepared(prepared, None, mode="cascade")
        advance()
        timings["simulate"] = time.perf_counter() - t

        params = dict(cascade.summary.get("params") or overrides)
        t = time.perf_counter()
        sens = None
        if sensitivity:
            step("sensitivity sweep")
            sens = _sensitivity(simulate, prepared, overrides, params, step)
        advance()
        timings["sensitivity"] = time.perf_counter() - t

        t = time.perf_counter()
        step("drawing the pages")
        prov, _ = provenance_lines(ev, store)
        pages = _pages(ev, replay, cascade, params, prov, sens, _observed(ev, prepared, replay))
        advance()
        timings["draw"] = time.perf_counter() - t

        t = time.perf_counter()
        step("writing the PDF and PNGs")
        pngs = _write(pages, pdf, pngs_at, ev)
        advance()
        timings["write"] = time.perf_counter() - t
    return ReportResult(pdf, pngs, cascade.summary.to_dict(), replay.summary.to_dict(), time.perf_counter() - t_start, timings)


def _sensitivity(simulate: SimulationAPI, prepared, overrides: dict, params: dict, step: Callable[[str], None]):
    """The small built-in sweep of the sensitivity page, run by the sweep engine
    (:func:`backtest.sweep.sweep_prepared`): cascade runs over a 3 × 3 grid of two parameters and a
    line over a third, on a smaller sample of the same population model (``SENS_POSITIONS``
    positions; open notional is matched all the same) to stay cheap."""
    import polars as pl

    from backtest.sweep import sweep_prepared

    x, xs = _sens_param(SENS_X, params, set())
    y, ys = _sens_param(SENS_Y, params, {x})
    line, ls = _sens_param(SENS_LINE, params, {x, y})
    if not (x and y):
        return None
    small = dict(overrides)
    n_pos = params.get("n_positions")
    if isinstance(n_pos, int) and n_pos > SENS_POSITIONS:
        small["n_positions"] = SENS_POSITIONS
    base_seed = params.get("seed") if isinstance(params.get("seed"), int) else 0
    seeds = [base_seed + k for k in range(SENS_SEEDS + 1)]
    grid = [{x: xv, y: yv} for xv in xs for yv in ys]  # x outermost: a population parameter is rebuilt once per value
    line_combos = [{line: lv} for lv in ls]
    n = len(grid) + len(line_combos) + len(seeds) + 1
    done = 0

    def run(combos: list[dict], mode: str = "cascade") -> list[float]:
        nonlocal done

        def shown(_what: str, k: float, _total: float) -> None:
            step(f"sensitivity sweep {done + min(int(k) + 1, len(combos))}/{n}")

        ms = sweep_prepared(simulate.simulate_prepared, prepared, combos, mode=mode, base=small, progress=shown)
        done += len(combos)
        return [float(m[SENS_METRIC] or 0.0) for m in ms]

    (replay_value,) = run([{}], mode="replay")
    rows = [{**c, SENS_METRIC: v} for c, v in zip(grid, run(grid))]
    lrows = [{**c, SENS_METRIC: v} for c, v in zip(line_combos, run(line_combos))]
    seed_values = run([{"seed": sd} for sd in seeds])
    return {
        "seeds": seeds, "seed_values": seed_values,
        "x": x, "y": y, "line": line, "grid": pl.DataFrame(rows), "line_df": pl.DataFrame(lrows) if lrows else None,
        "replay": replay_value, "positions": small.get("n_positions", n_pos),
    }


def _seed_spread(sens) -> float | None:
    """Half the range of ``SENS_METRIC`` over the population seeds, as a fraction of their mean."""
    vals = (sens or {}).get("seed_values") or []
    if len(vals) < 2 or not sum(vals):
        return None
    return (max(vals) - min(vals)) / 2 / (sum(vals) / len(vals))


def _sens_range(sens) -> tuple[float, float] | None:
    """Lowest and highest ``SENS_METRIC`` over every cascade run of the sensitivity sweep."""
    if sens is None:
        return None
    vals = list(sens["grid"][SENS_METRIC])
    if sens.get("line_df") is not None:
        vals += list(sens["line_df"][SENS_METRIC])
    return (min(vals), max(vals)) if vals else None


def _observed(ev, prepared, replay) -> tuple[Any, str] | None:
    """Observed forced orders beside the replay's liquidations, per minute, with the feeds'
    caveats (:mod:`backtest.observed`); None when the store holds none for the event."""
    import polars as pl

    from backtest import observed

    store = getattr(prepared, "store", None)
    liqs = getattr(replay, "liquidations", None)
    if store is None or liqs is None:
        return None
    symbols = list(getattr(prepared, "symbols", ev.symbols))
    seen = observed.observed_rows(store, ev.exchange, symbols, ev.start_ms, ev.end_ms)  # read once
    if seen.height == 0:
        return None
    symbols = sorted(set(seen["symbol"].to_list()))  # compare where something was observed
    frame = observed.per_minute(seen, liqs.filter(pl.col("symbol").is_in(symbols)), ev.start_ms, ev.end_ms)
    notes = observed.caveats(store, ev.exchange, symbols)
    return frame, " ".join(notes) or "observed totals are what the exchange published"


def _pages(ev, replay, cascade, params: dict, prov: list[str], sens, observed_frame=None) -> list[tuple[str, Any]]:
    import polars as pl

    import backtest
    from backtest.report import figures as F
    from backtest.report.common import RC, mpl, report_date

    mpl()
    import matplotlib

    date = report_date(ev.end_ms)
    pages: list[tuple[str, Any]] = []
    with matplotlib.rc_context(RC):
        bars = cascade.bars
        symbols = F.symbol_order(bars, ev.symbols)
        lows: dict[str, tuple] = {}
        for k, res in enumerate((replay, cascade)):
            bc = F.BAR_COLS
            if bc["symbol"] and bc["low"]:
                for s, lo in res.bars.group_by(bc["symbol"]).agg(pl.col(bc["low"]).min()).iter_rows():
                    pair = list(lows.get(F.short_sym(s), (None, None)))
                    pair[k] = lo
                    lows[F.short_sym(s)] = tuple(pair)
        contents = [
            "published figures by kind (point, lower bound, interval, context) with a verdict for each, and their sources",
            "price path; liquidated notional per time bucket (longs up, shorts down); cascade rounds",
            "liquidation heatmaps: where (price) and when (time) positions were liquidated",
            "open positions by liquidation price before the event; clusters, and whether the path reached them",
            "insurance fund and auto-deleveraging (ADL)",
        ]
        if sens is not None:
            contents.append("sensitivity: how the total moves with leverage, book depth and impact")
        if observed_frame is not None:
            contents.append("observed forced orders beside the simulated liquidations, per minute")
        contents.append("every resolved parameter and each symbol's inputs (price source, bars, population)")
        pages.append(("01-title", F.title_page(ev, cascade.summary, params, prov, version=backtest.__version__,
                                               date_text=date.strftime("%Y-%m-%d"), mode_note="(cascade scenario: forced orders move the price)",
                                               contents=contents, liq_range=_sens_range(sens), seed_spread=_seed_spread(sens),
                                               n_seeds=len((sens or {}).get("seeds") or []),
                                               seed_positions=(sens or {}).get("positions") if isinstance((sens or {}).get("positions"), int) else None)))
        from backtest.report.calibration_pages import comparison_pages

        for i, fig in enumerate(comparison_pages(ev, replay.summary, cascade.summary, lows)):
            pages.append((f"02-published-figures{'-' + str(i + 1) if i else ''}", fig))
        pages.append(("03-price-liquidations", F.price_page(bars, replay.bars, symbols, f"{ev.id}: price path, liquidations and cascade rounds (cascade scenario)")))
        for s in symbols[:2]:
            pages.append((f"04-heatmap-{F.short_sym(s)}", F.heatmap_page(cascade.heatmap, bars, s, f"{ev.id}: liquidation heatmap, {F.short_sym(s)} (price × time)",
                                                                           bucket_ms=int(params["heatmap_minutes"]) * 60_000 if isinstance(params.get("heatmap_minutes"), int) else None)))
        pages.append(("05-liquidation-map", F.liqmap_page(cascade.liq_map, cascade.clusters, bars, symbols, f"{ev.id}: pre-event liquidation map and clusters")))
        pages.append(("06-insurance-adl", F.fund_page(bars, cascade.summary, f"{ev.id}: insurance fund and auto-deleveraging")))
        if observed_frame is not None:
            from backtest.observed import figure as observed_figure

            frame, caveat = observed_frame
            pages.append(("06-observed-liquidations", observed_figure(
                frame, title=f"{ev.id}: observed forced orders beside the replay's liquidations, per minute ({', '.join(sorted(frame['symbol'].unique().to_list()))})", caveat=caveat)))
        if sens is not None:
            npos = f"{sens['positions']:,}-position populations" if isinstance(sens.get("positions"), int) else "the same population"
            pages.append(("07-sensitivity", F.sensitivity_page(
                sens["grid"], sens["x"], sens["y"], sens["line"], sens["line_df"], SENS_METRIC, params,
                sens["replay"], f"{ev.id}: sensitivity (small built-in sweep on {npos})")))
        pages.append(("08-parameters-and-inputs", F.appendix_page(cascade.summary, params, f"{ev.id}: scenario parameters and inputs, in full")))
        # page footers: page numbers and what the page belongs to
        for k, (_name, fig) in enumerate(pages, 1):
            fig.text(0.995, 0.004, f"{ev.id} · page {k}/{len(pages)}", ha="right", va="bottom", fontsize=7, color="#7f8c8d")
    return pages


def _write(pages, pdf: Path, png_dir: Path, ev) -> list[Path]:
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    import backtest
    from backtest.report.common import RC, report_date

    date = report_date(ev.end_ms)
    meta = {
        "Title": f"Liquidation-cascade backtest: {ev.name} ({ev.id})",
        "Author": "cascade-backtest",
        "Subject": f"Simulated liquidations of {ev.exchange} {', '.join(ev.symbols)} compared with published figures",
        "Keywords": f"liquidation cascade, {ev.id}, backtest",
        "Creator": f"cascade-backtest {backtest.__version__}",
        "CreationDate": date,
        "ModDate": date,
    }
    png_dir.mkdir(parents=True, exist_ok=True)
    tmp_pdf = pdf.with_name(f".{pdf.name}.tmp-{os.getpid()}")
    written: list[Path] = []
    tmps: list[tuple[Path, Path]] = []
    try:
        with matplotlib.rc_context(RC):
            with PdfPages(tmp_pdf, metadata=meta) as pp:
                for name, fig in pages:
                    pp.savefig(fig)
                    png = png_dir / f"{name}.png"
                    tmp_png = png.with_name(f".{png.name}.tmp-{os.getpid()}")
                    fig.savefig(tmp_png, format="png", metadata={"Software": f"cascade-backtest {backtest.__version__}"})
                    tmps.append((tmp_png, png))
        for tmp, final in tmps:
            os.replace(tmp, final)
            written.append(final)
        os.replace(tmp_pdf, pdf)
        # page PNGs of an earlier report in the same folder that this one does not have (e.g. the
        # sensitivity page after --no-sensitivity) would pass for part of it: remove them
        for old in png_dir.glob("[0-9][0-9]-*.png"):
            if old not in written:
                old.unlink(missing_ok=True)
    finally:
        for tmp, _ in tmps:
            tmp.unlink(missing_ok=True)
        tmp_pdf.unlink(missing_ok=True)
    return written
