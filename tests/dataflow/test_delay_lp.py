"""LP delay matching: integrality, balance, brute-force optimality, min-cost-flow duality, timing, errors."""
from __future__ import annotations

import dataclasses
import itertools

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archgen.dataflow.delay_lp import (ClockTargetError, DelayMatchingError, insert_pipeline_registers,
                                       insert_pipeline_registers_fused, min_cost_flow_dual, timing_cuts)
from archgen.dataflow.delays import DelayTable
from archgen.dataflow.primitives import PrimitiveGraph, lower_to_primitives

from archgen.dataflow.ir import EdgeKind, Node, NodeKind, Primitive, Wire
from test_primitives import MP, F, M, os_broadcast, tree_array, ws_systolic

CQ, SU = 0.1, 0.1


def N(x) -> Node:
    """A test node named ``x`` (each its own unit)."""
    return Node(NodeKind.ADD, (x,))


def make_prim(nodes, edges) -> PrimitiveGraph:
    """nodes: {id: (latency, delay_ns)}; edges: {(u, v): (width, D, hold)}; node ids become N(id)."""
    return PrimitiveGraph.build(
        [(N(v), Primitive(lat, 8, delay, CQ if lat else 0.0)) for v, (lat, delay) in nodes.items()],
        [(N(u), N(v), Wire("X", EdgeKind.INTERNAL, w, d, hold)) for (u, v), (w, d, hold) in edges.items()],
        target="test", clk_to_q_ns=CQ, setup_ns=SU, name="random")


@st.composite
def small_dags(draw, max_nodes=5):
    n = draw(st.integers(2, max_nodes))
    nodes = {i: (draw(st.sampled_from([0, 0, 1])), draw(st.sampled_from([0.0, 0.3, 0.6]))) for i in range(n)}
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    chosen = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=len(pairs), unique=True))
    edges = {p: (draw(st.integers(1, 16)), draw(st.integers(0, 2)), draw(st.booleans()) and draw(st.booleans())
                 and draw(st.booleans())) for p in chosen}
    return make_prim(nodes, edges)


def cost(prim, tau, share):
    g, bits = prim.graph, 0
    for u in g.nodes:
        outs = [(v, e) for v, e in prim.out_wires(u) if not e.hold]
        s = [tau[v] - tau[u] - prim.primitive(u).latency for v, _ in outs]
        if share and len(outs) > 1:
            bits += max(e.width for _, e in outs) * max(s)
        else:
            bits += sum(e.width * x for (_, e), x in zip(outs, s))
    return bits


def path_needs_register(prim, path, period):
    """Independent of timing_cuts: is this register-free candidate path slower than the period?"""
    p, w = prim.primitive, prim.wire
    u = path[0]
    if any(w(a, b).delay > 0 or w(a, b).hold for a, b in zip(path, path[1:])):
        return False
    if any(p(x).latency > 0 for x in path[1:-1]):
        return False
    t = p(u).out_ns if p(u).latency else CQ + p(u).delay_ns
    t += sum(p(x).delay_ns for x in path[1:])
    return t + SU > period + 1e-9


def feasible(prim, tau, period):
    g = prim.graph
    for u, v, e in prim.edges():
        if not e.hold and tau[v] - tau[u] - prim.primitive(u).latency < e.delay:
            return False
    for u in g.nodes:
        for v in g.nodes:
            if u != v:
                for path in nx.all_simple_paths(g, u, v):
                    if path_needs_register(prim, path, period) and tau[v] - tau[u] - prim.primitive(u).latency < 1:
                        return False
    return True


def brute_force(prim, period, share):
    """Enumerate integer schedules. An optimal vertex is a spanning forest of tight rows, so fixing one
    node per connected group at 0 leaves every other tau within (n - 1) * max_b of it."""
    g = prim.graph
    nodes = sorted(g.nodes)
    checks = [(u, v, prim.primitive(u).latency + 1) for u in nodes for v in nodes if u != v
              and any(path_needs_register(prim, p, period) for p in nx.all_simple_paths(g, u, v))]
    matched = [(u, v, prim.primitive(u).latency + e.delay) for u, v, e in prim.edges() if not e.hold]
    rows = matched + checks
    bound = (len(nodes) - 1) * max([b for _, _, b in rows] + [0])
    groups = nx.Graph()
    groups.add_nodes_from(nodes)
    groups.add_edges_from((u, v) for u, v, _ in rows)
    anchors = {min(c) for c in nx.connected_components(groups)}
    free = [v for v in nodes if v not in anchors]
    best = None
    for values in itertools.product(range(-bound, bound + 1), repeat=len(free)):
        tau = {**dict.fromkeys(anchors, 0), **dict(zip(free, values))}
        if all(tau[v] - tau[u] >= b for u, v, b in rows):
            c = cost(prim, tau, share)
            best = c if best is None else min(best, c)
    return best


