"""From a dataflow to an FU-level graph: who feeds whom, through how many registers.

Everything here is read from one reuse analysis, the unit solutions of ``A_X M [dt; ds] = 0``
(dataflow/reuse.py ``unit_reuse``). Input operands are either stationary (a move along every inner
loop of the tile keeps the element: one register per FU, loaded between tiles) or streamed: then every
spatial move (dt = 0, one step along an array axis) is a candidate FU-to-FU connection with delay
c.ds, and a minimum spanning arborescence (networkx) over those candidates plus a memory root picks
one source per FU. Delay-0 trees become one broadcast net from a memory lane; delayed edges become systolic
register chains. Outputs are accumulated in place (invariant over the inner loops) or streamed out
through spatial reductions along the axes the output does not depend on (a register chain when the
control vector skews that axis, an adder tree when it does not). Every edge carries one typed
:class:`Link` and every FU the :class:`Role` of each operand (docs/architecture.md), so the primitive
lowering, the RTL generator and the cycle model all read the same graph.
"""
from __future__ import annotations

from collections.abc import Sequence

import dataclasses
import functools
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import networkx as nx

from archgen.arch.affine import AffineExpr, AffineMap
from archgen.arch.errors import SpecError, problem
from archgen.arch.mapping_check import residue_form
from archgen.arch.names import Dim, space_var, time_var
from archgen.arch.spec import Dataflow, Design
from archgen.mappings.tiling import (MEMORY_PORT_COST, DelayAxis, RowPad, delay_axes, delay_halo, fifo_depth_loops,
                                     outer_pads, reduced_pads, row_lead, row_pads)

from .arborescence import minimum_spanning_arborescence
from .ir import EdgeKind, Link, Node, NodeKind, Role, fu
from .reuse import ReuseVector, delay_reuse, reuse_vectors, unit_reuse

__all__ = ["FUGraph", "OperandPlan", "Lane", "derive_interconnect", "tiled_equivalent", "tile_forms", "psum_rounds",
           "psum_round_split", "psum_rounds_of", "psum_round_text", "as_written", "PsumRounds", "reduction_runs",
           "reduction_run_split", "reduction_runs_of", "ReductionRuns", "fu_placement", "MapSkew",
           "map_skews", "SkewLaneCost", "skew_lane_cost", "MEMORY_PORT_COST"]



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
    """The FU graph of one dataflow plus the per-operand plans that the RTL and the model share.

    ``graph`` is the topology (a frozen networkx DiGraph of :class:`Node` values, attribute dicts empty);
    the payloads are typed: ``link_of`` maps an edge ``(u, v)`` to its :class:`Link`, ``fu_roles`` an FU
    to the :class:`Role` of each operand it uses. ``shared``: under the map's own schedule (``schedule: map``) an FU
    pair may carry a second input's connection too, ``(u, v, operand)`` -> its Link (empty for every other
    dataflow: there an FU pair carries one operand's connection)."""

    design: Design
    dataflow: Dataflow
    graph: nx.DiGraph = field(compare=False, repr=False)
    plans: tuple[OperandPlan, ...]
    link_of: Mapping[tuple[Node, Node], Link] = field(compare=False, repr=False)
    fu_roles: Mapping[Node, Mapping[str, Role]] = field(compare=False, repr=False)
    shared: Mapping[tuple[Node, Node, str], Link] = field(default_factory=lambda: _NO_SHARED, compare=False, repr=False)

    @property
    def name(self) -> str:
        return f"{self.design.name}/{self.dataflow.name}"

    def link(self, u: Node, v: Node, operand: str | None = None) -> Link:
        """The Link on edge (u, v); ``operand``: that operand's, where an FU pair carries two (``shared``)."""
        e = self.link_of[(u, v)]
        return self.shared[(u, v, operand)] if operand is not None and e.operand != operand else e

    def roles_of(self, n: Node) -> Mapping[str, Role]:
        """operand -> Role at FU ``n`` (empty for other nodes)."""
        return self.fu_roles.get(n, _NO_ROLES)

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
        return [(u, v, self.link_of[(u, v)]) for u, v in self.graph.edges
                if operand is None or self.link_of[(u, v)].operand == operand] + \
            [(u, v, e) for (u, v, x), e in self.shared.items() if operand is None or x == operand]

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

    @property
    def halo(self) -> tuple[tuple[str, int], ...]:
        """(innermost loop, halo steps) when delay connections fill at each row of it (mappings/tiling.py)."""
        if self.fifos() or row_pads(self.design, self.dataflow):
            return delay_halo(self.design, self.dataflow)
        return ()

    @property
    def fifo_depth_loops(self) -> tuple[str, ...]:
        """The inner loops after the halo loop, whose trip counts (from the command) multiply into the depth of
        run-time-depth FIFOs; () when the FIFOs are one register (innermost loop) or there are none. Under the map's
        own schedule (``row_pads``), the inner loops after the outermost padded loop, FIFOs or not: their joint wrap
        advances the row positions the per-FU masks read, and the command carries their trip counts."""
        pads = row_pads(self.design, self.dataflow)
        if pads:
            inner = self.dataflow.inner_dims()
            return tuple(inner[inner.index(pads[0].loop) + 1:])
        return fifo_depth_loops(self.design, self.dataflow) if self.fifos() else ()

    def fifos(self) -> list[tuple[Node, Node, Link]]:
        """The delay connections: (sending FU, receiving FU, Link with its FIFO depth in steps)."""
        return [(u, v, e) for u, v, e in self.links() if e.kind is EdgeKind.DELAY]


class _Builder:
    """The FU graph under construction: topology, links and FU roles, frozen into an FUGraph at the end."""

    def __init__(self):
        self.g = nx.DiGraph()
        self.links: dict[tuple[Node, Node], Link] = {}
        self.reserved: set[tuple[Node, Node]] = set()   # edges a later operand takes (the output's chains)
        self.roles: dict[Node, dict[str, Role]] = {}
        self.share = False      # the map's own schedule: a second input's connection may share an FU pair
        self.shared: dict[tuple[Node, Node, str], Link] = {}

    def add_fu(self, n: Node) -> None:
        self.g.add_node(n)
        self.roles[n] = {}

    def add_node(self, n: Node) -> None:
        self.g.add_node(n)

    def add_edge(self, u: Node, v: Node, link: Link) -> None:
        if self.share and (u, v) in self.links and self.links[(u, v)].operand != link.operand:
            self.shared[(u, v, link.operand)] = link
            return
        if (u, v) in self.links and self.links[(u, v)] != link:
            raise AssertionError(f"two connections on {u!r} -> {v!r}: {self.links[(u, v)]} and {link}")
        self.g.add_edge(u, v)
        self.links[(u, v)] = link

    def set_role(self, n: Node, operand: str, role: Role) -> None:
        self.roles[n][operand] = role

    def freeze(self, design, df, plans) -> "FUGraph":
        nx.freeze(self.g)
        roles = {n: MappingProxyType(dict(r)) for n, r in self.roles.items()}
        return FUGraph(design, df, self.g, plans, MappingProxyType(dict(self.links)), MappingProxyType(roles),
                       MappingProxyType(dict(self.shared)))


