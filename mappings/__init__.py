"""archgen.mappings: tiling and loop order of a workload on a design.

The public API, curated; names load on first use (PEP 562), so importing the package stays cheap and
does not pull in a framework the caller does not need.
"""
from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "TileMapping": "tiling",
    "Tile": "tiling",
    "map_problem": "tiling",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)


def __dir__():
    return __all__
