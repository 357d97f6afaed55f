"""archgen.sim: the SimPy cycle model, energy and area, workload simulation, sweeps.

The public API, curated; names load on first use (PEP 562), so importing the package stays cheap and
does not pull in a framework the caller does not need.
"""
from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "ArrayModelResult": "array_model",
    "simulate_array": "array_model",
    "simulate_workload_on_array": "array_sim",
    "Action": "energy",
    "EnergyModel": "energy",
    "LayerResult": "results",
    "totals": "results",
    "simulate_spatten": "spatten_sim",
    "run_sweep": "sweep",
    "pareto_front": "sweep",
    "render_table": "report",
    "write_sim_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)


def __dir__():
    return __all__
