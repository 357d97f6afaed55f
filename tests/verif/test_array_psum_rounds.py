"""Verilator: a reduction loop of the tile before an output-dependent inner loop (issue 14's refusal search, the
last class of `the output O does not depend on inner loop(s) ...`; docs/dataflows.md "A reduction loop outside an
output-dependent inner loop"). The tile's loops up to its last reduction loop that an output-dependent loop follows
run outside the tile; the output leaves per step and its partial sums come back in through the partial-sum port
(through the memory system: from the output buffer).

Each case: outputs exact, no partial sum read before it was written, RTL cycles == model cycles.
"""
import pytest

from archgen.arch.spec import load_spec_data
from archgen.verif.array_check import verify_array
from archgen.verif.layer_check import verify_layer

pytestmark = pytest.mark.verilator

_I8 = "int8"
GEMM = {"version": 1, "kind": "array", "name": "gemm_rounds", "operation": "C[i,j] += A[i,k] * B[k,j]",
        "types": {"A": _I8, "B": _I8, "C": "int32"}}
CONV2 = {"version": 1, "kind": "array", "name": "conv2_rounds", "operation": "O[k,p,q] += I[c,p+r,q] * W[k,c,r]",
         "types": {"W": _I8, "I": _I8, "O": "int32"}, "bounds": {"k": 3, "p": 4, "q": 2, "c": 2, "r": 3}}


def _design(base, shape, df):
    return load_spec_data({**base, "array": {"shape": shape}, "dataflows": {"d": df}})


def test_the_1d_gemm_ikj_through_the_memory_system():
    """C[i,j] += A[i,k] * B[k,j] on [3], spatial {i: 0}, order [i, k, j]: FU i updates C[i, j] for every j within
    each k, run as tiles of [j] with k outside; i = 5 ragged on 3 FUs. Every tensor crosses DRAM once (the partial
    sums of C stay in the output buffer): A i*k, B k*j bytes, C 4*i*j bytes."""
    design = _design(GEMM, [3], {"spatial": {"i": 0}, "order": ["i", "k", "j"], "control": [0]})
    i, j, k = 5, 4, 3
    r = verify_layer(design, {"i": i, "j": j, "k": k}, seed=2)
    assert r.outputs_exact, r.detail
    assert r.rtl_cycles == r.model_cycles, (r.rtl_cycles, r.model_cycles, r.command)
    assert r.detail["rtl_dram_bytes"] == r.dram_bytes == {"A.read": i * k, "B.read": k * j, "C.write": 4 * i * j}


def _check_array(res):
    assert res.outputs_exact, res.detail
    assert res.detail["psum_reads_before_write"] == 0
    assert res.rtl_cycles == res.model_cycles, (res.rtl_cycles, res.model_cycles)


@pytest.mark.slow
def test_a_trailing_run_through_the_memory_system():
    """conv2 on 2x2, {k: 0, q: 1}, order [k, q, c, p, r], control [1, 1]: the tile [c, p, r] runs as [p, r] with c
    outside, then as runs of r with p outside (accumulated per run, partial sums of c preloaded per run)."""
    design = _design(CONV2, [2, 2], {"spatial": {"k": 0, "q": 1}, "order": ["k", "q", "c", "p", "r"],
                                     "control": [1, 1]})
    r = verify_layer(design, {"k": 3, "p": 3, "q": 3, "c": 2, "r": 3}, seed=4)
    assert r.outputs_exact, r.detail
    assert r.rtl_cycles == r.model_cycles, (r.rtl_cycles, r.model_cycles, r.command)
    assert r.detail["rtl_dram_bytes"] == r.dram_bytes


@pytest.mark.slow
@pytest.mark.parametrize("base, shape, df, bounds", [
    (CONV2, [2, 2], {"spatial": {"k": 0, "q": 1}, "order": ["k", "q", "r", "c", "p"], "control": [1, 1]},
     {"k": 3, "p": 3, "q": 3, "c": 2, "r": 3}),
    (CONV2, [3], {"spatial": {"q": 0}, "order": ["q", "r", "k", "c", "p"], "control": [0]},
     {"k": 3, "p": 3, "q": 4, "c": 2, "r": 2}),
    (GEMM, [3], {"spatial": {"j": 0}, "order": ["j", "k", "i"], "control": [1]}, {"i": 1, "j": 5, "k": 4}),
], ids=["conv2-2x2", "conv2-interleaved", "1d-one-step-tiles"])
def test_rounds_at_the_array_level(base, shape, df, bounds):
    _check_array(verify_array(_design(base, shape, df), bounds, seed=7))
