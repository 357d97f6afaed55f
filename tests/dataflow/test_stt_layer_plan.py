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
    # I's element below 0 in some boxes of a class (padding): counted box by box
    (load_spec("conv1d_hex", ["array.shape=3x5", "operation=O[k,p] += W[k,r] * I[p-r]"]), {"k": 7, "p": 9, "r": 8}),
    (load_spec("conv1d_hex", ["array.shape=2x3", "operation=O[k,p] += W[k,r] * I[p-r+2]"]), {"k": 5, "p": 7, "r": 4}),
])
def test_valid_beats_by_box_class_equal_the_walk(design, bound):
    from archgen.dataflow.stt_layer import _valid_beats_by_box
    tiling = stt_tiling(compile_array(design).network, bound)
    plan = plan_stt_layer(tiling)
    assert tiling.n_tiles > 4
    for prog in plan.programs:
        walked = int(lane_walk(prog, tiling.slots)[0].sum())
        assert valid_beats(prog) == walked == _valid_beats_by_box(prog, False), prog.port
    acc = plan.buffer_accesses()
    y = design.operation.output.name
    assert acc[f"{y}.write"] == int(lane_walk(plan.program(f"out_{y}"), tiling.slots)[0].sum())


# an input index with a negative coefficient (a true convolution's I[p - r]) through the stt memory system. A block's
# region of I starts at A_I times the block's origin and holds the indices A_I x + c of its local iterations from 0
# up; the lanes read 0 below it (their extent compares). Unsplit (one block) that is exactly the zero padding below
# the tensor. Cut along p or r, it would be another block's real elements: such cuts are not made, and a layer that
# fits no other way is refused by field. Where a cut keeps every local index >= 0 (I[p-r+3], blocks of 4 along r),
# the region may still start below the tensor (origin p0 - r0 < 0): the DRAM image holds zeros there (it wrapped).
def _conv(op, shape, mem, order=("r", "k", "p")):
    m = {"dram": {"width_bytes": 8, "latency": 5, "burst_bytes": 16, "outstanding": 2}}
    m.update(mem)
    return load_spec_data({"version": 1, "name": "conv_hex", "operation": op, "clock_mhz": 500,
                           "types": {"W": "int8", "I": "int8", "O": "int32"}, "array": {"shape": list(shape)},
                           "dataflows": {"hex": {"stt": HEX, "order": list(order)}}, "memory": m})


def _plan(design, bound):
    return plan_stt_layer(stt_tiling(compile_array(design).network, bound))


def test_blocks_do_not_cut_the_loops_of_an_index_that_reaches_below_its_region():
    from archgen.arch.errors import SpecError
    from archgen.dataflow.stt_layer import _halo_below
    op = _conv("O[k,p] += W[k,r] * I[p-r]", (3, 5), {}).operation
    bound = {"k": 7, "p": 9, "r": 4}
    assert _halo_below(op, bound, bound) == []                        # one block: the padding below I[0]
    assert _halo_below(op, bound, dict(bound, p=5)) == ["I[p-r]"]     # cut p: I[p0 - 1] is real, not in the region
    assert _halo_below(op, bound, dict(bound, k=2)) == []             # k is not in I's index
    op3 = _conv("O[k,p] += W[k,r] * I[p-r+3]", (3, 5), {}).operation
    assert _halo_below(op3, bound, dict(bound, p=5)) == []            # 3 - (4 - 1) >= 0: the region holds it all
    assert _halo_below(op3, dict(bound, r=8), dict(bound, r=5)) == ["I[p-r+3]"]
    # conv1d_hex's I[p+r] layer of tests/verif/test_stt_layer_rtl.py (grid p: 2, r: 2) as I[p-r]: refused
    bufs = {"W": {"bytes": 400}, "I": {"bytes": 40}, "O": {"bytes": 2000}}
    with pytest.raises(SpecError) as err:
        _plan(_conv("O[k,p] += W[k,r] * I[p-r]", (3, 5), bufs), bound)
    assert str(err.value) == (
        "memory.I.bytes: layer layer: a block of {'k': 2, 'p': 9, 'r': 4} stores the whole region of tensor I in 5 "
        "lane copies (5 x 16 B = 80 B on chip); raise the buffer or use a tiled dataflow (blocks cannot cut p, r: "
        "I[p-r] would reach below a block's region, the halo it does not hold) (got 40)")
    assert dict(_plan(_conv("O[k,p] += W[k,r] * I[p+r]", (3, 5), bufs), bound).grid) == {"p": 2, "r": 2}
    # cuts along k are fine
    assert dict(_plan(_conv("O[k,p] += W[k,r] * I[p-r]", (1, 4), {"W": {"bytes": 8}}), {"k": 3, "p": 5, "r": 8}).grid) \
        == {"k": 3}


def test_a_region_below_the_tensor_holds_zeros_in_dram():
    import numpy as np
    plan = _plan(_conv("O[k,p] += W[k,r] * I[p-r+3]", (1, 4), {"W": {"bytes": 16}}), {"k": 3, "p": 5, "r": 8})
    assert dict(plan.grid) == {"r": 2}
    i = np.arange(1, 9)                                              # I[0..7] = 1..8: no element is 0
    for counters in plan.blocks():
        glob, inside = plan._region("I", counters)
        assert inside.tolist() == ((glob[0] >= 0) & (glob[0] < 8)).tolist()
    # the second r block's region starts at 0 - 4: its first 4 positions are padding, zero in the image
    words = plan.dram_image({"W": np.ones((3, 8), dtype=np.int64), "I": i})
    pos = plan._positions("I")
    at = plan.bases["I"] + plan.region_index("I", {"r": 1}) * plan.words("I")
    vals = [(words[at + q // plan.per_word("I")] >> (8 * (q % plan.per_word("I")))) & 0xFF for q in pos]
    glob, _ = plan._region("I", {"r": 1})
    assert [v for v, g in zip(vals, glob[0]) if g < 0] == [0, 0, 0, 0]       # numpy read I[-4..-1] = 5..8 here
    assert [v for v, g in zip(vals, glob[0]) if g >= 0] == [int(i[g]) for g in glob[0] if g >= 0]
