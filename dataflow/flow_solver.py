"""Difference-constraint LPs solved as min-cost flows (OR-Tools network simplex / cost scaling, compiled).

Problem, on plain arrays: variables x_0 .. x_{n-1} >= 0, rows x[head[k]] - x[tail[k]] >= b[k], minimise
sum_v cost[v] x[v] with integer data. Its LP dual is an uncapacitated min-cost flow: an arc tail -> head of
cost -b per row, net inflow cost[v] at every variable (the x >= 0 bounds become arcs from a root of cost 0).

:func:`solve_difference_lp` returns one specific optimum: the *least* one, x* = min over all optimal x,
pointwise. It exists because the optimal face is itself a set of difference constraints (every row plus,
by complementary slackness with an optimal flow f, x_h - x_t = b on every row with f > 0), and such sets are
closed under pointwise minimum. It is the vector of longest distances from the root in the constraint graph
extended by the reversed tight rows, i.e. minus the shortest distances in the flow's residual network, read
off a second min-cost flow (a shortest-path tree: the root sends one unit to every node). So the answer does
not depend on which optimal vertex a solver happens to stop at: it is the earliest-latch, least-latency
optimum, deterministic by construction.

Every result carries its own proof: x is checked to satisfy every row and x >= 0 (primal feasible), the
flow to satisfy conservation with f >= 0 (dual feasible), and cost.x to equal the flow's value b.f (strong
duality); a failed check raises. Systems whose constraint graph has a cycle are declined (None), and the
caller falls back to its LP solver.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DifferenceLPSolution", "solve_difference_lp", "FlowSolverError"]


class FlowSolverError(RuntimeError):
    """The min-cost-flow solve failed or its optimality certificate did not check out."""


@dataclass(frozen=True)
class DifferenceLPSolution:
    x: np.ndarray          # int64, the least optimal solution
    objective: int         # cost . x  (== the dual flow's value)
    tight_rows: int        # rows carrying flow in the dual optimum


def _levels(n: int, tail: np.ndarray, head: np.ndarray) -> np.ndarray | None:
    """Topological level of every node of the constraint graph (tail -> head); None if it has a cycle."""
    indeg = np.bincount(head, minlength=n)
    order = np.argsort(tail, kind="stable")
    starts = np.searchsorted(tail[order], np.arange(n + 1))
    level = np.full(n, -1, dtype=np.int64)
    frontier = np.flatnonzero(indeg == 0)
    depth = 0
    while frontier.size:
        level[frontier] = depth
        depth += 1
        succ = head[order[_ranges(starts[frontier], starts[frontier + 1])]]
        if succ.size == 0:
            break
        np.subtract.at(indeg, succ, 1)
        cand = np.unique(succ)
        frontier = cand[indeg[cand] == 0]
    return None if (level < 0).any() else level


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenation of arange(lo[i], hi[i])."""
    counts = hi - lo
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    return np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(total)


# Below this many arcs the flows are solved by networkx (already imported by the caller) instead of OR-Tools,
# whose import costs more than the solve on small arrays (CLI start-up); the answer is the same: the least
# optimum is unique and every flow passes the same certificate.
SMALL_ARCS = 4000


