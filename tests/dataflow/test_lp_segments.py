"""The pipelining LP's timing segments are the RTL's (docs/pipelining.md, "The linear program"):

* an edge's registers are its driver's chain (rtlgen/datapath.py ``RetimedNets.src``) and the sink reads a tap of it
  across the edge's wire, so the fan-out penalty (and a fused design's select mux) lies after the last register and
  is counted in the receiver's segment;
* a delay connection's FIFO (rtlgen/array.py ``_fifo``) is a register or a synchronously written buffer: a segment
  ends at its input and starts at its ``out_ns`` (clock-to-Q plus a run-time-depth buffer's read multiplexer).

Each case fails on the model before this change (helpers monkeypatched back to it), and every retimed graph is
checked segment by segment by an independent walk written here.
"""
from __future__ import annotations

import pytest

from archgen.arch.spec import load_spec_data
from archgen.dataflow import delay_lp
from archgen.dataflow.compile import clear_compile_cache, compile_array
from archgen.dataflow.delay_lp import (_retime_fast, _retime_general, insert_pipeline_registers, min_cost_flow_dual,
                                       timing_cuts)
from archgen.dataflow.ir import EdgeKind, Node, NodeKind, Primitive, Wire
from archgen.dataflow.primitives import PrimitiveGraph

CQ, SU = 0.10, 0.04


def _rtl_segments(rt) -> float:
    """The slowest register-to-register segment of a retimed graph with the RTL's semantics (module doc; no long
    links here), independent of the LP's rows: arrival at each node's input, in topological order."""
    prim = rt.prim
    g = prim.graph
    import networkx as nx

    def registered(v):
        return prim.primitive(v).latency >= 1 or v.kind is NodeKind.FIFO
    arrival, out, worst = {}, {}, 0.0
    for v in nx.topological_sort(g):
        p = prim.primitive(v)
        ins = [(CQ if rt.stages[(u, v)] >= 1 else out[u]) + w.wire_ns
               for u, w in prim.in_wires(v) if not w.hold]
        arrival[v] = max(ins, default=prim.clk_to_q_ns)
        end = arrival[v] + p.delay_ns
        worst = max(worst, end + prim.setup_ns)                  # into v's register, or on to its sinks
        out[v] = p.out_ns if registered(v) else end
    return worst


def _graph(nodes, edges) -> PrimitiveGraph:
    """nodes: name -> (kind, Primitive); edges: (u, v) -> (D_e, wire_ns)."""
    key = {n: Node(kind, (i,), "X") for i, (n, (kind, _)) in enumerate(nodes.items())}
    return PrimitiveGraph.build([(key[n], p) for n, (_, p) in nodes.items()],
                                [(key[u], key[v], Wire("X", EdgeKind.INTERNAL, 8, d, False, w))
                                 for (u, v), (d, w) in edges.items()],
                                target="test", clk_to_q_ns=CQ, setup_ns=SU), key


def _old_model(monkeypatch):
    """The model before: no wire after an edge's registers, a FIFO walked through as combinational logic."""
    monkeypatch.setattr(delay_lp, "_wire_after_registers", lambda prim: {})
    monkeypatch.setattr(delay_lp, "_registered_output", lambda prim, v: prim.primitive(v).latency >= 1)


def _all_paths_agree(prim, period):
    """The array path, the general (PuLP/flow) path and the min-cost-flow dual give the same optimum."""
    fast, general = _retime_fast(prim, period, True), _retime_general(prim, period, True)
    assert fast is not None and fast.register_bits == general.register_bits and fast.integral_lp
    primal, dual = min_cost_flow_dual(prim, period)
    assert primal == dual
    return general


# ---- gap 2: the wire after a registered edge --------------------------------------------------------------------

def test_the_wire_after_a_systolic_hop_register_is_in_the_receivers_segment(monkeypatch):
    """port a -(D_e = 1, 0.05 ns of fan-out)-> port b -> multiplier (0.60) -> register: after the hop's register
    the segment is 0.10 + 0.05 + 0.60 + 0.04 = 0.79 ns; the old walk started port b at clock-to-Q, 0.74 ns."""
    nodes = {"mem": (NodeKind.MEM_PORT, Primitive(1, 8, 0.0, CQ)), "a": (NodeKind.PORT, Primitive(0, 8)),
             "b": (NodeKind.PORT, Primitive(0, 8)), "mul": (NodeKind.MUL, Primitive(0, 16, 0.60)),
             "out": (NodeKind.DRAIN, Primitive(1, 16, 0.0, CQ))}
    prim, k = _graph(nodes, {("mem", "a"): (0, 0.0), ("a", "b"): (1, 0.05), ("b", "mul"): (0, 0.0),
                             ("mul", "out"): (0, 0.0)})
    period = 0.76
    assert (k["b"], k["mul"]) in timing_cuts(prim, period)
    rt = _all_paths_agree(prim, period)
    assert rt.tau[k["mul"]] - rt.tau[k["b"]] == 1                     # a register between the port and the product
    assert _rtl_segments(rt) <= period + 1e-9
    with monkeypatch.context() as m:
        _old_model(m)
        old = _retime_general(prim, period, True)
        assert old.tau[k["mul"]] == old.tau[k["b"]] and _rtl_segments(old) == pytest.approx(0.79)


