"""The real simulation and the test fake both implement the protocol sweeps and the report use."""

from __future__ import annotations

import inspect

import pytest

import backtest.simulate as simulate
from backtest.sim_api import SimulationAPI, simulation
from tests.fakes import fakesim

MEMBERS = [name for name in dir(SimulationAPI) if not name.startswith("_")]


@pytest.mark.parametrize("impl", [simulate, fakesim], ids=["real", "fake"])
def test_implements_the_protocol(impl):
    assert MEMBERS == ["param_groups", "population_param_names", "prepare", "simulate_prepared"]
    for name in MEMBERS:
        want = [p for p in inspect.signature(getattr(SimulationAPI, name)).parameters if p != "self"]
        got = list(inspect.signature(getattr(impl, name)).parameters)
        assert set(want) <= set(got) and got[:2] == want[:2], name  # callers pass all but the first two by name


def test_default_is_the_real_simulation():
    assert simulation() is simulate and simulation(fakesim) is fakesim
    assert "seed" in simulate.population_param_names() and "impact_coef" not in simulate.population_param_names()
