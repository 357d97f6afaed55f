"""The cycle contract of a generated array: the closed form that the RTL controller obeys and the
cycle model evaluates.

Per tile the controller runs, in order (one state per cycle):
  TILE     1 cycle: tile counters advance, the first-visit flag is decided.
  LOAD     R beats when some input is stationary, or the output is accumulated in place and partial
           sums of earlier tiles must be read back (R = product of all array extents but the last).
  COMPUTE  T + fill cycles: T = steps (one input beat per cycle); fill = the largest FU skew for
           accumulate-in-place outputs, the largest drain skew + 1 for streamed outputs.
  DRAIN    R beats for accumulate-in-place outputs (one array row per beat), none otherwise.
The command handshake takes 1 cycle and ``done`` rises right after the last tile, so
    total = 1 + sum over tiles (1 + LOAD + COMPUTE + DRAIN)
with an ideal DRAM side (every stream beat offered when asked, every result taken at once).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from archgen.mappings.tiling import Tile, TileMapping

from .interconnect import FUGraph

__all__ = ["ArraySchedule", "array_schedule"]


@dataclass(frozen=True)
class ArraySchedule:
    rows: int                 # R: beats to load or drain the whole array
    has_stationary: bool
    accumulate: bool          # output accumulated in place (drained after the tile)
    psum_in: bool             # partial sums of earlier tiles come back in
    fill: int                 # COMPUTE cycles beyond the steps
    out_latency: int          # streamed outputs: cycles from an input beat to its output beat
    pipeline: int = 0         # extra FU pipeline stages (LP-inserted registers on the FU path)

    def load_cycles(self, first: bool) -> int:
        needs = self.has_stationary or (self.accumulate and self.psum_in and not first)
        return self.rows if needs else 0

    def compute_cycles(self, steps: int) -> int:
        return steps + self.fill

    def drain_cycles(self) -> int:
        return self.rows if self.accumulate else 0

    def tile_cycles(self, steps: int, first: bool) -> int:
        return 1 + self.load_cycles(first) + self.compute_cycles(steps) + self.drain_cycles()

    def total_cycles(self, mapping: TileMapping) -> int:
        """Closed form for a whole problem; the SimPy model must agree with it on an ideal DRAM side."""
        steps = mapping.steps
        n_first = sum(1 for t in mapping.tiles() if t.first) if self.psum_in else mapping.n_tiles
        n_other = mapping.n_tiles - n_first
        return 1 + n_first * self.tile_cycles(steps, True) + n_other * self.tile_cycles(steps, False)


def array_schedule(fg: FUGraph, pipeline: int = 0) -> ArraySchedule:
    rows = math.prod(fg.shape[:-1])
    out = fg.output
    accumulate = out.role == "accumulate"
    if accumulate:
        fill = fg.max_skew + pipeline
        out_latency = 0
    else:
        span = max(l.skew + _chain_len(fg, l) for l in out.lanes) if out.tree_axes == () else max(l.skew for l in out.lanes)
        out_latency = span + 1 + pipeline
        fill = out_latency
    return ArraySchedule(rows, any(p.role == "stationary" for p in fg.inputs), accumulate, out.psum_in, fill,
                         out_latency, pipeline)


def _chain_len(fg: FUGraph, lane) -> int:
    """Skew from a reduction chain's root to its terminal FU."""
    return fg.skew(lane.fus[-1]) - fg.skew(lane.fus[0])
