"""Published figures: the committed file, its loader's validation, judging by kind, target terms."""

from __future__ import annotations

import json
import math

import pytest

from backtest.calibration.figures import Figure, judge, judge_band, load_figures
from backtest.calibration.targets import distance, event_inputs, event_targets, simulated_value, term, usable
from backtest.errors import CalibrationError
from backtest.events import get_event, load_events


def fig(kind: str, **kw) -> Figure:
    base = dict(id=f"synthetic/{kind}", event="2025-10-10", what="synthetic", kind=kind, metric="liquidated_notional_usd")
    return Figure(**{**base, **kw})


def test_committed_figures_load_and_cover_every_published_figure(shared_data):
    figs = load_figures()
    raw = json.loads((shared_data / "published_figures.json").read_text())["figures"]
    assert {f.source_index for f in figs if f.source_index is not None} == set(range(len(raw)))
    ids = {e.id for e in load_events()} | {"methodology"}
    assert all(f.event in ids for f in figs)
    for f in figs:  # published fields carried over unchanged
        if f.source_index is not None:
            assert f.quote == raw[f.source_index]["quote"] and f.source == raw[f.source_index]["source"]


def test_liquidation_totals_are_lower_bounds_and_all_venue_totals_context():
    for f in load_figures():
        if f.metric == "liquidated_notional_usd":
            assert f.kind == "lower_bound" and f.scale and f.basis, f.id
            assert f.venues == ("binanceusdm",)
        if "all" in f.venues:  # an all-venue figure is compared only as a share or a time
            assert f.metric in ("long_share", "peak_minute"), f.id


def test_events_with_committed_data_have_targets():
    figs = load_figures()
    ev = get_event("2025-10-10")
    ids = [f.id for f in event_targets(ev, None, figs)]
    assert "2025-10-10/binance-liquidations-5sym" in ids and "2025-10-10/peak-minute" in ids
    # HYPE is simulated since issue 11 point 5: its open-interest figure is usable (without HYPE not)
    hype = next(f for f in figs if f.id == "2025-10-10/hype-open-interest-change")
    assert usable(hype, ev, ev.symbols) is None and usable(hype, ev, [s for s in ev.symbols if not s.startswith("HYPE/")])
    assert event_inputs(get_event("2020-03-12"), figs) == {"insurance_fund_usd": pytest.approx(12.864e6)}


def test_judge_each_kind():
    lb = fig("lower_bound", target=100.0)
    assert judge(lb, 100.0).ok and judge(lb, 250.0).ok and not judge(lb, 99.0).ok
    iv = fig("interval", low=0.8, high=0.9, metric="long_share")
    assert judge(iv, 0.85).ok and judge(iv, 0.79).text == "below" and judge(iv, 0.91).text == "above"
    pt = fig("point", target=10.0, uncertainty=2.0)
    assert judge(pt, 11.9).ok and not judge(pt, 12.1).ok and not judge(pt, None).ok
    assert judge(fig("context"), 1.0).ok is None
    assert judge_band(lb, 10.0, 120.0).ok and not judge_band(lb, 10.0, 90.0).ok
    assert judge_band(iv, 0.5, 0.81).ok and judge_band(iv, 0.5, 0.7).text == "below"
    assert judge_band(pt, 12.5, 20.0).text == "above"


def test_terms_one_sided_zero_inside_scaled_by_uncertainty():
    lb = fig("lower_bound", target=100.0)
    assert term(lb, 150.0) == 0.0 and term(lb, 75.0) == pytest.approx(1.0)  # 25 short of 25 % of the bound
    iv = fig("interval", low=0.8, high=0.9, metric="long_share")
    assert term(iv, 0.85) == 0.0 and term(iv, 0.95) == pytest.approx(1.0)
    pt = fig("point", target=10.0, uncertainty=2.0)
    assert term(pt, 14.0) == pytest.approx(2.0) and term(pt, None) == 10.0
    assert distance({lb.id: 75.0, pt.id: 14.0}, [lb, pt]) == pytest.approx(math.sqrt(5.0))


def test_simulated_values_from_a_summary():
    s = {"symbols": ["A", "B"], "liquidated_notional_usd": 5.0, "long_share": 0.9, "peak_minute": "2025-10-10T21:15:00Z",
         "insurance_fund_start_usd": 10.0, "insurance_fund_min_usd": 7.5, "open_notional_usd": 100.0,
         "stopped_notional_usd": 1.0, "adl_notional_usd": 0.0, "per_symbol": {"A": {}, "B": {}}}
    assert simulated_value(s, fig("lower_bound", target=1.0)) == 5.0
    assert simulated_value(s, fig("point", metric="peak_minute", target=0.0, uncertainty=1.0)) == 1760130900000.0
    assert simulated_value(s, fig("lower_bound", metric="insurance_fund_used_usd", target=1.0)) == 2.5
    assert simulated_value(s, fig("point", metric="open_interest_change", target=0.0, uncertainty=1.0)) == pytest.approx(-0.06)
    with pytest.raises(KeyError):  # a one-symbol figure needs per-symbol values in the summary
        simulated_value(s, fig("lower_bound", target=1.0, symbols=("A",)))


