"""The wire-length term of the pipelining LP (docs/pipelining.md "Delay tables", "Long links").

A link between two FUs more than one FU pitch apart on the physical array (a folded map's logical neighbours,
arch/spec.py ``_fold``) carries ``fu_pitch_wire.ns_per_pitch`` x (pitches - 1) ns more wire delay than a
neighbour link. The schedule's registers on a link sit at its sender, so the LP counts that delay after them
(delay_lp.py ``wire_cuts``); where it misses the clock, the long link's path gets one register more than its
neighbours' paths, and the RTL (Amaranth simulation) and the cycle model follow the LP exactly.
"""
from __future__ import annotations

import functools
import importlib.resources

import pytest
import yaml

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array, compile_fused
from archgen.dataflow.delay_lp import _retime_general, min_cost_flow_dual
from archgen.dataflow.delays import DelayTable
from archgen.dataflow.ir import NodeKind

GEMM_OP, GEMM_TYPES = "C[i,j] += A[i,k] * B[k,j]", {"A": "int8", "B": "int8", "C": "int32"}
CONV_OP, CONV_TYPES = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]", {"I": "int8", "W": "int8", "O": "int32"}
CONV_MAP = {"n": "t_n", "k": "t_k", "c": "t_c", "r": "4*t_r + s0 + 2*s1", "q": "t_q", "p": "t_p", "s": "t_s"}
CONV_DF = {"map": CONV_MAP, "order": ["k", "c", "r", "s", "n", "q", "p"], "inner": ["n", "q", "p"]}
CONV_BOUNDS = {"n": 1, "k": 2, "p": 5, "q": 3, "c": 2, "r": 4, "s": 2}
# each on 2x2 folded as 1x4: logical FU (0, r) at physical (0, 0), (1, 0), (0, 1), (1, 1), so the chain's links
# span 1, 2, 1 FU pitches; B hops systolically (gemm), I passes delay-connection FIFOs (conv, control [0, 0]),
# partial sums pass a reduce chain (conv, control [0, 1])
CASES = {
    "systolic": (GEMM_OP, GEMM_TYPES, {"map": {"i": "4*t_i + s0 + 2*s1", "j": "t_j", "k": "t_k"},
                                       "order": ["j", "i", "k"], "control": [0, 1]}, None, {"i": 7, "j": 3, "k": 4}),
    "fifo": (CONV_OP, CONV_TYPES, dict(CONV_DF, control=[0, 0]), CONV_BOUNDS, {"n": 1, "k": 2, "p": 4, "q": 3, "c": 2,
                                                                                "r": 3, "s": 2}),
    "reduce_chain": (CONV_OP, CONV_TYPES, dict(CONV_DF, control=[0, 1]), CONV_BOUNDS, {"n": 1, "k": 2, "p": 4, "q": 2,
                                                                                        "c": 2, "r": 4, "s": 2}),
    # 3x3 folded as 1x9: logical (0, r) at physical (r mod 3, r div 3), links of 1, 1, 3, 1, 1, 3, 1, 1 pitches
    "systolic_3x3": (GEMM_OP, GEMM_TYPES, {"map": {"i": "9*t_i + s0 + 3*s1", "j": "t_j", "k": "t_k"},
                                           "order": ["j", "i", "k"], "control": [0, 1]},
                     None, {"i": 11, "j": 2, "k": 3}),
}


def _design(case: str, clock_mhz: float):
    op, types, df, bounds, _ = CASES[case]
    shape = (3, 3) if case.endswith("3x3") else (2, 2)
    spec = {"version": 1, "name": f"wire_{case}", "operation": op, "types": types, "array": {"shape": list(shape)},
            "clock_mhz": clock_mhz, "dataflows": {"m": df}}
    return load_spec_data(spec | ({"bounds": bounds} if bounds else {}))


def _table(tmp_path, ns_per_pitch: float) -> str:
    """The ASIC table with its per-pitch wire delay replaced: a path for ``target``."""
    doc = yaml.safe_load((importlib.resources.files("archgen.dataflow") / "data" / "delays_asic.yaml").read_text())
    doc["fu_pitch_wire"]["ns_per_pitch"] = ns_per_pitch
    path = tmp_path / f"asic_{ns_per_pitch}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _physical(design):
    place = dict(design.placement)
    return lambda node: place.get(node.coord, node.coord)


