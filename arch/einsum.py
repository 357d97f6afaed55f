"""Tensor operations written as einsums with affine indices, parsed into structured IR.

``C[i,j] += A[i,k] * B[k,j]`` or ``O[n,k,p,q] += I[n,c,p*2+r,q*2+s] * W[k,c,r,s]``: one output
accumulating the product of input operands over a perfect loop nest. Loop dimensions are the index
names in order of first appearance (output first), so GEMM gives (i, j, k).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .affine import AffineExpr, AffineParseError, parse_affine
from .names import Dim, OperandName

__all__ = ["Operand", "Operation", "EinsumError", "parse_operation"]


class EinsumError(ValueError):
    """A problem in an einsum string, with the character position (loaders turn it into a SpecError)."""

    def __init__(self, message: str, text: str, pos: int):
        self.text, self.pos, self.reason = text, pos, message
        super().__init__(f"{message} at position {pos} of {text!r}")


@dataclass(frozen=True)
class Operand:
    """A tensor access ``name[indices]``; each index is an affine expression over the loop dimensions."""

    name: OperandName
    indices: tuple[AffineExpr, ...]

    def access_matrix(self, dims: tuple[Dim, ...]) -> np.ndarray:
        """A_X: rows are tensor dimensions, columns are loop dimensions."""
        return np.array([[e.coeff(d) for d in dims] for e in self.indices], dtype=np.int64).reshape(len(self.indices), len(dims))

    def access_offset(self) -> np.ndarray:
        return np.array([e.const for e in self.indices], dtype=np.int64)

    def uses(self, dim: str) -> bool:
        return any(e.coeff(dim) != 0 for e in self.indices)

    def __str__(self) -> str:
        return f"{self.name}[{','.join(str(e).replace(' ', '') for e in self.indices)}]"


@dataclass(frozen=True)
class Operation:
    """``output += prod(inputs)`` over the loop nest ``dims``."""

    dims: tuple[Dim, ...]
    output: Operand
    inputs: tuple[Operand, ...]
    text: str = ""

    @property
    def operands(self) -> tuple[Operand, ...]:
        return self.inputs + (self.output,)

    def operand(self, name: str) -> Operand:
        for op in self.operands:
            if op.name == name:
                return op
        raise KeyError(name)

    @cached_property
    def reduction_dims(self) -> tuple[Dim, ...]:
        return tuple(d for d in self.dims if not self.output.uses(d))

    def tensor_shape(self, operand: str, bounds: dict[str, int]) -> tuple[int, ...]:
        """Smallest tensor extent per dimension that holds every access inside the loop bounds."""
        op = self.operand(operand)
        shape = []
        for e in op.indices:
            hi = e.const + sum(c * (bounds[v] - 1) for v, c in e.terms if c > 0)
            shape.append(int(hi) + 1)
        return tuple(shape)

    def __str__(self) -> str:
        return self.text or f"{self.output} += {' * '.join(map(str, self.inputs))}"


_ACCESS = re.compile(r"\s*([A-Za-z_][A-Za-z_0-9]*)\s*\[([^\[\]]*)\]\s*")


def _parse_access(text: str, start: int, full: str) -> tuple[str, list[tuple[str, int]], int]:
    m = _ACCESS.match(text, start)
    if not m:
        raise EinsumError("expected an operand such as A[i,k]", full, start)
    name = m.group(1)
    inner_start = m.start(2)
    parts, pos = [], inner_start
    for piece in m.group(2).split(","):
        parts.append((piece, pos))
        pos += len(piece) + 1
    return name, parts, m.end()


def parse_operation(text: str) -> Operation:
    """Parse ``OUT[...] += IN1[...] * IN2[...]`` (two or more inputs)."""
    if not isinstance(text, str) or "+=" not in text:
        raise EinsumError("an operation reads OUT[...] += IN[...] * IN[...]; '+=' is missing", str(text), 0)
    lhs_end = text.index("+=")
    out_name, out_parts, end = _parse_access(text, 0, text)
    if text[end:lhs_end].strip():
        raise EinsumError("unexpected text before '+='", text, end)
    pos = lhs_end + 2
    inputs_raw = []
    while True:
        name, parts, pos = _parse_access(text, pos, text)
        inputs_raw.append((name, parts))
        if pos >= len(text):
            break
        if text[pos] != "*":
            raise EinsumError(f"expected '*' between operands, found {text[pos]!r}", text, pos)
        pos += 1
    if len(inputs_raw) < 2:
        raise EinsumError("an operation reads OUT[...] += IN[...] * IN[...] with at least two inputs (a product); "
                          "one input is a copy, not a multiply-accumulate", text, pos)
    names = [out_name] + [n for n, _ in inputs_raw]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise EinsumError(f"operand {n!r} appears twice; give each operand its own name", text, text.find(n, 1))
    dims: list[str] = []

    def parse_indices(parts):
        exprs = []
        for piece, at in parts:
            if not piece.strip():
                raise EinsumError("empty index", text, at)
            try:
                e = parse_affine(piece)
            except AffineParseError as err:
                raise EinsumError(err.reason, text, at + err.pos) from None
            for v in e.variables:
                if v not in dims:
                    dims.append(v)
            exprs.append(e)
        return tuple(exprs)

    out = Operand(OperandName(out_name), parse_indices(out_parts))
    ins = tuple(Operand(OperandName(n), parse_indices(p)) for n, p in inputs_raw)
    for e, (piece, at) in zip(out.indices, out_parts):
        if len(e.terms) != 1 or e.terms[0][1] != 1 or e.const != 0:
            lead = len(piece) - len(piece.lstrip())
            raise EinsumError(f"output index {e} must be a plain loop index", text, at + lead)
    return Operation(tuple(Dim(d) for d in dims), out, ins, " ".join(text.split()))
