"""Calibration (ABC-SMC with pyabc): recovery of known parameters on synthetic events, resume,
outputs, bad input. Synthetic events are named so: their figures' ids start with 'synthetic/'."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tomli_w
from typer.testing import CliRunner

from backtest.calibration.abc import CalibrationSpec, calibrate, weighted_quantile
from backtest.calibration.figures import Figure
from backtest.cli import app
from backtest.errors import CalibrationError
from backtest.params import load_config

TRUTH = {"leverage_scale": 1.3, "cross_extra_collateral": 0.6}


def synthetic_point(metric: str, target: float, rel: float) -> Figure:
    return Figure(id=f"synthetic/{metric}", event="2025-10-10", what=f"synthetic {metric} at known parameters", kind="point",
                  metric=metric, target=target, uncertainty=rel * abs(target))


class FakeSimulator:
    """A fast stand-in for the simulator: two summary-like outputs that identify both parameters."""

    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.fail_after = fail_after
        self.targets = [synthetic_point("liquidated_notional_usd", self.f(TRUTH)[0], 0.02),
                        synthetic_point("peak_minute_notional_usd", self.f(TRUTH)[1], 0.02)]

    @staticmethod
    def f(p: dict) -> tuple[float, float]:
        a, b = p["leverage_scale"], p["cross_extra_collateral"]
        return 1e9 * a * (1.0 + b), 1e8 * a / (1.0 + b)

    @property
    def target_list(self):
        return self.targets

    def prepare_all(self) -> None:
        pass

    def __call__(self, params: dict) -> dict[str, float]:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        y1, y2 = self.f(params)
        return {self.targets[0].id: y1, self.targets[1].id: y2}


def spec(**kw) -> CalibrationSpec:
    return CalibrationSpec(**{"events": ["2025-10-10"], "fit": list(TRUTH), "samples": 40, "generations": 4, "seed": 1, **kw})


def test_fake_simulator_recovers_known_parameters_inside_90_band(tmp_path):
    res = calibrate(spec(), tmp_path / "run", model=FakeSimulator())
    for name, truth in TRUTH.items():
        lo, hi = res.bands[name]
        assert lo <= truth <= hi, (name, lo, hi)
    # the data narrowed the prior (uniform 0.5-2 and 0-3)
    assert res.bands["leverage_scale"][1] - res.bands["leverage_scale"][0] < 0.5 * 1.5
    eps = [g["epsilon"] for g in res.generations]
    assert len(eps) == 4 and eps[-1] < eps[0]  # epsilon falls generation after generation


def test_outputs_are_usable(tmp_path):
    res = calibrate(spec(samples=12, generations=2), tmp_path / "run", model=FakeSimulator())
    d = tmp_path / "run"
    post = pl.read_parquet(d / "posterior.parquet")
    assert set(post.columns) == {*TRUTH, "weight"} and post.height == 12
    assert post["weight"].sum() == pytest.approx(1.0)
    pred = pl.read_parquet(d / "predictive.parquet")
    assert "synthetic/liquidated_notional_usd" in pred.columns
    cfg = load_config(d / "params.toml")  # usable as --config: the medians only
    assert cfg == pytest.approx(res.medians)
    diag = json.loads((d / "diagnostics.json").read_text())
    g = diag["generations"][-1]
    assert {"epsilon", "acceptance_rate", "effective_sample_size", "distance_median"} <= set(g)
    assert 0 < g["acceptance_rate"] <= 1 and 1 <= g["effective_sample_size"] <= 12
    assert diag["provenance"]["refit"].startswith("backtest calibrate 2025-10-10 --fit leverage_scale")
    assert (d / "calibration.pdf").read_bytes()[:4] == b"%PDF"


def test_resume_continues_the_history(tmp_path):
    d = tmp_path / "run"
    first = calibrate(spec(samples=10, generations=2), d, model=FakeSimulator())
    with pytest.raises(CalibrationError, match="already holds a calibration"):
        calibrate(spec(samples=10, generations=3), d, model=FakeSimulator())
    fake = FakeSimulator()
    more = calibrate(spec(samples=10, generations=3), d, model=fake, resume=True)
    assert len(more.generations) == 3
    assert [g["epsilon"] for g in more.generations[:2]] == [g["epsilon"] for g in first.generations]
    assert fake.calls == more.generations[2]["evaluations"]  # only the new generation was simulated


def test_interrupted_run_resumes(tmp_path):
    d = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # dies inside generation 2 (generation 1 takes >= 10 calls)
        calibrate(spec(samples=10, generations=3), d, model=FakeSimulator(fail_after=14))
    res = calibrate(spec(samples=10, generations=3), d, model=FakeSimulator(), resume=True)
    assert [g["generation"] for g in res.generations] == [0, 1, 2]


def test_resume_refuses_a_different_request(tmp_path):
    d = tmp_path / "run"
    calibrate(spec(samples=10, generations=1), d, model=FakeSimulator())
    with pytest.raises(CalibrationError, match="differs in samples"):
        calibrate(spec(samples=11, generations=2), d, model=FakeSimulator(), resume=True)
    with pytest.raises(CalibrationError, match="holds no calibration"):
        calibrate(spec(), tmp_path / "empty", model=FakeSimulator(), resume=True)


def test_weighted_quantile():
    x = np.array([1.0, 2.0, 3.0, np.nan])
    assert weighted_quantile(x, np.array([1.0, 1.0, 1.0, 1.0]), 0.5)[0] == pytest.approx(2.0)
    assert weighted_quantile(x, np.array([0.0, 0.0, 1.0, 1.0]), 0.5)[0] == pytest.approx(3.0)
    assert math.isnan(weighted_quantile(np.array([np.nan]), np.array([1.0]), 0.5)[0])


def test_synthetic_event_from_the_simulator_recovers_leverage_scale(tmp_path):
    """A synthetic event: the simulator's own summary at a known leverage_scale (BTC of 2025-10-10,
    2,000 positions) is the 'observed' target; the fit's 90 % band holds the known value."""
    from backtest.calibration.targets import event_value
    from backtest.simulate import prepare, simulate_prepared

    sym = ["BTC/USDT:USDT"]
    truth = 1.4
    prep = prepare("2025-10-10", {"n_positions": 2000}, symbols=sym)
    s = simulate_prepared(prep, {"leverage_scale": truth}, mode="replay", summary_only=True).summary
    figs = [{"id": f"synthetic/{m}", "event": "2025-10-10", "what": f"synthetic: simulated {m} at leverage_scale={truth}", "kind": "point",
             "metric": m, "target": event_value(s, m), "uncertainty": 0.03 * event_value(s, m), "venues": ["binanceusdm"]}
            for m in ("liquidated_notional_usd", "peak_minute_notional_usd")]
    f = tmp_path / "synthetic_figures.toml"
    f.write_text(tomli_w.dumps({"figures": figs}))
    sp = CalibrationSpec(events=["2025-10-10"], fit=["leverage_scale"], samples=16, generations=3, seed=2, n_positions=2000,
                         targets_file=str(f), symbols=sym)
    res = calibrate(sp, tmp_path / "run", write=False)
    lo, hi = res.bands["leverage_scale"]
    assert lo <= truth <= hi and hi - lo < 1.0, (lo, hi)


