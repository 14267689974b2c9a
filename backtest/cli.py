"""The ``backtest`` command line: one thin function per command (parse, call the API, print).

Heavy modules (numba kernels, matplotlib, ccxt, dask) are imported inside the commands that use
them, so ``backtest --help`` and ``backtest events list`` start fast. The error boundary is
:func:`user_errors`: user errors (``backtest.errors.UserError``) exit 2 with one line on stderr;
anything else is a bug, which keeps its traceback and exits :data:`BUG_EXIT`. Progress
(``backtest.progress``) goes to stderr and only when stderr is a terminal; the API returns
values and raises errors, the commands print and pick the exit status.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Optional

import typer

if TYPE_CHECKING:
    from backtest.results import Summary
from backtest.cli_events import EventsOpt, ExchangeOpt, WindowOpt, resolve_event

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Liquidation-cascade backtester for crypto perpetual futures.",
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(no_args_is_help=True, help="Inspect and maintain the market-data store.")
events_app = typer.Typer(no_args_is_help=True, help="The crash-event catalogue.")
app.add_typer(data_app, name="data")
app.add_typer(events_app, name="events")

StoreOpt = typer.Option(None, "--store", help="Store root: folder or s3://bucket/prefix (default: $BACKTEST_STORE or the committed data/).")
SetOpt = typer.Option(None, "--set", help="Override a parameter: key=value (repeatable).")
ForceOpt = typer.Option(False, "--force", help="Run even when the memory or request estimate exceeds what this machine has.")


def _insist(force: bool) -> None:
    """--force: skip the resource checks (backtest.resources), here and in worker processes."""
    if force:
        import os

        os.environ["BACKTEST_FORCE"] = "1"


def fail(message: str, code: int = 2) -> None:
    """Print one line to stderr and exit (2 = user error)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


#: exit status of a bug (a user error exits 2)
BUG_EXIT = 70  # EX_SOFTWARE (sysexits.h): an internal software error


