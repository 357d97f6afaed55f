"""The min-cost-flow solver of the delay-matching LP against CBC: same optimum, the least optimal x."""
from __future__ import annotations

import warnings

import networkx as nx
import numpy as np
import pulp
import pytest

from archgen.arch.spec import load_spec
from archgen.dataflow import delay_lp, flow_solver
from archgen.dataflow.arborescence import minimum_spanning_arborescence
from archgen.dataflow.compile import compile_array
from archgen.dataflow.flow_solver import solve_difference_lp


def _cbc(n, tail, head, b, cost):
    prob = pulp.LpProblem("d", pulp.LpMinimize)
    x = [pulp.LpVariable(f"x{i}", lowBound=0) for i in range(n)]
    prob += pulp.lpSum(int(c) * x[i] for i, c in enumerate(cost) if c)
    for t, h, bb in zip(tail, head, b):
        prob += x[h] - x[t] >= int(bb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        prob.solve(pulp.PULP_CBC_CMD(msg=False))
    assert pulp.LpStatus[prob.status] == "Optimal"
    return np.array([v.varValue or 0.0 for v in x]), pulp.value(prob.objective) or 0.0


def _random_dag_lp(rng):
    """A random DAG of difference rows with costs balanced like register bits (width * (tau_v - tau_u))."""
    n = int(rng.integers(2, 14))
    tail, head, b = [], [], []
    cost = np.zeros(n, dtype=np.int64)
    for _ in range(int(rng.integers(1, 3 * n))):
        u, v = sorted(rng.choice(n, 2, replace=False))
        tail.append(u), head.append(v), b.append(int(rng.integers(0, 4)))
        w = int(rng.integers(1, 9))
        cost[v] += w
        cost[u] -= w
    return n, tail, head, b, cost


@pytest.mark.parametrize("seed", range(40))
def test_random_dag_lps_match_cbc_and_return_the_least_optimum(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    n, tail, head, b, cost = _random_dag_lp(rng)
    sol = solve_difference_lp(n, tail, head, b, cost)
    x_cbc, obj_cbc = _cbc(n, tail, head, b, cost)
    assert sol.objective == round(obj_cbc)
    assert (sol.x[np.array(head)] - sol.x[np.array(tail)] >= np.array(b)).all() and (sol.x >= 0).all()
    assert (sol.x <= np.round(x_cbc) + 1e-9).all()          # the least optimum is below every optimum
    # the min-cost-flow branch (taken when the least feasible x is not optimal) gives the same answer
    monkeypatch.setattr(flow_solver, "_zero_cost_flow", lambda *a: None)
    again = solve_difference_lp(n, tail, head, b, cost)
    assert again.objective == sol.objective and np.array_equal(again.x, sol.x)


def test_both_branches_are_exercised_by_the_random_lps():
    took_flow = 0
    for seed in range(40):
        n, tail, head, b, cost = _random_dag_lp(np.random.default_rng(seed))
        lv = flow_solver._levels(n, np.array(tail), np.array(head))
        x0 = flow_solver._least_fixpoint(n, lv, np.array(tail), np.array(head), np.array(b), np.zeros(len(b), bool))
        took_flow += int(cost @ x0) != solve_difference_lp(n, tail, head, b, cost).objective
    assert 0 < took_flow < 40


def test_cyclic_systems_are_declined():
    assert solve_difference_lp(3, [0, 1, 2], [1, 2, 0], [0, 0, -1], [1, 0, -1]) is None


@pytest.mark.parametrize("spec,overrides", [
    ("gemm_os", ["array.shape=[6,5]"]),
    ("gemm_ws", ["array.shape=[4,7]", "clock_mhz=1250"]),
    ("gemm_os_bcast", ["array.shape=[8,8]", "clock_mhz=1100"]),
    ("conv_ws", ["array.shape=[3,4]", "clock_mhz=1250"]),
    ("gemm_is", ["array.shape=[5,3]"]),
])
def test_array_register_placement_equals_cbc(spec, overrides, monkeypatch):
    compiled = compile_array(load_spec(spec, overrides))
    prim, period = compiled.prim, compiled.retimed.clock_period_ns
    fast = delay_lp.insert_pipeline_registers(prim, period)
    monkeypatch.setattr(delay_lp, "LP_SOLVER", "cbc")
    slow = delay_lp.insert_pipeline_registers(prim, period)
    assert fast.register_bits == slow.register_bits
    assert dict(fast.tau) == dict(slow.tau) and dict(fast.stages) == dict(slow.stages)


def test_fast_arborescence_equals_networkx():
    rng = np.random.default_rng(3)
    seen_fast = 0
    for _ in range(60):
        g = nx.DiGraph()
        k = int(rng.integers(2, 9))
        g.add_nodes_from(range(k))
        for v in range(1, k):
            g.add_edge(0, v, weight=100.0, tag=("root", v))
        for _ in range(int(rng.integers(0, 2 * k))):
            u, v = (int(a) for a in rng.choice(np.arange(1, k), 2)) if k > 2 else (1, 1)
            if u != v:
                g.add_edge(u, v, weight=float(rng.integers(1, 5)) + (0.5 if u > v else 0), tag=(u, v))
        want = nx.minimum_spanning_arborescence(g, attr="weight", preserve_attrs=True)
        got = minimum_spanning_arborescence(g, attr="weight")
        seen_fast += from_fast(g)
        assert sorted(got.edges(data=True)) == sorted(want.edges(data=True))
    assert seen_fast > 0


def from_fast(g) -> int:
    from archgen.dataflow.arborescence import _unique_greedy
    return int(_unique_greedy(g, "weight") is not None)


@pytest.mark.parametrize("seed", range(30))
def test_unbalanced_costs_and_negative_bounds_agree_with_cbc_or_are_refused_as_unbounded(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 10))
    rows = [tuple(sorted(rng.choice(n, 2, replace=False))) for _ in range(int(rng.integers(1, 3 * n)))]
    tail, head = [u for u, _ in rows], [v for _, v in rows]
    b = [int(rng.integers(-2, 4)) for _ in rows]
    cost = rng.integers(-3, 6, size=n)
    cost[0] += max(0, -int(cost.sum()))
    prob = pulp.LpProblem("d", pulp.LpMinimize)
    x = [pulp.LpVariable(f"x{i}", lowBound=0) for i in range(n)]
    prob += pulp.lpSum(int(c) * x[i] for i, c in enumerate(cost))
    for t, h, bb in zip(tail, head, b):
        prob += x[h] - x[t] >= bb
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        prob.solve(pulp.PULP_CBC_CMD(msg=False))
    status = pulp.LpStatus[prob.status]
    try:
        sol = solve_difference_lp(n, tail, head, b, cost)
    except flow_solver.FlowSolverError:
        assert status != "Optimal"                   # unbounded: delay_lp then asks CBC, which reports it
        return
    assert status == "Optimal" and sol.objective == round(pulp.value(prob.objective) or 0)
    assert (sol.x <= np.round([v.varValue or 0.0 for v in x]) + 1e-9).all()


@pytest.mark.parametrize("seed", range(40))
def test_networkx_flows_for_small_systems_equal_ortools(seed, monkeypatch):
    """Small systems solve their flows with networkx (no OR-Tools import at start-up); both branches, both
    libraries: the same least optimum."""
    n, tail, head, b, cost = _random_dag_lp(np.random.default_rng(seed))
    small = solve_difference_lp(n, tail, head, b, cost)
    monkeypatch.setattr(flow_solver, "SMALL_ARCS", 0)
    big = solve_difference_lp(n, tail, head, b, cost)
    assert big.objective == small.objective and np.array_equal(big.x, small.x)
    monkeypatch.setattr(flow_solver, "_zero_cost_flow", lambda *a: None)
    flow_big = solve_difference_lp(n, tail, head, b, cost)
    monkeypatch.setattr(flow_solver, "SMALL_ARCS", 10 ** 9)
    flow_small = solve_difference_lp(n, tail, head, b, cost)
    assert np.array_equal(flow_big.x, small.x) and np.array_equal(flow_small.x, small.x)
