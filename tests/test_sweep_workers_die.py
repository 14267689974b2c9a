"""A killed sweep leaves no worker behind (issue 15, case 9): SIGKILL or SIGTERM of the parent
(processes executor) ends every worker within seconds and closes the caller's stdout pipe."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")


def children(pid: int) -> set[int]:
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(d))
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_their_parent(tmp_path, sig):
    sweep = tmp_path / "s.toml"
    sweep.write_text('event = "2025-10-10"\nmode = "replay"\n[base]\nn_positions = 20000\n'
                     "[grid]\nseed = [" + ", ".join(str(i) for i in range(400)) + "]\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "BACKTEST_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "backtest.cli", "sweep", str(sweep), "--out", str(tmp_path / "o"),
                             "--workers", "2", "--chunk-size", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            workers = {c for c in children(proc.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")}
            if len(workers) >= 2:
                break
            time.sleep(0.1)
        assert len(workers) >= 2 and proc.poll() is None, "the sweep's workers did not start"
        time.sleep(1.0)  # let them get into their work
        os.kill(proc.pid, sig)
        proc.wait(timeout=10)
        t = time.monotonic()
        while time.monotonic() - t < 5 and any(alive(w) for w in workers):
            time.sleep(0.05)
        assert not any(alive(w) for w in workers), "a worker outlived its parent"
        # the caller's stdout pipe is closed: no process holds its write end any more
        r, _, _ = select.select([proc.stdout], [], [], 5)
        assert r, "stdout still held open"
        proc.stdout.read()
        assert not (tmp_path / "o" / "sweep.json").exists()
    finally:
        proc.kill()
        proc.wait()
        for w in workers | children(proc.pid):
            if alive(w):
                os.kill(w, signal.SIGKILL)
