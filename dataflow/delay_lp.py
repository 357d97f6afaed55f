"""Delay matching and pipelining of a primitive graph as a linear program (PuLP + bundled CBC).

Variables: tau_v, the cycle at which node v latches its inputs. On a matched edge e = (u, v) the
physical registers are s_e = tau_v - tau_u - L_u = D_e + r_e, where D_e are the registers the schedule
itself needs and r_e >= 0 the ones pipelining and balancing add. Minimise the register bits
sum_e w_e s_e (equivalently sum w_e r_e: the D_e part is constant). Timing: every combinational segment
u -> ... -> v whose estimated delay exceeds the clock period needs one register,
tau_v - tau_u - L_u >= 1; a link between FUs more than one FU pitch apart also needs one register more
than its schedule's D_e where its wire delay after those registers misses the clock (:func:`wire_cuts`).
Fan-out sharing: a net driving several sinks is one shared register chain
tapped by each sink, so it pays once for its deepest sink, through a mirror vertex m_u >= tau_v
(cost w_u (m_u - tau_u - L_u)). Every constraint is a difference of two variables, so the matrix is
totally unimodular: the LP optimum is integral and its dual is a min-cost flow, which
:func:`min_cost_flow_dual` solves with networkx as an independent cross-check.

Several dataflows sharing hardware (:func:`insert_pipeline_registers_fused`) pay, per edge or net,
the maximum over dataflows of its registers (epigraph variables R >= s^m). Those rows have three
nonzeros, total unimodularity is lost, and the result is re-solved as an integer program if the LP
vertex is fractional (reported in `integral_lp`).
"""
from __future__ import annotations

import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Sequence

import networkx as nx
import numpy as np

from archgen.arch.errors import ArchgenError
from archgen.dataflow.ir import NodeKind
from archgen.dataflow.primitives import PrimitiveGraph, naive_register_bits

__all__ = [
    "ClockTargetError",
    "DelayMatchingError",
    "RetimedGraph",
    "FusedRetiming",
    "insert_pipeline_registers",
    "insert_pipeline_registers_fused",
    "min_cost_flow_dual",
    "timing_cuts",
    "wire_cuts",
]

_EPS = 1e-6


class ClockTargetError(ArchgenError):
    """The clock period cannot be met by adding registers: a single primitive (or net) is too slow."""

    def __init__(self, period_ns: float, offenders: list[tuple[object, float, str]]):
        self.period_ns = period_ns
        self.offenders = tuple(offenders)
        worst = sorted(offenders, key=lambda o: -o[1])
        lines = [f"  {what} {node!r}: {delay:.3f} ns" for node, delay, what in worst[:8]]
        more = f"\n  ... and {len(worst) - 8} more" if len(worst) > 8 else ""
        super().__init__(f"clock period {period_ns:.3f} ns cannot be met: {len(worst)} primitive(s) are slower than "
                         f"the period on their own (clock-to-Q and setup included); pipeline them internally or "
                         f"relax the clock (the slowest needs >= {worst[0][1]:.3f} ns):\n" + "\n".join(lines) + more)


class DelayMatchingError(ArchgenError):
    """The delay-matching LP has no solution; the message names the constraint set and a witness cycle."""


@dataclass(frozen=True)
class _System:
    """x_head - x_tail >= b rows, objective coefficients, and the bookkeeping to read a solution back."""

    rows: dict                    # (head, tail) -> (b, set of constraint kinds)
    cost: dict                    # variable -> integer coefficient (sums to zero per dataflow)
    variables: tuple
    epigraph: dict                # key -> (width, [(head, tail, const)]) for resources shared by dataflows
    timing_rows: int


def _registered_output(prim: PrimitiveGraph, v) -> bool:
    """v's output comes from a register in the RTL: a node with latency, or a delay connection's FIFO (one
    register, or a buffer written on the clock and read through its read multiplexer: rtlgen/array.py ``_fifo``).
    A FIFO is latency 0 to the LP (it holds steps, not cycles), but a timing segment ends at its input and
    starts again at its ``out_ns``."""
    return prim.primitive(v).latency >= 1 or v.kind is NodeKind.FIFO


def _wire_after_registers(prim: PrimitiveGraph) -> dict:
    """Per node, the slowest wire into it that lies after its in-edge's registers: ``wire_ns - span_ns`` of a
    streamed edge (the fan-out penalty and a fused design's select mux). An edge's registers are its driver's
    chain (rtlgen/datapath.py ``RetimedNets.src``) and the sink reads a tap of it across that wire, so a segment
    that starts at any register of the edge (the schedule's or one the LP adds) starts at the sink with
    clock-to-Q plus that wire. A long link's span is left out: a register the LP adds on the link sits at its
    receiving end, and the schedule's registers are taken care of by :func:`wire_cuts`."""
    after: dict = {}
    for _, v, e in prim.edges():
        w = e.wire_ns - e.span_ns
        if not e.hold and w > after.get(v, 0.0):
            after[v] = w
    return after


