"""archgen.arch: the affine algebra, typed names, the IR dataclasses, spec loading and errors.

The curated public API, loaded lazily (archgen/_exports.py).
"""
from archgen._exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "DataType": "spec",
    "Dataflow": "spec",
    "Design": "spec",
    "load_spec": "spec",
    "load_spec_data": "spec",
    "read_spec_file": "spec",
    "apply_overrides": "spec",
    "find_spec": "spec",
    "builtin_specs": "spec",
    "Operand": "einsum",
    "Operation": "einsum",
    "EinsumError": "einsum",
    "parse_operation": "einsum",
    "AffineExpr": "affine",
    "AffineMap": "affine",
    "AffineParseError": "affine",
    "parse_affine": "affine",
    "Problem": "errors",
    "SpecError": "errors",
    "ArchgenError": "errors",
    "ToolMissingError": "errors",
    "Dim": "names",
    "Axis": "names",
    "OperandName": "names",
    "SpattenSpec": "spatten_spec",
    "load_spatten_spec": "spatten_spec",
    "is_spatten_spec": "spatten_spec",
})
