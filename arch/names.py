"""Typed names: loop dimensions, array axes and operands are never bare strings below the loaders."""
from __future__ import annotations

from typing import NewType

__all__ = ["Dim", "Axis", "OperandName", "TimeVar", "SpaceVar", "space_var", "time_var"]

Dim = NewType("Dim", str)              # a loop index of the operation, e.g. Dim("k")
Axis = NewType("Axis", int)            # an array axis, 0-based
OperandName = NewType("OperandName", str)
TimeVar = NewType("TimeVar", str)      # temporal variable of a space-time map, e.g. "t_k"
SpaceVar = NewType("SpaceVar", str)    # spatial variable of a space-time map: "s0", "s1", ...


def space_var(axis: int) -> SpaceVar:
    return SpaceVar(f"s{axis}")


def time_var(dim: str) -> TimeVar:
    return TimeVar(f"t_{dim}")
