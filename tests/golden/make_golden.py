"""Write the golden outputs that guard refactors (issue 10: "written first, from today's main").

Run from the project root: ``python -m tests.golden.make_golden``. It runs the real CLI on the
committed data (smaller populations than the defaults, so the test stays fast) and records, for
each run, ``summary.json`` (less its timings) and a digest of every Parquet output: its schema,
height and the SHA-256 of its CSV text (polars writes floats in shortest round-trip form, so equal
digests mean equal values bit for bit). Also a small sweep's ``results.parquet`` and the report's
page count and headline figures. ``tests/test_golden.py`` re-runs the same commands and compares.
Re-bless only for an intended change of behaviour, and say so in the commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
SETS = ["--set", "n_positions=40000", "--set", "seed=3"]
RUNS = {
    "replay": ["replay", "2025-10-10", *SETS],
    "cascade": ["cascade", "2025-10-10", *SETS],
    "cascade_shock": ["cascade", "2025-10-10", "--shock=-5%@2025-10-10T21:00Z", *SETS],
}
PARQUETS = ("bars", "liquidations", "clusters", "liq_map", "heatmap")
SWEEP_TOML = """\
event = "2025-10-10"
mode = "cascade"
symbols = ["BTC/USDT:USDT", "ETH/USDT:USDT"]

[base]
seed = 5
n_positions = 20000

[grid]
leverage_scale = [0.5, 1.5]
depth_multiplier = [0.5, 2.0]
"""
#: sweep columns that measure time, not the model
VOLATILE = re.compile(r"(^|_)(seconds|time|timing|elapsed|wall)", re.I)


def backtest(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("backtest")
    env = {**os.environ, "MPLBACKEND": "Agg", "SOURCE_DATE_EPOCH": "1760140800"}
    p = subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd or ROOT, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"backtest {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p


def frame_digest(df: pl.DataFrame) -> dict:
    return {
        "schema": {k: str(v) for k, v in df.schema.items()},
        "height": df.height,
        "sha256": hashlib.sha256(df.write_csv().encode()).hexdigest(),
    }


def clean_summary(s: dict) -> dict:
    s = dict(s)
    s.pop("timings_s", None)
    return s


def run_outputs(name: str, work: Path) -> dict:
    out = work / name
    backtest(*RUNS[name], "--out", str(out))
    summary = clean_summary(json.loads((out / "summary.json").read_text()))
    frames = {p: frame_digest(pl.read_parquet(out / f"{p}.parquet")) for p in PARQUETS}
    return {"summary": summary, "frames": frames}


def sweep_outputs(work: Path) -> dict:
    toml = work / "sweep.toml"
    toml.write_text(SWEEP_TOML)
    out = work / "sweep"
    backtest("sweep", str(toml), "--executor", "serial", "--out", str(out))
    df = pl.read_parquet(out / "results.parquet")
    df = df.select([c for c in df.columns if not VOLATILE.search(c)])
    return {"columns": df.columns, "frame": frame_digest(df), "rows": df.to_dicts()}


def report_outputs(work: Path) -> dict:
    pdf = work / "r.pdf"
    from backtest.report.build import build_report

    os.environ["SOURCE_DATE_EPOCH"] = "1760140800"
    res = build_report("2025-10-10", pdf, overrides={"n_positions": 40000, "seed": 3}, progress=False)
    data = pdf.read_bytes()
    pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    return {
        "pages": pages,
        "pngs": [p.name for p in res.pngs],
        "cascade": clean_summary(res.summary),
        "replay": clean_summary(res.replay_summary),
        "pdf_sha256": hashlib.sha256(data).hexdigest(),
        "png_sha256": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in res.pngs},
    }


def collect() -> dict:
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        got = {name: run_outputs(name, work) for name in RUNS}
        got["sweep"] = sweep_outputs(work)
        got["report"] = report_outputs(work)
    return got


def dumps(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, default=str)


if __name__ == "__main__":
    (GOLDEN / "golden.json").write_text(dumps(collect()) + "\n")
    print(f"wrote {GOLDEN / 'golden.json'}")
