"""A generated array without a tile controller: operands in every cycle, results ``latency`` cycles later.

Larger engines (SpAtten's attention core) sequence their own phases and only need the arithmetic of an
affine array: the multipliers, the reuse nets the analysis derived (broadcasts, systolic hops, skew),
the adder trees or reduction chains, and the LP's pipeline registers. :class:`EinsumUnit` elaborates
exactly that from an :class:`~archgen.dataflow.spatten_arrays.EinsumArray` (or any FU graph whose output
is streamed without partial-sum inputs), with the same node builders as the array top level.

Ports (combinational values, no handshake; the unit always advances):

- ``in_<X>`` for a streamed input: one element per stream lane; lane i feeds FU ``lane_fus(X)[i]`` (and
  the FUs the analysis reaches from it); the unit adds the lane's skew registers itself.
- ``in_<X>`` for a stationary input: one element per distinct element of X the array touches
  (``stationary_footprint``); the caller holds them constant while the unit computes with them, from
  a register (the timing graph counts them as the stationary registers' clock-to-Q outputs).
- ``out_<Y>``: one result per output lane (FUs ``lane_fus(Y)[i]`` reduced), ``latency`` cycles after
  the step's inputs were presented.
"""
from __future__ import annotations

import networkx as nx
from amaranth import Const, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from archgen.arch.errors import SpecError, problem
from archgen.dataflow.ir import NodeKind, PortRole, Role, port_name
from archgen.dataflow.spatten_arrays import EinsumArray, operand_index, stationary_footprint
from archgen.rtlgen.datapath import RetimedNets, delay_line, shape_of

__all__ = ["EinsumUnit"]


class EinsumUnit(wiring.Component):
    def __init__(self, array: EinsumArray):
        self.array = array
        fg = array.fg
        design = fg.design
        out = fg.output
        if out.role is not Role.STREAM_OUT or out.psum_in:
            raise SpecError([problem(f"units.{array.unit}.operation", "an array unit without a controller needs a "
                                     "streamed output without partial-sum inputs", str(out.role))])
        self.latency = array.latency
        self._foot = {p.name: stationary_footprint(design, p.name) for p in fg.inputs if p.role is Role.STATIONARY}
        members = {}
        for p in fg.inputs:
            n = len(self._foot[p.name]) if p.role is Role.STATIONARY else p.n_lanes
            members[port_name(PortRole.INPUT, p.name)] = In(data.ArrayLayout(shape_of(p.width, design.type_of[p.name].signed), n))
        members[port_name(PortRole.OUTPUT, out.name)] = Out(data.ArrayLayout(shape_of(out.width, out.signed), out.n_lanes))
        super().__init__(members)

    def lane_fus(self, operand: str) -> list[tuple[int, ...]]:
        """For a streamed operand or the output: the first FU of each lane, in port order."""
        return [lane.fus[0] for lane in self.array.fg.plan(operand).lanes]

    def footprint(self, operand: str) -> tuple[tuple[int, ...], ...]:
        """For a stationary operand: the element index of each port element, in port order."""
        return self._foot[operand]

    def elaborate(self, platform):
        m = Module()
        arr = self.array
        fg, tm = arr.fg, arr.timing
        design, out = fg.design, fg.output
        pg = tm.prim.graph
        acc_shape = shape_of(out.width, out.signed)
        in_shape = {p.name: shape_of(p.width, design.type_of[p.name].signed) for p in fg.inputs}
        nets = RetimedNets(m, tm, Const(1), in_shape.__getitem__, acc_shape)
        slot = {x: {idx: i for i, idx in enumerate(f)} for x, f in self._foot.items()}
        out_port = getattr(self, port_name(PortRole.OUTPUT, out.name))
        for v in nx.topological_sort(pg):
            if nets.build(v):
                continue
            kind = v.kind
            if kind is NodeKind.MEM_PORT:
                if v not in tm.lane_offset:
                    continue                      # load port of a stationary operand: the caller holds it
                operand, lane = v.operand, v.lane
                raw = getattr(self, port_name(PortRole.INPUT, operand))[lane]
                nets.out[v] = delay_line(m, raw, tm.lane_offset[v], Const(1), f"{operand}_lane{lane}_skew",
                                         in_shape[operand])
            elif kind is NodeKind.STATIONARY_REG:
                s, operand = v.coord, v.operand
                nets.out[v] = getattr(self, port_name(PortRole.INPUT, operand))[slot[operand][operand_index(design, operand, s)]]
            elif kind is NodeKind.DRAIN:
                (u,) = list(pg.predecessors(v))
                reg = Signal(acc_shape, name=f"{out.name}_drain{v.lane}")
                m.d.sync += reg.eq(nets.src(u, v, acc_shape))
                align = self.latency - (tm.time[v] + tm.node_latency(v))
                m.d.comb += out_port[v.lane].eq(delay_line(m, reg, align, Const(1), f"{out.name}_out{v.lane}_align",
                                                         acc_shape))
            else:
                raise SpecError([problem(f"units.{arr.unit}.operation", "this primitive needs the array "
                                         "controller (accumulators are not supported in a controller-less unit)",
                                         kind)])
        return m