def user_errors(fn: Callable) -> Callable:
    """The error boundary of a command. User errors (:class:`backtest.errors.UserError`) and
    operating-system errors on the user's paths (missing file, permission, an existing file or a
    file where a folder should be, full disk) become one line naming the problem and the fix, and
    exit 2. Anything else is a bug: its traceback is printed, then one line saying it is a bug
    and where to report it, and the exit status is :data:`BUG_EXIT`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from backtest.errors import UserError, os_error_message

        try:
            return fn(*args, **kwargs)
        except (typer.Exit, BrokenPipeError):  # a closed pipe (| head) is handled by main()
            raise
        except UserError as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            fail(msg)
        except OSError as e:
            fail(os_error_message(e))
        except KeyboardInterrupt:
            fail("interrupted; what was written before the interruption is kept", 130)
        except Exception:  # a bug: keep its traceback, and say so
            import traceback

            traceback.print_exc()
            fail("this is a bug in backtest, not a mistake in the input: please report it to the project's issue tracker "
                 "with the command you ran and the traceback above", BUG_EXIT)

    return wrapper


def console():
    from rich.console import Console

    c = Console(stderr=False, highlight=False)
    if not c.is_terminal:  # piped or captured: do not squeeze tables into 80 columns
        c = Console(stderr=False, highlight=False, width=220)
    return c


def print_frame(df, title: str | None = None) -> None:
    """Print a polars frame as a rich table on stdout."""
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for c in df.columns:
        t.add_column(c)
    for row in df.iter_rows():
        t.add_row(*["" if v is None else (f"{v:,.6g}" if isinstance(v, float) else str(v)) for v in row])
    console().print(t)


# ------------------------------------------------------------------------------------------
# events
# ------------------------------------------------------------------------------------------
# (the events commands, scan and fetch are in backtest/cli_events.py)


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------
@data_app.command("ls")
@user_errors
def data_ls(store: Optional[str] = StoreOpt, dataset: Optional[str] = typer.Option(None, help="Only this dataset.")) -> None:
    """List stored series: dataset, exchange, symbol, timeframe, first and last time, rows."""
    from backtest.store import Store

    st = Store(store, must_exist=True)
    df = st.summary(dataset)
    if df.height == 0:
        typer.echo(f"store {st.root} is empty")
        return
    print_frame(df, f"store {st.root}")
    tiers = st.read_tiers("binanceusdm")
    if tiers:
        typer.echo(f"leverage tiers: binanceusdm, {len(tiers)} markets")


@data_app.command("gaps")
@user_errors
def data_gaps(
    store: Optional[str] = StoreOpt,
    dataset: Optional[str] = typer.Option(None, help="Only this dataset."),
    symbol: Optional[str] = typer.Option(None, help="Only this ccxt symbol, e.g. BTC/USDT:USDT."),
    timeframe: Optional[str] = typer.Option(None, help="Only this timeframe."),
    since: Optional[str] = typer.Option(None, help="Start of the range to check (ISO-8601 UTC)."),
    until: Optional[str] = typer.Option(None, help="End of the range to check (ISO-8601 UTC)."),
) -> None:
    """Report missing bars inside each stored series (gaps are never filled on write)."""
    from backtest.store import Store

    df = Store(store, must_exist=True).gaps(dataset, symbol=symbol, timeframe=timeframe, start=since, end=until)
    if df.height == 0:
        typer.echo("no gaps")
        return
    print_frame(df, "gaps")
    typer.echo(f"{df.height} gaps, {int(df['missing'].sum())} missing bars")


@data_app.command("verify")
@user_errors
def data_verify(
    store: Optional[str] = StoreOpt,
    remove_tmp: bool = typer.Option(False, "--remove-tmp", help="Delete temporary files left by interrupted writes (.NAME.PID.tmp)."),
) -> None:
    """Check every partition's schema, readability, order and keys, and find temporary files left
    by interrupted writes; name each bad file."""
    from backtest.store import Store

    st = Store(store, must_exist=True)
    if remove_tmp:
        for path in st.remove_leftover_tmp():
            typer.echo(f"removed {path}")
    problems = st.verify()
    n = len(st.partitions())
    if not problems:
        typer.echo(f"store {st.root}: {n} partitions, all clean")
        return
    for path, why in problems:
        typer.echo(f"BAD {path}: {why}", err=True)
    fail(f"{len(problems)} of {n} partitions are bad; move them aside and re-import or re-download", 2)


@data_app.command("import-csv")
@user_errors
def data_import_csv(
    paths: List[Path] = typer.Argument(..., help="CSV files (optionally .gz) in a known layout."),
    exchange: str = typer.Option("binanceusdm", help="ccxt exchange id the data came from."),
    dataset: Optional[str] = typer.Option(None, help="Force the dataset (ohlcv, mark, index, funding...)."),
    timeframe: Optional[str] = typer.Option(None, help="Bar timeframe; inferred from the spacing if omitted."),
    symbol: Optional[str] = typer.Option(None, help="ccxt symbol for files without a symbol column."),
    since: Optional[str] = typer.Option(None, help="Keep rows from this time (ISO-8601 UTC)."),
    until: Optional[str] = typer.Option(None, help="Keep rows before this time (ISO-8601 UTC)."),
    store: Optional[str] = StoreOpt,
) -> None:
    """Import CSV files (freqtrade-style, Binance kline, funding layouts) into the store."""
    from backtest.sources.csv_import import prepare_import
    from backtest.store import Store

    st = Store(store)
    # every file is parsed and checked before the first is written: one bad file, nothing stored
    prepared = [prepare_import(p, exchange=exchange, dataset=dataset, timeframe=timeframe, symbol=symbol, since=since, until=until)
                for p in paths]
    for prep in prepared:
        for line in prep.write(st):
            typer.echo(line)


@data_app.command("import-tiers")
@user_errors
def data_import_tiers(
    path: Path = typer.Argument(..., help="JSON file in ccxt fetchLeverageTiers format (symbol -> tiers)."),
    exchange: str = typer.Option("binanceusdm", help="ccxt exchange id."),
    symbols: Optional[str] = typer.Option(None, help="Comma-separated ccxt symbols to keep (default all)."),
    store: Optional[str] = StoreOpt,
) -> None:
    """Import leverage/maintenance-margin tiers into the store."""
    from backtest.sources.csv_import import import_tiers
    from backtest.store import Store

    n = import_tiers(Store(store), path, exchange=exchange, symbols=symbols.split(",") if symbols else None)
    typer.echo(f"imported tiers for {n} markets of {exchange}")


# ------------------------------------------------------------------------------------------
# download
# ------------------------------------------------------------------------------------------
@app.command()
@user_errors
def download(
    exchange: str = typer.Argument(..., help="ccxt exchange id, e.g. binanceusdm, bybit, okx."),
    symbols: List[str] = typer.Argument(..., help="ccxt symbols, e.g. BTC/USDT:USDT."),
    datasets: str = typer.Option("ohlcv", help="Comma-separated: ohlcv,mark,index,funding,open_interest,long_short_ratio,depth,liquidations,tiers."),
    timeframe: str = typer.Option("1m", help="Bar timeframe for OHLCV and open interest."),
    since: str = typer.Option(..., help="Start (ISO-8601 UTC, inclusive)."),
    until: Optional[str] = typer.Option(None, help="End (ISO-8601 UTC, exclusive; default now)."),
    source: str = typer.Option("ccxt", help="ccxt or binance-archive."),
    ccxt_config: Optional[Path] = typer.Option(
        None,
        "--ccxt-config",
        help="JSON/TOML merged into the exchange's constructor arguments (urls, proxies, apiKey/secret, options, timeout). "
        "Own keys: archive_base_url, retry {max_retries, base, cap, retry_after_cap}, page_limits {dataset: n}.",
    ),
    store: Optional[str] = StoreOpt,
    force: bool = ForceOpt,
) -> None:
    """Download market data into the store, resumably."""
    from backtest.sources.download import DownloadReport, run_download

    _insist(force)
    done = DownloadReport()  # its lines are printed even when the download stops with an error
    try:
        run_download(
            exchange=exchange,
            symbols=symbols,
            datasets=[d.strip() for d in datasets.split(",") if d.strip()],
            timeframe=timeframe,
            since=since,
            until=until,
            source=source,
            ccxt_config=ccxt_config,
            store=store,
            report=done,
        )
    finally:
        for to_stderr, line in done.lines:
            typer.echo(line, err=to_stderr)
    if not done.complete:
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------------
# population
# ------------------------------------------------------------------------------------------
@app.command()
@user_errors
def population(
    event: str = typer.Argument(..., help="Event id, e.g. 2025-10-10 (see 'backtest events list')."),
    symbol: Optional[List[str]] = typer.Option(None, "--symbol", help="ccxt symbol (repeatable), or 'all'; default: the event's first symbol."),
    set_: Optional[List[str]] = SetOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="Write the population to this Parquet file (one file per symbol: FILE_SYMBOL.parquet when several)."),
    store: Optional[str] = StoreOpt,
    force: bool = ForceOpt,
    events: Optional[Path] = EventsOpt,
) -> None:
    """Build the synthetic leveraged-position population an event starts from, and summarise it.

    Parameters for --set: seed, n_positions, long_share, leverage_mix (JSON, e.g.
    '{"10": 0.5, "20": 0.5}'), leverage_scale, oi_scale, open_interest_usd, isolated_share,
    cross_extra_collateral, cross_extra_sigma, leverage_size_slope, hedged_share, stop_share,
    stop_distance, size_tail_alpha, size_min_usd, size_max_usd, turnover_half_life_days, venue, survival_price, max_tries_factor
    (defaults and their sources: backtest.population_params.PARAM_SOURCES).
    """
    import polars as pl

    from backtest.params import apply_overrides, parse_set_options
    from backtest.paths import check_out_file
    from backtest.population import PopulationParams, build_population, population_summary
    from backtest.store import Store, safe_symbol

    _insist(force)
    (params,) = apply_overrides([PopulationParams()], parse_set_options(set_))
    ev = resolve_event(event, events=events, store=store)
    if not symbol:
        symbols = [ev.symbols[0]]
    elif [s.lower() for s in symbol] == ["all"]:
        symbols = list(ev.symbols)
    else:
        symbols = list(symbol)

    def out_path(sym: str) -> Path:
        return out if len(symbols) == 1 else out.with_name(f"{out.stem}_{safe_symbol(sym)}{out.suffix}")

    if out is not None:  # every file this run will write, before the first population is built
        for sym in symbols:
            check_out_file(out_path(sym), suffix=".parquet")
    from backtest.resources import check_simulation

    check_simulation(params.n_positions, 1, what=f"a population of {ev.id}")  # one symbol at a time
    st = Store(store)
    for sym in symbols:
        pop = build_population(ev, sym, params, store=st)
        s = population_summary(pop)
        typer.echo(f"{ev.id} {sym} ({pop.exchange}, venue rule {s['stats'].get('venue')}) at {ev.start_iso}, seed {params.seed}")
        typer.echo(f"  positions:      {s['rows']:,} rows standing for {s['positions']:,.0f} positions")
        typer.echo(
            f"  open notional:  ${s['open_notional_usd'] / 1e9:,.3f}B leveraged + ${s['hedged_notional_usd'] / 1e9:,.3f}B hedged "
            f"(target ${s['target_open_notional_usd'] / 1e9:,.3f}B)  "
            f"long ${s['long_notional_usd'] / 1e9:,.3f}B  short ${s['short_notional_usd'] / 1e9:,.3f}B  long share {s['long_share']:.3f}"
        )
        typer.echo(f"  target from:    {s['target_source']}")
        typer.echo(
            f"  distance to liquidation (notional-weighted mean, from {s['ref_price']:,.6g}): {s['mean_distance_to_liquidation'] * 100:.2f}%"
        )
        st_ = s["stats"]
        typer.echo(
            f"  lookback:       {st_['bars']:,} bars ({st_.get('timeframes', '')}) covering {st_.get('lookback_covered_days', float('nan')):.1f} "
            f"of {st_.get('lookback_days', float('nan')):.1f} days; survival on {st_.get('survival_path', '?')}; {st_['candidates']:,} candidates, "
            f"{st_['died_liquidated']:,} liquidated and {st_['died_stopped']:,} stopped before the event; "
            f"turnover half-life {st_['turnover_half_life_days']:.2f} d; isolated {s['isolated_share']:.2f}, stops {s['stop_share']:.2f} of notional"
        )
        hist = s["leverage_histogram"]
        total = s["open_notional_usd"] or 1.0
        print_frame(
            pl.DataFrame(
                {
                    "leverage": list(hist),
                    "positions": [f"{v['positions']:,.0f}" for v in hist.values()],
                    "open notional": [f"${v['notional_usd'] / 1e6:,.1f}M" for v in hist.values()],
                    "share": [f"{100 * v['notional_usd'] / total:.1f} %" for v in hist.values()],
                }
            ),
            f"leverage histogram, {sym}",
        )
        if out is not None:
            path = out_path(sym)
            pop.write_parquet(path)
            typer.echo(f"  wrote {path} ({len(pop):,} rows)")


# ------------------------------------------------------------------------------------------
# report and sweep
# ------------------------------------------------------------------------------------------
@app.command()
@user_errors
def report(
    event: str = typer.Argument(..., help="Event id, e.g. 2025-10-10 (see 'backtest events list')."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="PDF to write (default reports/EVENT.pdf); PNGs go beside it in reports/EVENT/."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file of parameters (top-level keys, or a 'params' table)."),
    set_: Optional[List[str]] = SetOpt,
    png_dir: Optional[Path] = typer.Option(None, "--png-dir", help="Folder for the PNGs (default: the PDF's path without .pdf); page PNGs of an earlier report there are replaced."),
    no_sensitivity: bool = typer.Option(False, "--no-sensitivity", help="Skip the global-sensitivity page (Sobol indices) and the population-seed runs."),
    store: Optional[str] = StoreOpt,
    events: Optional[Path] = EventsOpt,
    window: Optional[str] = WindowOpt,
    exchange: Optional[str] = ExchangeOpt,
    symbol: Optional[List[str]] = typer.Option(None, "--symbol", help="ccxt symbol of an ad-hoc --window event (repeatable)."),
) -> None:
    """Simulate an event and write the PDF report (and one PNG per page)."""
    from backtest.params import parse_set_options
    from backtest.params import load_config
    from backtest.report.build import build_report

    overrides = {**load_config(config), **parse_set_options(set_)}
    ev = resolve_event(event, events=events, window=window, exchange=exchange, symbols=symbol, store=store)
    res = build_report(ev, out, overrides=overrides, store=store, png_dir=png_dir, sensitivity=not no_sensitivity)
    typer.echo(f"wrote {res.pdf} ({len(res.pngs)} pages, PNGs in {res.pngs[0].parent if res.pngs else '-'}) in {res.seconds:.1f} s")


@app.command()
@user_errors
def sweep(
    file: Path = typer.Argument(..., help="Sweep file (TOML): event, mode, and the tables base, grid, output; see examples/sweep_2025-10-10.toml."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Folder for results.parquet, heatmaps.pdf and sweep.json."),
    executor: str = typer.Option("processes", "--executor", help="serial, processes (all cores) or dask."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Address of a running dask scheduler (else a local cluster)."),
    connect_timeout: float = typer.Option(5.0, "--connect-timeout", help="Seconds allowed to connect to --scheduler (connect and handshake)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes (default: one per core)."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help="Combinations per task (default: about 4 tasks per worker)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the number of combinations and a time and memory estimate; run nothing else."),
    set_: Optional[List[str]] = SetOpt,
    store: Optional[str] = StoreOpt,
    force: bool = ForceOpt,
    events: Optional[Path] = EventsOpt,
) -> None:
    """Run a parameter grid over an event; one Parquet row per combination plus a PDF of heatmaps."""
    if events is not None:  # as BACKTEST_EVENTS, so that every worker process reads the same file
        import os

        from backtest.events import load_events

        load_events(store, events)  # a bad file fails here, in one line
        os.environ["BACKTEST_EVENTS"] = str(events.resolve())
    from backtest.params import parse_set_options
    from backtest.sweep import check_out_dir, load_sweep, run_sweep
    from backtest.sweep_plan import plan_sweep

    _insist(force)
    spec = load_sweep(file, set_overrides=parse_set_options(set_), store=store)
    if workers is not None and workers < 1:
        fail("--workers must be at least 1")
    if chunk_size is not None and chunk_size < 1:
        fail("--chunk-size must be at least 1")
    if dry_run:
        typer.echo(plan_sweep(spec, executor=executor, workers=workers, chunk_size=chunk_size, store=store).describe())
        return
    if out is None:
        fail("give --out DIR for the results (or --dry-run to only estimate)")
    check_out_dir(out)
    res = run_sweep(spec, executor=executor, workers=workers, scheduler=scheduler, chunk_size=chunk_size, out=out, store=store,
                    connect_timeout=connect_timeout)
    typer.echo(
        f"{spec.n_combinations} combinations on {res.executor} ({res.workers} worker{'s' if res.workers != 1 else ''}) in {res.seconds:.1f} s; "
        f"wrote {', '.join(str(p) for p in res.files)}"
    )


# ------------------------------------------------------------------------------------------
# replay and cascade
# ------------------------------------------------------------------------------------------
def _run_sim(event: str, mode: str, symbol, config, set_, out, shock, store, force: bool = False) -> None:
    import time

    _insist(force)
    from backtest.params import parse_set_options
    from backtest.params import load_config
    from backtest.paths import check_out_dir
    from backtest.progress import Progress
    from backtest.shocks import parse_shock
    from backtest.simulate import run_event

    check_out_dir(out)  # a bad --out fails now, not after the whole simulation
    if shock is not None:
        parse_shock(shock, 0)  # its form (the window is checked once the event is loaded)
    overrides = {**load_config(config), **parse_set_options(set_)}
    symbols = list(symbol) if symbol else None
    t0 = time.perf_counter()
    with Progress(mode) as shown:
        res = run_event(event, mode=mode, overrides=overrides, shock=shock, symbols=symbols, store=store,
                        progress=shown.reporter(shown.add("starting", 1)))
    res.write(out)
    _print_sim_summary(res.summary, time.perf_counter() - t0, out)


def _estimated_suffix(s: Summary) -> str:
    from backtest.results import estimated_open_interest

    n, total = estimated_open_interest(s)
    return f"  (open interest of {n} of {total} symbols estimated: see notes in summary.json)" if n else ""


def _proxy_text(s: Summary, key: str) -> str:
    """", PROXY: binanceusdm bars" for a symbol whose path is another exchange's bars, else ""."""
    v = s.per_symbol.get(key)
    return f", PROXY: {v.path_exchange} bars" if v is not None and v.path_exchange and v.path_exchange != v.exchange else ""