def _links(prim):
    """Primitive edges of FU-to-FU links: (u, v, wire), u and v in different FUs (a delay connection's FIFO sits
    at its receiver: its wire is the one into the FIFO)."""
    return [(u, v, w) for u, v, w in prim.edges()
            if w.fu_edge is not None and all(x.kind is NodeKind.FU for x in w.fu_edge) and u.coord != v.coord]


def _to_arithmetic(prim, tau, u, v) -> int:
    """Registers from u's output to the first multiplier or adder in v's FU the link u -> v feeds: tau of that
    node minus tau of u minus u's latency (the LP's registers and node times, whichever edge holds them)."""
    x = v
    while x.kind not in (NodeKind.MUL, NodeKind.ADD, NodeKind.ACC):
        x = next(y for y in prim.graph.successors(x) if y.coord == v.coord)
    return tau[x] - tau[u] - prim.primitive(u).latency


def _segments_fit(rt) -> int:
    """Check every register-to-register segment of the LP's result against its period, independently of the
    LP's constraints, with the RTL's segments (rtlgen/datapath.py ``RetimedNets.src``): an edge's registers are
    its driver's chain and the sink reads a tap of it across the edge's wire (fan-out penalty), so that wire
    follows the last register; the exception is a long link's span, which lies before a register the LP adds
    beyond the schedule's (a flip-flop at the route's receiving end). A delay connection's FIFO is a register
    (rtlgen/array.py ``_fifo``): a segment ends at its input and starts at its ``out_ns``. Returns the number of
    segments checked."""
    prim, period, eps = rt.prim, rt.clock_period_ns, 1e-6
    cq, su = prim.clk_to_q_ns, prim.setup_ns

    def registered(v):
        return prim.primitive(v).latency >= 1 or v.kind is NodeKind.FIFO
    starts = [(v, p.out_ns) for v, p in prim.primitives.items() if registered(v)]
    for u, v, w in prim.edges():
        s = rt.stages[(u, v)]
        if w.hold or s == 0:
            continue
        after = w.wire_ns
        if s > w.delay and w.span_ns > 0:   # the LP's register at the route's receiving end, after the span
            if w.delay >= 1:
                assert cq + w.span_ns + su <= period + eps, (u, v)
            after -= w.span_ns
        t = cq + after + prim.primitive(v).delay_ns
        assert t + su <= period + eps, (u, v)
        if not registered(v):
            starts.append((v, t))
    for node, t0 in starts:
        arrival, frontier = {node: t0}, [node]
        while frontier:
            a = frontier.pop()
            for b in prim.graph.successors(a):
                w = prim.wire(a, b)
                if w.hold:
                    continue
                if rt.stages[(a, b)] >= 1:      # into the chain's first register (a route's span before it)
                    before = w.span_ns if w.delay == 0 else 0.0
                    assert arrival[a] + before + su <= period + eps, (node, a, b)
                    continue
                t = arrival[a] + w.wire_ns + prim.primitive(b).delay_ns
                assert t + su <= period + eps, (node, b, t)
                if not registered(b) and t > arrival.get(b, -1.0):
                    arrival[b] = t
                    frontier.append(b)
    return len(starts)


# ---- the delay tables ---------------------------------------------------------------------------------------

def test_tables_give_a_per_pitch_wire_delay_and_tables_without_it_still_load(tmp_path):
    asic, ecp5 = DelayTable.load("asic"), DelayTable.load("ecp5")
    assert asic.fu_pitch_ns == pytest.approx(0.003) and ecp5.fu_pitch_ns == 0.0
    assert dict(asic.sources)["fu_pitch_wire"] and dict(ecp5.sources)["fu_pitch_wire"]
    assert asic.span_ns(1) == 0.0 and asic.span_ns(2) == pytest.approx(0.003)
    assert asic.span_ns(5) == pytest.approx(0.012)
    doc = yaml.safe_load((importlib.resources.files("archgen.dataflow") / "data" / "delays_asic.yaml").read_text())
    del doc["fu_pitch_wire"]
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(doc))
    old = DelayTable.load(path)
    assert old.fu_pitch_ns == 0.0 and old.span_ns(7) == 0.0 and "fu_pitch_wire" not in dict(old.sources)


