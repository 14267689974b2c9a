"""Report pages built on the calibration machinery: the comparison page's kinds and verdicts, the
Sobol result file, the posterior predictive headline bands."""

from __future__ import annotations

from dataclasses import dataclass

from backtest.calibration.figures import KIND_TEXT, Figure
from backtest.report.calibration_pages import comparison_rows, verdicts

SYMS = ("BTC/USDT:USDT", "ETH/USDT:USDT")


@dataclass
class Ev:
    id: str = "e1"
    exchange: str = "binanceusdm"
    symbols: tuple = SYMS
    observed: tuple = ()
    start_ms: int = 0
    end_ms: int = 3_600_000


def figs():
    return [
        Figure("e1/total", "e1", "total", "lower_bound", metric="liquidated_notional_usd", venues=("binanceusdm",), symbols=SYMS, target=1e9),
        Figure("e1/share", "e1", "long share", "interval", metric="long_share", venues=("all",), symbols=SYMS, low=0.8, high=0.95),
        Figure("e1/adl", "e1", "adl", "point", metric="adl_notional_usd", target=1e8, uncertainty=1e7),
        Figure("e1/okx", "e1", "okx total", "lower_bound", metric="liquidated_notional_usd", venues=("okx",), target=1e9),
        Figure("e1/ctx", "e1", "context", "context", value={"total": 19.1e9, "note": "x"}),
        Figure("e2/other", "e2", "other event", "lower_bound", metric="liquidated_notional_usd", target=1.0),
    ]


def summary(total, share, adl):
    return {"symbols": list(SYMS), "liquidated_notional_usd": total, "long_share": share, "adl_notional_usd": adl}


def test_verdicts_follow_the_kind():
    ev = Ev()
    f = {x.id: x for x in figs()}
    good, bad = summary(2e9, 0.9, 1.05e8), summary(0.5e9, 0.97, 2e8)
    for fid, ok_text, bad_text in (("e1/total", "met", "not met"), ("e1/share", "covered", "above"), ("e1/adl", "within", "outside")):
        v = verdicts(f[fid], ev, {"replay": good, "cascade": bad})
        assert v["replay"][1].ok is True and v["replay"][1].text == ok_text
        assert v["cascade"][1].ok is False and v["cascade"][1].text == bad_text
    # another venue: comparable, but not judged (and says why)
    v = verdicts(f["e1/okx"], ev, {"cascade": good})
    assert v["cascade"][1].ok is None and "okx" in v["cascade"][1].text
    # context: listed, never judged
    assert verdicts(f["e1/ctx"], ev, {"cascade": good})["cascade"][1].ok is None


def test_comparison_rows_list_context_and_tally_the_cascade():
    judged, context, tally = comparison_rows(Ev(), summary(2e9, 0.9, 1.05e8), summary(0.5e9, 0.9, 1.05e8), {}, figs())
    assert [r[1] for r in judged] == [KIND_TEXT[k] for k in ("lower_bound", "interval", "point", "lower_bound")]
    assert judged[0][4].endswith("met") and judged[0][6].endswith("not met")
    assert tally == {"held": 2, "failed": 1, "not judged": 1}
    assert len(context) == 1 and "19.1B" in context[0][1]  # other events' figures are not shown


def test_sobol_result_file_reading_and_page(tmp_path):
    import json

    import pytest

    from backtest.calibration.sensitivity import read_result
    from backtest.errors import CalibrationError
    from backtest.report.calibration_pages import sobol_make_command, sobol_page, sobol_path

    assert read_result(tmp_path / "nothing") is None
    rows = [{"metric": m, "param": p, "S1": s1, "S1_conf": 0.01, "ST": st, "ST_conf": 0.02, "rank": r}
            for m in ("liquidated_notional_usd", "long_share") for p, s1, st, r in (("a", 0.5, 0.6, 1), ("b", 0.1, 0.2, 2))]
    (tmp_path / "sobol.json").write_text(json.dumps({"event": "e1", "samples": 8, "runs": 32, "n_positions": 1000, "mode": "cascade",
                                                     "seed": 0, "computed_utc": "2026-12-01T00:00:00Z", "indices": rows}))
    res = read_result(tmp_path)  # the folder or the file
    assert res["meta"]["samples"] == 8 and res["table"].height == 4 and read_result(tmp_path / "sobol.json")["table"].height == 4
    assert res["table"].filter(res["table"]["metric"] == "long_share").sort("rank")["param"].to_list() == ["a", "b"]
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(CalibrationError, match="not a Sobol result"):
        read_result(tmp_path / "bad.json")
    # the page: with a result it draws the ranked indices; without one it says how to make it
    from backtest.report.common import mpl

    mpl()
    fig = sobol_page(Ev(), res, "t")
    assert len(fig.axes) == 2
    empty = sobol_page(Ev(), None, "t")
    assert any(sobol_make_command("e1") in t.get_text() for t in empty.texts)
    # the committed result of 2025-10-10 is readable and covers every prior
    from backtest.calibration.priors import PRIORS

    committed = read_result(sobol_path("2025-10-10"))
    assert committed is not None and set(committed["table"]["param"].to_list()) == set(PRIORS)


