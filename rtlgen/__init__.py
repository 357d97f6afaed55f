"""archgen.rtlgen: Amaranth components, Verilog emission and synthesis reports.

The curated public API, loaded lazily (archgen/_exports.py).
"""
from archgen._exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
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
})
