"""Verilator: a dataflow with delay connections (conv_rs: FIFOs and halo steps) inside a fused design.

rs is fused with a weight-stationary dataflow ws on one array; the command's select picks one per problem.
The rs FIFOs (register chains, or buffers of run-time depth when they step an outer inner loop) shift only
while rs runs, its halo steps are counted and masked per command. Each run: outputs exact, RTL cycles ==
model cycles (``simulate_array`` on the fused view). Array level in one simulation with the select changing
(``verify_fused_sequence``), and through the memory system (``verify_layer(fuse=...)``).
"""
import pytest

from archgen.arch.spec import load_spec
from archgen.verif.fused_check import verify_fused, verify_fused_sequence

pytestmark = pytest.mark.verilator

WS = "dataflows.ws={spatial: {c: 0, k: 1}, order: [k, c, r, s, n, p, q], inner: [n, p, q], control: [1, 1]}"
OUTER = ("dataflows.rs.order=[k,c,r,s,n,p,q]", "dataflows.rs.inner=[n,p,q]")     # FIFO depth: trips of q
OUTER2 = ("dataflows.rs.order=[k,c,r,s,p,n,q]", "dataflows.rs.inner=[p,n,q]")    # trips of n x q
AXIS1 = ("dataflows.rs.spatial={k: 0, r: 1}", "dataflows.rs.control=[1, 0]")
B1 = {"n": 2, "k": 3, "p": 4, "q": 2, "c": 2, "r": 5, "s": 2}
B2 = {"n": 1, "k": 4, "p": 3, "q": 3, "c": 3, "r": 3, "s": 2}
B3 = {"n": 1, "k": 2, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}

SEQUENCES = [
    # FIFO buffers on an outer inner loop: their depth (n x q steps) changes from rs command to rs command
    pytest.param(("array.shape=3x2",) + OUTER2, [("rs", B1, 7), ("ws", B2, 3), ("rs", B2, 5), ("ws", B1, 1)],
                 id="outer-3x2"),
    pytest.param(("array.shape=3x2",), [("rs", B1, 7), ("ws", B2, 3), ("rs", B2, 5), ("ws", B1, 1)],
                 id="innermost-3x2", marks=pytest.mark.slow),
    pytest.param(("array.shape=1x4",) + AXIS1 + OUTER, [("ws", B3, 2), ("rs", B3, 5), ("rs", B2, 6)],
                 id="outer-1x4-axis1", marks=pytest.mark.slow),
    pytest.param(("array.shape=2x3", "clock_mhz=1200"), [("rs", B3, 11), ("ws", B3, 12), ("rs", B2, 13)],
                 id="pipelined-2x3", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("overrides,runs", SEQUENCES)
def test_delay_dataflow_in_a_fused_design_back_to_back(overrides, runs):
    design = load_spec("conv_rs", list(overrides) + [WS])
    results = verify_fused_sequence(design, ["rs", "ws"], runs)
    assert len(results) == len(runs)
    for r, (dataflow, _bounds, _seed) in zip(results, runs):
        assert r.dataflow == dataflow
        assert r.outputs_exact, (dataflow, r.detail)
        assert r.rtl_cycles == r.model_cycles, (dataflow, r.rtl_cycles, r.model_cycles)


@pytest.mark.slow
def test_delay_dataflow_in_a_fused_design_with_backpressure():
    """Random idle input beats and output stalls: the FIFO buffers advance per valid step of rs only."""
    design = load_spec("conv_rs", ["array.shape=2x2", WS, *OUTER2])
    for seed in (3, 4):
        res = verify_fused(design, ["rs", "ws"], B3, "rs", seed=seed, idle_prob=0.2, stall_prob=0.2)
        assert res.outputs_exact, res.detail


@pytest.mark.slow
@pytest.mark.parametrize("overrides,bounds,tile,order", [
    pytest.param(("array.shape=3x2",), {"n": 2, "k": 3, "p": 4, "q": 3, "c": 2, "r": 5, "s": 2}, None, None,
                 id="innermost-3x2"),
    # q in chunks of 2, 2, 1: the FIFO buffers' depth changes from block to block with the array command
    pytest.param(("array.shape=3x2", "memory.dram.width_bytes=8", "memory.dram.latency=12") + OUTER,
                 {"n": 1, "k": 3, "p": 4, "q": 5, "c": 2, "r": 4, "s": 2}, {"k": 1, "c": 1, "r": 1, "s": 1, "q": 2},
                 ("k", "q", "c", "r", "s"), id="outer-q-chunks-3x2"),
])
def test_delay_dataflow_in_a_fused_design_through_the_memory_system(overrides, bounds, tile, order):
    from archgen.verif.layer_check import verify_layer
    design = load_spec("conv_rs", list(overrides) + [WS])
    r = verify_layer(design, bounds, seed=7, dataflow="rs", fuse=["rs", "ws"], tile=tile, order=order)
    assert r.outputs_exact, r.detail
    assert r.rtl_cycles == r.model_cycles, (r.rtl_cycles, r.model_cycles, r.command)
    assert r.detail["rtl_dram_bytes"] == r.dram_bytes
