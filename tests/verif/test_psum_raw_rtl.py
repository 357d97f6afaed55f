"""Streamed outputs read back as partial sums, on Verilator: each partial sum is read after its write.

When the reuse distance of the partial sums (steps x tiles per turn of the innermost reduction tile loop)
is within the output's latency from issue to write, the issuer waits (dataflow/control.py ``psum_raw_hw``)
and the model waits the same cycles (``psum_raw_ready_at``). Before the wait the repro below read 12
partial sums early, and gemm_ws on 2x3 at 1500 MHz with M = 2 gave wrong outputs through the memory system.

Default: the repro (2x5, ``{i: 0, k: 1}``, 1500 MHz). Opt-in (--runslow): the repro with bubbles and stalls,
gemm_ws on the array and through
the memory system, the WS and IS views of gemm_fused, and cases of the random search in
tests/sim/test_psum_read_after_write.py where the wait binds.
"""
import functools
import random

import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.dataflow.control import streams_psums_back
from archgen.mappings.tiling import map_problem
from archgen.verif.array_check import verify_array

from tests.sim.test_psum_read_after_write import random_design, repro_design

pytestmark = pytest.mark.verilator


def _check(res):
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles, (res.rtl_cycles, res.model_cycles)
    assert res.detail["psum_reads_before_write"] == 0


def test_repro_streamed_partial_sums_wait_for_their_write():
    design, _ = repro_design()
    bounds = {"i": 4, "j": 3, "k": 10}
    compiled = compile_array(design, "d")
    mapping = map_problem(design, bounds, "d")
    # the case needs the wait: the partial sums come back within the output latency
    assert mapping.steps * mapping.psum_tile_distance() <= compiled.schedule.out_latency
    _check(verify_array(design, bounds, seed=1))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_repro_with_bubbles_and_stalls(seed):
    """The hardware rule counts steps in flight, so it holds whatever gaps the streams leave (the model's
    cycles assume none, so only outputs and causality are checked here)."""
    design, _ = repro_design()
    res = verify_array(design, {"i": 4, "j": 3, "k": 10}, seed=seed, idle_prob=0.3, stall_prob=0.3)
    assert res.outputs_exact, res.detail
    assert res.detail["psum_reads_before_write"] == 0
    assert res.rtl_cycles > res.model_cycles


@pytest.mark.slow
@pytest.mark.parametrize("shape,bounds", [("2x3", {"i": 2, "k": 7, "j": 5}), ("3x2", {"i": 1, "k": 8, "j": 3})])
def test_gemm_ws_small_m_at_1500_mhz(shape, bounds):
    design = load_spec("gemm_ws", [f"array.shape={shape}", "clock_mhz=1500"])
    _check(verify_array(design, bounds, seed=2))


@pytest.mark.slow
def test_gemm_ws_small_m_through_the_memory_system():
    """Was wrong (10 of 10 outputs) before the wait: the layer top's psum walk reads the accumulator buffer one
    cycle ahead of the beat (transparent to its write port), so an issue after the write is all it needs."""
    from archgen.verif.layer_check import verify_layer
    design = load_spec("gemm_ws", ["array.shape=2x3", "clock_mhz=1500", "memory.dram.width_bytes=32",
                                   "memory.dram.latency=8"])
    r = verify_layer(design, {"i": 2, "k": 7, "j": 5}, seed=1)
    assert r.outputs_exact, r.detail
    assert r.rtl_cycles == r.model_cycles
    assert r.detail["rtl_dram_bytes"] == r.dram_bytes


@pytest.mark.slow
@pytest.mark.parametrize("dataflow,bounds", [("ws", {"i": 2, "k": 7, "j": 5}), ("is", {"i": 5, "k": 7, "j": 1})])
def test_gemm_fused_streamed_views_at_1500_mhz(dataflow, bounds):
    from archgen.verif.fused_check import verify_fused
    design = load_spec("gemm_fused", ["array.shape=2x3", "clock_mhz=1500"])
    _check(verify_fused(design, ("os", "ws", "is"), bounds, dataflow, seed=3))


@functools.lru_cache(maxsize=1)
def _binding_random_cases(n: int):
    """The first ``n`` designs of a seeded random search that read partial sums back within the output latency."""
    rng = random.Random(6161)
    found = []
    while len(found) < n:
        design, bounds = random_design(rng)
        try:
            compiled = compile_array(design, "d")
            mapping = map_problem(design, bounds, compiled.dataflow)      # the tile as the array runs it
        except SpecError:
            continue
        dist = mapping.psum_tile_distance()
        if streams_psums_back(compiled.schedule) and dist and mapping.steps * dist <= compiled.schedule.out_latency \
                and any(not t.first for t in mapping.tiles()):
            found.append((design, bounds))
    return tuple(found)


@pytest.mark.slow
@pytest.mark.parametrize("case", range(4))
def test_random_designs_where_the_wait_binds(case):
    design, bounds = _binding_random_cases(4)[case]
    _check(verify_array(design, bounds, seed=4))
