"""Primitive lowering on FU graphs built by hand after the FU-graph schema, and on derive_interconnect's."""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

import networkx as nx
import pytest

from archgen.arch.errors import SpecError
from archgen.dataflow.delays import DelayTable
from archgen.dataflow.ir import EdgeKind, Link, Node, NodeKind, Primitive, Role, Wire
from archgen.dataflow.ir import fu as F
from archgen.dataflow.primitives import PrimitiveGraph, lower_to_primitives, naive_register_bits, tree_levels


class Hand:
    """An FU graph under construction by hand, after the schema derive_interconnect writes: a topology,
    one Link per edge and the roles of each FU."""

    def __init__(self):
        self.g, self.links, self.roles = nx.DiGraph(), {}, {}

    def add_node(self, n, roles=None):
        self.g.add_node(n)
        if roles is not None:
            self.roles[n] = {x: Role(r) for x, r in roles.items()}

    def freeze(self, shape, control, widths, acc_width):
        return HandFUGraph(self.g, self.links, self.roles, shape, control, widths, acc_width)


def add(h, u, v, *, operand, kind, delay, width, phase=None):
    h.g.add_edge(u, v)
    h.links[(u, v)] = Link(operand, EdgeKind(kind), delay, width, load=phase == "load")


def M(operand, lane):
    return Node(NodeKind.MEM, operand=operand, lane=lane)


def D(operand, lane):
    return Node(NodeKind.DRAIN, operand=operand, lane=lane)


def T(operand, lane):
    return Node(NodeKind.TREE, operand=operand, lane=lane)


def MP(operand, lane):
    return Node(NodeKind.MEM_PORT, operand=operand, lane=lane)


@dataclass(frozen=True)
class HandFUGraph:
    graph: nx.DiGraph = field(compare=False)
    link_of: dict = field(compare=False)
    fu_roles: dict = field(compare=False)
    shape: tuple
    control: tuple
    widths: dict
    acc_width: int
    name: str = "hand"

    def link(self, u, v):
        return self.link_of[(u, v)]

    def roles_of(self, n):
        return self.fu_roles.get(n, {})


def os_broadcast(n=4):
    """Output-stationary broadcast GEMM: A broadcast along rows, B along columns, C accumulated in place."""
    g = Hand()
    for i in range(n):
        for j in range(n):
            g.add_node(F((i, j)), {"A": "stream", "B": "stream", "C": "accumulate"})
    for lane in range(n):
        g.add_node(M("A", lane))
        g.add_node(M("B", lane))
        g.add_node(D("C", lane))
        for k in range(n):
            add(g, M("A", lane), F((lane, k)), operand="A", kind="broadcast", delay=0, width=8)
            add(g, M("B", lane), F((k, lane)), operand="B", kind="broadcast", delay=0, width=8)
            add(g, F((k, lane)), D("C", lane), operand="C", kind="drain", delay=0, width=32)
    return g.freeze((n, n), (0, 0), {"A": 8, "B": 8, "C": 32}, 32)


def ws_systolic(n=4):
    """Weight-stationary systolic GEMM: B stationary, A forwarded along j, partial sums chained along k."""
    g = Hand()
    for k in range(n):
        for j in range(n):
            g.add_node(F((k, j)), {"A": "stream", "B": "stationary", "C": "reduce"})
    for lane in range(n):
        g.add_node(M("A", lane))
        g.add_node(M("B", lane))
        g.add_node(D("C", lane))
        add(g, M("A", lane), F((lane, 0)), operand="A", kind="memory", delay=lane, width=8)
        for j in range(n - 1):
            add(g, F((lane, j)), F((lane, j + 1)), operand="A", kind="systolic", delay=1, width=8)
        for k in range(n):
            add(g, M("B", lane), F((k, lane)), operand="B", kind="memory", delay=0, width=8,
                       phase="load")
        for k in range(n - 1):
            add(g, F((k, lane)), F((k + 1, lane)), operand="C", kind="reduce_chain", delay=1, width=32)
        add(g, F((n - 1, lane)), D("C", lane), operand="C", kind="drain", delay=n - 1 - lane,
                   width=32)
    return g.freeze((n, n), (1, 1), {"A": 8, "B": 8, "C": 32}, 32)


