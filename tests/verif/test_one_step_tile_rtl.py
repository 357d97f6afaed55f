"""Verilator: a dataflow whose last loop in ``order`` runs on the array (docs/dataflows.md "One-step tiles").

GEMM on 2x2, ``spatial: {i: 0, j: 1}``, order [i, k, j]: no temporal loop is left inside a tile, so every tile is
one step (issue 14; the spec check refused it before 2026-12-05). Ragged bounds (i, j not multiples of 2), so the
last tiles are padded. Outputs exact, no partial sum read before its write, RTL cycles == model cycles.
"""
import pytest

from archgen.arch.spec import load_spec_data
from archgen.mappings.tiling import map_problem
from archgen.verif.array_check import verify_array
from archgen.verif.layer_check import verify_layer

pytestmark = pytest.mark.verilator

GEMM = {"version": 1, "kind": "array", "name": "gemm_one_step", "operation": "C[i,j] += A[i,k] * B[k,j]",
        "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": [2, 2]},
        "dataflows": {"d": {"spatial": {"i": 0, "j": 1}, "order": ["i", "k", "j"], "control": [0, 0]}}}
BOUNDS = {"i": 5, "j": 3, "k": 4}


def test_gemm_order_i_k_j_one_step_tiles_exact_with_model_cycles():
    design = load_spec_data(GEMM)
    assert design.dataflow("d").one_step_tile() is not None
    mapping = map_problem(design, BOUNDS)
    assert (mapping.steps, mapping.n_tiles) == (1, 3 * 4 * 2)      # t_i, k, t_j: one step each
    res = verify_array(design, BOUNDS, seed=1)
    assert res.outputs_exact, res.detail
    assert res.detail["psum_reads_before_write"] == 0
    assert res.rtl_cycles == res.model_cycles, (res.rtl_cycles, res.model_cycles)


@pytest.mark.slow
def test_gemm_order_i_k_j_one_step_tiles_through_the_memory_system():
    design = load_spec_data(GEMM)
    r = verify_layer(design, BOUNDS, seed=2)
    assert r.outputs_exact, r.detail
    assert r.rtl_cycles == r.model_cycles, (r.rtl_cycles, r.model_cycles, r.command)
    assert r.detail["rtl_dram_bytes"] == r.dram_bytes
