"""A skewed loop outside the tile that the OUTPUT depends on with a skew along the output's LANES, through the memory
system (issue 14, ``schedule: map``; docs/memory.md). Lane l drains its element of tile t - offset(l), so the lanes
of one beat lie on a diagonal of the box (C[i0 + l, j0 - l]): the output's write walk and partial-sum walk become a
lane map (``PortWalk.scatter``), lane l at its group's command field plus its offset, and the buffer takes every lane
in one cycle through one port per bank, a bank crossbar choosing the lane per bank (rtlgen/buffer.py
``write_scattered``/``read_scattered``). That needs the lanes' positions in distinct banks in every block, which
memctl checks per block (each dimension the lanes move tried innermost; the planner's ``buffer_fit`` plans around a
clash), refusing by name otherwise. Checked in Amaranth: outputs exact, RTL cycles == model cycles, DRAM bytes
RTL == model."""
import dataclasses

import pytest

from archgen.arch.errors import SpecError
from archgen.dataflow.compile import compile_array
from archgen.dataflow.memctl import buffer_fit, lane_skewed_output, layer_program
from archgen.mappings.memory_tiling import make_command, plan_layer
from test_map_schedule_outer import GEMM, _spec
from test_map_schedule_outer_out import FIXED, _fused_with_a_spatial_partner, _random_cases
from test_memctl_outer_out import sweep
from test_memctl_outer_pads import _run
from test_memctl_stream_outputs import run_design


def _design(case, spill=False):
    op, shape, mp, order, inner, _bounds, _seed = FIXED[case]
    design = _spec(op, shape, mp, order, inner)
    if spill:
        design = dataclasses.replace(design, memory=dataclasses.replace(design.memory_system,
                                                                        partial_sums_through_dram=True))
    return design


def _check(case):
    _op, _shape, _mp, _order, _inner, bounds, seed = FIXED[case]
    design = _design(case)
    assert lane_skewed_output(compile_array(design))
    exact, rtl, model, moved, dram = run_design(design, bounds, seed, fits=True)
    assert (exact, rtl) == (True, model), (case, rtl, model)
    assert {k: v for k, v in moved.items() if v} == {k: v for k, v in dram.items() if v}


def test_the_briefs_gemm_is_exact():
    """GEMM on [3], ``j: t_j - s0``: lane l writes C[i0 + l, j0 - l] (each lane its own group and bank)."""
    _check(0)


@pytest.mark.slow
@pytest.mark.parametrize("case", [1, 2, 3, 4])
def test_h141s_other_fixed_cases_are_exact(case):
    """A lead (j leads the run [j, k]: its default innermost dimension clashes, the other one is taken), k skewed in
    the tile too, the 1x4 conv (n, partial-sum rounds of c) and the 3x2 conv (q lags along axis 0, leads along 1)."""
    _check(case)


def test_the_write_walk_is_a_lane_map_in_distinct_banks():
    """The GEMM's output walks: scattered, three groups (C[i0 + l, j0 - l] differ in both dimensions), and in every
    block the lanes' positions (group field + offset) fall in three distinct banks of the output buffer."""
    design = _design(0)
    c = compile_array(design)
    prog = layer_program(c, plan_layer(design, FIXED[0][5], c.dataflow, fits=buffer_fit(c)), spec_size=False)
    out = [w for w in prog.walks if w.operand == "C"]
    assert out and all(w.scatter and w.groups == 3 for w in out)
    banks = prog.layouts["C"].banks
    for row in prog.rows:
        for w in out:
            offs = [(row[f"{w.port}_group{g}"] if g else 0) + o for g, o in zip(w.lane_groups, w.lane_offsets)]
            assert len({o % banks for o in offs}) == 3 and offs[1] != 1, offs


def test_without_the_lane_offsets_the_outputs_are_wrong(monkeypatch):
    """The check can fail: with every lane at its run position (lane l at the walk's + l, no lane map) the lanes
    write (and read back) the wrong elements."""
    import archgen.rtlgen.layer_top as layer_top
    from amaranth import Const
    monkeypatch.setattr(layer_top, "_lane_offsets", lambda m, w, *a, **k: [Const(l) for l in range(w.lanes)])
    _op, _shape, _mp, _order, _inner, bounds, seed = FIXED[0]
    exact, rtl, model, _moved, _dram = run_design(_design(0), bounds, seed, fits=True)
    assert rtl == model and not exact


