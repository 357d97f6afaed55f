"""SpAtten's QxK and PxV arrays as derived einsum arrays (dataflow/spatten_arrays.py), their timing, and
multiplier_stages (dataflow/primitives.py).

Every expectation is derived here from the spec (lanes, head_dim, bits), the einsum semantics or the
delay table, never read back from the code under test.
"""
from __future__ import annotations

import copy
import math

import networkx as nx
import pytest
import yaml
from archgen.arch.errors import SpecError
from archgen.arch.spatten_spec import (
    builtin_spec_path,
    load_spatten_spec,
    spatten_formats,
)
from archgen.dataflow.delay_lp import timing_cuts
from archgen.dataflow.delays import DelayTable
from archgen.dataflow.ir import NodeKind
from archgen.dataflow.primitives import lower_to_primitives, multiplier_stages
from archgen.dataflow.spatten_arrays import (
    spatten_arrays,
    spatten_latencies,
    stationary_footprint,
)

SPEC_NAMES = ("spatten_small", "spatten")
TOL = 1e-9


@pytest.fixture(scope="module", params=SPEC_NAMES)
def spec(request):
    return load_spatten_spec(builtin_spec_path(request.param))


@pytest.fixture(scope="module")
def small():
    return load_spatten_spec(builtin_spec_path("spatten_small"))


def raw_small() -> dict:
    return copy.deepcopy(yaml.safe_load(builtin_spec_path("spatten_small").read_text()))


def with_unit(unit: str, **fields):
    d = raw_small()
    d["units"][unit].update(fields)
    return d


def all_fus(L, D):
    return {(l, d) for l in range(L) for d in range(D)}


# ---------------------------------------------------------------------------------------------- roles

def test_qk_roles_follow_from_the_spec(spec):
    L, D = spec.lanes, spec.head_dim
    assert L == spec.qk.multipliers // D
    a = spatten_arrays(spec)["qk"]
    assert a.design.shape == (L, D)
    assert set(a.roles) == {"query", "key", "score"}
    q, k, s = a.plan("query"), a.plan("key"), a.plan("score")
    assert len({q.name, k.name, s.name}) == 3

    assert q.role == "stationary"
    assert stationary_footprint(a.design, q.name) == tuple((d,) for d in range(D))

    assert k.role == "stream" and k.n_lanes == L * D
    # one key element per FU: every FU reached by exactly one lane, every lane a single FU
    assert all(len(lane.fus) == 1 for lane in k.lanes)
    assert sorted(lane.fus[0] for lane in k.lanes) == sorted(all_fus(L, D))

    assert s.role == "stream_out" and s.n_lanes == L and s.tree_axes == (1,) and not s.psum_in
    # one adder tree per lane l over the head dimension d
    assert sorted(tuple(sorted(lane.fus)) for lane in s.lanes) == \
        [tuple((l, d) for d in range(D)) for l in range(L)]


def test_pv_roles_follow_from_the_spec(spec):
    L, D = spec.lanes, spec.head_dim
    a = spatten_arrays(spec)["pv"]
    assert a.design.shape == (L, D)
    assert set(a.roles) == {"prob", "value", "partial"}
    p, v, u = a.plan("prob"), a.plan("value"), a.plan("partial")

    assert p.role == "stream" and p.n_lanes == L
    assert not p.signed                      # UQ1.15 probabilities
    # one lane per l, broadcast along d: each lane reaches exactly the FUs with its l
    ls = []
    for lane in p.lanes:
        l_values = {fu[0] for fu in lane.fus}
        assert len(l_values) == 1, lane
        (l,) = l_values
        assert set(lane.fus) == {(l, d) for d in range(D)} and len(lane.fus) == D
        ls.append(l)
    assert sorted(ls) == list(range(L))

    assert v.role == "stream" and v.n_lanes == L * D
    assert sorted(lane.fus[0] for lane in v.lanes) == sorted(all_fus(L, D))

    assert u.role == "stream_out" and u.n_lanes == D and u.tree_axes == (0,) and not u.psum_in
    assert sorted(tuple(sorted(lane.fus)) for lane in u.lanes) == \
        sorted(tuple((l, d) for l in range(L)) for d in range(D))


