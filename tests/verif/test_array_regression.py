"""Verilator regression for generated arrays: outputs exact and RTL cycles == model cycles.

The cases are the shared catalogue (array_cases.py): every built-in GEMM dataflow on 2x2, 4x4, 3x5 and
8x8 arrays with a problem whose sizes are not multiples of the array and one exact fit; the convolution
spec on a small stride-2 layer; runs with random bubbles and back-pressure on every stream (outputs
must stay exact); designs the LP pipelines; 16x16 arrays (opt-in). Both cycle counts must also equal
the table recorded from the verified RTL before the compile-step refactor (test_array_cycles.py).
"""
import pytest

from archgen.arch.spec import load_spec
from archgen.verif.array_check import verify_array

from array_cases import ARRAY_CASES
from test_array_cycles import recorded

pytestmark = pytest.mark.verilator


def _marked(case):
    return pytest.param(case, id=case.id, marks=[pytest.mark.slow] if case.slow else [])


@pytest.mark.parametrize("case", [_marked(c) for c in ARRAY_CASES])
def test_array_case(case):
    design = load_spec(case.spec, list(case.overrides))
    res = verify_array(design, dict(case.bounds), seed=case.seed, idle_prob=case.idle_prob,
                       stall_prob=case.stall_prob)
    assert res.outputs_exact, res.detail
    if case.id.startswith("pipelined-"):
        assert res.detail["registers_added"] > 0
    if case.backpressure:
        assert res.rtl_cycles > res.model_cycles       # random bubbles and stalls cost cycles
    else:
        assert res.rtl_cycles == res.model_cycles
    want = recorded(case.id)
    assert (res.rtl_cycles, res.model_cycles) == (want["rtl_cycles"], want["model_cycles"])
