"""Verilator: ``schedule: map`` with an output reduced along an array axis that a padded loop it uses is skewed along
(docs/dataflows.md "Outputs reduced along a skewed axis"). Each FU's product waits its lane's offset difference in
issued steps before the adder tree or partial-sum chain (dataflow/reduce_skew.py); outputs exact and RTL cycles ==
model cycles at the array level (``archgen verify SPEC --ideal-dram``), also with idle input beats and output
stalls (the waits shift on issued steps only). ``cycles`` pins the figures the docs report."""
import pytest

import test_skewed_maps_rtl as own
from archgen.verif.array_check import verify_array
from test_map_schedule_outputs_rtl import _held as _spec

pytestmark = pytest.mark.verilator

GEMM = "C[i,j] += A[i,k] * B[k,j]"
BATCHED = "C[i,j] += A[i,k,m] * B[k,m,j]"
CONV_OP = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]"


# the brief's GEMM: i on axis 0, k on axis 1 (C reduced across it by an adder tree), j skewed along axis 1
GEMM_2X2 = {"i": "2*t_i + s0", "k": "2*t_k + s1", "j": "t_j - s1"}
CONV_3X3 = {"n": "t_n", "k": "t_k", "p": "t_p", "q": "2*s0 + 2*s1 + t_q - 8", "c": "3*t_c + s0", "r": "3*t_r + s1",
            "s": "t_s"}

ARRAY_CASES = [
    pytest.param(lambda: _spec(GEMM, (2, 2), GEMM_2X2, ["i", "k", "j"], ["j"]), {"i": 3, "j": 5, "k": 4}, 3, 28,
                 id="gemm-2x2-tree"),
    pytest.param(lambda: _spec(GEMM, (2, 3), {"k": "2*t_k + s0", "i": "3*t_i + s1", "j": "t_j - s0"},
                               ["k", "i", "j"], ["j"], control=[1, 1]), {"i": 4, "j": 4, "k": 3}, 3, None,
                 id="gemm-2x3-chain", marks=pytest.mark.slow),
    pytest.param(lambda: _spec(GEMM, (2, 3), {"i": "2*t_i + s0", "k": "3*t_k + s1", "j": "t_j + 2*s1 - 4"},
                               ["i", "k", "j"], ["j"]), {"i": 3, "j": 5, "k": 5}, 3, None, id="gemm-2x3-lead",
                 marks=pytest.mark.slow),
    pytest.param(lambda: _spec(BATCHED, (2, 2, 2), {"i": "2*t_i + s0", "k": "2*t_k + s1", "m": "2*t_m + s2",
                                                    "j": "t_j - s1 - 2*s2"}, ["i", "k", "m", "j"], ["j"]),
                 {"i": 3, "j": 4, "k": 3, "m": 2}, 3, None, id="batched-2x2x2", marks=pytest.mark.slow),
    # c on axis 0 and r on axis 1, both reduced by chains (control [1, -1]) that merge; q skewed along both, leads
    pytest.param(lambda: _spec(CONV_OP, (3, 3), CONV_3X3, ["k", "p", "c", "r", "s", "n", "q"], ["n", "q"],
                               control=[1, -1]), {"n": 1, "k": 3, "c": 1, "p": 3, "q": 4, "r": 3, "s": 1}, 5, None,
                 id="conv-3x3-merging-chains-lead", marks=pytest.mark.slow),
]


