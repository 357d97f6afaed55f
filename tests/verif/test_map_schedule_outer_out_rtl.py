"""Verilator: ``schedule: map`` with a skewed loop the output depends on outside the tile (docs/dataflows.md "Skewed
output loops outside the tile"): L + span tiles of the loop, FU s on tile t - offset(s), masked outside its own L
tiles, each drain carrying its element of tile t - offset(s) (the host program drops the masked tiles' drains).
Outputs exact, RTL cycles == model cycles at the array level (``archgen verify SPEC --ideal-dram``); the memory system
and fused designs refuse it (tests/dataflow/test_map_schedule_outer_out.py). ``cycles`` pins the figures the docs
report."""
import pytest

import test_skewed_maps_rtl as own
from archgen.verif.array_check import verify_array
from test_map_schedule_outer_rtl import CONV_OP, GEMM, _outer

pytestmark = pytest.mark.verilator

GEMM_OUT = {"i": "3*t_i + s0", "j": "t_j - s0", "k": "t_k"}
CONV_N = {"n": "t_n - s1", "k": "t_k", "p": "4*t_p + s1", "q": "t_q", "c": "t_c", "r": "t_r", "s": "t_s"}
# q skewed by a lag along axis 0 and a lead along axis 1, outside the tile [c, r, s]
CONV_Q = {"n": "t_n", "k": "3*t_k + s0", "p": "2*t_p + s1", "q": "t_q - s0 + s1 - 1", "c": "t_c", "r": "t_r",
          "s": "t_s"}

CASES = [
    # the brief's example: the skew on the tile loop t_j, which C depends on
    pytest.param(lambda: _outer(GEMM, (3,), GEMM_OUT, ["j", "i", "k"], ["k"]), {"i": 4, "j": 4, "k": 3}, 1, 38,
                 id="gemm-3-tile-loop"),
    # j leads the run [j, k] (a lead: FUs further along run earlier) and leaves the tile with the run's form
    pytest.param(lambda: _outer(GEMM, (3,), {"i": "3*t_i + s0", "j": "t_j + s0 - 2", "k": "t_k"}, ["i", "j", "k"],
                                ["j", "k"]), {"i": 5, "j": 3, "k": 2}, 2, 22, id="gemm-3-run-lead",
                 marks=pytest.mark.slow),
    # and k skewed inside the tile as well
    pytest.param(lambda: _outer(GEMM, (3,), {"i": "3*t_i + s0", "j": "t_j - s0", "k": "t_k - s0"}, ["j", "i", "k"],
                                ["k"]), {"i": 3, "j": 3, "k": 4}, 3, 32, id="gemm-3-and-inner",
                 marks=pytest.mark.slow),
    # n outside the tile with partial-sum rounds of c
    pytest.param(lambda: _outer(CONV_OP, (1, 4), CONV_N, ["k", "p", "c", "n", "q", "r", "s"], ["r", "s"]),
                 {"n": 2, "k": 2, "p": 5, "q": 2, "c": 2, "r": 2, "s": 2}, 4, 402, id="conv-1x4-psum-rounds",
                 marks=pytest.mark.slow),
    pytest.param(lambda: _outer(CONV_OP, (3, 2), CONV_Q, ["n", "k", "p", "q", "c", "r", "s"], ["c", "r", "s"]),
                 {"n": 1, "k": 4, "p": 3, "q": 3, "c": 2, "r": 2, "s": 2}, 5, 196, id="conv-3x2-mixed",
                 marks=pytest.mark.slow),
]


# random idle input beats and output back-pressure (the cycles then depend on the bubbles and are not compared)
STALLS = [pytest.param(CASES[3].values[0], {"n": 2, "k": 2, "p": 3, "q": 2, "c": 2, "r": 2, "s": 1}, seed, None,
                       id=f"conv-1x4-stalls-{seed}", marks=pytest.mark.slow) for seed in (6, 7)]


@pytest.mark.parametrize("make,bounds,seed,cycles", CASES + STALLS)
def test_skewed_output_loop_outside_the_tile_on_verilator(make, bounds, seed, cycles):
    """Outputs exact and RTL cycles == model cycles (the own-schedule check of tests/verif/test_skewed_maps_rtl.py);
    under bubbles and stalls the outputs stay exact: the tile counter that drives the per-tile flags and the drains
    moves only with issued steps."""
    if cycles is not None:
        own.test_maps_own_schedule_on_verilator(make, bounds, seed, cycles)
        return
    res = verify_array(make(), bounds, seed=seed, idle_prob=0.3, stall_prob=0.3)
    assert res.outputs_exact, res.detail
