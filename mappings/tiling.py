"""How a problem of any size is tiled onto the array under one dataflow.

A tile is one iteration of the outer loops (tile indices of the spatial loops, and whatever
non-spatial loops the dataflow runs outside the tile); inside it the array runs the inner loops as
``steps`` consecutive steps. Spatial loops whose size is not a multiple of the array extent get a
padded last tile (the DRAM side feeds zeros and drops the padded results).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Iterator, Mapping

from archgen.arch.errors import SpecError, problem
from archgen.arch.spec import Dataflow, Design

__all__ = ["TileMapping", "Tile", "map_problem"]


@dataclass(frozen=True)
class Tile:
    index: int
    outer: tuple[tuple[str, int], ...]     # outer loop -> its temporal index in this tile
    first: bool                            # first visit of this output block: no partial sums to read


@dataclass(frozen=True)
class TileMapping:
    """Problem bounds, trip counts and tile order of one workload on one dataflow."""

    design: Design
    dataflow: Dataflow
    bounds: tuple[tuple[str, int], ...]

    @property
    def bound(self) -> dict[str, int]:
        return dict(self.bounds)

    def trips(self) -> dict[str, int]:
        """Trip count of each loop's temporal variable (tiles for spatial loops)."""
        axis_of = self.dataflow.axis_of
        return {d: (math.ceil(n / self.design.shape[axis_of[d]]) if d in axis_of else n) for d, n in self.bounds}

    @property
    def outer_dims(self) -> tuple[str, ...]:
        return self.dataflow.outer_dims()

    @property
    def inner_dims(self) -> tuple[str, ...]:
        return self.dataflow.inner_dims()

    @property
    def steps(self) -> int:
        t = self.trips()
        return math.prod(t[d] for d in self.inner_dims)

    @property
    def n_tiles(self) -> int:
        t = self.trips()
        return math.prod(t[d] for d in self.outer_dims)

    @property
    def reduction_outer_dims(self) -> tuple[str, ...]:
        out = self.design.operation.output
        return tuple(d for d in self.outer_dims if not out.uses(d))

    def tiles(self) -> Iterator[Tile]:
        t = self.trips()
        red = set(self.reduction_outer_dims)
        for n, idx in enumerate(itertools.product(*[range(t[d]) for d in self.outer_dims])):
            outer = tuple(zip(self.outer_dims, idx))
            yield Tile(n, outer, all(v == 0 for d, v in outer if d in red))

    @property
    def macs(self) -> int:
        return math.prod(n for _, n in self.bounds)

    @property
    def padded_macs(self) -> int:
        """MAC slots the array spends, padded edges included."""
        return self.n_tiles * self.steps * self.design.n_fus


def map_problem(design: Design, bounds: Mapping[str, int], dataflow: str | Dataflow | None = None) -> TileMapping:
    """Check the problem bounds against the operation and build the mapping."""
    df = dataflow if isinstance(dataflow, Dataflow) else design.dataflow(dataflow)
    problems = []
    for d in design.operation.dims:
        if d not in bounds:
            problems.append(problem(f"bounds.{d}", "every loop needs a size"))
        elif not isinstance(bounds[d], int) or bounds[d] < 1:
            problems.append(problem(f"bounds.{d}", "loop sizes are positive integers", bounds[d]))
    for d in bounds:
        if d not in design.operation.dims:
            problems.append(problem(f"bounds.{d}", f"no loop of that name; loops are {', '.join(design.operation.dims)}"))
    if problems:
        raise SpecError(problems)
    return TileMapping(design, df, tuple((d, int(bounds[d])) for d in design.operation.dims))
