"""From a dataflow to an FU-level graph: who feeds whom, through how many registers.

Input operands are either stationary (invariant over the tile's inner loops: one register per FU,
loaded between tiles) or streamed: then every same-cycle reuse move (dt = 0, a step along an array
axis the operand does not depend on) is a candidate FU-to-FU connection with delay c.ds, and a
minimum spanning arborescence (networkx) over those candidates plus a memory root picks one source
per FU. Delay-0 trees become one broadcast net from a memory lane; delayed edges become systolic
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
    role: str                 # "stream" | "stationary" | "accumulate" | "stream_out"
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

    def plan(self, name: str) -> OperandPlan:
        return next(p for p in self.plans if p.name == name)

    @property
    def inputs(self) -> tuple[OperandPlan, ...]:
        return tuple(p for p in self.plans if p.role in ("stream", "stationary"))

    @property
    def output(self) -> OperandPlan:
        return next(p for p in self.plans if p.role in ("accumulate", "stream_out"))

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


def _fu(coord):
    return ("fu", tuple(coord))


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
    inner = set(df.inner_dims())
    g = nx.DiGraph(name=design.name, dataflow=df.name, shape=shape, control=df.control)
    coords = list(itertools.product(*[range(e) for e in shape]))
    for s in coords:
        g.add_node(_fu(s), kind="fu", coord=s, roles={})
    base = min(_cs(df.control, s) for s in coords)
    skew = {s: _cs(df.control, s) - base for s in coords}
    types = design.type_of
    plans = []
    problems = []
    for x in op.inputs:
        invariant_axes = [a for a in range(len(shape)) if shape[a] > 1 and not x.uses(axis_dim[a])]
        if not any(x.uses(d) for d in inner):
            plans.append(_stationary(g, x.name, shape, coords, types[x.name]))
            continue
        plans.append(_streamed_input(g, x.name, shape, coords, skew, df.control, invariant_axes, types[x.name]))
    out = op.output
    reduce_axes = [a for a in range(len(shape)) if shape[a] > 1 and not out.uses(axis_dim[a])]
    outer_reduction = any(not out.uses(d) for d in df.outer_dims() if d not in single_tile)
    if not any(out.uses(d) for d in inner):
        if reduce_axes:
            raise SpecError([problem(f"dataflows.{df.name}.spatial", f"the output {out.name} is accumulated in place, "
                                     f"but array axis(es) {reduce_axes} carry reduction loop(s) "
                                     f"{', '.join(axis_dim[a] for a in reduce_axes)}: FUs along them would hold "
                                     "partial sums of one element; the generator has no reduction network after the "
                                     "accumulators yet, so put an output loop on that axis or an output loop inside "
                                     "the tile (a streamed output reduces across the array)", dict(df.spatial_dims))])
        plans.append(_accumulate(g, out.name, shape, coords, types[out.name], outer_reduction))
    else:
        needs = [d for d in inner if not out.uses(d)]
        if needs:
            problems.append(problem(f"dataflows.{df.name}.order", f"the output {out.name} does not depend on inner loop(s) "
                                    f"{', '.join(needs)} but does on others; put reduction loops outside the tile "
                                    "(or make every inner loop a reduction loop for an output-stationary design)",
                                    list(df.order)))
        chained = [a for a in reduce_axes if df.control[a] != 0]
        trees = [a for a in reduce_axes if df.control[a] == 0]
        if chained and trees:
            problems.append(problem(f"dataflows.{df.name}.control", "spatial reductions must be all chains (control != 0) "
                                    "or all trees (control == 0) on the reduced axes", list(df.control)))
        if problems:
            raise SpecError(problems)
        plans.append(_streamed_output(g, out.name, shape, coords, skew, df.control, chained, trees, types[out.name],
                                      outer_reduction))
    if problems:
        raise SpecError(problems)
    return FUGraph(design, df, g, tuple(plans))


def _stationary(g, name, shape, coords, dtype) -> OperandPlan:
    """One register per FU, loaded row by row over a bus: lane = last-axis coordinate."""
    lanes = []
    for lane in range(shape[-1]):
        fus = tuple(s for s in coords if s[-1] == lane)
        g.add_node(("mem", name, lane), kind="mem", operand=name, lane=lane, bank=lane)
        for s in fus:
            g.add_edge(("mem", name, lane), _fu(s), operand=name, kind="memory", delay=0, width=dtype.bits, phase="load")
            g.nodes[_fu(s)]["roles"][name] = "stationary"
        lanes.append(Lane(lane, fus, 0))
    return OperandPlan(name, "stationary", dtype.bits, tuple(lanes), signed=dtype.signed)


def _candidates(coords, shape, control, axes, reverse=False):
    """Same-cycle reuse moves along ``axes``: FU-to-FU edges with delay c.ds >= 0."""
    cand = nx.DiGraph()
    cand.add_nodes_from(_fu(s) for s in coords)
    for s in coords:
        for a in axes:
            for step in (1, -1):
                t = list(s)
                t[a] += step
                if not 0 <= t[a] < shape[a]:
                    continue
                delay = control[a] * step
                if delay < 0:
                    continue
                src, dst = (_fu(s), _fu(t)) if not reverse else (_fu(t), _fu(s))
                # prefer forward steps on ties so broadcast trees are chains from index 0
                cost = (max(delay, 0) * 10 + 1) + (0 if step > 0 else 0.5)
                cand.add_edge(src, dst, delay=delay, axis=a, weight=cost)
    return cand


def _streamed_input(g, name, shape, coords, skew, control, axes, dtype) -> OperandPlan:
    cand = _candidates(coords, shape, control, axes)
    root = ("mem", name, "*")
    cand.add_node(root)
    for s in coords:
        cand.add_edge(root, _fu(s), delay=skew[s], axis=None, weight=MEMORY_PORT_COST)
    tree = nx.minimum_spanning_arborescence(cand, attr="weight", preserve_attrs=True)
    lanes = []
    roots = sorted(v for v in tree.successors(root))
    for lane, fu in enumerate(roots):
        mem = ("mem", name, lane)
        g.add_node(mem, kind="mem", operand=name, lane=lane, bank=lane)
        members = [fu] + [v for v in nx.descendants(tree, fu)]
        zero = all(tree.edges[e]["delay"] == 0 for e in nx.bfs_edges(tree, fu))
        if zero and len(members) > 1:
            # a same-cycle tree is one net: the lane drives every member directly
            for v in sorted(members):
                g.add_edge(mem, v, operand=name, kind="broadcast", delay=skew[fu[1]], width=dtype.bits, fanout=len(members))
        else:
            g.add_edge(mem, fu, operand=name, kind="memory", delay=skew[fu[1]], width=dtype.bits)
            for u, v in nx.bfs_edges(tree, fu):
                e = tree.edges[u, v]
                kind = "systolic" if e["delay"] > 0 else "broadcast"
                g.add_edge(u, v, operand=name, kind=kind, delay=e["delay"], width=dtype.bits, axis=e["axis"])
        for v in members:
            g.nodes[v]["roles"][name] = "stream"
        lanes.append(Lane(lane, tuple(v[1] for v in [fu] + sorted(set(members) - {fu})), skew[fu[1]]))
    reuse = tuple((a, abs(control[a])) for a in axes)
    return OperandPlan(name, "stream", dtype.bits, tuple(lanes), reuse, signed=dtype.signed)


def _accumulate(g, name, shape, coords, dtype, psum_in) -> OperandPlan:
    lanes = []
    for lane in range(shape[-1]):
        fus = tuple(s for s in coords if s[-1] == lane)
        g.add_node(("drain", name, lane), kind="drain", operand=name, lane=lane)
        if psum_in:
            g.add_node(("mem", name, lane), kind="mem", operand=name, lane=lane, bank=lane)
        for s in fus:
            g.nodes[_fu(s)]["roles"][name] = "accumulate"
            g.add_edge(_fu(s), ("drain", name, lane), operand=name, kind="drain", delay=0, width=dtype.bits)
            if psum_in:
                g.add_edge(("mem", name, lane), _fu(s), operand=name, kind="memory", delay=0, width=dtype.bits, phase="load")
        lanes.append(Lane(lane, fus, 0))
    return OperandPlan(name, "accumulate", dtype.bits, tuple(lanes), psum_in=psum_in, signed=dtype.signed)


def _streamed_output(g, name, shape, coords, skew, control, chained, trees, dtype, psum_in) -> OperandPlan:
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
            tnode = ("tree", name, lane)
            g.add_node(tnode, kind="tree", operand=name, group=lane, n_inputs=len(fus))
            for s in fus:
                g.nodes[_fu(s)]["roles"][name] = "reduce"
                g.add_edge(_fu(s), tnode, operand=name, kind="reduce", delay=0, width=dtype.bits)
            g.add_node(("drain", name, lane), kind="drain", operand=name, lane=lane)
            g.add_edge(tnode, ("drain", name, lane), operand=name, kind="drain", delay=span - skew[fus[0]], width=dtype.bits)
            if psum_in:
                g.add_node(("mem", name, lane), kind="mem", operand=name, lane=lane, bank=lane)
                g.add_edge(("mem", name, lane), tnode, operand=name, kind="memory", delay=skew[fus[0]], width=dtype.bits)
            lanes.append(Lane(lane, fus, skew[fus[0]]))
        return OperandPlan(name, "stream_out", dtype.bits, tuple(lanes), tree_axes=tuple(trees), psum_in=psum_in,
                           signed=dtype.signed)
    # chains: partial sums move toward larger c.s; terminal FUs (no successor) drain
    cand = _candidates(coords, shape, control, chained, reverse=False)
    cand = nx.DiGraph((u, v, d) for u, v, d in cand.edges(data=True) if d["delay"] > 0)
    cand.add_nodes_from(_fu(s) for s in coords)
    succ = {}
    for s in coords:
        outs = sorted(cand.successors(_fu(s)), key=lambda v: (cand.edges[_fu(s), v]["weight"], v))
        # one successor per FU along the first chained axis that has one (an in-tree toward the drain)
        for a in chained:
            nxt = [v for v in outs if cand.edges[_fu(s), v]["axis"] == a]
            if nxt:
                succ[s] = (nxt[0][1], cand.edges[_fu(s), nxt[0]]["delay"], a)
                break
    for s, (t, delay, a) in succ.items():
        g.add_edge(_fu(s), _fu(t), operand=name, kind="reduce_chain", delay=delay, width=dtype.bits, axis=a)
    for s in coords:
        g.nodes[_fu(s)]["roles"][name] = "reduce"
    terminals = sorted(s for s in coords if s not in succ)
    has_pred = {t for t, _, _ in succ.values()}
    roots = sorted(s for s in coords if s not in has_pred)
    span = max(skew[s] for s in terminals)
    for lane, s in enumerate(terminals):
        g.add_node(("drain", name, lane), kind="drain", operand=name, lane=lane)
        g.add_edge(_fu(s), ("drain", name, lane), operand=name, kind="drain", delay=span - skew[s], width=dtype.bits)
        chain = [s]
        while True:
            preds = [u for u, (t, _, _) in succ.items() if t == chain[0]]
            if not preds:
                break
            chain.insert(0, preds[0])
        lanes.append(Lane(lane, tuple(chain), skew[chain[0]]))
    if psum_in:
        for lane, s in enumerate(roots):
            g.add_node(("mem", name, lane), kind="mem", operand=name, lane=lane, bank=lane)
            g.add_edge(("mem", name, lane), _fu(s), operand=name, kind="memory", delay=skew[s], width=dtype.bits)
    reuse = tuple((a, abs(control[a])) for a in chained)
    return OperandPlan(name, "stream_out", dtype.bits, tuple(lanes), reuse, psum_in=psum_in, signed=dtype.signed)
