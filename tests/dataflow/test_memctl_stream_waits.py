"""H150's streamed waited form through the memory system (issue 14, ``schedule: map``; docs/memory.md "Streamed outputs
whose products wait across tiles"): an output streamed per step that depends on a skewed loop l outside the tile and is
reduced along an array axis the skew moves. Each FU's product waits O_l - offset_l(s) iterations of l before the lane's
reduction (reduce_skew.py ``product_waits``), so lane L streams the element of tile t - O_l. The output's write and
partial-sum walks give each lane that lead on l's tile level (memctl.py ``_streamed_wait``, through ``lane_lead`` and
``_tile_masks``: the beats of tiles outside the block's box are masked); a block whose wait per iteration of l exceeds
``array.max_fifo_depth`` steps is refused by name and planned around (``_check_wait_depth``). Checked in Amaranth's
simulator through the layer core: outputs exact, RTL cycles == model cycles, DRAM bytes RTL == model."""
import collections
import dataclasses

import numpy as np
import pytest

from archgen.arch.errors import SpecError
from archgen.dataflow.compile import compile_array
from archgen.dataflow.memctl import lane_lead, layer_program
from archgen.dataflow.reduce_skew import lane_offsets
from archgen.mappings.memory_tiling import check_partial_sums, make_command, plan_layer
from test_map_schedule import _skewed_row
from test_map_schedule_outer import CONV_OP, GEMM, _spec
from test_map_schedule_outer_reduce import BGEMM
from test_map_schedule_outer_stream import FIXED, _design, _outer_waits, _random_conv, _random_gemm
from test_memctl_outer_pads import _run
from test_memctl_stream_outputs import run_design


def _exact(design, bounds, seed):
    """The planner's command (with ``buffer_fit``) through the layer core: exact, RTL == model cycles and bytes."""
    exact, rtl, model, moved, dram = run_design(design, bounds, seed, fits=True)
    assert exact and rtl == model, (bounds, seed, rtl, model)
    assert {k: v for k, v in moved.items() if v} == {k: v for k, v in dram.items() if v}
    return rtl


def test_the_conv_streams_each_lanes_tile_through_the_memory_system():
    """H150's 2x2 conv (n leads along axis 0 and lags along axis 1): lane L's terminal FU is not its FU of the largest
    offset on n, so the walks lead each lane by its O_n (not its terminal FU's offset); exact, 591 = 591 cycles."""
    design, bounds, seed = _design(1)
    c = compile_array(design)
    out = c.fu_graph.output
    leads = [lane_lead(c, out.name, ln.fus[-1]) for ln in out.lanes]
    assert leads == [{"tile:n": -top["n"]} for top in lane_offsets(c.fu_graph)]
    assert _exact(design, bounds, seed) == 591


@pytest.mark.slow
def test_without_the_lanes_leads_the_outputs_are_wrong(monkeypatch):
    """The check can fail: every lane at its terminal FU's own tile (the walks before H156) gives wrong outputs at
    equal cycles."""
    import archgen.dataflow.memctl as memctl
    monkeypatch.setattr(memctl, "_streamed_wait", lambda fg, pad, coord: 0)
    design, bounds, seed = _design(1)
    exact, rtl, model, _moved, _dram = run_design(design, bounds, seed, fits=True)
    assert not exact and rtl == model == 591


@pytest.mark.slow
def test_the_other_fixed_cases_are_exact():
    """H150's GEMM on 3 (j lags) and 3x2 batched GEMM (b lags by 2 per row)."""
    assert [_exact(*_design(case)) for case in (0, 2)] == [230, 298]


def _line(rng):
    """A line of N FUs, (N,) or (1, N): c (conv) or k (GEMM, batched GEMM) on it, a loop the output uses skewed along
    it outside the tile (a lag or a lead)."""
    n, flat = int(rng.integers(2, 5)), bool(rng.integers(0, 2))
    shape, ax = ((n,), 0) if flat else ((1, n), 1)
    sig = tuple(int(rng.choice([-2, -1, 1, 2])) if a == ax else 0 for a in range(len(shape)))
    kind = str(rng.choice(["conv", "gemm", "bgemm"]))
    if kind == "conv":
        skewed = str(rng.choice(["n", "k", "p"]))
        mp = {"n": "t_n", "k": "t_k", "p": "t_p", "q": "t_q", "c": f"{n}*t_c + s{ax}", "r": "t_r", "s": "t_s"}
        op, inner, his = CONV_OP, [["q"], ["s", "q"]][int(rng.integers(0, 2))], (2, 3, 3, 3, 7, 2, 3)
    else:
        skewed, other = ("b", str(rng.choice(["i", "j"]))) if kind == "bgemm" else [("i", "j"), ("j", "i")][
            int(rng.integers(0, 2))]
        mp = {"b": "t_b", "i": "t_i", "j": "t_j", "k": f"{n}*t_k + s{ax}"}
        op, inner, his = (BGEMM, [other], (3, 3, 3, 9)) if kind == "bgemm" else (GEMM, [other], (4, 4, 9))
    mp[skewed] = _skewed_row(skewed, sig, shape)
    return _draw(rng, op, shape, mp, inner, his)