def _check_clock(prim: PrimitiveGraph, period: float) -> None:
    g, cq, su = prim.graph, prim.clk_to_q_ns, prim.setup_ns
    bad = []
    for v, d in prim.primitives.items():
        need = cq + d.delay_ns + su
        if need > period + _EPS:
            bad.append((v, need, str(v.kind)))
        if _registered_output(prim, v) and d.out_ns + su > period + _EPS:
            bad.append((v, d.out_ns + su, f"{v.kind} clock-to-output"))
    for u, v, e in prim.edges():
        need = cq + e.wire_ns + su
        # the wire after a register of the edge, then the sink (up to its internal register if it has one)
        after = cq + e.wire_ns - e.span_ns + prim.primitive(v).delay_ns + su
        if need > period + _EPS:
            bad.append(((u, v), need, f"net of {g.out_degree(u)} sinks"))
        elif not e.hold and after > period + _EPS:
            bad.append(((u, v), after, f"net of {g.out_degree(u)} sinks into {v.kind}"))
    if bad:
        raise ClockTargetError(period, bad)


def timing_cuts(prim: PrimitiveGraph, clock_period_ns: float) -> list[tuple[object, object]]:
    """Pairs (u, v) such that some register-free segment from u's output to v is slower than the period.

    Each needs tau_v - tau_u - L_u >= 1. Found by a longest-path walk from every node over edges without
    schedule registers (D_e = 0) through combinational nodes; the walk stops where a cut is required,
    because every path that continues is then cut too (tau is monotone along edges). A walk starts at a
    registered output's ``out_ns`` (a FIFO's too: it ends a walk like a register), else at clock-to-Q plus
    the slowest wire into the node after its in-edge's registers (:func:`_wire_after_registers`) plus its
    delay: every path through the node comes from a register at least that far away.
    """
    g, cq, period = prim.graph, prim.clk_to_q_ns, clock_period_ns
    order = {v: i for i, v in enumerate(nx.topological_sort(g))}
    after = _wire_after_registers(prim)
    cuts = set()
    for u, du in prim.primitives.items():
        start = du.out_ns if _registered_output(prim, u) else cq + after.get(u, 0.0) + du.delay_ns
        cuts.update((u, b) for b in _slow_ends(prim, order, u, start, period, from_output=True))
    return sorted(cuts, key=lambda c: (order[c[0]], order[c[1]]))


def _slow_ends(prim: PrimitiveGraph, order: dict, start, t0: float, period: float, *, from_output: bool) -> set:
    """The nodes at which a register-free segment from ``start`` arrives later than the period allows: a
    longest-path walk over edges without schedule registers (D_e = 0, not held), in topological order (each
    node's arrival is final when it is taken), stopping at such a node and at a registered output
    (:func:`_registered_output`). ``t0``: the arrival at ``start`` (its delay included); ``from_output``: the walk
    leaves ``start``'s output, which is neither checked nor a stop (:func:`timing_cuts`); else ``start`` is
    the first node of the segment (:func:`wire_cuts`)."""
    g, su = prim.graph, prim.setup_ns
    arrival, frontier, slow = {start: t0}, {start}, set()
    while frontier:
        a = min(frontier, key=order.__getitem__)
        frontier.discard(a)
        if a is not start or not from_output:
            if arrival[a] + su > period + _EPS:
                slow.add(a)
                continue
            if _registered_output(prim, a):
                continue
        for c in g.successors(a):
            w = prim.wire(a, c)
            if w.delay > 0 or w.hold:
                continue
            t = arrival[a] + w.wire_ns + prim.primitive(c).delay_ns
            if t > arrival.get(c, -1.0):
                arrival[c] = t
                frontier.add(c)
    return slow