def test_a_bank_clash_is_refused_by_name_and_the_planner_plans_around_it():
    """GEMM at i = j = 5: the planner's command without ``buffer_fit`` has blocks whose box puts two lanes in one
    bank with either dimension innermost (refused, naming the layer); with it the planner takes a command that
    builds."""
    design = _design(0)
    c = compile_array(design)
    bounds = {"i": 5, "j": 5, "k": 3}
    with pytest.raises(SpecError, match=r"layers\.layer: the output C's 3 lanes write their own tiles of the skewed "
                                        r"loop\(s\) j at buffer positions .* two lanes cannot write one bank"):
        layer_program(c, plan_layer(design, bounds, c.dataflow), spec_size=False)
    layer_program(c, plan_layer(design, bounds, c.dataflow, fits=buffer_fit(c)), spec_size=False)


@pytest.mark.slow
@pytest.mark.parametrize("case,tile,order,spill,seed", [
    (0, {"j": 2, "i": 1, "k": 3}, ("j", "i", "k"), False, 1),      # j split 2 + 2, one tile of i a block
    (0, {"j": 1, "i": 2, "k": 1}, ("j", "i", "k"), False, 2),      # k split: adds onto partial sums in the buffer
    (0, {"k": 1, "j": 2, "i": 1}, ("k", "j", "i"), True, 3),       # k outermost: partial sums through DRAM
    (1, {"i": 1, "j": 1, "k": 2}, ("i", "j", "k"), False, 4),      # the lead, one tile of j a block
    (3, {"k": 1, "p": 1, "c": 1, "n": 1, "q": 2}, ("k", "p", "n", "q", "c"), False, 5),   # 1x4: n and c split
    (3, {"k": 2, "p": 1, "c": 1, "n": 2, "q": 2}, ("c", "k", "p", "n", "q"), True, 6),    # c outermost, via DRAM
    (4, {"n": 1, "k": 1, "p": 1, "q": 2}, ("n", "k", "p", "q"), False, 7)])               # 3x2: q split 2 + 1
def test_multi_block_commands_are_exact(case, tile, order, spill, seed):
    """Hand-given commands: each block runs its chunk + span tiles of the skewed loop, its lanes' group fields set
    per block (the box's pitches), partial sums added on in the buffer or brought back from DRAM."""
    c = compile_array(_design(case, spill))
    cmd = make_command(c.design, FIXED[case][5], c.dataflow, tile, order)
    assert len(list(cmd.blocks())) > 1
    exact, rtl, model, moved, dram = _run(c, cmd, seed)
    assert exact and rtl == model, (rtl, model)
    assert moved == dram


@pytest.mark.slow
def test_the_one_fused_layer_core_runs_it():
    """Beside a spatial dataflow in the one fused layer core: the port's lane positions are the selected dataflow's
    (the spatial one's run positions through the same crossbar); every layer exact, RTL == model, DRAM equal."""
    from archgen.verif.fused_program_check import verify_fused_program
    op, shape, mp, order, inner, bounds, seed = FIXED[0]
    assert op == GEMM
    design = _fused_with_a_spatial_partner(op, shape, mp, order, inner)
    runs = verify_fused_program(design, [("m", bounds), ("ws", bounds), ("m", bounds)], seed=seed,
                                simulator="amaranth")
    assert [r.dataflow for r in runs] == ["m", "ws", "m"]
    for r in runs:
        assert r.outputs_exact and r.rtl_cycles == r.model_cycles, (r.dataflow, r.rtl_cycles, r.model_cycles)
        assert r.detail["rtl_dram_bytes"] == r.dram_bytes, r.dataflow


@pytest.mark.slow
def test_random_convolutions_skewed_along_the_lanes_are_exact():
    """12 random convolutions with a skewed output loop outside the tile (H141's draws: 1xN and 2-D, lags and leads,
    partial-sum rounds): each built one exact; only a bank clash (named, ``layers.layer``) may be refused (the
    de-skewed read-back distance is a wait since H159, no longer a refusal)."""
    assert sweep(_random_cases(149, 12), lambda _design, e: e.problems[0].path == "layers.layer" and (
        "two lanes cannot write one bank" in str(e))) >= 10


@pytest.mark.slow
def test_lanes_never_in_bounds_take_no_bank(monkeypatch):
    """A 2-D streamed output on a tiny box (seed 149's 11th random draw: one tile along each lane axis): the lanes past
    the bound never write, so the crossbar gives them no bank (``live_lanes``) and the layer builds exact; counting
    them, two lanes share a bank and it is refused."""
    import archgen.dataflow.memctl as memctl
    design, bounds, seed = list(_random_cases(149, 11))[10]
    exact, rtl, model, moved, dram = run_design(design, bounds, seed, fits=True)
    assert (exact, rtl) == (True, model)
    assert {k: v for k, v in moved.items() if v} == {k: v for k, v in dram.items() if v}
    monkeypatch.setattr(memctl, "live_lanes", lambda w, trips, last: [True] * w.lanes)
    with pytest.raises(SpecError, match="two lanes cannot write one bank"):
        run_design(design, bounds, seed, fits=True)