def test_roles_named_by_meaning_not_by_position():
    """Renamed operands in swapped order: the roles still go to the right operands."""
    d = raw_small()
    d["units"]["qk"]["operation"] = "A[g,l] += Y[g,l,d] * X[d]"
    d["units"]["pv"]["operation"] = "O[g,d] += W[g,l,d] * R[g,l]"
    arrays = spatten_arrays(load_spatten_spec(d))
    assert arrays["qk"].roles == {"query": "X", "key": "Y", "score": "A"}
    assert arrays["pv"].roles == {"prob": "R", "value": "W", "partial": "O"}


# ------------------------------------------------------------------------------------------- latencies

def structural_latency(timing) -> int:
    """Fewest cycles from a step at the unit's streamed ports to its result, with no timing registers.

    Longest path over the delay-matched (non-hold) edges, each weighing the source node's latency plus
    the registers the schedule itself needs on the edge (D_e: skews, systolic hops); the streamed memory
    ports are the unit's inputs (their read latency is before the port, so they start at -latency), and
    the drain's own register is added at the end.
    """
    prim = timing.prim
    lat = lambda x: prim.primitive(x).latency
    at = {}
    for v in nx.topological_sort(prim.graph):
        ins = [at[u] + lat(u) + e.delay for u, e in prim.in_wires(v) if not e.hold and u in at]
        if ins:
            at[v] = max(ins)
        elif v.kind is NodeKind.MEM_PORT and any(not e.hold and w.kind is not NodeKind.STATIONARY_REG
                                                 for w, e in prim.out_wires(v)):
            at[v] = -lat(v)                  # a streamed port: the unit's input
    drains = prim.nodes_of_kind(NodeKind.DRAIN)
    assert drains and all(v in at for v in drains)
    return max(at[v] + lat(v) for v in drains)


def test_latencies_feed_the_core_constants(spec):
    arrays = spatten_arrays(spec)
    lat = spatten_latencies(spec)
    assert lat.qk_pipe == 1 + arrays["qk"].latency
    assert lat.pv_pipe == 2 + arrays["pv"].latency     # exponential read, normalise, then the array


def test_unpipelined_latency_is_the_drain_register_only(spec):
    # With control [0, 0] there is no skew and no systolic hop (every D_e is 0), and without a clock
    # target the LP adds no pipeline registers and no multiplier is split: multipliers and adder trees
    # are combinational (latency 0), the streamed memory port's read latency lies before the unit's
    # input, so the only register between a step at the ports and its result is the drain's (latency 1).
    for unit in ("qk", "pv"):
        a = spatten_arrays(spec, pipeline=False)[unit]
        prim = a.timing.prim
        assert all(e.delay == 0 for _, _, e in prim.edges())
        assert all(prim.primitive(v).latency == 0 for v in prim.graph
                   if v.kind in (NodeKind.MUL, NodeKind.TREE_ADD, NodeKind.PORT))
        assert not a.timing.pipelined
        assert a.latency == structural_latency(a.timing) == 1


def test_pipelined_latency_is_at_least_the_structural_one(spec):
    for unit in ("qk", "pv"):
        a = spatten_arrays(spec)[unit]
        assert a.latency >= structural_latency(a.timing)
        assert a.latency > spatten_arrays(spec, pipeline=False)[unit].latency   # 1 ns needs cuts


