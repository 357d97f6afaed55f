"""Whole layers through the generated memory system on Verilator (rtlgen/layer_top.py): the output tensor
read back from the top's DRAM equals numpy, and the RTL's cycles equal sim/layer_model's, exactly.

Default cases (four small builds, stand-alone Verilator binaries): a ragged OS layer whose A blocks stay
resident across the j blocks (the reuse shows in DRAM bytes), a memory-bound WS layer on a non-square
array, a stride-2 convolution over several blocks, `archgen verify` on an IS layer. In every case the
bytes the RTL's DMA moved (counted on its data path) equal the closed form. Opt-in (--runslow): OS,
WS and IS on 2x2, 2x3 and 4x4 arrays, each compute-bound (32 B/cycle, small buffers: several blocks)
and memory-bound (4 B/cycle, latency 40, one burst in flight), and an 8x8 layer under cocotb.
"""
import math

import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec
from archgen.verif.layer_check import verify_layer

pytestmark = pytest.mark.verilator

COMPUTE = ["memory.dram.width_bytes=32", "memory.dram.latency=8"]
MEMORY = ["memory.dram.width_bytes=4", "memory.dram.latency=40"]


def _check(r):
    assert r.outputs_exact, r.detail
    assert r.rtl_cycles == r.model_cycles, (r.rtl_cycles, r.model_cycles, r.command)
    # bytes the RTL's DMA moved (counted on its data path) == the closed form of the command
    assert r.detail["rtl_dram_bytes"] == r.dram_bytes


def test_ragged_os_layer_keeps_a_resident_across_the_j_blocks():
    design = load_spec("gemm_os", ["array.shape=2x2"] + COMPUTE)
    bounds = {"i": 7, "k": 9, "j": 5}                    # 7 = 3 tiles + 1 row, 5 = 2 tiles + 1 column
    r = verify_layer(design, bounds, tile={"i": 2, "j": 1}, order=("i", "j"), seed=3)
    _check(r)
    assert r.detail["n_blocks"] == {"i": 2, "j": 3}
    # A's block depends on i only: loaded once per i block and reused by the 3 j blocks
    assert r.dram_bytes["A.read"] == 7 * 9
    assert r.dram_bytes["B.read"] == 2 * 9 * 5           # B's blocks come back for every i block
    assert r.dram_bytes["C.write"] == 7 * 5 * 4


def test_memory_bound_ws_layer_on_a_non_square_array():
    design = load_spec("gemm_ws", ["array.shape=2x3"] + MEMORY)
    r = verify_layer(design, {"i": 9, "k": 7, "j": 8}, seed=5)
    _check(r)
    assert r.detail["stall_cycles"]["dram"] > r.detail["compute_cycles"]


@pytest.mark.slow   # default-suite time (CI <= 20 min); run with --runslow
def test_stride_2_convolution_over_several_blocks():
    design = load_spec("conv_ws", ["array.shape=3x2", "memory.dram.width_bytes=8", "memory.dram.latency=12"])
    bounds = {"n": 1, "k": 5, "p": 3, "q": 4, "c": 5, "r": 3, "s": 2}
    r = verify_layer(design, bounds, tile={"k": 1, "c": 2, "r": 3, "s": 2}, order=("k", "c", "r", "s"), seed=2)
    _check(r)
    assert r.detail["n_blocks"]["k"] == 3                # k = 5 on 2 columns: ragged last block
    # the input does not depend on k and its own loops (c, r, s) are whole: its halo box (rows p*2+r up to
    # 2*2+2, columns q*2+s up to 3*2+1) is loaded once and stays resident across the 3 k blocks
    assert r.dram_bytes["I.read"] == 1 * 5 * (2 * 2 + 3) * (2 * 3 + 2)
    assert r.dram_bytes["W.read"] == 5 * 5 * 3 * 2


SPLIT_DRAM = ["memory.dram.width_bytes=8", "memory.dram.latency=8"]


