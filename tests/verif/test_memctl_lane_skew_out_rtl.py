"""Verilator, through the memory system (``verify_layer``: the ``archgen verify SPEC --bounds ... --seed N`` path
without ``--ideal-dram``): ``schedule: map`` with a skewed loop outside the tile that the output depends on, skewed
along the output's lanes (docs/memory.md, H149): each lane writes its own tile of the loop, at its lane-map position,
each in its own bank through the bank crossbar. Outputs exact, RTL cycles == model cycles, DRAM bytes RTL == model,
with the planner's command. ``cycles`` pins the figures the docs report."""
import pytest

import test_skewed_maps_rtl as own
from test_map_schedule_outer_out_rtl import CASES as ARRAY_CASES

pytestmark = pytest.mark.verilator

_make = {p.id: p.values[0] for p in ARRAY_CASES}


@pytest.mark.parametrize("make,bounds,seed,cycles", [
    pytest.param(_make["gemm-3-tile-loop"], {"i": 4, "j": 4, "k": 3}, 1, 235, id="gemm-3-tile-loop"),
    pytest.param(_make["conv-3x2-mixed"], {"n": 1, "k": 4, "p": 3, "q": 3, "c": 2, "r": 2, "s": 2}, 5, 396,
                 id="conv-3x2-mixed", marks=pytest.mark.slow),
])
def test_a_skew_along_the_output_lanes_through_the_memory_system(make, bounds, seed, cycles):
    own.test_maps_own_schedule_through_the_memory_system(make, bounds, seed, None, cycles)