def assert_delay_matched(prim, r):
    lat_of = lambda x: prim.primitive(x).latency
    for u, v, e in prim.edges():
        if e.hold:
            continue
        s = r.stages[(u, v)]
        assert s >= e.delay and r.extra[(u, v)] == s - e.delay
        assert r.tau[v] == r.tau[u] + lat_of(u) + s
    # every pair of register-balanced paths between the same two nodes has the same latency
    matched = nx.DiGraph((u, v) for u, v, e in prim.edges() if not e.hold)
    for u in matched:
        for v in matched:
            lat = {sum(lat_of(a) + r.stages[(a, b)] for a, b in zip(p, p[1:]))
                   for p in nx.all_simple_paths(matched, u, v)}
            assert len(lat) <= 1, (u, v, lat)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prim=small_dags(), period=st.sampled_from([0.5, 0.9, 2.0]), share=st.booleans())
def test_lp_is_integral_balanced_feasible_and_equals_the_min_cost_flow_dual(prim, period, share):
    try:
        r = insert_pipeline_registers(prim, period, share_fanout=share)
    except ClockTargetError:
        assert any(CQ + d.delay_ns + SU > period for d in prim.primitives.values())
        return
    assert r.integral_lp
    assert_delay_matched(prim, r)
    assert feasible(prim, r.tau, period)
    assert r.register_bits == cost(prim, r.tau, share)
    primal, dual = min_cost_flow_dual(prim, period, share_fanout=share)
    assert primal == dual


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prim=small_dags(max_nodes=4), period=st.sampled_from([0.5, 0.9, 2.0]), share=st.booleans())
def test_lp_optimum_equals_brute_force(prim, period, share):
    try:
        r = insert_pipeline_registers(prim, period, share_fanout=share)
    except ClockTargetError:
        return
    assert r.register_bits == brute_force(prim, period, share)


def chain_of_adders(k, delay=0.3):
    nodes = {"src": (1, 0.0), **{f"a{i}": (0, delay) for i in range(k)}, "dst": (1, 0.0)}
    names = ["src"] + [f"a{i}" for i in range(k)] + ["dst"]
    return make_prim(nodes, {(a, b): (16, 0, False) for a, b in zip(names, names[1:])})


def test_timing_cut_on_a_slow_combinational_chain():
    prim = chain_of_adders(4)                 # clk-to-q 0.1 + 4 x 0.3 + setup 0.1 = 1.4 ns end to end
    assert timing_cuts(prim, 2.0) == []
    r = insert_pipeline_registers(prim, 2.0)
    assert r.register_bits == 0 and r.latency_cycles == 1
    r = insert_pipeline_registers(prim, 1.0)  # 0.1 + 3 x 0.3 + 0.1 = 1.1 > 1.0: one register somewhere
    assert sum(r.stages.values()) == 1 and r.register_bits == 16 and r.latency_cycles == 2
    r = insert_pipeline_registers(prim, 0.55)  # at most one adder per stage
    assert sum(r.stages.values()) == 3        # four adders need three registers between them


def test_fanout_sharing_pays_for_the_deepest_sink_once():
    # s drives a, b, c; wide registered links a -> b -> c force the sinks one cycle apart each
    nodes = {"s": (1, 0.0), "a": (1, 0.0), "b": (1, 0.0), "c": (1, 0.0)}
    edges = {("s", "a"): (8, 0, False), ("s", "b"): (8, 0, False), ("s", "c"): (8, 0, False),
             ("a", "b"): (100, 0, False), ("b", "c"): (100, 0, False)}
    prim = make_prim(nodes, edges)
    shared = insert_pipeline_registers(prim, 10.0, share_fanout=True)
    alone = insert_pipeline_registers(prim, 10.0, share_fanout=False)
    assert [shared.registers_on(N("s"), N(x)) for x in "abc"] == [0, 1, 2]
    assert shared.chain_depth[N("s")] == 2                 # one chain of two registers, tapped at 0, 1, 2
    assert shared.register_bits == 8 * 2
    assert alone.register_bits == 8 * (0 + 1 + 2)
    assert shared.unshared_register_bits == alone.register_bits