def _print_sim_summary(s: Summary, seconds: float, out: Path) -> None:
    import polars as pl

    def usd(x):
        return "-" if x is None else f"${x / 1e9:,.3f}B" if abs(x) >= 1e8 else f"${x / 1e6:,.2f}M"

    rows = [
        ("event", f"{s.event} ({s.mode}{', shock ' + s.shock if s.shock else ''})"),
        ("symbols", ", ".join(f"{k} ({'last→mark' if v.startswith('last-anchored') else v}{_proxy_text(s, k)})" for k, v in s.price_source.items())),
        ("positions", f"{s.positions:,}"),
        ("open notional", usd(s.open_notional_usd) + _estimated_suffix(s)),
        ("liquidated", f"{usd(s.liquidated_notional_usd)}  (long {usd(s.long_liquidated_usd)}, short {usd(s.short_liquidated_usd)})"),
        ("long share", "-" if s.long_share is None else f"{s.long_share:.3f}"),
        ("peak minute", f"{s.peak_minute or '-'}  {usd(s.peak_minute_notional_usd)}"),
        ("max cascade depth", str(s.max_cascade_depth)),
        ("amplification", f"{s.amplification:.3f}"),
        ("branching ratio", f"{s.branching_ratio:.3f}"),
        ("ADL", usd(s.adl_notional_usd)),
        ("insurance fund min", usd(s.insurance_fund_min_usd)),
        ("seed", str(s.seed)),
    ]
    if len(s.venues) > 1:  # per venue: the same headline figures
        for ex, v in s.venues.items():
            rows.append((f"{ex}", f"liquidated {usd(v.liquidated_notional_usd)} of {usd(v.open_notional_usd)} open "
                                  f"(long share {'-' if v.long_share is None else f'{v.long_share:.3f}'}), ADL {usd(v.adl_notional_usd)}, "
                                  f"fund min {usd(v.insurance_fund_min_usd)}" + (f"; PROXY path: {v.path_proxy}'s bars" if v.path_proxy else "")))
    if s.contagion_iterations is not None:
        rows.append(("accounts coupling", f"{s.contagion_iterations} passes, residual "
                                          f"{'-' if s.contagion_residual is None else f'{s.contagion_residual:.1e}'}"
                                          f"{'' if s.contagion_tolerance is None else f' (tolerance {s.contagion_tolerance:.0e})'}"
                                          f"{'' if s.contagion_converged is not False else ' (NOT converged)'}"))
    print_frame(pl.DataFrame({"metric": [r[0] for r in rows], "value": [r[1] for r in rows]}), "summary")
    if s.contagion_converged is False:
        from backtest.contagion import unconverged_note

        typer.echo("warning: " + unconverged_note(s.contagion_iterations or 0, s.contagion_residual, s.contagion_tolerance), err=True)
    typer.echo(f"wrote {out}/summary.json, bars, liquidations, clusters, liq_map, heatmap (.parquet) in {seconds:.1f} s")


