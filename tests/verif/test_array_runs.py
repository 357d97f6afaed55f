"""Verilator: outputs held per run of the tile's trailing reduction loops (issue 14's refusal search, class 1 of
`the output O does not depend on inner loop(s) ...`; docs/dataflows.md "Outputs held per run of the reduction
loops"). Each FU keeps one output element for a run of the reduction loops after the loops the output depends on,
accumulates it in place and drains it at the run's end while the next run accumulates.

Each case: outputs exact, no partial sum read before it was written, RTL cycles == model cycles.
"""
import pytest

from archgen.arch.spec import load_spec_data
from archgen.verif.array_check import verify_array
from archgen.verif.layer_check import verify_layer

pytestmark = pytest.mark.verilator

_I8 = "int8"
GEMM = {"version": 1, "kind": "array", "name": "gemm_runs", "operation": "C[i,j] += A[i,k] * B[k,j]",
        "types": {"A": _I8, "B": _I8, "C": "int32"}}
CONV2 = {"version": 1, "kind": "array", "name": "conv2_runs", "operation": "O[k,p,q] += I[c,p+r,q] * W[k,c,r]",
         "types": {"W": _I8, "I": _I8, "O": "int32"}, "bounds": {"k": 3, "p": 4, "q": 2, "c": 2, "r": 3}}


def _design(base, shape, df):
    return load_spec_data({**base, "array": {"shape": shape}, "dataflows": {"d": df}})


def test_the_plainest_1d_gemm_through_the_memory_system():
    """C[i,j] += A[i,k] * B[k,j] on [3], spatial {i: 0}, order [i, j, k]: FU i keeps C[i, j] for the run of k,
    then moves to the next j. i = 5 is ragged on 3 FUs. Whole layer through the generated memory system."""
    design = _design(GEMM, [3], {"spatial": {"i": 0}, "order": ["i", "j", "k"], "control": [0]})
    r = verify_layer(design, {"i": 5, "j": 4, "k": 3}, seed=2)
    assert r.outputs_exact, r.detail
    assert r.rtl_cycles == r.model_cycles, (r.rtl_cycles, r.model_cycles, r.command)
    assert r.detail["rtl_dram_bytes"] == r.dram_bytes


def _check_array(res):
    assert res.outputs_exact, res.detail
    assert res.detail["psum_reads_before_write"] == 0
    assert res.rtl_cycles == res.model_cycles, (res.rtl_cycles, res.model_cycles)


@pytest.mark.slow
def test_runs_on_a_non_square_array_through_the_memory_system():
    """conv2 on 2x3, {r: 0, k: 1}, order [p, k, r, q, c], control [1, 1]: the tile [q, c] holds O per run of c,
    reduced across axis 0 by a partial-sum chain into one accumulator per element; r's tiles bring partial sums
    back (a preload per run)."""
    design = _design(CONV2, [2, 3], {"spatial": {"r": 0, "k": 1}, "order": ["p", "k", "r", "q", "c"],
                                     "control": [1, 1]})
    r = verify_layer(design, {"k": 4, "p": 2, "q": 3, "c": 3, "r": 3}, seed=4)
    assert r.outputs_exact, r.detail
    assert r.rtl_cycles == r.model_cycles, (r.rtl_cycles, r.model_cycles, r.command)


@pytest.mark.slow
@pytest.mark.parametrize("base, shape, df, bounds", [
    (CONV2, [2, 2, 2], {"spatial": {"c": 0, "k": 1, "p": 2}, "order": ["c", "k", "p", "q", "r"], "control": [1, 1, 0]},
     {"k": 3, "p": 3, "q": 2, "c": 3, "r": 2}),
    (GEMM, [3], {"spatial": {"j": 0}, "order": ["j", "i", "k"], "control": [1]}, {"i": 4, "j": 5, "k": 1}),
], ids=["3d-psum-per-run", "1d-runs-shorter-than-the-drain"])
def test_runs_at_the_array_level(base, shape, df, bounds):
    _check_array(verify_array(_design(base, shape, df), bounds, seed=7))


# inputs that use no loop of the run (docs/dataflows.md "Inputs that use no loop of the run"): loaded per run
BCAST = {"version": 1, "kind": "array", "name": "bcast_runs", "operation": "O[k,p] += W[k] * I[p,r]",
         "types": {"W": _I8, "I": _I8, "O": "int32"}}
