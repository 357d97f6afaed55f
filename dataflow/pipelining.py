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

from dataclasses import dataclass, field

from .delay_lp import RetimedGraph
from .ir import NodeKind
from .primitives import PrimitiveGraph

__all__ = ["ArrayTiming", "timing_from_retimed"]


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
        return self.prim.primitive(v).latency

    @property
    def pipelined(self) -> bool:
        return any(self.retimed.extra.values())


# nodes that read their step's control from the step line at their node time (rtlgen/array.py: swap,
# first, valid and halo taps); ports are read at lane offsets, drains are aligned by out_latency
_ON_LINE = (NodeKind.MUL, NodeKind.ADD, NodeKind.ACC, NodeKind.TREE_ADD, NodeKind.FIFO)


def _streamed_ports(prim: PrimitiveGraph) -> list:
    return [v for v in prim.nodes_of_kind(NodeKind.MEM_PORT)
            if any(not e.hold and w.kind is not NodeKind.STATIONARY_REG for w, e in prim.out_wires(v))]


def timing_from_retimed(retimed: RetimedGraph, clock_period_ns: float | None, target: str) -> ArrayTiming:
    """Node times relative to the issue of a step, read from the LP's latch times (no solve here)."""
    prim = retimed.prim
    ports = _streamed_ports(prim)
    tau = retimed.tau
    if ports:
        t0 = min(tau[p] for p in ports)
        base = t0 + prim.primitive(ports[0]).latency
        # every FU node reads the control of its step from the step line at its node time, so none may
        # run before the issue: with every input stationary and only partial sums streamed in, the LP
        # may start a multiplier before the partial-sum port's value is due (the issue then comes earlier
        # and the port is read correspondingly later)
        early = min((tau[v] for v in prim.graph.nodes if v.kind in _ON_LINE), default=base)
        if early < base:
            t0 -= base - early
            base = early
    else:
        # every input stationary (one step per tile): the step is issued when the earliest product is formed
        base = t0 = min(tau[v] for v in prim.nodes_of_kind(NodeKind.MUL))
    time = {v: tau[v] - base for v in prim.graph.nodes}
    offsets = {p: tau[p] - t0 for p in ports}
    return ArrayTiming(retimed, clock_period_ns, target, time, offsets)
