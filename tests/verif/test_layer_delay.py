"""Delay connections (conv_rs: FIFO chains with halo steps, issue 14) through the generated memory system on
Verilator: the output read back from the top's DRAM equals numpy, the RTL's cycles equal sim/layer_model's
exactly, and the bytes the DMA moved equal the closed form (and, for the default case, a count by hand).

Default: a 3x2 layer over 48 blocks (split output rows p in chunks, input channels c split over blocks with
the add onto partial sums, a ragged filter-row tile whose padded chain root streams past the block's box),
and `archgen verify` on a 1x4 array whose FIFO chain runs along axis 1. Opt-in (--runslow): FIFOs on the
outer inner loop p whose run-time depth (a row of q) changes with the q chunk of each block (the default
suite changes that depth between commands in tests/verif/test_fused_delay.py), a 4x1 array with
split q chunks, a 2x3 array pipelined at 1.2 GHz, and the built-in 4x4 reference layer.
"""
import pytest

from archgen.arch.spec import load_spec
from archgen.verif.layer_check import verify_layer

pytestmark = pytest.mark.verilator

D8 = ["memory.dram.width_bytes=8", "memory.dram.latency=12"]
AXIS1 = ["dataflows.rs.spatial={k: 0, r: 1}", "dataflows.rs.control=[1,0]"]


def _check(r):
    assert r.outputs_exact, r.detail
    assert r.rtl_cycles == r.model_cycles, (r.rtl_cycles, r.model_cycles, r.command)
    assert r.detail["rtl_dram_bytes"] == r.dram_bytes


@pytest.mark.slow   # default-suite time (CI <= 20 min); run with --runslow
def test_conv_rs_over_48_blocks_with_p_chunks_and_split_input_channels():
    design = load_spec("conv_rs", ["array.shape=3x2"] + D8)
    bounds = dict(n=2, k=5, p=6, q=3, c=3, r=4, s=2)
    r = verify_layer(design, bounds, tile={"k": 1, "c": 2, "r": 1, "s": 1, "p": 3}, order=("k", "p", "c", "r", "s"),
                     seed=7)
    _check(r)
    assert r.detail["n_blocks"] == {"k": 3, "p": 2, "c": 2, "r": 2, "s": 2}
    # by hand: I and W change at every block (s is innermost). k blocks of 2, 2, 1 columns; p chunks of 3 rows;
    # c blocks of 2 and 1 channels; r tiles of 3 and 1 filter rows; s one column each.
    # I box per block: n 2 x c x (3 + r - 1) rows x (q 3 + 1 - 1) columns, for each k and p block
    i_bytes = 3 * 2 * sum(2 * c * (3 + rr - 1) * 3 for c in (2, 1) for rr in (3, 1) for _s in range(2))
    w_bytes = 2 * sum(k * c * rr * 1 for k in (2, 2, 1) for c in (2, 1) for rr in (3, 1) for _s in range(2))
    assert r.dram_bytes == {"I.read": i_bytes, "W.read": w_bytes, "O.write": 2 * 5 * 6 * 3 * 4}


def test_cli_verify_conv_rs_on_a_1x4_array_through_the_memory_system(capsys):
    from archgen.cli import main
    argv = ["verify", "conv_rs", "--set", "array.shape=1x4", "--bounds", "n=1,k=2,p=3,q=2,c=2,r=3,s=2", "--seed", "5",
            "--dram-bw", "4", "--dram-latency", "30"]
    for s in AXIS1:
        argv += ["--set", s]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "outputs: exact" in out and "(equal)" in out and "DRAM: I.read" in out


OUTER = ["dataflows.rs.order=[k,c,r,s,n,p,q]", "dataflows.rs.inner=[n,p,q]"]     # FIFO depth: trips of q


@pytest.mark.slow
def test_conv_rs_outer_loop_fifos_with_q_chunks_of_run_time_depth():
    """FIFOs on p (an outer inner loop): one FIFO step is a row of q, and q is split in chunks of 2, 2 and 1,
    so the buffers' depth changes from block to block with the array command."""
    design = load_spec("conv_rs", ["array.shape=3x2"] + D8 + OUTER)
    r = verify_layer(design, dict(n=1, k=3, p=4, q=5, c=2, r=4, s=2), tile={"k": 1, "c": 1, "r": 1, "s": 1, "q": 2},
                     order=("k", "q", "c", "r", "s"), seed=7)
    _check(r)
    assert r.detail["n_blocks"]["q"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("sets, bounds, tile, order, seed", [
    (["array.shape=1x4", "memory.dram.width_bytes=4", "memory.dram.latency=30"] + AXIS1,
     dict(n=1, k=3, p=5, q=2, c=2, r=5, s=2), {"k": 1, "c": 1, "r": 1, "s": 1, "p": 2}, ("k", "p", "c", "r", "s"), 5),
    (["array.shape=4x1"] + D8, dict(n=1, k=2, p=4, q=3, c=2, r=3, s=3), {"k": 1, "c": 1, "r": 1, "s": 1, "q": 2},
     ("k", "q", "c", "r", "s"), 2),
    (["array.shape=2x3", "clock_mhz=1200"] + D8, dict(n=2, k=4, p=3, q=2, c=2, r=3, s=2),
     {"k": 1, "c": 1, "r": 2, "s": 2}, ("k", "c", "r", "s"), 11),
    ([], None, None, None, 3),
    (OUTER, None, None, None, 3),
    (["array.shape=1x4", "memory.dram.width_bytes=4", "memory.dram.latency=30"] + AXIS1 + OUTER,
     dict(n=2, k=3, p=5, q=3, c=2, r=5, s=2), {"k": 1, "c": 1, "r": 1, "s": 1, "p": 2}, ("k", "p", "c", "r", "s"), 5),
], ids=["1x4-axis1-chunks", "4x1-q-chunks", "2x3-1200MHz", "4x4-reference", "outer-p-4x4-reference",
        "outer-p-1x4-axis1-p-chunks"])
def test_conv_rs_layers(sets, bounds, tile, order, seed):
    design = load_spec("conv_rs", sets)
    r = verify_layer(design, bounds or design.reference_bounds, tile=tile, order=order, seed=seed)
    _check(r)


@pytest.mark.slow
def test_planner_chunks_a_layer_deeper_than_the_fifo_buffers():
    """No tile given: q (5) is deeper than array.max_fifo_depth (2), so the planner cuts q into chunks whose
    FIFO depth fits (plan_layer); outputs exact, RTL cycles == model cycles."""
    design = load_spec("conv_rs", ["array.shape=3x2", "array.max_fifo_depth=2"] + D8 + list(OUTER))
    r = verify_layer(design, dict(n=1, k=3, p=4, q=5, c=2, r=4, s=2), seed=9)
    _check(r)
    assert r.detail["n_blocks"]["q"] == 3