ConfigOpt = typer.Option(None, "--config", help="TOML file of flat parameters (top-level keys, or a params table).")
OutOpt = typer.Option(..., "--out", help="Folder for summary.json, bars/liquidations/clusters/liq_map/heatmap.parquet.")
SymbolOpt = typer.Option(None, "--symbol", help="ccxt symbol (repeatable); default: all the event's symbols.")


@app.command()
@user_errors
def replay(
    event: str = typer.Argument(..., help="Event id, e.g. 2025-10-10 (see 'backtest events list')."),
    symbol: Optional[List[str]] = SymbolOpt,
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Path = OutOpt,
    store: Optional[str] = StoreOpt,
    force: bool = ForceOpt,
    events: Optional[Path] = EventsOpt,
    window: Optional[str] = WindowOpt,
    exchange: Optional[str] = ExchangeOpt,
) -> None:
    """Replay an event through the observed path (no price feedback)."""
    ev = resolve_event(event, events=events, window=window, exchange=exchange, symbols=symbol, store=store)
    _run_sim(ev, "replay", symbol, config, set_, out, None, store, force)


@app.command()
@user_errors
def cascade(
    event: str = typer.Argument(..., help="Event id, e.g. 2025-10-10 (see 'backtest events list')."),
    shock: Optional[str] = typer.Option(None, "--shock", help="Exogenous shock, e.g. -5%@2025-10-10T21:00Z (default: the observed path)."),
    symbol: Optional[List[str]] = SymbolOpt,
    config: Optional[Path] = ConfigOpt,
    set_: Optional[List[str]] = SetOpt,
    out: Path = OutOpt,
    store: Optional[str] = StoreOpt,
    force: bool = ForceOpt,
    events: Optional[Path] = EventsOpt,
    window: Optional[str] = WindowOpt,
    exchange: Optional[str] = ExchangeOpt,
) -> None:
    """Run an event with feedback: forced orders move the price, round after round."""
    ev = resolve_event(event, events=events, window=window, exchange=exchange, symbols=symbol, store=store)
    _run_sim(ev, "cascade", symbol, config, set_, out, shock, store, force)


