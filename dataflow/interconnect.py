"""From a dataflow to an FU-level graph: who feeds whom, through how many registers.

Everything here is read from one reuse analysis, the unit solutions of ``A_X M [dt; ds] = 0``
(dataflow/reuse.py ``unit_reuse``). Input operands are either stationary (a move along every inner
loop of the tile keeps the element: one register per FU, loaded between tiles) or streamed: then every
spatial move (dt = 0, one step along an array axis) is a candidate FU-to-FU connection with delay
c.ds, and a minimum spanning arborescence (networkx) over those candidates plus a memory root picks
one source per FU. Delay-0 trees become one broadcast net from a memory lane; delayed edges become systolic
register chains. Outputs are accumulated in place (invariant over the inner loops) or streamed out
through spatial reductions along the axes the output does not depend on (a register chain when the
control vector skews that axis, an adder tree when it does not). Edge attributes follow the schema in
DESIGN.md / docs/architecture.md so the primitive lowering, the RTL generator and the cycle model all
read the same graph.
"""
from __future__ import annotations

from collections.abc import Sequence

import itertools
from dataclasses import dataclass, field

import networkx as nx

from archgen.arch.errors import SpecError, problem
from archgen.arch.spec import Dataflow, Design

from .arborescence import minimum_spanning_arborescence
from .ir import EdgeKind, Link, Node, NodeKind, Role, fu
from .reuse import ReuseVector, unit_reuse

__all__ = ["FUGraph", "OperandPlan", "Lane", "derive_interconnect", "MEMORY_PORT_COST"]

MEMORY_PORT_COST = 1000      # a memory lane costs far more than a register hop or a wire


@dataclass(frozen=True)
class Lane:
    """One lane of an operand's stream: the FUs it reaches and the skew registers before them."""

    index: int
    fus: tuple[tuple[int, ...], ...]     # root FU first for chains; every member for broadcast / rows
    skew: int                            # registers between the stream and the (first) FU


@dataclass(frozen=True)
class OperandPlan:
    """How one operand moves through the array under one dataflow."""

    name: str
    role: Role                # STREAM | STATIONARY | ACCUMULATE | STREAM_OUT
    width: int
    lanes: tuple[Lane, ...]   # stream lanes (inputs and psum inputs) or drain lanes (outputs)
    reuse_axes: tuple[tuple[int, int], ...] = ()   # (axis, delay per hop) of forwarding / reduction
    tree_axes: tuple[int, ...] = ()                # same-cycle reductions (adder trees) for outputs
    psum_in: bool = False     # outputs: partial sums from earlier tiles come back in
    signed: bool = True

    @property
    def n_lanes(self) -> int:
        return len(self.lanes)


