"""Verilator: GEMMs whose map skews the tile-innermost loop by the FU coordinates (issue 14 item 3).

The array runs the tiled map with the control vector the skew implies (dataflow/interconnect.py
``tiled_equivalent``); each case: outputs exact, RTL cycles == model cycles.
"""
import pytest

from archgen.arch.spec import load_spec_data
from archgen.verif.array_check import verify_array

pytestmark = pytest.mark.verilator


def _design(shape, mp, order):
    return load_spec_data({"version": 1, "name": "gemm_skew", "operation": "C[i,j] += A[i,k] * B[k,j]",
                           "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": list(shape)},
                           "dataflows": {"skew": {"map": mp, "order": order}}})


CASES = [
    pytest.param((3, 2), {"i": "3*t_i + s0", "j": "2*t_j + s1", "k": "t_k - s0 - s1"}, ["i", "j", "k"],
                 {"i": 5, "j": 3, "k": 7}, 2, id="os-3x2"),
    pytest.param((2, 3), {"i": "t_i - s0 - s1", "j": "3*t_j + s1", "k": "2*t_k + s0"}, ["j", "k", "i"],
                 {"i": 6, "j": 5, "k": 3}, 9, id="ws-2x3"),
    pytest.param((1, 4), {"i": "t_i", "j": "4*t_j + s1", "k": "t_k - 2*s1"}, ["i", "j", "k"],
                 {"i": 3, "j": 6, "k": 4}, 4, id="os-1x4-skew2"),
]


@pytest.mark.parametrize("shape,mp,order,bounds,seed", CASES)
def test_skewed_map_on_verilator(shape, mp, order, bounds, seed):
    res = verify_array(_design(shape, mp, order), bounds, seed=seed)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
