"""``backtest download``: fetch market data into the store from ccxt or Binance's public archive.

Exit codes: 0 when every requested range was fetched (gaps the exchange itself has are reported,
not errors); 1 when retries were spent on some range (the missing ranges are named, everything
fetched before is kept) or a requested dataset is not available on the exchange; 2 for user
errors and permanent faults (bad symbol, not supported, authentication), which stop at once.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from backtest.errors import UserError

ALL_DATASETS = ("ohlcv", "mark", "index", "funding", "open_interest", "long_short_ratio", "depth", "liquidations", "tiers")
#: keys of --ccxt-config that are ours, not ccxt constructor arguments
OWN_KEYS = ("archive_base_url", "retry", "page_limits")


def load_config(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read a JSON or TOML file (by extension; JSON first when unsure) into a dict."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--ccxt-config {p}: no such file")
    text = p.read_text(encoding="utf-8")
    errors = []
    order = ["toml", "json"] if p.suffix.lower() == ".toml" else ["json", "toml"]
    for kind in order:
        try:
            if kind == "json":
                data = json.loads(text)
            else:
                import tomllib

                data = tomllib.loads(text)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{kind}: {str(e).splitlines()[0]}")
            continue
        if not isinstance(data, dict):
            raise UserError(f"--ccxt-config {p} must hold a table/object of constructor arguments")
        return data
    raise UserError(f"--ccxt-config {p} is neither JSON nor TOML ({'; '.join(errors)})")


class Progress:
    """rich progress bars on a terminal (stderr), nothing otherwise."""

    def __init__(self, enabled: bool):
        self._p = None
        self._totals: dict = {}
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

            self._p = RichProgress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=False, redirect_stdout=False, redirect_stderr=False,
            )

    def __enter__(self):
        if self._p:
            self._p.start()
        return self

    def __exit__(self, *exc):
        if self._p:
            self._p.stop()

    def add(self, description: str, total: float):
        if not self._p:
            return None
        task = self._p.add_task(description, total=total)
        self._totals[task] = total
        return task

    def advance(self, task, amount: float) -> None:
        if self._p is not None and task is not None:
            self._p.advance(task, amount)

    def done(self, task) -> None:
        if self._p is not None and task is not None:
            self._p.update(task, completed=self._totals.get(task))

    def log(self, msg: str) -> None:
        if self._p is not None:
            self._p.console.print(msg, highlight=False)


_OUT: list[tuple[bool, str]] = []  # (to stderr, line), printed once the progress bars are gone


def _eprint(msg: str) -> None:
    _OUT.append((True, msg))


def _print(msg: str) -> None:
    _OUT.append((False, msg))


def _flush() -> None:
    while _OUT:
        err, msg = _OUT.pop(0)
        print(msg, file=sys.stderr if err else sys.stdout, flush=True)


def run_download(
    *,
    exchange: str,
    symbols: list[str],
    datasets: list[str],
    timeframe: str,
    since: str,
    until: str | None,
    source: str = "ccxt",
    ccxt_config: str | os.PathLike | None = None,
    store: str | None = None,
) -> int:
    """Download ``datasets`` for ``symbols`` over [since, until) into the store; return the exit code."""
    from backtest.sources.retry import RetryPolicy
    from backtest.store import Store, now_ms, timeframe_ms, to_ms

    unknown = [d for d in datasets if d not in ALL_DATASETS]
    if unknown:
        raise UserError(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(ALL_DATASETS)}")
    if not datasets:
        raise UserError("no datasets given; e.g. --datasets ohlcv,mark,funding")
    if not symbols:
        raise UserError("no symbols given; e.g. BTC/USDT:USDT")
    timeframe_ms(timeframe)
    t0 = to_ms(since)
    t1 = to_ms(until) if until else now_ms()
    if t1 <= t0:
        raise UserError(f"--until ({until}) must be after --since ({since})")
    config = load_config(ccxt_config)
    own = {k: config.pop(k) for k in OWN_KEYS if k in config}
    retry_settings = own.get("retry") or {}
    if not isinstance(retry_settings, dict):
        raise UserError("the 'retry' entry of --ccxt-config must be a table (max_retries, base, cap, retry_after_cap)")
    policy = RetryPolicy.from_settings(retry_settings)
    limits = own.get("page_limits") or {}
    if not isinstance(limits, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in limits.values()):
        raise UserError("the 'page_limits' entry of --ccxt-config must map datasets to positive integers, e.g. {\"ohlcv\": 500}")
    unknown_limits = [k for k in limits if k not in ALL_DATASETS or k == "tiers"]
    if unknown_limits:
        raise UserError(f"page_limits in --ccxt-config names unknown dataset(s) {', '.join(map(str, unknown_limits))}; "
                        f"use {', '.join(d for d in ALL_DATASETS if d != 'tiers')}")
    st = Store(store)
    # keep the order users expect regardless of how they listed them
    datasets = [d for d in ALL_DATASETS if d in datasets]

    progress_on = sys.stderr.isatty() and not os.environ.get("BACKTEST_NO_PROGRESS")
    results = []
    _OUT.clear()
    try:
        return _run(exchange, symbols, datasets, timeframe, t0, t1, source, config, own, policy, st, progress_on, results)
    finally:
        _flush()


def _run(exchange, symbols, datasets, timeframe, t0, t1, source, config, own, policy, st, progress_on, results) -> int:
    with Progress(progress_on) as progress:
        log = progress.log if progress_on else (lambda m: print(m, file=sys.stderr, flush=True))
        if source == "ccxt":
            from backtest.sources.ccxt_source import CcxtDownloader

            dl = CcxtDownloader(exchange, config, st, policy, progress=progress, log=log if progress_on else (lambda m: None),
                                page_limits=own.get("page_limits"))
            dl.prepare(symbols, timeframe, datasets)
            for sym in symbols:
                for ds in datasets:
                    if ds == "tiers":
                        continue
                    if ds == "liquidations":
                        from backtest.sources.liquidations import download_liquidations

                        r = download_liquidations(dl, sym, t0, t1)
                    else:
                        r = dl.download_series(ds, sym, timeframe, t0, t1)
                    results.append(r)
                    _report(st, exchange, r, t0, t1)
            if "tiers" in datasets:
                r = dl.download_tiers(symbols)
                results.append(r)
                _report(st, exchange, r, t0, t1)
        elif source in ("binance-archive", "archive"):
            from backtest.sources.binance_archive import ArchiveDownloader

            base = own.get("archive_base_url") or os.environ.get("BACKTEST_ARCHIVE_URL")
            dl = ArchiveDownloader(exchange, st, policy, base_url=base, progress=progress, config=config)
            for sym in symbols:
                for ds in datasets:
                    r = dl.download_series(ds, sym, timeframe, t0, t1)
                    results.append(r)
                    _report(st, exchange, r, t0, t1)
        else:
            raise UserError(f"unknown --source {source!r}; use ccxt or binance-archive")
    bad = [r for r in results if r.failed or r.skipped]
    return 1 if bad else 0


def _report(st, exchange: str, r, t0: int, t1: int) -> None:
    """One summary line per dataset on stdout; failures and skips also on stderr."""
    from backtest.store import EVENT_TIMEFRAME, ms_to_iso, timeframe_ms

    if r.skipped:
        _eprint(f"{r.dataset} {r.symbol}: {r.note}")
        _print(f"{r.dataset} {r.symbol}: skipped ({r.note})")
        return
    if r.dataset == "tiers":
        line = f"tiers {r.symbol}: {r.rows_added} tiers stored in {st.tiers_path(exchange)}"
        if r.note:
            line += f" ({r.note})"
        if r.failed:
            line += f"; FAILED: {r.error}"
            _eprint(f"tiers {r.symbol}: not downloaded: {r.error}")
        _print(line)
        return
    ts = st.stored_ts(r.dataset, exchange, r.symbol, r.timeframe, t0, t1)
    if ts:
        covered = f"{ms_to_iso(ts[0])} .. {ms_to_iso(ts[-1])}"
    else:
        covered = "nothing stored"
    if r.dataset == "liquidations":
        gaps = None  # forced orders come when they come: no spacing to call a gap
    elif r.timeframe == EVENT_TIMEFRAME or not ts:
        gaps = st.gaps(r.dataset, exchange, r.symbol, r.timeframe, t0, t1) if ts else None
    else:
        step = timeframe_ms(r.timeframe)
        start = -(-t0 // step) * step
        gaps = st.gaps(r.dataset, exchange, r.symbol, r.timeframe, start, t1)
    n_gaps = 0 if gaps is None else gaps.height
    missing = 0 if gaps is None else int(gaps["missing"].sum() or 0)
    gap_txt = "no gaps" if n_gaps == 0 else f"{n_gaps} gap(s), {missing} missing"
    if not ts:
        gap_txt = "the source has no data for this range" if not r.failed else "nothing fetched"
    line = f"{r.dataset} {r.symbol} {r.timeframe}: +{r.rows_added} rows ({r.requests} requests), {len(ts)} stored in {covered}, {gap_txt}"
    if r.note:
        line += f" ({r.note})"
    _print(line)
    if gaps is not None and n_gaps:
        for row in gaps.head(5).iter_rows(named=True):
            _print(f"  gap {row['gap_start']:%Y-%m-%dT%H:%M:%SZ} .. {row['gap_end']:%Y-%m-%dT%H:%M:%SZ} ({row['missing']} missing)")
    if r.failed:
        ranges = ", ".join(f"{ms_to_iso(a)}..{ms_to_iso(b)}" for a, b in r.failed[:5])
        more = f" and {len(r.failed) - 5} more" if len(r.failed) > 5 else ""
        _eprint(f"error: {r.dataset} {r.symbol}: missing {ranges}{more} after retries ({r.error}); what was fetched is kept, re-run to resume")