_NO_ROLES: Mapping[str, Role] = MappingProxyType({})
_NO_SHARED: Mapping[tuple, Link] = MappingProxyType({})


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
    delays: tuple = ()              # (DelayAxis, physical delay in cycles) of the delay connections built

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
                        single_tile: Sequence[str] = (), streamed: Sequence[str] = ()) -> FUGraph:
    """The FU graph and operand plans of ``dataflow``.

    ``single_tile`` names outer loops the caller promises run one tile only (the array covers their whole
    range, as in SpAtten's head-dimension arrays): a reduction over them needs no partial-sum input.
    ``streamed`` names inputs streamed one beat per step even though they use no inner loop (an input of an
    output held per run that uses the tile's loops D and none of its run R: ``ReductionRuns.streamed``, streamed
    as the tile [D, R] streams it; compile_array passes them).

    Under the map's own schedule (``schedule: map``) the map's reuse can ask one FU pair to carry two inputs (on
    3x2, I's wire and W's FIFO from FU (s0, 0) to (s0, 1)): the second one's connection is kept in
    ``FUGraph.shared`` and lowered port to port like the first (each operand has its own ports).
    """
    df = tiled_equivalent(design, dataflow if isinstance(dataflow, Dataflow) else design.dataflow(dataflow))
    return _derive(design, df, tuple(single_tile), tuple(streamed), design.operation.inputs)


def _reduced_rows(design: Design, df: Dataflow) -> Dataflow:
    """``df`` whose padded rows of loops the output uses lose their skew along the axes the output is reduced along:
    the output's reduction across those axes as the tiled map builds it (chains or trees by the control vector).
    The FUs of a lane work on different positions of such a row; their products wait the difference in steps before
    the reduction (dataflow/reduce_skew.py). ``df`` itself for every other dataflow."""
    out, axis_of = design.operation.output, df.spatial_dims
    cut = {space_var(a) for a, d in axis_of.items() if not out.uses(d)}
    loops = {p.loop for p in row_pads(design, df) + reduced_pads(design, df) if out.uses(p.loop)}
    dims = design.operation.dims
    exprs = [AffineExpr.of({k: v for k, v in e.terms if k not in cut}, e.const) if d in loops else e
             for d, e in zip(dims, df.ts_map.exprs)]
    if exprs == list(df.ts_map.exprs):
        return df
    return dataclasses.replace(df, ts_map=AffineMap(df.ts_map.inputs, tuple(exprs), df.ts_map.names))


def _derive(design: Design, df: Dataflow, single_tile: tuple[str, ...], streamed: tuple[str, ...],
            inputs) -> FUGraph:
    """:func:`derive_interconnect` of the tiled ``df``, the inputs taking their FU-to-FU edges in the order
    ``inputs`` (their plans stay in the operation's order)."""
    op = design.operation
    shape = design.shape
    axis_dim = df.spatial_dims
    inner = df.inner_dims()
    reuse = {x.name: _Reuse.of(unit_reuse(design, _reduced_rows(design, df) if x is op.output else df, x.name),
                               df.order) for x in op.operands}
    for x in op.inputs:
        found = _delay_connections(design, df, x.name)
        if found:
            reuse[x.name] = dataclasses.replace(reuse[x.name], delays=found)
    g = _Builder()
    g.share = bool(row_pads(design, df))
    coords = list(itertools.product(*[range(e) for e in shape]))
    for s in coords:
        g.add_fu(fu(s))
    base = min(_cs(df.control, s) for s in coords)
    skew = {s: _cs(df.control, s) - base for s in coords}
    types = design.type_of
    plans = []
    problems = []
    out = op.output
    ro = reuse[out.name]
    chained = [a for a in ro.axes if ro.moves[a][1] != 0]         # a delay per hop: a register chain
    # the output's partial-sum chains take their FU-to-FU edges first: an input reused along a chained axis
    # (one that uses no loop of that axis, W[k] in O[k,p] += W[k] * I[p,r] with r on it) forwards along another
    # axis or takes more memory lanes there, as for an edge an earlier input took
    g.reserved = {(fu(s), fu(t)) for s, (t, _, _) in _chain_successors(coords, shape, ro, chained).items()}
    for x in inputs:
        rx = reuse[x.name]
        if set(inner) <= rx.held_over and x.name not in streamed:
            plans.append(_stationary(g, x.name, shape, coords, types[x.name]))
            continue
        plans.append(_streamed_input(g, x.name, shape, coords, skew, rx, types[x.name], design.max_fifo_depth))
    names = [x.name for x in op.inputs]
    plans.sort(key=lambda p: names.index(p.name))
    reduce_axes = ro.axes
    outer_reduction = any(d in ro.held_over for d in df.outer_dims() if d not in single_tile)
    trees = [a for a in reduce_axes if ro.moves[a][1] == 0]       # same cycle: an adder tree
    if set(inner) <= ro.held_over:
        if reduce_axes:
            plans.append(_reduced_accumulate(g, out.name, shape, coords, ro, chained, trees, types[out.name],
                                             outer_reduction))
        else:
            plans.append(_accumulate(g, out.name, shape, coords, types[out.name], outer_reduction))
    else:
        needs = [d for d in inner if d in ro.held_over]
        if needs:           # a guard: tiled_equivalent builds every tile that reaches here (runs, rounds)
            problems.append(problem(f"dataflows.{df.name}.order", f"the output {out.name} does not depend on inner loop(s) "
                                    f"{', '.join(needs)} but does on others; put reduction loops outside the tile "
                                    "(or make every inner loop a reduction loop for an output-stationary design)",
                                    list(df.order)))
        if problems:
            raise SpecError(problems)
        plans.append(_streamed_output(g, out.name, shape, coords, skew, df.control, ro, chained, trees,
                                      types[out.name], outer_reduction))
    return g.freeze(design, df, tuple(plans))


def tiled_equivalent(design: Design, df: Dataflow) -> Dataflow:
    """The tiled dataflow ``df`` runs as: :func:`_tiled` (skewed and placed maps), then :func:`tile_forms`
    (reduction loops outside output-dependent inner loops moved out of the tile, an output held per run of the
    tile's trailing reduction loops)."""
    return tile_forms(design, _tiled(design, df))


def tile_forms(design: Design, df: Dataflow) -> Dataflow:
    """A tiled ``df`` as the array runs its tile: :func:`psum_rounds` then :func:`reduction_runs`."""
    return reduction_runs(design, psum_rounds(design, df))


@dataclass(frozen=True)
class PsumRounds:
    """A tile with a reduction loop before an output-dependent loop (order [i, k, j] for GEMM on [3], spatial
    {i: 0}: the tile [k, j] updates C[i, j] for every j within each k, a read-modify-write per step). ``moved``:
    the tile's loops up to the last reduction loop that an output-dependent loop follows; ``rest`` the loops left
    (output-dependent loops, then possibly a trailing reduction run). Moved out of the tile they become outer
    loops in the same order, so the step sequence is the tile's; the partial sums of the moved reduction loops
    come back in through the array's partial-sum port, one per output element per step."""

    moved: tuple[Dim, ...]
    rest: tuple[Dim, ...]
    note: str = ""           # what the tile would build that the moved form does not (delay connections)


def psum_round_split(design: Design, df: Dataflow) -> PsumRounds | None:
    """:class:`PsumRounds` of a tiled ``df``, or None when no reduction loop of its tile precedes an
    output-dependent one."""
    if df.spatial is None or df.skewed:
        return None
    out = design.operation.output
    inner = df.inner_dims()
    last = [i for i, d in enumerate(inner) if not out.uses(d) and any(out.uses(e) for e in inner[i + 1:])]
    if not last:
        return None
    moved, rest = inner[:last[-1] + 1], inner[last[-1] + 1:]
    lost = sorted({a.operand for a in set(delay_axes(design, df))
                   - set(delay_axes(design, dataclasses.replace(df, inner=tuple(rest))))})
    note = (f"the delay connections of {', '.join(lost)} along loop(s) {', '.join(moved)} of the tile are not built "
            "(those loops now run outside the tile); memory lanes feed those FUs instead" if lost else "")
    return PsumRounds(tuple(moved), tuple(rest), note)


def psum_rounds_of(design: Design, df: Dataflow) -> PsumRounds | None:
    """:func:`psum_round_split` of the tiled map ``df`` runs as (a skewed or placed map's tiled form)."""
    return psum_round_split(design, _tiled(design, df))


