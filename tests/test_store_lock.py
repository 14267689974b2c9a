"""The store-wide writer lock (issue 15, case 1): concurrent writers end with the union of their
rows exactly once; a waiting writer says so; a refused one exits 2 with one line."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st_

from backtest.errors import StoreLockError
from backtest.store import Store, to_ms
from backtest.store_lock import LocalLock, S3Lock
from tests.fakes.store_writer import bars_for

REPO = Path(__file__).resolve().parent.parent
T0 = to_ms("2024-01-31T23:30:00Z")  # ranges cross a month boundary: two partitions per writer


@pytest.fixture(autouse=True)
def _fresh_announcements():
    import backtest.store_lock as sl

    sl._ANNOUNCED.clear()  # the waiting line is said once per lock and process
    yield


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "BACKTEST_NO_PROGRESS": "1", **extra}


def run_writers(root: Path, ranges: list[tuple[int, int]], chunk: int) -> None:
    procs = [subprocess.Popen([sys.executable, "-m", "tests.fakes.store_writer", str(root), str(T0 + a * 60_000), str(n), str(chunk), str(k)],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for k, (a, n) in enumerate(ranges)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]


def expected_union(ranges: list[tuple[int, int]]) -> list[int]:
    return sorted({T0 + (a + i) * 60_000 for a, n in ranges for i in range(n)})


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
@given(ranges=st_.lists(st_.tuples(st_.integers(0, 25), st_.integers(40, 300)), min_size=2, max_size=3),
       chunk=st_.integers(3, 12))
def test_concurrent_writer_processes_end_with_the_union_exactly_once(tmp_path_factory, ranges, chunk):
    root = tmp_path_factory.mktemp("st")
    run_writers(root, ranges, chunk)
    st = Store(root)
    df = st.read("ohlcv", exchange="binanceusdm", symbol="BTC/USDT:USDT", timeframe="1m")
    ts = df["ts"].cast(pl.Int64).to_list()
    assert ts == expected_union(ranges)  # nothing lost, nothing doubled, sorted
    want = bars_for(ts)
    for col in ("open", "high", "low", "close", "volume"):
        assert df[col].to_list() == want[col].to_list()
    assert st.verify() == []
    assert len(st.partitions()) == 2


def test_a_waiting_writer_says_so_and_a_refused_one_exits_2_naming_the_lock(tmp_path, monkeypatch):
    st = Store(tmp_path)
    st.write("ohlcv", bars_for([T0]), exchange="binanceusdm", timeframe="1m")
    holder = LocalLock(str(tmp_path), timeout=0)
    lines: list[str] = []
    with holder:
        # in-process waiter (flock is per open file, so a second opener waits like another process)
        waiter = LocalLock(str(tmp_path), timeout=0.3, say=lines.append)
        t = time.monotonic()
        with pytest.raises(StoreLockError, match=r"writer lock .*\.writer\.lock is still held by pid \d+ .*BACKTEST_LOCK_TIMEOUT"):
            waiter.__enter__()
        assert 0.25 < time.monotonic() - t < 3
        assert len(lines) == 1 and lines[0].startswith("waiting for the store's writer lock")
        # the CLI: one line on stderr for the wait, one for the refusal, exit 2, nothing written
        csv = tmp_path.parent / "bars.csv"
        csv.write_text("symbol,timestamp,datetime,open,high,low,close,volume\n"
                       + "".join(f"BTCUSDT,{T0 + k * 60_000},2024-01-31T23:3{k}:00Z,1,2,0.5,1.5,10\n" for k in (1, 2)))
        out = subprocess.run([sys.executable, "-m", "backtest.cli", "data", "import-csv", str(csv), "--symbol", "BTC/USDT:USDT",
                              "--timeframe", "1m", "--store", str(tmp_path)],
                             env=_env(BACKTEST_LOCK_TIMEOUT="0.5"), capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, out.stderr
        err = out.stderr.strip().splitlines()
        assert len(err) == 2 and "waiting for the store's writer lock" in err[0], out.stderr
        assert err[1].startswith("error: the store's writer lock") and "Traceback" not in out.stderr
    assert Store(tmp_path).read("ohlcv").height == 1
    # released: a writer now goes through at once
    out = subprocess.run([sys.executable, "-m", "backtest.cli", "data", "import-csv", str(csv), "--symbol", "BTC/USDT:USDT",
                          "--timeframe", "1m", "--store", str(tmp_path)], env=_env(BACKTEST_LOCK_TIMEOUT="0.5"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "waiting" not in out.stderr, out.stderr
    assert Store(tmp_path).read("ohlcv").height == 3


def test_a_killed_writer_does_not_block_the_next_one(tmp_path):
    code = f"from backtest.store_lock import LocalLock; import time; l = LocalLock({str(tmp_path)!r}); l.__enter__(); print('held', flush=True); time.sleep(60)"
    p = subprocess.Popen([sys.executable, "-c", code], env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(StoreLockError):
            LocalLock(str(tmp_path), timeout=0.1, say=lambda m: None).__enter__()
        p.kill()
        p.wait()
        with LocalLock(str(tmp_path), timeout=2, say=lambda m: None):
            pass
    finally:
        p.kill()
        p.wait()


def test_bad_lock_timeout_setting_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKTEST_LOCK_TIMEOUT", "soon")
    with pytest.raises(StoreLockError, match="BACKTEST_LOCK_TIMEOUT='soon' is not a number"):
        Store(tmp_path).write("ohlcv", bars_for([T0]), exchange="binanceusdm", timeframe="1m")


# ---- S3: a lease object created with a conditional put ------------------------------------
@pytest.fixture
def s3():
    moto = pytest.importorskip("moto")
    import boto3

    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="locks")
        yield client


def test_s3_lease_excludes_a_second_writer_and_is_released(s3):
    a = S3Lock(s3, "locks", "p/.writer.lock", timeout=0, say=lambda m: None)
    msgs: list[str] = []
    b = S3Lock(s3, "locks", "p/.writer.lock", timeout=0.2, say=msgs.append)
    with a:
        with pytest.raises(StoreLockError, match=r"s3://locks/p/\.writer\.lock is still held by pid"):
            b.__enter__()
        assert msgs and "waiting for the store's writer lock s3://locks/p/.writer.lock" in msgs[0]
    with b:  # released by a
        assert s3.get_object(Bucket="locks", Key="p/.writer.lock")["Body"].read()
    assert s3.list_objects_v2(Bucket="locks").get("KeyCount", 0) == 0


def test_s3_expired_lease_of_a_killed_writer_is_taken_over(s3):
    import json

    s3.put_object(Bucket="locks", Key="p/.writer.lock", Body=json.dumps({"owner": "dead", "expires_ms": 1}).encode())
    with S3Lock(s3, "locks", "p/.writer.lock", timeout=2, say=lambda m: None) as lk:
        info = json.loads(s3.get_object(Bucket="locks", Key="p/.writer.lock")["Body"].read())
        assert info["owner"] == lk.owner
    # a live lease is respected
    s3.put_object(Bucket="locks", Key="p/.writer.lock", Body=json.dumps({"owner": "alive", "expires_ms": 2**62}).encode())
    with pytest.raises(StoreLockError, match="held by alive"):
        S3Lock(s3, "locks", "p/.writer.lock", timeout=0.1, say=lambda m: None).__enter__()


def test_s3_lease_is_renewed_while_held(s3):
    import json

    lk = S3Lock(s3, "locks", "p/.writer.lock", timeout=0, lease_s=0.3, say=lambda m: None)
    with lk:
        first = json.loads(s3.get_object(Bucket="locks", Key="p/.writer.lock")["Body"].read())["expires_ms"]
        time.sleep(0.5)
        later = json.loads(s3.get_object(Bucket="locks", Key="p/.writer.lock")["Body"].read())["expires_ms"]
        assert later > first
        with pytest.raises(StoreLockError):  # not expired while its holder lives
            S3Lock(s3, "locks", "p/.writer.lock", timeout=0.4, say=lambda m: None).__enter__()


def test_threads_of_one_process_share_the_store_lock_safely(tmp_path):
    st = Store(tmp_path)
    ranges = [(0, 200), (100, 200), (150, 100)]

    def go(a, n):
        ts = [T0 + (a + i) * 60_000 for i in range(n)]
        for i in range(0, n, 7):
            st.write("ohlcv", bars_for(ts[i:i + 7]), exchange="binanceusdm", timeframe="1m")

    ths = [threading.Thread(target=go, args=r) for r in ranges]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert st.read("ohlcv")["ts"].cast(pl.Int64).to_list() == expected_union(ranges)