def test_planner_splits_the_streamed_m_of_ws_into_ragged_chunks():
    """Weight-stationary on a non-square array with an A buffer too small for the whole streamed M: plan_layer
    cuts i into chunks (23 = 7 x 3 + 2), each chunk one array command with the weights reloaded per tile."""
    design = load_spec("gemm_ws", ["array.shape=2x3", "memory.A.bytes=64", "memory.C.bytes=256"] + SPLIT_DRAM)
    r = verify_layer(design, {"i": 23, "k": 7, "j": 8}, seed=7)
    _check(r)
    assert "i: elements per chunk" in r.command and r.detail["n_blocks"]["i"] == 8, r.command
    assert r.detail["n_blocks"]["k"] == 1                     # the reduction stays whole: no add onto partial sums


def test_planner_splits_the_streamed_reduction_of_os_and_adds_onto_partial_sums():
    """Output-stationary with K = 29 too long for the A and B buffers: the streamed reduction k is cut into
    chunks (ragged last chunk); every later chunk's block adds onto the partial sums the earlier ones left
    in the output buffer (command flag acc), and C is written back once per output block."""
    design = load_spec("gemm_os", ["array.shape=3x2", "memory.A.bytes=48", "memory.B.bytes=48"] + SPLIT_DRAM)
    r = verify_layer(design, {"i": 7, "k": 29, "j": 5}, seed=8)
    _check(r)
    assert r.detail["n_blocks"]["k"] > 1 and 29 % dict(_tiles(r.command))["k"], r.command
    assert r.dram_bytes["C.write"] == 7 * 5 * 4 and "C.read" not in r.dram_bytes


@pytest.mark.slow   # default-suite time (CI <= 20 min); run with --runslow
def test_outer_reduction_split_over_blocks_with_m_chunks():
    """WS with the reduction tile loop k split over blocks (innermost, so C stays on chip) and M in chunks:
    the first reduction tile of each later block adds onto the buffer's partial sums, the others read
    them through the array's partial-sum port as before."""
    design = load_spec("gemm_ws", ["array.shape=2x3", "memory.A.bytes=32"] + SPLIT_DRAM)
    r = verify_layer(design, {"i": 11, "k": 7, "j": 8}, seed=9)
    _check(r)
    assert r.detail["n_blocks"]["k"] > 1 and r.detail["n_blocks"]["i"] > 1, r.command


@pytest.mark.slow   # default-suite time (CI <= 20 min); run with --runslow
def test_more_than_512_blocks_in_one_command():
    """The block walker has no block-count table: 25 x 7 x 3 = 525 blocks (ragged i, k cut into chunks that
    add onto the partial sums) run as one command, exact and cycle-equal to the model."""
    design = load_spec("gemm_os", ["array.shape=2x2"] + SPLIT_DRAM)
    r = verify_layer(design, {"i": 49, "k": 6, "j": 14}, tile={"i": 1, "j": 1, "k": 2}, order=("i", "j", "k"), seed=12)
    _check(r)
    assert r.detail["blocks"] == 525 and r.detail["n_blocks"] == {"i": 25, "j": 7, "k": 3}
    assert r.dram_bytes["C.write"] == 49 * 14 * 4 and "C.read" not in r.dram_bytes


@pytest.mark.slow
def test_is_with_its_streamed_n_in_explicit_chunks():
    design = load_spec("gemm_is", ["array.shape=3x2"] + SPLIT_DRAM)
    r = verify_layer(design, {"i": 7, "k": 5, "j": 10}, tile={"i": 1, "k": 3, "j": 4}, order=("i", "k", "j"), seed=1)
    _check(r)


@pytest.mark.slow
def test_strided_convolution_with_p_chunks_and_c_split_over_blocks():
    """Several inner loops (n, p, q) with p cut into ragged chunks (5 = 2 + 2 + 1) and the reduction c split
    over blocks after p: halo boxes per chunk, the add-on write across the c blocks."""
    design = load_spec("conv_ws", ["array.shape=3x2", "memory.dram.width_bytes=8", "memory.dram.latency=12"])
    bounds = {"n": 2, "k": 5, "p": 5, "q": 4, "c": 5, "r": 3, "s": 2}
    r = verify_layer(design, bounds, tile={"k": 1, "c": 2, "r": 3, "s": 2, "p": 2}, order=("k", "p", "c", "r", "s"),
                     seed=2)
    _check(r)


def _tiles(command):
    return [(p.split(":")[0].strip(), int(p.split(":")[1].split()[0])) for p in command.split(" per block")[0].split(">")]