def test_posterior_band_reading(tmp_path):
    import json

    import polars as pl
    import pytest

    from backtest.calibration.model import predicted_key
    from backtest.report.calibration_pages import fit_note, headline_predictive, posterior_path, read_posterior

    assert read_posterior(tmp_path, "e1") is None and "No posterior" in fit_note(None, "e1")
    x = [float(v) for v in range(1, 101)]
    pl.DataFrame({"e1/total": x, predicted_key("e1", "liquidated_notional_usd"): [v * 1e9 for v in x],
                  predicted_key("e1", "long_share"): [v / 100 for v in x], "weight": [0.01] * 100}).write_parquet(tmp_path / "predictive.parquet")
    pl.DataFrame({"leverage_scale": x, "weight": [0.01] * 100}).write_parquet(tmp_path / "posterior.parquet")
    (tmp_path / "diagnostics.json").write_text(json.dumps({"provenance": {"events": ["e1"], "mode": "cascade", "n_positions": 1000, "targets": ["e1/total"]}}))
    post = read_posterior(tmp_path, "e1")
    med, lo, hi = post["bands"]["liquidated_notional_usd"]
    assert (med, lo, hi) == pytest.approx((50.5e9, 5.5e9, 95.5e9))  # weighted midpoint quantiles of 1..100
    assert post["fitted"]["leverage_scale"] == pytest.approx((50.5, 5.5, 95.5))
    assert "long_share" in post["bands"] and read_posterior(tmp_path, "other-event") is None
    texts = headline_predictive(post)
    assert texts["liquidated notional"] == "$50.5B [$5.5B–$95.5B]" and texts["long share of liquidations"].startswith("50.5 %")
    note = fit_note(post, "e1")
    assert "leverage_scale 50.5 [5.5–95.5]" in note and "impact_coef" in note  # fitted with its posterior; the rest assumed
    # a fitted default outside the posterior's band is named (the one-run and predictive columns differ for it)
    from backtest.fitted_defaults import FITTED
    from backtest.report.calibration_pages import _disagreement

    assert ("leverage_scale" in FITTED) and ("defaults lie outside" in note) == (not 5.5 <= FITTED["leverage_scale"] <= 95.5)
    assert _disagreement({"leverage_scale": (1.0, 0.5, 0.9)}, {"leverage_scale": 1.6}).count("leverage_scale 1.6 vs [0.5–0.9]") == 1
    assert _disagreement({"leverage_scale": (1.0, 0.5, 2.0)}, {"leverage_scale": 1.6}) == ""
    # the committed posterior of 2025-10-10 has the headline figures
    committed = read_posterior(posterior_path("2025-10-10"), "2025-10-10")
    assert committed is not None and "liquidated_notional_usd" in committed["bands"]


def test_context_page_cells_stay_inside_their_columns():
    """Every cell of the context-figures page (the real catalogue's 2025-10-10 figures) ends left of
    the next column's start or the table's right edge, as the PNG (``savefig.dpi``) and the PDF
    (vector: measured at 300 dpi, where hinting no longer widens the glyphs) draw it."""
    import matplotlib

    matplotlib.use("Agg")
    from backtest.report.calibration_pages import comparison_pages
    from backtest.report.common import RC

    # the two tables: left 0.04 / 0.505, width 0.455, columns 26 : 56 : 30 characters
    tables = [[x0, x0 + 0.455 * 26 / 112, x0 + 0.455 * 82 / 112, x0 + 0.455] for x0 in (0.04, 0.505)]
    with matplotlib.rc_context(RC):  # the report's fonts, as build.py draws them
        pages = comparison_pages(Ev(id="2025-10-10"), summary(2e9, 0.9, 1.05e8), summary(2e9, 0.9, 1.05e8), {})
        page = next(p for p in pages if p.texts[0].get_text().startswith("Published figures for context"))
        cells = [t for t in page.texts[2:] if t.get_text() and not t.get_text().startswith("(+")]
        assert len(cells) > 75  # the headers and every row of both tables
        for dpi in (RC["savefig.dpi"], 300):
            page.set_dpi(dpi)
            page.canvas.draw()
            r = page.canvas.get_renderer()
            for t in cells:
                x0 = t.get_position()[0] - 0.004
                xs = next(xs for xs in tables if xs[0] - 1e-9 <= x0 < xs[-1])
                col = min(range(3), key=lambda c: abs(xs[c] - x0))
                right = t.get_window_extent(r).x1 / page.bbox.width
                assert right <= xs[col + 1], (dpi, t.get_text(), right, xs[col + 1])
