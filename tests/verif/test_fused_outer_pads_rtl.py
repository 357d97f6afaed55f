"""Verilator: a ``schedule: map`` dataflow whose skewed reduction loop runs outside its tile, in a fused design
(tests/dataflow/test_fused_outer_pads.py in Amaranth). Back to back in one simulation with the select changing: the
map runs K + span tiles of its loop, each FU masked outside its own K tiles by the flags of its own issuer's tile
counter, only while it runs; the other dataflows run unmasked on their own trips. Each run: outputs exact, RTL
cycles == model cycles."""
import sys
from pathlib import Path

import pytest

from archgen.verif.fused_check import verify_fused_sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataflow"))
from test_fused_outer_pads import CASES, _design  # noqa: E402

pytestmark = pytest.mark.verilator

SEQUENCES = [
    # the mask-needing op: both inputs read real elements at an FU's masked tiles
    pytest.param("masked-1x4+ws", [("m", {"p": 5, "r": 3, "c": 2}, 3), ("ws", {"p": 6, "r": 2, "c": 3}, 4),
                                   ("m", {"p": 6, "r": 2, "c": 3}, 5)], id="masked-1x4+ws"),
    pytest.param("gemm-2x2+os+ws+is", [("m", {"i": 3, "j": 4, "k": 3}, 1), ("os", {"i": 3, "j": 4, "k": 3}, 2),
                                       ("ws", {"i": 2, "j": 3, "k": 5}, 3), ("m", {"i": 2, "j": 3, "k": 5}, 4),
                                       ("is", {"i": 3, "j": 4, "k": 3}, 5)], id="gemm-2x2+os+ws+is",
                 marks=pytest.mark.slow),
    pytest.param("masked-1x4+lead", [("m", {"p": 6, "r": 2, "c": 3}, 6), ("lead", {"p": 5, "r": 3, "c": 2}, 7),
                                     ("m", {"p": 5, "r": 3, "c": 2}, 8)], id="masked-1x4+lead",
                 marks=pytest.mark.slow),
    pytest.param("gemm-3+compressed", [("comp", {"i": 5, "j": 2, "k": 2}, 1), ("m", {"i": 5, "j": 2, "k": 2}, 2),
                                       ("m", {"i": 4, "j": 3, "k": 4}, 3)], id="gemm-3+compressed",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("case,runs", SEQUENCES)
def test_a_skewed_loop_outside_the_tile_in_a_fused_design_back_to_back(case, runs):
    op, shape, flows, _ = CASES[case]
    assert_back_to_back(_design(op, shape, flows), runs)


def assert_back_to_back(design, runs):
    """``runs`` [(dataflow, bounds, seed)] of fused ``design`` in one Verilator simulation: each exact, RTL == model
    (shared with tests/verif/test_fused_reduce_skew_rtl.py)."""
    results = verify_fused_sequence(design, list(design.fuse), runs)
    got = [(r.dataflow, r.outputs_exact, r.rtl_cycles) for r in results]
    assert got == [(d, True, r.model_cycles) for (d, _b, _s), r in zip(runs, results)], [r.detail for r in results]
    assert len(results) == len(runs)
