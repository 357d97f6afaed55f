"""The cycle contract of a generated array: the constants and rules that the RTL controller obeys and
the SimPy model (sim/array_model.py) plays out.

Three processes run concurrently in the RTL, each advancing at most one beat per cycle; cycle 0 is
the command handshake and everything may start at cycle 1:

LOADER   (stationary inputs, or accumulators that start from partial sums) writes the shadow
         registers of the next tile that needs them, one array row per cycle (``rows`` cycles). It may
         start only when the shadow is free: one cycle after the FU with the largest skew swapped the
         previous contents in. A tile that needs no load is skipped in one cycle.
ISSUER   sends one step (one beat of every streamed input) per cycle, tiles back to back. The first
         step of a tile that needs loaded data waits for the shadow to be full; for outputs accumulated
         in place, the last step of tile n waits until tile n-1 has been drained (its results would
         overwrite the output registers).
DRAIN    (outputs accumulated in place) sends the output registers one row per cycle, starting one
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

__all__ = ["ArraySchedule", "array_schedule"]


@dataclass(frozen=True)
class ArraySchedule:
    rows: int                 # beats to load or drain the whole array (all extents but the last)
    max_skew: int             # cycles between the first and the last FU starting the same step
    has_stationary: bool
    accumulate: bool          # output accumulated in place (drained after each tile)
    psum_in: bool             # partial sums of earlier tiles come back in
    out_latency: int          # streamed outputs: cycles from issuing a step to its output beat
    pipeline: int = 0         # extra FU pipeline stages (registers the LP pass adds inside FUs)

    @property
    def has_loader(self) -> bool:
        return self.has_stationary or (self.accumulate and self.psum_in)

    def needs_load(self, first: bool) -> bool:
        return self.has_stationary or (self.accumulate and self.psum_in and not first)


def array_schedule(fg: FUGraph, pipeline: int = 0) -> ArraySchedule:
    out = fg.output
    accumulate = out.role == "accumulate"
    if accumulate:
        out_latency = 0
    elif out.tree_axes:
        out_latency = max(l.skew for l in out.lanes) + 1 + pipeline
    else:
        out_latency = max(fg.skew(l.fus[-1]) for l in out.lanes) + 1 + pipeline
    return ArraySchedule(math.prod(fg.shape[:-1]), fg.max_skew + (pipeline if accumulate else 0),
                         any(p.role == "stationary" for p in fg.inputs), accumulate, out.psum_in, out_latency, pipeline)
