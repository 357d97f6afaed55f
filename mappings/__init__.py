"""archgen.mappings: tiling and loop order of a workload on a design.

The curated public API, loaded lazily (archgen/_exports.py).
"""
from archgen._exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "TileMapping": "tiling",
    "Tile": "tiling",
    "map_problem": "tiling",
    "LayerCommand": "memory_tiling",
    "plan_layer": "memory_tiling",
    "make_command": "memory_tiling",
    "dram_bytes": "memory_tiling",
})
