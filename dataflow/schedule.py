"""The cycle contract of a generated array: the constants and rules that the RTL controller obeys and
the SimPy model (sim/array_model.py) plays out.

Three processes run concurrently in the RTL, each advancing at most one beat per cycle; cycle 0 is
the command handshake and everything may start at cycle 1:

LOADER   (stationary inputs, or accumulators that start from partial sums) writes the shadow
         registers of the next tile that needs them, one array row per cycle (``rows`` cycles). It may
         start only when the shadow is free: one cycle after the FU with the largest skew swapped the
         previous contents in. A tile that needs no load is skipped in one cycle. A partial-sum preload
         (accumulators of a tile that is not its output block's first visit) also waits until every
         earlier tile has drained, so it reads what they wrote.
ISSUER   sends one step (one beat of every streamed input) per cycle, tiles back to back. The first
         step of a tile that needs loaded data waits for the shadow to be full; for outputs accumulated
         in place, the last step of tile n waits until tile n-1 has been drained (its results would
         overwrite the output registers); for streamed outputs read back as partial sums, a step of a
         later visit waits until the output beat it reads has left (docs/architecture.md).
DRAIN    (outputs accumulated in place) sends the output registers one row per cycle (``drain_rows``
         rows: fewer than ``rows`` when the output is also reduced across array axes), starting one
         cycle after the FU with the largest skew committed the tile's last step.
         Streamed outputs leave ``out_latency`` cycles after their step was issued.

``done`` rises in the cycle after the last output: the cycle the last drain row's count becomes
visible, or one cycle after the last streamed output beat. With an ideal DRAM side the array never
waits on a stream, so the RTL's cycles equal the model's exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .interconnect import FUGraph
from .ir import Node, NodeKind, Role
from .pipelining import ArrayTiming

__all__ = ["ArraySchedule", "array_schedule"]


@dataclass(frozen=True)
class ArraySchedule:
    rows: int                 # beats to load the array's shadow registers (one per array row)
    commit_skew: int          # cycles from issuing a step to the last FU accumulating it
    swap_skew: int            # cycles from issuing a tile's first step to the last FU swapping in its shadow
    has_stationary: bool
    accumulate: bool          # output accumulated in place (drained after each tile)
    psum_in: bool             # partial sums of earlier tiles come back in
    out_latency: int          # streamed outputs: cycles from issuing a step to its output beat
    pipeline_registers: int = 0   # registers the LP added for the clock target (0: none)
    drain_rows: int = 0       # accumulated outputs: beats to drain (or preload) the accumulators
    # outer loops over which the stationary inputs do not change (an output held per run of R with D outside the
    # tile, every stationary input using neither D nor R: ``stationary_keep_dims``): a tile with one of these
    # counters not at 0 keeps the shadow's data (no load, no swap), as the tile [D, R] loads it once
    keep_dims: tuple[str, ...] = ()

    @property
    def has_loader(self) -> bool:
        return self.has_stationary or (self.accumulate and self.psum_in)

    def needs_load(self, first: bool, keeps: bool = False) -> bool:
        """``keeps``: one of ``keep_dims``' counters is not 0 at this tile (the stationary data stays)."""
        return (self.has_stationary and not keeps) or (self.accumulate and self.psum_in and not first)

    def tile_keeps(self, tile) -> bool:
        """A tile (mappings/tiling.py ``Tile``) whose stationary data is the previous tile's: it loads nothing."""
        return bool(self.keep_dims) and any(v != 0 for d, v in tile.outer if d in self.keep_dims)

    def loads(self, tile) -> bool:
        """``needs_load`` of a tile: the loader fills the shadow for it and its first step swaps it in."""
        return self.needs_load(tile.first, self.tile_keeps(tile))


def array_schedule(fg: FUGraph, timing: ArrayTiming) -> ArraySchedule:
    """The schedule constants of ``fg`` under ``timing`` (called by compile_array only)."""
    t = timing.time
    g = timing.prim.graph
    out = fg.output
    accumulate = out.role is Role.ACCUMULATE
    accs = [v for v in g if v.kind is NodeKind.ACC]
    commit = max((t[v] for v in accs), default=0)
    muls = [Node(NodeKind.MUL, s) for s in fg.coords()]
    swaps = [t[m] for m in muls if any(u.kind is NodeKind.STATIONARY_REG for u in g.predecessors(m))]
    if accumulate and out.psum_in:
        swaps += [t[v] for v in accs]
    drains = [v for v in g if v.kind is NodeKind.DRAIN]
    out_latency = 0 if accumulate else max(t[v] + timing.node_latency(v) for v in drains)
    stationary = any(p.role is Role.STATIONARY for p in fg.inputs)
    # one accumulator per output element: as many as FUs unless the output is also reduced across the array
    drain_rows = len(out.lanes[0].fus) if accumulate else 0
    rows = math.prod(fg.shape[:-1]) if stationary or not accumulate else drain_rows
    return ArraySchedule(rows, commit, max(swaps, default=0), stationary, accumulate, out.psum_in, out_latency,
                         sum(timing.retimed.extra.values()), drain_rows)
