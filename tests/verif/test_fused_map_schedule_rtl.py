"""Verilator: a ``schedule: map`` dataflow in a fused design (tests/dataflow/test_fused_map_schedule.py in
Amaranth). Back to back in one simulation with the select changing: the map's pad flags mask its products only
while it runs, its FIFOs (W along axis 0 on t_r) take their run-time depth from each of its commands, the other
dataflow runs unmasked. Each run: outputs exact, RTL cycles == model cycles. Through the memory system
(``verify_layer(fuse=...)``): DRAM bytes equal the model's."""
import sys
from pathlib import Path

import pytest

from archgen.verif.fused_check import verify_fused_sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataflow"))
from test_fused_map_schedule import CASES, W_RS, _design  # noqa: E402

pytestmark = pytest.mark.verilator

B1 = {"n": 1, "k": 4, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}
B2 = {"n": 1, "k": 3, "p": 4, "q": 2, "c": 2, "r": 4, "s": 3}      # another FIFO depth (trips of s + its span)

SEQUENCES = [
    pytest.param("ws+own", W_RS, [("own", B1, 3), ("ws", B2, 4), ("own", B2, 5), ("ws", B1, 6)], id="ws+own"),
    pytest.param("two-own", W_RS, [("own", B1, 3), ("own2", B2, 4), ("own", B2, 5)], id="two-own",
                 marks=pytest.mark.slow),
    pytest.param("own-lead+ws", W_RS, [("ws", B1, 3), ("lead", B2, 4), ("lead", B1, 5)], id="lead+ws",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("case,op,runs", SEQUENCES)
def test_a_map_schedule_dataflow_in_a_fused_design_back_to_back(case, op, runs):
    design = _design(CASES[case], op=op)
    results = verify_fused_sequence(design, list(design.fuse), runs)
    got = [(r.dataflow, r.outputs_exact, r.rtl_cycles) for r in results]
    assert got == [(d, True, r.model_cycles) for (d, _b, _s), r in zip(runs, results)], [r.detail for r in results]
    assert len(results) == len(runs)


@pytest.mark.slow
@pytest.mark.parametrize("case,dataflow", [("ws+own", "own"), ("ws+own", "ws"), ("two-own", "own2")])
def test_a_map_schedule_dataflow_in_a_fused_design_through_the_memory_system(case, dataflow):
    """The fused layer core runs the selected dataflow's padded command (its trips and FIFO depth from the layer
    program): outputs exact, RTL cycles == model cycles, DRAM bytes == the model's."""
    from archgen.verif.layer_check import verify_layer
    design = _design(CASES[case], op=W_RS)
    r = verify_layer(design, B2, seed=7, dataflow=dataflow, fuse=list(design.fuse))
    assert r.outputs_exact, r.detail
    assert r.rtl_cycles == r.model_cycles, (r.rtl_cycles, r.model_cycles, r.command)
    assert r.detail["rtl_dram_bytes"] == r.dram_bytes


@pytest.mark.slow
@pytest.mark.parametrize("dataflow", ["own", "owno"])
def test_map_schedule_dataflows_on_the_one_fused_layer_core(dataflow):
    """``archgen build --memory``'s one layer core for both dataflows (their lanes alike, their tile orders not):
    the layer command selects the dataflow and carries its padded trips. (Dataflows whose lanes are read
    differently, e.g. ws + own, run on the one core too: tests/verif/test_fused_layer_walks.py.)"""
    from archgen.verif.layer_check import verify_layer
    design = _design(CASES["own+own-order"])
    r = verify_layer(design, B1, seed=5, dataflow=dataflow, fuse=list(design.fuse), one_core=True)
    assert r.outputs_exact, r.detail
    assert r.rtl_cycles == r.model_cycles, (r.rtl_cycles, r.model_cycles, r.command)
    assert r.detail["rtl_dram_bytes"] == r.dram_bytes
