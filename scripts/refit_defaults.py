"""Refit the package's fitted defaults (issue 13) and write them where the package reads them.

Runs the calibration recorded in ``data/calibration/defaults.toml`` (``[calibration] refit``: an
ABC-SMC fit over the training events, every catalogued event with comparable figures except
2025-10-10, which validation holds out) into a fresh run folder, then writes

* ``data/calibration/defaults.toml``: the run's ``params.toml`` (posterior medians, ``[params]``)
  with its provenance (``[calibration]``: events, targets, seed, settings, library and package
  versions, the refit command) under a header saying these are the package defaults;
* ``backtest/fitted_defaults.py``: the same medians as Python literals (the package must not read
  a data file at import time), with the run's date and the commit it ran on.

``tests/test_fitted_defaults.py`` checks that the two agree and that ``PopulationParams()`` uses
them. After a refit, re-bless the golden outputs (``python -m tests.golden.make_golden`` and
``python -m tests.golden.make_pre_accounts``) and update the README's headline numbers.

Run: ``make refit-defaults`` (or ``.venv/bin/python scripts/refit_defaults.py [--from RUN_DIR]``
to adopt a finished run without re-running it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = ROOT / "data" / "calibration" / "defaults.toml"
MODULE = ROOT / "backtest" / "fitted_defaults.py"

HEADER = """# Fitted defaults (issue 13): the package's default values of the [params] below are the posterior
# medians of this ABC-SMC fit over the training events (every catalogued event with comparable figures
# except 2025-10-10, which validation holds out). backtest/fitted_defaults.py carries the same values
# (tests/test_fitted_defaults.py checks it). Refit with `make refit-defaults` (scripts/refit_defaults.py).
# {when}, commit {commit}.

"""


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_module(params: dict[str, float], events: list[str], when: str, commit: str) -> str:
    """The text of backtest/fitted_defaults.py for ``params`` (name -> posterior median) fitted on ``events``."""
    lines = [f"    {k!r}: {float(v)!r}," for k, v in sorted(params.items())]
    return (
        '"""The package defaults that are fitted (issue 13), written by ``scripts/refit_defaults.py``: do not edit.\n\n'
        "Posterior medians of the ABC-SMC fit recorded in ``data/calibration/defaults.toml`` (its\n"
        "``[calibration]`` table: training events, targets, seed, budget, library versions, the refit\n"
        "command). :class:`backtest.population_params.PopulationParams` takes its defaults of these\n"
        "parameters from :data:`FITTED`; ``long_share`` is the fallback for symbols without a stored\n"
        "long/short ratio (a stored ratio, where there is one, is sourced and wins).\n"
        '"""\n\n'
        f"#: when the fit was adopted and the commit it ran on\n"
        f"FITTED_AT = {when!r}\nFITTED_COMMIT = {commit!r}\n\n"
        f"#: the training events of the fit (the events it was fitted on)\nFITTED_EVENTS: tuple[str, ...] = {tuple(events)!r}\n\n"
        "#: parameter -> posterior median (units as in backtest.population_params.PARAM_SOURCES)\n"
        "FITTED: dict[str, float] = {\n" + "\n".join(lines) + "\n}\n"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="run_dir", help="adopt this finished calibrate run folder instead of refitting")
    ap.add_argument("--backtest", default=str(Path(sys.executable).with_name("backtest")), help="the backtest command")
    a = ap.parse_args()
    if a.run_dir:
        run = Path(a.run_dir)
    else:
        refit = tomllib.loads(DEFAULTS.read_text(encoding="utf-8"))["calibration"]["refit"]
        run = Path(tempfile.mkdtemp(prefix="refit-defaults-"))
        cmd = [a.backtest if w == "backtest" and i == 0 else (str(run) if w == "DIR" else w) for i, w in enumerate(shlex.split(refit))]
        print("running:", shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    params_toml = run / "params.toml"
    if not params_toml.is_file():
        print(f"error: {params_toml} does not exist: give a finished calibrate run folder to --from", file=sys.stderr)
        return 2
    text = params_toml.read_text(encoding="utf-8")
    doc = tomllib.loads(text)
    params, events = doc["params"], list(doc.get("calibration", {}).get("events", []))
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = _commit()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#")).lstrip("\n")
    DEFAULTS.write_text(HEADER.format(when=when, commit=commit) + body + ("\n" if not body.endswith("\n") else ""), encoding="utf-8")
    MODULE.write_text(write_module(params, events, when, commit), encoding="utf-8")
    print(f"wrote {DEFAULTS.relative_to(ROOT)} and {MODULE.relative_to(ROOT)}: " + ", ".join(f"{k} {v:.4g}" for k, v in params.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