def test_partial_sums_through_dram_ws_with_k_outermost():
    """k outermost among the tile loops, over two j blocks: every C block is visited twice. The first visit
    starts from zero and is written back; the second visit's load job brings its partial sums back from
    DRAM (after that write-back, which the DMA order puts first) into the psum-load copy, and the array's
    results add onto them. Exact, RTL cycles == model cycles, and the bytes moved are the closed form's:
    C written v = 2 times, read back v - 1 = 1 time."""
    design = load_spec("gemm_ws", ["array.shape=2x3"] + SPLIT_DRAM + SPILL)
    r = verify_layer(design, {"i": 5, "k": 7, "j": 8}, tile={"k": 2, "j": 2}, order=("k", "j"), seed=3)
    _check(r)
    assert r.detail["n_blocks"] == {"k": 2, "j": 2}
    assert r.dram_bytes["C.write"] == 2 * 5 * 8 * 4 and r.dram_bytes["C.read"] == 5 * 8 * 4


# the spec grants partial sums through DRAM (memory.partial_sums_through_dram: the psum-load copy, revisit logic)
SPILL = ["memory.partial_sums_through_dram=true"]

PSUM_CASES = [
    # OS: the streamed reduction k in chunks of 3, outermost: every C block visited 3 times
    ("gemm_os", ["array.shape=2x2"], {"i": 5, "k": 7, "j": 4}, {"k": 3, "i": 1, "j": 1}, ("k", "i", "j")),
    # OS: k chunks between i and j
    ("gemm_os", ["array.shape=3x2"], {"i": 7, "k": 9, "j": 5}, {"k": 4, "i": 1, "j": 2}, ("i", "k", "j")),
    # IS: its outer reduction tile loop k outermost, n in chunks
    ("gemm_is", ["array.shape=3x2"], {"i": 7, "k": 5, "j": 6}, {"k": 1, "i": 1, "j": 3}, ("k", "i", "j")),
    # WS single-buffered (D = 1: L(b) after W(b - 1))
    ("gemm_ws", ["array.shape=2x3"] + [f"memory.{x}.double_buffer=false" for x in "ABC"], {"i": 5, "k": 7, "j": 8},
     {"k": 2, "j": 1}, ("k", "j")),
    # WS whose dataflow order has k outside j (the psum walk's reduction level first)
    ("gemm_ws", ["array.shape=2x3", "dataflows.ws.order=[k, j, i]"], {"i": 5, "k": 7, "j": 8}, {"k": 2, "j": 2},
     ("k", "j")),
    # a convolution with c split over two blocks, outermost: each O block comes back
    ("conv_ws", ["array.shape=3x2"], {"n": 1, "k": 5, "p": 3, "q": 4, "c": 5, "r": 3, "s": 2},
     {"k": 1, "c": 1, "r": 3, "s": 2}, ("c", "k", "r", "s")),
    # the same with the reduction tile loops c, r, s before k in the dataflow's order
    ("conv_ws", ["array.shape=3x2", "dataflows.ws.order=[c, r, s, k, n, p, q]"],
     {"n": 1, "k": 5, "p": 3, "q": 4, "c": 5, "r": 3, "s": 2}, {"k": 2, "c": 1, "r": 3, "s": 2}, ("c", "k", "r", "s")),
    # reduction tile loops split by an output loop in the dataflow's order (c before k, r and s after it): the
    # partial-sum walk skips the first visits' tiles; one block (all within the array command), and c split
    # over blocks outermost (partial sums through DRAM as well)
    ("conv_ws", ["array.shape=3x2", "dataflows.ws.order=[c, k, r, s, n, p, q]"],
     {"n": 1, "k": 5, "p": 3, "q": 4, "c": 5, "r": 3, "s": 2}, {"k": 3, "c": 2, "r": 3, "s": 2}, ("k", "c", "r", "s")),
    ("conv_ws", ["array.shape=3x2", "dataflows.ws.order=[c, k, r, s, n, p, q]"],
     {"n": 1, "k": 5, "p": 3, "q": 4, "c": 5, "r": 3, "s": 2}, {"k": 2, "c": 1, "r": 2, "s": 2}, ("c", "k", "r", "s")),
]


