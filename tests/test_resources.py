"""Memory and time estimates before work (issue 15, case 8)."""

from __future__ import annotations

import resource
import time

import pytest
from typer.testing import CliRunner

from backtest import resources as R
from backtest.cli import app
from backtest.errors import ResourceError

runner = CliRunner()


def test_estimate_counts_population_rows_and_workspace():
    from backtest.records import POPULATION_BYTES_PER_ROW

    est = R.simulation_estimate(10**8, 5)
    assert est.bytes == 5 * 10**8 * (POPULATION_BYTES_PER_ROW + R.KERNEL_WORKSPACE_BYTES_PER_POSITION)
    with pytest.raises(ResourceError) as e:
        est.check(available=24 * 2**30, force=False)
    msg = str(e.value)
    gib = 5 * 10**8 * (POPULATION_BYTES_PER_ROW + R.KERNEL_WORKSPACE_BYTES_PER_POSITION) / 2**30
    assert f"{gib:.1f} GiB" in msg and "24.0 GiB available" in msg and "--force" in msg and "\n" not in msg
    est.check(available=24 * 2**30, force=True)  # insisting skips the check
    R.simulation_estimate(10**6, 5).check(available=24 * 2**30, force=False)
    R.simulation_estimate(10**8, 5).check(available=None, force=False) if R.available_bytes() is None else None


def test_available_memory_is_read_from_proc_meminfo():
    free = R.available_bytes()
    assert free is None or 2**20 < free < 2**50


@pytest.mark.parametrize("cmd", [["replay", "2025-10-10"], ["cascade", "2025-10-10"], ["population", "2025-10-10"]])
def test_the_cli_refuses_a_run_that_cannot_fit_before_building_anything(cmd, monkeypatch, tmp_path):
    import backtest.population as pop
    import backtest.simulate as sim

    def boom(*a, **k):
        raise AssertionError("work started")

    monkeypatch.setattr(sim, "load_market", boom)
    monkeypatch.setattr(pop, "build_population", boom)
    monkeypatch.setattr(R, "available_bytes", lambda: 8 * 2**30)
    monkeypatch.setenv("BACKTEST_FORCE", "0")  # restored (unset) after the test, also after --force set it
    out = ["--out", str(tmp_path / ("o.parquet" if cmd[0] == "population" else "o"))]
    res = runner.invoke(app, [*cmd, "--set", "n_positions=100000000", *out])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.output
    assert "would need about" in res.stderr and "8.0 GiB available" in res.stderr and "--force" in res.stderr
    # --force lets it through to the work (which the test stops)
    res = runner.invoke(app, [*cmd, "--set", "n_positions=100000000", "--force", *out])
    # (the test's stand-in raises a non-user error: the CLI shows it as a bug, exit 70)
    assert res.exit_code == 70 and "work started" in res.output


def test_sweep_dry_run_builds_no_population_and_counts_a_huge_grid(monkeypatch, tmp_path):
    import backtest.simulate as sim
    from backtest.sweep import load_sweep
    from backtest.sweep_plan import plan_sweep

    def boom(*a, **k):
        raise AssertionError("a population was built")

    monkeypatch.setattr(sim, "prepare", boom)
    monkeypatch.setattr(sim, "_build_population", boom)
    monkeypatch.setattr(sim, "simulate_prepared", boom)
    monkeypatch.setattr(R, "available_bytes", lambda: 8 * 2**30)
    monkeypatch.setenv("BACKTEST_FORCE", "0")
    f = tmp_path / "big.toml"
    f.write_text('event = "2025-10-10"\n[grid]\n'
                 + "seed = [" + ",".join(str(i) for i in range(1000)) + "]\n"
                 + "leverage_scale = [" + ",".join(f"{0.001 * i + 0.001:.3f}" for i in range(1000)) + "]\n"
                 + "long_share = [" + ",".join(f"{i / 1000:.3f}" for i in range(1000)) + "]\n")
    spec = load_sweep(f)
    assert spec.n_combinations == 10**9
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.monotonic()
    plan = plan_sweep(spec, executor="serial")
    assert time.monotonic() - t < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200_000  # KiB: the grid is never listed
    text = plan.describe()
    assert "1,000,000,000 combinations" in text and "estimated memory" in text and plan.estimate_bytes > 10**9 * R.RESULT_ROW_BYTES
    # running it is refused before anything is built, with the estimate and the free memory
    res = runner.invoke(app, ["sweep", str(f), "--executor", "serial", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "1,000,000,000 combinations" in res.stderr and "available" in res.stderr, res.output
    assert not (tmp_path / "o").exists()


def test_download_of_a_span_needing_too_many_requests_is_refused_before_any_request(tmp_path):
    res = runner.invoke(app, ["download", "binanceusdm", "BTC/USDT:USDT", "--since", "0001-01-01", "--until", "2025-01-01",
                              "--store", str(tmp_path / "st")])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.output
    assert "would need up to" in res.stderr and "requests" in res.stderr and "--force" in res.stderr
    assert not (tmp_path / "st").exists()
    assert R.download_requests(0, 86_400_000, 60_000, 100) == 15
    R.check_download_span(0, 30 * 86_400_000, "1m", ["ohlcv", "funding"])  # a month at 1m is fine
