"""archgen.arch: the affine algebra, typed names, the IR dataclasses, spec loading and errors.

The public API, curated; names load on first use (PEP 562), so importing the package stays cheap and
does not pull in a framework the caller does not need.
"""
from __future__ import annotations

from importlib import import_module

_EXPORTS = {
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
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)


def __dir__():
    return __all__
