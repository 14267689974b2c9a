"""Issue 13 point 4: the package defaults are the posterior medians of the committed fit over the
training events (data/calibration/defaults.toml), carried as literals in backtest/fitted_defaults.py."""

from __future__ import annotations

import dataclasses
import importlib.util
import tomllib
from pathlib import Path

import pytest

from backtest import fitted_defaults
from backtest.population_params import FALLBACK_LONG_SHARE, PARAM_SOURCES, PopulationParams

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = ROOT / "data" / "calibration" / "defaults.toml"


def _script():
    spec = importlib.util.spec_from_file_location("refit_defaults", ROOT / "scripts" / "refit_defaults.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_module_carries_the_committed_fit():
    doc = tomllib.loads(DEFAULTS.read_text(encoding="utf-8"))
    assert fitted_defaults.FITTED == pytest.approx(doc["params"], rel=0, abs=0)
    assert set(fitted_defaults.FITTED) == set(doc["calibration"]["fitted"])
    assert list(fitted_defaults.FITTED_EVENTS) == doc["calibration"]["events"]
    assert "2025-10-10" not in fitted_defaults.FITTED_EVENTS  # held out for validation


def test_population_defaults_are_the_fitted_medians():
    fields = {f.name: f.default for f in dataclasses.fields(PopulationParams)}
    for name, value in fitted_defaults.FITTED.items():
        if name == "long_share":  # None = the stored ratio; the fitted value is the fallback
            assert fields[name] is None and FALLBACK_LONG_SHARE == value
        elif name in fields:
            assert fields[name] == value, name
        assert PARAM_SOURCES[name].startswith("fitted: "), name


def test_the_script_writes_a_module_that_reads_back(tmp_path):
    text = _script().write_module({"leverage_scale": 0.8125, "long_share": 0.55}, ["2024-08-05"], "2026-12-02 00:00 UTC", "abc1234")
    ns: dict = {}
    exec(compile(text, "fitted_defaults.py", "exec"), ns)
    assert ns["FITTED"] == {"leverage_scale": 0.8125, "long_share": 0.55}
    assert ns["FITTED_EVENTS"] == ("2024-08-05",) and ns["FITTED_COMMIT"] == "abc1234"


def test_adopting_a_missing_run_is_one_line(tmp_path, capsys, monkeypatch):
    mod = _script()
    monkeypatch.setattr("sys.argv", ["refit_defaults.py", "--from", str(tmp_path / "nope")])
    assert mod.main() == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "params.toml" in err
