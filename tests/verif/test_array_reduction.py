"""Verilator: outputs reduced across an array axis into accumulators (gemm_os3d, issue 14 item 4).

The FUs along the reduced axis are summed every step (adder trees when the control vector is 0 on it,
partial-sum chains otherwise) into one accumulator per output element, pipelined by the LP like any
other path; the accumulators are preloaded with partial sums only after the previous tile drained.
Each case: outputs exact, no partial sum read before it was written, RTL cycles == model cycles.
"""
import pytest
import yaml

from archgen.arch.spec import load_spec, load_spec_data
from archgen.verif.array_check import verify_array

pytestmark = pytest.mark.verilator

CASES = [
    pytest.param(("array.shape=2x3x2",), {"i": 5, "j": 4, "k": 7}, 3, id="tree-2x3x2"),
    pytest.param(("array.shape=3x1x2", "dataflows.os3d.control=[1,1,1]"), {"i": 4, "j": 2, "k": 5}, 4,
                 id="chain-3x1x2"),
    pytest.param(("array.shape=4x4x2", "clock_mhz=1000"), {"i": 9, "j": 6, "k": 5}, 6, id="pipelined-4x4x2",
                 marks=pytest.mark.slow),
    pytest.param(("array.shape=1x4x3",), {"i": 2, "j": 7, "k": 8}, 9, id="tree-1x4x3", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("overrides,bounds,seed", CASES)
def test_reduced_accumulators_on_verilator(overrides, bounds, seed):
    res = verify_array(load_spec("gemm_os3d", list(overrides)), bounds, seed=seed)
    assert res.outputs_exact, res.detail
    assert res.detail["psum_reads_before_write"] == 0
    assert res.rtl_cycles == res.model_cycles
    if "clock_mhz=1000" in overrides:
        assert res.detail["registers_added"] > 0          # the trees were pipelined


CONV_OS3D = """
version: 1
kind: array
name: conv_os3d
clock_mhz: 500
operation: "O[n,k,p,q] += I[n,c,p*2+r,q*2+s] * W[k,c,r,s]"
types: {I: int8, W: int8, O: int32}
array: {shape: [2, 3, 2]}
dataflows:
  os: {spatial: {k: 0, p: 1, c: 2}, order: [n, k, p, q, c, r, s], inner: [r, s], control: [1, 1, 0]}
"""


def test_convolution_with_channels_reduced_across_an_axis():
    """Streamed inputs, several steps per tile (the filter window), input channels summed by trees across
    axis 2, and partial sums over channel tiles preloaded after the previous tile drained."""
    design = load_spec_data(yaml.safe_load(CONV_OS3D), source="conv_os3d")
    res = verify_array(design, {"n": 1, "k": 3, "p": 3, "q": 2, "c": 5, "r": 2, "s": 3}, seed=12)
    assert res.outputs_exact, res.detail
    assert res.detail["psum_reads_before_write"] == 0
    assert res.rtl_cycles == res.model_cycles
