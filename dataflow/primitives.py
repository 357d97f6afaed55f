"""Lower an FU graph to a primitive graph: multipliers, adders, accumulators, registers, memory ports.

Every primitive node (a :class:`Node` key) carries a :class:`Primitive`: its latency (cycles from its
inputs being latched to its output being valid; 0 for combinational logic), its combinational delay
``delay_ns`` (through the node when latency is 0, in front of its internal register otherwise) and
``out_ns`` (clock to output of a registered node). Every edge carries a :class:`Wire`: its bit width, the
dataflow delay ``delay`` (D_e, the registers the schedule itself requires: systolic hops, skews,
de-skews), ``wire_ns`` (the fan-out penalty of the net that drives it, plus, on a link between FUs more
than one FU pitch apart on the physical array, the table's wire delay per further pitch: its
``span_ns``) and ``fu_edge``, the FU-graph edge it implements (None inside an FU).

What stays outside delay matching: an edge with ``hold=True`` feeds a value that is constant while it
is used (a stationary operand's register output, a partial-sum preload into an accumulator, an
accumulator's result read out after the reduction). Its
timing still starts from a register (the stationary or accumulator register) and is checked there.

Registers on streamed operands are not nodes: they are what the LP puts on edges (the D_e the schedule
needs, plus pipelining and balancing registers), so the graph never counts them twice.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import networkx as nx

from archgen.arch.errors import SpecError, problem
from archgen.dataflow.delays import DelayTable
from archgen.dataflow.ir import EdgeKind, Link, Node, NodeKind, Primitive, Role, Wire

__all__ = ["PrimitiveGraph", "fu_pitches", "lower_to_primitives", "multiplier_stages",
           "naive_register_bits", "tree_levels", "PRIMITIVE_KINDS"]

PRIMITIVE_KINDS = (NodeKind.MEM_PORT, NodeKind.PORT, NodeKind.STATIONARY_REG, NodeKind.MUL, NodeKind.ADD,
                   NodeKind.ACC, NodeKind.TREE_ADD, NodeKind.DRAIN, NodeKind.FIFO)
_INPUT_ROLES = (Role.STREAM, Role.STATIONARY)
_OUTPUT_ROLES = (Role.ACCUMULATE, Role.REDUCE)
# FU-to-FU edges that forward an input operand from the sender's input port: systolic hops, and the
# same-cycle hops of a lane whose tree mixes wires with registers or delay connections (interconnect.py)
_FORWARDS = (EdgeKind.SYSTOLIC, EdgeKind.BROADCAST)


@dataclass(frozen=True)
class PrimitiveGraph:
    """A primitive-level DAG ready for delay matching, read-only once built.

    ``graph`` is the topology (a frozen networkx DiGraph whose nodes are :class:`Node` values and whose
    attribute dicts stay empty); the payloads are typed: ``primitives`` maps a node to its
    :class:`Primitive`, ``wires`` an edge ``(u, v)`` to its :class:`Wire`. Iterate with :meth:`edges`,
    :meth:`out_wires` and :meth:`in_wires`, which keep the graph's (deterministic) order."""

    graph: nx.DiGraph = field(compare=False, repr=False)
    primitives: Mapping[Node, Primitive] = field(compare=False, repr=False)
    wires: Mapping[tuple[Node, Node], Wire] = field(compare=False, repr=False)
    target: str
    clk_to_q_ns: float
    setup_ns: float
    name: str = ""

    @classmethod
    def build(cls, nodes: Iterable[tuple[Node, Primitive]], wires: Iterable[tuple[Node, Node, Wire]], *,
              target: str, clk_to_q_ns: float, setup_ns: float, name: str = "") -> "PrimitiveGraph":
        """The graph of ``nodes`` and ``wires`` (in that insertion order); every wire joins two listed nodes."""
        g = nx.DiGraph()
        prims = dict(nodes)
        g.add_nodes_from(prims)
        links = {}
        for u, v, w in wires:
            if u not in prims or v not in prims:
                raise ValueError(f"wire {u!r} -> {v!r} joins a node that is not in the graph")
            links[(u, v)] = w
        g.add_edges_from(links)           # in the wires' order, as one add_edge per wire
        nx.freeze(g)
        return cls(g, MappingProxyType(prims), MappingProxyType(links), target, clk_to_q_ns, setup_ns, name)

    def __repr__(self) -> str:
        return (f"PrimitiveGraph({self.name!r}, target={self.target!r}, nodes={self.graph.number_of_nodes()}, "
                f"edges={self.graph.number_of_edges()})")

    def primitive(self, v: Node) -> Primitive:
        return self.primitives[v]

    def wire(self, u: Node, v: Node) -> Wire:
        return self.wires[(u, v)]

    def edges(self) -> Iterator[tuple[Node, Node, Wire]]:
        """(source, sink, Wire) of every edge in the graph's order."""
        return ((u, v, self.wires[(u, v)]) for u, v in self.graph.edges)

    def out_wires(self, u: Node) -> list[tuple[Node, Wire]]:
        return [(v, self.wires[(u, v)]) for v in self.graph.successors(u)]

    def in_wires(self, v: Node) -> list[tuple[Node, Wire]]:
        return [(u, self.wires[(u, v)]) for u in self.graph.predecessors(v)]

    def nodes_of_kind(self, kind: NodeKind) -> list[Node]:
        return [n for n in self.graph if n.kind == kind]


