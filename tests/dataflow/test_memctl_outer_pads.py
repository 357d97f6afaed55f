"""The memory system of a skewed reduction loop outside the tile (``schedule: map``, mappings/tiling.py
``outer_pads``; docs/memory.md "Skewed reduction loops outside the tile"): blocks cut the loop's K tiles and each
block's array command runs its chunk + span tiles; every lane (and every row of a stationary load) of an input that
uses the loop starts its tile walk offset(s) tiles back (memctl.lane_lead), reading up to span tiles in front of
the block's box (a margin, never loaded: the FU's products are masked there); the psum and output walks run the
chunk + span rounds. In Amaranth: outputs exact, cycles == simulate_layer's, bytes moved == the model's."""
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

import archgen.dataflow.memctl as memctl
from archgen.dataflow.compile import compile_array
from archgen.dataflow.host import random_operands
from archgen.dataflow.memctl import buffer_fit, check_memory_system, layer_dram_bytes, layer_program
from archgen.mappings.memory_tiling import make_command, plan_layer
from test_map_schedule_outer import CONV_OP, GEMM, GEMM_MAP, MASKED, _spec
from test_map_schedule_outputs import _held

CONV_MIXED = {"n": "t_n", "k": "3*t_k + s0", "p": "2*t_p + s1", "q": "t_q", "c": "t_c - s0 + s1 - 1", "r": "t_r",
              "s": "t_s"}
CASES = {
    "gemm": (lambda: _spec(GEMM, (3,), GEMM_MAP, ["i", "k", "j"], ["k", "j"]), {"i": 4, "j": 4, "k": 3}),
    "gemm-tile-loop": (lambda: _spec(GEMM, (3,), GEMM_MAP, ["k", "i", "j"]), {"i": 4, "j": 4, "k": 3}),
    "gemm-lead": (lambda: _spec(GEMM, (3,), {"i": "3*t_i + s0", "j": "t_j", "k": "t_k + 2*s0 - 4"}, ["i", "k", "j"],
                                ["k", "j"]), {"i": 4, "j": 3, "k": 2}),
    "conv1-1x4": (lambda: _spec(MASKED, (1, 4), {"p": "4*t_p + s1", "r": "t_r - s1", "c": "t_c"}, ["p", "r", "c"],
                                ["c"]), {"p": 5, "r": 3, "c": 2}),
    "conv-3x2": (lambda: _spec(CONV_OP, (3, 2), CONV_MIXED, ["n", "k", "p", "c", "q", "r", "s"], ["q", "r", "s"]),
                 {"n": 1, "k": 4, "p": 3, "q": 2, "c": 3, "r": 2, "s": 2}),
    # two skewed loops outside the tile on 2x3: W's stationary rows step back faster than a row of k moves forward
    "conv-2x3-two": (lambda: _spec(CONV_OP, (2, 3), {"n": "t_n", "k": "2*t_k + s0", "p": "3*t_p + s1", "q": "t_q",
                                                     "c": "t_c", "r": "t_r - s0 - 2*s1", "s": "t_s - 2*s0 - 2*s1"},
                                   ["n", "r", "s", "c", "p", "k", "q"], ["q"]),
                     {"n": 1, "k": 2, "p": 2, "q": 1, "c": 1, "r": 1, "s": 1}),
    # the output streamed over the padded j (de-skewed per lane, memctl.output_deskew) and k skewed outside the tile
    "gemm-deskewed": (lambda: _held(GEMM, (3,), {"i": "3*t_i + s0", "j": "t_j - s0", "k": "t_k - s0"}, ["i", "k", "j"],
                                    ["j"]), {"i": 4, "j": 4, "k": 3}),
}
CASES["gemm-deskewed-j1"] = (CASES["gemm-deskewed"][0], {"i": 3, "j": 1, "k": 3})


def _command(name, tile=None, order=None, spill=False):
    """The case's compiled array and a command (``tile``/``order`` given, else the planner's); ``spill``: the spec
    grants partial sums through DRAM."""
    design = CASES[name][0]()
    if spill:
        design = dataclasses.replace(design, memory=dataclasses.replace(design.memory_system,
                                                                               partial_sums_through_dram=True))
    c = compile_array(design)
    bounds = CASES[name][1]
    cmd = (make_command(c.design, bounds, c.dataflow, tile, tuple(order)) if tile else
           plan_layer(c.design, bounds, c.dataflow, fits=buffer_fit(c)))
    return c, cmd


