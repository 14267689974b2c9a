"""Validation folds, a small real validation, Sobol indices, and the process executor."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from backtest.calibration.figures import load_figures
from backtest.calibration.model import run_many
from backtest.calibration.sensitivity import HeadlineModel, run_sensitivity
from backtest.calibration.validate import comparable_events, folds_for, validate
from backtest.errors import CalibrationError


def test_folds():
    figs = load_figures()
    cands = comparable_events(figs)
    assert "2025-10-10" in cands and len(cands) >= 2
    [(train, test)] = folds_for(None, None, False, figs, None)
    assert test == ["2025-10-10"] and "2025-10-10" not in train and train
    loo = folds_for(None, None, True, figs, None)
    assert [t for _, t in loo] == [[e] for e in cands]
    assert all(t[0] not in tr for tr, t in loo)
    with pytest.raises(CalibrationError, match="both --train and --test"):
        folds_for(["2025-10-10"], ["2025-10-10"], False, figs, None)
    with pytest.raises(CalibrationError, match="without --train"):
        folds_for(["2025-10-10"], None, True, figs, None)


def test_small_validation_writes_the_table(tmp_path):
    res = validate(train=["2024-08-05"], test=["2021-05-19"], samples=4, generations=1, draws=3, n_positions=1000,
                   executor="serial", out=tmp_path / "v")
    t = pl.read_parquet(tmp_path / "v" / "validation.parquet")
    assert t["figure"].to_list() == ["2021-05-19/binance-liquidations-btc-eth"]
    row = t.row(0, named=True)
    assert row["kind"] == "lower_bound" and row["p05"] <= row["median"] <= row["p95"]
    assert row["band"] in ("met", "not met") and row["trained_on"] == "2024-08-05"
    assert (tmp_path / "v" / "validation.md").read_text().startswith("| event |")
    assert (tmp_path / "v" / "fold-1-test-2021-05-19" / "params.toml").exists()
    assert "figures met or covered" in res.verdict_line()


class Linear:
    """y = 3 a + 0.1 b^2 over two priors; the first dominates."""

    def __call__(self, p: dict) -> dict[str, float]:
        return {"liquidated_notional_usd": 3.0 * p["leverage_scale"] + 0.1 * p["stop_share"] ** 2, "flat": 1.0}


def test_sobol_ranks_the_lever(tmp_path):
    res = run_sensitivity("2025-10-10", params=["leverage_scale", "stop_share"], samples=64, executor="serial", model=Linear(),
                          out=tmp_path / "s")
    t = res.table.filter(pl.col("metric") == "liquidated_notional_usd")
    st = dict(zip(t["param"], t["ST"]))
    assert st["leverage_scale"] > 0.9 and st["stop_share"] < 0.05
    assert res.ranked()["param"][0] == "leverage_scale"
    assert res.table.filter(pl.col("metric") == "flat")["ST"].to_list() == [0.0, 0.0]  # no variance, no index
    assert res.runs == 64 * 4 and (tmp_path / "s" / "sensitivity.pdf").read_bytes()[:4] == b"%PDF"
    with pytest.raises(CalibrationError, match="power of two"):
        run_sensitivity("2025-10-10", samples=10, model=Linear(), executor="serial")


def test_process_executor_matches_serial():
    m = HeadlineModel(["2025-10-10"], {}, {"n_positions": 1000}, {}, "replay", None, ["BTC/USDT:USDT"])
    sets = [{"leverage_scale": 1.0}, {"leverage_scale": 1.6}]
    serial = run_many(m, sets, executor="serial")
    procs = run_many(m, sets, executor="processes", workers=2)
    assert procs == serial
    assert serial[1]["liquidated_notional_usd"] != serial[0]["liquidated_notional_usd"]
    assert np.isfinite(serial[0]["liquidated_notional_usd"])


@pytest.mark.parametrize(
    "args, expect",
    [
        (["validate", "--train", "2025-10-10", "--test", "2025-10-10"], "in both --train and --test"),
        (["validate", "--loo", "--test", "2025-10-10"], "without --train and --test"),
        (["validate", "--test", "2099-01-01"], "unknown event"),
        (["validate", "--mode", "fast"], "--mode must be replay or cascade"),
        (["sensitivity", "2025-10-10", "--samples", "10"], "power of two"),
        (["sensitivity", "2025-10-10", "--param", "nope"], "no prior for parameter 'nope'"),
        (["sensitivity", "2025-10-10", "--workers", "0"], "--workers must be at least 1"),
        (["validate", "--train", ",", "--test", "2025-10-10"], "--train ',' names no event"),
        (["validate", "--train", "2025-04-07", "--test", " , "], "--test ' , ' names no event"),
        (["validate", "--train", "2025-04-07", "--test", "2025-10-10", "--fit", "zzz"], "no prior for parameter 'zzz'"),
        (["validate", "--train", "2025-04-07", "--test", "2025-10-10", "--samples", "0"], "--samples >= 2"),
        # refused inside the first fold (the parameters are checked when its events are prepared)
        (["validate", "--train", "2025-04-07", "--test", "2025-10-10", "--set", "account_iterations=0", "--n-positions", "2000"],
         "'account_iterations' must be in [1, 100]"),
        (["calibrate", "2025-10-10", "--fit", "leverage_scale", "--set", "nosuchparam=1", "--n-positions", "2000"],
         "unknown parameter 'nosuchparam'; the parameters are: "),
        (["calibrate", "2025-10-10", "--fit", "leverage_scale", "--n-positions", "0"], "n_positions must be a positive integer"),
        (["calibrate", "myev", "--window", "garbage", "--exchange", "binanceusdm", "--symbol", "BTC/USDT:USDT", "--fit", "leverage_scale"],
         "must be START/END in UTC, e.g. 2025-10-10T20:00Z/2025-10-11T00:00Z"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, expect):
    from typer.testing import CliRunner

    from backtest.cli import app

    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and expect in r.output, r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "o").exists()  # a refused run leaves no folder behind


def test_no_empty_leftover_removes_only_a_new_empty_folder(tmp_path):
    from backtest.paths import no_empty_leftover

    for pre, files, kept in ((False, False, False), (False, True, True), (True, False, True)):
        d = tmp_path / f"d{pre}{files}"
        if pre:
            d.mkdir()
        with pytest.raises(RuntimeError), no_empty_leftover(d):
            (d / "sub").mkdir(parents=True)
            if files:
                (d / "sub" / "abc.db").write_text("x")
            raise RuntimeError("refused")
        assert d.exists() == kept, (pre, files)


def test_ctrl_c_in_calibrate_says_whether_there_is_a_history_to_resume(tmp_path, capsys):
    import typer

    from backtest.cli_calibrate import _run

    def interrupted_run(*_a, **_k):
        raise KeyboardInterrupt

    def message():
        return "kept: resume" if (tmp_path / "abc.db").exists() else "nothing is kept"

    for has_db, want in ((False, "nothing is kept"), (True, "kept: resume")):
        if has_db:
            (tmp_path / "abc.db").write_text("")
        with pytest.raises(typer.Exit) as e:
            _run("calibrate", interrupted_run, mode="replay", workers=None, interrupted=message)
        assert e.value.exit_code == 130 and capsys.readouterr().err.strip() == f"error: {want}"