def _draw(rng, op, shape, mp, inner, his):
    """The design of ``mp`` (its loops outside ``inner`` in a random order) with random bounds up to ``his`` (in the
    operation's loop order) and a seed."""
    dims = [d for d in ("nkpqcrs" if op == CONV_OP else "bijk" if op == BGEMM else "ijk") if d in mp]
    order = [str(d) for d in rng.permutation([d for d in dims if d not in inner])] + inner
    bounds = {d: int(rng.integers(1, hi + 1)) for d, hi in zip(dims, his)}
    return _spec(op, shape, {d: mp[d] for d in dims}, order, inner), bounds, int(rng.integers(0, 1000))


def _two(rng):
    """A 2-D conv, c on axis 0 and k or p on axis 1, with both other loops of n, k, p skewed along axis 0 (and along
    axis 1 or not) outside the tile: each lane leads by its O on each."""
    shape = (int(rng.integers(2, 4)), int(rng.integers(1, 3)))
    across = str(rng.choice(["k", "p"]))
    mp = {"n": "t_n", "k": "t_k", "p": "t_p", "q": "t_q", "c": f"{shape[0]}*t_c + s0", "r": "t_r", "s": "t_s"}
    mp[across] = f"{shape[1]}*t_{across} + s1" if shape[1] > 1 else f"t_{across}"
    for d in (d for d in ("n", "k", "p") if d != across):
        mp[d] = _skewed_row(d, (int(rng.choice([-1, 1, 2])), int(rng.integers(-1, 2)) if shape[1] > 1 else 0), shape)
    return _draw(rng, CONV_OP, shape, mp, [["q"], ["s", "q"]][int(rng.integers(0, 2))], (2, 3, 3, 3, 5, 2, 2))


def _inner_pad(rng):
    """A 2-D conv, c on axis 0, k on axis 1, n or p skewed along axis 0 outside the tile, and q (in the tile) skewed
    along axis 1 (a de-skewed output, memctl.py ``output_pads``) or along axis 0 (a product wait inside the tile too)."""
    shape = (int(rng.integers(2, 4)), int(rng.integers(2, 4)))
    skewed = str(rng.choice(["n", "p"]))
    mp = {"n": "t_n", "k": f"{shape[1]}*t_k + s1", "p": "t_p", "q": "t_q", "c": f"{shape[0]}*t_c + s0", "r": "t_r",
          "s": "t_s"}
    mp[skewed] = _skewed_row(skewed, (int(rng.choice([-1, 1, 2])), 0), shape)
    q = int(rng.choice([-1, 1]))
    mp["q"] = _skewed_row("q", (0, q) if rng.integers(0, 2) else (q, 0), shape)
    return _draw(rng, CONV_OP, shape, mp, [["q"], ["s", "q"]][int(rng.integers(0, 2))], (2, 4, 3, 4, 5, 2, 2))


def _cube(rng):
    """A 2x2x2 conv: c on axis 0, k on axis 1, r on axis 2 (the output reduced along axes 0 and 2), n or p skewed
    along axis 0 (and along 1 and 2 or not) outside the tile."""
    skewed = str(rng.choice(["n", "p"]))
    mp = {"n": "t_n", "k": "2*t_k + s1", "p": "t_p", "q": "t_q", "c": "2*t_c + s0", "r": "2*t_r + s2", "s": "t_s"}
    mp[skewed] = _skewed_row(skewed, (int(rng.choice([-1, 1, 2])), int(rng.integers(-1, 2)),
                                      int(rng.choice([-1, 0, 1]))), (2, 2, 2))
    return _draw(rng, CONV_OP, (2, 2, 2), mp, [["q"], ["s", "q"]][int(rng.integers(0, 2))], (2, 3, 3, 3, 4, 4, 2))


def _waited(rng, draw):
    """The next draw whose products wait across tiles (the others are skipped)."""
    while True:
        design, bounds, seed = draw(rng)
        if _outer_waits(compile_array(design)):
            return design, bounds, seed


@pytest.mark.slow
@pytest.mark.parametrize("draw", [_random_conv, _random_gemm, _line, _two, _inner_pad, _cube])
def test_random_designs_are_exact(draw):
    """6 random designs per generator (H150's convs and batched GEMMs, lines, two skewed loops, an inner padded loop
    besides, 2x2x2), the planner's command: each exact, RTL == model (no refusal is allowed)."""
    rng = np.random.default_rng(156)
    for _ in range(6):
        _exact(*_waited(rng, draw))