def wire_cuts(prim: PrimitiveGraph, clock_period_ns: float) -> list[tuple[object, object, int]]:
    """Triples (u, v, b), each a row tau_v - tau_u >= b, for links longer than one FU pitch (a wire
    with ``span_ns`` > 0, dataflow/primitives.py) that carry schedule registers (D_e >= 1).

    The schedule's D_e registers sit at the sender (the RTL's chain is the driver's), so the link's whole wire
    (span, fan-out, a fused design's mux) lies after them: from their clock-to-Q through it to the receiver and
    on over register-free edges to the next registered output (a FIFO's input included). Where
    that segment is slower than the period at node v, the path from u's output to v needs one register more
    than the schedule's: b = L_u + D_e + 1. The register the LP adds on the link itself sits at its receiving
    end (a flip-flop along the route), splitting the span from the receiver; one it adds behind the receiver
    splits the segment there, leaving the fan-out and mux part of the wire (:func:`timing_cuts` starts the
    receiver's walk with it). Register-free links are walked by :func:`timing_cuts` (the span is in their
    ``wire_ns``); a link whose wire alone misses the clock is :class:`ClockTargetError`."""
    g, cq, period = prim.graph, prim.clk_to_q_ns, clock_period_ns
    order = None
    cuts: dict = {}
    for u, b, e in prim.edges():
        if e.span_ns <= 0 or e.delay < 1 or e.hold:
            continue
        if order is None:
            order = {v: i for i, v in enumerate(nx.topological_sort(g))}
        bound = prim.primitive(u).latency + e.delay + 1
        for a in _slow_ends(prim, order, b, cq + e.wire_ns + prim.primitive(b).delay_ns, period, from_output=False):
            cuts[(u, a)] = max(cuts.get((u, a), 0), bound)
    if order is None:
        return []
    return sorted(((u, v, b) for (u, v), b in cuts.items()), key=lambda c: (order[c[0]], order[c[1]]))


def _difference_system(prims: Sequence[PrimitiveGraph], period: float, share_fanout: bool) -> _System:
    rows: dict = {}
    timing_rows = 0

    def row(head, tail, b, kind):
        old = rows.get((head, tail))
        if old is None:
            rows[(head, tail)] = (b, {kind})
        else:
            rows[(head, tail)] = (max(old[0], b), old[1] | {kind})

    needs: dict = defaultdict(list)   # resource key -> [(m, width, head, tail, const)]
    for m, prim in enumerate(prims):
        g = prim.graph
        _check_clock(prim, period)
        for u, v, e in prim.edges():
            if not e.hold:
                row((m, "tau", v), (m, "tau", u), prim.primitive(u).latency + e.delay, "delay matching")
        for u in g.nodes:
            L = prim.primitive(u).latency
            outs = [(v, e) for v, e in prim.out_wires(u) if not e.hold]
            if share_fanout and len(outs) > 1:
                mirror = (m, "mirror", u)
                for v, _ in outs:
                    row(mirror, (m, "tau", v), 0, "fan-out sharing")
                needs[("net", u)].append((m, max(e.width for _, e in outs), mirror, (m, "tau", u), L))
            else:
                for v, e in outs:
                    needs[("edge", u, v)].append((m, e.width, (m, "tau", v), (m, "tau", u), L))
        if not nx.is_directed_acyclic_graph(g):
            continue             # no timing walk on a loop; _run reports the loop from the matching rows
        for u, v in timing_cuts(prim, period):
            row((m, "tau", v), (m, "tau", u), prim.primitive(u).latency + 1, "timing")
            timing_rows += 1
        for u, v, b in wire_cuts(prim, period):
            row((m, "tau", v), (m, "tau", u), b, "timing")
            timing_rows += 1
    cost: dict = defaultdict(int)
    epigraph = {}
    for key, uses in needs.items():
        width = max(w for _, w, _, _, _ in uses)
        if len(uses) == 1:
            _, _, head, tail, _ = uses[0]
            cost[head] += width
            cost[tail] -= width
        else:
            epigraph[key] = (width, [(head, tail, const) for _, _, head, tail, const in uses])
            cost[("R", key)] += width
    variables = set(cost)
    variables.update((m, "tau", v) for m, prim in enumerate(prims) for v in prim.graph.nodes)
    for head, tail in rows:
        variables.update((head, tail))
    return _System(rows, dict(cost), tuple(sorted(variables, key=repr)), epigraph, timing_rows)


def _infeasibility(system: _System) -> DelayMatchingError:
    """Name the positive cycle (sum of lower bounds > 0 around a loop) that makes the LP infeasible."""
    cg = nx.DiGraph()
    for (head, tail), (b, kinds) in system.rows.items():
        cg.add_edge(tail, head, weight=-b, kinds=kinds)
    cg.add_node("__root__")
    for v in list(cg.nodes):
        if v != "__root__":
            cg.add_edge("__root__", v, weight=0, kinds=set())
    try:
        cycle = nx.find_negative_cycle(cg, "__root__")
    except nx.NetworkXError:
        loop = nx.find_cycle(nx.DiGraph((t, h) for h, t in system.rows))
        return DelayMatchingError("the primitive graph has a loop without latency or schedule delay (a combinational "
                                  f"loop), which no register placement can pipeline: {[c[0][2] for c in loop]}")
    kinds = set()
    for a, b in zip(cycle, cycle[1:]):
        kinds |= cg.edges[a, b]["kinds"]
    nodes = " -> ".join(repr(c[2]) for c in cycle)
    which = "timing" if "timing" in kinds else "delay matching"
    return DelayMatchingError(f"the LP is infeasible: the {which} constraints ({', '.join(sorted(kinds))}) go round a "
                              f"cycle that needs more registers than it can hold: {nodes}; a loop must carry "
                              "at least its latency in schedule delay (D_e)")