@dataclass(frozen=True)
class FUGraph:
    """The FU graph of one dataflow plus the per-operand plans that the RTL and the model share."""

    design: Design
    dataflow: Dataflow
    graph: nx.DiGraph = field(compare=False, repr=False)
    plans: tuple[OperandPlan, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.design.shape

    @property
    def control(self) -> tuple[int, ...]:
        return self.dataflow.control

    @property
    def widths(self) -> dict[str, int]:
        return {n: t.bits for n, t in self.design.types}

    @property
    def acc_width(self) -> int:
        return self.design.acc_type.bits

    def links(self, operand: str | None = None) -> list[tuple[Node, Node, Link]]:
        """(source, sink, Link) of every edge, or of one operand's edges."""
        return [(u, v, e["link"]) for u, v, e in self.graph.edges(data=True)
                if operand is None or e["link"].operand == operand]

    def plan(self, name: str) -> OperandPlan:
        return next(p for p in self.plans if p.name == name)

    @property
    def inputs(self) -> tuple[OperandPlan, ...]:
        return tuple(p for p in self.plans if p.role in (Role.STREAM, Role.STATIONARY))

    @property
    def output(self) -> OperandPlan:
        return next(p for p in self.plans if p.role in (Role.ACCUMULATE, Role.STREAM_OUT))

    def skew(self, coord) -> int:
        """Cycles FU ``coord`` runs behind the earliest FU (c.s normalised to start at 0)."""
        return _cs(self.control, coord) - self._min_cs

    @property
    def _min_cs(self) -> int:
        # c.s is linear, so its extremes sit at the corners: per axis 0 or extent-1
        return sum(min(0, c * (e - 1)) for c, e in zip(self.control, self.shape))

    @property
    def max_skew(self) -> int:
        return sum(max(0, c * (e - 1)) for c, e in zip(self.control, self.shape)) - self._min_cs

    def coords(self):
        return itertools.product(*[range(e) for e in self.shape])


def _cs(control, coord) -> int:
    return sum(c * s for c, s in zip(control, coord))


def _mem(operand: str, lane: int | None) -> Node:
    return Node(NodeKind.MEM, operand=operand, lane=lane)


def _drain(operand: str, lane: int) -> Node:
    return Node(NodeKind.DRAIN, operand=operand, lane=lane)


@dataclass(frozen=True)
class _Reuse:
    """One operand's unit reuse moves (dataflow/reuse.py), as the interconnect reads them."""

    held_over: frozenset            # loops whose step keeps the element (temporal reuse)
    moves: dict                     # array axis -> (direction, delay c.ds) of the oriented spatial move

    @staticmethod
    def of(vectors: list[ReuseVector], order) -> "_Reuse":
        held = frozenset(d for r in vectors for d in r.held_over(order))
        return _Reuse(held, {r.spatial_axis: (r.ds[r.spatial_axis], r.delay) for r in vectors
                             if r.spatial_axis is not None})

    @property
    def axes(self) -> list[int]:
        return sorted(self.moves)

    def steps(self, axis: int) -> list[tuple[int, int]]:
        """(step, delay) of the candidate connections along ``axis``: a same-cycle move goes either way."""
        step, delay = self.moves[axis]
        return [(1, 0), (-1, 0)] if delay == 0 else [(step, delay)]


def derive_interconnect(design: Design, dataflow: str | Dataflow | None = None, *,
                        single_tile: Sequence[str] = ()) -> FUGraph:
    """The FU graph and operand plans of ``dataflow``.

    ``single_tile`` names outer loops the caller promises run one tile only (the array covers their whole
    range, as in SpAtten's head-dimension arrays): a reduction over them needs no partial-sum input.
    """
    df = dataflow if isinstance(dataflow, Dataflow) else design.dataflow(dataflow)
    if df.spatial is None:
        raise SpecError([problem(f"dataflows.{df.name}", "the generator executes tiled maps only (each array axis "
                                 "carries one loop as loop = extent*t_loop + s_axis); this map can be checked and "
                                 "explained but not built", df.form)])
    op = design.operation
    shape = design.shape
    axis_dim = df.spatial_dims
    inner = df.inner_dims()
    reuse = {x.name: _Reuse.of(unit_reuse(design, df, x.name), df.order) for x in op.operands}
    g = nx.DiGraph(name=design.name, dataflow=df.name, shape=shape, control=df.control)
    coords = list(itertools.product(*[range(e) for e in shape]))
    for s in coords:
        g.add_node(fu(s), kind=NodeKind.FU, coord=s, roles={})
    base = min(_cs(df.control, s) for s in coords)
    skew = {s: _cs(df.control, s) - base for s in coords}
    types = design.type_of
    plans = []
    problems = []
    for x in op.inputs:
        rx = reuse[x.name]
        if set(inner) <= rx.held_over:
            plans.append(_stationary(g, x.name, shape, coords, types[x.name]))
            continue
        plans.append(_streamed_input(g, x.name, shape, coords, skew, rx, types[x.name]))
    out = op.output
    ro = reuse[out.name]
    reduce_axes = ro.axes
    outer_reduction = any(d in ro.held_over for d in df.outer_dims() if d not in single_tile)
    if set(inner) <= ro.held_over:
        if reduce_axes:
            raise SpecError([problem(f"dataflows.{df.name}.spatial", f"the output {out.name} is accumulated in place, "
                                     f"but array axis(es) {reduce_axes} carry reduction loop(s) "
                                     f"{', '.join(axis_dim[a] for a in reduce_axes)}: FUs along them would hold "
                                     "partial sums of one element; the generator has no reduction network after the "
                                     "accumulators yet, so put an output loop on that axis or an output loop inside "
                                     "the tile (a streamed output reduces across the array)", dict(df.spatial_dims))])
        plans.append(_accumulate(g, out.name, shape, coords, types[out.name], outer_reduction))
    else:
        needs = [d for d in inner if d in ro.held_over]
        if needs:
            problems.append(problem(f"dataflows.{df.name}.order", f"the output {out.name} does not depend on inner loop(s) "
                                    f"{', '.join(needs)} but does on others; put reduction loops outside the tile "
                                    "(or make every inner loop a reduction loop for an output-stationary design)",
                                    list(df.order)))
        chained = [a for a in reduce_axes if ro.moves[a][1] != 0]     # a delay per hop: a register chain
        trees = [a for a in reduce_axes if ro.moves[a][1] == 0]       # same cycle: an adder tree
        if chained and trees:
            problems.append(problem(f"dataflows.{df.name}.control", "spatial reductions must be all chains (control != 0) "
                                    "or all trees (control == 0) on the reduced axes", list(df.control)))
        if problems:
            raise SpecError(problems)
        plans.append(_streamed_output(g, out.name, shape, coords, skew, df.control, ro, chained, trees,
                                      types[out.name], outer_reduction))
    return FUGraph(design, df, g, tuple(plans))


def _stationary(g, name, shape, coords, dtype) -> OperandPlan:
    """One register per FU, loaded row by row over a bus: lane = last-axis coordinate."""
    lanes = []
    for lane in range(shape[-1]):
        fus = tuple(s for s in coords if s[-1] == lane)
        mem = _mem(name, lane)
        g.add_node(mem, kind=NodeKind.MEM, operand=name, lane=lane, bank=lane)
        for s in fus:
            g.add_edge(mem, fu(s), link=Link(name, EdgeKind.MEMORY, 0, dtype.bits, load=True))
            g.nodes[fu(s)]["roles"][name] = Role.STATIONARY
        lanes.append(Lane(lane, fus, 0))
    return OperandPlan(name, Role.STATIONARY, dtype.bits, tuple(lanes), signed=dtype.signed)


def _candidates(coords, shape, reuse: _Reuse, axes):
    """The reuse moves along ``axes`` as FU-to-FU edges with delay c.ds >= 0."""
    cand = nx.DiGraph()
    cand.add_nodes_from(fu(s) for s in coords)
    for s in coords:
        for a in axes:
            for step, delay in reuse.steps(a):
                t = list(s)
                t[a] += step
                if not 0 <= t[a] < shape[a]:
                    continue
                # prefer forward steps on ties so broadcast trees are chains from index 0
                cost = (delay * 10 + 1) + (0 if step > 0 else 0.5)
                cand.add_edge(fu(s), fu(t), delay=delay, axis=a, weight=cost)
    return cand


def _streamed_input(g, name, shape, coords, skew, reuse: _Reuse, dtype) -> OperandPlan:
    cand = _candidates(coords, shape, reuse, reuse.axes)
    root = _mem(name, None)
    cand.add_node(root)
    for s in coords:
        cand.add_edge(root, fu(s), delay=skew[s], axis=None, weight=MEMORY_PORT_COST)
    tree = minimum_spanning_arborescence(cand, attr="weight")   # networkx's answer, fast path first
    lanes = []
    roots = sorted(v for v in tree.successors(root))
    for lane, first in enumerate(roots):
        mem = _mem(name, lane)
        g.add_node(mem, kind=NodeKind.MEM, operand=name, lane=lane, bank=lane)
        members = [first] + [v for v in nx.descendants(tree, first)]
        zero = all(tree.edges[e]["delay"] == 0 for e in nx.bfs_edges(tree, first))
        if zero and len(members) > 1:
            # a same-cycle tree is one net: the lane drives every member directly
            for v in sorted(members):
                g.add_edge(mem, v, link=Link(name, EdgeKind.BROADCAST, skew[first.coord], dtype.bits,
                                             fanout=len(members)))
        else:
            g.add_edge(mem, first, link=Link(name, EdgeKind.MEMORY, skew[first.coord], dtype.bits))
            for u, v in nx.bfs_edges(tree, first):
                e = tree.edges[u, v]
                kind = EdgeKind.SYSTOLIC if e["delay"] > 0 else EdgeKind.BROADCAST
                g.add_edge(u, v, link=Link(name, kind, e["delay"], dtype.bits, axis=e["axis"]))
        for v in members:
            g.nodes[v]["roles"][name] = Role.STREAM
        lanes.append(Lane(lane, tuple(v.coord for v in [first] + sorted(set(members) - {first})), skew[first.coord]))
    moves = tuple((a, reuse.moves[a][1]) for a in reuse.axes)
    return OperandPlan(name, Role.STREAM, dtype.bits, tuple(lanes), moves, signed=dtype.signed)


def _accumulate(g, name, shape, coords, dtype, psum_in) -> OperandPlan:
    lanes = []
    for lane in range(shape[-1]):
        fus = tuple(s for s in coords if s[-1] == lane)
        drain, mem = _drain(name, lane), _mem(name, lane)
        g.add_node(drain, kind=NodeKind.DRAIN, operand=name, lane=lane)
        if psum_in:
            g.add_node(mem, kind=NodeKind.MEM, operand=name, lane=lane, bank=lane)
        for s in fus:
            g.nodes[fu(s)]["roles"][name] = Role.ACCUMULATE
            g.add_edge(fu(s), drain, link=Link(name, EdgeKind.DRAIN, 0, dtype.bits))
            if psum_in:
                g.add_edge(mem, fu(s), link=Link(name, EdgeKind.MEMORY, 0, dtype.bits, load=True))
        lanes.append(Lane(lane, fus, 0))
    return OperandPlan(name, Role.ACCUMULATE, dtype.bits, tuple(lanes), psum_in=psum_in, signed=dtype.signed)


def _streamed_output(g, name, shape, coords, skew, control, reuse: _Reuse, chained, trees, dtype,
                     psum_in) -> OperandPlan:
    lanes = []
    if trees:
        # one adder tree per group of FUs that differ only along the tree axes
        keyf = lambda s: tuple(v for a, v in enumerate(s) if a not in trees)
        groups: dict[tuple, list] = {}
        for s in coords:
            groups.setdefault(keyf(s), []).append(s)
        span = max(skew[s] for s in coords)
        for lane, key in enumerate(sorted(groups)):
            fus = tuple(sorted(groups[key]))
            tnode, drain = Node(NodeKind.TREE, operand=name, lane=lane), _drain(name, lane)
            g.add_node(tnode, kind=NodeKind.TREE, operand=name, group=lane, n_inputs=len(fus))
            for s in fus:
                g.nodes[fu(s)]["roles"][name] = Role.REDUCE
                g.add_edge(fu(s), tnode, link=Link(name, EdgeKind.REDUCE, 0, dtype.bits))
            g.add_node(drain, kind=NodeKind.DRAIN, operand=name, lane=lane)
            g.add_edge(tnode, drain, link=Link(name, EdgeKind.DRAIN, span - skew[fus[0]], dtype.bits))
            if psum_in:
                mem = _mem(name, lane)
                g.add_node(mem, kind=NodeKind.MEM, operand=name, lane=lane, bank=lane)
                g.add_edge(mem, tnode, link=Link(name, EdgeKind.MEMORY, skew[fus[0]], dtype.bits))
            lanes.append(Lane(lane, fus, skew[fus[0]]))
        return OperandPlan(name, Role.STREAM_OUT, dtype.bits, tuple(lanes), tree_axes=tuple(trees), psum_in=psum_in,
                           signed=dtype.signed)
    # chains: partial sums move toward larger c.s; terminal FUs (no successor) drain
    cand = _candidates(coords, shape, reuse, chained)
    cand = nx.DiGraph((u, v, d) for u, v, d in cand.edges(data=True) if d["delay"] > 0)
    cand.add_nodes_from(fu(s) for s in coords)
    succ = {}
    for s in coords:
        outs = sorted(cand.successors(fu(s)), key=lambda v: (cand.edges[fu(s), v]["weight"], v))
        # one successor per FU along the first chained axis that has one (an in-tree toward the drain)
        for a in chained:
            nxt = [v for v in outs if cand.edges[fu(s), v]["axis"] == a]
            if nxt:
                succ[s] = (nxt[0].coord, cand.edges[fu(s), nxt[0]]["delay"], a)
                break
    for s, (t, delay, a) in succ.items():
        g.add_edge(fu(s), fu(t), link=Link(name, EdgeKind.REDUCE_CHAIN, delay, dtype.bits, axis=a))
    for s in coords:
        g.nodes[fu(s)]["roles"][name] = Role.REDUCE
    terminals = sorted(s for s in coords if s not in succ)
    has_pred = {t for t, _, _ in succ.values()}
    roots = sorted(s for s in coords if s not in has_pred)
    span = max(skew[s] for s in terminals)
    for lane, s in enumerate(terminals):
        drain = _drain(name, lane)
        g.add_node(drain, kind=NodeKind.DRAIN, operand=name, lane=lane)
        g.add_edge(fu(s), drain, link=Link(name, EdgeKind.DRAIN, span - skew[s], dtype.bits))
        chain = [s]
        while True:
            preds = [u for u, (t, _, _) in succ.items() if t == chain[0]]
            if not preds:
                break
            chain.insert(0, preds[0])
        lanes.append(Lane(lane, tuple(chain), skew[chain[0]]))
    if psum_in:
        for lane, s in enumerate(roots):
            mem = _mem(name, lane)
            g.add_node(mem, kind=NodeKind.MEM, operand=name, lane=lane, bank=lane)
            g.add_edge(mem, fu(s), link=Link(name, EdgeKind.MEMORY, skew[s], dtype.bits))
    moves = tuple((a, reuse.moves[a][1]) for a in chained)
    return OperandPlan(name, Role.STREAM_OUT, dtype.bits, tuple(lanes), moves, psum_in=psum_in, signed=dtype.signed)
