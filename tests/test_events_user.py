"""User event files, `events add/list/show`, ad-hoc --window events, and every malformed field
as one line naming the file, the event and the field (issue 14 point 1, issue 15 case 11)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from backtest.cli import app
from backtest.errors import EventError
from backtest.event_file import read_event_file
from backtest.events import committed_catalogue, get_event, load_events
from backtest.store import to_ms

GOOD = """
[[events]]
id = "mine"
symbols = ["BTC/USDT:USDT"]
window = ["2025-10-10T20:00:00Z", "2025-10-11T00:00:00Z"]
"""


@pytest.fixture(autouse=True)
def _clean(monkeypatch, tmp_path):
    monkeypatch.delenv("BACKTEST_EVENTS", raising=False)
    monkeypatch.chdir(tmp_path)


def run(*args):
    r = CliRunner().invoke(app, list(args))
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r


def one_line_error(r, *needles):
    assert r.exit_code == 2, r.output
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output
    for n in needles:
        assert n in lines[0], (n, lines[0])


BAD = [
    ("events = 5", ["bad.toml", "events must be a list of tables"]),
    ("events = [5]", ["bad.toml", "event 1", "must be a table"]),
    ("[events]\nid = 'x'", ["bad.toml", "events must be a list of tables"]),
    (GOOD + "figures = [5]", ["bad.toml", "event mine", "figures", "entry 1 must be a table"]),
    (GOOD + "figures = 5", ["event mine", "figures must be a list of tables"]),
    (GOOD + "figures = [{what = 'x'}]", ["event mine", "figures", "has no source"]),
    (GOOD + "figures = [{what = 'x', source = 's', value_usd = 'lots'}]", ["event mine", "value_usd must be a number"]),
    (GOOD + "observed = [{what = 'low'}]", ["event mine", "observed", "has no value"]),
    (GOOD + "pre_event_inputs = [{what = 'oi', source = 's'}]", ["event mine", "pre_event_inputs", "value_usd"]),
    (GOOD.replace('window = ["2025-10-10T20:00:00Z", "2025-10-11T00:00:00Z"]', 'window = ["2025-10-11T00:00:00Z", "2025-10-10T20:00:00Z"]'),
     ["event mine", "window", "swap them"]),
    (GOOD.replace('"2025-10-10T20:00:00Z", "2025-10-11', '"2025-10-10T20:00:00", "2025-10-11'), ["event mine", "window start", "no zone"]),
    (GOOD.replace('window = ["2025-10-10T20:00:00Z", "2025-10-11T00:00:00Z"]', "window = 5"), ["event mine", "window must be [start, end]"]),
    (GOOD.replace('window = ["2025-10-10T20:00:00Z", "2025-10-11T00:00:00Z"]', 'window = ["2025-10-01T00:00:00Z", "2025-12-01T00:00:00Z"]'),
     ["event mine", "longer than 31 days"]),
    (GOOD.replace('window = ["2025-10-10T20:00:00Z", "2025-10-11T00:00:00Z"]', 'window = [1, 2]'), ["event mine", "is not a time"]),
    (GOOD.replace('window = ["2025-10-10T20:00:00Z", "2025-10-11T00:00:00Z"]', 'window = "2025-10-10T20:00:00Z/2025-10-11T00:00:00Z"'),
     ["event mine", "window must be [start, end]"]),
    (GOOD.replace('id = "mine"', 'id = "../../etc"'), ["id '../../etc' is not a path-safe name"]),
    (GOOD.replace('id = "mine"', "id = 5"), ["is not a path-safe name"]),
    (GOOD.replace('id = "mine"\n', ""), ["event 1", "id is missing"]),
    (GOOD + 'exchange = "binanse"', ["event mine", "exchange", "not a ccxt exchange id"]),
    (GOOD + 'exchange = ["binanceusdm", "bybit"]', ["event mine", "several venues"]),
    (GOOD.replace('symbols = ["BTC/USDT:USDT"]', 'symbols = ["BTCUSDT"]'), ["event mine", "symbols", "BTC/USDT:USDT"]),
    (GOOD.replace('symbols = ["BTC/USDT:USDT"]', "symbols = []"), ["event mine", "non-empty list"]),
    (GOOD.replace('symbols = ["BTC/USDT:USDT"]', "symbols = [5]"), ["event mine", "is not a ccxt symbol"]),
    (GOOD + 'lookback = ["2025-10-09T20:00:00Z", "2025-10-10T00:00:00Z"]', ["event mine", "lookback must end where the window starts"]),
    (GOOD + 'lookback = ["2023-10-09T20:00:00Z", "2025-10-10T20:00:00Z"]', ["event mine", "lookback must be 1 to 365 days"]),
    (GOOD + 'core_window = ["2025-10-11T20:00:00Z", "2025-10-11T21:00:00Z"]', ["event mine", "core_window must lie inside"]),
    (GOOD + 'windw = 3', ["event mine", "unknown key 'windw'"]),
    (GOOD + 'name = 5', ["event mine", "name must be text"]),
    (GOOD + GOOD, ["event mine", "defines this id twice"]),
    ("events = [", ["bad.toml", "does not parse"]),
]


@pytest.mark.parametrize("text,needles", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_malformed_event_file_is_one_line_naming_file_event_field(tmp_path, text, needles):
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(EventError) as e:
        load_events(events_file=tmp_path / "bad.toml")
    for n in needles:
        assert n in str(e.value)
    # the same through every command that takes an event, and BACKTEST_EVENTS
    one_line_error(run("events", "list", "--events", "bad.toml"), *needles)
    one_line_error(run("replay", "2025-10-10", "--events", "bad.toml", "--out", str(tmp_path / "o")), *needles)
    one_line_error(run("report", "2025-10-10", "--events", "bad.toml", "--out", str(tmp_path / "r.pdf")), *needles)
    r = CliRunner().invoke(app, ["events", "show", "2025-10-10"], env={"BACKTEST_EVENTS": str(tmp_path / "bad.toml")})
    one_line_error(r, *needles)


def test_committed_catalogue_validates_and_keeps_its_events():
    evs = read_event_file(committed_catalogue())
    assert [e.id for e in evs][:2] == ["2025-10-10", "2025-04-07"] and len(evs) == 6
    assert evs[0].lookback_start_ms == to_ms("2025-09-10T20:00:00Z") and evs[0].core_start_ms == to_ms("2025-10-10T20:50:00Z")
    assert all(e.source == str(committed_catalogue()) and not e.overrides for e in load_events())


def test_user_file_merged_over_the_catalogue(tmp_path):
    (tmp_path / "events.toml").write_text(GOOD + GOOD.replace('"mine"', '"2025-10-10"').replace("[[events]]", "[[events]]\nname = 'my own'"))
    evs = load_events()  # ./events.toml is read when it exists
    ids = [e.id for e in evs]
    assert ids[:6] == [e.id for e in read_event_file(committed_catalogue())] and ids[6:] == ["mine"]
    mine = get_event("2025-10-10")
    assert mine.name == "my own" and mine.symbols == ("BTC/USDT:USDT",) and mine.overrides == str(committed_catalogue())
    assert mine.source == "events.toml" and not mine.figures
    r = run("events", "show", "2025-10-10")
    assert r.exit_code == 0 and "my own" in r.stdout and "replaces the catalogue's" in r.stderr
    r = run("events", "list")
    assert r.exit_code == 0 and "mine" in r.stdout and "replaces the catalogue's" in r.stdout
    assert len(load_events(user=False)) == 6  # the catalogue alone (calibration from other events)


def test_named_file_must_exist(tmp_path):
    one_line_error(run("events", "list", "--events", "nope.toml"), "nope.toml does not exist")


def test_events_add_writes_atomically_refuses_existing_and_replaces(tmp_path):
    args = ["events", "add", "my-crash", "--exchange", "binanceusdm", "--symbols", "BTC/USDT:USDT,ETH/USDT:USDT",
            "--window", "2026-02-03T10:00Z/2026-02-03T16:00Z", "--lookback", "14", "--core", "2026-02-03T11:00Z/2026-02-03T12:00Z"]
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert "added event my-crash in events.toml" in r.stdout
    ev = get_event("my-crash")
    assert ev.symbols == ("BTC/USDT:USDT", "ETH/USDT:USDT") and ev.start_ms == to_ms("2026-02-03T10:00:00Z")
    assert ev.lookback_start_ms == to_ms("2026-01-20T10:00:00Z") and ev.core_end_ms == to_ms("2026-02-03T12:00:00Z")
    before = (tmp_path / "events.toml").read_text()
    one_line_error(run(*args), "already has event my-crash", "--replace")
    assert (tmp_path / "events.toml").read_text() == before
    r = run(*args[:-4], "--replace", "--name", "renamed")
    assert r.exit_code == 0 and "replaced event my-crash" in r.stdout
    assert get_event("my-crash").name == "renamed" and len(load_events()) == 7
    r = run("events", "add", "second", "--symbols", "SOL/USDT:USDT", "--window", "2026-03-01/2026-03-02")
    assert r.exit_code == 0 and [e.id for e in load_events()][6:] == ["my-crash", "second"]
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left


@pytest.mark.parametrize("extra,needle", [
    (["--window", "2026-02-03T16:00Z/2026-02-03T10:00Z"], "swap them"),
    (["--window", "2026-02-03T10:00/2026-02-03T16:00Z"], "no zone"),
    (["--window", "yesterday"], "must be START/END in UTC"),
    (["--window", "2026-02-03T10:00Z/2026-02-03T16:00Z", "--lookback", "0"], "lookback must be 1 to 365"),
    (["--window", "2026-02-03T10:00Z/2026-02-03T16:00Z", "--lookback", "9999"], "lookback must be 1 to 365"),
    (["--window", "2026-02-03T10:00Z/2026-02-03T16:00Z", "--core", "2026-02-04T10:00Z/2026-02-04T11:00Z"], "inside the window"),
    (["--window", "2026-02-03T10:00Z/2026-02-03T16:00Z", "--exchange", "nosuch"], "not a ccxt exchange id"),
])
def test_events_add_bad_fields(tmp_path, extra, needle):
    one_line_error(run("events", "add", "x", "--symbols", "BTC/USDT:USDT", *extra), needle)
    assert not (tmp_path / "events.toml").exists()


def test_events_add_never_writes_into_the_package_or_data(tmp_path):
    target = committed_catalogue()
    before = target.read_bytes()
    for path in (target, target.parent / "mine.toml", target.parent.parent / "backtest" / "events.toml"):
        one_line_error(run("events", "add", "x", "--symbols", "BTC/USDT:USDT", "--window", "2026-02-03/2026-02-04", "--events", str(path)),
                       "inside the package or its committed data/")
    assert target.read_bytes() == before and not (target.parent / "mine.toml").exists()
    one_line_error(run("events", "add", "../x", "--symbols", "BTC/USDT:USDT", "--window", "2026-02-03/2026-02-04"), "path-safe")
    one_line_error(run("events", "add", "x", "--symbols", "BTC", "--window", "2026-02-03/2026-02-04"), "BASE/QUOTE:SETTLE")


def test_bad_ad_hoc_options_on_replay_and_report(tmp_path):
    out = str(tmp_path / "o")
    one_line_error(run("replay", "x", "--window", "2025-10-10T20:00Z/2025-10-11T00:00Z", "--out", out), "needs its symbols")
    one_line_error(run("replay", "2025-10-10", "--exchange", "bybit", "--out", out), "--exchange describes an ad-hoc event")
    one_line_error(run("cascade", "x", "--window", "2025-10-11T00:00Z/2025-10-10T20:00Z", "--symbol", "BTC/USDT:USDT", "--out", out), "swap them")
    one_line_error(run("report", "../x", "--window", "2025-10-10T20:00Z/2025-10-11T00:00Z", "--symbol", "BTC/USDT:USDT"), "path-safe")
    one_line_error(run("population", "nope"), "unknown event 'nope'")


def test_ad_hoc_event_replays_on_the_committed_store(tmp_path):
    r = run("replay", "adhoc-eth", "--window", "2025-10-10T20:00Z/2025-10-11T00:00Z", "--symbol", "ETH/USDT:USDT",
            "--out", str(tmp_path / "o"), "--set", "n_positions=3000")
    assert r.exit_code == 0, r.output
    import json

    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["event"] == "adhoc-eth" and list(s["price_source"]) == ["ETH/USDT:USDT"] and s["positions"] > 0


def test_sweep_of_a_user_event_with_process_workers(tmp_path):
    """--events on sweep reaches the worker processes (they read the event by its id)."""
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "my.toml").write_text(GOOD)
    (tmp_path / "s.toml").write_text('event = "mine"\n[base]\nn_positions = 3000\n[grid]\nleverage_scale = [0.5, 2.0]\n')
    repo = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "backtest.cli", "sweep", "s.toml", "--events", "my.toml", "--executor", "processes",
           "--workers", "2", "--out", "out"]
    env = {k: v for k, v in __import__("os").environ.items() if k != "BACKTEST_EVENTS"}
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600, env={**env, "PYTHONPATH": str(repo)})
    assert r.returncode == 0, r.stderr
    import polars as pl

    res = pl.read_parquet(tmp_path / "out" / "results.parquet")
    assert res.height == 2 and res["liquidated_notional_usd"].n_unique() == 2
    bad = subprocess.run([*cmd[:-2], "--out", "out2", "--events", "nope.toml"], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**env, "PYTHONPATH": str(repo)})
    assert bad.returncode == 2 and "nope.toml does not exist" in bad.stderr
