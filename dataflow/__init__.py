"""archgen.dataflow: reuse analysis, interconnect, primitive graph, LP delay matching, schedule, and
the compile step that runs them once (spec -> Design -> CompiledArray).

The public API, curated; names load on first use (PEP 562), so importing the package stays cheap and
does not pull in a framework the caller does not need.
"""
from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "CompiledArray": "compile",
    "compile_array": "compile",
    "clear_compile_cache": "compile",
    "Role": "ir",
    "NodeKind": "ir",
    "EdgeKind": "ir",
    "PortRole": "ir",
    "Direction": "ir",
    "Node": "ir",
    "Port": "ir",
    "CommandField": "ir",
    "CommandLayout": "ir",
    "ReuseVector": "reuse",
    "reuse_vectors": "reuse",
    "unit_reuse": "reuse",
    "FUGraph": "interconnect",
    "OperandPlan": "interconnect",
    "Lane": "interconnect",
    "derive_interconnect": "interconnect",
    "PrimitiveGraph": "primitives",
    "lower_to_primitives": "primitives",
    "RetimedGraph": "delay_lp",
    "ClockTargetError": "delay_lp",
    "DelayMatchingError": "delay_lp",
    "insert_pipeline_registers": "delay_lp",
    "insert_pipeline_registers_fused": "delay_lp",
    "min_cost_flow_dual": "delay_lp",
    "DelayTable": "delays",
    "ArrayTiming": "pipelining",
    "ArraySchedule": "schedule",
    "HostProgram": "host",
    "host_program": "host",
    "random_operands": "host",
    "Banking": "banking",
    "derive_banking": "banking",
    "EinsumArray": "spatten_arrays",
    "spatten_latencies": "spatten_arrays",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)


def __dir__():
    return __all__
