# The README's commands. `make report` builds the environment and runs the main job on the
# committed data; `make test` builds the environment and runs the test suite (what CI runs).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: env report test bench bench-accounts data refit-defaults clean

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

report: env
	$(BIN)/backtest report 2025-10-10 -o reports/2025-10-10.pdf

test: env
	$(BIN)/python -m pytest -q

bench: env
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

# issue 12: the account engine alone (5 M positions, ~2 M accounts, 5 symbols x 86,400 points)
bench-accounts: env
	$(BIN)/python benchmarks/bench_accounts.py

# issue 13: refit the package's fitted defaults over the training events (data/calibration/defaults.toml,
# backtest/fitted_defaults.py); then re-bless the golden outputs
refit-defaults: env
	$(BIN)/python scripts/refit_defaults.py

data: env
	$(BIN)/python scripts/build_data.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
