"""Dataflow fusion: several dataflows of one design on one array, selected at run time (DESIGN.md section 4).

Each dataflow is analysed on its own (its FU graph from the reuse analysis, its primitive graph); the
fused design is the union of the primitive graphs, whose node keys already name physical hardware (the
multiplier and accumulator of FU s, the stationary register of operand X at FU s, memory lane l of X,
drain lane l). Sharing follows from the keys: every multiplier, accumulator, adder and register chain
that two dataflows both use is one piece of hardware. Where an input of a node has different sources in
different dataflows, a multiplexer driven by the dataflow select register picks the source (a
:class:`MuxPoint`). Register chains are shared too: a net is one chain as deep as the deepest tap any
dataflow needs, and every dataflow taps it at its own depth, so an edge whose register count differs
between dataflows costs a mux of two taps, not a second chain.

Muxes sit on the combinational path into their node, so :func:`with_mux_delays` adds
``ceil(log2 inputs)`` two-input mux delays (the delay table's ``mux2``) to those wires before the LP
runs; the LP (``insert_pipeline_registers_fused``, the epigraph form: a shared edge or net pays the
maximum over dataflows of its registers) may then pipeline the longer paths, which is the only way
fusion can change a dataflow's cycle count against its single design. Because the tap a dataflow reads
is only known after the LP, :func:`retime_fused` iterates: it counts the distinct (source, tap) pairs
per mux and re-solves with the wider muxes until the count is stable (at most a few rounds: a mux never
has more inputs than there are dataflows).

This module holds the model-layer half (no amaranth): the merge, the mux plan and its cost figures.
rtlgen/fused_array.py builds the hardware from the same plan; dataflow/compile.py ``compile_fused``
runs the passes and returns one view (a :class:`~archgen.dataflow.compile.CompiledArray` with the
fused timing) per dataflow, which is what the cycle model and the testbenches use.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from archgen.arch.errors import SpecError, problem
from archgen.arch.spec import Dataflow, Design

import networkx as nx

from .delay_lp import FusedRetiming, RetimedGraph, insert_pipeline_registers_fused
from .interconnect import FUGraph
from .ir import STEP_BITS, TRIP_BITS, CommandField, CommandLayout, Node, NodeKind, Port, PortRole
from .primitives import PrimitiveGraph

__all__ = ["FusedArray", "MuxPoint", "FusionPlan", "FuMerge", "merge_fu_graphs", "check_fusable", "slot_of",
           "numbered_slots", "mux_plan", "with_mux_delays", "retime_fused", "fused_command_layout", "fused_ports",
           "fused_stt_view", "is_stt_view", "SELECT_FIELD", "relabel_prim", "relabel_retimed", "relabel_fu_graph",
           "relabel_timing", "hardware_view"]

SELECT_FIELD = "dataflow"     # the command field that selects the dataflow (its index in the fuse list)


def check_fusable(design: Design, names: Sequence[str], path: str = "fuse") -> tuple[Dataflow, ...]:
    """The dataflows named by ``names``, or a SpecError naming ``path`` (unknown or repeated names, fewer
    than two). All dataflows of one spec compute the spec's one operation, so they are fusable by type; a
    ``schedule: map`` dataflow fuses as it is built alone (its pad flags and FIFO depths run while it is selected)."""
    known = [d.name for d in design.dataflows]
    problems = []
    if len(names) < 2:
        problems.append(problem(path, "fusion needs at least two dataflows", list(names)))
    for n in names:
        if n not in known:
            problems.append(problem(path, f"no dataflow named {n!r} in spec {design.name!r}; choose from: "
                                    f"{', '.join(known)}", n))
    dup = sorted({n for n in names if list(names).count(n) > 1})
    if dup:
        problems.append(problem(path, f"dataflow(s) {', '.join(dup)} listed twice", list(names)))
    if problems:
        raise SpecError(problems)
    return tuple(design.dataflow(n) for n in names)


# ---------------------------------------------------------------------------------------------------
# FU-graph level: which FU inputs change source between dataflows

@dataclass(frozen=True)
class FuMerge:
    """The merged FU graph: edges with the dataflows that use them, and the FU inputs that need a mux."""

    dataflows: tuple[str, ...]
    edges: dict = field(repr=False)          # (u, v) -> tuple of dataflow names using the edge
    mux_inputs: tuple = ()                   # ((node, operand), {dataflow: sources}) with >1 distinct sources

    @property
    def shared_edges(self) -> int:
        return sum(1 for d in self.edges.values() if len(d) > 1)


def merge_fu_graphs(fgs: Sequence[FUGraph]) -> FuMerge:
    edges: dict = {}
    inputs: dict = {}
    for fg in fgs:
        name = fg.dataflow.name
        for u, v, link in fg.links():
            edges.setdefault((u, v), []).append(name)
            inputs.setdefault((v, link.operand), {}).setdefault(name, []).append(u)
    mux = []
    for key in sorted(inputs, key=lambda k: (k[0], k[1])):
        per = {d: tuple(sorted(s)) for d, s in inputs[key].items()}
        if len(set(per.values())) > 1:
            mux.append((key, per))
    return FuMerge(tuple(fg.dataflow.name for fg in fgs), {e: tuple(d) for e, d in edges.items()}, tuple(mux))


# ---------------------------------------------------------------------------------------------------
# a folded map beside dataflows that fold otherwise: its FUs renamed from logical to physical

def _node(n: Node, place: dict) -> Node:
    """``n`` at FU ``place[n.coord]`` (nodes outside an FU, and FUs ``place`` does not name, unchanged)."""
    return replace(n, coord=place[n.coord]) if n.coord in place else n


def relabel_prim(prim: PrimitiveGraph, place: dict) -> PrimitiveGraph:
    """``prim`` with every FU-internal node (and every wire's FU edge) at FU ``place[coord]``: a folded map's
    graph, keyed by its logical FUs, renamed to the physical FUs its placement (a bijection) runs them on, so
    that fusion's merge (node keys name hardware), mux plan and LP see the hardware it shares. Order kept."""
    if not place:
        return prim
    def wire(w):
        return w if w.fu_edge is None else replace(w, fu_edge=tuple(_node(x, place) for x in w.fu_edge))
    return PrimitiveGraph.build(((_node(v, place), p) for v, p in prim.primitives.items()),
                                ((_node(u, place), _node(v, place), wire(w)) for u, v, w in prim.edges()),
                                target=prim.target, clk_to_q_ns=prim.clk_to_q_ns, setup_ns=prim.setup_ns,
                                name=prim.name)


def relabel_retimed(rt: RetimedGraph, place: dict) -> RetimedGraph:
    """The LP's result on a relabelled graph (:func:`relabel_prim`): the same registers and times per node."""
    if not place:
        return rt
    def n(v):
        return _node(v, place)
    return replace(rt, prim=relabel_prim(rt.prim, place),
                   tau=MappingProxyType({n(v): t for v, t in rt.tau.items()}),
                   stages=MappingProxyType({(n(u), n(v)): s for (u, v), s in rt.stages.items()}),
                   extra=MappingProxyType({(n(u), n(v)): s for (u, v), s in rt.extra.items()}),
                   chain_depth=MappingProxyType({n(u): s for u, s in rt.chain_depth.items()}))


def relabel_timing(timing, place: dict):
    """An ArrayTiming (dataflow/pipelining.py) on the relabelled graph."""
    return replace(timing, retimed=relabel_retimed(timing.retimed, place),
                   time={_node(v, place): t for v, t in timing.time.items()},
                   lane_offset={_node(v, place): t for v, t in timing.lane_offset.items()})


def relabel_fu_graph(fg: FUGraph, place: dict) -> FUGraph:
    """The FU graph with FU s at ``place[s]``: nodes, links, roles and the operand plans' lanes (its design and
    dataflow, the logical ones, are kept)."""
    if not place:
        return fg
    g = nx.DiGraph()
    g.add_nodes_from(_node(v, place) for v in fg.graph.nodes)
    g.add_edges_from((_node(u, place), _node(v, place)) for u, v in fg.graph.edges)
    nx.freeze(g)
    plans = tuple(replace(p, lanes=tuple(replace(lane, fus=tuple(place.get(c, c) for c in lane.fus))
                                         for lane in p.lanes)) for p in fg.plans)
    return replace(fg, graph=g, plans=plans,
                   link_of=MappingProxyType({(_node(u, place), _node(v, place)): e
                                             for (u, v), e in fg.link_of.items()}),
                   fu_roles=MappingProxyType({_node(v, place): r for v, r in fg.fu_roles.items()}))


def hardware_view(view, place: dict | None):
    """A fused design's view with its FU nodes at the physical FUs (what rtlgen/fused_array.py builds from):
    the view itself unless its dataflow is a folded map on its own logical array (``place``: logical FU ->
    physical FU). Its design, dataflow and schedule stay the logical ones (loads, drains and lanes count in
    them)."""
    if not place:
        return view
    return replace(view, fu_graph=relabel_fu_graph(view.fu_graph, place), timing=relabel_timing(view.timing, place))


# ---------------------------------------------------------------------------------------------------
# primitive level: the hardware's mux points

def slot_of(v: Node, u: Node) -> object:
    """Which input of node ``v`` the edge from ``u`` drives: a multiplier has one input per operand, a
    partial-sum adder its own product and the chain, a tree adder its two inputs (by position, given by
    the caller), everything else one data input."""
    if v.kind is NodeKind.MUL:
        return u.operand
    if v.kind is NodeKind.ADD:
        return "product" if u.kind is NodeKind.MUL and u.coord == v.coord else "chain"
    return "in"


def _inputs(prim: PrimitiveGraph, v: Node) -> list[tuple[object, Node]]:
    """(slot, source) of the data inputs of ``v`` in one dataflow (hold edges only into multipliers:
    a stationary register feeds the product; preloads and read-outs of accumulators are not data inputs)."""
    ins = [(u, e) for u, e in prim.in_wires(v) if not e.hold or v.kind is NodeKind.MUL]
    if v.kind is NodeKind.TREE_ADD:
        return [(k, u) for k, (u, _) in enumerate(sorted(ins, key=lambda ue: repr(ue[0].path)))]
    return numbered_slots([(slot_of(v, u), u) for u, _ in ins])


def numbered_slots(items: list) -> list:
    """``items`` = [(slot, source, ...)] of one node in one dataflow with every slot one input: where several
    sources drive one slot (an adder where two partial-sum chains meet, a reduction chained along two array axes),
    the second and later, in the order of their source's path, become ``slot#2``, ``slot#3``, ... (each its own
    adder input; before, the fused array kept one of them)."""
    count: dict = {}
    for it in items:
        count[it[0]] = count.get(it[0], 0) + 1
    if all(n == 1 for n in count.values()):
        return items
    rank = {}
    for slot in count:
        same = sorted((it for it in items if it[0] == slot), key=lambda it: repr(it[1].path))
        rank.update({id(it): n for n, it in enumerate(same)})
    return [it if rank[id(it)] == 0 else (f"{it[0]}#{rank[id(it)] + 1}",) + tuple(it[1:]) for it in items]


@dataclass(frozen=True)
class MuxPoint:
    """One node input whose source (or register tap) depends on the dataflow."""

    node: Node
    slot: object
    sources: tuple                  # per dataflow (in fuse order): (source node, tap registers) or None
    inputs: int                     # distinct (source, tap) pairs: the mux's data inputs

    @property
    def levels(self) -> int:
        return math.ceil(math.log2(self.inputs)) if self.inputs > 1 else 0


def mux_plan(prims: Sequence[PrimitiveGraph], stages: Sequence | None = None, extra_mul_inputs: int = 0
             ) -> tuple[MuxPoint, ...]:
    """Every (node, slot) with more than one distinct source across dataflows; with ``stages`` (each
    dataflow's registers per edge, from the LP) a different tap of the same source counts as a source.
    ``extra_mul_inputs``: sources of every multiplier operand outside these graphs (the chains of fused
    skewed stt maps, one per map), which widen those muxes."""
    slots: dict = {}
    for m, prim in enumerate(prims):
        for v in prim.graph.nodes:
            for slot, u in _inputs(prim, v):
                k = 0 if stages is None else stages[m].get((u, v), 0)
                slots.setdefault((v, slot), [None] * len(prims))[m] = (u, k)
    out = []
    for (v, slot), per in sorted(slots.items(), key=lambda kv: (kv[0][0], repr(kv[0][1]))):
        distinct = {s for s in per if s is not None}
        n = len(distinct) + (extra_mul_inputs if v.kind is NodeKind.MUL else 0)
        if n > 1:
            out.append(MuxPoint(v, slot, tuple(per), n))
    return tuple(out)


def with_mux_delays(prims: Sequence[PrimitiveGraph], muxes: Sequence[MuxPoint], mux2_ns: float
                    ) -> tuple[PrimitiveGraph, ...]:
    """The dataflows' primitive graphs with each muxed input's wire slowed by its mux levels. The mux sits at the
    receiver, after the register chain it picks a tap of (rtlgen/fused_array.py ``_pick``): the LP counts this
    delay after the edge's registers, in the receiver's segment (delay_lp.py ``_wire_after_registers``)."""
    extra = {}
    for mp in muxes:
        for m, src in enumerate(mp.sources):
            if src is not None:
                extra[(m, src[0], mp.node)] = mp.levels * mux2_ns
    out = []
    for m, prim in enumerate(prims):
        wires = [(u, v, replace(w, wire_ns=w.wire_ns + extra.get((m, u, v), 0.0))) for u, v, w in prim.edges()]
        out.append(PrimitiveGraph.build(prim.primitives.items(), wires, target=prim.target,
                                        clk_to_q_ns=prim.clk_to_q_ns, setup_ns=prim.setup_ns,
                                        name=prim.name + "+mux"))
    return tuple(out)


@dataclass(frozen=True)
class FusionPlan:
    """The fused hardware: per dataflow its (mux-delayed) primitive graph and the LP's registers, plus the
    mux points built from them."""

    names: tuple[str, ...]
    prims: tuple[PrimitiveGraph, ...] = field(repr=False)
    retiming: FusedRetiming = field(repr=False)
    muxes: tuple[MuxPoint, ...] = field(repr=False)
    rounds: int                     # LP solves until the mux widths were stable
    fu_merge: FuMerge = field(repr=False)

    @property
    def mux_inputs(self) -> int:
        return sum(mp.inputs for mp in self.muxes)


def retime_fused(names: Sequence[str], prims: Sequence[PrimitiveGraph], mux2_ns: float, period_ns: float,
                 fu_merge: FuMerge, extra_mul_inputs: int = 0) -> FusionPlan:
    """Fused LP with mux delays, re-solved until each mux's input count is the one its delay assumed
    (``extra_mul_inputs``: see :func:`mux_plan`). No tiled dataflow (a design of skewed stt maps only): no LP,
    no shared register, no mux point of the tiled graphs."""
    if not prims:
        return FusionPlan(tuple(names), (), FusedRetiming((), MappingProxyType({}), 0, 0, 0, 0, 0.0, True), (), 0,
                          fu_merge)
    muxes = mux_plan(prims, extra_mul_inputs=extra_mul_inputs)
    rounds = 0
    while True:
        rounds += 1
        delayed = with_mux_delays(prims, muxes, mux2_ns)
        retiming = insert_pipeline_registers_fused(delayed, period_ns)
        built = mux_plan(delayed, [r.stages for r in retiming.per_dataflow], extra_mul_inputs)
        levels = {(mp.node, mp.slot): mp.levels for mp in muxes}
        if all(levels.get((mp.node, mp.slot), 0) >= mp.levels for mp in built) or rounds >= len(prims) + 2:
            return FusionPlan(tuple(names), delayed, retiming, built, rounds, fu_merge)
        muxes = built


# ---------------------------------------------------------------------------------------------------
# skewed stt maps in a fused design

def is_stt_view(view) -> bool:
    """A fused design's view of a skewed stt map (a CompiledSttArray; tiled views are CompiledArrays)."""
    return hasattr(view, "network")


def fused_stt_view(design: Design, df: Dataflow, target: str, period: float | None, shared_stages: int,
                   mux_ns: float = 0.0):
    """The skewed map ``df`` as it runs in a fused design: its chains and lanes are its own (muxed onto the
    shared streams), its products come from the shared multipliers, whose ``shared_stages`` registers the
    tiled dataflows' LP placed, through operand muxes of ``mux_ns``. The partial sums therefore run
    ``max(own, shared_stages)`` slots behind the products (``product_stages``), where ``own`` is what the
    map needs for the clock with the muxes in its path: when that is larger the extra registers sit behind
    the shared ones, on the stt path only."""
    from .stt_array import compile_stt_array, fused_product_stages, with_product_stages
    single = compile_stt_array(design, df, target, period is not None)
    own = fused_product_stages(single, mux_ns)
    return with_product_stages(single, max(own, int(shared_stages)), mux_ns)


# ---------------------------------------------------------------------------------------------------
# the fused top level's interface

def fused_command_layout(design: Design, dataflows: Sequence[Dataflow], views: Sequence = ()) -> CommandLayout:
    """``steps``, one trip count per loop that is in the command of any fused dataflow (its outer loops and,
    with delay connections, the halo loop and the loops that set the FIFO depth; in the operation's loop
    order), then the dataflow select (its index in the fuse list)."""
    used = {d for df in dataflows if not df.skewed for d in df.outer_dims()}
    used |= {f.loop for v in views if not is_stt_view(v) for f in v.command.fields if f.loop is not None}
    loops = [d for d in design.operation.dims if d in used]
    fields, offset = [], 0
    for name, bits, loop in ([("steps", STEP_BITS, None)] + [(f"trips_{d}", TRIP_BITS, str(d)) for d in loops]
                             + [(SELECT_FIELD, max(1, math.ceil(math.log2(len(dataflows)))), None)]):
        fields.append(CommandField(name, bits, offset, loop))
        offset += bits
    return CommandLayout(tuple(fields))


def fused_ports(views: Sequence, command: CommandLayout) -> tuple[Port, ...]:
    """The union of the dataflows' ports: one stream per name with the most lanes any dataflow uses (a
    dataflow uses lanes 0..n-1 of it); the command carries the select."""
    by_name: dict[str, Port] = {}
    order: list[str] = []
    for view in views:
        for p in view.ports:
            old = by_name.get(p.name)
            if old is None:
                order.append(p.name)
                by_name[p.name] = p
            elif p.lanes > old.lanes:
                by_name[p.name] = replace(old, lanes=p.lanes)
    by_name["cmd"] = replace(by_name["cmd"], width=command.size)
    rank = {PortRole.COMMAND: 0, PortRole.INPUT: 1, PortRole.PSUM: 2, PortRole.OUTPUT: 3, PortRole.STATUS: 4}
    return tuple(sorted((by_name[n] for n in order), key=lambda p: (rank[p.role], order.index(p.name))))


@dataclass(frozen=True)
class FusedArray:
    """A compiled fused design (``compile_fused``): one view per dataflow, the shared hardware's plan,
    the top level's ports and command (the select field included)."""

    design: Design
    dataflows: tuple[Dataflow, ...]
    views: tuple = field(repr=False)            # CompiledArray per dataflow, fused timing
    plan: FusionPlan = field(repr=False)
    ports: tuple[Port, ...] = field(repr=False)
    command: CommandLayout = field(repr=False)
    pipeline: bool = True
    target: str = "asic"
    key: str = ""
    # per view: a folded map's placement on its own logical array ((logical FU, physical FU) pairs), else ()
    placements: tuple = field(default=(), repr=False)

    def __repr__(self) -> str:
        return (f"FusedArray({self.design.name!r}, dataflows={self.names}, "
                f"shape={'x'.join(map(str, self.design.shape))}, muxes={len(self.plan.muxes)}, key={self.key[:12]!r})")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(df.name for df in self.dataflows)

    def index(self, name: str) -> int:
        if name not in self.names:
            raise SpecError([problem("dataflow", f"dataflow {name!r} is not fused in this design; fused: "
                                     f"{', '.join(self.names)}", name)])
        return self.names.index(name)

    def logical_fu(self, k: int, s: tuple) -> tuple:
        """Dataflow k's own FU at physical FU s (s itself unless k is a folded map on its logical array)."""
        if not self.placements or not self.placements[k]:
            return s
        return next(lg for lg, ph in self.placements[k] if ph == s)

    def view(self, name: str):
        """The CompiledArray of one dataflow with the fused design's timing."""
        return self.views[self.index(name)]

    def port(self, name: str) -> Port:
        return next(p for p in self.ports if p.name == name)

    @property
    def hardware_views(self) -> tuple:
        """The views with their FU nodes at the physical FUs (:func:`hardware_view`): what the fused RTL builds."""
        places = self.placements or ((),) * len(self.views)
        return tuple(hardware_view(v, dict(p)) for v, p in zip(self.views, places))

    def command_word(self, name: str, steps: int, trips: dict) -> dict:
        """Field values of the command that runs dataflow ``name`` (loops it does not tile: 1 trip)."""
        out = {}
        for f in self.command.fields:
            out[f.name] = (steps if f.name == "steps" else self.index(name) if f.name == SELECT_FIELD
                           else int(trips.get(f.loop, 1)))
        return out