def _solve(system: _System, integer: bool) -> tuple[dict, float, str]:
    import pulp     # CBC: fused dataflows and the cross-check only; imported on first use (CLI start-up)

    prob = pulp.LpProblem("delay_matching", pulp.LpMinimize)
    cat = pulp.LpInteger if integer else pulp.LpContinuous
    # PuLP >= 3.3 attaches variables to the model (the PuLP 4 API); older releases construct them freely
    if hasattr(prob, "add_variable"):
        x = {v: prob.add_variable(f"x{i}", 0, None, cat=cat) for i, v in enumerate(system.variables)}
    else:
        x = {v: pulp.LpVariable(f"x{i}", lowBound=0, cat=cat) for i, v in enumerate(system.variables)}
    prob += pulp.LpAffineExpression([(x[v], c) for v, c in system.cost.items() if c])
    for (head, tail), (b, _) in system.rows.items():
        prob += pulp.LpAffineExpression([(x[head], 1), (x[tail], -1)]) >= b
    for key, (_, uses) in system.epigraph.items():
        for head, tail, const in uses:
            prob += pulp.LpAffineExpression([(x[("R", key)], 1), (x[head], -1), (x[tail], 1)]) >= -const
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # the bundled CBC is what archgen ships with; PuLP 3.3 warns that PuLP 4 will unbundle it
        warnings.filterwarnings("ignore", message="PULP_CBC_CMD is deprecated", category=DeprecationWarning)
        solver = pulp.PULP_CBC_CMD(msg=False)
    prob.solve(solver)
    elapsed = time.perf_counter() - t0
    status = pulp.LpStatus[prob.status]
    return {v: (var.varValue or 0.0) for v, var in x.items()}, elapsed, status


# Which solver runs the delay-matching LP: "auto" uses the min-cost-flow solver (dataflow/flow_solver.py:
# OR-Tools, returns the least optimal tau, with an optimality certificate) where the system is a pure
# difference system on an acyclic constraint graph and CBC otherwise; "cbc" forces CBC (tests cross-check).
LP_SOLVER = "auto"


def _solve_auto(system: _System) -> tuple[dict, float, str]:
    if LP_SOLVER != "cbc" and not system.epigraph:
        from .flow_solver import FlowSolverError, solve_difference_lp

        t0 = time.perf_counter()
        index = {v: i for i, v in enumerate(system.variables)}
        tails = [index[t] for h, t in system.rows]
        heads = [index[h] for h, t in system.rows]
        bounds = [b for b, _ in system.rows.values()]
        cost = [0] * len(index)
        for v, c in system.cost.items():
            cost[index[v]] = c
        try:
            sol = solve_difference_lp(len(index), tails, heads, bounds, cost)
        except FlowSolverError:
            sol = None          # unbounded or a failed certificate: CBC decides and reports
        if sol is not None:
            x = sol.x.tolist()
            return dict(zip(system.variables, map(float, x))), time.perf_counter() - t0, "Optimal"
    return _solve(system, integer=False)


@dataclass(frozen=True)
class RetimedGraph:
    """Where the registers go. `stages[(u, v)]` = physical registers between u's output and v's input
    (the schedule's D_e plus what the LP added); with fan-out sharing a net is one chain of
    `chain_depth[u]` registers and each sink taps it at its own `stages`."""

    prim: PrimitiveGraph = field(compare=False, repr=False)
    clock_period_ns: float
    share_fanout: bool
    tau: Mapping = field(repr=False)
    stages: Mapping = field(repr=False)
    extra: Mapping = field(repr=False)
    chain_depth: Mapping = field(repr=False)
    register_bits: int
    unshared_register_bits: int
    naive_register_bits: int
    latency_cycles: int
    lp_variables: int
    lp_constraints: int
    timing_constraints: int
    solve_time_s: float
    integral_lp: bool

    def registers_on(self, u, v) -> int:
        """Registers on primitive edge (u, v), D_e included (0 on hold edges)."""
        return self.stages[(u, v)]

    def fu_edge_registers(self) -> dict:
        """FU-graph edge -> registers on its primitive edge (edges into adder trees: the leaf edge only)."""
        w = self.prim.wires
        return {w[(u, v)].fu_edge: s for (u, v), s in self.stages.items() if w[(u, v)].fu_edge}


