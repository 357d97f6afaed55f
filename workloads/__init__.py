"""archgen.workloads: tensor operations as loop nests, layer libraries and attention traces.

The public API, curated; names load on first use (PEP 562), so importing the package stays cheap and
does not pull in a framework the caller does not need.
"""
from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "Layer": "ops",
    "Workload": "ops",
    "get_workload": "library",
    "list_workloads": "library",
    "AttentionTrace": "trace",
    "load_trace": "trace",
    "save_trace": "trace",
    "import_onnx": "onnx_import",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)


def __dir__():
    return __all__
