"""``backtest download``: fetch market data into the store from ccxt or Binance's public archive.

:func:`run_download` returns a :class:`DownloadReport` (one result per series and the lines that
describe them) and raises a ``UserError`` for user errors and permanent faults (bad symbol, not
supported, authentication), which stop at once. The CLI prints the lines and picks the exit
status: 0 when every requested range was fetched (gaps the exchange itself has are reported, not
errors); 1 when retries were spent on some range (the missing ranges are named, everything
fetched before is kept) or a requested dataset is not available on the exchange
(``DownloadReport.complete`` is False); 2 for the errors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
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
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"--ccxt-config {p} is not UTF-8 text (byte {e.start}); save it as UTF-8 JSON or TOML") from None
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


@dataclass
class DownloadReport:
    """What a download did: one result per series (``failed``/``skipped`` when incomplete) and
    the lines describing them, ``(to stderr, text)`` in order."""

    results: list = field(default_factory=list)
    lines: list[tuple[bool, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every requested range fetched and every dataset available."""
        return not any(r.failed or r.skipped for r in self.results)

    def out(self, text: str) -> None:
        self.lines.append((False, text))

    def err(self, text: str) -> None:
        self.lines.append((True, text))


def download_settings(ccxt_config: str | os.PathLike | None) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """``--ccxt-config`` split into (ccxt constructor arguments, our own keys, the retry policy),
    every own key checked (UserError, one line)."""
    from backtest.sources.retry import RetryPolicy

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
    return config, own, policy


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
    report: DownloadReport | None = None,
) -> DownloadReport:
    """Download ``datasets`` for ``symbols`` over [since, until) into the store.

    Returns the :class:`DownloadReport` (``report`` when given: a caller that passes one keeps
    the lines of the series done before an error was raised)."""
    from backtest.store import Store, now_ms, timeframe_ms, to_ms

    unknown = [d for d in datasets if d not in ALL_DATASETS]
    if unknown:
        raise UserError(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(ALL_DATASETS)}")
    if not datasets:
        raise UserError("no datasets given; e.g. --datasets ohlcv,mark,funding")
    if not symbols:
        raise UserError("no symbols given; e.g. BTC/USDT:USDT")
    timeframe_ms(timeframe)
    from backtest.path_parts import check_part

    check_part("exchange", exchange, option="the exchange argument")  # it names the store folder
    t0 = to_ms(since)
    t1 = to_ms(until) if until else now_ms()
    if t1 <= t0:
        raise UserError(f"--until ({until}) must be after --since ({since})")
    config, own, policy = download_settings(ccxt_config)
    limits = own.get("page_limits") or {}
    st = Store(store)
    # keep the order users expect regardless of how they listed them
    datasets = [d for d in ALL_DATASETS if d in datasets]
    from backtest.resources import check_download_span

    check_download_span(t0, t1, timeframe, [d for d in datasets if d != "tiers"], limits)

    report = report if report is not None else DownloadReport()
    _run(exchange, symbols, datasets, timeframe, t0, t1, source, config, own, policy, st, report)
    return report


def _run(exchange, symbols, datasets, timeframe, t0, t1, source, config, own, policy, st, report: DownloadReport) -> None:
    from backtest.progress import Progress

    results = report.results
    with Progress(percent=True) as progress:
        if source == "ccxt":
            from backtest.sources.ccxt_source import CcxtDownloader

            dl = CcxtDownloader(exchange, config, st, policy, progress=progress, log=progress.log,
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
                    _describe(report, st, exchange, r, t0, t1)
            if "tiers" in datasets:
                r = dl.download_tiers(symbols)
                results.append(r)
                _describe(report, st, exchange, r, t0, t1)
        elif source in ("binance-archive", "archive"):
            from backtest.sources.binance_archive import ArchiveDownloader

            base = own.get("archive_base_url") or os.environ.get("BACKTEST_ARCHIVE_URL")
            dl = ArchiveDownloader(exchange, st, policy, base_url=base, progress=progress, config=config)
            for sym in symbols:
                for ds in datasets:
                    r = dl.download_series(ds, sym, timeframe, t0, t1)
                    results.append(r)
                    _describe(report, st, exchange, r, t0, t1)
        else:
            raise UserError(f"unknown --source {source!r}; use ccxt or binance-archive")


def _describe(report: DownloadReport, st, exchange: str, r, t0: int, t1: int) -> None:
    """One summary line per dataset on stdout; failures and skips also on stderr."""
    from backtest.store import EVENT_TIMEFRAME, ms_to_iso, timeframe_ms

    if r.skipped:
        report.err(f"{r.dataset} {r.symbol}: {r.note}")
        report.out(f"{r.dataset} {r.symbol}: skipped ({r.note})")
        return
    if r.dataset == "tiers":
        line = f"tiers {r.symbol}: {r.rows_added} tiers stored in {st.tiers_path(exchange)}"
        if r.note:
            line += f" ({r.note})"
        if r.failed:
            line += f"; FAILED: {r.error}"
            report.err(f"tiers {r.symbol}: not downloaded: {r.error}")
        report.out(line)
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
    report.out(line)
    if gaps is not None and n_gaps:
        for row in gaps.head(5).iter_rows(named=True):
            report.out(f"  gap {row['gap_start']:%Y-%m-%dT%H:%M:%SZ} .. {row['gap_end']:%Y-%m-%dT%H:%M:%SZ} ({row['missing']} missing)")
    if r.failed:
        ranges = ", ".join(f"{ms_to_iso(a)}..{ms_to_iso(b)}" for a, b in r.failed[:5])
        more = f" and {len(r.failed) - 5} more" if len(r.failed) > 5 else ""
        report.err(f"error: {r.dataset} {r.symbol}: missing {ranges}{more} after retries ({r.error}); what was fetched is kept, re-run to resume")
