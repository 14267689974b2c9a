"""Sweeps: file validation, identical results on serial / processes / dask, clean failures.

The executor test runs the real simulation API when ``backtest.simulate`` is importable, and the
FAKE stand-in of ``tests/fakes/fakesim.py`` otherwise (it says which in its id).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from backtest.sweep import SweepError, load_sweep, parse_sweep, run_sweep
from backtest.sweep_plan import plan_sweep
from tests.fakes import fakesim as fake

ROOT = Path(__file__).resolve().parents[1]
HAVE_SIM = importlib.util.find_spec("backtest.simulate") is not None
BACKTEST = [sys.executable, "-m", "backtest.cli"]


def _real_sim():
    import backtest.simulate as simulate

    return simulate


def _small_real_spec(sim):
    """A cheap grid for the real kernels: small population, two values of two parameters."""
    from backtest.sweep import param_groups

    names = {f for g in param_groups(sim) for f in g.__dataclass_fields__}
    base = {"seed": 3}
    if "n_positions" in names:
        base["n_positions"] = 20_000
    y = "depth_multiplier" if "depth_multiplier" in names else "impact_coef"
    raw = {"event": "2025-10-10", "mode": "cascade", "base": base, "grid": {"leverage_scale": [0.8, 1.2], y: [0.5, 1.0, 2.0]}}
    return parse_sweep(raw, sim=sim)


def _fake_spec():
    raw = {"event": "2025-10-10", "base": {"seed": 5}, "grid": {"leverage_scale": [0.5, 1.0, 1.5], "depth_multiplier": [0.5, 2.0], "seed": [1, 2]}}
    return parse_sweep(raw, sim=fake)


# ---------------------------------------------------------------------------------------------
# the sweep file
# ---------------------------------------------------------------------------------------------
def test_example_file_parses_and_counts():
    spec = load_sweep(ROOT / "examples" / "sweep_2025-10-10.toml", sim=fake)
    assert spec.n_combinations == 4 * 3 * 2 == len(spec.combinations())
    assert (spec.x, spec.y, spec.metric) == ("leverage_scale", "depth_multiplier", "liquidated_notional_usd")
    assert spec.combinations()[1] == {"leverage_scale": 0.5, "depth_multiplier": 0.5, "long_share": 0.75}


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"event": "1999-01-01", "grid": {"seed": [1]}}, "unknown event '1999-01-01'"),
        ({"event": "2025-10-10", "grid": {"levrage_scale": [1.0]}}, "unknown parameter 'levrage_scale' (did you mean 'leverage_scale'?)"),
        ({"event": "2025-10-10", "base": {"long_shares": 0.5}, "grid": {"seed": [1]}}, "did you mean 'long_share'?"),
        ({"event": "2025-10-10", "grid": {}}, "the grid is empty"),
        ({"event": "2025-10-10"}, "the grid is empty"),
        ({"event": "2025-10-10", "grid": {"seed": []}}, "seed has no values"),
        ({"event": "2025-10-10", "grid": {"seed": [1, 1]}}, "lists a value twice"),
        ({"event": "2025-10-10", "grid": {"long_share": [1.5]}}, "long_share must be"),
        ({"event": "2025-10-10", "grid": {"seed": [1]}, "output": {"metric": "liquidated_usd"}}, "not a summary metric"),
        ({"event": "2025-10-10", "grid": {"seed": [1], "oi_scale": [1.0]}, "output": {"x": "leverage_scale"}}, "not a grid parameter"),
        ({"event": "2025-10-10", "mode": "explode", "grid": {"seed": [1]}}, "mode 'explode'"),
        ({"event": "2025-10-10", "gird": {"seed": [1]}}, "unknown key 'gird' (did you mean 'grid'?)"),
    ],
)
def test_bad_sweep_files_are_refused_with_one_line(raw, message):
    with pytest.raises(Exception) as e:
        parse_sweep(raw, sim=fake)
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    from backtest.errors import UserError

    assert isinstance(e.value, UserError)


@pytest.mark.skipif(not HAVE_SIM, reason="needs backtest.simulate")
@pytest.mark.parametrize(
    "shock, message",
    [
        ("-5%@2025-10-10T21:00", 'time of shock \'2025-10-10T21:00\' has no zone; add Z for UTC: shock = "-5%@2025-10-10T21:00Z"'),
        ("-5@2025-10-10T21:00Z", "needs a percent sign"),
        ("-5%@2025-10-12T21:00Z", "outside the event window"),
    ],
)
def test_bad_shock_is_refused_when_the_file_is_read(shock, message):
    with pytest.raises(SweepError) as e:
        parse_sweep({"event": "2025-10-10", "shock": shock, "grid": {"seed": [1, 2]}}, sim=fake)
    assert message in str(e.value)
    with pytest.raises(SweepError, match='a shock needs mode = "cascade"'):
        parse_sweep({"event": "2025-10-10", "mode": "replay", "shock": "-5%@2025-10-10T21:00Z", "grid": {"seed": [1, 2]}}, sim=fake)
    assert parse_sweep({"event": "2025-10-10", "shock": "-5%@2025-10-10T21:00Z", "grid": {"seed": [1, 2]}}, sim=fake).shock == "-5%@2025-10-10T21:00Z"


def test_grid_values_are_coerced_to_the_parameter_type():
    spec = parse_sweep({"event": "2025-10-10", "grid": {"leverage_scale": [1, 2]}}, sim=fake)
    assert spec.grid["leverage_scale"] == [1.0, 2.0]
    assert all(isinstance(v, float) for v in spec.grid["leverage_scale"])


@pytest.mark.skipif(not HAVE_SIM, reason="needs backtest.simulate")
def test_grid_takes_auto_for_derived_parameters_and_refuses_booleans():
    spec = parse_sweep({"event": "2025-10-10", "base": {"long_share": 0.7}, "grid": {"long_share": ["auto", 0.6]}})
    assert spec.grid["long_share"] == [None, 0.6]
    with pytest.raises(SweepError, match="cannot read True as a number"):
        parse_sweep({"event": "2025-10-10", "grid": {"long_share": [True, 0.6]}})
    with pytest.raises(SweepError, match=r"\[base\] .*stop_distance .* between 0 and 1"):
        parse_sweep({"event": "2025-10-10", "base": {"stop_distance": 2}, "grid": {"seed": [1, 2]}})


def test_a_folder_is_not_a_sweep_file(tmp_path):
    with pytest.raises(SweepError, match=r"is a folder; a sweep file \(TOML\) is expected"):
        load_sweep(tmp_path, sim=fake)
    r = _cli("sweep", tmp_path, "--dry-run")
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: sweep file {tmp_path} is a folder; a sweep file (TOML) is expected, e.g. examples/sweep_2025-10-10.toml"


# ---------------------------------------------------------------------------------------------
# executors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["real" if HAVE_SIM else "FAKE-simulate"])
def test_identical_results_on_serial_processes_and_dask(which, tmp_path):
    sim = _real_sim() if which == "real" else fake
    spec = _small_real_spec(sim) if which == "real" else _fake_spec()
    tables = {}
    for ex in ("serial", "processes", "dask"):
        # dask: a LocalCluster of 2 single-threaded worker processes; chunk size 2 -> several tasks
        res = run_sweep(spec, executor=ex, workers=2, chunk_size=2, out=tmp_path / ex, sim=sim, progress=False)
        assert res.table.height == spec.n_combinations
        assert res.workers == (1 if ex == "serial" else 2)
        tables[ex] = res.table
        assert (tmp_path / ex / "results.parquet").exists() and (tmp_path / ex / "heatmaps.pdf").exists()
    key = ["combo", *spec.grid]
    assert tables["serial"].columns[: len(key)] == key
    assert tables["serial"]["combo"].to_list() == list(range(spec.n_combinations))
    assert tables["serial"].equals(tables["processes"])
    assert tables["serial"].equals(tables["dask"])
    on_disk = pl.read_parquet(tmp_path / "dask" / "results.parquet")
    assert on_disk.equals(tables["serial"])
    # different parameters give different results (the sweep is not returning one answer)
    assert tables["serial"]["liquidated_notional_usd"].n_unique() > 1


def test_processes_receive_the_prepared_state_once(monkeypatch, tmp_path):
    """The prepared state is pickled once (initializer argument), not once per chunk."""
    import pickle

    import backtest.sweep as sw

    calls = []
    real_dumps = pickle.dumps

    def counting_dumps(obj, *a, **k):
        if isinstance(obj, fake.FakePrepared):
            calls.append(1)
        return real_dumps(obj, *a, **k)

    monkeypatch.setattr(sw.pickle, "dumps", counting_dumps)
    spec = _fake_spec()
    res = run_sweep(spec, executor="processes", workers=2, chunk_size=1, sim=fake, progress=False)
    assert res.table.height == spec.n_combinations == 12
    assert len(calls) == 1


def test_param_named_like_a_metric_keeps_both_columns():
    spec = parse_sweep({"event": "2025-10-10", "grid": {"long_share": [0.55, 0.8]}}, sim=fake)
    t = run_sweep(spec, executor="serial", sim=fake, progress=False).table
    assert t["long_share"].to_list() == [0.55, 0.8]
    assert "result_long_share" in t.columns and t["result_long_share"].to_list() != [0.55, 0.8]


def test_dry_run_counts_and_estimates():
    plan = plan_sweep(_fake_spec(), executor="processes", workers=2, sim=fake)
    text = plan.describe()
    assert plan.combinations == 12 and plan.chunks >= 2
    assert "12 combinations" in text and "estimated time" in text and "estimated memory" in text
    assert plan.estimate_s > 0 and plan.estimate_bytes > plan.prepared_bytes > 0


def test_unreachable_scheduler_fails_fast_and_writes_nothing(tmp_path):
    spec = _fake_spec()
    t = time.perf_counter()
    with pytest.raises(SweepError, match=r"cannot reach the dask scheduler at tcp://127.0.0.1:9 within 5 s"):
        run_sweep(spec, executor="dask", scheduler="tcp://127.0.0.1:9", out=tmp_path / "out", sim=fake, progress=False)
    assert time.perf_counter() - t < 15
    assert not (tmp_path / "out").exists()


def test_output_folder_is_created_like_replay_out_but_not_over_a_file(tmp_path):
    """The --out folder itself may be created, but only inside a folder that exists (as for
    replay/cascade --out); a missing parent or a file in the way is refused before any work."""
    res = run_sweep(_fake_spec(), executor="serial", out=tmp_path / "out", sim=fake, progress=False)
    assert (tmp_path / "out" / "results.parquet") in res.files
    with pytest.raises(SweepError, match=r"folder \S*new.deeper does not exist; create it first"):
        run_sweep(_fake_spec(), executor="serial", out=tmp_path / "new" / "deeper" / "out", sim=fake, progress=False)
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(SweepError, match="is a file, not a folder"):
        run_sweep(_fake_spec(), executor="serial", out=tmp_path / "file" / "out", sim=fake, progress=False)
    with pytest.raises(SweepError, match="exists and is not a folder"):
        run_sweep(_fake_spec(), executor="serial", out=tmp_path / "file", sim=fake, progress=False)
    assert (tmp_path / "file").read_text() == "x"


@pytest.fixture
def silent_listener():
    """A TCP listener on 127.0.0.1 that accepts connections and never says a word (not dask)."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns, stop = [], threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"tcp://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join(5)
    for c in conns:
        c.close()
    srv.close()


