"""The stt layer plan (dataflow/stt_layer.py): its buffer-access count by box class equals the lane walks'
valid beats counted slot by slot, on several maps, arrays and problems (ragged boxes, revisited outputs)."""
import pytest

from archgen.arch.spec import load_spec, load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.stt_array import stt_tiling
from archgen.dataflow.stt_layer import plan_stt_layer, valid_beats
from archgen.dataflow.stt_phase import lane_walk

HEX = [[1, 0, -1], [0, 1, -1], [1, 1, 1]]


def _gemm(shape, stt, order=("k", "i", "j")):
    return load_spec_data({"version": 1, "name": "gemm_stt", "operation": "C[i,j] += A[i,k] * B[k,j]",
                           "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": list(shape)},
                           "dataflows": {"d": {"stt": stt, "order": list(order)}}})


def _dw(shape):
    return load_spec_data({"version": 1, "name": "dw", "operation": "O[c,p] += I[c,p+r] * W[c,r]",
                           "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": list(shape)},
                           "dataflows": {"d": {"stt": HEX, "order": ["r", "c", "p"]}}})


@pytest.mark.parametrize("design, bound", [
    (_gemm((4, 4), HEX), {"i": 7, "j": 6, "k": 9}),
    (_gemm((3, 5), HEX, ("i", "k", "j")), {"i": 9, "j": 4, "k": 7}),
    (_gemm((2, 3), [[1, 0, 1], [0, 1, -1], [1, 2, 1]], ("j", "k", "i")), {"i": 6, "j": 7, "k": 8}),
    (load_spec("conv1d_hex", ["array.shape=3x5"]), {"k": 7, "p": 9, "r": 8}),
    (_dw((3, 4)), {"c": 3, "p": 7, "r": 5}),
])
def test_valid_beats_by_box_class_equal_the_walk(design, bound):
    tiling = stt_tiling(compile_array(design).network, bound)
    plan = plan_stt_layer(tiling)
    assert tiling.n_tiles > 4
    for prog in plan.programs:
        walked = int(lane_walk(prog, tiling.slots)[0].sum())
        assert valid_beats(prog) == walked, prog.port
    acc = plan.buffer_accesses()
    y = design.operation.output.name
    assert acc[f"{y}.write"] == int(lane_walk(plan.program(f"out_{y}"), tiling.slots)[0].sum())