def _run(c, cmd, seed):
    """The command through LayerTop in Amaranth: (outputs exact, RTL cycles, model cycles, bytes moved, the model's
    bytes)."""
    from archgen.rtlgen.layer_top import LayerTop
    from archgen.sim.layer_model import simulate_layer
    from archgen.verif.golden import reference_einsum
    sys.path.insert(0, str(Path(__file__).parents[1] / "rtlgen"))
    from layer_sim import run_top
    prog = layer_program(c, cmd, spec_size=False)
    tensors = random_operands(c.fu_graph, cmd.mapping, np.random.default_rng(seed))
    res = run_top(LayerTop(prog, prog.dram_image(tensors)), prog.dram_words, 100_000)
    op = c.design.operation
    got = prog.read_output(res["words"], op.tensor_shape(op.output.name, cmd.mapping.bound), signed=True)
    exact = np.array_equal(got, reference_einsum(op, tensors, cmd.mapping.bound, c.fu_graph.acc_width))
    moved = {k: v for k, v in res["moved"].items() if v}
    return exact, res["cycles"], simulate_layer(c, cmd).cycles, moved, {k: v for k, v in
                                                                          layer_dram_bytes(c, cmd).items() if v}


def test_the_lanes_start_their_tile_walk_offset_tiles_back():
    """The GEMM (k: t_k - s0 on [3]): B's 3 lanes read one run of k (lane s at k-tile t - s: one group, offsets
    2, 1, 0), A's stationary lanes one group each (2 positions apart: lane s is one k back and one row of A on);
    both sit a margin into their half; k runs 3 + 2 tiles a block (the array's trips, every k-walk, the psum walk's
    rounds), while the DRAM box along k stays 3."""
    c, cmd = _command("gemm", {"i": 2, "k": 3}, ["i", "k"])
    prog = layer_program(c, cmd, spec_size=False)
    walks = {w.port: w for w in prog.walks}
    assert walks["in_B"].lane_groups == (0, 0, 0) and walks["in_B"].lane_offsets == (2, 1, 0)
    assert walks["in_A"].lane_groups == (0, 1, 2)
    row = prog.rows[0]
    assert row["trips_k"] == 5 and row["in_A_trips1"] == row["in_B_trips1"] == row["out_C_trips1"] == 5
    assert row["psum_C_trips1"] == 4                  # every round but the first visit reads partial sums
    assert row["in_A_group1"] == 2 and row["in_A_group2"] == 4
    assert row["ld_pos_B"] == 2                       # a margin of two k positions in front of B's box
    assert row["ld_bytes_B"] == 3 * 4 and row["ld_bytes_A"] == 4 * 3     # boxes of K = 3 (int8)


def test_blocks_cut_the_k_tiles_without_the_span():
    """One tile of k per block: 3 blocks along k (not 3 + 2), each running 1 + 2 tiles."""
    c, cmd = _command("gemm", {"i": 2, "k": 1}, ["i", "k"])
    assert cmd.n_blocks() == {"i": 1, "k": 3}
    prog = layer_program(c, cmd, spec_size=False)
    assert [r["trips_k"] for r in prog.rows] == [3, 3, 3]


def test_it_passes_the_memory_system_check():
    for name in CASES:
        c = compile_array(CASES[name][0]())
        check_memory_system(c.fu_graph, c.design)


def test_a_stationary_walk_stepping_back_has_signed_strides():
    """Two skewed loops outside the tile: W's stationary rows lead by more tiles than a row moves on, so a row stride
    is negative and the descriptor's stride fields of W are signed (memctl.walks_down)."""
    c, cmd = _command("conv-2x3-two")
    prog = layer_program(c, cmd, spec_size=False)
    assert any(v < 0 for r in prog.rows for k, v in r.items() if k.startswith("in_W_stride"))
    fmt = memctl.descriptor_format(prog)
    assert any(f.startswith("in_W_stride") for f in fmt.signed)


def _exact(c, cmd, seed):
    exact, rtl, model, moved, dram = _run(c, cmd, seed)
    assert exact
    assert rtl == model
    assert moved == dram
    return rtl