def as_written(design: Design, df: Dataflow) -> Dataflow | None:
    """The spec's dataflow named like ``df`` (a compiled dataflow is its tiled form: the tile as written is here)."""
    return next((d for d in design.dataflows if d.name == df.name), None)


def psum_round_text(design: Design, df: Dataflow) -> str | None:
    """What the array does with a tile of :func:`psum_rounds_of` (``df`` as in the spec), for ``--explain`` and the
    manifest; None when no loop moves."""
    try:
        split = psum_rounds_of(design, df)
    except SpecError:
        return None
    if split is None:
        return None
    out = design.operation.output.name
    tile, moved, rest = ", ".join(split.moved + split.rest), ", ".join(split.moved), ", ".join(split.rest)
    red = ", ".join(d for d in split.moved if not design.operation.output.uses(d))
    runs = not design.operation.output.uses(split.rest[-1])
    held = (f"{out} held per run of the trailing reduction loop(s) of [{rest}]" if runs
            else f"{out} streamed out per step")
    return (f"{out} is read, updated and written per step: the tile [{tile}] updates the partial sums of each "
            f"element of {out} within every iteration of {red}; built as tiles of [{rest}] with {moved} outside "
            f"the tile (the same FU per iteration and the same step sequence), {held} and its partial sums of "
            f"earlier iterations of {red} brought back in through the array's partial-sum port (through the memory "
            "system: the output buffer or DRAM); docs/dataflows.md \"A reduction loop outside an output-dependent "
            "inner loop\"")


def psum_rounds(design: Design, df: Dataflow) -> Dataflow:
    """``df`` with the loops of :func:`psum_round_split` moved out of the tile (``df`` itself when there are none):
    the same FU per iteration and the same lexicographic step sequence (outer loops, moved loops, rest), the
    output streamed out per step and its partial sums of earlier iterations of the moved reduction loops brought
    back in through the array's partial-sum port (docs/dataflows.md "A reduction loop outside an
    output-dependent inner loop")."""
    split = psum_round_split(design, df)
    return df if split is None else dataclasses.replace(df, inner=split.rest)


@dataclass(frozen=True)
class ReductionRuns:
    """A tile whose output depends on some inner loops and not on the loops after them (``inner`` = D + R, D the
    loops up to the last one the output depends on, R the trailing reduction loops, none of D a reduction loop):
    each FU holds one output element for a run of R, then moves to the next. It runs as the dataflow with D moved
    out of the tile (inner = R): the same FU per iteration and the same step sequence. An input that uses a loop of
    D and none of R is ``streamed`` as the tile streams it: one beat per step on its memory lanes, the same value
    for every step of a run (compile_array passes the names to derive_interconnect). ``faithful``: every input
    uses a loop of R or of D, so every input keeps its schedule and every step its cycle; else ``feeds`` says
    which inputs (those that use no loop of D or R) are stationary over a run instead: kept over the runs of a
    tile of [D, R] (loaded once per tile, as the tile loads them; ``ArraySchedule.keep_dims``), or in a fused
    design's view loaded once per run, which can delay a run shorter than the load (``--explain`` states the
    bound; docs/dataflows.md "Inputs that use no loop of the run")."""

    dep: tuple[Dim, ...]
    run: tuple[Dim, ...]
    feeds: str = ""
    note: str = ""           # what the run build does not build that the tile would (delay connections on D)
    streamed: tuple[str, ...] = ()      # inputs that use D and not R: streamed per step, as in the tile

    @property
    def faithful(self) -> bool:
        return not self.feeds

    @property
    def stream_text(self) -> str:
        """What the run build does with the ``streamed`` inputs ("" when there are none), for ``--explain``."""
        if not self.streamed:
            return ""
        return (f"input(s) {', '.join(self.streamed)} use {', '.join(self.dep)} and not the run's loop(s) "
                f"{', '.join(self.run)}: streamed as in the tile, one beat per step on the memory lanes (the same "
                "value for every step of a run, read again per step)")


def reduction_run_split(design: Design, df: Dataflow) -> ReductionRuns | None:
    """The split of a tiled ``df``'s tile into output-dependent loops and a trailing reduction run, or None when
    the output is invariant over the tile, depends on its innermost loop, or a reduction loop precedes an
    output-dependent one (a read-modify-write per step, not a run)."""
    if df.spatial is None or df.skewed:
        return None
    op = design.operation
    out = op.output
    inner = df.inner_dims()
    dep_at = [i for i, d in enumerate(inner) if out.uses(d)]
    if not dep_at or dep_at[-1] == len(inner) - 1:
        return None
    dep, run = inner[:dep_at[-1] + 1], inner[dep_at[-1] + 1:]
    if not all(out.uses(d) for d in dep):
        return None
    held = [x for x in op.inputs if not any(x.uses(d) for d in run)]
    streamed = tuple(x.name for x in held if any(x.uses(d) for d in dep))
    feeds = [f"input {x.name} does not depend on the run's loop(s) {', '.join(run)}, so with {', '.join(dep)} outside "
             "the tile it is stationary, loaded at the first run of each tile and kept over its runs (once per tile)"
             for x in held if x.name not in streamed]
    moved = dataclasses.replace(df, inner=tuple(run))
    lost = sorted({a.operand for a in set(delay_axes(design, df)) - set(delay_axes(design, moved))})
    note = (f"the delay connections of {', '.join(lost)} along output-dependent loop(s) of the tile are not built "
            "(they would step a loop outside the run and pad each row of it with masked runs); memory lanes feed "
            "those FUs instead" if lost else "")
    return ReductionRuns(tuple(dep), tuple(run), "; ".join(feeds), note, streamed)


def reduction_runs_of(design: Design, df: Dataflow) -> ReductionRuns | None:
    """:func:`reduction_run_split` of the tiled map ``df`` runs as (a skewed or placed map's tiled form, its
    reduction loops before output-dependent ones moved out by :func:`psum_rounds`)."""
    return reduction_run_split(design, psum_rounds(design, _tiled(design, df)))


def reduction_runs(design: Design, df: Dataflow) -> Dataflow:
    """A tile of output-dependent loops D followed by reduction loops R (:func:`reduction_run_split`) holds each
    output element in its FU's accumulator for one run of R, drained at the run's end. It runs as the dataflow
    with D moved out of the tile (inner = R): every FU the same iterations in the same order, the output
    accumulated per run and drained after it (docs/dataflows.md "Outputs held per run of the reduction loops").
    When every input uses a loop of R no input is loaded between runs, so every step keeps its cycle (runs back
    to back, as the original tile's steps). An input that uses a loop of D and none of R is streamed as in the
    tile, one beat per step (``ReductionRuns.streamed``): the runs still issue back to back. An input that uses no
    loop of D or R is stationary, kept over the runs of a tile of [D, R] (``feeds``; compile.py
    ``_keep_stationary``); docs/dataflows.md "Inputs that use no loop of the run"."""
    split = reduction_run_split(design, df)
    if split is None:
        return df
    return dataclasses.replace(df, inner=split.run)


