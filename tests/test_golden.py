"""Golden outputs on the committed data: refactors must not change any number.

``tests/golden/golden.json`` was written by ``python -m tests.golden.make_golden`` from the code
before a refactor; this test re-runs the same commands and compares summaries (less timings),
every Parquet output's schema, height and content digest, a small sweep's results and the report's
pages, headline figures and bytes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from tests.golden import make_golden as G

GOLD = json.loads((G.GOLDEN / "golden.json").read_text())


def _same(name: str, got, want) -> None:
    assert G.dumps(got) == G.dumps(want), f"{name} differs from the golden output"


@pytest.mark.parametrize("run", sorted(G.RUNS))
def test_cli_outputs_match_golden(run, tmp_path):
    got = json.loads(G.dumps(G.run_outputs(run, tmp_path)))
    want = GOLD[run]
    _same(f"{run} summary.json", got["summary"], want["summary"])
    for frame in G.PARQUETS:
        _same(f"{run} {frame}.parquet", got["frames"][frame], want["frames"][frame])


def test_sweep_results_match_golden(tmp_path):
    got = json.loads(G.dumps(G.sweep_outputs(tmp_path)))
    _same("sweep results.parquet", got, GOLD["sweep"])


def test_report_matches_golden(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1760140800")
    got = json.loads(G.dumps(G.report_outputs(tmp_path)))
    want = GOLD["report"]
    assert got["pages"] == want["pages"] and got["pngs"] == want["pngs"]
    _same("report cascade summary", got["cascade"], want["cascade"])
    _same("report replay summary", got["replay"], want["replay"])
    assert got["pdf_sha256"] == want["pdf_sha256"], "report PDF bytes differ from the golden report"