@pytest.mark.parametrize("name", ["gemm", pytest.param("gemm-tile-loop", marks=pytest.mark.slow),
                                  pytest.param("gemm-lead", marks=pytest.mark.slow), "conv1-1x4",
                                  pytest.param("conv-3x2", marks=pytest.mark.slow),
                                  pytest.param("conv-2x3-two", marks=pytest.mark.slow)])
def test_through_the_memory_system_in_amaranth(name):
    """The planner's command (with memctl's buffer_fit): exact, RTL == model cycles, DRAM bytes equal."""
    _exact(*_command(name), 3)


def test_a_reduction_split_over_blocks_adds_onto_partial_sums():
    """k one tile per block (the blocks add onto the partial sums in the buffer, each running 1 + 2 tiles), and k
    outermost with partial sums through DRAM (granted): exact, RTL == model."""
    _exact(*_command("gemm", {"i": 1, "k": 1}, ["i", "k"]), 2)


@pytest.mark.slow
def test_partial_sums_through_dram():
    """k outermost in two blocks of 2 and 1 tiles (each + 2), the output blocks coming back: their partial sums go to
    DRAM and back (the spec grants it)."""
    _exact(*_command("gemm-tile-loop", {"k": 2, "i": 1}, ["k", "i"], spill=True), 4)


def test_without_the_tile_leads_the_outputs_are_wrong(monkeypatch):
    """The check can fail: with every lane walking k from the block's first tile (no lead), the FUs take the wrong
    tiles of A and B."""
    c, cmd = _command("gemm")
    lead = memctl.lane_lead
    monkeypatch.setattr(memctl, "lane_lead", lambda *a: {k: v for k, v in lead(*a).items() if not k.startswith("tile:")})
    assert not _run(c, cmd, 3)[0]


def test_a_deskewed_output_over_span_rounds(monkeypatch):
    """An output de-skewed per lane (j padded in the tile) with k skewed outside it: one tile of k per block still runs
    1 + 2 rounds, reading partial sums back. At j = 4 it runs exact; at j = 1 (3 steps a round, the de-skewed write 2
    beats late, so a round reads what the previous one wrote 1 step back) it was refused before H159 and now runs
    exact, the array waiting for each write (RTL cycles == model cycles); with the old wait (3 steps, no de-skew
    counted) it runs wrong."""
    assert _run(*_command("gemm-deskewed", {"i": 2, "k": 1}, ["i", "k"]), 1)[0]
    exact, rtl, model, moved, dram = _run(*_command("gemm-deskewed-j1", {"i": 1, "k": 1}, ["i", "k"]), 1)
    assert (exact, rtl) == (True, model) and moved == dram
    import archgen.rtlgen.layer_top as layer_top
    monkeypatch.setattr(layer_top.LayerCore, "_psum_skew", lambda self, m, arr, seq: None)
    assert not _run(*_command("gemm-deskewed-j1", {"i": 1, "k": 1}, ["i", "k"]), 1)[0]


def test_the_planner_sees_the_margin():
    """The conv 3x2 with memory.I.bytes = 128: the footprint alone plans blocks whose margin (I's lanes up to 2 tiles of
    c in front of the box) overflows a half, refused naming the field; with memctl's buffer_fit the planner picks
    blocks that fit."""
    from archgen.arch.errors import SpecError
    from archgen.dataflow.memctl import buffer_rooms
    design = CASES["conv-3x2"][0]()
    mem = design.memory_system
    design = dataclasses.replace(design, memory=dataclasses.replace(mem, buffers=tuple(
        dataclasses.replace(b, bytes=128) if b.operand == "I" else b for b in mem.buffers)))
    c = compile_array(design)
    bounds = CASES["conv-3x2"][1]
    blind = plan_layer(c.design, bounds, c.dataflow, rooms=buffer_rooms(c))
    with pytest.raises(SpecError) as err:
        layer_program(c, blind)
    assert err.value.problems[0].path == "memory.I.bytes" and "skewed loop outside the tile" in str(err.value)
    layer_program(c, plan_layer(c.design, bounds, c.dataflow, fits=buffer_fit(c), rooms=buffer_rooms(c)))