def lower_to_primitives(fu_graph, table: DelayTable, *, clock_period_ns: float | None = None) -> PrimitiveGraph:
    """Lower `fu_graph` (an FUGraph, or anything with its `graph`, `link`, `roles_of`, `widths`, `acc_width`
    and `name`) with delays from `table`.

    With a clock period, every multiplier slower than the clock gets internal stages
    (:func:`multiplier_stages`) as it is built; the graph is never changed afterwards."""
    g: nx.DiGraph = fu_graph.graph
    acc_width = int(fu_graph.acc_width)
    # a delay connection's FIFO of run-time depth is a buffer read asynchronously: its output passes a
    # log2(entries)-level read multiplexer after the clock (rtlgen/array.py ``_fifo_buffer``)
    buffer_read_levels = 0
    if getattr(fu_graph, "fifo_depth_loops", ()):
        buffer_read_levels = max(1, (fu_graph.design.max_fifo_depth - 1).bit_length())
    problems = []
    nodes: dict[Node, Primitive] = {}
    pending: dict[tuple[Node, Node], Wire] = {}      # wires before their nets' fan-out is known
    span: dict[tuple[Node, Node], float] = {}        # links longer than one FU pitch: their extra wire delay
    pitches = fu_pitches(fu_graph)
    muls: dict[Node, tuple[float, int]] = {}        # multiplier -> (delay_ns, width)

    def node(nid, *, latency, delay_ns=0.0, out_ns=0.0, width, internal_stages=0):
        nodes[nid] = Primitive(int(latency), int(width), float(delay_ns), float(out_ns), int(internal_stages))

    def edge(u, v, *, width, delay, kind, operand, fu_edge=None, hold=False, link=False):
        if (u, v) in pending:
            problems.append(problem(f"edge {u!r} -> {v!r}", "two FU-graph edges lower onto the same primitive "
                                    "edge; the FU graph has parallel connections", fu_edge))
            return
        pending[(u, v)] = Wire(operand, kind, int(width), int(delay), bool(hold), 0.0, fu_edge)
        extra = table.span_ns(pitches(*fu_edge)) if link else 0.0
        if extra > 0:
            span[(u, v)] = extra

    # memory ports, drains
    for n in g.nodes:
        if n.kind == NodeKind.MEM:
            node(_mem_port(n.operand, n.lane), latency=table.memory_latency, out_ns=table.memory_clk_to_out_ns,
                 width=fu_graph.widths.get(n.operand, acc_width))
        elif n.kind == NodeKind.DRAIN:
            node(_drain(n), latency=1, width=acc_width)
        elif n.kind == NodeKind.ACC:      # the accumulator of an output reduced across the array
            node(n, latency=1, delay_ns=table.adder_ns(acc_width), out_ns=table.clk_to_q_ns, width=acc_width)

    # FUs: input ports (or stationary registers), multiplier, partial-sum adder or accumulator
    psum_out: dict[tuple, Node] = {}     # (fu node, output operand) -> primitive producing it
    inputs_of: dict[tuple, Node] = {}    # (fu node, input operand) -> primitive receiving it
    for n in g.nodes:
        if n.kind != NodeKind.FU:
            continue
        coord, roles = n.coord, fu_graph.roles_of(n)
        ins = sorted(x for x, r in roles.items() if r in _INPUT_ROLES)
        outs = sorted(x for x, r in roles.items() if r in _OUTPUT_ROLES)
        bad = sorted(x for x, r in roles.items() if r not in _INPUT_ROLES + _OUTPUT_ROLES)
        if bad or not ins or len(outs) != 1:
            problems.append(problem(f"fu {coord}.roles", "an FU needs at least one input operand (stream or "
                                    "stationary) and exactly one output (accumulate or reduce)",
                                    {x: str(r) for x, r in roles.items()}))
            continue
        in_w = [int(fu_graph.widths[x]) for x in ins]
        mul = Node(NodeKind.MUL, coord)
        mul_width = min(sum(in_w), acc_width)
        muls[mul] = (table.multiplier_ns(max(in_w)), mul_width)
        nodes[mul] = _multiplier(table, clock_period_ns, *muls[mul], 0.0)   # its input wires are known below
        for x, w in zip(ins, in_w):
            if roles[x] == Role.STATIONARY:
                src = Node(NodeKind.STATIONARY_REG, coord, x)
                node(src, latency=1, out_ns=table.clk_to_q_ns, width=w)
            else:
                src = Node(NodeKind.PORT, coord, x)
                node(src, latency=0, width=w)
            inputs_of[(n, x)] = src
            edge(src, mul, width=w, delay=0, kind=EdgeKind.INTERNAL, operand=x, hold=roles[x] == Role.STATIONARY)
        out = outs[0]
        psum_in = [fu_graph.link(u, n) for u in g.predecessors(n)]
        psum_in = [e for e in psum_in if e.operand == out and not e.load]
        if roles[out] == Role.ACCUMULATE:
            acc = Node(NodeKind.ACC, coord)
            node(acc, latency=1, delay_ns=table.adder_ns(acc_width), out_ns=table.clk_to_q_ns, width=acc_width)
            edge(mul, acc, width=mul_width, delay=0, kind=EdgeKind.INTERNAL, operand=out)
            psum_out[(n, out)] = acc
            inputs_of[(n, out)] = acc
        elif psum_in:
            add = Node(NodeKind.ADD, coord)
            node(add, latency=0, delay_ns=table.adder_ns(acc_width), width=acc_width)
            edge(mul, add, width=mul_width, delay=0, kind=EdgeKind.INTERNAL, operand=out)
            psum_out[(n, out)] = add
            inputs_of[(n, out)] = add
        else:
            psum_out[(n, out)] = mul

    # adder trees: ceil(log2 n) levels of two-input adders; an odd input skips to the next level
    tree_leaves: dict[Node, list] = {}
    tree_root: dict[Node, tuple] = {}
    for n in g.nodes:
        if n.kind == NodeKind.TREE:
            tree_leaves[n] = sorted(u for u in g.predecessors(n))
    for t, preds in tree_leaves.items():
        leaves = []
        for u in preds:
            e = fu_graph.link(u, t)
            src = psum_out.get((u, e.operand)) if u.kind == NodeKind.FU else _mem_port(u.operand, u.lane)
            if src is None:
                problems.append(problem(f"edge {u!r} -> {t!r}", "tree input from an FU without that output", e))
                continue
            leaves.append((src, e, (u, t)))
        level, current = 0, leaves
        while len(current) > 1:
            level += 1
            nxt = []
            for j in range(0, len(current) - 1, 2):
                a = Node(NodeKind.TREE_ADD, operand=t.operand, lane=t.lane, level=level, index=j // 2)
                node(a, latency=0, width=acc_width, delay_ns=table.adder_ns(acc_width) + table.tree_level_wire_ns)
                for src, e, fe in current[j:j + 2]:
                    edge(src, a, width=e.width, delay=e.delay, kind=e.kind, operand=t.operand, fu_edge=fe)
                nxt.append((a, Link(t.operand, EdgeKind.TREE, 0, acc_width), None))
            if len(current) % 2:
                nxt.append(current[-1])
            current = nxt
        if current:
            tree_root[t] = current[0]

    # FU-graph edges between units (and, under the map's own schedule, a second input's connection on an FU pair)
    shared = [(u, v, e) for (u, v, _x), e in getattr(fu_graph, "shared", {}).items()]
    for u, v, e in [(u, v, fu_graph.link(u, v)) for u, v in g.edges] + shared:
        ku, kv = u.kind, v.kind
        x, kind = e.operand, e.kind
        if kv == NodeKind.TREE:
            continue                                 # lowered with the tree
        if ku == NodeKind.TREE:
            if u not in tree_root:
                continue
            src, carried, fe = tree_root[u]
            dst = v if kv == NodeKind.ACC else _drain(v)
            if fe is not None:                       # one-input tree: the leaf edge itself reaches its sink
                edge(src, dst, width=carried.width, delay=carried.delay + e.delay, kind=kind, operand=x,
                     fu_edge=(u, v))
            else:
                edge(src, dst, width=e.width, delay=e.delay, kind=kind, operand=x, fu_edge=(u, v))
            continue
        if kind == EdgeKind.DELAY:
            # a delay connection: the sender's input port -> a FIFO (one step per valid step at its own time,
            # so it holds in steps, not cycles) -> the c.ds registers the schedule needs -> the receiver's port
            src, dst = inputs_of.get((u, x)), inputs_of.get((v, x))
            if src is None or dst is None:
                problems.append(problem(f"edge {u!r} -> {v!r}", f"delay connection of {x!r} without input ports", e))
                continue
            fifo = Node(NodeKind.FIFO, v.coord, x)
            node(fifo, latency=0, out_ns=table.clk_to_q_ns + buffer_read_levels * table.mux2_ns, width=e.width)
            # the FIFO sits at the receiver: the link's wire runs from the sender's port to it
            edge(src, fifo, width=e.width, delay=0, kind=kind, operand=x, fu_edge=(u, v), link=True)
            edge(fifo, dst, width=e.width, delay=e.delay, kind=kind, operand=x, fu_edge=(u, v))
            continue
        src = _mem_port(u.operand, u.lane) if ku == NodeKind.MEM else u if ku == NodeKind.ACC else \
            inputs_of.get((u, x)) if kind in _FORWARDS else psum_out.get((u, x))
        dst = _drain(v) if kv == NodeKind.DRAIN else v if kv == NodeKind.ACC else inputs_of.get((v, x))
        if src is None or dst is None:
            problems.append(problem(f"edge {u!r} -> {v!r}", f"operand {x!r} (kind {kind!r}) has no matching "
                                    "port on one of its ends; check the FU roles", e))
            continue
        # an accumulator is preloaded before and read out after its reduction, while its value is held:
        # neither path streams alongside the MACs, so neither is delay-matched against them
        hold = (e.load and dst.kind == NodeKind.ACC) or src.kind == NodeKind.ACC
        edge(src, dst, width=e.width, delay=e.delay, kind=kind, operand=x, fu_edge=(u, v), hold=hold,
             link=ku == kv == NodeKind.FU)

    if problems:
        raise SpecError(problems, source="primitive lowering")
    fanout = Counter(u for u, _ in pending)
    net_ns = {k: table.fanout_ns(k) for k in set(fanout.values())}
    wires = [(u, v, Wire(w.operand, w.kind, w.width, w.delay, w.hold, net_ns[fanout[u]] + span.get((u, v), 0.0),
                         w.fu_edge, span.get((u, v), 0.0)))
             for (u, v), w in pending.items()]
    # a multiplier's first stage follows the wire from its input ports' register chains (delay_lp.py
    # ``_wire_after_registers``): split it with that wire in front
    into = {}
    for u, v, w in wires:
        if v in muls and not w.hold:
            into[v] = max(into.get(v, 0.0), w.wire_ns - w.span_ns)
    for mul, wire_ns in into.items():
        nodes[mul] = _multiplier(table, clock_period_ns, *muls[mul], wire_ns)
    prim = PrimitiveGraph.build(nodes.items(), wires, target=table.target, clk_to_q_ns=table.clk_to_q_ns,
                                setup_ns=table.setup_ns, name=fu_graph.name)
    if not _is_acyclic(prim.graph):
        cycle = nx.find_cycle(prim.graph)
        raise SpecError([problem("primitive graph", "has a combinational/registered cycle; delay matching needs "
                                 "a DAG", cycle)], source="primitive lowering")
    return prim


def fu_pitches(fu_graph):
    """``pitches(u, v)``: the Manhattan distance in FU pitches between FU-graph FUs u and v on the physical
    array: between the physical FUs ``fu_graph.design.placement`` runs them on for a folded map built on its
    logical array (arch/spec.py ``_fold``), between their own coordinates otherwise."""
    design = getattr(fu_graph, "design", None)
    place = dict(getattr(design, "placement", ()) or ())

    def pitches(u: Node, v: Node) -> int:
        a, b = place.get(u.coord, u.coord), place.get(v.coord, v.coord)
        return sum(abs(p - q) for p, q in zip(a, b))
    return pitches


def _multiplier(table: DelayTable, clock_period_ns: float | None, delay_ns: float, width: int,
                wire_ns: float) -> Primitive:
    """A multiplier's primitive: split into :func:`multiplier_stages` with ``wire_ns`` in front of it."""
    stages = 1 if table.multiplier_latency > 0 or clock_period_ns is None else \
        multiplier_stages(delay_ns, table.clk_to_q_ns, table.setup_ns, clock_period_ns, wire_ns=wire_ns)
    if stages > 1:
        part = delay_ns / stages
        return Primitive(stages - 1, int(width), float(part), float(table.clk_to_q_ns + part), stages - 1)
    return Primitive(int(table.multiplier_latency), int(width), float(delay_ns), 0.0, 0)


def multiplier_stages(delay_ns: float, clk_to_q_ns: float, setup_ns: float, clock_period_ns: float, *,
                      wire_ns: float = 0.0) -> int:
    """Equal stages a multiplier of ``delay_ns`` is split into to fit the clock (1: it fits, or nothing would).

    A multiplier that cannot fit between two registers (clock-to-Q + ``wire_ns`` + d + setup > period, where
    ``wire_ns`` is the wire from the registers that feed it) is split into
    s = ceil(d / (period - clock-to-Q - wire_ns - setup)) equal stages: its latency is s - 1, its inputs see d / s
    before the first internal register and its output d / s after the last. The RTL writes the s - 1
    registers behind the product, where the synthesis tool's register balancing (retiming) moves them
    into the partial-product tree, the usual way to describe a pipelined multiplier. Without this, a
    16 x 12-bit product (1.09 ns with the register overheads in the ASIC table) could never meet a 1 ns
    clock, whatever the LP placed around it.
    """
    budget = clock_period_ns - clk_to_q_ns - wire_ns - setup_ns
    if budget <= 1e-9:          # nothing fits between two registers (float noise counts as nothing)
        return 1
    if clk_to_q_ns + wire_ns + delay_ns + setup_ns <= clock_period_ns:
        return 1
    return math.ceil(delay_ns / budget - 1e-9)


def _mem_port(operand: str, lane: int) -> Node:
    return Node(NodeKind.MEM_PORT, operand=operand, lane=lane)


def _drain(v: Node) -> Node:
    """The drain register of FU-graph drain ``v`` (the same Node: a drain is both)."""
    return Node(NodeKind.DRAIN, operand=v.operand, lane=v.lane)


def naive_register_bits(prim: PrimitiveGraph) -> int:
    """Register bits of the naive scheme: every edge between two units (FU to FU, memory to FU, FU to tree,
    between adder-tree levels, to a drain) carries max(D_e, 1) registers, every edge inside an FU its D_e,
    nothing shared between the sinks of a net and no balancing added (so a lower bound on a balanced naive
    design). Hold edges are not counted."""
    bits = 0
    units: dict = {}
    for (u, v), e in prim.wires.items():
        if e.hold:
            continue
        uu = units.get(u)
        if uu is None:
            uu = units[u] = u.unit
        uv = units.get(v)
        if uv is None:
            uv = units[v] = v.unit
        crosses = uu != uv
        bits += e.width * (max(e.delay, 1) if crosses else e.delay)
    return bits


def _is_acyclic(g: nx.DiGraph) -> bool:
    """``nx.is_directed_acyclic_graph(g)`` by Kahn's algorithm on integer node numbers (large arrays)."""
    index = {v: i for i, v in enumerate(g)}
    succ = [[index[w] for w in nbrs] for nbrs in g._adj.values()]
    indeg = [0] * len(succ)
    for out in succ:
        for j in out:
            indeg[j] += 1
    ready = [i for i, d in enumerate(indeg) if d == 0]
    seen = 0
    while ready:
        i = ready.pop()
        seen += 1
        for j in succ[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                ready.append(j)
    return seen == len(succ)


def tree_levels(n_inputs: int) -> int:
    """Adder levels of a balanced two-input tree over `n_inputs` inputs."""
    return math.ceil(math.log2(n_inputs)) if n_inputs > 1 else 0