def _read_back(prim: PrimitiveGraph, m: int, values: dict, share_fanout: bool):
    g = prim.graph
    tau = {v: round(values[(m, "tau", v)]) for v in g.nodes}
    matched = nx.DiGraph()
    matched.add_nodes_from(g.nodes)
    matched.add_edges_from((u, v) for u, v, e in prim.edges() if not e.hold)
    for comp in nx.weakly_connected_components(matched):
        low = min(tau[v] for v in comp)
        for v in comp:
            tau[v] -= low
    stages, extra, depth = {}, {}, {}
    shared = unshared = 0
    for u, v, e in prim.edges():
        if e.hold:
            stages[(u, v)] = extra[(u, v)] = 0
            continue
        s = tau[v] - tau[u] - prim.primitive(u).latency
        stages[(u, v)], extra[(u, v)] = s, s - e.delay
        unshared += e.width * s
    for u in g.nodes:
        outs = [(v, e) for v, e in prim.out_wires(u) if not e.hold]
        if share_fanout and len(outs) > 1:
            depth[u] = max(stages[(u, v)] for v, _ in outs)
            shared += max(e.width for _, e in outs) * depth[u]
        else:
            shared += sum(e.width * stages[(u, v)] for v, e in outs)
    latency = max(tau.values(), default=0)     # earliest launch (tau 0) to the last latch, in cycles
    return tau, stages, extra, depth, shared, unshared, latency


def _run(prims, period, share_fanout):
    if not period > 0:
        raise ValueError(f"clock_period_ns must be positive, not {period!r}")
    system = _difference_system(prims, period, share_fanout)
    if not all(nx.is_directed_acyclic_graph(p.graph) for p in prims):
        raise _infeasibility(system)
    values, elapsed, status = _solve_auto(system)
    integral = all(abs(val - round(val)) < _EPS for val in values.values())
    if status == "Infeasible":
        raise _infeasibility(system)
    if status != "Optimal":
        raise DelayMatchingError(f"CBC returned status {status!r} for the delay-matching LP")
    if not integral:
        values, more, status = _solve(system, integer=True)
        elapsed += more
        if status != "Optimal":
            raise DelayMatchingError(f"CBC returned status {status!r} for the integer delay-matching program")
    n_rows = len(system.rows) + sum(len(u) for _, u in system.epigraph.values())
    return system, values, elapsed, integral, n_rows


def insert_pipeline_registers(prim: PrimitiveGraph, clock_period_ns: float, *,
                              share_fanout: bool = True) -> RetimedGraph:
    """Delay-match and pipeline `prim` for a clock period (ns); raise ClockTargetError or DelayMatchingError."""
    return _retime(prim, clock_period_ns, share_fanout)


def _retime(prim: PrimitiveGraph, clock_period_ns: float, share_fanout: bool) -> RetimedGraph:
    if LP_SOLVER != "cbc":
        fast = _retime_fast(prim, clock_period_ns, share_fanout)
        if fast is not None:
            return fast
    return _retime_general(prim, clock_period_ns, share_fanout)


def _retime_general(prim: PrimitiveGraph, clock_period_ns: float, share_fanout: bool) -> RetimedGraph:
    system, values, elapsed, integral, n_rows = _run([prim], clock_period_ns, share_fanout)
    tau, stages, extra, depth, shared, unshared, latency = _read_back(prim, 0, values, share_fanout)
    return RetimedGraph(prim, float(clock_period_ns), share_fanout, MappingProxyType(tau), MappingProxyType(stages),
                        MappingProxyType(extra), MappingProxyType(depth), shared, unshared, naive_register_bits(prim),
                        latency, len(system.variables), n_rows, system.timing_rows, elapsed, integral)


@dataclass(frozen=True)
class FusedRetiming:
    """Registers for several dataflows on shared hardware: per dataflow a RetimedGraph (its taps), and per
    shared edge or net the register count the hardware must hold (the maximum over dataflows)."""

    per_dataflow: tuple[RetimedGraph, ...]
    shared_stages: Mapping = field(repr=False)   # ("edge", u, v) or ("net", u) -> registers built
    register_bits: int
    separate_register_bits: int                  # sum of the dataflows' own optima, for comparison
    lp_variables: int
    lp_constraints: int
    solve_time_s: float
    integral_lp: bool


