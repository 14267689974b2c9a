"""Absurd parameter values are refused before any kernel runs (issue 15, case 7), and the
--config reader refuses what it does not understand (case 10)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from backtest.cli import app
from backtest.errors import ConfigError, ParamError
from backtest.params import apply_overrides, load_config
from backtest.population import PopulationParams
from backtest.simulate import SimParams

runner = CliRunner()
GROUPS = [PopulationParams(), SimParams()]


@pytest.mark.parametrize("name,value,needle", [
    ("seed", "1e30", "[0, 2**63 - 1]"),
    ("seed", "-1", "[0, 2**63 - 1]"),
    ("n_positions", "1e12", "positive integer up to 1,000,000,000"),
    ("size_min_usd", "1e-300", "[1, 1e+12] USD"),
    ("open_interest_usd", "1e308", "(0, 1e+13] USD"),
    ("open_interest_usd", "nan", "open_interest_usd must be a positive number"),
    ("insurance_fund_usd", "1e308", "[0, 1e+13] USD"),
    ("insurance_fund_usd", "inf", "[0, 1e+13] USD"),
    ("insurance_fund_usd", "nan", "insurance_fund_usd"),
    ("depth_usd_1pct", "inf", "(0, 1e+13] USD"),
    ("impact_coef", "nan", "impact_coef"),
    ("liquidity_multiplier", "1e300", "(0, 1000]"),
    ("leverage_scale", "1e300", "(0, 100]"),
    ("size_max_usd", "inf", "size_max_usd"),
    ("heatmap_minutes", "100000000", "[1, 10080] minutes"),
])
def test_absurd_values_are_refused_with_their_range(name, value, needle):
    with pytest.raises(ParamError) as e:
        apply_overrides(GROUPS, {name: value})
    assert needle in str(e.value) and name in str(e.value) and "\n" not in str(e.value)


def test_the_cli_refuses_them_before_any_kernel_with_one_line(monkeypatch):
    import backtest.simulate as sim

    def boom(*a, **k):  # would run the kernels
        raise AssertionError("a kernel ran")

    monkeypatch.setattr(sim, "load_market", boom)
    monkeypatch.setattr(sim, "_build_population", boom)
    for s in ("seed=1e30", "size_min_usd=1e-300", "open_interest_usd=1e308", "insurance_fund_usd=1e308"):
        res = runner.invoke(app, ["replay", "2025-10-10", "--set", s, "--out", "/tmp/never"])
        assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "must be" in res.stderr, (s, res.output)


def test_defaults_pass_the_range_checks():
    PopulationParams().validate()
    SimParams().validate()
    apply_overrides(GROUPS, {"impact_half_life_s": "inf", "seed": str(2**63 - 1), "insurance_fund_usd": "0"})


# ---- --config -----------------------------------------------------------------------------
def toml(tmp_path, text: str):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_a_top_level_leverage_mix_table_is_a_parameter(tmp_path):
    cfg = load_config(toml(tmp_path, "seed = 3\nleverage_mix = {10 = 0.5, 20 = 0.5}\n"))
    assert cfg == {"seed": 3, "leverage_mix": {10: 0.5, 20: 0.5}}
    pop, _ = apply_overrides(GROUPS, cfg)
    assert pop.leverage_mix == {10: 0.5, 20: 0.5}
    cfg = load_config(toml(tmp_path, "[params]\nlong_share = 0.6\n[params.leverage_mix]\n5 = 1.0\n"))
    assert cfg == {"long_share": 0.6, "leverage_mix": {5: 1.0}}


@pytest.mark.parametrize("text,needle", [
    ("[param]\nseed = 3\n", "unknown table [param] (did you mean 'params'?)"),
    ("[simulation]\nseed = 3\n", "unknown table [simulation]"),
    ("sede = 3\n", "unknown parameter 'sede' (did you mean 'seed'?)"),
    ("[params]\nlong_shar = 0.5\n", "unknown parameter 'long_shar' in [params] (did you mean 'long_share'?)"),
    ("seed = 1\n[params]\nseed = 2\n", "'seed' is given twice"),
])
def test_unknown_keys_and_tables_are_refused(tmp_path, text, needle):
    p = toml(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert needle in str(e.value) and str(p) in str(e.value)
    res = runner.invoke(app, ["replay", "2025-10-10", "--config", str(p), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and needle in res.stderr
    assert not (tmp_path / "o").exists()