runner = CliRunner()


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--fit", "levrage_scale"], "did you mean 'leverage_scale'"),
        (["--fit", "seed"], "no prior for parameter 'seed'"),
        ([], "give at least one --fit"),
        (["--fit", "leverage_scale", "--executor", "threads"], "unknown executor"),
        (["--fit", "leverage_scale", "--mode", "fast"], "--mode must be replay or cascade"),
        (["--fit", "leverage_scale", "--resume"], "holds no calibration"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, expect):
    r = runner.invoke(app, ["calibrate", "2025-10-10", *args, "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and expect in r.output, r.output
    assert "Traceback" not in r.output


def test_cli_bad_out_and_event_without_targets(tmp_path):
    (tmp_path / "file").write_text("x")
    r = runner.invoke(app, ["calibrate", "2025-10-10", "--fit", "leverage_scale", "--out", str(tmp_path / "file")])
    assert r.exit_code == 2 and "not a folder" in r.output
    r = runner.invoke(app, ["calibrate", "2025-10-10", "--fit", "leverage_scale", "--out", str(tmp_path / "no" / "such")])
    assert r.exit_code == 2 and "does not exist" in r.output
    ctx = tmp_path / "context_only.toml"
    ctx.write_text('[[figures]]\nid = "synthetic/ctx"\nevent = "2025-10-10"\nwhat = "synthetic context"\nkind = "context"\n')
    r = runner.invoke(app, ["calibrate", "2025-10-10", "--fit", "leverage_scale", "--targets", str(ctx), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "has no comparable figure" in r.output, r.output
    assert not (tmp_path / "o" / "abc.db").exists()
