"""The simulation API that sweeps and the report run on, as a :class:`typing.Protocol`.

:mod:`backtest.simulate` is the implementation (a module satisfies the protocol through its
functions); tests inject a fake one (``tests/fakes/fakesim.py``) through the ``sim=`` argument of
:func:`backtest.sweep.run_sweep`, :func:`backtest.sweep_plan.plan_sweep` and
:func:`backtest.report.build.build_report`. Its functions must be picklable by reference
(module-level), since the process and dask executors send ``simulate_prepared`` to workers.
"""

from __future__ import annotations

from typing import Any, Protocol


class SimulationAPI(Protocol):
    """What a sweep and the report need from a simulation."""

    def param_groups(self) -> list[Any]:
        """Default instances of the parameter groups (dataclasses) that flat names resolve against."""
        ...

    def population_param_names(self) -> set[str]:
        """Names of the parameters that change the population (rebuilding it costs more than a run)."""
        ...

    def prepare(self, event_id: Any, overrides: dict | None = None, symbols: list[str] | None = None, store: Any = None) -> Any:
        """Market arrays and populations of an event, built once."""
        ...

    def simulate_prepared(self, prepared: Any, overrides: dict | None = None, mode: str = "cascade", shock: str | None = None,
                          summary_only: bool = False) -> Any:
        """One scenario on a prepared event: a result with ``summary`` (a results.Summary) and the frames."""
        ...


def simulation(sim: SimulationAPI | None = None) -> SimulationAPI:
    """``sim``, or the real simulation (:mod:`backtest.simulate`) when None."""
    if sim is not None:
        return sim
    import backtest.simulate as simulate

    return simulate  # type: ignore[return-value]
