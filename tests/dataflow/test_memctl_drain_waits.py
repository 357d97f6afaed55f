"""H148's waited drains through the memory system (issue 14, ``schedule: map``): an output held per FU over skewed
loops l outside the tile and reduced along the array axis their skews move (dataflow/reduce_skew.py ``drain_groups``).
The output and partial-sum walks give each drained row its group's lead (the element of tile t - O_l) and drop the
padding rows' writes and partial-sum reads (dataflow/memctl.py ``_drained_offset``, ``_drain_rows``). Checked in
Amaranth through the layer core: outputs exact against the loop nest, RTL cycles == model cycles, DRAM bytes equal."""
import numpy as np
import pytest

import archgen.dataflow.memctl as memctl
from archgen.dataflow.compile import compile_array
from archgen.dataflow.reduce_skew import drain_groups, memory_drain_waits, rep_waits
from test_map_schedule_outer import CONV_OP, _spec
from test_map_schedule_outer_reduce import FIXED, TWO_FIXED, _random_case, _random_gemm, _random_two, _random_two_gemm
from test_memctl_stream_outputs import run_design


def _exact(design, bounds, seed):
    exact, rtl, model, moved, dram = run_design(design, bounds, seed, fits=True)
    assert exact and rtl == model
    assert {k: v for k, v in moved.items() if v} == {k: v for k, v in dram.items() if v}
    return rtl


def _first_two_loop_draw():
    """The first two-loop draw of seed 5 (:func:`_random_two`): a waiting representative (283 cycles)."""
    rng = np.random.default_rng(5)
    while True:
        design, bounds, seed = _random_two(rng)
        if drain_groups(compile_array(design).fu_graph):
            return design, bounds, seed


def test_a_waiting_representative_through_the_memory_system():
    design, bounds, seed = _first_two_loop_draw()
    fg = compile_array(design).fu_graph
    assert rep_waits(drain_groups(fg)) and not memory_drain_waits(fg)
    assert _exact(design, bounds, seed) == 283


@pytest.mark.slow
def test_without_the_group_leads_and_row_masks_the_outputs_are_wrong(monkeypatch):
    """The check can fail: each drained row at its own FU's tile and every row written, the outputs are wrong at equal
    cycles (the waiting representative's row writes its group's element at its own tile's position)."""
    monkeypatch.setattr(memctl, "_drain_rows", lambda *a: ())
    monkeypatch.setattr(memctl, "_drained_offset", lambda fg, pad, coord: pad.offset(coord))
    design, bounds, seed = _first_two_loop_draw()
    exact, rtl, model, _moved, _dram = run_design(design, bounds, seed, fits=True)
    assert not exact and rtl == model


@pytest.mark.slow
@pytest.mark.parametrize("case", range(len(FIXED)))
def test_h148_fixed_cases(case):
    op, shape, mp, order, inner, bounds, seed = FIXED[case]
    _exact(_spec(op, shape, mp, order, inner), bounds, seed)


@pytest.mark.slow
@pytest.mark.parametrize("case", range(len(TWO_FIXED)))
def test_h150_two_loop_cases(case):
    mp, order, bounds, seed = TWO_FIXED[case]
    _exact(_spec(CONV_OP, (2, 2), mp, order, ["r", "s"]), bounds, seed)


@pytest.mark.slow
@pytest.mark.parametrize("draw", [_random_case, _random_gemm, _random_two, _random_two_gemm])
def test_random_draws(draw):
    """Random convs and batched GEMMs, one and two loops, lags and leads, the planner's commands. The only refusals
    allowed are per layer: a block deeper than the drain buffers (:func:`test_a_block_deeper_than_the_drain_buffers`)
    and the command-field width of a walk's base (two loops' group leads can start a drained row more than one buffer
    before its box: seen once in 20 draws, a two-loop batched GEMM)."""
    from archgen.arch.errors import SpecError
    rng, done = np.random.default_rng(154), 0
    while done < 6:
        design, bounds, seed = draw(rng)
        if drain_groups(compile_array(design).fu_graph):
            try:
                _exact(design, bounds, seed)
            except SpecError as err:
                assert all(p.path.endswith("_base") and "does not fit" in p.message or "array.max_fifo_depth" in
                           p.message for p in err.problems), err
                continue
            done += 1


def test_lanes_of_one_row_in_one_group_pass_the_memory_check():
    """c and the skew of n along the lanes' axis (axis 1): both lanes of a drained row drain one group's element.
    Refused until H155, which builds it (tests/dataflow/test_memctl_drain_lanes.py runs it exact)."""
    from archgen.dataflow.memctl import check_memory_system
    mp = {"n": "t_n - s1", "k": "t_k", "p": "2*t_p + s0", "q": "t_q", "c": "2*t_c + s1", "r": "t_r", "s": "t_s"}
    fg = compile_array(_spec(CONV_OP, (2, 2), mp, ["n", "k", "p", "c", "q", "r", "s"], ["r", "s"])).fu_graph
    assert drain_groups(fg)
    check_memory_system(fg)          # raises if refused


@pytest.mark.slow
def test_a_block_deeper_than_the_drain_buffers_is_refused_by_name_and_planned_around():
    """The sixth two-loop draw of seed 5: a 3x1 conv whose one block runs 90 tiles per iteration of k (the array level
    refuses the bounds, mappings/tiling.py ``check_drain_waits``); through the memory system it gave wrong outputs at
    equal cycles until the layer's blocks were checked too. The planner's one-block command is refused by name; with
    ``buffer_fit`` the planner chunks the loops after k instead, and that layer runs exact, RTL == model."""
    from archgen.arch.errors import SpecError
    from archgen.dataflow.memctl import layer_program
    from archgen.mappings.memory_tiling import plan_layer
    rng, done = np.random.default_rng(5), 0
    while done < 6:
        design, bounds, seed = _random_two(rng)
        done += bool(drain_groups(compile_array(design).fu_graph))
    c = compile_array(design)
    with pytest.raises(SpecError, match="a block runs 90 tiles per iteration of the skewed loop k"):
        layer_program(c, plan_layer(design, bounds, c.dataflow), spec_size=False)
    _exact(design, bounds, seed)          # run_design(..., fits=True): planned with buffer_fit


@pytest.mark.slow
def test_the_fused_layer_core_runs_it_beside_ws():
    """H150's two loops (a waiting representative) fused with a ws dataflow, m / ws / m through the one fused layer
    core: each exact, RTL == model cycles, DRAM bytes RTL == model (783 / 543 / 783 cycles)."""
    from archgen.verif.fused_program_check import verify_fused_program
    from test_fused_outer_pads import _design
    mp, order, bounds, seed = TWO_FIXED[0]
    m = {"map": mp, "order": order, "schedule": "map", "inner": ["r", "s"]}
    design = _design(CONV_OP, (2, 2), {"m": m, "ws": {"spatial": {"k": 0, "p": 1}, "order": order}})
    runs = verify_fused_program(design, [("m", bounds), ("ws", bounds), ("m", bounds)], seed=seed,
                                simulator="amaranth")
    assert [(r.dataflow, r.outputs_exact, r.rtl_cycles == r.model_cycles) for r in runs] == [
        ("m", True, True), ("ws", True, True), ("m", True, True)]
    assert all(r.detail["rtl_dram_bytes"] == r.dram_bytes for r in runs)
    assert [r.rtl_cycles for r in runs] == [783, 543, 783]