@pytest.mark.parametrize("entry,field", [({"source": "x", "ns_per_pitch": -0.1}, "fu_pitch_wire.ns_per_pitch"),
                                         ({"source": "x", "ns_per_pitch": "3 ps"}, "fu_pitch_wire.ns_per_pitch"),
                                         ({"source": "x", "ns_per_pitch": True}, "fu_pitch_wire.ns_per_pitch"),
                                         ({"source": "x"}, "fu_pitch_wire.ns_per_pitch"),
                                         ({"ns_per_pitch": 0.01}, "fu_pitch_wire.source"),
                                         (0.003, "fu_pitch_wire")])
def test_a_malformed_pitch_entry_is_a_spec_error_naming_the_field(tmp_path, entry, field):
    doc = yaml.safe_load((importlib.resources.files("archgen.dataflow") / "data" / "delays_asic.yaml").read_text())
    doc["fu_pitch_wire"] = entry
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError) as err:
        DelayTable.load(path)
    assert field in {p.path for p in err.value.problems}, err.value


# ---- lowering: spans are physical distances -------------------------------------------------------------------

@pytest.mark.parametrize("which", sorted(CASES))
def test_every_link_carries_its_physical_length(tmp_path, which):
    """Each FU-to-FU link's span is ns_per_pitch x (Manhattan distance of the physical FUs - 1), on top of the
    fan-out of its net; neighbours carry none (a plain Wire)."""
    design = _design(which, 500)
    table = DelayTable.load(_table(tmp_path, 0.25))
    prim = compile_array(design, "m", target=_table(tmp_path, 0.25)).timing.prim
    phys = _physical(design)
    lengths = []
    for u, v, w in _links(prim):
        a, b = (phys(x) for x in w.fu_edge)
        pitches = sum(abs(p - q) for p, q in zip(a, b))
        lengths.append(pitches)
        assert (w.span_ns > 0) == (pitches > 1), (u, v, pitches)
        span = w.span_ns
        assert span == pytest.approx(0.25 * (pitches - 1))
        assert w.wire_ns == pytest.approx(table.fanout_ns(prim.graph.out_degree(u)) + span)
    assert 1 in lengths and max(lengths) >= 2, lengths


def test_a_design_without_long_links_lowers_as_before():
    """On the spec's own array every link joins neighbours: no span, whatever the table."""
    spec = {"version": 1, "name": "plain", "operation": GEMM_OP, "types": GEMM_TYPES, "array": {"shape": [3, 3]},
            "dataflows": {"os": {"spatial": {"i": 0, "j": 1}, "order": ["i", "j", "k"], "control": [1, 1]}}}
    prim = compile_array(load_spec_data(spec), "os").timing.prim
    assert _links(prim) and not any(w.span_ns for _, _, w in prim.edges())


def test_a_fused_folded_map_keeps_physical_spans():
    """Beside a dataflow on the spec's 2x2 array the folded map is lowered on its logical 1x4 array and renamed
    to physical FUs for the fused LP: its links' spans are the physical distances of the renamed graph."""
    design = load_spec_data({
        "version": 1, "kind": "array", "name": "ff", "operation": GEMM_OP, "types": GEMM_TYPES,
        "array": {"shape": [2, 2]}, "fuse": ["os", "m"],
        "dataflows": {"os": {"spatial": {"i": 0, "j": 1}, "order": ["i", "j", "k"], "control": [1, 1]},
                      "m": CASES["systolic"][2]}})
    fused = compile_fused(design, design.fuse)
    m = fused.plan.names.index("m")
    prim = fused.plan.prims[m]
    longs = [(u, v, w) for u, v, w in _links(prim) if w.span_ns > 0]
    assert len(longs) == 1
    for u, v, w in _links(prim):
        pitches = sum(abs(p - q) for p, q in zip(*(x.coord for x in w.fu_edge)))   # renamed: physical FUs
        assert (w.span_ns) == pytest.approx(0.003 * (pitches - 1))
    _segments_fit(fused.plan.retiming.per_dataflow[m])