def test_a_registered_edges_wire_with_its_receiver_alone_too_slow_is_refused():
    """No register placement splits the wire after the last register from the register it reaches."""
    nodes = {"mem": (NodeKind.MEM_PORT, Primitive(1, 8, 0.0, CQ)), "acc": (NodeKind.ACC, Primitive(1, 16, 0.5, CQ))}
    prim, _ = _graph(nodes, {("mem", "acc"): (1, 0.2)})
    with pytest.raises(delay_lp.ClockTargetError, match="net of 1 sinks into acc"):
        insert_pipeline_registers(prim, 0.8)
    insert_pipeline_registers(prim, 0.84)                            # 0.10 + 0.2 + 0.5 + 0.04


# ---- gap 1: a FIFO is a register ---------------------------------------------------------------------------------

def _fifo_chain(fifo_out_ns: float, before_ns: float):
    nodes = {"mem": (NodeKind.MEM_PORT, Primitive(1, 8, 0.0, CQ)), "a": (NodeKind.PORT, Primitive(0, 8)),
             "pre": (NodeKind.ADD, Primitive(0, 8, before_ns)),
             "fifo": (NodeKind.FIFO, Primitive(0, 8, 0.0, fifo_out_ns)), "b": (NodeKind.PORT, Primitive(0, 8)),
             "mul": (NodeKind.MUL, Primitive(0, 16, 0.60)), "out": (NodeKind.DRAIN, Primitive(1, 16, 0.0, CQ))}
    return _graph(nodes, {("mem", "a"): (0, 0.0), ("a", "pre"): (0, 0.0), ("pre", "fifo"): (0, 0.0),
                          ("fifo", "b"): (0, 0.0), ("b", "mul"): (0, 0.0), ("mul", "out"): (0, 0.0)})


def test_a_fifos_read_multiplexer_starts_its_segment(monkeypatch):
    """A run-time-depth FIFO's output passes its read multiplexer: 0.20 + 0.60 + 0.04 = 0.84 ns to the drain,
    which the old walk started at clock-to-Q (0.74 ns) and left unpipelined at 0.80 ns."""
    prim, k = _fifo_chain(0.20, 0.0)
    period = 0.80
    rt = _all_paths_agree(prim, period)
    assert rt.tau[k["mul"]] - rt.tau[k["fifo"]] == 1
    assert _rtl_segments(rt) <= period + 1e-9
    with monkeypatch.context() as m:
        _old_model(m)
        old = _retime_general(prim, period, True)
        assert old.register_bits == 0 and _rtl_segments(old) == pytest.approx(0.84)


def test_a_path_into_a_fifo_ends_at_it(monkeypatch):
    """A FIFO's input is registered: 0.10 + 0.50 + 0.04 into it and 0.10 + 0.60 + 0.04 out of it both fit 0.80 ns,
    and nothing is added; the old walk ran on through the FIFO (1.24 ns) and added a register."""
    prim, k = _fifo_chain(CQ, 0.50)
    period = 0.80
    assert timing_cuts(prim, period) == []
    rt = _all_paths_agree(prim, period)
    assert rt.register_bits == 0 and _rtl_segments(rt) <= period + 1e-9
    with monkeypatch.context() as m:
        _old_model(m)
        assert _retime_general(prim, period, True).register_bits > 0


# ---- built-in designs at a clock where the fix adds registers: exact in RTL and model -----------------------------

GEMM_OS = {"version": 1, "name": "seg_gemm", "operation": "C[i,j] += A[i,k] * B[k,j]",
           "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": [3, 3]}, "clock_mhz": 1000,
           "dataflows": {"os": {"spatial": {"i": 0, "j": 1}, "order": ["i", "j", "k"], "control": [1, 1]}}}


def test_a_systolic_array_at_1_ghz_gets_the_register_its_hops_need_and_stays_exact(monkeypatch):
    """Output-stationary systolic gemm on 3x3 at 1.000 ns: into an FU that forwards both operands, after a hop's
    register, fan-out 0.016 + port fan-out 0.016 + multiplier 0.60 + accumulator 0.24 make 1.012 ns; the old model
    (0.996 ns) left it unpipelined."""
    from archgen.verif.array_amaranth import verify_array_amaranth
    design = load_spec_data(GEMM_OS)
    rt = compile_array(design, "os").timing.retimed
    assert _rtl_segments(rt) <= rt.clock_period_ns + 1e-9
    with monkeypatch.context() as m:
        _old_model(m)
        old = _retime_general(rt.prim, rt.clock_period_ns, True)
        assert _rtl_segments(old) == pytest.approx(1.012)
    assert dict(rt.stages) != dict(old.stages)          # the same bits and latency here, other places
    res = verify_array_amaranth(design, {"i": 5, "j": 3, "k": 4}, seed=3, dataflow="os")
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles


def test_a_fifo_design_is_exact_with_fifo_segments(monkeypatch):
    """conv_rs (delay-connection FIFOs of run-time depth, adder trees) at 1 GHz: every RTL segment fits, and the
    Amaranth simulation matches numpy and the cycle model."""
    from archgen.arch.spec import load_spec
    from archgen.verif.array_amaranth import verify_array_amaranth
    clear_compile_cache()
    design = load_spec("conv_rs", ["clock_mhz=1000"])
    rt = compile_array(design).timing.retimed
    assert any(v.kind is NodeKind.FIFO for v in rt.prim.graph)
    assert _rtl_segments(rt) <= rt.clock_period_ns + 1e-9
    with monkeypatch.context() as m:
        _old_model(m)
        assert _rtl_segments(_retime_general(rt.prim, rt.clock_period_ns, True)) > rt.clock_period_ns + 0.02
    res = verify_array_amaranth(design, {"n": 1, "k": 2, "p": 4, "q": 3, "c": 2, "r": 3, "s": 3}, seed=2)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
