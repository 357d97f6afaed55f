"""The array cycle model predicts; it does not look anything up.

Cycle counts for arrays the RTL regression never builds (64x64) are derived here by hand from the
contract in dataflow/schedule.py and must equal the model's; an independent plain-Python recurrence of
the same rules must agree with the SimPy processes on random shapes and sizes. Every shape the RTL
does run is compared cycle for cycle in tests/verif/test_array_regression.py.
"""
import math
import random

import pytest

from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.mappings.tiling import map_problem
from archgen.sim.array_model import simulate_array


def _model(spec, shape, bounds, **kw):
    design = load_spec(spec, [f"array.shape={shape}"])
    compiled = compile_array(design, pipeline=False)
    return simulate_array(compiled, map_problem(design, bounds, compiled.dataflow), **kw)


def test_os_64x64_by_hand():
    # no loads; S = 126, R = 64, T = 130, 9 tiles. Tile 0's drain ends at T + S + R + 1; after that each
    # tile costs max(T, S + 1 + R) = 191 (the last step waits for the previous drain)
    assert _model("gemm_os.yaml", "64x64", {"i": 130, "k": 130, "j": 130}).total_cycles == 321 + 8 * 191


def test_ws_64x64_by_hand():
    # 6 tiles of T = 100 steps; tile 0 issues after its load (1 + 64); each next load waits until the
    # last FU swapped the previous one (S + 1 = 127) and takes 64 cycles: period max(T, 191) = 191;
    # done one cycle after the last output, out_latency = 127 after the last step
    assert _model("gemm_ws.yaml", "64x64", {"i": 100, "k": 130, "j": 70}).total_cycles == 1 + 64 + 5 * 191 + 99 + 127 + 1


def test_bcast_is_issue_bound():
    # control vector 0: S = 0, drain of 8 rows hides under 50 steps; 6 tiles back to back
    assert _model("gemm_os_bcast.yaml", "8x8", {"i": 16, "k": 50, "j": 24}).total_cycles == (50 + 0 + 8 + 1) + 5 * 50


def _recurrence(compiled, mapping) -> int:
    """The contract of dataflow/schedule.py written as a plain recurrence (no SimPy)."""
    sch = compiled.schedule
    T, R = mapping.steps, sch.rows
    shadow_free, prev_issue_end, prev_drain_end = 1, 1, 0
    tiles = list(mapping.tiles())
    t_load = 1
    last = 0
    for k, tile in enumerate(tiles):
        needs = sch.has_loader and sch.needs_load(tile.first)
        # loader: skip tiles without a load (one cycle each) until this one
        if needs:
            start = max(t_load, shadow_free)
            loaded = start + R
            t_load = loaded
        elif sch.has_loader:
            t_load += 1
        first = max(prev_issue_end, loaded if needs else 0)
        if sch.accumulate and T == 1 and k > 0:
            first = max(first, prev_drain_end)
        if needs:
            shadow_free = first + sch.swap_skew + 1
        last = first + T - 1
        if sch.accumulate and k > 0:
            last = max(last, prev_drain_end)
        prev_issue_end = last + 1
        if sch.accumulate:
            prev_drain_end = max(last + sch.commit_skew + 1, prev_drain_end) + sch.drain_rows
    return prev_drain_end if sch.accumulate else last + sch.out_latency + 1


@pytest.mark.parametrize("spec", ["gemm_os.yaml", "gemm_ws.yaml", "gemm_is.yaml", "gemm_os_bcast.yaml"])
def test_simpy_model_equals_recurrence(spec):
    rng = random.Random(spec)
    for _ in range(6):
        shape = f"{rng.randint(1, 9)}x{rng.randint(2, 9)}"
        design = load_spec(spec, [f"array.shape={shape}"])
        compiled = compile_array(design, pipeline=False)
        mp = map_problem(design, {"i": rng.randint(1, 40), "k": rng.randint(1, 40), "j": rng.randint(1, 40)},
                         compiled.dataflow)
        assert simulate_array(compiled, mp).total_cycles == _recurrence(compiled, mp), (shape, mp.bounds)


def test_finite_bandwidth_never_faster_than_ideal_or_roofline():
    ideal = _model("gemm_os.yaml", "16x16", {"i": 64, "k": 64, "j": 64})
    slow = _model("gemm_os.yaml", "16x16", {"i": 64, "k": 64, "j": 64}, bytes_per_cycle=4.0)
    assert slow.total_cycles > ideal.total_cycles
    nbytes = sum(slow.bytes_moved.values())
    assert slow.total_cycles >= max(slow.macs / 256, nbytes / 4.0)
    assert slow.dram_wait_cycles > 0 and ideal.dram_wait_cycles == 0


def test_utilisation_accounts_for_padding():
    r = _model("gemm_os.yaml", "4x4", {"i": 5, "k": 8, "j": 4})
    assert r.mac_slots == 2 * 1 * 8 * 16
    assert r.macs == 5 * 8 * 4
    assert math.isclose(r.utilisation, r.macs / (r.total_cycles * 16))


def test_512x768x768_on_32x32_answers():
    r = _model("gemm_os.yaml", "32x32", {"i": 512, "k": 768, "j": 768})
    # 16 x 24 tiles of 768 steps, issue-bound (768 > S + 1 + R = 95): about 384 x 768 cycles
    assert r.total_cycles == (768 + 62 + 32 + 1) + 383 * 768