@pytest.mark.slow
@pytest.mark.parametrize("spec, sets, bounds, tile, order", PSUM_CASES,
                         ids=["os-k-outer", "os-k-middle", "is-k-outer", "ws-single-buffered", "ws-df-order-kji",
                              "conv-c-outer", "conv-df-order-crsk", "conv-df-order-ckrs", "conv-df-order-ckrs-c-outer"])
def test_partial_sums_through_dram_matrix(spec, sets, bounds, tile, order):
    r = verify_layer(load_spec(spec, sets + SPLIT_DRAM + SPILL), bounds, tile=tile, order=order, seed=4)
    _check(r)


def test_3d_array_layer_through_the_memory_system():
    """gemm_os3d (k across axis 2, reduced by adder trees into one accumulator per C element) on a 2x3x2 array:
    A and B are stationary, loaded over 2 x 3 rows (FU (unravel(r), lane), one walk level per leading axis) with
    their lanes along k; C drains and is preloaded row by row in its lanes' FU order. Ragged on every loop, k split
    over blocks (the add onto partial sums). Exact, RTL cycles == model cycles, bytes == closed form."""
    design = load_spec("gemm_os3d", ["array.shape=2x3x2"] + SPLIT_DRAM)
    r = verify_layer(design, {"i": 5, "k": 7, "j": 4}, tile={"i": 1, "j": 1, "k": 2}, order=("i", "j", "k"), seed=3)
    _check(r)
    assert r.detail["n_blocks"] == {"i": 3, "j": 2, "k": 2}


def test_1d_array_layer_through_the_memory_system():
    """A 1-D array of 3 (gemm_ws with k across it): B stationary, loaded in one row of 3 lanes; A streamed into
    each FU; C reduced along the chain and drained from its end. Ragged on k (5 over 3), k split over 2 blocks
    (the add onto partial sums), j over 2 blocks. Exact, RTL cycles == model cycles, bytes == closed form."""
    design = load_spec("gemm_ws", ["array.shape=[3]", "dataflows.ws.spatial={k: 0}", "dataflows.ws.control=[1]"]
                       + SPLIT_DRAM)
    r = verify_layer(design, {"i": 4, "k": 5, "j": 6}, tile={"j": 3, "k": 1}, order=("j", "k"), seed=2)
    _check(r)
    assert r.detail["n_blocks"] == {"j": 2, "k": 2}


def test_broadcast_lanes_and_a_reduction_on_a_leading_axis():
    """gemm_os3d on 2x2x2 with k on axis 1 and j on the lane axis: A[i,k] is stationary and does not depend on j,
    so its 2 lanes hold one element (read once, fanned out); its rows run over (i, k), and k = 5 on 2 rows leaves
    the last k tile's second row past the bound, masked (stale buffer contents would add onto in-bound outputs).
    Exact, RTL cycles == model cycles, bytes == closed form."""
    design = load_spec("gemm_os3d", ["array.shape=2x2x2", "dataflows.os3d.spatial={i: 0, k: 1, j: 2}"] + SPLIT_DRAM)
    r = verify_layer(design, {"i": 4, "k": 5, "j": 4}, tile={"i": 1, "j": 1, "k": 1}, order=("i", "j", "k"), seed=4)
    _check(r)
    assert r.detail["n_blocks"] == {"i": 2, "j": 2, "k": 3}


def test_lanes_that_step_by_two():
    """A stride-2 1-D convolution O[k,p] += W[k,r] * I[2p+r] on 2x3 with p on the lanes: I's lanes step its one
    dimension by 2, read as one run of 6 positions (8 banks) keeping every other. Exact, RTL cycles == model."""
    from archgen.arch.spec import load_spec_data
    design = load_spec_data({"version": 1, "kind": "array", "name": "stride2", "operation": "O[k,p] += W[k,r] * I[p*2+r]",
                             "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": [2, 3]},
                             "bounds": {"k": 3, "p": 7, "r": 3}, "memory": {"dram": {"width_bytes": 8, "latency": 8}},
                             "dataflows": {"d": {"spatial": {"k": 0, "p": 1}, "order": ["k", "p", "r"], "control": [1, 1]}}})
    r = verify_layer(design, {"k": 3, "p": 7, "r": 3}, tile={"k": 1, "p": 1}, order=("k", "p"), seed=4)
    _check(r)
    assert r.detail["n_blocks"] == {"k": 2, "p": 3}