def tree_array(n_rows, n_cols):
    """Broadcast inputs, C reduced same-cycle over each column by an adder tree of n_rows inputs."""
    g = Hand()
    for i in range(n_rows):
        for j in range(n_cols):
            g.add_node(F((i, j)), {"A": "stream", "B": "stationary", "C": "reduce"})
    for j in range(n_cols):
        g.add_node(M("A", j))
        g.add_node(T("C", j))
        g.add_node(D("C", j))
        add(g, T("C", j), D("C", j), operand="C", kind="drain", delay=0, width=32)
        for i in range(n_rows):
            add(g, M("A", j), F((i, j)), operand="A", kind="broadcast", delay=0, width=8)
            add(g, F((i, j)), T("C", j), operand="C", kind="reduce", delay=0, width=32)
    return g.freeze((n_rows, n_cols), (0, 0), {"A": 8, "B": 8, "C": 32}, 32)


@pytest.fixture(scope="module")
def asic():
    return DelayTable.load("asic")


def kinds(prim):
    return collections.Counter(v.kind for v in prim.graph)


def test_os_broadcast_lowering(asic):
    prim = lower_to_primitives(os_broadcast(4), asic)
    assert kinds(prim) == {"port": 32, "mul": 16, "acc": 16, "mem_port": 8, "drain": 4}
    g = prim.graph
    assert g.out_degree(MP("A", 0)) == 4
    e = prim.wire(MP("A", 0), Node(NodeKind.PORT, (0, 2), "A"))
    assert (e.width, e.delay, e.kind, e.fu_edge) == (8, 0, EdgeKind.BROADCAST, (M("A", 0), F((0, 2))))
    assert e.wire_ns == pytest.approx(asic.fanout_ns(4))
    assert prim.primitive(Node(NodeKind.ACC, (1, 1))).latency == 1
    assert prim.primitive(Node(NodeKind.MUL, (1, 1))).delay_ns == pytest.approx(asic.multiplier_ns(8))
    assert prim.wire(Node(NodeKind.ACC, (3, 1)), D("C", 1)).width == 32
    assert prim.wire(Node(NodeKind.ACC, (3, 1)), D("C", 1)).hold        # read out after the reduction


def test_ws_systolic_lowering(asic):
    prim = lower_to_primitives(ws_systolic(4), asic)
    w = prim.wire
    # the chain's first FU has no incoming partial sum, so no adder
    assert kinds(prim) == {"port": 16, "stationary_reg": 16, "mul": 16, "add": 12, "mem_port": 8, "drain": 4}
    assert w(Node(NodeKind.PORT, (0, 0), "A"), Node(NodeKind.PORT, (0, 1), "A")).delay == 1
    assert w(Node(NodeKind.MUL, (0, 2)), Node(NodeKind.ADD, (1, 2))).kind is EdgeKind.REDUCE_CHAIN
    assert w(Node(NodeKind.ADD, (2, 2)), Node(NodeKind.ADD, (3, 2))).delay == 1
    assert w(Node(NodeKind.STATIONARY_REG, (1, 1), "B"), Node(NodeKind.MUL, (1, 1))).hold
    assert not w(MP("B", 1), Node(NodeKind.STATIONARY_REG, (2, 1), "B")).hold   # the load path is matched


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 9])
def test_tree_of_n_inputs_has_ceil_log2_levels(asic, n):
    prim = lower_to_primitives(tree_array(n, 2), asic)
    g = prim.graph
    adders = [v for v in prim.nodes_of_kind(NodeKind.TREE_ADD) if v.lane == 0]
    assert len(adders) == n - 1                       # a two-input tree of n leaves has n - 1 adders
    assert max((v.level for v in adders), default=0) == tree_levels(n) == (math.ceil(math.log2(n)) if n > 1 else 0)
    # every leaf reaches the drain; the longest leaf-to-drain path crosses exactly ceil(log2 n) adders
    drain = D("C", 0)
    depth = max(sum(1 for x in path if x.kind is NodeKind.TREE_ADD)
                for i in range(n) for path in nx.all_simple_paths(g, Node(NodeKind.MUL, (i, 0)), drain))
    assert depth == tree_levels(n)


def test_naive_scheme_registers_every_inter_unit_edge(asic):
    prim = lower_to_primitives(os_broadcast(2), asic)
    # 8 broadcast edges of 8 bits, one register each; nothing inside an FU, nothing on held read-outs
    assert naive_register_bits(prim) == 8 * 8