def _tiled(design: Design, df: Dataflow) -> Dataflow:
    """``df`` itself when it is tiled; for a ``map`` whose temporal loops are skewed by the FU coordinates
    (``k: "t_k - s0 - s1"``: FU s runs iteration k at step k + s0 + s1 of its row), the tiled map with the
    control vector that skew implies (c - sigma per axis: FU s runs sigma.s cycles later). Both give every FU
    the same iterations in the same order; the skewed map's parallelogram of (t, s) points is the tiled one
    shifted per FU, so the array issues rows back to back instead of padding each with the skew's span of
    masked steps. On the tile's innermost loop the shift is exactly the map's (sigma.s steps). On a loop l
    with loops after it the map delays FU s by sigma.s iterations of l, sigma.s x D steps with D the product
    of the trip counts after l (:func:`map_skews`); that delay is compressed to sigma.s cycles, the same
    wavefront at the innermost grain, so a neighbour's operand takes a wire or a register where the literal
    schedule needs a FIFO of sigma_a x D steps (docs/dataflows.md "Skewed maps" says why).

    Maps that skew the FU assignment itself (``j: "3*t_j + s1 - s0"``: a loop on several axes, or an axis for
    several loops) go to :func:`fu_placement`: a dataflow for every problem size runs as the tiled map with
    the map's FU s at array position p(s), a map that is one only at the reference bounds is refused with the
    iteration it runs twice or misses on larger ones."""
    if df.spatial is not None:
        return df
    op, shape = design.operation, design.shape
    path = f"dataflows.{df.name}.{df.form}"
    spatial: dict[int, str] = {}
    skews: dict[str, dict[int, int]] = {}
    problems, fu_skewed = [], []        # fu_skewed: rows whose loop the FUs share otherwise than extent*t + s_axis
    for d, e in zip(op.dims, df.ts_map.exprs):
        co = e.coeffs
        tv = {v: c for v, c in co.items() if v.startswith("t_")}
        # an axis of one FU has s_a = 0 everywhere: its coefficient moves nothing (``k: t_k - s0`` on a 1xN array is
        # not a skew; kept, it named an axis with no loop as the skew's, a KeyError in mappings/tiling.py)
        sv = {int(v[1:]): c for v, c in co.items() if not v.startswith("t_") and shape[int(v[1:])] > 1}
        if set(tv) != {time_var(d)}:
            # every t counts from 0 (arch/mapping_check.py): a row shifted by another loop's t leaves its first
            # iterations unrun, so such a map covers the space only where that loop runs once (the witness says so)
            problems.append(problem(f"{path}.{d}", f"the generator builds maps in which loop {d} reads only its own "
                                    f"temporal variable t_{d} (tiled, possibly skewed by FU coordinates)"
                                    + _larger_problem_witness(design, df), str(e)))
            continue
        a_tiled = [a for a, c in sv.items() if c == 1 and tv[time_var(d)] == shape[a] and shape[a] > 1]
        if tv[time_var(d)] != 1 and a_tiled:
            a = a_tiled[0]
            if a in spatial or len(sv) != 1:
                fu_skewed.append(problem(f"{path}.{d}", "spatially skewed maps (the FU of an iteration depends on "
                                         "several loops or axes) are built only when their strides are the array's "
                                         "extents, one loop per axis", str(e)))
                continue
            spatial[a] = d
        elif tv[time_var(d)] == 1:
            if sv:
                skews[d] = sv
        else:
            fu_skewed.append(problem(f"{path}.{d}", f"loop {d} must be t_{d} (+ a skew by s0..) or extent*t_{d} + "
                                     "s_axis (+ other FU coordinates) for the generator", str(e)))
    if fu_skewed and not problems:
        return _placed_by_residue(design, df, fu_skewed[0])
    if problems or fu_skewed:
        raise SpecError(problems + fu_skewed)
    missing = [a for a in range(len(shape)) if shape[a] > 1 and a not in spatial]
    if missing:
        raise SpecError([problem(path, f"array axis(es) {missing} carry no loop in the tiled form loop = "
                                 "extent*t_loop + s_axis; maps that distribute loops over the FUs otherwise (in blocks, "
                                 "along diagonals) are not built" + _larger_problem_witness(design, df), df.form)])
    order = df.order
    spatial_loops = set(spatial.values())
    inner = df.inner or tuple(itertools.takewhile(lambda x: x not in spatial_loops, reversed(order)))[::-1]
    if df.schedule == "map":
        return _map_schedule(design, df, spatial, skews, tuple(inner))
    control = list(df.control)
    for d, sv in skews.items():
        for a, c in sv.items():
            control[a] -= c
    exprs = []
    for d in op.dims:
        a = next((a for a, dd in spatial.items() if dd == d), None)
        exprs.append(AffineExpr.var(time_var(d)) if a is None
                     else AffineExpr.of({time_var(d): shape[a], space_var(a): 1}))
    ts_map = AffineMap(df.ts_map.inputs, tuple(exprs), df.ts_map.names)
    return dataclasses.replace(df, ts_map=ts_map, control=tuple(control),
                               spatial=tuple(sorted((a, Dim(d)) for a, d in spatial.items())),
                               inner=tuple(inner) if df.inner is not None else None, stt=None)


def _map_schedule(design: Design, df: Dataflow, spatial: dict[int, str], skews: dict[str, dict[int, int]],
                  inner: tuple[str, ...]) -> Dataflow:
    """``schedule: map``: the map's own schedule of its skews on inner loops, as a tiled dataflow that keeps the map's
    rows ``l = t_l - sigma_l.s - early_l`` and the control vector as written (mappings/tiling.py ``row_pads``: rows of
    each l padded by its skew's span, FU s masked outside its own L positions of any of them; the reuse analysis of the
    map gives the wires and FIFOs). A positive FU coefficient (sigma_a < 0, ``r: "t_r + s0 - 2"``) runs FUs further
    along axis a earlier: it is the lag of axis a read backwards, so the row keeps the map's constant as the lead of
    the earliest FU, early_l = the largest -sigma_l.s (``row_lead``; a map's constant below it only adds idle rows and
    is dropped, as the compressed build drops it), and the map's reuse moves run toward lower coordinates of a.
    Built for skews on loops inside the tile and an output accumulated in place over the tile the array runs (the
    padded positions then only add masked products): over the whole tile, or held per run of trailing reduction
    loops that hold every skew (:func:`reduction_runs` moves the loops the output depends on out of the tile, so the
    padded run is the tile and every FU drains at its end); and for skewed loops outside the tile, reduction loops or
    loops the output depends on (mappings/tiling.py ``outer_pads``: K + span tiles, FU s on tile t - offset(s), so
    at each drain it writes its element of tile t - offset(s), and the drains of its masked tiles are padding the
    host program drops). An output that depends on a padded loop and is reduced along an axis its skew moves waits
    before the reduction (dataflow/reduce_skew.py): streamed, each FU's product (a loop inside the tile, H142, or
    outside it, H150); held per FU over a skewed loop outside the tile, each FU's drained sum (H148, several loops
    H150). Anything else is refused, naming the field."""
    if not skews:
        _refuse_map_schedule(df, "the map skews no loop (a coordinate of an axis of one FU is always 0); the map's "
                             "own schedule is built for loops skewed by the FU coordinates")
    shape = design.shape
    exprs = []
    for d in design.operation.dims:
        a = next((a for a, dd in spatial.items() if dd == d), None)
        if d in skews:      # FUs a positive coefficient runs early start the row ``row_lead`` positions sooner
            sigma = [-skews[d].get(b, 0) for b in range(len(shape))]
            exprs.append(AffineExpr.of({time_var(d): 1, **{space_var(b): c for b, c in skews[d].items()}},
                                       -row_lead(sigma, shape)))
        else:
            exprs.append(AffineExpr.of({time_var(d): 1} if a is None else {time_var(d): shape[a], space_var(a): 1}))
    own = dataclasses.replace(df, ts_map=AffineMap(df.ts_map.inputs, tuple(exprs), df.ts_map.names),
                              spatial=tuple(sorted((a, Dim(d)) for a, d in spatial.items())),
                              inner=inner if df.inner is not None else None, stt=None)
    halo = _row_halo(design, own)
    if not any(halo.values()):
        return own
    for loop, h in halo.items():
        i = design.operation.dims.index(loop)
        exprs[i] = AffineExpr.of(dict(exprs[i].terms), exprs[i].const - h)
    return dataclasses.replace(own, ts_map=AffineMap(df.ts_map.inputs, tuple(exprs), df.ts_map.names))