def test_silent_scheduler_address_fails_within_the_deadline(tmp_path, silent_listener):
    """A listener that accepts but never speaks dask: dask's own timeout does not cover the
    handshake, the sweep's hard deadline does."""
    t = time.perf_counter()
    with pytest.raises(SweepError, match=r"cannot reach the dask scheduler at tcp://127.0.0.1:\d+ within 1 s \(no dask handshake\)"):
        run_sweep(_fake_spec(), executor="dask", scheduler=silent_listener, out=tmp_path / "out", sim=fake, progress=False,
                  connect_timeout=1)
    assert time.perf_counter() - t < 10
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not HAVE_SIM, reason="needs backtest.simulate")
def test_cli_silent_scheduler_exits_2_and_leaves_out_alone(tmp_path, silent_listener):
    f = _write(tmp_path, 'event = "2025-10-10"\n[grid]\nseed = [1, 2]\n')
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results")
    t = time.perf_counter()
    r = _cli("sweep", f, "--executor", "dask", "--scheduler", silent_listener, "--out", out)
    assert time.perf_counter() - t < 20
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the dask scheduler" in lines[0] and "within 5 s" in lines[0], r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"] and (out / "keep.txt").read_text() == "earlier results"
    r = _cli("sweep", f, "--executor", "dask", "--scheduler", silent_listener, "--connect-timeout", "0", "--out", out)
    assert r.returncode == 2 and "connect timeout" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_scheduler_answering_garbage_is_one_line(tmp_path):
    """A listener that answers bytes that are not dask's protocol (it made numpy raise before)."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns = []

    def serve():
        try:
            while True:
                c = srv.accept()[0]
                conns.append(c)
                c.sendall(b"\xff" * 64 + b"HTTP/1.0 200 OK\r\n\r\n" * 50)
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        t = time.perf_counter()
        with pytest.raises(SweepError, match=r"dask scheduler at tcp://127.0.0.1:\d+"):
            run_sweep(_fake_spec(), executor="dask", scheduler=f"tcp://127.0.0.1:{srv.getsockname()[1]}", out=tmp_path / "out",
                      sim=fake, progress=False, connect_timeout=2)
        assert time.perf_counter() - t < 10
        assert not (tmp_path / "out").exists()
    finally:
        srv.close()
        for c in conns:
            c.close()


def test_sweep_pdf_is_reproducible(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1760140800")
    spec = _fake_spec()
    a = run_sweep(spec, executor="serial", out=tmp_path / "a", sim=fake, progress=False)
    b = run_sweep(spec, executor="serial", out=tmp_path / "b", sim=fake, progress=False)
    assert (tmp_path / "a" / "heatmaps.pdf").read_bytes() == (tmp_path / "b" / "heatmaps.pdf").read_bytes()
    assert a.table.equals(b.table)
    meta = json.loads((tmp_path / "a" / "sweep.json").read_text())
    assert meta["combinations"] == 12 and meta["grid"]["seed"] == [1, 2]


# ---------------------------------------------------------------------------------------------
# command line (user errors: one line, exit 2)
# ---------------------------------------------------------------------------------------------
def _cli(*args, cwd=ROOT):
    return subprocess.run([*BACKTEST, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def _write(tmp_path, text):
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, extra, message",
    [
        ('event = "2025-10-10"\n[grid]\n', [], "the grid is empty"),
        ('event = "nope"\n[grid]\nseed = [1]\n', [], "unknown event 'nope'"),
        ('event = "2025-10-10"\n[grid]\nseed = [1, 2]\n', ["--executor", "dask", "--scheduler", "tcp://127.0.0.1:9", "--out", "OUT"], "cannot reach the dask scheduler"),
        ('event = "2025-10-10"\n[grid]\nseed = [1]\n', ["--out", "FILE/x"], "is a file, not a folder"),
        ('event = "2025-10-10"\n[grid]\nseed = [1]\n', ["--out", "OUT/missing/deeper/sw"], "does not exist; create it first"),
        ('event = "2025-10-10"\n[grid]\nseed = [1]\n', ["--executor", "threads", "--out", "OUT"], "unknown executor 'threads'"),
    ],
)
def test_cli_user_errors(tmp_path, text, extra, message):
    needs_sim = "--scheduler" in extra or "threads" in extra
    if needs_sim and not HAVE_SIM:
        pytest.skip("needs backtest.simulate")
    f = _write(tmp_path, text)
    (tmp_path / "file").write_text("not a folder")
    extra = [str(tmp_path / "out") if a == "OUT" else str(tmp_path / "file" / "x") if a == "FILE/x"
             else str(tmp_path / "out" / "missing" / "deeper" / "sw") if a == "OUT/missing/deeper/sw" else a for a in extra]
    t = time.perf_counter()
    r = _cli("sweep", f, *extra)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert time.perf_counter() - t < 30
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not HAVE_SIM, reason="needs backtest.simulate")
def test_cli_unknown_parameter_suggests(tmp_path):
    f = _write(tmp_path, 'event = "2025-10-10"\n[grid]\nleverage_scal = [1.0, 2.0]\n')
    r = _cli("sweep", f, "--dry-run")
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {f}: [grid] unknown parameter 'leverage_scal' (did you mean 'leverage_scale'?)"


@pytest.mark.skipif(not HAVE_SIM, reason="needs backtest.simulate")
def test_cli_dry_run(tmp_path):
    f = _write(tmp_path, 'event = "2025-10-10"\n[base]\nn_positions = 20000\n[grid]\nleverage_scale = [0.5, 1.0, 2.0]\nseed = [1, 2]\n')
    r = _cli("sweep", f, "--dry-run", "--executor", "serial")
    assert r.returncode == 0, r.stderr
    assert "6 combinations" in r.stdout and "estimated time" in r.stdout and "estimated memory" in r.stdout


def test_dask_on_a_running_scheduler_by_address(tmp_path):
    """--scheduler ADDRESS: connect to a cluster that is already running (here an in-process one)."""
    from distributed import LocalCluster

    spec = _fake_spec()
    serial = run_sweep(spec, executor="serial", sim=fake, progress=False).table
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        res = run_sweep(spec, executor="dask", scheduler=cluster.scheduler_address, out=tmp_path / "o", sim=fake, progress=False)
        assert len(cluster.scheduler.workers) == 2  # the cluster outlives the sweep: only our client closed
    assert res.workers == 2
    assert res.table.equals(serial)
