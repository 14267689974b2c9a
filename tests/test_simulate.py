"""simulate.py on the committed store: replay and cascade of 2025-10-10, outputs, bad input."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl
import pytest

from backtest.params import ParamError
from backtest.errors import SimError
from backtest.shocks import parse_shock
from backtest.sim_params import SimParams
from backtest.simulate import prepare, run_event, simulate_prepared

BTC = "BTC/USDT:USDT"
SUMMARY_KEYS = {
    "event", "symbols", "positions", "open_notional_usd", "liquidated_notional_usd", "long_liquidated_usd",
    "short_liquidated_usd", "long_share", "peak_minute", "peak_minute_notional_usd", "max_cascade_depth",
    "amplification", "adl_notional_usd", "insurance_fund_min_usd", "seed", "params",
}


@pytest.fixture(scope="module")
def prepared_btc():
    from tests.conftest import COMMITTED_STORE

    return prepare("2025-10-10", {"n_positions": 200_000}, symbols=[BTC], store=str(COMMITTED_STORE))


def test_replay_btc_peak_minute_and_long_share(committed_store, tmp_path):
    res = run_event("2025-10-10", mode="replay", symbols=[BTC], store=str(committed_store))
    s = res.summary
    assert SUMMARY_KEYS <= set(s)
    peak = datetime.fromisoformat(s["peak_minute"].replace("Z", "+00:00"))
    assert datetime(2025, 10, 10, 21, 0, tzinfo=timezone.utc) <= peak <= datetime(2025, 10, 10, 21, 30, tzinfo=timezone.utc)
    assert s["long_share"] > 0.8
    assert s["price_source"] == {BTC: "last-anchored-to-mark"}
    # anchored to the mark: the path never goes below the 1h mark low (101,877.69 in 21:00-22:00)
    assert res.bars["low"].min() == pytest.approx(101_877.69)
    assert s["max_cascade_depth"] == 0 and s["amplification"] == 0.0
    assert 0 < s["liquidated_notional_usd"] <= s["open_notional_usd"]
    assert s["params"]["impact_model"] == "sqrt" and "seed" in s["params"]
    # BTC's open interest is the catalogue's published level, said so (and not as an estimate)
    assert s["per_symbol"][BTC]["open_interest_kind"] == "published"
    assert s["per_symbol"][BTC]["open_interest_source"].startswith("event catalogue:")
    assert not any(n.startswith("open interest estimated") for n in s["notes"])
    for df in (res.bars, res.liquidations, res.heatmap):
        assert df.schema["ts"] == pl.Datetime("ms", "UTC")
    assert res.bars.height == 240
    out = res.write(tmp_path / "out")
    for f in ("summary.json", "bars.parquet", "liquidations.parquet", "clusters.parquet", "liq_map.parquet", "heatmap.parquet"):
        assert (out / f).exists()
    js = json.loads((out / "summary.json").read_text())
    assert js["peak_minute"] == s["peak_minute"]
    # clusters: ranked, with a reached long cluster below the start price
    cl = res.clusters
    assert cl.height > 0 and cl["rank"].to_list() == sorted(cl["rank"].to_list())
    assert cl.filter((pl.col("side") == "long") & pl.col("reached")).height > 0
    lm = res.liq_map
    assert set(lm["side"].unique()) == {"long", "short"}
    assert lm["open_notional_usd"].sum() <= s["open_notional_usd"] * (1 + 1e-9)


def test_cascade_with_shock_reports_depth_and_amplification(prepared_btc):
    res = simulate_prepared(prepared_btc, mode="cascade", shock="-5%@2025-10-10T21:00Z")
    s = res.summary
    assert s["max_cascade_depth"] >= 1
    assert s["amplification"] > 0
    assert s["branching_ratio"] > 0
    ps = s["per_symbol"][BTC]
    assert ps["drawdown_exogenous"] == pytest.approx(0.05, rel=1e-9)
    assert ps["drawdown_simulated"] > 0.05


def test_prepared_is_deterministic_and_reuses_population(prepared_btc):
    a = simulate_prepared(prepared_btc, {"impact_coef": 0.5}, mode="cascade")
    pops_before = prepared_btc.populations[BTC]
    b = simulate_prepared(prepared_btc, {"impact_coef": 0.5}, mode="cascade")
    assert a.summary["liquidated_notional_usd"] == b.summary["liquidated_notional_usd"]
    assert a.liquidations.equals(b.liquidations)
    assert prepared_btc.populations[BTC] is pops_before
    c = simulate_prepared(prepared_btc, {"impact_coef": 2.0}, mode="cascade")
    assert c.summary["amplification"] >= a.summary["amplification"]
    # a population parameter rebuilds the population
    d = simulate_prepared(prepared_btc, {"long_share": 0.3}, mode="replay")
    assert d.summary["params"]["long_share"] == 0.3


def test_summary_only_matches_full_run(prepared_btc):
    full = simulate_prepared(prepared_btc, {"impact_coef": 0.8}, mode="cascade")
    quick = simulate_prepared(prepared_btc, {"impact_coef": 0.8}, mode="cascade", summary_only=True)
    drop = ("timings_s",)
    assert {k: v for k, v in quick.summary.items() if k not in drop} == {k: v for k, v in full.summary.items() if k not in drop}
    assert quick.bars.height == 0
    # the frames agree with the summary
    liq = full.liquidations.filter(pl.col("exit") == "liquidated")
    assert liq["notional_usd"].sum() == pytest.approx(full.summary["liquidated_notional_usd"], rel=1e-12)


@pytest.mark.parametrize("path,source,low", [("last", "last", 101_516.5), ("mark", "mark", 101_877.69)])
def test_price_path_choices(committed_store, path, source, low):
    res = run_event("2025-10-10", symbols=[BTC], store=str(committed_store), overrides={"price_path": path, "n_positions": 20_000})
    assert res.summary["price_source"] == {BTC: source}
    assert res.bars["low"].min() == pytest.approx(low)
    assert res.bars.height == (240 if path == "last" else 4)


def test_parse_shock():
    v, t = parse_shock("-5%@2025-10-10T21:00Z")
    assert v == -0.05 and t == 1760130000000
    assert parse_shock("+10%@2025-10-10T21:00:00Z")[0] == 0.1
    assert parse_shock("-5%", default_ms=1)[1] == 1
    for bad in ("", "5", "+0.1@2025-10-10T21:00:00Z", "-5%@notatime", "-120%@2025-10-10T21:00Z", "0%@2025-10-10T21:00Z"):
        with pytest.raises(SimError):
            parse_shock(bad)


def test_bad_input(committed_store, tmp_path):
    with pytest.raises(SimError, match="not part of event"):
        run_event("2025-10-10", symbols=["FOO/USDT:USDT"], store=str(committed_store))
    with pytest.raises(ParamError, match="depth_multiplier"):
        run_event("2025-10-10", overrides={"depth_multiplier": -1}, store=str(committed_store))
    with pytest.raises(ParamError, match="unknown parameter"):
        run_event("2025-10-10", overrides={"impact_modle": "sqrt"}, store=str(committed_store))
    with pytest.raises(SimError, match="outside the event window"):
        run_event("2025-10-10", mode="cascade", shock="-5%@2025-10-12T21:00Z", symbols=[BTC], store=str(committed_store), overrides={"n_positions": 1000})
    with pytest.raises(SimError, match="shock"):
        run_event("2025-10-10", mode="replay", shock="-5%@2025-10-10T21:00Z", store=str(committed_store))
    # a window with no data
    from backtest.market import load_market
    from backtest.store import Store

    with pytest.raises(SimError, match="no price data"):
        load_market(Store(tmp_path / "empty"), "binanceusdm", BTC, 1760126400000, 1760140800000, 1757536800000)


def test_simparams_validate():
    SimParams().validate()
    for bad in ({"impact_model": "cubic"}, {"depth_usd_1pct": -5.0}, {"max_rounds": -1}, {"bucket_pct": 0.0}):
        with pytest.raises(ValueError):
            SimParams(**bad).validate()


def test_shock_time_without_zone_says_how_to_fix_it():
    """DESIGN §10 writes -5%@2025-10-10T21:00; times without a zone are refused everywhere, so
    the message gives the exact option to type instead."""
    for text, fixed in (("-5%@2025-10-10T21:00", "--shock=-5%@2025-10-10T21:00Z"),
                        ("+2.5%@2025-10-10T21:15:30", "--shock=+2.5%@2025-10-10T21:15:30Z")):
        with pytest.raises(SimError) as e:
            parse_shock(text)
        when = text.split("@")[1]
        assert str(e.value) == f"time of --shock {when!r} has no zone; add Z for UTC: {fixed}"
        assert parse_shock(fixed.removeprefix("--shock="))[1] > 0
    with pytest.raises(SimError, match="cannot read the time of shock"):
        parse_shock("-5%@notatime")


def test_cli_zone_less_shock_is_one_line_before_simulating(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import backtest.simulate as simulate
    from backtest.cli import app

    monkeypatch.setattr(simulate, "run_event", lambda *a, **k: pytest.fail("simulated with a bad --shock"))
    r = CliRunner().invoke(app, ["cascade", "2025-10-10", "--shock=-5%@2025-10-10T21:00", "--out", str(tmp_path / "c")])
    assert r.exit_code == 2, r.output
    assert r.output.strip() == "error: time of --shock '2025-10-10T21:00' has no zone; add Z for UTC: --shock=-5%@2025-10-10T21:00Z"
    assert not (tmp_path / "c").exists()


def test_sim_parameters_refuse_booleans_and_fractional_counts():
    from backtest.params import apply_overrides

    for overrides, match in (({"impact_coef": True}, "as a number"), ({"liquidity_multiplier": "true"}, "as a number"),
                             ({"max_rounds": 2.5}, "as a whole number"), ({"depth_usd_1pct": "yes"}, "as a number")):
        with pytest.raises(ParamError, match=match):
            apply_overrides([SimParams()], overrides)
    with pytest.raises(ValueError, match="must be a number"):
        SimParams(impact_coef=True).validate()
    (p,) = apply_overrides([SimParams()], {"depth_usd_1pct": "auto", "max_rounds": 50.0})
    assert p.depth_usd_1pct is None and p.max_rounds == 50 and isinstance(p.max_rounds, int)


def test_outputs_are_replaced_whole_or_not_at_all(tmp_path):
    """backtest.paths.write_atomic (used for replay/cascade, population, sweep outputs): a writer
    that fails midway leaves the old file as it was and no temporary file behind."""
    from backtest.paths import write_atomic

    target = tmp_path / "summary.json"
    target.write_text("old\n")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    write_atomic(target, lambda t: t.write_text("new\n"))
    assert target.read_text() == "new\n" and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_estimated_open_interest_is_labelled():
    from backtest.results import _estimate_notes, oi_source_kind

    assert oi_source_kind("event catalogue: x") == "published"
    assert oi_source_kind("estimate: y") == "estimate"
    assert oi_source_kind("store open_interest (binanceusdm) at t") == "store"
    assert oi_source_kind("open_interest_usd parameter") == "parameter"
    per = {"A": {"open_interest_kind": "published", "open_interest_source": "event catalogue: a"},
           "B": {"open_interest_kind": "estimate", "open_interest_source": "estimate: b from a"},
           "C": {"open_interest_kind": "estimate", "open_interest_source": "estimate: c from a"}}
    (note,) = _estimate_notes(per)
    assert note.startswith("open interest estimated, no published level, for B, C. B: b from a")
    assert "per_symbol.open_interest_source" in note
    assert _estimate_notes({"A": per["A"]}) == []
