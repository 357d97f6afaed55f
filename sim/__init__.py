"""archgen.sim: the SimPy cycle model, energy and area, workload simulation, sweeps.

The curated public API, loaded lazily (archgen/_exports.py).
"""
from archgen._exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
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
})
