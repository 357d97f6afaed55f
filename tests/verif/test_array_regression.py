"""Verilator regression for generated arrays: outputs exact and RTL cycles == model cycles.

Every built-in GEMM dataflow on 2x2, 4x4, 3x5 and 8x8 arrays, with a problem whose sizes are not
multiples of the array and one exact fit; the convolution spec on a small stride-2 layer; one run
with random bubbles and back-pressure on every stream (outputs must stay exact).
"""
import math

import pytest

from archgen.arch.spec import load_spec
from archgen.verif.array_check import verify_array

pytestmark = pytest.mark.verilator

GEMM_SPECS = ["gemm_os", "gemm_ws", "gemm_is", "gemm_os_bcast"]
SHAPES = ["2x2", "4x4", "3x5", "8x8"]


def _exact_fit(shape: str) -> dict:
    rows, cols = (int(v) for v in shape.split("x"))
    # every loop a multiple of both extents, whichever axis the dataflow puts it on
    side = math.lcm(rows, cols)
    return {"i": side, "k": 2 * side, "j": side}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("spec", GEMM_SPECS)
def test_gemm_ragged(spec, shape):
    design = load_spec(f"{spec}.yaml", [f"array.shape={shape}"])
    res = verify_array(design, {"i": 13, "k": 29, "j": 7}, seed=hash((spec, shape)) % 1000)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("spec", GEMM_SPECS)
def test_gemm_exact_fit(spec, shape):
    design = load_spec(f"{spec}.yaml", [f"array.shape={shape}"])
    res = verify_array(design, _exact_fit(shape), seed=7)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles


def test_conv_stride2():
    design = load_spec("conv_ws.yaml")
    res = verify_array(design, {"n": 1, "k": 6, "p": 3, "q": 4, "c": 5, "r": 3, "s": 2}, seed=3)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles


@pytest.mark.parametrize("spec", ["gemm_ws", "gemm_os"])
def test_backpressure_keeps_outputs_exact(spec):
    """Random idle cycles on every input and random ready-low on the output: same numbers, more cycles."""
    design = load_spec(f"{spec}.yaml")
    res = verify_array(design, {"i": 9, "k": 10, "j": 6}, seed=5, idle_prob=0.3, stall_prob=0.3)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles > res.model_cycles


@pytest.mark.slow
@pytest.mark.parametrize("spec", GEMM_SPECS)
def test_gemm_16x16(spec):
    design = load_spec(f"{spec}.yaml", ["array.shape=16x16"])
    res = verify_array(design, {"i": 37, "k": 41, "j": 19}, seed=11)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles


@pytest.mark.parametrize("spec, overrides", [
    ("gemm_os_bcast", ["array.shape=8x8", "clock_mhz=1000"]),   # broadcast nets pipelined (shared chains)
    ("gemm_ws", ["clock_mhz=1000"]),                           # registers inside FUs and on memory lanes
    ("conv_ws", ["clock_mhz=1000"]),
])
def test_pipelined_designs(spec, overrides):
    """The LP inserts registers at this clock target; numbers and cycles must still agree."""
    design = load_spec(f"{spec}.yaml", overrides)
    bounds = ({"n": 1, "k": 6, "p": 3, "q": 3, "c": 5, "r": 3, "s": 3} if spec.startswith("conv")
              else {"i": 13, "k": 29, "j": 7})
    res = verify_array(design, bounds, seed=9)
    assert res.detail["registers_added"] > 0
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
