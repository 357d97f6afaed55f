"""Dataflows whose last loop in ``order`` runs on the array: one-step tiles (docs/dataflows.md "One-step tiles").

The spec check refused them before 2026-12-05 ("no temporal loop runs inside a tile", 14,100 specs of the
refusal search). They run as tiles of one step: every input held for it, the output accumulated in place (or
reduced across the array) and drained after it, partial sums of earlier tiles brought back in. These tests pin
the spec, --explain and manifest wording, the mapping, and run small cases in Amaranth's simulator against the
cycle model (tests/verif/test_one_step_tile_rtl.py runs one on Verilator).
"""
from __future__ import annotations

import pytest

from archgen.arch.spec import builtin_specs, load_spec, load_spec_data
from archgen.dataflow.explain import explain
from archgen.mappings.tiling import map_problem
from archgen.verif.array_amaranth import verify_array_amaranth

_OPS = {
    "gemm": ("C[i,j] += A[i,k] * B[k,j]", {"A": "int8", "B": "int8", "C": "int32"}),
    "conv1": ("O[k,p] += W[k,r] * I[p+r]", {"W": "int8", "I": "int8", "O": "int32"}),
}


def _design(op, shape, df):
    expr, types = _OPS[op]
    return load_spec_data({"version": 1, "kind": "array", "name": "one_step", "operation": expr, "types": types,
                           "array": {"shape": shape}, "dataflows": {"d": df}})


GEMM_IKJ = {"spatial": {"i": 0, "j": 1}, "order": ["i", "k", "j"], "control": [0, 0]}


def test_order_ending_on_a_spatial_loop_is_accepted_as_one_step_tiles():
    df = _design("gemm", [2, 2], GEMM_IKJ).dataflow("d")
    assert df.inner_dims() == () and df.outer_dims() == ("i", "k", "j")
    assert df.order == ("i", "k", "j")                      # the user's order, as written
    assert df.one_step_tile().startswith("one step per tile: the last loop of order, j, runs on array axis 1")


def test_builtin_one_step_tiles_are_gemm_os3d_alone():
    """gemm_os3d puts every loop on the array (i, j, k on 2x2x2): its tiles were one step before the change;
    every other built-in tiled dataflow runs loops inside its tiles."""
    found = []
    for name in builtin_specs():
        if "spatten" in name:                                   # SpAtten specs: no dataflows
            continue
        design = load_spec(name)
        found += [(name, df.name) for df in getattr(design, "dataflows", ()) if df.one_step_tile()]
    assert found == [("gemm_os3d.yaml", "os3d")]


def test_mapping_runs_one_step_per_tile():
    design = _design("gemm", [2, 2], GEMM_IKJ)
    m = map_problem(design, {"i": 5, "j": 3, "k": 4})
    assert m.steps == 1
    assert m.n_tiles == 3 * 4 * 2                          # trips of t_i, k, t_j
    assert m.reduction_outer_dims == ("k",)                 # partial sums across tiles: k is outside the tile


def test_explain_and_manifest_say_the_tile_is_one_step():
    from archgen.rtlgen.build import build_array
    design = _design("gemm", [2, 2], GEMM_IKJ)
    lines = explain(design)
    assert "temporal order (outer->inner): i, k, j; inside a tile: -;" in lines[2]
    assert [ln for ln in lines if ln.startswith("  tile: one step per tile: the last loop of order, j")]
    _text, manifest = build_array(design, pipeline=False)
    assert manifest["parameters"]["order"] == ["i", "k", "j"] and manifest["parameters"]["inner"] == []
    assert manifest["parameters"]["tile"] == design.dataflow("d").one_step_tile()


@pytest.mark.parametrize("op,shape,df,bounds", [
    ("gemm", [2, 2], GEMM_IKJ, {"i": 5, "j": 3, "k": 3}),
    ("gemm", [2, 2], {"spatial": {"i": 0, "j": 1}, "order": ["k", "i", "j"], "control": [1, 1]}, {"i": 3, "j": 5, "k": 2}),
    # k on the array: the output is reduced across axis 1 (a chain: control 1) before its accumulator
    ("gemm", [2, 2], {"spatial": {"i": 0, "k": 1}, "order": ["j", "i", "k"], "control": [0, 1]}, {"i": 3, "j": 2, "k": 5}),
    ("gemm", [3], {"spatial": {"j": 0}, "order": ["i", "k", "j"], "control": [0]}, {"i": 2, "j": 4, "k": 3}),
    ("conv1", [2, 3], {"spatial": {"k": 0, "p": 1}, "order": ["r", "k", "p"], "control": [1, 0]}, {"k": 3, "p": 5, "r": 3}),
], ids=["gemm-ikj", "gemm-kij-systolic", "gemm-k-chain", "gemm-1d", "conv1-2x3"])
def test_one_step_tiles_exact_with_model_cycles_in_amaranth(op, shape, df, bounds):
    design = _design(op, shape, df)
    assert design.dataflow("d").one_step_tile() is not None
    r = verify_array_amaranth(design, bounds, seed=7)
    assert r.outputs_exact, r.detail
    assert r.detail["psum_reads_before_write"] == 0
    assert r.rtl_cycles == r.model_cycles, (r.rtl_cycles, r.model_cycles)
