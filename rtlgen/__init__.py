"""archgen.rtlgen: Amaranth components, Verilog emission and synthesis reports.

The public API, curated; names load on first use (PEP 562), so importing the package stays cheap and
does not pull in a framework the caller does not need.
"""
from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "ArrayTop": "array",
    "build_array": "build",
    "array_verilog": "build",
    "array_manifest": "build",
    "write_outputs": "build",
    "manifest_json": "build",
    "EinsumUnit": "einsum_unit",
    "TopK": "topk",
    "SpattenCore": "spatten_core",
    "build_spatten": "spatten_top",
    "write_spatten_build": "spatten_top",
    "yosys_stats": "synth",
    "nextpnr_ecp5": "synth",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)


def __dir__():
    return __all__