def _lanes_spec(op, shape, spatial, order, control, bounds, spill=False):
    from archgen.arch.spec import load_spec_data
    return load_spec_data({"version": 1, "kind": "array", "name": "lanes", "operation": op,
                           "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": shape},
                           "bounds": bounds, "memory": {"dram": {"width_bytes": 8, "latency": 8},
                                                        "partial_sums_through_dram": spill},
                           "dataflows": {"d": {"spatial": spatial, "order": order, "control": control}}})


CONV2 = "O[k,p,q] += I[c,p+r,q] * W[k,c,r]"


def test_output_lanes_on_two_array_axes():
    """conv2 on 2x2 with k and p on the array and q streamed: O's partial sums are read and written on 4 lanes
    (k, p) over two axes, stored lane-interleaved (k as (k div 2, k mod 2), the lanes one run of 4 positions in
    one buffer: memctl.output_lane_split). k and p ragged (k = 3 pads the last k block to 2 rows, in DRAM too);
    r and c split over blocks (the add-on write). Exact, RTL cycles == model, bytes == the padded closed form."""
    bounds = {"k": 3, "p": 5, "q": 2, "c": 2, "r": 3}
    design = _lanes_spec(CONV2, [2, 2], {"k": 0, "p": 1}, ["r", "k", "c", "p", "q"], [0, 0], bounds)
    r = verify_layer(design, bounds, tile={"r": 1, "k": 1, "c": 1, "p": 2}, order=("k", "p", "c", "r"), seed=4)
    _check(r)
    assert r.detail["n_blocks"] == {"k": 2, "p": 2, "c": 2, "r": 3}
    assert r.dram_bytes["O.write"] == 2 * 2 * 5 * 2 * 4          # (k padded to 2 x 2) x p x q, int32


OUTPUT_LANES = [  # (shape, spatial, order, control, bounds, tile, order of tiles, partial sums through DRAM)
    # a 3-D array, the reduction c on the middle axis; k ragged
    ([2, 2, 2], {"k": 0, "c": 1, "p": 2}, ["r", "k", "c", "p", "q"], [0, 0, 1], {"k": 3, "p": 4, "q": 2, "c": 3, "r": 2},
     {"r": 1, "k": 1, "c": 1, "p": 1}, ("k", "p", "r", "c"), False),
    # non-square (6 lanes, k split), r outermost: output blocks come back (partial sums through DRAM, padded too)
    ([2, 3], {"k": 0, "p": 1}, ["r", "c", "k", "p", "q"], [1, 1], {"k": 3, "p": 7, "q": 2, "c": 2, "r": 2},
     {"r": 1, "c": 2, "k": 1, "p": 2}, ("r", "k", "p", "c"), True),
]


@pytest.mark.slow
@pytest.mark.parametrize("shape, spatial, dorder, control, bounds, tile, order, spill", OUTPUT_LANES,
                         ids=["3d", "2x3_spill"])
def test_output_lanes_other_arrays(shape, spatial, dorder, control, bounds, tile, order, spill):
    r = verify_layer(_lanes_spec(CONV2, shape, spatial, dorder, control, bounds, spill), bounds, tile=tile,
                     order=order, seed=6)
    _check(r)


def test_lanes_on_two_array_axes():
    """O[k,p] += I[c,p+r] * W[k,c,r] on 2x2 with c and p on the array: I streams from 4 lanes (c, p), read as
    two runs of 2 positions (one per c, through its own read copy of I's buffer, the second one row of the
    block's box further on); c and p ragged (their lanes masked per axis). Exact, RTL cycles == model."""
    bounds = {"k": 3, "p": 5, "c": 3, "r": 3}
    design = _lanes_spec("O[k,p] += I[c,p+r] * W[k,c,r]", [2, 2], {"c": 0, "p": 1}, ["k", "p", "c", "r"], [0, 0],
                         bounds)
    r = verify_layer(design, bounds, tile={"k": 1, "p": 1, "c": 1}, order=("k", "p", "c"), seed=4)
    _check(r)
    assert r.detail["n_blocks"] == {"k": 3, "p": 3, "c": 2}