def _nx_network(n_nodes, tails, heads, caps, costs=None):
    """A networkx DiGraph of the arcs, or None if two arcs join the same pair (a DiGraph cannot hold both)."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(range(n_nodes))
    pairs = list(zip(tails.tolist(), heads.tolist()))
    if len(set(pairs)) != len(pairs):
        return None, pairs
    if costs is None:
        g.add_edges_from((t, h, {"capacity": c}) for (t, h), c in zip(pairs, caps.tolist()))
    else:
        g.add_edges_from((t, h, {"capacity": c, "weight": w}) for (t, h), c, w in zip(pairs, caps.tolist(),
                                                                                     costs.tolist()))
    return g, pairs


def _zero_cost_flow(n_nodes, tails, heads, usable, supplies, big):
    """A flow meeting `supplies` on the usable arcs only (max flow from a super source), or None."""
    src, snk = n_nodes, n_nodes + 1
    pos, neg = np.flatnonzero(supplies > 0), np.flatnonzero(supplies < 0)
    use = np.flatnonzero(usable)
    if use.size + pos.size + neg.size <= SMALL_ARCS:
        import networkx as nx

        g, pairs = _nx_network(n_nodes + 2, np.concatenate([tails[use], np.full(pos.size, src), neg]),
                               np.concatenate([heads[use], pos, np.full(neg.size, snk)]),
                               np.concatenate([np.full(use.size, big), supplies[pos], -supplies[neg]]))
        if g is not None:
            value, fd = nx.maximum_flow(g, src, snk)
            if value != int(supplies[pos].sum()):
                return None
            flow = np.zeros(tails.size, dtype=np.int64)
            flow[use] = [fd[t][h] for t, h in pairs[:use.size]]
            return flow
    from ortools.graph.python import max_flow

    smf = max_flow.SimpleMaxFlow()
    arcs = smf.add_arcs_with_capacity(
        np.concatenate([tails[use], np.full(pos.size, src), neg]),
        np.concatenate([heads[use], pos, np.full(neg.size, snk)]),
        np.concatenate([np.full(use.size, big), supplies[pos], -supplies[neg]]))
    if smf.solve(src, snk) != smf.OPTIMAL:
        raise FlowSolverError("OR-Tools max flow failed")
    if smf.optimal_flow() != int(supplies[pos].sum()):
        return None
    flow = np.zeros(tails.size, dtype=np.int64)
    flow[use] = np.asarray(smf.flows(arcs[:use.size]), dtype=np.int64)
    return flow


def _least_fixpoint(n, level, tail, head, b, tight) -> np.ndarray:
    """Least x >= 0 with x[head] >= x[tail] + b on every row and x[tail] >= x[head] - b on tight rows."""
    n_levels = int(level.max()) + 1
    # forward: rows grouped by the head's level (tails are on lower levels, final when the head's level runs)
    fwd = np.lexsort((head, level[head]))
    f_start = np.searchsorted(level[head][fwd], np.arange(n_levels + 1))
    bt = np.flatnonzero(tight)
    bwd = bt[np.lexsort((tail[bt], -level[tail[bt]]))]     # tight rows by the tail's level, top down
    b_start = np.searchsorted(-level[tail[bwd]], -np.arange(n_levels - 1, -2, -1))
    x = np.zeros(n, dtype=np.int64)
    for _ in range(n + 1):
        changed = False
        for lv in range(1, n_levels):
            rows = fwd[f_start[lv]:f_start[lv + 1]]
            if rows.size:
                changed |= _raise(x, head[rows], x[tail[rows]] + b[rows])
        for k in range(n_levels):
            rows = bwd[b_start[k]:b_start[k + 1]]
            if rows.size:
                changed |= _raise(x, tail[rows], x[head[rows]] - b[rows])
        if not changed:
            return x
    raise FlowSolverError("least-solution sweeps did not converge (certificate failed)")


def _raise(x: np.ndarray, idx: np.ndarray, val: np.ndarray) -> bool:
    """x[idx] = max(x[idx], val) with repeated indices; True if anything grew."""
    before = x[idx]
    np.maximum.at(x, idx, val)
    return bool((x[idx] != before).any())


def _min_cost_flow(n_nodes, tails, heads, caps, costs, supplies):
    if tails.size <= SMALL_ARCS:
        import networkx as nx

        g, pairs = _nx_network(n_nodes, tails, heads, caps, costs)
        if g is not None:
            for v, sup in enumerate(supplies.tolist()):
                g.nodes[v]["demand"] = -sup
            try:
                cost, fd = nx.network_simplex(g)
            except (nx.NetworkXUnfeasible, nx.NetworkXUnbounded) as e:
                raise FlowSolverError(f"networkx network simplex: {e}") from e
            return np.array([fd[t][h] for t, h in pairs], dtype=np.int64), int(cost)
    from ortools.graph.python import min_cost_flow   # compiled; imported on first use (CLI start-up)

    smcf = min_cost_flow.SimpleMinCostFlow()
    arcs = smcf.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)
    smcf.set_nodes_supplies(np.arange(n_nodes), supplies)
    status = smcf.solve()
    if status != smcf.OPTIMAL:
        raise FlowSolverError(f"OR-Tools min-cost flow returned status {status!r}")
    return np.asarray(smcf.flows(arcs), dtype=np.int64), int(smcf.optimal_cost())


def solve_difference_lp(n: int, tail, head, b, cost) -> DifferenceLPSolution | None:
    """Least optimal x of: min cost.x s.t. x[head] - x[tail] >= b, x >= 0 (integers); None if the
    constraint graph is cyclic (not handled here). Raises FlowSolverError if the LP is unbounded."""
    tail = np.asarray(tail, dtype=np.int64)
    head = np.asarray(head, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    cost = np.asarray(cost, dtype=np.int64)
    if cost.shape != (n,) or not (tail.shape == head.shape == b.shape):
        raise ValueError("solve_difference_lp: cost needs n entries and tail/head/b one per row")
    if n == 0:
        return DifferenceLPSolution(np.zeros(0, dtype=np.int64), 0, 0)
    level = _levels(n, tail, head)
    if level is None:
        return None
    m = tail.size
    root = n
    nodes = np.arange(n, dtype=np.int64)
    # dual: arcs tail -> head cost -b; root -> v cost 0 (the x >= 0 bounds); supply (net outflow) -cost[v]
    total = int(cost.sum())
    if total < 0:
        raise FlowSolverError("the difference LP is unbounded (its costs sum below zero)")
    big = int(np.abs(cost).sum()) + 1           # an acyclic network never carries more than the total supply
    f_tails = np.concatenate([tail, np.full(n, root)])
    f_heads = np.concatenate([head, nodes])
    f_b = np.concatenate([b, np.zeros(n, dtype=np.int64)])
    supplies = np.concatenate([-cost, [total]])
    # x0: the least feasible x (longest paths over the DAG from 0). Reduced arc costs -b + x0_h - x0_t >= 0.
    x0 = _least_fixpoint(n, level, tail, head, b, np.zeros(m, dtype=bool))
    x0r = np.concatenate([x0, [0]])
    reduced = -f_b + x0r[f_heads] - x0r[f_tails]
    # 1) is x0 optimal? It is iff a feasible flow uses only arcs of reduced cost 0 (complementary
    #    slackness) - a max-flow question, much cheaper than a min-cost flow; x0 is then also the least optimum
    flow = _zero_cost_flow(n + 1, f_tails, f_heads, reduced == 0, supplies, big)
    if flow is not None:
        x = x0
    else:
        # 2) min-cost flow on the reduced costs (non-negative: same optimal flows, better conditioned), then
        #    the least x on the optimal face: longest distances from 0 over the rows (x_h >= x_t + b) and the
        #    reversed tight rows (x_t >= x_h - b where the row carries flow), by monotone level sweeps
        flow, _ = _min_cost_flow(n + 1, f_tails, f_heads, np.full(m + n, big), reduced, supplies)
        x = _least_fixpoint(n, level, tail, head, b, flow[:m] > 0)
    tight = flow[:m] > 0
    dual_cost = -int(f_b @ flow)
    # certificate: primal feasible, dual feasible, equal objectives
    if (x < 0).any() or (x[head] - x[tail] < b).any():
        raise FlowSolverError("min-cost-flow potentials violate a difference row (certificate failed)")
    net = np.bincount(f_heads, weights=flow, minlength=n + 1) - np.bincount(f_tails, weights=flow, minlength=n + 1)
    if (flow < 0).any() or not np.array_equal(net[:n].astype(np.int64), cost):
        raise FlowSolverError("min-cost flow violates conservation (certificate failed)")
    objective = int(cost @ x)
    if objective != -dual_cost:
        raise FlowSolverError(f"primal {objective} != dual {-dual_cost} (certificate failed)")
    return DifferenceLPSolution(x, objective, int(tight.sum()))
