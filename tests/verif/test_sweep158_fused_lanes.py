"""What ``schedule-verify 3 6 3`` found (2026-12-06, H158): on the one fused layer core, a scattered output port whose
dataflows have different lane counts crashed at elaboration (rtlgen/layer_top.py ``_live_lanes`` started every
dataflow's list with the port's lanes, then zipped it with that dataflow's own lane constants, which dropped the lanes
that dataflow does not have; picking lane ``ln`` of every dataflow raised IndexError: ``archgen build SPEC --memory``
ended in a traceback). Here the ``schedule: map`` dataflow's O has 2 lanes (p on axis 0), the spatial one's 3 (p on
axis 1). Fixed: the lanes a dataflow does not have are not live under its select; keeping them live instead builds
but runs the first case with a wrong output (a dead lane takes a bank from a real one, H158)."""
import pytest

from archgen.arch.spec import load_spec_data
from archgen.verif.schedule_verify import run_fused_memory

SPEC = {"version": 1, "kind": "array", "name": "f", "operation": "O[p,q] += I[p+r,q] * W[r]",
        "types": {"W": "int8", "I": "int8", "O": "int32"}, "array": {"shape": [2, 3]},
        "dataflows": {"m": {"map": {"p": "2*t_p + s0", "q": "t_q - s0", "r": "3*t_r + s1"}, "order": ["q", "p", "r"],
                            "schedule": "map"},
                      "o": {"spatial": {"r": 0, "p": 1}, "order": ["p", "r", "q"], "control": [0, 1]}},
        "fuse": ["m", "o"]}


@pytest.mark.parametrize("bounds,seed", [({"p": 5, "q": 3, "r": 3}, 1), ({"p": 4, "q": 4, "r": 2}, 2)])
def test_a_fused_core_whose_dataflows_scatter_different_lane_counts(bounds, seed):
    runs = run_fused_memory(load_spec_data(SPEC), bounds, seed)
    assert [r.dataflow for r in runs] == ["m", "o", "m"]
    assert all(r.ok for r in runs), [r.detail for r in runs if not r.ok]
