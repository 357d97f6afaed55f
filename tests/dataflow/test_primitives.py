"""Primitive lowering on FU graphs built by hand after the FU-graph schema, and on derive_interconnect's."""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

import networkx as nx
import pytest

from archgen.arch.errors import SpecError
from archgen.dataflow.delays import DelayTable
from archgen.dataflow.ir import EdgeKind, Link, Node, NodeKind
from archgen.dataflow.ir import fu as F
from archgen.dataflow.primitives import lower_to_primitives, naive_register_bits, tree_levels


def add(g, u, v, *, operand, kind, delay, width, phase=None):
    """An FU-graph edge after the schema derive_interconnect writes (one Link per edge)."""
    g.add_edge(u, v, link=Link(operand, EdgeKind(kind), delay, width, load=phase == "load"))


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
    shape: tuple
    control: tuple
    widths: dict
    acc_width: int


def os_broadcast(n=4):
    """Output-stationary broadcast GEMM: A broadcast along rows, B along columns, C accumulated in place."""
    g = nx.DiGraph()
    for i in range(n):
        for j in range(n):
            g.add_node(F((i, j)), kind="fu", coord=(i, j), roles={"A": "stream", "B": "stream", "C": "accumulate"})
    for lane in range(n):
        g.add_node(M("A", lane), kind="mem", operand="A", lane=lane, bank=lane)
        g.add_node(M("B", lane), kind="mem", operand="B", lane=lane, bank=lane)
        g.add_node(D("C", lane), kind="drain", operand="C", lane=lane)
        for k in range(n):
            add(g, M("A", lane), F((lane, k)), operand="A", kind="broadcast", delay=0, width=8)
            add(g, M("B", lane), F((k, lane)), operand="B", kind="broadcast", delay=0, width=8)
            add(g, F((k, lane)), D("C", lane), operand="C", kind="drain", delay=0, width=32)
    return HandFUGraph(g, (n, n), (0, 0), {"A": 8, "B": 8, "C": 32}, 32)


def ws_systolic(n=4):
    """Weight-stationary systolic GEMM: B stationary, A forwarded along j, partial sums chained along k."""
    g = nx.DiGraph()
    for k in range(n):
        for j in range(n):
            g.add_node(F((k, j)), kind="fu", coord=(k, j), roles={"A": "stream", "B": "stationary", "C": "reduce"})
    for lane in range(n):
        g.add_node(M("A", lane), kind="mem", operand="A", lane=lane, bank=lane)
        g.add_node(M("B", lane), kind="mem", operand="B", lane=lane, bank=lane)
        g.add_node(D("C", lane), kind="drain", operand="C", lane=lane)
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
    return HandFUGraph(g, (n, n), (1, 1), {"A": 8, "B": 8, "C": 32}, 32)


def tree_array(n_rows, n_cols):
    """Broadcast inputs, C reduced same-cycle over each column by an adder tree of n_rows inputs."""
    g = nx.DiGraph()
    for i in range(n_rows):
        for j in range(n_cols):
            g.add_node(F((i, j)), kind="fu", coord=(i, j), roles={"A": "stream", "B": "stationary", "C": "reduce"})
    for j in range(n_cols):
        g.add_node(M("A", j), kind="mem", operand="A", lane=j, bank=j)
        g.add_node(T("C", j), kind="tree", operand="C", group=j, n_inputs=n_rows)
        g.add_node(D("C", j), kind="drain", operand="C", lane=j)
        add(g, T("C", j), D("C", j), operand="C", kind="drain", delay=0, width=32)
        for i in range(n_rows):
            add(g, M("A", j), F((i, j)), operand="A", kind="broadcast", delay=0, width=8)
            add(g, F((i, j)), T("C", j), operand="C", kind="reduce", delay=0, width=32)
    return HandFUGraph(g, (n_rows, n_cols), (0, 0), {"A": 8, "B": 8, "C": 32}, 32)


@pytest.fixture(scope="module")
def asic():
    return DelayTable.load("asic")


def kinds(prim):
    return collections.Counter(d["kind"] for _, d in prim.graph.nodes(data=True))


def test_os_broadcast_lowering(asic):
    prim = lower_to_primitives(os_broadcast(4), asic)
    assert kinds(prim) == {"port": 32, "mul": 16, "acc": 16, "mem_port": 8, "drain": 4}
    g = prim.graph
    assert g.out_degree(MP("A", 0)) == 4
    e = g.edges[MP("A", 0), Node(NodeKind.PORT, (0, 2), "A")]
    assert (e["width"], e["delay"], e["kind"], e["fu_edge"]) == (8, 0, "broadcast", (M("A", 0), F((0, 2))))
    assert e["wire_ns"] == pytest.approx(asic.fanout_ns(4))
    assert g.nodes[Node(NodeKind.ACC, (1, 1))]["latency"] == 1
    assert g.nodes[Node(NodeKind.MUL, (1, 1))]["delay_ns"] == pytest.approx(asic.multiplier_ns(8))
    assert g.edges[Node(NodeKind.ACC, (3, 1)), D("C", 1)]["width"] == 32
    assert g.edges[Node(NodeKind.ACC, (3, 1)), D("C", 1)]["hold"]        # read out after the reduction


def test_ws_systolic_lowering(asic):
    prim = lower_to_primitives(ws_systolic(4), asic)
    g = prim.graph
    # the chain's first FU has no incoming partial sum, so no adder
    assert kinds(prim) == {"port": 16, "stationary_reg": 16, "mul": 16, "add": 12, "mem_port": 8, "drain": 4}
    assert g.edges[Node(NodeKind.PORT, (0, 0), "A"), Node(NodeKind.PORT, (0, 1), "A")]["delay"] == 1
    assert g.edges[Node(NodeKind.MUL, (0, 2)), Node(NodeKind.ADD, (1, 2))]["kind"] == "reduce_chain"
    assert g.edges[Node(NodeKind.ADD, (2, 2)), Node(NodeKind.ADD, (3, 2))]["delay"] == 1
    assert g.edges[Node(NodeKind.STATIONARY_REG, (1, 1), "B"), Node(NodeKind.MUL, (1, 1))]["hold"]
    assert not g.edges[MP("B", 1), Node(NodeKind.STATIONARY_REG, (2, 1), "B")]["hold"]   # the load path is matched


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 9])
def test_tree_of_n_inputs_has_ceil_log2_levels(asic, n):
    prim = lower_to_primitives(tree_array(n, 2), asic)
    g = prim.graph
    adders = [v for v, d in g.nodes(data=True) if d["kind"] == "tree_add" and v.lane == 0]
    assert len(adders) == n - 1                       # a two-input tree of n leaves has n - 1 adders
    assert max((g.nodes[v]["level"] for v in adders), default=0) == tree_levels(n) == (math.ceil(math.log2(n)) if n > 1 else 0)
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
    fg.graph.nodes[F((0, 0))]["roles"] = {"A": "stream"}
    fg.graph.nodes[F((1, 1))]["roles"] = {"A": "stream", "B": "stream", "C": "sideways"}
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
