"""archgen.workloads: tensor operations as loop nests, layer libraries and attention traces.

The curated public API, loaded lazily (archgen/_exports.py).
"""
from archgen._exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "Layer": "ops",
    "Workload": "ops",
    "get_workload": "library",
    "list_workloads": "library",
    "AttentionTrace": "trace",
    "load_trace": "trace",
    "save_trace": "trace",
    "import_onnx": "onnx_import",
})
