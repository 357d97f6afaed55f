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


# operations the zero-fill argument alone does not cover (dataflow/stt_array.py): validity tags riding the output's
# partial-sum chain (a depthwise 1-D convolution, I[c,p+r] reused along p - r) or an input's chain, inputs re-fed
# once per line (a 1-D convolution's I[p+r], reused along two directions), an output reused along two directions
# (one line per element per box) and an output without reuse (a lane per FU)
def _op(operation, shape, stt, clock_mhz=500):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataflow"))
    from test_stt_array import _op_design
    return _op_design(operation, shape, stt, clock_mhz=clock_mhz)


OP_CASES = [
    pytest.param("O[c,p] += I[c,p+r] * W[c,r]", (3, 4), HEX, 500, {"c": 3, "p": 6, "r": 3}, 1, id="dwconv1d-3x4-tag"),
    pytest.param("O[k,p] += W[k,r] * I[p+r]", (1, 4), HEX, 500, {"k": 3, "p": 7, "r": 3}, 2, id="conv1d-1x4-refed"),
    pytest.param("O[c,p] += I[c,p+r] * W[c,r]", (2, 5), HEX, 1500, {"c": 4, "p": 5, "r": 4}, 3,
                 id="dwconv1d-2x5-tag-1500MHz", marks=pytest.mark.slow),
    pytest.param("C[i,j] += A[i,k] * B[k]", (2, 5), [[1, 1, 0], [0, 1, 0], [1, 1, 1]], 1500, {"i": 3, "j": 4, "k": 5},
                 4, id="input-carries-tag-2x5-1500MHz", marks=pytest.mark.slow),
    pytest.param("C[i] += A[i,k] * B[k,j]", (3, 3), HEX, 500, {"i": 4, "j": 3, "k": 5}, 5,
                 id="output-two-directions-3x3", marks=pytest.mark.slow),
    pytest.param("C[i,j,k] += A[i,k] * B[k,j]", (2, 3), HEX, 500, {"i": 3, "j": 4, "k": 3}, 6,
                 id="direct-output-2x3", marks=pytest.mark.slow),
    pytest.param("O[k,p] += W[k,r] * I[p+r]", (4, 3), [[1, 0, 1], [0, 1, -1], [1, 2, 1]], 500,
                 {"k": 5, "p": 4, "r": 3}, 7, id="conv1d-4x3-two-register-hops", marks=pytest.mark.slow),
    # zero padding: I[-2], I[-1] stream as 0 (dataflow/stt_host.py; numpy's wrap made it WRONG before)
    pytest.param("O[k,p] += W[k,r] * I[p-r]", (2, 3), HEX, 500, {"k": 3, "p": 5, "r": 3}, 8,
                 id="conv1d-2x3-zero-padding", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("operation,shape,stt,mhz,bounds,seed", OP_CASES)
def test_other_operations_on_verilator(operation, shape, stt, mhz, bounds, seed):
    res = verify_array(_op(operation, shape, stt, mhz), bounds, seed=seed)
    assert res.outputs_exact, res.detail
    assert res.detail["psum_reads_before_write"] == 0
    assert res.rtl_cycles == res.model_cycles


def test_tags_keep_outputs_exact_under_bubbles_and_stalls():
    res = verify_array(_op("O[c,p] += I[c,p+r] * W[c,r]", (3, 4), HEX), {"c": 2, "p": 5, "r": 3}, seed=12,
                       idle_prob=0.3, stall_prob=0.3)
    assert res.outputs_exact, res.detail
