"""Banked buffers of the stt memory system (dataflow/stt_bank.py): the lanes of one slot meet distinct banks on
every memory port, every element has its own DRAM-image position, and a map whose points collide falls back to
lane copies; the partial sums read in the slot after their write (the store's transparent read) occur."""
import numpy as np
import pytest

from archgen.arch.spec import load_spec, load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.stt_array import stt_tiling
from archgen.dataflow.stt_bank import layout_walk
from archgen.dataflow.stt_layer import plan_stt_layer
from archgen.dataflow.stt_phase import lane_walk

HEX = [[1, 0, -1], [0, 1, -1], [1, 1, 1]]


def _gemm(shape, stt, order=("k", "i", "j"), width=8):
    return load_spec_data({"version": 1, "name": "gemm_stt", "operation": "C[i,j] += A[i,k] * B[k,j]",
                           "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": list(shape)},
                           "dataflows": {"d": {"stt": stt, "order": list(order)}},
                           "memory": {"dram": {"width_bytes": width}}})


CASES = [
    (_gemm((4, 4), HEX), {"i": 7, "j": 6, "k": 5}),
    (_gemm((1, 4), HEX, ("i", "j", "k"), 4), {"i": 5, "j": 7, "k": 3}),
    (_gemm((3, 3), HEX, width=12), {"i": 5, "j": 4, "k": 6}),
    (_gemm((5, 2), HEX, ("j", "k", "i")), {"i": 9, "j": 5, "k": 4}),
    (_gemm((3, 4), [[1, 0, 1], [0, 1, -1], [1, 2, 1]]), {"i": 6, "j": 7, "k": 5}),
    (load_spec("conv1d_hex", ["array.shape=3x5"]), {"k": 7, "p": 9, "r": 4}),
    (load_spec("gemm_hex", ["array.shape=8x8"]), {"i": 20, "j": 30, "k": 11}),
]


@pytest.mark.parametrize("design, bound", CASES)
def test_lanes_of_a_slot_meet_distinct_banks(design, bound):
    tiling = stt_tiling(compile_array(design).network, bound)
    plan = plan_stt_layer(tiling)
    for program in plan.programs:
        if program.is_tag or not program.port.startswith(("in_", "psum_", "out_")):
            continue
        layout = plan.layouts[program.operand]
        valid, bank, _index = layout_walk(program, layout, tiling.slots)
        for n in range(tiling.slots):
            banks = bank[n][valid[n]].tolist()
            assert len(set(banks)) == len(banks), (program.port, n)
    for t, layout in plan.layouts.items():
        shape = plan.shapes[t]
        pos = [layout.position(c, shape) for c in np.ndindex(*shape)]
        assert len(set(pos)) == len(pos) and max(pos) < layout.positions(shape)
        assert layout.positions(shape) * plan.elem_bytes[t] % plan.word_bytes == 0 or layout.copies
        assert layout.storage(shape) <= plan.copies_storage_bytes()[t] // plan.elem_bytes[t] or layout.copies


def test_colliding_points_fall_back_to_lane_copies():
    """conv1d_hex's I[p+r] with boxes of 3 along p and 2 along r: origins move by 1, every element is the same
    point, so the input keeps one copy per lane; the output and W are banked."""
    tiling = stt_tiling(compile_array(load_spec("conv1d_hex", ["array.shape=3x5"])).network, {"k": 7, "p": 9, "r": 4})
    plan = plan_stt_layer(tiling)
    assert plan.layouts["I"].copies and plan.layouts["I"].banks == plan.program("in_I").lanes
    assert not plan.layouts["W"].copies and not plan.layouts["O"].copies
    assert "I 5 copies" in plan.describe_storage()


def test_partial_sums_read_the_previous_slots_write():
    """On gemm_hex 1x4 some partial sums are read in the slot right after the output beat that wrote them: the
    store's read, issued a slot ahead, must be transparent for its write port (tests/rtlgen/test_stt_layer.py
    runs this case exactly)."""
    tiling = stt_tiling(compile_array(_gemm((1, 4), HEX, ("i", "j", "k"), 4)).network, {"i": 5, "j": 7, "k": 3})
    plan = plan_stt_layer(tiling)
    vo, ao = lane_walk(plan.program("out_C"), tiling.slots)
    vp, ap = lane_walk(plan.program("psum_C"), tiling.slots)
    back_to_back = sum(len(set(ao[n - 1][vo[n - 1]].tolist()) & set(ap[n][vp[n]].tolist()))
                       for n in range(1, tiling.slots))
    assert back_to_back > 0
