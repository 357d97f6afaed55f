"""Verilator: an output streamed per step over several padded loops, or over loops after the padded one
(``schedule: map``), through the memory system (``archgen verify SPEC --bounds ... --seed N`` without --ideal-dram, the
planner's command): the layer core delays each lane by a number of beats set per block (dataflow/memctl.py
``deskew_terms``, rtlgen/layer_top.py ``_delayed_by``). Outputs exact, RTL cycles == model cycles, DRAM bytes RTL ==
model; ``cycles`` pins the figures docs/memory.md reports. The designs are tests/dataflow/test_memctl_deskew_multi.py's."""
import sys
from pathlib import Path

import pytest

import test_skewed_maps_rtl as own

sys.path.insert(0, str(Path(__file__).parents[1] / "dataflow"))
from test_memctl_deskew_multi import CASES  # noqa: E402

pytestmark = pytest.mark.verilator

MEMORY_CASES = [
    pytest.param("bgemm-3-loop-after", 1, 293, id="bgemm-3-loop-after"),
    pytest.param("conv-1x4-two-loops", 2, 691, id="conv-1x4-two-loops", marks=pytest.mark.slow),
    pytest.param("conv-1x4-loop-after", 1, 448, id="conv-1x4-loop-after", marks=pytest.mark.slow),
    pytest.param("conv-2x2-two-loops", 1, 401, id="conv-2x2-two-loops", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name,seed,cycles", MEMORY_CASES)
def test_an_output_de_skewed_per_block_through_the_memory_system(name, seed, cycles):
    make, bounds = CASES[name]
    own.test_maps_own_schedule_through_the_memory_system(make, bounds, seed, None, cycles)