def _refuse_map_schedule(df: Dataflow, why: str):
    raise SpecError([problem(f"dataflows.{df.name}.schedule", why + "; use schedule: compressed (the default)",
                             df.schedule)])


@functools.lru_cache(maxsize=64)
def _row_halo(design: Design, own: Dataflow) -> dict[str, int]:
    """The halo the map's own schedule ``own`` needs at the start of each row of each padded loop l: FU v, f_l FIFOs
    of loop l behind its lane's root, reads at row position pos_l what the root streamed at pos_l - f_l, and its
    products are masked below pos_l = offset_l(v) (early_l + sigma_l.s(v), mappings/tiling.py ``RowPad``);
    max(f_l - offset_l) over every FU of every input (0 when each FIFO's receiver runs one position later than its
    sender, as on the convolution maps of docs/dataflows.md, leads or lags). The lane trees do not depend on it."""
    split = reduction_run_split(design, own)
    formed = tile_forms(design, own)
    fg = _derive(design, formed, (), split.streamed if split else (), design.operation.inputs)
    pads = row_pads(design, formed)
    loop_of = {(a.operand, a.axis): a.loop for a in delay_axes(design, formed)}
    need = {pad.loop: 0 for pad in pads}
    for p in fg.inputs:
        fifos = {ln.fus[0]: dict.fromkeys(need, 0) for ln in p.lanes}
        edges = {(u.coord, v.coord): e for u, v, e in fg.links(p.name) if u.kind is NodeKind.FU}
        frontier = list(fifos)
        while frontier:
            u = frontier.pop()
            for (a, b), e in edges.items():
                if a == u and b not in fifos:
                    fifos[b] = dict(fifos[u])
                    if e.fifo:
                        fifos[b][loop_of[p.name, e.axis]] += e.fifo
                    frontier.append(b)
        for pad in pads:
            need[pad.loop] = max([need[pad.loop]] + [f[pad.loop] - pad.offset(v) for v, f in fifos.items()])
    return need


def fu_placement(design: Design, df: Dataflow) -> dict[tuple[int, ...], tuple[int, ...]] | None:
    """For a ``map`` that skews the FU assignment itself and is a dataflow for every problem size (its
    :class:`~archgen.arch.mapping_check.ResidueForm` is valid: FU s runs x = o(s) + C t, the offsets one complete
    residue system modulo the strides C): the array position p(s) of the map's FU s in the tiled map it runs as,
    when each stride c_d > 1 is the extent of its own axis (p(s)_a = o(s)_d mod c_d for loop d on axis a).
    None for maps that do not skew the FU assignment, for maps that are no dataflow on larger problems, and when
    the strides are not the array's extents one loop per axis.

    Under p, FU s runs the same iterations in the same order as under the map: the residue class of o(s), in
    the temporal order of t. What changes are the time offsets between FUs, as for skews on tile loops: the map
    runs FU s lag(s) = (o(s) - r(s)) / C tiles behind (and a loop skewed by FU coordinates sigma.s steps behind);
    the tiled map runs every FU on the same tile, offset by its control vector."""
    if df.spatial is not None or df.ts_map is None:
        return None
    form = residue_form(df.ts_map, design.shape)
    if form is None or not form.valid_for_all_bounds():
        return None
    shape = design.shape
    rows = [(e, c) for e, c in zip(df.ts_map.exprs, form.moduli) if c != 1]
    used = {v for e, _ in rows for v in e.variables if not v.startswith("t_")}
    if all(_tiled_row(e, c, shape) for e, c in rows) and len(used) == len(rows):
        return None         # tiled rows and loops skewed by FU coordinates: tiled_equivalent's own rewrite
    axes = _residue_axes(df, form, shape)
    if axes is None:
        return None
    return {s: tuple(r[axes[a]] if a in axes else 0 for a in range(len(shape)))
            for s, r in ((s, form.residue(o)) for s, o in form.offsets)}


def _tiled_row(e: AffineExpr, c: int, shape) -> bool:
    """``c*t_d + s_a`` with c the extent of axis a (the constant aside)."""
    sv = [(v, k) for v, k in e.terms if not v.startswith("t_")]
    return len(sv) == 1 and sv[0][1] == 1 and shape[int(sv[0][0][1:])] == c


def _residue_axes(df: Dataflow, form, shape) -> dict[int, int] | None:
    """array axis -> index of the loop it carries: each loop with stride c > 1 on an axis of extent c, every axis
    of extent > 1 used once; among several such assignments the one whose rows read their axis with coefficient 1
    most often (then the first in axis order), so that a tiled row keeps its axis."""
    loops = [i for i, c in enumerate(form.moduli) if c > 1]
    axes = [a for a in range(len(shape)) if shape[a] > 1]
    if len(loops) != len(axes):
        return None
    best, score = None, -1
    for perm in itertools.permutations(axes):
        if any(shape[a] != form.moduli[i] for i, a in zip(loops, perm)):
            continue
        hits = sum(df.ts_map.exprs[i].coeff(space_var(a)) == 1 for i, a in zip(loops, perm))
        if hits > score:
            best, score = {a: i for i, a in zip(loops, perm)}, hits
    return best


def _placed_by_residue(design: Design, df: Dataflow, refused) -> Dataflow:
    """The tiled map a map that skews the FU assignment runs as (:func:`fu_placement`), or the refusal: the
    iteration it runs twice or misses on larger problems when it is no dataflow for every problem size (the
    not-injective / does-not-cover refusal), the unchanged ``refused`` problem when its strides are not the
    array's extents."""
    form = residue_form(df.ts_map, design.shape)
    if form is not None and not form.valid_for_all_bounds():
        witness = _larger_problem_witness(design, df, lead=": ")
        if not witness:
            raise AssertionError(f"residue form of {df.name} is invalid but no witness was found")
        raise SpecError([problem(refused.path, "not a dataflow beyond the reference bounds: a map whose FU of an "
                                 "iteration depends on several loops or axes runs every iteration exactly once on "
                                 "every problem size only when the FUs' offsets sigma.s + m are one complete residue "
                                 "system modulo the loops' strides, each below its stride, and this one is not"
                                 + witness, refused.got)])
    axes = _residue_axes(df, form, design.shape) if form is not None else None
    if axes is None:
        if form is not None:        # a dataflow for every problem size whose strides are not the array's extents
            refused = problem(refused.path, refused.message + f" (this map runs every iteration once on every problem "
                              f"size, but with strides {dict(zip(form.dims, form.moduli))} on an array of "
                              f"{'x'.join(map(str, design.shape))} it is a folded array; a spec whose every dataflow "
                              "folds onto one logical array with one placement is built on that array, and this "
                              "design's dataflows do not; by itself it is built on its own logical array "
                              f"(--dataflow {df.name}), and fused with them on that array too (compile_fused); on the "
                              "spec's array as written it is not)", refused.got)
        raise SpecError([refused])
    op, shape = design.operation, design.shape
    on_axis = {i: a for a, i in axes.items()}
    exprs = tuple(AffineExpr.of({time_var(d): shape[on_axis[i]], space_var(on_axis[i]): 1}) if i in on_axis
                  else AffineExpr.var(time_var(d)) for i, d in enumerate(op.dims))
    spatial_loops = {op.dims[i] for i in axes.values()}
    inner = df.inner or tuple(itertools.takewhile(lambda x: x not in spatial_loops, reversed(df.order)))[::-1]
    return dataclasses.replace(df, ts_map=AffineMap(df.ts_map.inputs, exprs, df.ts_map.names),
                               spatial=tuple(sorted((a, Dim(op.dims[i])) for a, i in axes.items())),
                               inner=tuple(inner) if df.inner is not None else None, stt=None)