def insert_pipeline_registers_fused(prims: Sequence[PrimitiveGraph], clock_period_ns: float, *,
                                    share_fanout: bool = True) -> FusedRetiming:
    """Jointly delay-match several dataflows whose primitive graphs share node ids (the same hardware)."""
    prims = list(prims)
    if not prims:
        raise ValueError("insert_pipeline_registers_fused needs at least one primitive graph")
    system, values, elapsed, integral, n_rows = _run(prims, clock_period_ns, share_fanout)
    per = []
    built: dict = {}
    for m, prim in enumerate(prims):
        tau, stages, extra, depth, shared, unshared, latency = _read_back(prim, m, values, share_fanout)
        per.append(RetimedGraph(prim, float(clock_period_ns), share_fanout, MappingProxyType(tau),
                                MappingProxyType(stages), MappingProxyType(extra), MappingProxyType(depth), shared,
                                unshared, naive_register_bits(prim), latency, len(system.variables), n_rows,
                                system.timing_rows, elapsed, integral))
        g = prim.graph
        for u in g.nodes:
            outs = [(v, e) for v, e in prim.out_wires(u) if not e.hold]
            if share_fanout and len(outs) > 1:
                key, w, s = ("net", u), max(e.width for _, e in outs), depth[u]
                built[key] = (w, max(s, built.get(key, (w, 0))[1]))
            else:
                for v, e in outs:
                    key = ("edge", u, v)
                    built[key] = (e.width, max(stages[(u, v)], built.get(key, (0, 0))[1]))
    bits = sum(w * s for w, s in built.values())
    separate = sum(_retime(p, clock_period_ns, share_fanout).register_bits for p in prims)
    return FusedRetiming(tuple(per), MappingProxyType({k: s for k, (_, s) in built.items()}), bits, separate,
                         len(system.variables), n_rows, elapsed, integral)


def min_cost_flow_dual(prim: PrimitiveGraph, clock_period_ns: float, *, share_fanout: bool = True) -> tuple[int, int]:
    """Solve the LP's dual as a min-cost flow (networkx) and the primal with CBC; return both optima.

    Primal: min c.x s.t. x_h - x_t >= b. Dual: max sum b f over arcs t -> h with flow conservation
    inflow - outflow = c at every variable, f >= 0 - an uncapacitated min-cost flow with arc cost -b.
    Strong duality makes the two values equal; a difference flags a modelling or solver error.
    """
    system = _difference_system([prim], clock_period_ns, share_fanout)
    flow_graph = nx.DiGraph()
    for v in system.variables:
        flow_graph.add_node(v, demand=int(system.cost.get(v, 0)))
    for (head, tail), (b, _) in system.rows.items():
        flow_graph.add_edge(tail, head, weight=-int(b))
    flow_cost = nx.min_cost_flow_cost(flow_graph)
    values, _, status = _solve(system, integer=False)
    if status != "Optimal":
        raise DelayMatchingError(f"CBC returned status {status!r} for the delay-matching LP")
    primal = sum(c * values[v] for v, c in system.cost.items())
    return round(primal), -flow_cost


# ---------------------------------------------------------------------------------------------------------
# Array fast path of one primitive graph with the min-cost-flow solver (every single-dataflow compile).
# The same rows, costs, solver and read-back as _difference_system/_solve_auto/_read_back, built on integer
# node indices with numpy instead of per-row Python dicts keyed by node tuples (which dominated compile time
# on large arrays). Anything unusual (a cyclic graph, a system the flow solver declines) returns None and the
# general path runs, so errors and fallbacks are unchanged; tests/dataflow/test_delay_lp.py compares both.


def _graph_arrays(prim: PrimitiveGraph):
    """Node and edge payloads as arrays; edges in the order of ``prim.wires`` (which ``build`` inserted)."""
    nodes = list(prim.primitives)
    n = len(nodes)
    idx = {v: i for i, v in enumerate(nodes)}
    ps = list(prim.primitives.values())
    lat = np.fromiter((p.latency for p in ps), np.int64, n)
    dly = np.fromiter((p.delay_ns for p in ps), np.float64, n)
    outns = np.fromiter((p.out_ns for p in ps), np.float64, n)
    keys = list(prim.wires)
    ws = list(prim.wires.values())
    m = len(keys)
    eu = np.fromiter((idx[u] for u, _ in keys), np.int64, m)
    ev = np.fromiter((idx[v] for _, v in keys), np.int64, m)
    width = np.fromiter((w.width for w in ws), np.int64, m)
    delay = np.fromiter((w.delay for w in ws), np.int64, m)
    hold = np.fromiter((w.hold for w in ws), bool, m)
    wns = np.fromiter((w.wire_ns for w in ws), np.float64, m)
    return nodes, lat, dly, outns, eu, ev, width, delay, hold, wns