def _multi_block(rng, draw):
    """A random command of several blocks for the next waited draw: random chunks of every loop outside the tile, a
    random block order, partial sums through DRAM or not (the order that needs it and lacks it is drawn again)."""
    while True:
        design, bounds, seed = _waited(rng, draw)
        df = compile_array(design).dataflow
        on = {d: design.shape[a] for a, d in df.spatial_dims.items()}
        tile = {d: int(rng.integers(1, -(-bounds[d] // on.get(d, 1)) + 1)) for d in df.outer_dims()}
        order = tuple(str(d) for d in rng.permutation(list(df.outer_dims())))
        if rng.integers(0, 2):
            design = dataclasses.replace(design, memory=dataclasses.replace(design.memory_system,
                                                                            partial_sums_through_dram=True))
        c = compile_array(design)
        try:
            cmd = make_command(c.design, bounds, c.dataflow, tile, order)
            check_partial_sums(cmd, "layer")
        except SpecError as err:
            assert "partial_sums_through_dram" in str(err)
            continue
        if len(list(cmd.blocks())) > 1:
            return c, cmd, seed


@pytest.mark.slow
@pytest.mark.parametrize("draw", [_random_conv, _random_gemm, _two])
def test_random_multi_block_commands_are_exact(draw):
    """8 random commands of several blocks per generator: the skewed loop split across blocks, partial sums added in
    the buffer or through DRAM; each exact, RTL == model cycles and DRAM bytes."""
    rng, seen = np.random.default_rng(1156), collections.Counter()
    for _ in range(8):
        c, cmd, seed = _multi_block(rng, draw)
        exact, rtl, model, moved, dram = _run(c, cmd, seed)
        assert exact and rtl == model and moved == dram, (cmd.tile, cmd.order, rtl, model)
        seen["dram"] += c.design.memory_system.partial_sums_through_dram
    assert seen["dram"]


@pytest.mark.slow
def test_a_block_deeper_than_the_wait_buffers_is_refused_by_name_and_planned_around(monkeypatch):
    """The GEMM on 3 with i = 22, k = 9: one block runs 3 rounds of k x 22 steps = 66 steps per iteration of j, more
    than array.max_fifo_depth = 64 (the array level refuses these bounds, mappings/tiling.py ``check_output_waits``;
    the memory path runs blocks). Unchecked, it gives wrong outputs at equal cycles (543); refused by name; with
    ``buffer_fit`` the planner chunks k by 2 and the layer runs exact (545 cycles)."""
    import archgen.dataflow.memctl as memctl
    design, _, _ = _design(0)
    bounds = {"i": 22, "j": 3, "k": 9}
    c = compile_array(design)
    with pytest.raises(SpecError, match="a block waits 66 array steps per iteration of the skewed loop j"):
        layer_program(c, plan_layer(design, bounds, c.dataflow), spec_size=False)
    assert _exact(design, bounds, 1) == 545
    monkeypatch.setattr(memctl, "_check_wait_depth", lambda *a: None)
    exact, rtl, model, _moved, _dram = run_design(design, bounds, 1)
    assert not exact and rtl == model == 543


@pytest.mark.slow
@pytest.mark.parametrize("case", [0, 1, 2])
def test_the_fused_layer_core_runs_it_beside_ws(case):
    """Each fixed case fused with a ws dataflow, m / ws / m through the one fused layer core: each exact, RTL == model
    cycles, DRAM bytes RTL == model."""
    from archgen.verif.fused_program_check import verify_fused_program
    from test_fused_outer_pads import _design as _fused
    op, shape, mp, order, inner, bounds, seed = FIXED[case]
    m = {"map": mp, "order": order, "schedule": "map"} | ({"inner": inner} if inner else {})
    ws = {"spatial": {"k": 0} if op == GEMM else {"c": 0, "k": 1} if op == CONV_OP else {"k": 0, "i": 1},
          "order": order}
    runs = verify_fused_program(_fused(op, shape, {"m": m, "ws": ws}), [("m", bounds), ("ws", bounds), ("m", bounds)],
                                seed=seed, simulator="amaranth")
    assert [(r.dataflow, r.outputs_exact, r.rtl_cycles == r.model_cycles) for r in runs] == [
        ("m", True, True), ("ws", True, True), ("m", True, True)]
    assert all(r.detail["rtl_dram_bytes"] == r.dram_bytes for r in runs)


@pytest.mark.slow
def test_a_map_without_inner_loops_passes_the_depth_check():
    """Found by ``schedule-verify 1 4 2``: a held GEMM output with no loop in the tile (``inner_dims()`` empty) crashed
    the first depth check (IndexError) for the probe layer; it builds."""
    from archgen.dataflow.memctl import probe_command
    design = _spec(GEMM, (2, 2), {"i": "2*t_i + s1", "j": "t_j - s0 + s1 - 1", "k": "2*t_k + s0"}, ["k", "j", "i"])
    c = compile_array(design)
    assert not c.dataflow.inner_dims()
    assert layer_program(c, probe_command(c.design, c.dataflow), spec_size=False).walks