# loops after the padded loop: the waits are buffers of run-time depth (n x the steps of the loops after it)
ARRAY_CASES += [
    pytest.param(lambda: _spec("C[i,j,m] += A[i,k,m] * B[k,j]", (2, 3), {"i": "2*t_i + s0", "k": "3*t_k + s1",
                                                                       "j": "t_j + s1 - 2", "m": "t_m - s0"},
                               ["i", "k", "j", "m"], ["j", "m"]), {"i": 3, "j": 3, "k": 4, "m": 2}, 1, None,
                 id="gemm-2x3-lead-padded-loop-after", marks=pytest.mark.slow),
    pytest.param(lambda: _spec(CONV_OP, (1, 4), {"n": "t_n - s1", "k": "t_k", "p": "t_p", "c": "4*t_c + s1",
                                                 "q": "t_q", "r": "t_r", "s": "t_s"},
                               ["k", "p", "c", "r", "s", "n", "q"], ["n", "q"], control=[0, 1]),
                 {"n": 3, "k": 2, "p": 2, "q": 3, "c": 5, "r": 2, "s": 2}, 1, None, id="conv-1x4-n-before-q",
                 marks=pytest.mark.slow),
]
# idle input beats and output back-pressure (30 % each) on the lead case: the waits shift on issued steps only
ARRAY_CASES += [pytest.param(ARRAY_CASES[2].values[0], {"i": 3, "j": 5, "k": 5}, seed, "stalls",
                             id=f"gemm-2x3-lead-stalls-{seed}", marks=pytest.mark.slow) for seed in (3, 4)]


@pytest.mark.parametrize("make,bounds,seed,cycles", ARRAY_CASES)
def test_output_reduced_along_a_skewed_axis_on_verilator(make, bounds, seed, cycles):
    """Outputs exact, RTL cycles == model cycles (the own-schedule check of tests/verif/test_skewed_maps_rtl.py);
    under stalls only the outputs (cycles then depend on the bubbles)."""
    if cycles != "stalls":
        own.test_maps_own_schedule_on_verilator(make, bounds, seed, cycles)
        return
    res = verify_array(make(), bounds, seed=seed, idle_prob=0.3, stall_prob=0.3)
    assert res.outputs_exact, res.detail


# through the memory system (``archgen verify SPEC --bounds ...``): the layer core de-skews each output lane by the
# offset ``memctl.output_deskew`` gives it, the largest of the FUs it sums (``reduce_skew.lane_offsets``)
MEMORY_CASES = [
    pytest.param(ARRAY_CASES[0].values[0], {"i": 3, "j": 5, "k": 4}, 3, 225, id="gemm-2x2-tree"),
    # the lane's largest offset is its first FU's (a lead), not its terminal FU's
    pytest.param(ARRAY_CASES[2].values[0], {"i": 3, "j": 5, "k": 5}, 3, 237, id="gemm-2x3-lead"),
]


@pytest.mark.slow
@pytest.mark.parametrize("make,bounds,seed,cycles", MEMORY_CASES)
def test_output_reduced_along_a_skewed_axis_through_the_memory_system(make, bounds, seed, cycles):
    """Outputs exact, RTL cycles == model cycles, DRAM bytes RTL == model (the planner's command)."""
    own.test_maps_own_schedule_through_the_memory_system(make, bounds, seed, None, cycles)


def _amaranth_memory_cases():
    """Every array case above but the stalls, through the memory system; the lead with a padded loop after it (the
    per-block de-skew of H140 with the lane's largest offset) in the default suite."""
    default = "gemm-2x3-lead-padded-loop-after"
    return [pytest.param(*p.values[:3], id=p.id, marks=() if p.id == default else pytest.mark.slow)
            for p in ARRAY_CASES if p.values[3] != "stalls"]


@pytest.mark.parametrize("make,bounds,seed", _amaranth_memory_cases())
def test_output_reduced_along_a_skewed_axis_through_the_memory_system_in_amaranth(make, bounds, seed):
    """The layer core de-skews each output lane by the largest offset of the FUs it sums (``memctl.output_pads``
    takes ``reduce_skew.lane_offsets``), also per block when loops follow the padded one: outputs exact, RTL cycles
    == model cycles, DRAM bytes RTL == model, with the planner's command."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataflow"))
    from test_memctl_stream_outputs import run_design
    exact, rtl, model, moved, dram = run_design(make(), bounds, seed, fits=True)
    assert exact
    assert rtl == model
    assert {k: v for k, v in moved.items() if v} == {k: v for k, v in dram.items() if v}
