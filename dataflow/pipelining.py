"""Array timing from the retimed primitive graph: the single source of register placement.

The FU graph is lowered to primitives (dataflow/primitives.py) and the delay-matching LP
(dataflow/delay_lp.py) decides how many registers sit on every primitive edge and when every node
latches. With no clock target the LP keeps exactly the registers the schedule requires (skews,
systolic hops, de-skews); with a target it adds pipeline registers where combinational paths are too
long (broadcast nets, multipliers, adder trees) and re-balances every reconvergent path. The RTL
generator builds exactly these registers, and the schedule (hence the cycle model) reads the node
times from here, so RTL and model pick up the same latencies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from .delay_lp import RetimedGraph, insert_pipeline_registers
from .delays import DelayTable
from .interconnect import FUGraph
from .primitives import PrimitiveGraph, lower_to_primitives, pipeline_slow_multipliers

__all__ = ["ArrayTiming", "array_timing", "design_timing"]


@dataclass(frozen=True)
class ArrayTiming:
    """Registers per primitive edge and node times relative to the issue of a step (cycle 0)."""

    retimed: RetimedGraph = field(repr=False, compare=False)
    clock_period_ns: float | None
    target: str
    time: dict = field(repr=False)          # primitive node -> cycle its inputs are valid (issue = 0)
    lane_offset: dict = field(repr=False)   # streamed mem port -> cycles after the issue it is read

    @property
    def prim(self) -> PrimitiveGraph:
        return self.retimed.prim

    def regs(self, u, v) -> int:
        return self.retimed.stages[(u, v)]

    def chain_depth(self, u) -> int:
        g = self.prim.graph
        return max((self.regs(u, v) for v in g.successors(u)), default=0)

    def node_latency(self, v) -> int:
        return self.prim.graph.nodes[v]["latency"]

    @property
    def pipelined(self) -> bool:
        return any(self.retimed.extra.values())


def _streamed_ports(prim: PrimitiveGraph) -> list:
    g = prim.graph
    out = []
    for v, d in g.nodes(data=True):
        if d["kind"] != "mem_port":
            continue
        if any(not g.edges[v, w]["hold"] and g.nodes[w]["kind"] != "stationary_reg" for w in g.successors(v)):
            out.append(v)
    return out


def array_timing(fg: FUGraph, clock_period_ns: float | None = None, target: str = "asic") -> ArrayTiming:
    """Lower, delay-match and (with a clock period) pipeline the array; ``None`` = no timing cuts."""
    table = DelayTable.load(target)
    prim = lower_to_primitives(fg, table)
    if clock_period_ns is not None:
        pipeline_slow_multipliers(prim, clock_period_ns)
    retimed = insert_pipeline_registers(prim, math.inf if clock_period_ns is None else clock_period_ns)
    ports = _streamed_ports(prim)
    tau = retimed.tau
    t0 = min(tau[p] for p in ports)
    mem_lat = prim.graph.nodes[ports[0]]["latency"]
    base = t0 + mem_lat
    time = {v: tau[v] - base for v in prim.graph.nodes}
    offsets = {p: tau[p] - t0 for p in ports}
    return ArrayTiming(retimed, clock_period_ns, target, time, offsets)


def design_timing(design, fg: FUGraph, *, pipeline: bool = True, target: str = "asic") -> ArrayTiming:
    """Registers per edge for the spec's clock target (``pipeline=False``: only the schedule's own).

    Cached per (spec, dataflow, target): builds, verification and whole-network simulations of one
    design share a single LP solve."""
    return _cached_timing(design.source_hash, fg.dataflow.name, 1e3 / design.clock_mhz if pipeline else None,
                          target, fg)


@lru_cache(maxsize=64)
def _cached_timing_inner(key, fg_holder):
    return array_timing(fg_holder.fg, key[2], key[3])


class _Holder:
    """Hashes by key only, so the FU graph rides along without being hashed."""

    def __init__(self, key, fg):
        self.key, self.fg = key, fg

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, _Holder) and other.key == self.key


def _cached_timing(spec_hash, dataflow, period, target, fg):
    key = (spec_hash, dataflow, period, target)
    return _cached_timing_inner(key, _Holder(key, fg))
