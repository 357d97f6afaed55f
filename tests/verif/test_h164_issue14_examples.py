"""The issue-14 audit's own specs (examples/issue14/, docs/limits.md "Acceptance audit of issue 14") at the array
level in Amaranth's simulator: exact outputs and RTL cycles == model cycles, on other problem sizes and seeds than
the audit's Verilator runs (which go through the memory system)."""
from pathlib import Path

import pytest

from archgen.arch.spec import load_spec
from archgen.verif.array_amaranth import verify_array_amaranth
from archgen.verif.fused_amaranth import verify_fused_amaranth

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "issue14"


@pytest.mark.parametrize("name,bounds,dataflow", [
    ("conv1d_skew_map", {"k": 4, "p": 5, "c": 3, "r": 2}, None),          # schedule: map, skew on r
    ("conv1d_red2_3d", {"k": 3, "p": 4, "c": 7, "r": 5}, None),           # reduction across axes 1 and 2
    ("conv_rs_1xn", {"n": 2, "k": 1, "p": 4, "q": 2, "c": 1, "r": 6, "s": 3}, None),   # delay FIFOs on 1x5
    ("conv_rs_outer_fifo", {"n": 1, "k": 3, "p": 4, "q": 2, "c": 2, "r": 5, "s": 2}, None),  # run-time FIFO depth
    ("gemm_map_sched", {"i": 3, "j": 6, "k": 7}, "mapsched"),
    ("gemm_map_sched", {"i": 3, "j": 6, "k": 7}, "skewc"),
])
def test_audit_spec_runs_exact_with_model_cycles(name, bounds, dataflow):
    res = verify_array_amaranth(load_spec(EXAMPLES / f"{name}.yaml"), bounds, seed=164, dataflow=dataflow)
    assert res.ok, res.detail
    assert res.rtl_cycles == res.model_cycles


@pytest.mark.parametrize("name,fuse,bounds", [
    ("fold_ws_fused", ["fold", "ws"], {"i": 5, "j": 3, "k": 7}),          # a folded map beside a spatial form
    ("gemm_map_sched", ["mapsched", "os", "skewc"], {"i": 3, "j": 6, "k": 7}),
])
def test_audit_fused_spec_runs_each_dataflow_exact_with_model_cycles(name, fuse, bounds):
    results = verify_fused_amaranth(load_spec(EXAMPLES / f"{name}.yaml"), fuse, bounds, seed=165)
    assert [r.dataflow for r in results] == fuse
    for res in results:
        assert res.ok, (res.dataflow, res.detail)
        assert res.rtl_cycles == res.model_cycles, res.dataflow