LANE_MAPS = [  # (operation, shape, spatial, order, control, bounds, tile, order of tiles)
    # a 3-D array: I from 8 lanes over (c, p, q), 4 groups
    ("O[k,p,q] += I[c,p+r,q] * W[k,c,r]", [2, 2, 2], {"c": 0, "p": 1, "q": 2}, ["k", "p", "q", "c", "r"],
     [0, 0, 0], {"k": 2, "p": 3, "q": 3, "c": 3, "r": 2}, {"k": 1, "p": 1, "q": 1, "c": 1}, ("k", "p", "q", "c")),
    # non-square, stride 2: two runs of 5 positions, every other taken
    ("O[k,p] += I[c,p*2+r] * W[k,c,r]", [2, 3], {"c": 0, "p": 1}, ["k", "p", "c", "r"], [0, 0],
     {"k": 2, "p": 7, "c": 3, "r": 3}, {"k": 1, "p": 2, "c": 1}, ("k", "p", "c")),
]


@pytest.mark.slow
@pytest.mark.parametrize("op, shape, spatial, dorder, control, bounds, tile, order", LANE_MAPS,
                         ids=["3d", "2x3_stride2"])
def test_lane_maps_other_arrays(op, shape, spatial, dorder, control, bounds, tile, order):
    r = verify_layer(_lanes_spec(op, shape, spatial, dorder, control, bounds), bounds, tile=tile, order=order, seed=5)
    _check(r)


@pytest.mark.slow
def test_broadcast_lanes_matrix_vector():
    """y[i] += A[i,k] * x[k] on 2x3, k on axis 0, i on the lanes: x is stationary and the same on every lane."""
    from archgen.arch.spec import load_spec_data
    design = load_spec_data({"version": 1, "kind": "array", "name": "mv", "operation": "y[i] += A[i,k] * x[k]",
                             "types": {"A": "int8", "x": "int8", "y": "int32"}, "array": {"shape": [2, 3]},
                             "memory": {"dram": {"width_bytes": 8, "latency": 8}},
                             "dataflows": {"d": {"spatial": {"k": 0, "i": 1}, "order": ["i", "k"], "control": [1, 1]}}})
    r = verify_layer(design, {"i": 7, "k": 5}, tile={"i": 1, "k": 1}, order=("i", "k"), seed=4)
    _check(r)


ONE_D = [  # (spec, sets, bounds, tile, order): OS, IS and a delay-connection convolution on 1-D arrays
    ("gemm_os", ["array.shape=[4]", "dataflows.os.spatial={j: 0}", "dataflows.os.control=[1]"],
     {"i": 5, "k": 6, "j": 7}, {"i": 2, "j": 1}, ("j", "i")),
    ("gemm_is", ["array.shape=[2]", "dataflows.is.spatial={k: 0}", "dataflows.is.control=[0]"],
     {"i": 6, "k": 3, "j": 5}, {"i": 3, "k": 1}, ("i", "k")),
    ("conv_rs", ["array.shape=[3]", "dataflows.rs.spatial={r: 0}", "dataflows.rs.control=[0]"],
     {"n": 1, "k": 2, "p": 5, "q": 3, "c": 2, "r": 3, "s": 2}, {"k": 1, "c": 1, "r": 1, "s": 2, "p": 3},
     ("k", "p", "c", "r", "s")),
]


@pytest.mark.slow
@pytest.mark.parametrize("spec, sets, bounds, tile, order", ONE_D, ids=[c[0] for c in ONE_D])
def test_1d_array_layers_other_dataflows(spec, sets, bounds, tile, order):
    r = verify_layer(load_spec(spec, sets + SPLIT_DRAM), bounds, tile=tile, order=order, seed=7)
    _check(r)


@pytest.mark.slow
def test_planner_chosen_partial_sums_through_dram():
    """Granted ``memory.partial_sums_through_dram``, the planner's own command for this OS layer brings C blocks
    back (i > k > j, k in chunks of 16: B's chunk stays resident across the j blocks; fewer DRAM bytes than the
    on-chip plan, tests/mappings/test_memory_tiling.py). Exact, RTL cycles == model cycles, bytes == closed form."""
    design = load_spec("gemm_os", ["array.shape=2x2", "memory.A.bytes=64", "memory.B.bytes=64", "memory.C.bytes=32"]
                       + SPLIT_DRAM + SPILL)
    r = verify_layer(design, {"i": 4, "k": 32, "j": 12}, seed=5)
    _check(r)
    assert r.detail["n_blocks"] == {"i": 2, "k": 2, "j": 6} and r.dram_bytes["C.read"] > 0


