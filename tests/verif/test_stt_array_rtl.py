"""Verilator: skewed stt maps (hexagonal / diagonal arrays, dataflow/stt_array.py; issue 14 item 3).

Each case: outputs exact (beats against the host program, the assembled result against numpy), no partial
sum read before the output beat that wrote it, and RTL cycles == model cycles. Shapes: square, non-square
and 1xN arrays, ragged GEMM sizes, several seeds, hops of two registers and of none (a combinational
partial-sum chain), operands kept on one FU (register rings loaded through per-FU lanes), random stream
bubbles and output stalls.
"""
import pytest

from archgen.arch.spec import load_spec, load_spec_data
from archgen.verif.array_check import verify_array

pytestmark = pytest.mark.verilator

HEX = [[1, 0, -1], [0, 1, -1], [1, 1, 1]]


def _design(shape, stt, order=("k", "i", "j"), clock_mhz=500):
    return load_spec_data({"version": 1, "name": "gemm_stt", "operation": "C[i,j] += A[i,k] * B[k,j]",
                           "clock_mhz": clock_mhz,
                           "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": list(shape)},
                           "dataflows": {"d": {"stt": stt, "order": list(order)}}})


CASES = [
    pytest.param((3, 5), HEX, {"i": 4, "k": 7, "j": 3}, 1, id="hex-3x5-seed1"),
    pytest.param((3, 5), HEX, {"i": 7, "k": 5, "j": 6}, 2, id="hex-3x5-seed2"),
    pytest.param((1, 4), HEX, {"i": 3, "k": 4, "j": 5}, 3, id="hex-1x4"),
    pytest.param((3, 4), [[1, 0, 1], [0, 1, -1], [1, 2, 1]], {"i": 4, "k": 3, "j": 5}, 4, id="diag-3x4-two-register-hops",
                 marks=pytest.mark.slow),
    pytest.param((3, 3), [[1, 0, -1], [0, 1, -1], [1, 1, 0]], {"i": 3, "k": 5, "j": 4}, 5, id="diag-3x3-combinational-psum"),
    pytest.param((3, 3), [[1, 1, 0], [0, 1, 0], [1, 1, 1]], {"i": 4, "k": 5, "j": 3}, 10,
                 id="sheared-3x3-stationary-C-ring"),
    pytest.param((3, 3), [[1, 0, 1], [1, 0, 0], [0, 1, 1]], {"i": 3, "k": 2, "j": 5}, 11,
                 id="3x3-stationary-A-ring", marks=pytest.mark.slow),
    pytest.param((8, 8), HEX, {"i": 13, "k": 11, "j": 9}, 6, id="hex-8x8", marks=pytest.mark.slow),
    pytest.param((2, 6), [[2, 0, -1], [0, 1, -1], [1, 1, 1]], {"i": 3, "k": 5, "j": 7}, 7, id="hex-2x6-two-fu-hops",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("shape,stt,bounds,seed", CASES)
def test_skewed_stt_on_verilator(shape, stt, bounds, seed):
    res = verify_array(_design(shape, stt), bounds, seed=seed)
    assert res.outputs_exact, res.detail
    assert res.detail["psum_reads_before_write"] == 0
    assert res.rtl_cycles == res.model_cycles


def test_bubbles_and_stalls_keep_outputs_exact():
    res = verify_array(_design((3, 5), HEX), {"i": 5, "k": 6, "j": 4}, seed=8, idle_prob=0.3, stall_prob=0.3)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles > res.model_cycles        # the model's figure is the ideal-stream one


def test_gemm_hex_pipelined_for_the_clock():
    """1500 MHz (ASIC delay table): two registers behind every multiplier, partial sums two slots later."""
    design = load_spec("gemm_hex", ["array.shape=2x4", "clock_mhz=1500"])
    res = verify_array(design, {"i": 5, "k": 4, "j": 6}, seed=9)
    assert res.detail["registers_added"] == 2 * 8
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