def test_chain_reduction_latency_includes_the_skew(small):
    # control [0, 1]: FU (l, d) runs d cycles behind (l, 0) and the score is reduced by a register chain
    # along d, so the last partial sum leaves head_dim - 1 cycles late, then the drain register.
    spec = load_spatten_spec(with_unit("qk", control=[0, 1]))
    a = spatten_arrays(spec, pipeline=False)["qk"]
    assert a.plan("score").tree_axes == ()
    assert a.latency == structural_latency(a.timing) == (spec.head_dim - 1) + 1
    assert spatten_arrays(spec)["qk"].latency > spatten_arrays(small)["qk"].latency


# ---------------------------------------------------------------------------------------------- timing

def timing_violations(timing, period):
    """Independent static timing of the retimed graph: every register-to-register segment <= period.

    A registered node (latency >= 1) ends a segment at its internal register (inputs + delay_ns) and
    starts one at out_ns; a combinational node adds delay_ns. An edge with k >= 1 registers ends the
    segment at its first register and starts a new one at clock-to-Q; the edge's fan-out wire is charged
    on both sides (conservative: wherever the chain sits relative to the net, the path is covered).
    """
    prim = timing.prim
    g, cq, su = prim.graph, prim.clk_to_q_ns, prim.setup_ns
    out, bad = {}, []

    def end(t, where):
        if t + su > period + TOL:
            bad.append((where, t + su))

    for v in nx.topological_sort(g):
        d = prim.primitive(v)
        arrival = 0.0
        for u, e in prim.in_wires(v):
            wire = e.wire_ns
            regs = timing.regs(u, v)
            assert regs >= 0
            if not e.hold:
                assert regs >= e.delay, (u, v)           # the schedule's own registers are kept
            if regs > 0:
                end(out[u] + wire, (u, v))
                arrival = max(arrival, cq + wire)
            else:
                arrival = max(arrival, out[u] + wire)
        if d.latency >= 1:
            end(arrival + d.delay_ns, v)
            out[v] = d.out_ns
        else:
            out[v] = arrival + d.delay_ns
    return bad


def test_pipelined_arrays_meet_the_clock(spec):
    period = 1e3 / spec.clock_mhz
    for unit in ("qk", "pv"):
        a = spatten_arrays(spec)[unit]
        assert a.timing.clock_period_ns == pytest.approx(period)
        assert timing_violations(a.timing, period) == [], unit
        # the check can fail: the same arrays without timing registers are far slower than the clock
        assert timing_violations(spatten_arrays(spec, pipeline=False)[unit].timing, period)


def test_retimed_arrays_satisfy_every_timing_cut(spec):
    # cross-check with delay_lp's own walk: every slow segment u -> v it finds has a register on it
    period = 1e3 / spec.clock_mhz
    for unit in ("qk", "pv"):
        t = spatten_arrays(spec)[unit].timing
        tau = t.retimed.tau
        cuts = timing_cuts(t.prim, period)
        assert cuts
        for u, v in cuts:
            assert tau[v] - tau[u] - t.node_latency(u) >= 1, (unit, u, v)


@pytest.mark.parametrize("unit,control", [("qk", [0, 1]), ("qk", [1, 1]), ("pv", [1, 0]), ("pv", [0, -1])])
def test_skewed_variants_meet_the_clock(unit, control):
    spec = load_spatten_spec(with_unit(unit, control=control))
    a = spatten_arrays(spec)[unit]
    assert timing_violations(a.timing, 1e3 / spec.clock_mhz) == []
    assert a.latency >= structural_latency(a.timing) > 1        # the skew costs cycles even unpipelined


# ------------------------------------------------------------------------------ multiplier stages

def expected_stages(table: DelayTable, width: int, period: float) -> int:
    d = table.multiplier_ns(width)
    if table.clk_to_q_ns + d + table.setup_ns <= period:
        return 1
    return math.ceil(d / (period - table.clk_to_q_ns - table.setup_ns))