def test_refused_commands_build_nothing():
    with pytest.raises(SpecError, match=r"memory.dram.width_bytes: must be a multiple of operand C's element size"):
        verify_layer(load_spec("gemm_os", ["memory.dram.width_bytes=2"]), {"i": 4, "k": 4, "j": 4})


# small buffers so the planner makes several blocks; one burst in flight for the memory-bound setting
SMALL = ["memory.A.bytes=4096", "memory.B.bytes=4096", "memory.C.bytes=2048"]
MATRIX = [pytest.param(spec, shape, dram, id=f"{spec}-{shape}-{name}", marks=pytest.mark.slow)
          for spec in ("gemm_os", "gemm_ws", "gemm_is") for shape in ("2x2", "2x3", "4x4")
          for name, dram in (("compute", COMPUTE + SMALL), ("memory", MEMORY + ["memory.dram.outstanding=1"]))]


@pytest.mark.parametrize("spec, shape, dram", MATRIX)
def test_dataflow_shape_dram_matrix(spec, shape, dram):
    rows, cols = (int(v) for v in shape.split("x"))
    side = 2 * math.lcm(rows, cols)
    if dram[0] == COMPUTE[0]:
        bounds = {"i": 2 * side + 1, "k": 4 * side - 1, "j": 2 * side - 1}     # ragged on every loop
    else:
        bounds = {"i": side + 1, "k": side // 2 + 1, "j": side - 1}            # little reuse: DRAM-bound
    r = verify_layer(load_spec(spec, [f"array.shape={shape}"] + dram), bounds, seed=11)
    _check(r)
    stall, compute = r.detail["stall_cycles"]["dram"], r.detail["compute_cycles"]
    assert (stall < compute) if dram[0] == COMPUTE[0] else (stall > compute), (stall, compute)


@pytest.mark.slow
def test_8x8_os_layer_under_cocotb():
    """The cocotb path (verif/tb_layer.py) on the same kind of top."""
    r = verify_layer(load_spec("gemm_os", ["array.shape=8x8"] + COMPUTE), {"i": 37, "k": 41, "j": 19}, seed=4,
                     binary=False)
    _check(r)


@pytest.mark.parametrize("argv, message", [
    (["--set", "memory.C.bytes=16"], "layers.layer: operand C needs 2 x"),      # an output tile cannot be cut
    (["--dram-bw", "0"], "--dram-bw: must be in 1..65,536"),
    (["--set", "memory.dram.width_bytes=0"], "memory.dram.width_bytes"),
    (["--set", "memory.A.banks=3"], "memory.A.banks: must divide the 4 memory-fed lanes"),
    (["--set", "memory.A.banks=2"], "memory.A.banks: the generated buffer of A needs 32 banks"),
    (["--dram-bw", "4", "--ideal-dram"], "--dram-bw: does not apply with --ideal-dram"),
    (["--tile", "k=0"], "--tile k: sizes must be at least 1"),
    (["--tile", "x=2"], "--tile x: no loop of that name"),
    (["--order", "j,i"], "--order: give --tile too"),
    (["--tile", "i=1", "--ideal-dram"], "--tile: does not apply with --ideal-dram"),
    (["--tile", "i=1,j=1", "--order", "j,k"], "layers.layer.order"),
    (["--tile", "i=2"], "layers.layer.tile.j: missing: give the array tiles per block of every outer loop of dataflow "
     "'os' (i, j), e.g. j: 1"),
    # k chunks outermost: C blocks come back, which the spec does not grant
    (["--tile", "k=4,i=1,j=1", "--order", "k,i,j"], "memory.partial_sums_through_dram: the order of layer 'layer' (k > i > j) "
     "splits the reduction loop k over 4 blocks and brings output blocks back after other ones, so their partial sums "
     "go to DRAM and back; set it to true (--set memory.partial_sums_through_dram=true)"),
])
def test_verify_refuses_bad_memory_input_before_building(argv, message, capsys, monkeypatch):
    from archgen.cli import main
    import archgen.verif.layer_check as layer_check

    def no_build(*a, **k):
        raise AssertionError("nothing may run")
    import archgen.verif.layer_binary as layer_binary
    monkeypatch.setattr(layer_check, "run_testbench", no_build)
    monkeypatch.setattr(layer_binary, "run_layer_binary", no_build)      # the default (binary) path too
    assert main(["verify", "gemm_os", "--gemm", "8,16,8"] + argv) == 2
    assert message in capsys.readouterr().err


def test_verify_orders_split_inner_loops_innermost_by_default(monkeypatch):
    """``--tile k=2,i=1,j=1`` without ``--order``: the command walks i > j > k (the split inner loop innermost,
    so no output block comes back), not a refusal for an order that omits k."""
    import archgen.verif.layer_check as layer_check
    seen = {}

    def stop(compiled, cmd, *a, **k):
        seen["order"] = cmd.order
        raise SpecError([])
    monkeypatch.setattr(layer_check, "layer_program", stop)
    with pytest.raises(SpecError):
        layer_check.verify_layer(load_spec("gemm_os"), {"i": 5, "k": 6, "j": 7}, tile={"k": 2, "i": 1, "j": 1})
    assert seen["order"] == ("i", "j", "k")


def test_verify_refuses_a_command_for_another_dataflow():
    from archgen.dataflow.compile import compile_array
    from archgen.dataflow.memctl import layer_program
    from archgen.mappings.memory_tiling import plan_layer
    other = load_spec("gemm_os")
    cmd = plan_layer(other, {"i": 8, "k": 8, "j": 8}, other.dataflow(), "fc")
    with pytest.raises(SpecError, match=r"layers.fc.dataflow: the command was planned for dataflow 'os'; this "
                                        r"design runs 'ws'"):
        layer_program(compile_array(load_spec("gemm_ws")), cmd, "fc")


def test_cli_verify_runs_the_layer_through_the_memory_system(capsys):
    from archgen.cli import main
    assert main(["verify", "gemm_is", "--set", "array.shape=2x2", "--gemm", "5,6,3", "--dram-bw", "4",
                 "--dram-latency", "9", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "outputs: exact" in out and "(equal)" in out and "DRAM: A.read" in out


@pytest.mark.slow
def test_cli_verify_runs_a_given_order_with_partial_sums_through_dram(capsys):
    from archgen.cli import main
    assert main(["verify", "gemm_ws", "--set", "array.shape=2x3", "--set", "memory.partial_sums_through_dram=true",
                 "--gemm", "5,7,8", "--tile", "k=2,j=2",
                 "--order", "k,j", "--dram-bw", "8", "--dram-latency", "8", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "k:2 > j:2" in out and "outputs: exact" in out and "(equal)" in out and "C.read 160 B" in out


def _conv_os(spill: bool = False):
    """An output-stationary convolution (O kept in the FUs across the inner c; partial sums preloaded from the
    psum port for later reduction tiles) whose reduction tile loops r and s are split by the output loop k."""
    from archgen.arch.spec import load_spec_data
    return load_spec_data({
        "version": 1, "name": "conv_os", "operation": "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]",
        "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": [2, 2]},
        "memory": {"dram": {"width_bytes": 8, "latency": 6}, "partial_sums_through_dram": spill},
        "dataflows": {"os": {"spatial": {"k": 0, "q": 1}, "order": ["r", "k", "s", "n", "p", "q", "c"],
                             "inner": ["c"]}}})


@pytest.mark.slow
@pytest.mark.parametrize("tile, order", [
    ({"r": 4, "k": 4, "s": 4, "n": 4, "p": 4, "q": 4}, ("r", "k", "s", "n", "p", "q")),      # one block
    ({"r": 1, "k": 1, "s": 2, "n": 1, "p": 2, "q": 2}, ("r", "k", "s", "n", "p", "q")),      # r outermost: O comes back
], ids=["one-block", "r-outer-blocks"])
def test_psum_walk_skips_first_visits_with_preloaded_partial_sums(tile, order):
    r = verify_layer(_conv_os(spill=tile["r"] == 1), {"n": 1, "k": 3, "p": 2, "q": 3, "c": 3, "r": 2, "s": 2},
                     tile=tile, order=order,
                     seed=7)
    _check(r)