def test_an_open_interest_figure_compares_over_its_own_window():
    """An open-interest figure of one symbol with a window compares with the run's change over that
    window (per_symbol open_interest_windows, a point-to-point change at the bar ends), not with the
    trough of the whole run; a window the run does not have falls back to the trough."""
    import numpy as np

    from backtest.results import _window_changes

    ends = np.array([10, 20, 30, 40, 50], np.int64)  # SYNTHETIC bar ends, UTC ms
    oi = np.array([100.0, 80.0, 50.0, 20.0, 60.0])  # USD at each bar end; the start value is 110
    w = _window_changes(oi, ends, 110.0, [(0, 30), (20, 45), (5, 9), (50, 90), (-20, 0)], run_start=0)
    assert w["0-30"] == pytest.approx(50.0 / 110.0 - 1.0)  # from the run's start to the bar end at 30
    assert w["20-45"] == pytest.approx(20.0 / 80.0 - 1.0)  # from the bar end at 20 to the last one by 45
    assert w["5-9"] == 0.0  # no bar end inside: the start value at both ends
    assert "50-90" not in w and "-20-0" not in w  # windows outside the run have none
    assert _window_changes(oi, ends, 110.0, []) is None
    s = {"symbols": ["A"], "open_notional_usd": 100.0, "liquidated_notional_usd": 90.0, "stopped_notional_usd": 0.0,
         "adl_notional_usd": 0.0, "per_symbol": {"A": {"open_interest_change": -0.9, "open_interest_windows": w}}}
    f = fig("point", metric="open_interest_change", target=-0.3, uncertainty=0.05, symbols=("A",), window_ms=(20, 45))
    assert simulated_value(s, f) == pytest.approx(-0.75)
    other = fig("point", metric="open_interest_change", target=-0.3, uncertainty=0.05, symbols=("A",), window_ms=(0, 50))
    assert simulated_value(s, other) == pytest.approx(-0.9)  # not in the run: the event-wide figure


@pytest.mark.parametrize(
    "body, expect",
    [
        ('[[figures]]\nid="x"\nevent="2025-10-10"\nwhat="w"\nkind="guess"\n', "kind must be one of"),
        ('[[figures]]\nid="x"\nevent="1999-01-01"\nwhat="w"\nkind="context"\n', "not in the catalogue"),
        ('[[figures]]\nid="x"\nevent="2025-10-10"\nwhat="w"\nkind="point"\nmetric="long_share"\ntarget=0.5\n', "uncertainty"),
        ('[[figures]]\nid="x"\nevent="2025-10-10"\nwhat="w"\nkind="lower_bound"\nmetric="nope"\ntarget=1\n', "needs a metric"),
        ('[[figures]]\nid="x"\nevent="2025-10-10"\nwhat="w"\nkind="interval"\nmetric="long_share"\nlow=0.9\nhigh=0.8\n', "low <= high"),
        ('[[figures]]\nid="x"\nevent="2025-10-10"\nwhat="w"\nkind="context"\n[[figures]]\nid="x"\nevent="2025-10-10"\nwhat="w"\nkind="context"\n', "twice"),
        ("not toml [", "does not parse"),
    ],
)
def test_bad_figures_files_are_one_line_errors(tmp_path, body, expect):
    p = tmp_path / "f.toml"
    p.write_text(body)
    with pytest.raises(CalibrationError, match=expect) as e:
        load_figures(p)
    assert "\n" not in str(e.value)


def test_committed_fitted_defaults_are_a_config_with_provenance():
    import tomllib

    from backtest.calibration.priors import PRIORS
    from backtest.params import load_config
    from backtest.simulate import resolve_params

    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "data" / "calibration" / "defaults.toml"
    cfg = load_config(path)
    assert cfg and set(cfg) <= set(PRIORS)
    resolve_params(cfg)  # valid parameters of the model
    prov = tomllib.load(open(path, "rb"))["calibration"]
    figs = {f.id for f in load_figures()}
    assert "2025-10-10" not in prov["events"] and set(prov["targets"]) <= figs
    assert prov["refit"].startswith("backtest calibrate ") and prov["versions"]["pyabc"]
    for k, (lo, hi) in prov["bands_90"].items():
        assert lo <= cfg[k] <= hi
