"""The one progress helper: a callback (description, done, total), drawn only on a terminal."""

from __future__ import annotations

from backtest.progress import Progress


def test_callback_sees_every_change():
    seen = []
    with Progress("x", lambda *a: seen.append(a)) as p:
        assert not p.drawn  # a callable is reported to, never drawn
        t = p.add("loading", 3)
        p.update(t, description="step 1")
        p.advance(t)
        p.advance(t, 2)
        p.reporter(t)("simulating", 1, 4)
        p.done(t)
    assert seen == [("step 1", 0.0, 3), ("step 1", 1.0, 3), ("step 1", 3.0, 3), ("simulating", 1, 4), ("simulating", 4, 4)]


def test_off_when_stderr_is_not_a_terminal(capsys):
    p = Progress("x")  # auto: pytest's stderr is captured, not a terminal
    t = p.add("a", 2)
    p.advance(t)
    p.log("only shown above drawn bars")
    p.close()
    assert not p.drawn
    out = capsys.readouterr()
    assert out.err == "" and out.out == ""
    assert not Progress("x", False).drawn
