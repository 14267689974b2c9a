"""The PDF report: pages, PNGs, metadata, byte-reproducibility, user errors.

Most tests draw the report from the FAKE simulation stand-in (``tests/fakes/fakesim.py``)
so that they check the report code alone, fast; the end-to-end tests run the real command on
the committed data when ``backtest.simulate`` is importable.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backtest.errors import UserError
from backtest.report.build import build_report
from tests.fakes import fakesim as fake

ROOT = Path(__file__).resolve().parents[1]
HAVE_SIM = importlib.util.find_spec("backtest.simulate") is not None
SDE = "1760140800"  # 2025-10-11T00:00:00Z


def pdf_pages(data: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page[^s]", data))


def test_report_pages_pngs_and_metadata(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", SDE)
    seen = []
    res = build_report("2025-10-10", tmp_path / "r.pdf", sim=fake, progress=lambda *a: seen.append(a))
    data = res.pdf.read_bytes()
    names = [p.name for p in res.pngs]
    assert pdf_pages(data) == len(res.pngs) >= 9
    assert names[0] == "01-title.png" and "07-sensitivity.png" in names and "05-liquidation-map.png" in names
    assert all(p.parent == tmp_path / "r" and p.stat().st_size > 10_000 for p in res.pngs)
    assert b"/Title (Liquidation-cascade backtest: October 10-11, 2025" in data
    assert b"/CreationDate (D:20251011000000Z)" in data
    assert seen and seen[0][0].startswith("loading")
    assert not list(tmp_path.glob(".*tmp*"))  # temporary files renamed or removed


def test_report_is_byte_reproducible(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", SDE)
    a = build_report("2025-10-10", tmp_path / "a.pdf", sim=fake, progress=False)
    b = build_report("2025-10-10", tmp_path / "b.pdf", sim=fake, progress=False)
    assert a.pdf.read_bytes() == b.pdf.read_bytes()
    for pa, pb in zip(a.pngs, b.pngs):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1800000000")
    c = build_report("2025-10-10", tmp_path / "c.pdf", sim=fake, progress=False, sensitivity=False)
    assert b"/CreationDate (D:20270115" in c.pdf.read_bytes()
    # a report without the sensitivity page, written over one with it: the old page PNG goes
    d = build_report("2025-10-10", tmp_path / "a.pdf", sim=fake, progress=False, sensitivity=False)
    assert sorted(p.name for p in (tmp_path / "a").glob("*.png")) == sorted(p.name for p in d.pngs)
    assert "07-sensitivity.png" not in [p.name for p in d.pngs]


def test_report_date_without_source_date_epoch_comes_from_the_event(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    r = build_report("2025-10-10", tmp_path / "r.pdf", sim=fake, progress=False, sensitivity=False)
    assert b"/CreationDate (D:20251011000000Z)" in r.pdf.read_bytes()  # the event window's end, not now()


@pytest.mark.parametrize(
    "event, out, message",
    [
        ("1999-01-01", "r.pdf", "unknown event '1999-01-01'"),
        ("2025-10-10", "missing/r.pdf", "does not exist"),
        ("2025-10-10", "r.png", "must end in .pdf"),
    ],
)
def test_report_user_errors(tmp_path, event, out, message):
    with pytest.raises(UserError, match=re.escape(message)):
        build_report(event, tmp_path / out, sim=fake, progress=False)
    assert not (tmp_path / "missing").exists()
    assert not list(tmp_path.iterdir())


def test_default_output_goes_to_reports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = build_report("2025-10-10", None, sim=fake, progress=False, sensitivity=False)
    assert r.pdf == Path("reports/2025-10-10.pdf") and r.pdf.exists()
    assert (tmp_path / "reports" / "2025-10-10" / "01-title.png").exists()


# ---------------------------------------------------------------------------------------------
# the command line, on the committed data (real simulation)
# ---------------------------------------------------------------------------------------------
def _cli(*args, env_extra=None, cwd=ROOT):
    import os

    env = {**os.environ, "SOURCE_DATE_EPOCH": SDE, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "backtest.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.mark.parametrize(
    "args, message",
    [
        (["report", "1999-01-01"], "unknown event '1999-01-01'"),
        (["report", "2025-10-10", "-o", "MISSING/r.pdf"], "does not exist"),
        (["report", "2025-10-10", "--set", "levrage_scale=2"], "unknown parameter 'levrage_scale' (did you mean 'leverage_scale'?)"),
    ],
)
def test_cli_report_user_errors(tmp_path, args, message):
    if "--set" in args and not HAVE_SIM:
        pytest.skip("needs backtest.simulate")
    args = [str(tmp_path / "missing" / "r.pdf") if a == "MISSING/r.pdf" else a for a in args]
    r = _cli(*args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr


@pytest.mark.skipif(not HAVE_SIM, reason="needs backtest.simulate")
def test_cli_report_end_to_end_and_reproducible(tmp_path):
    """The README's report, on the committed data: every page drawn, PNGs beside it, same bytes
    twice (small population and no sensitivity page for the second pair, to stay quick)."""
    r = _cli("report", "2025-10-10", "-o", tmp_path / "full.pdf")
    assert r.returncode == 0, r.stderr
    data = (tmp_path / "full.pdf").read_bytes()
    pngs = sorted((tmp_path / "full").glob("*.png"))
    assert pdf_pages(data) == len(pngs) >= 9
    assert "wrote" in r.stdout
    a = _cli("report", "2025-10-10", "-o", tmp_path / "a.pdf", "--set", "n_positions=50000", "--no-sensitivity")
    b = _cli("report", "2025-10-10", "-o", tmp_path / "b.pdf", "--set", "n_positions=50000", "--no-sensitivity")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()


def test_load_config_reads_flat_or_params_table(tmp_path):
    from backtest.params import load_config

    a = tmp_path / "a.toml"
    a.write_text("long_share = 0.7\nseed = 3\n")
    b = tmp_path / "b.toml"
    b.write_text("[params]\nleverage_scale = 1.5\n")
    assert load_config(a) == {"long_share": 0.7, "seed": 3}
    assert load_config(b) == {"leverage_scale": 1.5}
    assert load_config(None) == {}
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("x = = 1\n")
    with pytest.raises(UserError, match="does not parse"):
        load_config(bad)


def test_overrides_reach_the_simulation(tmp_path):
    r = build_report("2025-10-10", tmp_path / "r.pdf", overrides={"long_share": 0.8, "seed": 11}, sim=fake, progress=False, sensitivity=False)
    assert r.summary["params"]["long_share"] == 0.8 and r.summary["seed"] == 11


@pytest.mark.parametrize("n_notes", [1, 8, 40, 400])
def test_notes_never_run_past_the_bottom_of_the_page(n_notes):
    """However many notes a simulation leaves, the appendix text stays between its top and bottom
    (more notes: two columns, then a smaller font, then cut at the bottom edge)."""
    from backtest.report.common import new_figure
    from backtest.report.figures import draw_notes

    fig = new_figure()
    fig.set_layout_engine("none")
    lines = ["Notes:"] + [f"• note {i}: " + "a fairly long explanation of an assumption " * 3 for i in range(n_notes)]
    draw_notes(fig, lines, top=0.3, bottom=0.035)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert fig.texts
    for t in fig.texts:
        box = t.get_window_extent(renderer).transformed(fig.transFigure.inverted())
        assert box.y0 >= 0.035 - 1e-3 and box.y1 <= 0.3 + 1e-3
        assert box.x0 >= 0.0 and box.x1 <= 1.0 + 1e-3


def test_appendix_lists_every_parameter():
    """The last page promises every resolved parameter: all of a real run's 35 are drawn, and
    a longer list says how many more there are rather than dropping them silently."""
    from backtest.report.figures import appendix_page

    def drawn(fig):
        return "\n".join(t.get_text() for t in fig.texts)

    params = {f"param_{i:02d}": i for i in range(35)}
    text = drawn(appendix_page({}, params, "t"))
    assert all(k in text for k in params) and "more in summary.json" not in text
    many = {f"param_{i:03d}": "x" * 60 for i in range(120)}
    text = drawn(appendix_page({}, many, "t"))
    shown = sum(1 for k in many if k in text)
    assert shown < 120 and f"(+{120 - shown} parameters more in summary.json, under params)" in text


def test_parameters_page_tags_fitted_and_prior_parameters():
    """The last page says which parameters are fitted and which are assumed with a prior."""
    from backtest.calibration.priors import PRIORS
    from backtest.fitted_defaults import FITTED
    from backtest.report.figures import BASIS_LEGEND, appendix_page

    params = {"leverage_scale": 1.6, "impact_coef": 1.0, "max_rounds": 200}
    text = "\n".join(t.get_text() for t in appendix_page({}, params, "t").texts)
    assert ("1.6  · fitted" in text) == ("leverage_scale" in FITTED)
    assert ("1  · prior" in text) == ("impact_coef" in PRIORS and "impact_coef" not in FITTED)
    assert "200  ·" not in text and BASIS_LEGEND[:26] in text  # the legend ("fitted: a posterior median")


def test_inputs_page_lists_every_symbol_of_a_three_venue_event():
    """The inputs page has room for the 15 legs of 2025-10-10 over three venues and their notes
    (on one page with the parameters, none of the rows fitted)."""
    from backtest.report.figures import inputs_page, short_sym

    per = {f"S{i:02d}/USDT:USDT" + ("@bybit" if i % 2 else ""): {"price_source": "last-anchored-to-mark", "timeframe": "5m", "bars": 48, "gaps": 0,
                                                               "positions": 200_000, "open_interest_kind": "estimate", "open_notional_usd": 1e9,
                                                               "sigma_daily": 0.03, "volume_daily_usd": 2e9} for i in range(15)}
    summary = {"per_symbol": per, "venues": {"binanceusdm": {}, "bybit": {}, "okx": {}}, "notes": ["a long note " * 30] * 25}
    text = "\n".join(t.get_text() for t in inputs_page(summary, "t").texts)
    assert all(short_sym(k) in text for k in per) and "more in summary.json" not in text and "Notes from the simulation" in text


def test_title_page_keeps_every_headline_with_long_annotations():
    """With the longest annotations (estimated open interest, sensitivity range, seed spread)
    every headline row is still on the title page."""
    from types import SimpleNamespace

    from backtest.report.figures import title_page

    ev = SimpleNamespace(name="An event with a long name " * 3, id="E", exchange="binanceusdm", symbols=["A/USDT:USDT"] * 5,
                         start_ms=1_760_000_000_000, end_ms=1_760_014_400_000, lookback_start_ms=1_757_400_000_000)
    summary = {"positions": 5_000_000, "open_notional_usd": 38.9e9, "liquidated_notional_usd": 11.68e9, "long_liquidated_usd": 11.67e9,
               "short_liquidated_usd": 12.5e6, "long_share": 0.999, "peak_minute": "2025-10-10T21:13:00Z", "peak_minute_notional_usd": 2.5e9,
               "max_cascade_depth": 20, "amplification": 0.0421, "adl_notional_usd": 123.4e6, "insurance_fund_min_usd": 927.6e6, "seed": 12345,
               "per_symbol": {f"S{i}": {"open_interest_kind": "estimate"} for i in range(5)}}
    fig = title_page(ev, summary, {"seed": 12345}, ["line"] * 9, version="x", date_text="2025-10-11", mode_note="(cascade)",
                     liq_range=(7.64e9, 13.89e9), seed_spread=0.019, n_seeds=5, seed_positions=200_000)
    text = " ".join(t.get_text().replace("\n", " ") for t in fig.texts)
    for label in ("positions simulated", "insurance fund, minimum", "seed", "ADL notional"):
        assert label in text
    assert "more in summary.json" not in text and "5 seeds at 200k/symbol ±1.9 %" in text and "12345" in text
