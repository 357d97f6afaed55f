"""archgen.verif: the Verilator runner, testbench helpers, golden models, `archgen verify`.

The curated public API, loaded lazily (archgen/_exports.py).
"""
from archgen._exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "ArrayVerification": "array_check",
    "verify_array": "array_check",
    "run_testbench": "runner",
    "lint_verilog": "runner",
    "verilator_env": "runner",
    "reference_einsum": "golden",
    "verify_topk": "topk_check",
    "verify_spatten_unit": "spatten_check",
})
