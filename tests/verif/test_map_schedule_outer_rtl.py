"""Verilator: ``schedule: map`` with a skewed reduction loop outside the tile (docs/dataflows.md "Skewed reduction
loops outside the tile"): K + span tiles of the loop, FU s on tile t - offset(s), masked outside its own K tiles by
the issuer's tile counter. Outputs exact, RTL cycles == model cycles at the array level (``archgen verify SPEC
--ideal-dram``); the memory system refuses it (tests/dataflow/test_map_schedule_outer.py). ``cycles`` pins the
figures the docs report."""
import pytest

import test_skewed_maps_rtl as own
from archgen.arch.spec import load_spec_data
from archgen.verif.array_check import verify_array

pytestmark = pytest.mark.verilator

CONV_OP = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]"
GEMM = "C[i,j] += A[i,k] * B[k,j]"


def _outer(op, shape, mp, order, inner):
    """A ``schedule: map`` dataflow of ``op`` (its output 32 bits wide, inputs 8)."""
    out, a, b = (n for n in op.replace("[", " ").split() if n[:1].isupper())
    df = {"map": mp, "order": order, "inner": inner, "schedule": "map"}
    return load_spec_data({"version": 1, "name": "outer_skew", "operation": op, "array": {"shape": list(shape)},
                           "types": {out: "int32", a: "int8", b: "int8"}, "dataflows": {"m": df}})


GEMM_MAP = {"i": "3*t_i + s0", "j": "t_j", "k": "t_k - s0"}
# c skewed by a lag along axis 0 and a lead along axis 1, outside the tile [q, r, s]
CONV_MIXED = {"n": "t_n", "k": "3*t_k + s0", "p": "2*t_p + s1", "q": "t_q", "c": "t_c - s0 + s1 - 1", "r": "t_r",
              "s": "t_s"}

CASES = [
    # the brief's example: k before j in the tile runs as partial-sum rounds with k outside the tile
    pytest.param(lambda: _outer(GEMM, (3,), GEMM_MAP, ["i", "k", "j"], ["k", "j"]), {"i": 4, "j": 4, "k": 3}, 1, 43,
                 id="gemm-3-psum-rounds"),
    pytest.param(lambda: _outer(GEMM, (3,), GEMM_MAP, ["k", "i", "j"], ["j"]), {"i": 4, "j": 4, "k": 3}, 1, 43,
                 id="gemm-3-tile-loop", marks=pytest.mark.slow),
    # both inputs read real elements at masked tiles: the per-tile flags are what keep it exact
    pytest.param(lambda: _outer("O[p] += I[p+r,c] * W[r+c]", (1, 4), {"p": "4*t_p + s1", "r": "t_r - s1", "c": "t_c"},
                                ["p", "r", "c"], ["c"]), {"p": 5, "r": 3, "c": 2}, 3, 46, id="conv1-1x4",
                 marks=pytest.mark.slow),
    pytest.param(lambda: _outer(CONV_OP, (3, 2), CONV_MIXED, ["n", "k", "p", "c", "q", "r", "s"], ["q", "r", "s"]),
                 {"n": 1, "k": 4, "p": 3, "q": 2, "c": 3, "r": 2, "s": 2}, 4, 436, id="conv-3x2-mixed",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("make,bounds,seed,cycles", CASES)
def test_skewed_reduction_loop_outside_the_tile_on_verilator(make, bounds, seed, cycles):
    """Outputs exact, RTL cycles == model cycles (the own-schedule check of tests/verif/test_skewed_maps_rtl.py)."""
    own.test_maps_own_schedule_on_verilator(make, bounds, seed, cycles)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 4])
def test_the_per_tile_flags_move_with_issued_tiles_under_bubbles_and_stalls(seed):
    """Random idle input beats and output back-pressure: the tile counter that drives the per-tile flags moves only
    with issued steps, so the outputs stay exact (cycles then depend on the bubbles and are not compared)."""
    design = _outer("O[p] += I[p+r,c] * W[r+c]", (1, 4), {"p": "4*t_p + s1", "r": "t_r - s1", "c": "t_c"},
                    ["p", "r", "c"], ["c"])
    res = verify_array(design, {"p": 5, "r": 3, "c": 2}, seed=seed, idle_prob=0.3, stall_prob=0.3)
    assert res.outputs_exact, res.detail
