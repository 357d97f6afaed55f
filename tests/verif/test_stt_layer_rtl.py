"""Skewed stt maps through the stt memory system on Verilator (verif/stt_layer_check.py, a stand-alone binary):
outputs exact, RTL cycles == model cycles, DMA bytes == the model's. Three cases by default (the CLI on gemm_hex, on
the one run-time programmable build; conv1d_hex on a 1xN array and a grid of blocks on gemm_hex on tops specialised
to their layer, ``per_layer=True``); the others with --runslow (specialised tops; the one build's layer streams:
tests/verif/test_stt_program_rtl.py)."""
import pytest

from archgen.arch.spec import load_spec, load_spec_data
from archgen.verif.stt_layer_check import verify_stt_layer

HEX = [[1, 0, -1], [0, 1, -1], [1, 1, 1]]


def _gemm(shape, stt, clock_mhz=500, dram=None):
    data = {"version": 1, "name": "gemm_stt", "operation": "C[i,j] += A[i,k] * B[k,j]", "clock_mhz": clock_mhz,
            "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": list(shape)},
            "dataflows": {"d": {"stt": stt, "order": ["k", "i", "j"]}}}
    if dram:
        data["memory"] = {"dram": dram}
    return load_spec_data(data)


def _check(res):
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
    assert res.detail["rtl_dram_bytes"] == res.dram_bytes
    assert res.ok


def test_cli_verifies_gemm_hex_through_its_memory_system(tmp_path, monkeypatch):
    from conftest import run_cli
    rc, out, err = run_cli(["verify", "gemm_hex", "--set", "array.shape=3x5", "--gemm", "7,5,6", "--seed", "3"],
                           tmp_path, monkeypatch)
    assert rc == 0, out + err
    assert "outputs: exact" in out
    # the one run-time programmable build (what build --memory makes, sim models: 261 cycles there too)
    assert "the one run-time programmable build (boxes of {'i': 2, 'j': 4, 'k': 2}, one every 2 slots" in out
    assert "RTL cycles:   261 cycles" in out and "model cycles: 261 cycles  (equal)" in out
    assert "DRAM: A.read 64 B, B.read 64 B, C.write 256 B" in out     # regions in bank order (whole bank rows)


def test_conv1d_hex_on_a_row_of_fus():
    design = load_spec("conv1d_hex", ["array.shape=1x4", "memory.dram.width_bytes=8", "memory.dram.latency=11"])
    _check(verify_stt_layer(design, {"k": 3, "p": 7, "r": 3}, seed=5, per_layer=True))


@pytest.mark.slow
@pytest.mark.parametrize("design, bounds, seed", [
    (load_spec("gemm_hex"), {"i": 9, "k": 7, "j": 10}, 1),
    (_gemm((2, 4), HEX, 1500, {"width_bytes": 16, "latency": 20, "burst_bytes": 32, "outstanding": 2}),
     {"i": 5, "k": 4, "j": 6}, 2),
    (_gemm((3, 4), [[1, 0, 1], [0, 1, -1], [1, 2, 1]]), {"i": 6, "k": 5, "j": 7}, 3),
    (_gemm((5, 3), HEX, dram={"width_bytes": 4, "latency": 9, "burst_bytes": 8, "outstanding": 1}),
     {"i": 11, "k": 6, "j": 4}, 4),
    (load_spec("conv1d_hex"), {"k": 8, "p": 16, "r": 3}, 7),
    (load_spec("conv1d_hex", ["array.shape=3x5"]), {"k": 7, "p": 9, "r": 4}, 8),
    (load_spec_data({"version": 1, "name": "dwconv_hex", "operation": "O[c,p] += I[c,p+r] * W[c,r]",
                     "clock_mhz": 1500, "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": [2, 5]},
                     "dataflows": {"d": {"stt": HEX}}, "memory": {"dram": {"width_bytes": 8, "latency": 13}}}),
     {"c": 4, "p": 5, "r": 4}, 9),                       # validity tags on the partial sums, pipelined
    (load_spec_data({"version": 1, "name": "ring_hex", "operation": "C[i,j] += A[i,k] * B[k]", "clock_mhz": 1500,
                     "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": [2, 5]},
                     "dataflows": {"d": {"stt": [[1, 1, 0], [0, 1, 0], [1, 1, 1]], "order": ["i", "j", "k"]}},
                     "memory": {"dram": {"width_bytes": 8}}}), {"i": 3, "j": 4, "k": 5}, 10),   # output ring
    (_gemm((3, 3), [[0, 1, 1], [0, 0, 1], [1, 1, 1]]), {"i": 5, "k": 4, "j": 6}, 11),          # input ring (B)
])
def test_more_maps_and_arrays(design, bounds, seed):
    _check(verify_stt_layer(design, bounds, seed=seed, per_layer=True))


DRAM8 = ["memory.dram.width_bytes=8", "memory.dram.latency=5", "memory.dram.burst_bytes=16",
         "memory.dram.outstanding=2"]


def _bufs(a, b, c, names=("A", "B", "C")):
    return [f"memory.{n}.bytes={v}" for n, v in zip(names, (a, b, c))]


def test_blocks_of_boxes_on_gemm_hex():
    """Banked buffers smaller than the layer's storage: a 3 x 2 x 2 grid of blocks (i 3, j 6, k 4), ragged in j and k.
    (Buffers 50, 27, 61 B gave a 3 x 3 x 2 grid before the planner took the fewest cycles; now i 2 x j 5.)"""
    res = verify_stt_layer(load_spec("gemm_hex", _bufs(24, 27, 80) + DRAM8), {"i": 9, "k": 7, "j": 10}, seed=1,
                           per_layer=True)
    _check(res)
    assert res.detail["grid"] == {"i": 3, "j": 2, "k": 2}


