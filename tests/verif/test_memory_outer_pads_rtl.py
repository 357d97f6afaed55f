"""Verilator, through the memory system (``verify_layer``: the ``archgen verify SPEC --bounds ... --seed N`` path
without ``--ideal-dram``): ``schedule: map`` with a skewed reduction loop outside the tile (docs/memory.md "Skewed
reduction loops outside the tile"). Each lane's tile walk of the loop starts offset(s) tiles back; each block runs
its chunk + span tiles. Outputs exact, RTL cycles == model cycles, DRAM bytes RTL == model, with the planner's
command. ``cycles`` pins the figures the docs report."""
import dataclasses

import pytest

import test_skewed_maps_rtl as own
from test_map_schedule_outer_rtl import CASES as ARRAY_CASES

pytestmark = pytest.mark.verilator

_make = {p.id: p.values[0] for p in ARRAY_CASES}
GEMM_BOUNDS = {"i": 4, "j": 4, "k": 3}
CASES = [
    pytest.param(_make["gemm-3-psum-rounds"], GEMM_BOUNDS, 1, 240, id="gemm-3-psum-rounds"),
    pytest.param(_make["gemm-3-tile-loop"], GEMM_BOUNDS, 1, 240, id="gemm-3-tile-loop", marks=pytest.mark.slow),
    pytest.param(_make["conv1-1x4"], {"p": 5, "r": 3, "c": 2}, 3, 242, id="conv1-1x4", marks=pytest.mark.slow),
    pytest.param(_make["conv-3x2-mixed"], {"n": 1, "k": 4, "p": 3, "q": 2, "c": 3, "r": 2, "s": 2}, 4, 636,
                 id="conv-3x2-mixed", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("make,bounds,seed,cycles", CASES)
def test_skewed_reduction_loop_outside_the_tile_through_the_memory_system(make, bounds, seed, cycles):
    own.test_maps_own_schedule_through_the_memory_system(make, bounds, seed, None, cycles)


def _spill(make):
    """The design with partial sums through DRAM granted (``memory.partial_sums_through_dram``)."""
    def spilled():
        d = make()
        return dataclasses.replace(d, memory=dataclasses.replace(d.memory_system, partial_sums_through_dram=True))
    return spilled


@pytest.mark.slow
@pytest.mark.parametrize("make,plan,seed,cycles", [
    # one tile of k per block: 2 x 3 blocks of 1 + 2 tiles, each adding onto the partial sums in the buffer
    pytest.param(_make["gemm-3-psum-rounds"], ({"i": 1, "k": 1}, ("i", "k")), 2, 930, id="k-split"),
    # k outermost in blocks of 2 and 1 tiles: the output blocks come back, their partial sums through DRAM
    pytest.param(_spill(_make["gemm-3-tile-loop"]), ({"k": 2, "i": 1}, ("k", "i")), 4, 783, id="psums-through-dram"),
])
def test_a_reduction_split_over_blocks_through_the_memory_system(make, plan, seed, cycles):
    own.test_maps_own_schedule_through_the_memory_system(make, GEMM_BOUNDS, seed, plan, cycles)
