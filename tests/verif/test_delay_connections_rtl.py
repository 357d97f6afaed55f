"""Verilator: conv_rs, inputs chained through delay connections (FIFOs) with halo steps (issue 14 item 2).

Each case: outputs exact, no partial sum read before it was written, RTL cycles == model cycles, and the
array really uses FIFOs (fewer memory-fed lanes than FUs). Array level (``--ideal-dram``): the memory
system refuses delay connections (tests/dataflow/test_delay_connections.py).
"""
import pytest

from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.verif.array_check import verify_array

pytestmark = pytest.mark.verilator

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


def test_conv_rs_with_stalling_streams():
    """Idle input beats and output back-pressure leave bubbles between steps: the FIFOs shift per valid
    step, not per cycle, so the outputs stay exact (the cycles then depend on the random stalls)."""
    design = load_spec("conv_rs", ["array.shape=2x2"])
    res = verify_array(design, {"n": 1, "k": 3, "p": 4, "q": 2, "c": 2, "r": 2, "s": 2}, seed=1,
                       idle_prob=0.3, stall_prob=0.3)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles >= res.model_cycles
