"""ONE run-time programmable stt layer build running a stream of layers back to back on Verilator
(verif/stt_layer_check.py ``verify_stt_program``, rtlgen/stt_layer.py ``SttLayerProgramTop``): per layer the host
writes the layer's command into the core, the core runs it; every layer's output exact against numpy, its RTL
cycles == the model's (``simulate_stt_layer`` with the build's box and period), the DMA's bytes over the stream
== the model's. One case by default (gemm_hex on 3x5: one block, a grid of ragged blocks, a layer smaller than
the box, a layer split along i); the others with --runslow."""
import pytest

from archgen.arch.spec import load_spec, load_spec_data
from archgen.verif.stt_layer_check import verify_stt_program

HEX = [[1, 0, -1], [0, 1, -1], [1, 1, 1]]
DRAM8 = ["memory.dram.width_bytes=8", "memory.dram.latency=5", "memory.dram.burst_bytes=16",
         "memory.dram.outstanding=2"]


def _check(res, n_layers):
    assert res["error"] is None, res
    assert len(res["layers"]) == n_layers >= 3
    for row in res["layers"]:
        assert row["exact"], row
        assert row["rtl_cycles"] == row["model_cycles"], row
    assert res["rtl_dram_bytes"] == res["model_dram_bytes"]
    assert len({tuple(sorted(r["layer"].items())) for r in res["layers"]}) == n_layers     # different shapes


def test_one_gemm_hex_build_runs_four_layers_back_to_back():
    design = load_spec("gemm_hex", ["array.shape=3x5", "memory.A.bytes=64", "memory.B.bytes=64",
                                    "memory.C.bytes=256"] + DRAM8)
    layers = [{"i": 7, "k": 5, "j": 6}, {"i": 11, "k": 9, "j": 9}, {"i": 1, "k": 1, "j": 1}, {"i": 5, "k": 13, "j": 2}]
    res = verify_stt_program(design, layers, seed=5)
    _check(res, 4)
    assert res["box"] == {"i": 2, "j": 4, "k": 2} and res["period"] == 2
    grids = [r["grid"] for r in res["layers"]]
    assert grids[0] == {} and grids[1] == {"i": 2, "j": 3} and grids[3] == {"k": 2}    # blocks, ragged
    # the fewest-cycles planner; the "most on chip" one took i 2 x j 2 x k 2 and i 2: 752 and 166 cycles
    assert [r["rtl_cycles"] for r in res["layers"]] == [143, 546, 32, 135]


@pytest.mark.slow
@pytest.mark.parametrize("design, layers, seed", [
    (load_spec("conv1d_hex", ["array.shape=3x5", "memory.W.bytes=64", "memory.I.bytes=40", "memory.O.bytes=512"]
               + DRAM8),
     [{"k": 7, "p": 9, "r": 4}, {"k": 3, "p": 20, "r": 2}, {"k": 9, "p": 5, "r": 5}, {"k": 1, "p": 3, "r": 1}], 5),
    (load_spec("gemm_hex", ["array.shape=3x5", "memory.A.bytes=256", "memory.B.bytes=256", "memory.C.bytes=1024"]
               + DRAM8),       # the second layer's output comes back one box later: boxes two groups apart
     [{"i": 7, "k": 5, "j": 6}, {"i": 2, "k": 9, "j": 3}, {"i": 10, "k": 3, "j": 13}], 3),
    (load_spec("gemm_hex", ["array.shape=1x4"] + DRAM8),
     [{"i": 5, "k": 7, "j": 6}, {"i": 3, "k": 2, "j": 9}, {"i": 8, "k": 4, "j": 1}], 4),
    (load_spec("gemm_hex", ["memory.A.bytes=128", "memory.B.bytes=128", "memory.C.bytes=512"] + DRAM8),
     [{"i": 9, "k": 7, "j": 10}, {"i": 4, "k": 4, "j": 4}, {"i": 13, "k": 2, "j": 5}], 1),
    (load_spec_data({"version": 1, "name": "dwconv_hex", "operation": "O[c,p] += I[c,p+r] * W[c,r]",
                     "clock_mhz": 1500, "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": [2, 5]},
                     "dataflows": {"d": {"stt": HEX}}, "memory": {"dram": {"width_bytes": 8, "latency": 13}}}),
     [{"c": 4, "p": 5, "r": 4}, {"c": 2, "p": 9, "r": 3}, {"c": 5, "p": 3, "r": 1}], 9),   # validity tags
])
def test_more_builds_run_layer_streams(design, layers, seed):
    _check(verify_stt_program(design, layers, seed=seed), len(layers))


@pytest.mark.slow
def test_a_fused_designs_skewed_map_runs_layer_streams_through_the_memory_system():
    """gemm_fused_hex (os + hex) on 3x5 at 1500 MHz: the hex view's one build around the FUSED array (its
    command selects hex; the shared multiplier stages in the view's timing), four layers back to back."""
    design = load_spec("gemm_fused_hex", ["array.shape=3x5", "clock_mhz=1500", "memory.A.bytes=64",
                                          "memory.B.bytes=64", "memory.C.bytes=256"] + DRAM8)
    layers = [{"i": 7, "k": 5, "j": 6}, {"i": 11, "k": 9, "j": 9}, {"i": 1, "k": 1, "j": 1}, {"i": 5, "k": 13, "j": 2}]
    res = verify_stt_program(design, layers, seed=5, fuse=("os", "hex"))
    _check(res, 4)
    assert [r["rtl_cycles"] for r in res["layers"]] == [145, 768, 34, 170]    # the view's extra stages: +2 a block