def _segment_arrays(prim: PrimitiveGraph, nodes, lat, eu, ev, hold, wns):
    """Per node: its output is registered (:func:`_registered_output`), and the slowest wire into it after its
    in-edge's registers (:func:`_wire_after_registers`), as arrays in ``nodes`` order."""
    n = len(nodes)
    reg = (lat >= 1) | np.fromiter((v.kind is NodeKind.FIFO for v in nodes), bool, n)
    span = np.fromiter((w.span_ns for w in prim.wires.values()), np.float64, eu.size)
    after = np.zeros(n, dtype=np.float64)
    live = ~hold
    np.maximum.at(after, ev[live], (wns - span)[live])
    return reg, after, span


def _timing_cut_arrays(n, reg, after, dly, outns, eu, ev, delay, hold, wns, cq, su, period):
    """:func:`timing_cuts` on arrays: unique (u, v) index pairs (as u * n + v keys), any order.

    The walk of every start node at once, node by node in topological order of the register-free edges: a
    (start, node) pair is final when its node's level comes up (all its predecessors have lower levels); it is
    dropped if some path already cut it, else its arrival (the maximum over its paths) moves on."""
    from .flow_solver import _levels, _ranges

    el = np.flatnonzero((delay == 0) & ~hold)
    tl, hd, wl = eu[el], ev[el], wns[el]
    order = np.argsort(tl, kind="stable")
    tl, hd, wl = tl[order], hd[order], wl[order]
    starts = np.searchsorted(tl, np.arange(n + 1))
    level = _levels(n, tl, hd)
    limit = period + _EPS
    src = np.arange(n, dtype=np.int64)
    node = src.copy()
    arr = np.where(reg, outns, cq + after + dly)
    cut_keys = []
    cut_all = np.zeros(0, dtype=np.int64)
    while src.size:
        lv = level[node]
        now = lv == lv.min()
        s, a, t = src[now], node[now], arr[now]
        src, node, arr = src[~now], node[~now], arr[~now]
        key = s * n + a
        if cut_all.size:
            keep = ~np.isin(key, cut_all)
            s, a, t, key = s[keep], a[keep], t[keep], key[keep]
        # one entry per pair, the latest arrival
        o = np.lexsort((-t, key))
        first = np.ones(o.size, dtype=bool)
        first[1:] = key[o][1:] != key[o][:-1]
        o = o[first]
        s, a, t = s[o], a[o], t[o]
        cnt = starts[a + 1] - starts[a]
        rows = _ranges(starts[a], starts[a + 1])
        s2 = np.repeat(s, cnt)
        b = hd[rows]
        t2 = np.repeat(t, cnt) + wl[rows] + dly[b]
        over = t2 + su > limit
        if over.any():
            new = s2[over] * n + b[over]
            cut_keys.append(new)
            cut_all = np.union1d(cut_all, new)
        go = ~over & ~reg[b]
        src = np.concatenate([src, s2[go]])
        node = np.concatenate([node, b[go]])
        arr = np.concatenate([arr, t2[go]])
    return cut_all


def _components_min(n, eu, ev, values):
    """Per node, the minimum of ``values`` over its weakly connected component of the edges (eu, ev)."""
    parent = np.arange(n, dtype=np.int64)
    while True:
        pu, pv = parent[eu], parent[ev]
        lo, hi = np.minimum(pu, pv), np.maximum(pu, pv)
        diff = lo != hi
        if not diff.any():
            break
        np.minimum.at(parent, hi[diff], lo[diff])       # hook roots onto smaller roots (parent <= self)
        while True:                                      # compress to roots
            pp = parent[parent]
            if np.array_equal(pp, parent):
                break
            parent = pp
    low = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(low, parent, values)
    return low[parent]


