"""``backtest record``: recorders of live public streams into the store (now: forced orders).

Thin: parses, calls :func:`backtest.sources.recorder.record`, prints the closing summary
(per symbol: orders, new rows, notional, and the feed's throttling note) on stdout. Registered
on the typer app of :mod:`backtest.cli` by :func:`register` (no import of ``backtest.cli`` here,
so ``python -m backtest.cli`` keeps working).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from backtest.errors import UserError

StoreOpt = typer.Option(None, "--store", help="Store root: folder or s3://bucket/prefix (default: $BACKTEST_STORE or the committed data/).")


def register(app: typer.Typer, user_errors) -> None:
    """Add the ``record`` command group to ``app``; ``user_errors`` is the CLI's error boundary."""
    record_app = typer.Typer(no_args_is_help=True, help="Record live public streams into the store.")
    record_app.command("liquidations")(user_errors(record_liquidations))
    app.add_typer(record_app, name="record")


def record_liquidations(
    exchange: str = typer.Argument(..., help="ccxt pro exchange id with a liquidation stream: binanceusdm, bybit, okx."),
    symbols: List[str] = typer.Argument(..., help="ccxt symbols, e.g. BTC/USDT:USDT ETH/USDT:USDT."),
    until: Optional[str] = typer.Option(None, "--until", help="Stop at this time (ISO-8601 UTC)."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Stop after this many seconds."),
    batch_seconds: float = typer.Option(2.0, "--batch-seconds", help="Seconds between two writes to the store."),
    ccxt_config: Optional[Path] = typer.Option(
        None, "--ccxt-config",
        help="JSON/TOML merged into the exchange's constructor arguments (urls incl. urls.api.ws, proxies, options). "
        "Own key: retry {base, cap} = reconnect backoff in seconds.",
    ),
    store: Optional[str] = StoreOpt,
) -> None:
    """Append forced orders to the store as they arrive, until --until/--duration or Ctrl-C/SIGTERM.

    Reconnects after a dropped connection (one line on stderr each time); a re-run appends and
    an order seen twice is stored once. Binance and OKX publish at most one order per symbol per
    second: their totals are lower bounds (said at exit and in liquidations/exchange=ID/feeds.json).
    """
    import time

    from backtest.sources.download import OWN_KEYS, load_config
    from backtest.sources.liquidations import feeds_path
    from backtest.sources.recorder import record
    from backtest.sources.retry import RetryPolicy
    from backtest.store import Store, ms_to_iso, now_ms, to_ms

    if until is not None and duration is not None:
        raise UserError("give --until or --duration, not both")
    deadline = None
    if until is not None:
        deadline = to_ms(until)
        if deadline <= now_ms():
            raise UserError(f"--until {until} is in the past; give a later time or use --duration")
    if duration is not None:
        if not duration > 0:
            raise UserError(f"--duration must be a number of seconds above 0, not {duration}")
        deadline = now_ms() + int(duration * 1000)
    config = load_config(ccxt_config)
    own = {k: config.pop(k) for k in OWN_KEYS if k in config}
    retry = own.get("retry") or {}
    if not isinstance(retry, dict):
        raise UserError("the 'retry' entry of --ccxt-config must be a table (base, cap)")
    policy = RetryPolicy.from_settings({"base": 0.5, "cap": 30.0, **retry})
    st = Store(store)
    t0 = time.time()
    typer.echo(f"recording {exchange} liquidations of {', '.join(symbols)} into {st.root}"
               f"{' until ' + ms_to_iso(deadline) if deadline else ''}; Ctrl-C stops", err=True)
    res = record(exchange, list(symbols), st, config, deadline_ms=deadline, policy=policy, batch_seconds=batch_seconds)
    typer.echo(f"{exchange} liquidations recorded in {time.time() - t0:.0f} s ({res.reconnects} reconnects, stopped by {res.stopped_by or 'time'})")
    for s in res.symbols:
        typer.echo(f"  {s}: {res.received.get(s, 0)} orders, {res.added.get(s, 0)} new in the store, "
                   f"{res.notional_usd.get(s, 0.0):,.0f} USD notional")
    throttled = res.note.get("throttled")
    head = "THROTTLED FEED: " if throttled else ""
    typer.echo(f"{head}{res.note.get('note')}")
    typer.echo(f"notes: {feeds_path(st, exchange)}")