def test_bad_roles_are_reported_together(asic):
    fg = os_broadcast(2)
    fg.fu_roles[F((0, 0))] = {"A": Role.STREAM}
    fg.fu_roles[F((1, 1))] = {"A": Role.STREAM, "B": Role.STREAM, "C": "sideways"}
    with pytest.raises(SpecError) as info:
        lower_to_primitives(fg, asic)
    assert len(info.value.problems) >= 2
    assert "fu (0, 0).roles" in str(info.value)


def test_real_interconnect_matches_hand_built_schema(asic):
    spec = pytest.importorskip("archgen.arch.spec")
    interconnect = pytest.importorskip("archgen.dataflow.interconnect")
    fg = interconnect.derive_interconnect(spec.load_spec("gemm_os_bcast"))
    assert kinds(lower_to_primitives(fg, asic)) == kinds(lower_to_primitives(os_broadcast(4), asic))
    ws = interconnect.derive_interconnect(spec.load_spec("gemm_ws"))
    prim = lower_to_primitives(ws, asic)
    assert kinds(prim)["mul"] == 16 and kinds(prim)["stationary_reg"] == 16


def test_payloads_are_typed_and_the_graphs_frozen(asic):
    spec = pytest.importorskip("archgen.arch.spec")
    from archgen.dataflow.compile import compile_array
    c = compile_array(spec.load_spec("gemm_ws", ["clock_mhz=1450"]))     # 0.69 ns: staged multipliers
    prim, fg = c.prim, c.fu_graph
    assert all(not d for _, d in prim.graph.nodes(data=True)) and all(not d for *_, d in prim.graph.edges(data=True))
    assert all(not d for _, d in fg.graph.nodes(data=True)) and all(not d for *_, d in fg.graph.edges(data=True))
    assert set(prim.primitives) == set(prim.graph) and set(prim.wires) == set(prim.graph.edges)
    assert all(isinstance(p, Primitive) for p in prim.primitives.values())
    assert all(isinstance(w, Wire) for _, _, w in prim.edges())
    assert set(fg.link_of) == set(fg.graph.edges) and all(isinstance(e, Link) for _, _, e in fg.links())
    assert any(p.internal_stages for p in prim.primitives.values())      # built in, not added afterwards
    for g in (prim.graph, fg.graph):
        with pytest.raises(nx.NetworkXError):
            g.add_edge(Node(NodeKind.MUL, (0, 0)), Node(NodeKind.ACC, (0, 0)))
    with pytest.raises(TypeError):
        prim.primitives[Node(NodeKind.MUL, (0, 0))] = Primitive(0, 1)


def test_build_refuses_a_wire_to_an_unknown_node():
    a, b = Node(NodeKind.MUL, (0,)), Node(NodeKind.ACC, (0,))
    with pytest.raises(ValueError, match="not in the graph"):
        PrimitiveGraph.build([(a, Primitive(0, 8))], [(a, b, Wire("X", EdgeKind.INTERNAL, 8, 0))], target="t",
                             clk_to_q_ns=0.1, setup_ns=0.1)


def test_library_reads_no_graph_payload_by_string_key():
    """Graph payloads are typed (Primitive, Wire, Link, roles_of): no attribute-dict access in the library."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    files = [root / d / f for d, f in [("dataflow", "primitives.py"), ("dataflow", "interconnect.py"),
                                       ("dataflow", "pipelining.py"), ("dataflow", "schedule.py"),
                                       ("dataflow", "compile.py"), ("dataflow", "delay_lp.py"),
                                       ("rtlgen", "array.py"), ("rtlgen", "datapath.py"),
                                       ("rtlgen", "einsum_unit.py"), ("sim", "array_sim.py"),
                                       ("sim", "array_model.py"), ("benchmarks", "lp_bench.py"),
                                       ("benchmarks", "pipeline_fmax.py")]]
    bad = re.compile(r'(nodes|edges)\[[^\]]*\]\[|(nodes|edges)\(data=|\.adj\[|data="link"')
    hits = [(f.name, i + 1, line.strip()) for f in files for i, line in enumerate(f.read_text().splitlines())
            if bad.search(line) and "cg.edges" not in line]        # cg: the LP's own constraint graph
    assert hits == []
