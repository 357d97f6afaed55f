"""Verilator: conv_rs, inputs chained through delay connections (FIFOs) with halo steps (issue 14 item 2).

Each case: outputs exact, no partial sum read before it was written, RTL cycles == model cycles, and the
array really uses FIFOs (fewer memory-fed lanes than FUs); ``outer-*`` cases chain along an outer inner loop
(FIFO buffers whose depth, in steps, comes from the command). Array level (``--ideal-dram``); through the
memory system: tests/verif/test_layer_delay.py.
"""
import pytest

from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.verif.array_check import verify_array

pytestmark = pytest.mark.verilator

OUTER = ("dataflows.rs.order=[k,c,r,s,n,p,q]", "dataflows.rs.inner=[n,p,q]")     # FIFO depth: trips of q
OUTER2 = ("dataflows.rs.order=[k,c,r,s,p,n,q]", "dataflows.rs.inner=[p,n,q]")    # trips of n x q

CASES = [
    pytest.param(("array.shape=3x2",), {"n": 2, "k": 3, "p": 4, "q": 2, "c": 2, "r": 5, "s": 2}, 7, id="3x2"),
    pytest.param(("array.shape=1x4", "dataflows.rs.spatial={k: 0, r: 1}", "dataflows.rs.control=[1, 0]"),
                 {"n": 1, "k": 2, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}, 5, id="1x4"),
    pytest.param(("array.shape=2x3", "clock_mhz=1200"), {"n": 1, "k": 4, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}, 11,
                 id="pipelined-2x3"),
    pytest.param(("array.shape=3x2", "dataflows.rs.spatial={k: 0, r: 1}", "dataflows.rs.control=[1, 0]"),
                 {"n": 1, "k": 5, "p": 5, "q": 1, "c": 2, "r": 3, "s": 2}, 4, id="fifo-axis1-3x2",
                 marks=pytest.mark.slow),
    pytest.param((), {"n": 1, "k": 6, "p": 5, "q": 3, "c": 3, "r": 3, "s": 3}, 3, id="4x4", marks=pytest.mark.slow),
    # FIFOs on an outer inner loop (buffers of run-time depth: trips of q, or of n x q, from the command)
    pytest.param(OUTER, {"n": 1, "k": 6, "p": 5, "q": 3, "c": 3, "r": 3, "s": 3}, 3, id="outer-p-4x4",
                 marks=pytest.mark.slow),
    pytest.param(("array.shape=3x2",) + OUTER2, {"n": 2, "k": 3, "p": 4, "q": 3, "c": 2, "r": 5, "s": 2}, 7,
                 id="outer-p-nq-3x2", marks=pytest.mark.slow),
    pytest.param(("array.shape=1x4", "dataflows.rs.spatial={k: 0, r: 1}", "dataflows.rs.control=[1, 0]") + OUTER,
                 {"n": 1, "k": 2, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}, 5, id="outer-p-1x4-axis1",
                 marks=pytest.mark.slow),
    pytest.param(("array.shape=2x3", "clock_mhz=1200") + OUTER, {"n": 1, "k": 4, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2},
                 11, id="outer-p-pipelined-2x3", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("overrides,bounds,seed", CASES)
def test_conv_rs_on_verilator(overrides, bounds, seed):
    design = load_spec("conv_rs", list(overrides))
    fg = compile_array(design).fu_graph
    assert fg.fifos() and fg.plan("I").n_lanes < design.n_fus
    res = verify_array(design, bounds, seed=seed)
    assert res.outputs_exact, res.detail
    assert res.detail["psum_reads_before_write"] == 0
    assert res.rtl_cycles == res.model_cycles


@pytest.mark.parametrize("overrides", [pytest.param((), id="innermost"), pytest.param(OUTER2, id="outer-p-nq")])
def test_conv_rs_with_stalling_streams(overrides):
    """Idle input beats and output back-pressure leave bubbles between steps: the FIFOs shift per valid
    step, not per cycle (a run-time-depth buffer advances its write pointer per valid step), so the outputs
    stay exact (the cycles then depend on the random stalls)."""
    design = load_spec("conv_rs", ["array.shape=2x2", *overrides])
    assert bool(compile_array(design).fu_graph.fifo_depth_loops) == bool(overrides)
    res = verify_array(design, {"n": 1, "k": 3, "p": 4, "q": 2, "c": 2, "r": 2, "s": 2}, seed=1,
                       idle_prob=0.3, stall_prob=0.3)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles >= res.model_cycles


def test_outer_loop_fifo_buffers_are_deterministic_and_lint_clean(tmp_path):
    from archgen.rtlgen.build import build_array
    from archgen.verif.runner import lint_verilog
    design = load_spec("conv_rs", list(OUTER2))
    text, _ = build_array(design)
    assert text == build_array(design)[0]
    assert "fifo_steps" in text and "I_fifo_" in text
    path = tmp_path / "conv_rs_outer.v"
    path.write_text(text)
    assert lint_verilog(path, "conv_rs") == []
