"""``archgen sim`` plans a fused design's layers on the one layer core's banks (memctl ``fused_banks``), as the
core ``archgen build --memory`` writes and ``archgen verify`` runs: each dataflow's own banks round a buffer half
differently (3x5 gemm_fused, C 800 B: 400 B a half on is's 4 banks of 4 B, 384 B on the core's 8), and planned on
its own rooms sim reported commands for is that the core refuses (``memory.C.bytes``: a 400 B or 396 B block does not
fit one half)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_fused
from archgen.dataflow.memctl import buffer_fit, buffer_rooms, fused_banks, layer_program
from archgen.mappings.memory_tiling import plan_layer
from archgen.sim import array_sim
from archgen.sim.energy import EnergyModel
from archgen.verif.layer_check import plan_command

DRAM = ["memory.dram.width_bytes=8", "memory.dram.latency=5", "memory.dram.burst_bytes=16",
        "memory.dram.outstanding=2"]
# layers whose plan on is's own rooms the core refuses (found by planning a grid of bounds)
CASES = [{"i": 5, "k": 4, "j": 20}, {"i": 9, "k": 12, "j": 11}]


def _fused():
    design = load_spec("gemm_fused", ["array.shape=3x5", *DRAM, "memory.A.bytes=200", "memory.B.bytes=200",
                                      "memory.C.bytes=800"])
    return compile_fused(design, tuple(design.fuse))


def test_every_tiled_dataflow_plans_on_the_core_banks():
    fused = _fused()
    banks = fused_banks(fused)
    assert array_sim._core_banks(fused) == {n: banks for n in fused.names}
    assert buffer_rooms(fused.view("is"))["C"].half_bytes == 400              # its own banks: what sim planned on
    assert {buffer_rooms(fused.view(n), banks)["C"].half_bytes for n in fused.names} == {384}


@pytest.mark.parametrize("bounds", CASES)
@pytest.mark.parametrize("mapper", ["heuristic", "search"])
def test_sim_plans_what_the_core_runs_and_verify_plans(bounds, mapper):
    fused = _fused()
    view, banks = fused.view("is"), fused_banks(fused)
    own = plan_layer(view.design, bounds, view.dataflow, "x", fits=buffer_fit(view, "x"), rooms=buffer_rooms(view))
    with pytest.raises(SpecError, match="does not fit one half"):           # the plan on is's own rooms
        layer_program(view, own, "x", spec_size=True, fit_only=True, core_banks=banks)
    layer = SimpleNamespace(name="x", kind="gemm", macs=math.prod(bounds.values()))
    cmd = array_sim._plan(view, layer, bounds, 1, "verify", EnergyModel.load(), False, mapper, "edp", 0, {},
                          array_sim._core_banks(fused)["is"])
    layer_program(view, cmd, "x", spec_size=True, core_banks=banks)          # the core takes it
    assert cmd.describe() == plan_command(view, bounds, "x", mapper=mapper, core_banks=banks).describe()