from backtest import cli_events as _cli_events  # noqa: E402

_cli_events.register(app, events_app, user_errors)


from backtest import cli_record as _cli_record  # noqa: E402

_cli_record.register(app, user_errors)


# calibrate, validate, sensitivity (owner: calibration)
from backtest.cli_calibrate import register as _register_calibration  # noqa: E402

_register_calibration(app, user_errors)


def main() -> None:
    """Console-script entry point."""
    from backtest.cli_args import empty_value_error

    bad = empty_value_error(sys.argv[1:])
    if bad:
        typer.echo(f"error: {bad}", err=True)
        sys.exit(2)
    try:  # typer >= 0.25 carries its own click (the pinned one); older ones use click's
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover - an older typer
        from click import exceptions as click_errors

    try:
        rv = app(prog_name="backtest", standalone_mode=False)
    except BrokenPipeError:  # e.g. piped into head
        sys.exit(0)
    except click_errors.NoArgsIsHelpError as e:  # a group without its command: its help, as in standalone mode
        text = e.format_message()  # the exception printed typer's rich help when it was made ("" then)
        if text:
            typer.echo(text)
        sys.exit(2)
    except click_errors.UsageError as e:  # a misspelt option, a missing argument, a value of the wrong type: one line
        where = e.ctx.command_path if e.ctx is not None else "backtest"
        typer.echo(f"error: {e.format_message().rstrip('.')}; see '{where} --help'", err=True)
        sys.exit(2)
    except click_errors.ClickException as e:  # any other click-level refusal (none is raised today): one line, its code
        typer.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)  # typer.Exit(n) comes back as n; Ctrl-C in parsing as 130


if __name__ == "__main__":
    main()