@pytest.mark.slow
@pytest.mark.parametrize("design, bounds, seed, grid", [
    (load_spec("gemm_hex", ["array.shape=1x4"] + _bufs(28, 33, 84) + DRAM8), {"i": 5, "k": 7, "j": 6}, 4,
     {"j": 2, "k": 2}),
    (load_spec("conv1d_hex", ["array.shape=3x5"] + _bufs(400, 40, 2000, ("W", "I", "O")) + DRAM8),
     {"k": 7, "p": 9, "r": 4}, 6, {"p": 3}),                                       # p:2 x r:2 before 2026-12-06
    (load_spec_data({"version": 1, "name": "dwconv_hex", "operation": "O[c,p] += I[c,p+r] * W[c,r]",
                     "clock_mhz": 1500, "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": [2, 5]},
                     "dataflows": {"d": {"stt": HEX}},
                     "memory": {"dram": {"width_bytes": 8, "latency": 13}, "I": {"bytes": 224}, "W": {"bytes": 11},
                                "O": {"bytes": 80}}}),
     {"c": 4, "p": 5, "r": 4}, 9, {"r": 2}),
    (load_spec_data({"version": 1, "name": "gemm_stt", "operation": "C[i,j] += A[i,k] * B[k,j]", "clock_mhz": 1500,
                     "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": [2, 4]},
                     "dataflows": {"d": {"stt": HEX, "order": ["k", "i", "j"]}},
                     "memory": {"dram": {"width_bytes": 8, "latency": 20, "burst_bytes": 16},
                                "A": {"bytes": 16}, "B": {"bytes": 24}, "C": {"bytes": 120}}}),
     {"i": 5, "k": 4, "j": 6}, 2, {"k": 2}),                                      # pipelined at 1.5 GHz
])
def test_more_blocks(design, bounds, seed, grid):
    res = verify_stt_layer(design, bounds, seed=seed, per_layer=True)
    _check(res)
    assert res.detail["grid"] == grid


def _conv(op, shape, mem):
    m = {"dram": {"width_bytes": 8, "latency": 5, "burst_bytes": 16, "outstanding": 2}}
    m.update(mem)
    return load_spec_data({"version": 1, "name": "conv_hex", "operation": op, "clock_mhz": 500,
                           "types": {"W": "int8", "I": "int8", "O": "int32"}, "array": {"shape": list(shape)},
                           "dataflows": {"hex": {"stt": HEX, "order": ["r", "k", "p"]}}, "memory": m})


# an input index with a negative coefficient (a true convolution's I[p-r]): blocks that cut p hold a halo below their
# first index (dataflow/stt_layer.py ``block_halo``; refused before H115). By default the smallest such layer (1x2,
# I 16 B: blocks of p 6 whose I regions start 2 elements lower; before: exit 2). Blocks of 4 along r of I[p-r+3] keep
# every local index >= 0, but the second r block's region starts at I[-4]: its padding is zero in the DRAM image
# (numpy wrapped it: WRONG, RTL == model 104 cycles). With --runslow: I[p-r] in one block (the padding below I[0]), in
# blocks along r alone (no halo: what lies below such a block is padding), blocks of r 4 (136 cycles: the plan the
# "most on chip" search took; the fewest-cycles planner takes k 3, 123 cycles, main's plan) and conv1d_hex's 3x5
# blocked layer (H111b: WRONG with RTL == model 198 cycles when its regions had no halo; blocks of p 2 x r 2 with a
# halo of 1: 236 cycles; the planner's choice now: p 3 with a halo of 3, 186 cycles).
@pytest.mark.parametrize("op, shape, mem, bounds, grid, cycles", [
    ("O[k,p] += W[k,r] * I[p-r]", (1, 2), {"I": {"bytes": 16}}, {"k": 1, "p": 9, "r": 3}, {"p": 2}, 66),
    ("O[k,p] += W[k,r] * I[p-r+3]", (1, 4), {"W": {"bytes": 16}}, {"k": 3, "p": 5, "r": 8}, {"r": 2}, 104),
    pytest.param("O[k,p] += W[k,r] * I[p-r]", (1, 4), {}, {"k": 3, "p": 7, "r": 3}, {}, 60, marks=pytest.mark.slow),
    pytest.param("O[k,p] += W[k,r] * I[p-r]", (1, 4), {"W": {"bytes": 8}}, {"k": 2, "p": 5, "r": 8}, {"r": 2}, 80,
                 marks=pytest.mark.slow),
    pytest.param("O[k,p] += W[k,r] * I[p-r]", (1, 4), {"W": {"bytes": 8}}, {"k": 3, "p": 5, "r": 8}, {"k": 3}, 123,
                 marks=pytest.mark.slow),
    pytest.param("O[k,p] += W[k,r] * I[p-r]", (3, 5), {"W": {"bytes": 400}, "I": {"bytes": 40}, "O": {"bytes": 2000}},
                 {"k": 7, "p": 9, "r": 4}, {"p": 3}, 186, marks=pytest.mark.slow),
])
def test_an_index_below_the_tensor_through_the_stt_memory_system(op, shape, mem, bounds, grid, cycles):
    res = verify_stt_layer(_conv(op, shape, mem), bounds, seed=6, per_layer=True)
    _check(res)
    assert res.detail["grid"] == grid
    assert res.rtl_cycles == cycles                  # measured on Verilator, 2026-12-05