@dataclass(frozen=True)
class MapSkew:
    """A ``map``'s skew of loop ``loop`` by the FU coordinates (``loop: "t_loop - sigma.s"``): under the map FU s
    runs each iteration of ``loop`` sigma.s iterations late. ``after``: the loops after it in the temporal order;
    one iteration of ``loop`` is the product of their trip counts in array steps (1 on the innermost loop)."""

    loop: Dim
    sigma: tuple[int, ...]       # per array axis
    after: tuple[Dim, ...]

    def steps_per_iteration(self, design: Design, df: Dataflow, bounds: Mapping[str, int]) -> int:
        """D: array steps of one iteration of ``loop`` on ``bounds`` (spatial loops count their tiles)."""
        tiled = tiled_equivalent(design, df)
        return math.prod(-(-bounds[d] // design.shape[tiled.axis_of[d]]) if d in tiled.axis_of else bounds[d]
                         for d in self.after)


def map_skews(design: Design, df: Dataflow) -> tuple[MapSkew, ...]:
    """The skews by FU coordinates of a ``map`` dataflow's loops, in temporal order (() for other forms)."""
    if df.spatial is not None or df.ts_map is None or fu_placement(design, df) is not None:
        return ()           # a map placed by residue runs every FU on the same tile: its lags are compressed away
    shape, out = design.shape, []
    order = list(df.order)
    for d, e in zip(design.operation.dims, df.ts_map.exprs):
        co = e.coeffs
        if co.get(time_var(d)) != 1 or any(v.startswith("t_") and v != time_var(d) for v in co):
            continue
        sigma = tuple(-co.get(space_var(a), 0) if shape[a] > 1 else 0 for a in range(len(shape)))  # s_a = 0 on
        if any(sigma):                                                                          # an axis of one FU
            out.append(MapSkew(d, sigma, tuple(order[order.index(d) + 1:])))
    return tuple(sorted(out, key=lambda m: order.index(m.loop)))


@dataclass(frozen=True)
class SkewLaneCost:
    """Memory-fed input lanes of a ``map`` whose skew sits on a loop inside the tile with loops after it: under
    the map's own schedule (its reuse moves: wires, registers and FIFOs of D steps, chosen by the same
    arborescence and costs as delay connections) and under the compressed build (``tiled_equivalent``)."""

    loop: Dim
    literal: Mapping[str, int]       # streamed input -> memory lanes, the map's own schedule
    compressed: Mapping[str, int]    # the same under the tiled map with control c - sigma
    span: int = 0                    # iterations of ``loop`` the map's own schedule pads each row with

    @property
    def saving(self) -> int:
        return sum(self.compressed.values()) - sum(self.literal.values())

    def tile_steps(self, design: Design, df: Dataflow, bounds: Mapping[str, int]) -> tuple[int, int]:
        """(map's own, compressed) array steps of one tile on ``bounds``: the compressed build's steps per tile
        (mappings/tiling.py ``TileMapping.steps``), the skewed loop's row longer by ``span`` iterations under the
        map's own schedule."""
        from archgen.mappings.tiling import map_problem
        mapping = map_problem(design, bounds, tiled_equivalent(design, _compressed(df)))
        trips = mapping.trips()[self.loop]
        return mapping.steps // trips * (trips + self.span), mapping.steps


def skew_lane_cost(design: Design, df: Dataflow) -> SkewLaneCost | None:
    """The lane costs of both schedules of a skew on a loop inside the tile that has loops after it (None for
    other dataflows: skews on the innermost loop are exact, skews on tile loops keep the compressed build).

    The map's candidate connections are its unit reuse moves along one array axis (dataflow/reuse.py
    ``reuse_vectors`` solved on the map): dt = 0 is a wire either way, one step of the innermost loop a
    register hop, one step of an inner loop with loops after it a run-time-depth FIFO (cost: its bits,
    width x ``array.max_fifo_depth``, built only below a memory lane, as for delay connections). Moves that
    step several loops or a tile loop need storage across a row's wrap and are not candidates."""
    skews = [sk for sk in map_skews(design, df) if sk.after]
    if not skews:
        return None
    tiled = tiled_equivalent(design, _compressed(df))
    inner = tiled.inner_dims()
    if any(sk.loop not in inner for sk in skews):
        return None
    from .compile import compile_array          # the built interconnect (compile imports this module)
    built = compile_array(design, tiled, pipeline=False).fu_graph
    compressed = {p.name: p.n_lanes for p in built.inputs if p.role is Role.STREAM}
    shape, order = design.shape, list(df.order)
    coords = list(itertools.product(*[range(e) for e in shape]))
    literal = {}
    for name in compressed:
        width = design.type_of[name].bits
        cand = nx.DiGraph()
        root = _mem(name, None)
        cand.add_nodes_from([fu(s) for s in coords] + [root])
        for s in coords:
            cand.add_edge(root, fu(s), weight=MEMORY_PORT_COST)
        for r in reuse_vectors(design, df, name):
            axis = r.spatial_axis if not any(r.dt) else next((a for a, v in enumerate(r.ds) if v), None)
            loops = [d for v, d in zip(r.dt, order) if v]
            if sum(map(abs, r.ds)) != 1 or len(loops) > 1 or any(order[i] not in inner or v < 0
                                                                  for i, v in enumerate(r.dt) if v):
                continue
            if not loops:
                cost, steps = 1.0, (1, -1)
            else:
                buffered = loops[0] != inner[-1]
                cost, steps = _fifo_cost(buffered, r.delay, width, design.max_fifo_depth), (r.ds[axis],)
                if buffered and cost >= MEMORY_PORT_COST:
                    continue
            for s in coords:
                for step in steps:
                    t = list(s)
                    t[axis] += step
                    if 0 <= t[axis] < shape[axis]:
                        cand.add_edge(fu(s), fu(tuple(t)), weight=cost)
        tree = minimum_spanning_arborescence(cand, attr="weight")
        literal[name] = len(list(tree.successors(root)))
    (sk,) = skews
    span = RowPad(sk.loop, sk.sigma).span(shape)      # a lead (sigma_a < 0) pads the row as a lag does
    return SkewLaneCost(sk.loop, MappingProxyType(literal), MappingProxyType(compressed), span)


def _compressed(df: Dataflow) -> Dataflow:
    """``df`` with the default schedule: the compressed build whose lanes and steps ``--explain`` compares."""
    return dataclasses.replace(df, schedule="compressed")


def _larger_problem_witness(design: Design, df: Dataflow,
                            lead: str = "; nor is it injective and covering beyond the reference bounds: ") -> str:
    """A map the checks accepted on the reference bounds may still not be a dataflow for larger problems (a block
    distribution ``i: "t_i + 2*s0"`` is injective only while i <= 2 x P0): the first iteration it runs twice or
    misses on bounds grown past every FU coefficient, as text for the refusal, or "" when it stays valid. For a
    map whose loops read their own t only, the bounds are grown past every witness of
    :class:`~archgen.arch.mapping_check.ResidueForm` (so "" exactly when it is valid for every problem size)."""
    from archgen.arch.mapping_check import brute_force_coverage
    op, shape = design.operation, design.shape
    bounds = {}
    for d, e in zip(op.dims, df.ts_map.exprs):
        grow = sum(abs(c) * shape[int(v[1:])] for v, c in e.coeffs.items() if not v.startswith("t_"))
        bounds[d] = design.reference_bounds[d] + grow + 1
    form = residue_form(df.ts_map, shape)
    if form is not None:
        bounds = {d: max(n, form.witness_bounds(design.reference_bounds)[d]) for d, n in bounds.items()}
    try:
        cov = brute_force_coverage(df.ts_map, shape, bounds)
    except ValueError:
        return ""
    if cov.ok:
        return ""
    fmt = lambda x: "(" + ", ".join(f"{d}={v}" for d, v in zip(op.dims, x)) + ")"     # noqa: E731
    what = f"runs {fmt(cov.duplicated)} more than once" if cov.duplicated else f"never runs {fmt(cov.missed)}"
    return f"{lead}with bounds {bounds} it {what}"


def _delay_connections(design: Design, df: Dataflow, operand: str) -> tuple:
    """(DelayAxis, physical delay) of each delay connection of ``operand``: the axes come from
    mappings/tiling.py ``delay_axes`` (the rule the halo of the tile walk follows), the delay from the
    reuse analysis' solution of ``A_X M [dt; ds] = 0`` for that move (dataflow/reuse.py ``delay_reuse``)."""
    axes = [a for a in delay_axes(design, df) if a.operand == operand]
    ref = design.reference_bounds
    trips = {d: -(-ref[d] // design.shape[df.axis_of[d]]) if d in df.axis_of else ref[d] for d in df.order}
    spans = dict(delay_halo(design, df))       # a padded loop after l (several skewed loops) counts its span
    out = []
    for a in axes:          # one loop for delay connections; under schedule: map, each padded loop its own
        k = list(df.order).index(a.loop)
        sols = delay_reuse(design, df, operand, a.loop)
        stride = math.prod(trips[d] + spans.get(d, 0) for d in a.after)        # one step of the loop, in array steps
        match = [r for r in sols if r.dt[k] == 1 and r.ds[a.axis] == a.step]
        if len(match) != 1 or match[0].delay != stride + a.skew:
            raise AssertionError(f"delay connection {a} disagrees with the reuse analysis {sols}")
        out.append((a, match[0].delay))
    return tuple(out)


def _stationary(g, name, shape, coords, dtype) -> OperandPlan:
    """One register per FU, loaded row by row over a bus: lane = last-axis coordinate."""
    lanes = []
    for lane in range(shape[-1]):
        fus = tuple(s for s in coords if s[-1] == lane)
        mem = _mem(name, lane)
        g.add_node(mem)
        for s in fus:
            g.add_edge(mem, fu(s), Link(name, EdgeKind.MEMORY, 0, dtype.bits, load=True))
            g.set_role(fu(s), name, Role.STATIONARY)
        lanes.append(Lane(lane, fus, 0))
    return OperandPlan(name, Role.STATIONARY, dtype.bits, tuple(lanes), signed=dtype.signed)


@dataclass(frozen=True)
class _Move:
    """A candidate FU-to-FU connection: its registers (c.ds), the array axis it moves along, its cost."""

    delay: int
    axis: int | None
    cost: float
    fifo: int = 0             # a delay connection: FIFO steps in front of the ``delay`` registers


def _candidates(coords, shape, reuse: _Reuse, axes) -> dict[tuple[Node, Node], _Move]:
    """The reuse moves along ``axes`` as FU-to-FU edges with delay c.ds >= 0."""
    moves = {}
    for s in coords:
        for a in axes:
            for step, delay in reuse.steps(a):
                t = list(s)
                t[a] += step
                if not 0 <= t[a] < shape[a]:
                    continue
                # prefer forward steps on ties so broadcast trees are chains from index 0
                cost = (delay * 10 + 1) + (0 if step > 0 else 0.5)
                moves[(fu(s), fu(t))] = _Move(delay, a, cost)
    return moves


def _fifo_cost(buffered: bool, depth: int, width: int, max_depth: int) -> float:
    """The arborescence weight of a delay connection: a one-register FIFO (innermost loop) costs like a hop
    of its depth; one of run-time depth the bits of its buffer (width x array.max_fifo_depth, built only
    below a memory lane: tiling.py delay_axes)."""
    return width * max_depth + 0.25 if buffered else depth * 10 + 1.25


def _fifo_candidates(coords, shape, reuse: _Reuse, width: int, max_depth: int) -> dict[tuple[Node, Node], _Move]:
    """The delay connections as FU-to-FU edges: a one-step FIFO, then c.ds registers. A little dearer than a
    systolic hop of the same length, so the tree takes plain forwarding where both reach an FU."""
    moves = {}
    for a, depth in reuse.delays:
        cost = _fifo_cost(a.buffered, depth, width, max_depth)
        for s in coords:
            t = list(s)
            t[a.axis] += a.step
            if 0 <= t[a.axis] < shape[a.axis]:
                moves[(fu(s), fu(t))] = _Move(a.skew, a.axis, cost, fifo=1)
    return moves


def _streamed_input(g, name, shape, coords, skew, reuse: _Reuse, dtype, max_fifo_depth: int) -> OperandPlan:
    moves = _candidates(coords, shape, reuse, reuse.axes)
    for e, m in _fifo_candidates(coords, shape, reuse, dtype.bits, max_fifo_depth).items():
        moves.setdefault(e, m)
    # an FU-to-FU edge carries one operand's wire: edges an earlier operand took are not candidates
    # (this operand then forwards along another axis or takes more memory lanes)
    moves = {e: m for e, m in moves.items() if (g.share or e not in g.links) and e not in g.reserved}
    root = _mem(name, None)
    for s in coords:
        moves[(root, fu(s))] = _Move(skew[s], None, MEMORY_PORT_COST)
    tree = _lane_tree(coords, moves, root)
    lanes = []
    roots = sorted(v for v in tree.successors(root))
    for lane, first in enumerate(roots):
        mem = _mem(name, lane)
        g.add_node(mem)
        members = [first] + [v for v in nx.descendants(tree, first)]
        zero = all(moves[e].delay == 0 and not moves[e].fifo for e in nx.bfs_edges(tree, first))
        if zero and len(members) > 1:
            # a same-cycle tree is one net: the lane drives every member directly
            for v in sorted(members):
                g.add_edge(mem, v, Link(name, EdgeKind.BROADCAST, skew[first.coord], dtype.bits,
                                        fanout=len(members)))
        else:
            g.add_edge(mem, first, Link(name, EdgeKind.MEMORY, skew[first.coord], dtype.bits))
            for u, v in nx.bfs_edges(tree, first):
                e = moves[(u, v)]
                kind = EdgeKind.DELAY if e.fifo else EdgeKind.SYSTOLIC if e.delay > 0 else EdgeKind.BROADCAST
                g.add_edge(u, v, Link(name, kind, e.delay, dtype.bits, axis=e.axis, fifo=e.fifo))
        for v in members:
            g.set_role(v, name, Role.STREAM)
        lanes.append(Lane(lane, tuple(v.coord for v in [first] + sorted(set(members) - {first})), skew[first.coord]))
    moves = tuple((a, reuse.moves[a][1]) for a in reuse.axes)
    return OperandPlan(name, Role.STREAM, dtype.bits, tuple(lanes), moves, signed=dtype.signed)


def _lane_tree(coords, moves: dict, root: Node) -> nx.DiGraph:
    """The minimum spanning arborescence over the candidate ``moves`` (memory lanes from ``root`` included)."""
    cand = nx.DiGraph()
    cand.add_nodes_from([fu(s) for s in coords] + [root])
    cand.add_weighted_edges_from((u, v, m.cost) for (u, v), m in moves.items())
    return minimum_spanning_arborescence(cand, attr="weight")   # networkx's answer, fast path first


def _accumulate(g, name, shape, coords, dtype, psum_in) -> OperandPlan:
    lanes = []
    for lane in range(shape[-1]):
        fus = tuple(s for s in coords if s[-1] == lane)
        drain, mem = _drain(name, lane), _mem(name, lane)
        g.add_node(drain)
        if psum_in:
            g.add_node(mem)
        for s in fus:
            g.set_role(fu(s), name, Role.ACCUMULATE)
            g.add_edge(fu(s), drain, Link(name, EdgeKind.DRAIN, 0, dtype.bits))
            if psum_in:
                g.add_edge(mem, fu(s), Link(name, EdgeKind.MEMORY, 0, dtype.bits, load=True))
        lanes.append(Lane(lane, fus, 0))
    return OperandPlan(name, Role.ACCUMULATE, dtype.bits, tuple(lanes), psum_in=psum_in, signed=dtype.signed)


def _chain_successors(coords, shape, reuse: _Reuse, chained) -> dict:
    """FU -> (next FU, registers, axis) of the partial-sum chains along the ``chained`` axes: one successor
    per FU, along the first chained axis that has one (an in-tree toward the chain terminals)."""
    out_moves: dict[Node, list] = {}
    for (u, v), m in _candidates(coords, shape, reuse, chained).items():
        if m.delay > 0:
            out_moves.setdefault(u, []).append((v, m))
    succ = {}
    for s in coords:
        outs = sorted(out_moves.get(fu(s), []), key=lambda vm: (vm[1].cost, vm[0]))
        for a in chained:
            nxt = [(v, m) for v, m in outs if m.axis == a]
            if nxt:
                succ[s] = (nxt[0][0].coord, nxt[0][1].delay, a)
                break
    return succ


def _reduced_accumulate(g, name, shape, coords, reuse: _Reuse, chained, trees, dtype, psum_in) -> OperandPlan:
    """An output accumulated in place whose reduction also runs across array axes: the FUs that differ only
    along those axes are summed every step (an adder tree when the control vector is 0 on them, a partial-sum
    chain when it is not) into one accumulator per output element, and the accumulators drain row by row.
    Drain lanes run along the last array axis that is not reduced (one lane if every axis is reduced);
    partial sums of earlier tiles are preloaded into the accumulators over the same lanes and rows."""
    reduced = set(chained) | set(trees)
    kept = [a for a in range(len(shape)) if a not in reduced]
    lane_axis = kept[-1] if kept else None
    canon = lambda s: tuple(0 if a in reduced else v for a, v in enumerate(s))
    outputs = sorted({canon(s) for s in coords})
    acc_of = {c: Node(NodeKind.ACC, coord=c) for c in outputs}
    for s in coords:
        g.set_role(fu(s), name, Role.REDUCE)
    ends = _chains(g, name, coords, shape, reuse, chained, dtype)
    for i, c in enumerate(outputs):
        g.add_node(acc_of[c])
        group = [s for s in ends if canon(s) == c]
        if trees:     # the chain ends (every FU when nothing is chained) differ along the tree axes only
            tnode = Node(NodeKind.TREE, operand=name, lane=i)
            g.add_node(tnode)
            for s in group:
                g.add_edge(fu(s), tnode, Link(name, EdgeKind.REDUCE, 0, dtype.bits))
            g.add_edge(tnode, acc_of[c], Link(name, EdgeKind.REDUCE, 0, dtype.bits))
        else:
            (s,) = group
            g.add_edge(fu(s), acc_of[c], Link(name, EdgeKind.REDUCE, 0, dtype.bits))
    lanes = []
    for lane in range(shape[lane_axis] if kept else 1):
        fus = tuple(c for c in outputs if lane_axis is None or c[lane_axis] == lane)
        drain = _drain(name, lane)
        g.add_node(drain)
        for c in fus:
            g.add_edge(acc_of[c], drain, Link(name, EdgeKind.DRAIN, 0, dtype.bits))
        if psum_in:
            mem = _mem(name, lane)
            g.add_node(mem)
            for c in fus:
                g.add_edge(mem, acc_of[c], Link(name, EdgeKind.MEMORY, 0, dtype.bits, load=True))
        lanes.append(Lane(lane, fus, 0))
    axes = tuple((a, reuse.moves[a][1]) for a in chained)
    return OperandPlan(name, Role.ACCUMULATE, dtype.bits, tuple(lanes), axes, tree_axes=tuple(trees),
                       psum_in=psum_in, signed=dtype.signed)


def _chains(g, name, coords, shape, reuse: _Reuse, chained, dtype) -> list:
    """Add the partial-sum chains along the ``chained`` axes (none when there are none) and return the FUs
    they end in, sorted: every FU without a successor."""
    succ = _chain_successors(coords, shape, reuse, chained) if chained else {}
    for s, (t, delay, a) in succ.items():
        g.add_edge(fu(s), fu(t), Link(name, EdgeKind.REDUCE_CHAIN, delay, dtype.bits, axis=a))
    return sorted(s for s in coords if s not in succ)


def _chain_to(g, name, end) -> list:
    """The FUs of the partial-sum chain that ends in FU ``end``, root first (one path through the in-tree)."""
    chain = [end]
    while True:
        preds = sorted(u.coord for u in g.g.predecessors(fu(chain[0]))
                       if u.kind == NodeKind.FU and g.links[(u, fu(chain[0]))].operand == name)
        if not preds:
            return chain
        chain.insert(0, preds[0])


def _streamed_output(g, name, shape, coords, skew, control, reuse: _Reuse, chained, trees, dtype,
                     psum_in) -> OperandPlan:
    """A streamed output reduced across the array: partial-sum chains along the ``chained`` axes (toward larger
    c.s), then, when there are ``trees`` axes (control 0 there, so the chain ends of a group run in the same
    cycle), one adder tree per group of chain ends that differ only along those axes. Each chain end (chains
    only) or tree drains one lane, de-skewed to the latest; partial sums of earlier tiles enter at the chain
    roots (chains only) or as one more tree input."""
    for s in coords:
        g.set_role(fu(s), name, Role.REDUCE)
    ends = _chains(g, name, coords, shape, reuse, chained, dtype)
    span = max(skew[s] for s in ends)
    lanes = []
    if trees:
        keyf = lambda s: tuple(v for a, v in enumerate(s) if a not in trees)     # noqa: E731
        groups: dict[tuple, list] = {}
        for s in ends:
            groups.setdefault(keyf(s), []).append(s)
        for lane, key in enumerate(sorted(groups)):
            group = sorted(groups[key])
            fus = tuple(v for e in group for v in _chain_to(g, name, e))
            tnode, drain = Node(NodeKind.TREE, operand=name, lane=lane), _drain(name, lane)
            g.add_node(tnode)
            for s in group:
                g.add_edge(fu(s), tnode, Link(name, EdgeKind.REDUCE, 0, dtype.bits))
            g.add_node(drain)
            g.add_edge(tnode, drain, Link(name, EdgeKind.DRAIN, span - skew[group[0]], dtype.bits))
            if psum_in:
                mem = _mem(name, lane)
                g.add_node(mem)
                g.add_edge(mem, tnode, Link(name, EdgeKind.MEMORY, skew[group[0]], dtype.bits))
            lanes.append(Lane(lane, fus, skew[fus[0]]))
        moves = tuple((a, reuse.moves[a][1]) for a in chained)
        return OperandPlan(name, Role.STREAM_OUT, dtype.bits, tuple(lanes), moves, tree_axes=tuple(trees),
                           psum_in=psum_in, signed=dtype.signed)
    # chains only: terminal FUs drain, partial sums enter at the roots
    for lane, s in enumerate(ends):
        drain = _drain(name, lane)
        g.add_node(drain)
        g.add_edge(fu(s), drain, Link(name, EdgeKind.DRAIN, span - skew[s], dtype.bits))
        chain = _chain_to(g, name, s)
        lanes.append(Lane(lane, tuple(chain), skew[chain[0]]))
    if psum_in:
        # one partial sum per output: it enters at the root of the path to its lane's end; where chains along
        # several axes merge (an in-tree with several roots), the other roots start from zero
        for lane, s in enumerate(ln.fus[0] for ln in lanes):
            mem = _mem(name, lane)
            g.add_node(mem)
            g.add_edge(mem, fu(s), Link(name, EdgeKind.MEMORY, skew[s], dtype.bits))
    moves = tuple((a, reuse.moves[a][1]) for a in chained)
    return OperandPlan(name, Role.STREAM_OUT, dtype.bits, tuple(lanes), moves, psum_in=psum_in, signed=dtype.signed)
