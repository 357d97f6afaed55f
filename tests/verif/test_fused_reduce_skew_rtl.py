"""Verilator: a ``schedule: map`` dataflow whose output is reduced along an array axis its padded loop is skewed along,
in a fused design (tests/dataflow/test_fused_reduce_skew.py in Amaranth). Back to back in one simulation with the
select changing: the waiting dataflow's products wait in its own chains or run-time buffers (shifting only while it
runs), the others read the products straight. Each run: outputs exact, RTL cycles == model cycles."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataflow"))
from test_fused_reduce_skew import CASES, _design  # noqa: E402
from test_fused_outer_pads_rtl import assert_back_to_back  # noqa: E402

pytestmark = pytest.mark.verilator

SEQUENCES = [
    pytest.param("gemm-2x2-tree+os+ws+is", [("own", {"i": 3, "j": 5, "k": 4}, 3), ("os", {"i": 3, "j": 5, "k": 4}, 4),
                                            ("own", {"i": 2, "j": 3, "k": 5}, 5), ("ws", {"i": 3, "j": 4, "k": 3}, 6),
                                            ("is", {"i": 3, "j": 4, "k": 3}, 7)], id="gemm-2x2-tree+os+ws+is"),
    # run-time waits: the buffers' depth changes with m between runs of one dataflow
    pytest.param("gemm-2x2-loop-after+lead+compressed",
                 [("after", {"i": 3, "j": 3, "k": 4, "m": 3}, 1), ("comp", {"i": 3, "j": 3, "k": 4, "m": 3}, 2),
                  ("after", {"i": 2, "j": 4, "k": 3, "m": 2}, 3), ("lead", {"i": 3, "j": 3, "k": 4, "m": 4}, 4),
                  ("after", {"i": 3, "j": 2, "k": 4, "m": 4}, 5)], id="gemm-2x2-loop-after+lead+compressed",
                 marks=pytest.mark.slow),
    pytest.param("gemm-2x3-lead+chain+mixed", [("lead", {"i": 3, "j": 5, "k": 5}, 3), ("chain", {"i": 4, "j": 4, "k": 3}, 4),
                                               ("mixed", {"i": 3, "j": 4, "k": 4}, 5), ("lead", {"i": 2, "j": 3, "k": 6}, 6)],
                 id="gemm-2x3-lead+chain+mixed", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("case,runs", SEQUENCES)
def test_an_output_reduced_along_a_skewed_axis_in_a_fused_design_back_to_back(case, runs):
    op, shape, flows, _ = CASES[case]
    assert_back_to_back(_design(op, shape, flows), runs)
