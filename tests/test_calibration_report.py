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
