"""Verilator: ``schedule: map`` with an output that depends on loops of the tile (docs/dataflows.md "Outputs that
depend on loops of the tile"). Held per run of the skewed reduction loops (tile [D, R], the skews in R): the padded
run is the tile, masked per FU, drained at its end; outputs exact and RTL cycles == model cycles at the array level
(``archgen verify SPEC --ideal-dram``) and through the memory system (DRAM bytes RTL == model). Streamed per step
over a padded loop: each lane's element at its own position, at the array level; through the memory system, which
delays each lane (dataflow/memctl.py ``output_deskew``), over one padded loop last in the tile (over several, or
loops after it: tests/verif/test_memory_deskew_multi_rtl.py). ``cycles`` pins the figures the docs report."""
import pytest

import test_skewed_maps_rtl as own
from archgen.arch.spec import load_spec_data

pytestmark = pytest.mark.verilator

CONV_OP = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]"
GEMM = "C[i,j] += A[i,k] * B[k,j]"
CONV_HELD = {"n": "t_n", "k": "3*t_k + s0", "p": "2*t_p + s1", "q": "t_q", "c": "t_c", "r": "t_r - s0 - s1",
             "s": "t_s"}


def _held(op, shape, mp, order, inner, control=None):
    """A ``schedule: map`` dataflow of ``op`` (its output 32 bits wide, inputs 8)."""
    out, a, b = (n for n in op.replace("[", " ").split() if n[:1].isupper())
    df = {"map": mp, "order": order, "inner": inner, "schedule": "map"} | ({"control": control} if control else {})
    return load_spec_data({"version": 1, "name": "held_per_run", "operation": op, "array": {"shape": list(shape)},
                           "types": {out: "int32", a: "int8", b: "int8"}, "dataflows": {"m": df}})

HELD_ORDER, HELD_INNER = ["n", "k", "p", "q", "c", "r", "s"], ["q", "c", "r", "s"]
CONV_B = {"n": 1, "k": 4, "p": 3, "q": 3, "c": 2, "r": 3, "s": 2}
# a lead along axis 1 and a second skewed loop (s) in the run, n and q outside it
LEAD_TWO = {**CONV_HELD, "r": "t_r + s1 - 1", "s": "t_s - s0"}
GEMM_HELD = {"i": "3*t_i + s0", "j": "t_j", "k": "t_k - s0"}
GEMM_STREAMED = {"i": "3*t_i + s0", "j": "t_j - s0", "k": "t_k"}
CONV_STREAMED = {**CONV_HELD, "r": "t_r", "q": "t_q - s0 - s1"}

ARRAY_CASES = [
    pytest.param(lambda: _held(CONV_OP, (3, 2), CONV_HELD, HELD_ORDER, HELD_INNER), CONV_B, 5, 292, id="conv-3x2"),
    pytest.param(lambda: _held(GEMM, (3,), GEMM_HELD, ["i", "j", "k"], ["j", "k"]), {"i": 4, "j": 3, "k": 4}, 1, 38,
                 id="gemm-3", marks=pytest.mark.slow),
    pytest.param(lambda: _held(CONV_OP, (3, 2), LEAD_TWO, ["k", "p", "n", "q", "s", "c", "r"],
                               ["n", "q", "s", "c", "r"], control=[0, 1]),
                 {"n": 2, "k": 3, "p": 2, "q": 2, "c": 2, "r": 3, "s": 2}, 3, 133, id="conv-3x2-lead-two-loops",
                 marks=pytest.mark.slow),
    # streamed outputs over a padded loop: partial sums of k (of c, r, s) come back in at each lane's own position
    pytest.param(lambda: _held(GEMM, (3,), GEMM_STREAMED, ["i", "k", "j"], ["j"]), {"i": 4, "j": 4, "k": 3}, 1, 39,
                 id="gemm-3-streamed"),
    pytest.param(lambda: _held(CONV_OP, (3, 2), CONV_STREAMED, ["n", "k", "p", "c", "r", "s", "q"], ["q"]),
                 {"n": 1, "k": 4, "p": 3, "q": 3, "c": 2, "r": 2, "s": 2}, 4, 197, id="conv-3x2-streamed",
                 marks=pytest.mark.slow),
    pytest.param(lambda: _held(CONV_OP, (1, 4), {**CONV_STREAMED, "k": "t_k", "p": "4*t_p + s1",
                                                 "q": "t_q + s1 - 3", "n": "t_n - s1"},
                               ["k", "p", "c", "r", "s", "n", "q"], ["n", "q"], control=[0, 1]),
                 {"n": 2, "k": 2, "p": 5, "q": 3, "c": 2, "r": 2, "s": 1}, 2, 486, id="conv-1x4-streamed-lead-two-loops",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("make,bounds,seed,cycles", ARRAY_CASES)
def test_output_over_padded_loops_on_verilator(make, bounds, seed, cycles):
    """Outputs exact, RTL cycles == model cycles (the own-schedule check of tests/verif/test_skewed_maps_rtl.py)."""
    own.test_maps_own_schedule_on_verilator(make, bounds, seed, cycles)


MEMORY_CASES = [
    pytest.param(lambda: _held(CONV_OP, (3, 2), CONV_HELD, HELD_ORDER, HELD_INNER), CONV_B, 5, 494, id="conv-3x2"),
    pytest.param(lambda: _held(CONV_OP, (3, 2), LEAD_TWO, ["k", "p", "n", "q", "s", "c", "r"],
                               ["n", "q", "s", "c", "r"], control=[0, 1]),
                 {"n": 2, "k": 3, "p": 2, "q": 2, "c": 2, "r": 3, "s": 2}, 3, 333, id="conv-3x2-lead-two-loops",
                 marks=pytest.mark.slow),
]


@pytest.mark.slow
@pytest.mark.parametrize("make,bounds,seed,cycles", MEMORY_CASES)
def test_output_held_per_run_through_the_memory_system(make, bounds, seed, cycles):
    """Outputs exact, RTL cycles == model cycles, DRAM bytes RTL == model (the planner's command)."""
    own.test_maps_own_schedule_through_the_memory_system(make, bounds, seed, None, cycles)


STREAMED_MEMORY_CASES = [
    pytest.param(lambda: _held(GEMM, (3,), GEMM_STREAMED, ["i", "k", "j"], ["j"]), {"i": 4, "j": 4, "k": 3}, 1, 236,
                 id="gemm-3-streamed"),
    pytest.param(lambda: _held(CONV_OP, (3, 2), CONV_STREAMED, ["n", "k", "p", "c", "r", "s", "q"], ["q"]),
                 {"n": 1, "k": 4, "p": 3, "q": 3, "c": 2, "r": 2, "s": 2}, 4, 399, id="conv-3x2-streamed",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("make,bounds,seed,cycles", STREAMED_MEMORY_CASES)
def test_output_streamed_over_a_padded_loop_through_the_memory_system(make, bounds, seed, cycles):
    """Each lane's partial sum delayed by its offset and its result by span - offset (the layer core), the write
    walk holding the padded positions: outputs exact, RTL cycles == model cycles, DRAM bytes RTL == model."""
    own.test_maps_own_schedule_through_the_memory_system(make, bounds, seed, None, cycles)
