"""Workload IR: one `Layer` per tensor operation, a `Workload` as an ordered tuple of layers.

A compute layer (gemm, bmm, conv, dwconv) carries its loop nest as an einsum string in the IR's form
(``C[i,j] += A[i,k] * B[k,j]``) plus the loop bounds; element-wise and reduction layers (softmax,
layernorm, activations, pooling, residual adds, embedding gathers) carry an element count instead.
Operand sizes are derived from the einsum and the bounds, so a shape is written once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from archgen.arch.errors import SpecError, problem

__all__ = [
    "COMPUTE_KINDS",
    "ELEMENTWISE_KINDS",
    "LAYER_KINDS",
    "Layer",
    "Workload",
    "WorkloadInfo",
]

#: kinds whose work is multiply-accumulates over an einsum loop nest
COMPUTE_KINDS = frozenset({"gemm", "bmm", "conv", "dwconv"})
#: kinds whose work is counted in elements (no MACs)
ELEMENTWISE_KINDS = frozenset({"softmax", "layernorm", "rmsnorm", "gelu", "relu", "silu", "mul",
                               "add", "pool", "embedding"})
LAYER_KINDS = COMPUTE_KINDS | ELEMENTWISE_KINDS

def _operand_shapes(einsum: str, bounds: dict[str, int], where: str) -> dict[str, tuple[int, ...]]:
    """Shape (extent per index) of every operand in the einsum, output first (the IR's own parser)."""
    from archgen.arch.einsum import EinsumError, parse_operation
    try:
        op = parse_operation(einsum)
    except EinsumError as err:
        raise SpecError([problem(where, f"{err.reason} at position {err.pos}", einsum)]) from None
    missing = [d for d in op.dims if d not in bounds]
    if missing:
        raise SpecError([problem(where, f"loops {missing} have no bound; bounds are {sorted(bounds)}", einsum)])
    for x in op.operands:
        for e in x.indices:
            if any(c < 0 for _, c in e.terms) or e.const < 0:
                raise SpecError([problem(where, f"index {e} of {x.name} has a negative term; workload layers use "
                                                "non-negative affine indices", einsum)])
    return {x.name: op.tensor_shape(x.name, bounds) for x in (op.output, *op.inputs)}


@dataclass(frozen=True)
class Layer:
    """One tensor operation of a workload.

    ``count`` is how many identical instances run (e.g. the number of transformer blocks); every
    derived total (`macs`, `params`, `operand_elements` totals) multiplies by it. ``static`` names the
    operands that are stored parameters (weights); ``extra_params`` counts parameters not visible in
    the einsum (biases, normalisation scales, embedding tables, batch-norm affine terms).
    """

    name: str
    kind: str
    einsum: str = ""
    bounds: dict[str, int] = field(default_factory=dict)
    count: int = 1
    elements: int = 0
    static: tuple[str, ...] = ()
    extra_params: int = 0

    def __post_init__(self):
        where = f"layers.{self.name}"
        problems = []
        if self.kind not in LAYER_KINDS:
            problems.append(problem(f"{where}.kind", f"unknown layer kind; use one of {sorted(LAYER_KINDS)}",
                                    self.kind))
        if not isinstance(self.count, int) or self.count < 1:
            problems.append(problem(f"{where}.count", "must be a positive integer", self.count))
        for dim, size in self.bounds.items():
            if not isinstance(size, int) or size < 1:
                problems.append(problem(f"{where}.bounds.{dim}", "loop bound must be a positive integer", size))
        if self.kind in COMPUTE_KINDS and not self.einsum:
            problems.append(problem(f"{where}.einsum", f"a {self.kind} layer needs an einsum"))
        if self.kind in ELEMENTWISE_KINDS and self.elements < 0:
            problems.append(problem(f"{where}.elements", "must be >= 0", self.elements))
        if problems:
            raise SpecError(problems)
        # hashable and order-independent equality for a frozen value with a dict field
        object.__setattr__(self, "bounds", dict(sorted(self.bounds.items())))
        if self.einsum:
            shapes = _operand_shapes(self.einsum, self.bounds, f"{where}.einsum")
            missing = [s for s in self.static if s not in shapes]
            if missing:
                raise SpecError([problem(f"{where}.static", f"names operands not in {self.einsum!r}", missing)])

    def __hash__(self):
        return hash((self.name, self.kind, self.einsum, tuple(self.bounds.items()), self.count,
                     self.elements, self.static, self.extra_params))

    @property
    def operand_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of every einsum operand (output first); inputs of strided convs include the halo."""
        if not self.einsum:
            return {}
        return _operand_shapes(self.einsum, self.bounds, f"layers.{self.name}.einsum")

    @property
    def operand_elements(self) -> dict[str, int]:
        """Elements of every operand for one instance."""
        return {name: math.prod(shape) for name, shape in self.operand_shapes.items()}

    @property
    def macs_once(self) -> int:
        """Multiply-accumulates of one instance: the product of the loop bounds."""
        return math.prod(self.bounds.values()) if self.kind in COMPUTE_KINDS else 0

    @property
    def macs(self) -> int:
        """Multiply-accumulates of all `count` instances."""
        return self.macs_once * self.count

    @property
    def params(self) -> int:
        """Stored parameters of all instances (static operands plus `extra_params`)."""
        sizes = self.operand_elements
        return self.count * (sum(sizes[s] for s in self.static) + self.extra_params)

    def operation(self):
        """The loop nest as the IR's `Operation` (parsed by `archgen.arch.einsum.parse_operation`)."""
        if not self.einsum:
            raise SpecError([problem(f"layers.{self.name}.einsum",
                                     f"a {self.kind} layer has no loop nest to map")])
        from archgen.arch.einsum import parse_operation  # the parser lives in arch; import on use

        return parse_operation(self.einsum)


class WorkloadInfo(NamedTuple):
    """Library entry: the name to pass to `get_workload`, its family and what it accepts."""

    name: str
    family: str
    description: str
    default_seq: int | None
    max_seq: int | None
    phases: tuple[str, ...]


class Workload(NamedTuple):
    """An ordered tuple of layers plus the parameters it was built with."""

    name: str
    layers: tuple[Layer, ...]
    seq: int | None = None
    phase: str = "prefill"
    kv_len: int | None = None
    batch: int = 1
    heads: int | None = None
    n_layers: int | None = None
    head_dim: int | None = None

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def elementwise(self) -> int:
        return sum(layer.elements * layer.count for layer in self.layers)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise SpecError([problem("layer", f"no layer of that name in {self.name}; "
                                          f"known: {[l.name for l in self.layers]}", name)])