# ---- the LP: one more register on the long link, and the RTL and the model follow it ---------------------------

# (case, clock MHz, table ns per pitch or None for the built-in asic table). The built-in 3 ps per pitch binds the
# systolic chain in a narrow clock window (1.012 to 1.015 ns: the neighbours' segment after a hop's register is
# clock-to-Q 0.10 + hop fan-out 0.016 + port fan-out 0.016 + multiplier 0.60 + accumulator 0.24 + setup 0.04); the
# reduce chain needs a larger figure (its segment after the link's register is one adder). A long link into a delay
# connection's FIFO ends its segment at the FIFO's register (delay_lp.py ``_registered_output``): the FIFO chain of
# CASES does not bind with the built-in figure (swept 0.40 to 1.10 ns) nor 0.4 ns per pitch (0.40 to 1.60 ns)
BINDING = [("systolic", 986.7, None), ("reduce_chain", 1400.0, 0.4),
           ("systolic", 900.0, 0.4), ("systolic_3x3", 666.0, 0.4)]


@pytest.mark.parametrize("case,mhz,per_pitch", BINDING)
def test_the_long_link_gets_one_more_register_and_stays_exact(tmp_path, monkeypatch, case, mhz, per_pitch):
    from archgen.verif import array_amaranth
    design = _design(case, mhz)
    target = "asic" if per_pitch is None else _table(tmp_path, per_pitch)
    with_term = compile_array(design, "m", target=target)
    without = compile_array(design, "m", target=_table(tmp_path, 0.0))
    phys = _physical(design)
    for compiled in (with_term, without):
        _segments_fit(compiled.timing.retimed)
    # the array path (_retime_fast) against the PuLP path and the min-cost-flow dual, wire cuts included
    prim, period = with_term.timing.prim, with_term.clock_period_ns
    assert _retime_general(prim, period, True).register_bits == with_term.timing.retimed.register_bits
    primal, dual = min_cost_flow_dual(prim, period)
    assert primal == dual
    extra = {}
    for (u, v, w), (u0, v0, w0) in zip(_links(with_term.timing.prim), _links(without.timing.prim)):
        assert (u, v) == (u0, v0)
        pitches = sum(abs(p - q) for p, q in zip(*(phys(x) for x in w.fu_edge)))
        extra[(u, v, pitches)] = (_to_arithmetic(with_term.timing.prim, with_term.timing.retimed.tau, u, v)
                                  - _to_arithmetic(without.timing.prim, without.timing.retimed.tau, u0, v0))
    assert any(p > 1 for _, _, p in extra) and all(d == (p > 1) for (_, _, p), d in extra.items()), extra
    # the RTL is generated from, and the cycle model reads, the compiled array with the extra register
    monkeypatch.setattr(array_amaranth, "compile_array", functools.partial(compile_array, target=target))
    res = array_amaranth.verify_array_amaranth(design, CASES[case][4], seed=3, dataflow="m")
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles


def test_neighbour_links_alone_add_nothing_at_any_clock(tmp_path):
    """A clock at which the long link's 3 ps do not bind (1.015 ns, 2 ns): the same registers as without the term."""
    for mhz in (1e3 / 1.0155, 500.0):
        design = _design("systolic", mhz)
        a, b = (compile_array(design, "m", target=t).timing.retimed for t in ("asic", _table(tmp_path, 0.0)))
        assert dict(a.stages) == dict(b.stages) and dict(a.tau) == dict(b.tau)


def test_explain_prints_the_long_links_wire_delay(capsys):
    from archgen.dataflow.explain import explain
    line = next(x for x in explain(_design("systolic", 500), "m") if "FU pitches apart" in x)
    assert "logical neighbours lie 2 x 1 FU pitch, 1 x 2 FU pitches apart on the physical array" in line
    assert "asic table 2 pitches +0.003 ns (3 ps per pitch beyond the first)" in line
    assert "ecp5 table none" in line