def test_clock_target_error_names_the_slow_primitive():
    prim = make_prim({"m": (1, 0.0), "mul": (0, 3.0), "acc": (1, 0.2)},
                     {("m", "mul"): (8, 0, False), ("mul", "acc"): (16, 0, False)})
    with pytest.raises(ClockTargetError) as info:
        insert_pipeline_registers(prim, 2.0)
    assert "'mul'" in str(info.value) and "3.200 ns" in str(info.value)
    assert info.value.offenders[0][0] == N("mul")


def test_positive_cycle_is_reported_as_infeasible():
    prim = make_prim({"a": (1, 0.0), "b": (0, 0.1)}, {("a", "b"): (8, 0, False), ("b", "a"): (8, 0, False)})
    with pytest.raises(DelayMatchingError, match="delay matching constraints .* cycle"):
        insert_pipeline_registers(prim, 5.0)


@pytest.mark.parametrize("build", [os_broadcast, ws_systolic, lambda: tree_array(8, 4)])
@pytest.mark.parametrize("target,periods", [("asic", (2.0, 1.0, 0.8)), ("ecp5", (10.0, 7.0))])
def test_array_graphs_are_matched_and_dual_checked(build, target, periods):
    prim = lower_to_primitives(build(), DelayTable.load(target))
    for period in periods:
        r = insert_pipeline_registers(prim, period)
        assert r.integral_lp
        assert_delay_matched_fast(prim, r)
        primal, dual = min_cost_flow_dual(prim, period)
        assert primal == dual
        assert r.register_bits <= r.unshared_register_bits


def assert_delay_matched_fast(prim, r):
    lat_of = lambda x: prim.primitive(x).latency
    for u, v, e in prim.edges():
        if not e.hold:
            assert r.tau[v] - r.tau[u] - lat_of(u) == r.stages[(u, v)] >= e.delay
    for u, v in timing_cuts(prim, r.clock_period_ns):
        assert r.tau[v] - r.tau[u] - lat_of(u) >= 1


def test_broadcast_needs_registers_only_when_the_clock_is_tight():
    prim = lower_to_primitives(os_broadcast(4), DelayTable.load("asic"))
    relaxed = insert_pipeline_registers(prim, 2.0)
    assert relaxed.register_bits == 0                 # 0.6 + 0.6 + 0.18 + ... fits in 2 ns
    tight = insert_pipeline_registers(prim, 1.0)      # memory clock-to-out + multiplier no longer fit
    assert tight.register_bits > 0 and tight.latency_cycles > relaxed.latency_cycles
    assert all(tight.registers_on(u, v) >= 0 for u, v in prim.graph.edges)
    regs = tight.fu_edge_registers()
    assert regs[(M("A", 0), F((0, 0)))] == tight.registers_on(MP("A", 0), Node(NodeKind.PORT, (0, 0), "A"))


def test_fused_dataflows_take_the_max_per_shared_edge():
    table = DelayTable.load("asic")
    a = lower_to_primitives(os_broadcast(2), table)
    same = lower_to_primitives(os_broadcast(2), table)
    # second dataflow: the same hardware but B arrives with a one-cycle skew per column
    skewed = [(u, v, dataclasses.replace(e, delay=u.lane) if u.kind is NodeKind.MEM_PORT and u.operand == "B" else e)
              for u, v, e in same.edges()]
    b = PrimitiveGraph.build(same.primitives.items(), skewed, target=same.target, clk_to_q_ns=same.clk_to_q_ns,
                             setup_ns=same.setup_ns, name="skewed")
    fused = insert_pipeline_registers_fused([a, b], 1.0)
    assert fused.register_bits <= fused.separate_register_bits
    for m, r in enumerate(fused.per_dataflow):
        assert_delay_matched_fast(r.prim, r)
        for (u, v), s in r.stages.items():
            key = ("net", u) if u in r.chain_depth else ("edge", u, v)
            if key in fused.shared_stages:
                assert fused.shared_stages[key] >= (r.chain_depth[u] if u in r.chain_depth else s)


def test_ecp5_clock_faster_than_the_dsp_multiplier_is_refused():
    table = DelayTable.load("ecp5")
    prim = lower_to_primitives(os_broadcast(2), table)
    with pytest.raises(ClockTargetError) as info:
        insert_pipeline_registers(prim, 5.0)
    slow = {node for node, _, _ in info.value.offenders}
    assert Node(NodeKind.MUL, (0, 0)) in slow and MP("A", 0) in slow   # DSP 5.81 ns, EBR read 6.13 ns
    assert "clock period 5.000 ns cannot be met" in str(info.value)