BCAST4 = {"version": 1, "kind": "array", "name": "bcast4_runs", "operation": "O[k,p,q] += W[k,c] * I[c,p,q,r]",
          "types": {"W": _I8, "I": _I8, "O": "int32"}}


def test_a_broadcast_input_loaded_per_run_through_the_memory_system():
    """O[k,p] += W[k] * I[p,r] on [2], spatial {k: 0}, order [k, p, r]: W[k] uses no loop of the tile [p, r];
    the run build keeps it over the runs of r of each tile and loads it at the first (it was refused). k = 3
    ragged on 2 FUs. Whole layer through the generated memory system (its W walk skips the kept tiles)."""
    design = _design(BCAST, [2], {"spatial": {"k": 0}, "order": ["k", "p", "r"], "control": [0]})
    r = verify_layer(design, {"k": 3, "p": 4, "r": 3}, seed=5)
    assert r.outputs_exact, r.detail
    assert r.rtl_cycles == r.model_cycles, (r.rtl_cycles, r.model_cycles, r.command)
    assert r.detail["rtl_dram_bytes"] == r.dram_bytes


BCASTI = {"version": 1, "kind": "array", "name": "bcasti_runs", "operation": "O[k,p] += W[k,r] * I[p]",
          "types": {"W": _I8, "I": _I8, "O": "int32"}}


def test_an_input_that_uses_the_tile_loop_and_not_the_run_streamed_through_the_memory_system():
    """O[k,p] += W[k,r] * I[p] on [2], spatial {k: 0}, order [k, p, r]: I[p] uses p (outside the run) and not r,
    so the run build streams it as the tile [p, r] does, one beat per step, the same value for the run's steps
    (stationary per run until H118: 224 cycles). Whole layer through the generated memory system: I's walk reads
    the same element for each step of a run; DRAM bytes equal the model's."""
    design = _design(BCASTI, [2], {"spatial": {"k": 0}, "order": ["k", "p", "r"], "control": [0]})
    r = verify_layer(design, {"k": 3, "p": 4, "r": 3}, seed=5)
    assert r.outputs_exact, r.detail
    assert r.rtl_cycles == r.model_cycles == 223, (r.rtl_cycles, r.model_cycles, r.command)
    assert r.detail["rtl_dram_bytes"] == r.dram_bytes


@pytest.mark.slow
def test_an_input_loaded_per_run_on_runs_shorter_than_its_load():
    """O[k,p,q] += W[k,c] * I[c,p,q,r] on 2x2, {k: 0, c: 1}, order [k, c, q, p, r], control [1, 1]: W kept over
    the runs of r (2 steps, shorter than the 5-step load bound) of each tile of [q, p, r] and loaded at its first
    run or with the partial-sum preloads of c's later tiles: the tile's own schedule (model; 147 cycles when it was
    loaded per run), c reduced across axis 1 by a chain."""
    design = _design(BCAST4, [2, 2], {"spatial": {"k": 0, "c": 1}, "order": ["k", "c", "q", "p", "r"],
                                      "control": [1, 1]})
    res = verify_array(design, {"k": 3, "p": 3, "q": 2, "c": 3, "r": 2}, seed=7)
    _check_array(res)
    assert res.rtl_cycles == 137


BCASTI4 = {"version": 1, "kind": "array", "name": "bcasti4_runs", "operation": "O[k,p,q] += W[k,c,r] * I[p,q]",
           "types": {"W": _I8, "I": _I8, "O": "int32"}}


@pytest.mark.slow
def test_an_input_streamed_on_runs_shorter_than_a_load():
    """O[k,p,q] += W[k,c,r] * I[p,q] on 2x2, {k: 0, c: 1}, order [q, k, c, p, r], control [1, 1]: I[p,q] uses p (the
    tile's loop before the run) and not r; runs of 2 steps, shorter than a per-run load. Streamed per step, the runs
    issue back to back: 122 cycles, the tile's own (model ``load_gaps`` (0, 0); 147 when I was stationary per run)."""
    design = _design(BCASTI4, [2, 2], {"spatial": {"k": 0, "c": 1}, "order": ["q", "k", "c", "p", "r"],
                                       "control": [1, 1]})
    res = verify_array(design, {"k": 3, "p": 3, "q": 2, "c": 3, "r": 2}, seed=7)
    _check_array(res)
    assert res.rtl_cycles == 122
