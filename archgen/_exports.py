"""Curated, lazily loaded package exports (PEP 562), shared by every archgen subpackage's ``__init__``.

A subpackage lists ``name -> submodule``; ``from archgen.dataflow import compile_array`` then imports
only ``archgen.dataflow.compile``, so importing a package stays cheap and the model layers never load
a framework (Amaranth, cocotb) they do not use.
"""
from __future__ import annotations

from importlib import import_module


def lazy_exports(package: str, exports: dict[str, str]):
    """``(__all__, __getattr__, __dir__)`` for ``package`` exporting each name from its submodule."""
    names = sorted(exports)

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f".{module}", package), name)

    def __dir__():
        return names

    return names, __getattr__, __dir__