def test_full_spec_pv_multipliers_are_staged_and_qk_not():
    spec = load_spatten_spec(builtin_spec_path("spatten"))
    table = DelayTable.load("asic")
    period = 1e3 / spec.clock_mhz
    f = spatten_formats(spec)
    qk_w = spec.bits                              # int x int, both `bits` wide
    pv_w = max(f.prob_bits, spec.bits)            # uint16 probability x int12 value
    over = table.clk_to_q_ns + table.setup_ns
    # the premise, from the table's numbers: a 12-bit product fits the clock, a 16-bit one does not
    assert over + table.multiplier_ns(qk_w) <= period < over + table.multiplier_ns(pv_w)
    want = {"qk": expected_stages(table, qk_w, period), "pv": expected_stages(table, pv_w, period)}
    assert want["qk"] == 1 and want["pv"] >= 2
    for unit, a in spatten_arrays(spec).items():
        muls = a.timing.prim.nodes_of_kind("mul")
        assert len(muls) == spec.lanes * spec.head_dim
        width = qk_w if unit == "qk" else pv_w
        for v in muls:
            nd = a.timing.prim.primitive(v)
            assert nd.latency == want[unit] - 1, (unit, v, nd)
            assert nd.delay_ns * want[unit] == pytest.approx(table.multiplier_ns(width))
    # and nothing is split without a clock target
    for a in spatten_arrays(spec, pipeline=False).values():
        assert all(a.timing.prim.primitive(v).latency == 0 for v in a.timing.prim.nodes_of_kind("mul"))


def prims_at(spec, period=None):
    """Each unit's primitive graph lowered with (or without) a clock period: multiplier stages included."""
    table = DelayTable.load("asic")
    return {u: lower_to_primitives(a.fg, table, clock_period_ns=period)
            for u, a in spatten_arrays(spec, pipeline=False).items()}


def snapshot(prim):
    return dict(prim.primitives)


@pytest.mark.parametrize("period", [0.15, 0.3, 0.5, 0.7, 0.86, 0.9, 1.0, 1.09, 1.2, 2.0])
def test_slow_multipliers_are_staged_to_fit_every_clock(small, period):
    plain = prims_at(small)
    for unit, prim in prims_at(small, period).items():
        cq, su = prim.clk_to_q_ns, prim.setup_ns
        before = snapshot(plain[unit])
        for v, d in prim.primitives.items():
            old = before[v]
            if v.kind is not NodeKind.MUL:
                assert d == old, v                # only multipliers differ
                continue
            stages = d.latency + 1
            assert cq + d.delay_ns + su <= period + TOL, (unit, v, d)
            if cq + old.delay_ns + su <= period:
                assert d == old, (unit, v)        # a multiplier that fits stays combinational
                continue
            assert d.latency >= 1 and d.internal_stages == d.latency
            assert d.out_ns + su <= period + TOL, (unit, v, d)
            assert d.delay_ns * stages == pytest.approx(old.delay_ns)
            # minimal: one stage fewer would not fit
            assert old.delay_ns / (stages - 1) > period - cq - su - TOL


@pytest.mark.parametrize("period", [0.0, 0.05, 0.1, 0.13])
def test_no_multiplier_is_staged_when_the_period_is_too_short_for_anything(small, period):
    plain = prims_at(small)
    for unit, prim in prims_at(small, period).items():
        assert period < prim.clk_to_q_ns + prim.setup_ns     # not even a register-to-register hop fits
        assert snapshot(prim) == snapshot(plain[unit])


# regression: a float-noise budget (0.14 - 0.1 - 0.04 = 6.9e-18 > 0) once gave the multipliers ~1e17 stages
def test_no_multiplier_is_staged_at_a_period_equal_to_register_overhead(small):
    prim = prims_at(small)["qk"]
    period = prim.clk_to_q_ns + prim.setup_ns                # zero budget for logic
    assert snapshot(prims_at(small, period)["qk"]) == snapshot(prim)
    assert multiplier_stages(1.0, prim.clk_to_q_ns, prim.setup_ns, period) == 1
