"""Observed vs simulated liquidated notional per minute, its figure, and replay's observed total."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from backtest.observed import PER_MINUTE_SCHEMA, caveats, figure, observed_vs_simulated, per_minute
from backtest.sources.liquidations import feed_note, write_feed_notes
from backtest.store import Store, to_ms

T0 = to_ms("2025-10-10T21:00:00Z")
M = 60_000
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


def obs_rows():
    return pl.DataFrame({
        "ts": [T0 + 5_000, T0 + 50_000, T0 + M + 1, T0 + 3 * M - 1, T0 - 1, T0 + 4 * M],
        "symbol": [BTC, BTC, BTC, ETH, BTC, BTC],
        "side": [1, 1, -1, -1, 1, 1],
        "price": [100.0] * 6,
        "qty": [10.0, 20.0, 5.0, 1.0, 7.0, 9.0],
        "notional_usd": [1000.0, 2000.0, 500.0, 100.0, 700.0, 900.0],
    })


def sim_rows():
    return pl.DataFrame({
        "ts": [T0 + 1, T0 + 2, T0 + 2 * M + 3, T0 + 2 * M + 4],
        "symbol": [BTC, BTC, BTC, BTC],
        "side": [1, 1, -1, 1],
        "exit": ["liquidated", "stopped", "liquidated", "adl"],
        "notional_usd": [3000.0, 999.0, 40.0, 5.0],
    }).with_columns(pl.col("ts").cast(pl.Datetime("ms", "UTC")), pl.col("side").cast(pl.Int8))


def test_per_minute_adds_up_by_minute_side_and_symbol():
    f = per_minute(obs_rows(), sim_rows(), T0, T0 + 4 * M)
    assert dict(f.schema) == PER_MINUTE_SCHEMA
    assert f.height == 8  # 4 minutes x 2 symbols, zeros included
    btc = f.filter(pl.col("symbol") == BTC)
    assert btc["observed_long_usd"].to_list() == [3000.0, 0.0, 0.0, 0.0]  # before T0 and at the end: outside
    assert btc["observed_short_usd"].to_list() == [0.0, 500.0, 0.0, 0.0]
    assert btc["observed_orders"].to_list() == [2, 1, 0, 0]
    assert btc["simulated_long_usd"].to_list() == [3000.0, 0.0, 0.0, 0.0]  # the stop and the ADL do not count
    assert btc["simulated_short_usd"].to_list() == [0.0, 0.0, 40.0, 0.0]
    eth = f.filter(pl.col("symbol") == ETH)
    assert eth["observed_short_usd"].to_list() == [0.0, 0.0, 100.0, 0.0]
    assert eth["simulated_long_usd"].sum() == 0.0


def test_from_the_store_none_when_nothing_observed_and_figure(tmp_path):
    st = Store(tmp_path / "st")
    assert observed_vs_simulated(st, "binanceusdm", [BTC], T0, T0 + 4 * M, sim_rows()) is None
    rows = obs_rows()
    for (sym,), g in rows.group_by(["symbol"]):
        st.write("liquidations", g, exchange="binanceusdm", timeframe="event")
    write_feed_notes(st, "binanceusdm", {BTC: feed_note("binanceusdm")})
    f = observed_vs_simulated(st, "binanceusdm", [BTC], T0, T0 + 4 * M, sim_rows())
    assert f is not None and f["symbol"].unique().to_list() == [BTC]
    assert f["observed_long_usd"].sum() == 3000.0 and f["observed_short_usd"].sum() == 500.0
    notes = caveats(st, "binanceusdm", [BTC, ETH])
    assert len(notes) == 1 and "lower bounds" in notes[0]
    fig = figure(f, caveat=notes[0])
    ax = fig.axes[0]
    assert len(ax.patches) == 8 and len(fig.axes[1].lines) >= 2  # 4 minutes x (long, short) bars; simulated steps below
    out = tmp_path / "fig.png"
    fig.savefig(out)
    assert out.stat().st_size > 10_000


def test_replay_summary_gains_observed_total(committed_store, tmp_path):
    from backtest.simulate import run_event

    st_dir = tmp_path / "st"
    shutil.copytree(committed_store, st_dir)
    st = Store(st_dir)
    rows = obs_rows().filter(pl.col("symbol") == BTC)
    st.write("liquidations", rows, exchange="binanceusdm", timeframe="event")
    res = run_event("2025-10-10", mode="replay", symbols=[BTC], overrides={"n_positions": 20000}, store=str(st_dir))
    assert res.summary["observed_liquidated_usd"] == pytest.approx(float(rows["notional_usd"].sum()))
    f = observed_vs_simulated(st, "binanceusdm", [BTC], to_ms("2025-10-10T20:00:00Z"), to_ms("2025-10-11T00:00:00Z"), res.liquidations)
    assert f["simulated_long_usd"].sum() + f["simulated_short_usd"].sum() == pytest.approx(
        float(res.liquidations.filter(pl.col("exit") == "liquidated")["notional_usd"].sum()))
    plain = run_event("2025-10-10", mode="replay", symbols=[BTC], overrides={"n_positions": 20000}, store=str(committed_store))
    assert "observed_liquidated_usd" not in plain.summary


def test_report_sets_observed_beside_simulated_when_the_store_has_them(committed_store, tmp_path, monkeypatch):
    """SYNTHETIC observed forced orders in a copy of the committed store: the report gains the
    observed-vs-simulated page (and the committed store's report has none)."""
    from backtest.report.build import build_report

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1760140800")
    st_dir = tmp_path / "st"
    shutil.copytree(committed_store, st_dir)
    st = Store(st_dir)
    st.write("liquidations", obs_rows().filter(pl.col("symbol") == BTC), exchange="binanceusdm", timeframe="event")
    write_feed_notes(st, "binanceusdm", {BTC: feed_note("binanceusdm")})
    res = build_report("2025-10-10", tmp_path / "r.pdf", overrides={"n_positions": 5000}, store=str(st_dir), progress=False, sensitivity=False)
    names = [p.name for p in res.pngs]
    assert "06-observed-liquidations.png" in names
    assert res.replay_summary["observed_liquidated_usd"] == pytest.approx(float(obs_rows().filter(pl.col("symbol") == BTC)["notional_usd"].sum()))
    plain = build_report("2025-10-10", tmp_path / "p.pdf", overrides={"n_positions": 5000}, progress=False, sensitivity=False)
    assert "06-observed-liquidations.png" not in [p.name for p in plain.pngs]
