"""``backtest report EVENT``: simulate an event and write the PDF report (plus one PNG per page).

Pages (DESIGN §9): title with the scenario, the headline results, the parameters, the tool's
version and the data's provenance; simulated against published figures with their sources; the
price path with liquidations per bar (long and short) and cascade rounds; the liquidation heatmap
(price × time); the pre-event liquidation map with clusters marked; insurance fund and ADL;
global sensitivity (Sobol indices). The title's posterior predictive bands and the Sobol page are
read from committed calibration results under ``data/calibration/`` (``posterior-EVENT/``,
``sobol-EVENT/``; :mod:`backtest.report.calibration_pages`), so the report stays cheap; without
them those places say how to make them.

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

#: the metric whose population-sampling noise the title page gives
SENS_METRIC = "liquidated_notional_usd"
#: population size of the seed runs (a sample of the same model; keeps them cheap)
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
            step("population seeds")
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
    """The population-seed runs behind the title page's sampling noise, by the sweep engine
    (:func:`backtest.sweep.sweep_prepared`): cascade runs at the base parameters over
    ``SENS_SEEDS + 1`` seeds, on a smaller sample of the same population model (``SENS_POSITIONS``
    positions; open notional is matched all the same). The sensitivity page itself is global
    (Sobol indices) and read from a committed result: :mod:`backtest.report.calibration_pages`."""
    from backtest.sweep import sweep_prepared

    small = dict(overrides)
    n_pos = params.get("n_positions")
    if isinstance(n_pos, int) and n_pos > SENS_POSITIONS:
        small["n_positions"] = SENS_POSITIONS
    base_seed = params.get("seed") if isinstance(params.get("seed"), int) else 0
    seeds = [base_seed + k for k in range(SENS_SEEDS + 1)]
    n = len(seeds)
    done = 0

    def run(combos: list[dict], mode: str = "cascade") -> list[float]:
        nonlocal done

        def shown(_what: str, k: float, _total: float) -> None:
            step(f"population seeds {done + min(int(k) + 1, len(combos))}/{n}")

        ms = sweep_prepared(simulate.simulate_prepared, prepared, combos, mode=mode, base=small, progress=shown)
        done += len(combos)
        return [float(m[SENS_METRIC] or 0.0) for m in ms]

    seed_values = run([{"seed": sd} for sd in seeds])
    return {"seeds": seeds, "seed_values": seed_values, "positions": small.get("n_positions", n_pos)}


def _seed_spread(sens) -> float | None:
    """Half the range of ``SENS_METRIC`` over the population seeds, as a fraction of their mean."""
    vals = (sens or {}).get("seed_values") or []
    if len(vals) < 2 or not sum(vals):
        return None
    return (max(vals) - min(vals)) / 2 / (sum(vals) / len(vals))


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
    multi = bool(getattr(ev, "venues", ()))

    def primary(df: pl.DataFrame) -> pl.DataFrame:
        """The primary venue's rows: the per-symbol pages show one venue (the per-venue page all)."""
        return df.filter(pl.col("exchange") == ev.exchange) if multi and "exchange" in df.columns else df

    on = f" ({ev.exchange})" if multi else ""
    with matplotlib.rc_context(RC):
        bars = primary(cascade.bars)
        symbols = F.symbol_order(bars, ev.symbols)
        lows: dict[str, tuple] = {}
        for k, res in enumerate((replay, cascade)):
            bc = F.BAR_COLS
            if bc["symbol"] and bc["low"]:
                for s, lo in primary(res.bars).group_by(bc["symbol"]).agg(pl.col(bc["low"]).min()).iter_rows():
                    pair = list(lows.get(F.short_sym(s), (None, None)))
                    pair[k] = lo
                    lows[F.short_sym(s)] = tuple(pair)
        contents = [
            "published figures by kind (point, lower bound, interval, context) with a verdict for each, and their sources",
            *(["per venue: each venue's results beside its published liquidations"] if multi else []),
            "price path; liquidated notional per time bucket (longs up, shorts down); cascade rounds",
            "liquidation heatmaps: where (price) and when (time) positions were liquidated",
            "open positions by liquidation price before the event; clusters, and whether the path reached them",
            "insurance fund and auto-deleveraging (ADL)",
        ]
        if replay.summary.get("contagion_matrix_usd") is not None:
            contents.append("contagion: liquidations caused by another symbol's move through shared cross accounts")
        if sens is not None:
            contents.append("global sensitivity: Sobol indices of the headline figures over every uncertain parameter, ranked")
        if observed_frame is not None:
            contents.append("observed forced orders beside the simulated liquidations, per minute")
        contents.append("every resolved parameter and each symbol's inputs (price source, bars, population)")
        from backtest.report.calibration_pages import fit_note, headline_predictive, posterior_path, read_posterior

        post = read_posterior(posterior_path(ev.id), ev.id)
        pages.append(("01-title", F.title_page(ev, cascade.summary, params, prov, version=backtest.__version__,
                                               date_text=date.strftime("%Y-%m-%d"), mode_note="(cascade scenario: forced orders move the price)",
                                               contents=contents, seed_spread=_seed_spread(sens),
                                               predictive=headline_predictive(post), fit_note=fit_note(post, ev.id),
                                               n_seeds=len((sens or {}).get("seeds") or []),
                                               seed_positions=(sens or {}).get("positions") if isinstance((sens or {}).get("positions"), int) else None)))
        from backtest.report.calibration_pages import comparison_pages

        for i, fig in enumerate(comparison_pages(ev, replay.summary, cascade.summary, lows)):
            pages.append((f"02-published-figures{'-' + str(i + 1) if i else ''}", fig))
        if multi:
            pages.append(("02-venues", F.venue_page(ev, replay.summary, cascade.summary, f"{ev.id}: per venue, beside each venue's published liquidations")))
        pages.append(("03-price-liquidations", F.price_page(bars, primary(replay.bars), symbols, f"{ev.id}{on}: price path, liquidations and cascade rounds (cascade scenario)")))
        for s in symbols[:2]:
            pages.append((f"04-heatmap-{F.short_sym(s)}", F.heatmap_page(primary(cascade.heatmap), bars, s, f"{ev.id}{on}: liquidation heatmap, {F.short_sym(s)} (price × time)",
                                                                           bucket_ms=int(params["heatmap_minutes"]) * 60_000 if isinstance(params.get("heatmap_minutes"), int) else None)))
        pages.append(("05-liquidation-map", F.liqmap_page(primary(cascade.liq_map), primary(cascade.clusters), bars, symbols, f"{ev.id}{on}: pre-event liquidation map and clusters")))
        pages.append(("06-insurance-adl", F.fund_page(bars, F._venue_of(cascade.summary, ev.exchange) if multi else cascade.summary, f"{ev.id}{on}: insurance fund and auto-deleveraging")))
        if replay.summary.get("contagion_matrix_usd") is not None:  # accounts on (issue 12)
            from backtest.report.contagion_page import contagion_page

            pages.append(("06-contagion", contagion_page(replay.summary, [s for s in symbols], f"{ev.id}{on}: contagion between markets through shared cross accounts (replay)")))
        if observed_frame is not None:
            from backtest.observed import figure as observed_figure

            frame, caveat = observed_frame
            pages.append(("06-observed-liquidations", observed_figure(
                frame, title=f"{ev.id}: observed forced orders beside the replay's liquidations, per minute ({', '.join(sorted(frame['symbol'].unique().to_list()))})", caveat=caveat)))
        if sens is not None:  # --no-sensitivity leaves out the page and the seed runs
            from backtest.calibration.sensitivity import read_result
            from backtest.report.calibration_pages import sobol_page, sobol_path

            pages.append(("07-sensitivity", sobol_page(ev, read_result(sobol_path(ev.id)), f"{ev.id}: global sensitivity of the headline figures (Sobol indices)")))
        pages.append(("08-inputs-and-notes", F.inputs_page(cascade.summary, f"{ev.id}: inputs per symbol and the simulation's notes")))
        pages.append(("09-parameters", F.appendix_page(cascade.summary, params, f"{ev.id}: scenario parameters, in full")))
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
