"""Lower an FU graph to a primitive graph: multipliers, adders, accumulators, registers, memory ports.

Every primitive node carries its latency `latency` (cycles from its inputs being latched to its output
being valid; 0 for combinational logic), its combinational delay `delay_ns` (through the node when
latency is 0, in front of its internal register otherwise) and `out_ns` (clock to output of a
registered node). Every edge carries its bit width `width`, the dataflow delay `delay` (D_e, the
registers the schedule itself requires: systolic hops, skews, de-skews), `wire_ns` (the fan-out
penalty of the net that drives it) and `fu_edge`, the FU-graph edge it implements (None inside an FU).

What stays outside delay matching: an edge with ``hold=True`` feeds a value that is constant while it
is used (a stationary operand's register output, a partial-sum preload into an accumulator, an
accumulator's result read out after the reduction). Its
timing still starts from a register (the stationary or accumulator register) and is checked there.

Registers on streamed operands are not nodes: they are what the LP puts on edges (the D_e the schedule
needs, plus pipelining and balancing registers), so the graph never counts them twice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import networkx as nx

from archgen.arch.errors import SpecError, problem
from archgen.dataflow.delays import DelayTable
from archgen.dataflow.ir import EdgeKind, Link, Node, NodeKind, Role

__all__ = ["PrimitiveGraph", "lower_to_primitives", "multiplier_stages", "naive_register_bits", "tree_levels",
           "PRIMITIVE_KINDS"]

PRIMITIVE_KINDS = (NodeKind.MEM_PORT, NodeKind.PORT, NodeKind.STATIONARY_REG, NodeKind.MUL, NodeKind.ADD,
                   NodeKind.ACC, NodeKind.TREE_ADD, NodeKind.DRAIN)
_INPUT_ROLES = (Role.STREAM, Role.STATIONARY)
_OUTPUT_ROLES = (Role.ACCUMULATE, Role.REDUCE)


@dataclass(frozen=True)
class PrimitiveGraph:
    """A primitive-level graph ready for delay matching; `graph` is a networkx DiGraph (DAG)."""

    graph: nx.DiGraph = field(compare=False, repr=False)
    target: str
    clk_to_q_ns: float
    setup_ns: float
    name: str = ""

    def __repr__(self) -> str:
        return (f"PrimitiveGraph({self.name!r}, target={self.target!r}, nodes={self.graph.number_of_nodes()}, "
                f"edges={self.graph.number_of_edges()})")

    def nodes_of_kind(self, kind: str) -> list:
        return [n for n, d in self.graph.nodes(data=True) if d["kind"] == kind]


def lower_to_primitives(fu_graph, table: DelayTable, *, clock_period_ns: float | None = None) -> PrimitiveGraph:
    """Lower `fu_graph` (an FUGraph: `.graph`, `.widths`, `.acc_width`) with delays from `table`.

    With a clock period, every multiplier slower than the clock gets internal stages
    (:func:`multiplier_stages`) as it is built; the graph is never changed afterwards."""
    g: nx.DiGraph = fu_graph.graph
    acc_width = int(fu_graph.acc_width)
    problems = []
    p = nx.DiGraph()

    def node(nid, kind, *, latency, delay_ns=0.0, out_ns=0.0, width, **extra):
        p.add_node(nid, kind=kind, latency=int(latency), delay_ns=float(delay_ns), out_ns=float(out_ns),
                   width=int(width), unit=nid.unit, **extra)

    def edge(u, v, *, width, delay, kind, operand, fu_edge=None, hold=False):
        if p.has_edge(u, v):
            problems.append(problem(f"edge {u!r} -> {v!r}", "two FU-graph edges lower onto the same primitive "
                                    "edge; the FU graph has parallel connections", fu_edge))
            return
        p.add_edge(u, v, width=int(width), delay=int(delay), kind=kind, operand=operand, fu_edge=fu_edge,
                   hold=bool(hold))

    # memory ports, drains
    for n, d in g.nodes(data=True):
        if d.get("kind") == NodeKind.MEM:
            node(_mem_port(d["operand"], d["lane"]), NodeKind.MEM_PORT, latency=table.memory_latency,
                 out_ns=table.memory_clk_to_out_ns, width=fu_graph.widths.get(d["operand"], acc_width),
                 operand=d["operand"], lane=d["lane"])
        elif d.get("kind") == NodeKind.DRAIN:
            node(Node(NodeKind.DRAIN, operand=d["operand"], lane=d["lane"]), NodeKind.DRAIN, latency=1, width=acc_width,
                 operand=d["operand"], lane=d["lane"])

    # FUs: input ports (or stationary registers), multiplier, partial-sum adder or accumulator
    psum_out: dict[tuple, tuple] = {}     # (fu node, output operand) -> primitive producing it
    inputs_of: dict[tuple, tuple] = {}    # (fu node, input operand) -> primitive receiving it
    for n, d in g.nodes(data=True):
        if d.get("kind") != NodeKind.FU:
            continue
        coord, roles = tuple(d["coord"]), d.get("roles", {})
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
        mul_ns = table.multiplier_ns(max(in_w))
        stages = 1 if table.multiplier_latency > 0 or clock_period_ns is None else \
            multiplier_stages(mul_ns, table.clk_to_q_ns, table.setup_ns, clock_period_ns)
        if stages > 1:
            part = mul_ns / stages
            node(mul, NodeKind.MUL, latency=stages - 1, delay_ns=part, out_ns=table.clk_to_q_ns + part,
                 width=min(sum(in_w), acc_width), internal_stages=stages - 1)
        else:
            node(mul, NodeKind.MUL, latency=table.multiplier_latency, delay_ns=mul_ns, width=min(sum(in_w), acc_width))
        for x, w in zip(ins, in_w):
            if roles[x] == Role.STATIONARY:
                src = Node(NodeKind.STATIONARY_REG, coord, x)
                node(src, NodeKind.STATIONARY_REG, latency=1, out_ns=table.clk_to_q_ns, width=w, operand=x)
            else:
                src = Node(NodeKind.PORT, coord, x)
                node(src, NodeKind.PORT, latency=0, width=w, operand=x)
            inputs_of[(n, x)] = src
            edge(src, mul, width=w, delay=0, kind=EdgeKind.INTERNAL, operand=x, hold=roles[x] == Role.STATIONARY)
        out = outs[0]
        psum_in = [e for _, _, e in g.in_edges(n, data="link") if e.operand == out and not e.load]
        if roles[out] == Role.ACCUMULATE:
            acc = Node(NodeKind.ACC, coord)
            node(acc, NodeKind.ACC, latency=1, delay_ns=table.adder_ns(acc_width), out_ns=table.clk_to_q_ns,
                 width=acc_width, operand=out)
            edge(mul, acc, width=p.nodes[mul]["width"], delay=0, kind=EdgeKind.INTERNAL, operand=out)
            psum_out[(n, out)] = acc
            inputs_of[(n, out)] = acc
        elif psum_in:
            add = Node(NodeKind.ADD, coord)
            node(add, NodeKind.ADD, latency=0, delay_ns=table.adder_ns(acc_width), width=acc_width, operand=out)
            edge(mul, add, width=p.nodes[mul]["width"], delay=0, kind=EdgeKind.INTERNAL, operand=out)
            psum_out[(n, out)] = add
            inputs_of[(n, out)] = add
        else:
            psum_out[(n, out)] = mul

    # adder trees: ceil(log2 n) levels of two-input adders; an odd input skips to the next level
    tree_leaves: dict[tuple, list] = {}
    tree_root: dict[tuple, tuple] = {}
    for n, d in g.nodes(data=True):
        if d.get("kind") == NodeKind.TREE:
            tree_leaves[n] = sorted(u for u in g.predecessors(n))
    for t, preds in tree_leaves.items():
        leaves = []
        for u in preds:
            e = g.edges[u, t]["link"]
            src = psum_out.get((u, e.operand)) if g.nodes[u].get("kind") == NodeKind.FU else \
                _mem_port(g.nodes[u]["operand"], g.nodes[u]["lane"])
            if src is None:
                problems.append(problem(f"edge {u!r} -> {t!r}", "tree input from an FU without that output", e))
                continue
            leaves.append((src, e, (u, t)))
        declared = g.nodes[t].get("n_inputs")
        n_fu = sum(1 for u in preds if g.nodes[u].get("kind") == NodeKind.FU)
        if declared is not None and declared != n_fu:
            problems.append(problem(f"{t!r}.n_inputs", "does not match the FUs feeding the tree", (declared, n_fu)))
        level, current = 0, leaves
        while len(current) > 1:
            level += 1
            nxt = []
            for j in range(0, len(current) - 1, 2):
                a = Node(NodeKind.TREE_ADD, operand=t.operand, lane=t.lane, level=level, index=j // 2)
                node(a, NodeKind.TREE_ADD, latency=0, width=acc_width, operand=t.operand, level=level,
                     delay_ns=table.adder_ns(acc_width) + table.tree_level_wire_ns)
                for src, e, fe in current[j:j + 2]:
                    edge(src, a, width=e.width, delay=e.delay, kind=e.kind, operand=t.operand, fu_edge=fe)
                nxt.append((a, Link(t.operand, EdgeKind.TREE, 0, acc_width), None))
            if len(current) % 2:
                nxt.append(current[-1])
            current = nxt
        if current:
            tree_root[t] = current[0]

    # FU-graph edges between units
    for u, v, e in g.edges(data="link"):
        ku, kv = g.nodes[u].get("kind"), g.nodes[v].get("kind")
        x, kind = e.operand, e.kind
        if kv == NodeKind.TREE:
            continue                                 # lowered with the tree
        if ku == NodeKind.TREE:
            if u not in tree_root:
                continue
            src, carried, fe = tree_root[u]
            if fe is not None:                       # one-input tree: the leaf edge itself reaches the drain
                edge(src, _lower_target(v, g), width=carried.width, delay=carried.delay + e.delay,
                     kind=kind, operand=x, fu_edge=(u, v))
            else:
                edge(src, _lower_target(v, g), width=e.width, delay=e.delay, kind=kind, operand=x,
                     fu_edge=(u, v))
            continue
        src = _mem_port(g.nodes[u]["operand"], g.nodes[u]["lane"]) if ku == NodeKind.MEM else \
            inputs_of.get((u, x)) if kind == EdgeKind.SYSTOLIC else psum_out.get((u, x))
        dst = _lower_target(v, g) if kv == NodeKind.DRAIN else inputs_of.get((v, x))
        if src is None or dst is None:
            problems.append(problem(f"edge {u!r} -> {v!r}", f"operand {x!r} (kind {kind!r}) has no matching "
                                    "port on one of its ends; check the FU roles", e))
            continue
        load = e.load
        # an accumulator is preloaded before and read out after its reduction, while its value is held:
        # neither path streams alongside the MACs, so neither is delay-matched against them
        hold = (load and p.nodes[dst]["kind"] == NodeKind.ACC) or p.nodes[src]["kind"] == NodeKind.ACC
        edge(src, dst, width=e.width, delay=e.delay, kind=kind, operand=x, fu_edge=(u, v), hold=hold)

    if problems:
        raise SpecError(problems, source="primitive lowering")
    if not nx.is_directed_acyclic_graph(p):
        cycle = nx.find_cycle(p)
        raise SpecError([problem("primitive graph", "has a combinational/registered cycle; delay matching needs "
                                 "a DAG", cycle)], source="primitive lowering")
    for u in p.nodes:
        sinks = p.out_degree(u)
        wire = table.fanout_ns(sinks)
        for v in p.successors(u):
            p.edges[u, v]["wire_ns"] = wire
    name = str(g.graph.get("name", "")) + (f"/{g.graph['dataflow']}" if "dataflow" in g.graph else "")
    return PrimitiveGraph(p, table.target, table.clk_to_q_ns, table.setup_ns, name)


def multiplier_stages(delay_ns: float, clk_to_q_ns: float, setup_ns: float, clock_period_ns: float) -> int:
    """Equal stages a multiplier of ``delay_ns`` is split into to fit the clock (1: it fits, or nothing would).

    A multiplier that cannot fit between two registers (clock-to-Q + d + setup > period) is split into
    s = ceil(d / (period - clock-to-Q - setup)) equal stages: its latency is s - 1, its inputs see d / s
    before the first internal register and its output d / s after the last. The RTL writes the s - 1
    registers behind the product, where the synthesis tool's register balancing (retiming) moves them
    into the partial-product tree, the usual way to describe a pipelined multiplier. Without this, a
    16 x 12-bit product (1.09 ns with the register overheads in the ASIC table) could never meet a 1 ns
    clock, whatever the LP placed around it.
    """
    budget = clock_period_ns - clk_to_q_ns - setup_ns
    if budget <= 1e-9:          # nothing fits between two registers (float noise counts as nothing)
        return 1
    if clk_to_q_ns + delay_ns + setup_ns <= clock_period_ns:
        return 1
    return math.ceil(delay_ns / budget - 1e-9)


def _mem_port(operand: str, lane: int) -> Node:
    return Node(NodeKind.MEM_PORT, operand=operand, lane=lane)


def _lower_target(v, g) -> Node:
    d = g.nodes[v]
    return Node(NodeKind.DRAIN, operand=d["operand"], lane=d["lane"])


def naive_register_bits(prim: PrimitiveGraph) -> int:
    """Register bits of the naive scheme: every edge between two units (FU to FU, memory to FU, FU to tree,
    between adder-tree levels, to a drain) carries max(D_e, 1) registers, every edge inside an FU its D_e,
    nothing shared between the sinks of a net and no balancing added (so a lower bound on a balanced naive
    design). Hold edges are not counted."""
    g = prim.graph
    bits = 0
    for u, v, e in g.edges(data=True):
        if e["hold"]:
            continue
        crosses = g.nodes[u]["unit"] != g.nodes[v]["unit"]
        bits += e["width"] * (max(e["delay"], 1) if crosses else e["delay"])
    return bits


def tree_levels(n_inputs: int) -> int:
    """Adder levels of a balanced two-input tree over `n_inputs` inputs."""
    return math.ceil(math.log2(n_inputs)) if n_inputs > 1 else 0