def _retime_fast(prim: PrimitiveGraph, period: float, share_fanout: bool) -> RetimedGraph | None:
    if not period > 0:
        raise ValueError(f"clock_period_ns must be positive, not {period!r}")
    from .flow_solver import FlowSolverError, _levels, solve_difference_lp

    nodes, lat, dly, outns, eu, ev, width, delay, hold, wns = _graph_arrays(prim)
    n, cq, su = len(nodes), prim.clk_to_q_ns, prim.setup_ns
    if n == 0 or eu.size == 0:
        return None
    reg, after, span = _segment_arrays(prim, nodes, lat, eu, ev, hold, wns)
    limit = period + _EPS
    if ((cq + dly + su > limit).any() or (reg & (outns + su > limit)).any()
            or (cq + wns + su > limit).any() or (~hold & (cq + wns - span + dly[ev] + su > limit)).any()):
        _check_clock(prim, period)          # raises, naming the offenders
    if _levels(n, eu, ev) is None:
        return None                         # a loop: the general path reports it
    live = np.flatnonzero(~hold)
    lu, lv, lw = eu[live], ev[live], width[live]
    outs = np.bincount(lu, minlength=n)
    shared_u = (outs > 1) if share_fanout else np.zeros(n, dtype=bool)
    mirror = np.full(n, -1, dtype=np.int64)
    mirror[shared_u] = n + np.arange(int(shared_u.sum()))
    n_var = n + int(shared_u.sum())
    # rows x_head - x_tail >= b: delay matching, fan-out sharing (mirror >= every sink), timing cuts
    heads = [lv]
    tails = [lu]
    bs = [lat[lu] + delay[live]]
    on_net = shared_u[lu]
    heads.append(mirror[lu[on_net]])
    tails.append(lv[on_net])
    bs.append(np.zeros(int(on_net.sum()), dtype=np.int64))
    cuts = _timing_cut_arrays(n, reg, after, dly, outns, eu, ev, delay, hold, wns, cq, su, period)
    cu, cv = cuts // n, cuts % n
    heads.append(cv)
    tails.append(cu)
    bs.append(lat[cu] + 1)
    links = wire_cuts(prim, period)
    if links:
        idx = {v: i for i, v in enumerate(nodes)}
        heads.append(np.fromiter((idx[v] for _, v, _ in links), np.int64, len(links)))
        tails.append(np.fromiter((idx[u] for u, _, _ in links), np.int64, len(links)))
        bs.append(np.fromiter((b for _, _, b in links), np.int64, len(links)))
    head, tail, b = np.concatenate(heads), np.concatenate(tails), np.concatenate(bs)
    key, inv = np.unique(head * n_var + tail, return_inverse=True)
    bmax = np.full(key.size, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(bmax, inv, b)
    r_head, r_tail = key // n_var, key % n_var
    # cost: an unshared edge pays width * (tau_v - tau_u), a shared net max width * (mirror_u - tau_u)
    cost = np.zeros(n_var, dtype=np.int64)
    single = ~on_net
    np.add.at(cost, lv[single], lw[single])
    np.subtract.at(cost, lu[single], lw[single])
    net_w = np.zeros(n, dtype=np.int64)
    np.maximum.at(net_w, lu[on_net], lw[on_net])
    su_idx = np.flatnonzero(shared_u)
    cost[mirror[su_idx]] += net_w[su_idx]
    cost[su_idx] -= net_w[su_idx]
    t0 = time.perf_counter()
    try:
        sol = solve_difference_lp(n_var, r_tail, r_head, bmax, cost)
    except FlowSolverError:
        sol = None
    if sol is None:
        return None
    elapsed = time.perf_counter() - t0
    # read-back, as _read_back: tau normalised per weakly connected component of the matched edges
    tau = sol.x[:n].astype(np.int64)
    tau = tau - _components_min(n, lu, lv, tau)
    s = np.where(hold, 0, tau[ev] - tau[eu] - lat[eu])
    ex = np.where(hold, 0, s - delay)
    unshared = int((width * s)[~hold].sum())
    ls = s[live]
    depth_arr = np.full(n, -1, dtype=np.int64)
    np.maximum.at(depth_arr, lu[on_net], ls[on_net])
    shared = int((net_w[su_idx] * depth_arr[su_idx]).sum()) + int((lw * ls)[single].sum())
    latency = int(tau.max()) if n else 0
    # mappings in the graph's order (nodes; edges grouped by source in node order, each source's edges in
    # insertion order, which is the wires' order: build added them in that order)
    g = prim.graph
    eorder = np.argsort(eu, kind="stable")
    edges = list(g.edges)
    if len(edges) != eorder.size or not np.array_equal(np.bincount(eu, minlength=n),
                                                       np.fromiter((len(a) for a in g._adj.values()), np.int64, n)):
        return None
    tau_map = dict(zip(nodes, tau.tolist()))
    stages = dict(zip(edges, s[eorder].tolist()))
    extra = dict(zip(edges, ex[eorder].tolist()))
    depth = dict(zip([nodes[i] for i in su_idx.tolist()], depth_arr[su_idx].tolist()))
    return RetimedGraph(prim, float(period), share_fanout, MappingProxyType(tau_map), MappingProxyType(stages),
                        MappingProxyType(extra), MappingProxyType(depth), shared, unshared, naive_register_bits(prim),
                        latency, n_var, int(key.size), int(cuts.size) + len(links), elapsed, True)
