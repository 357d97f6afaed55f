"""The array cycle model predicts; it does not look anything up.

Cycle counts for arrays the RTL regression never builds (64x64) are derived here by hand from the
schedule's definition (TILE, LOAD, COMPUTE, DRAIN per tile) and must equal the model's. Every shape the
RTL does run is compared cycle for cycle in tests/verif/test_array_regression.py.
"""
import math

import pytest

from archgen.arch.spec import load_spec
from archgen.dataflow.interconnect import derive_interconnect
from archgen.dataflow.schedule import array_schedule
from archgen.mappings.tiling import map_problem
from archgen.sim.array_model import simulate_array


def _model(spec, shape, bounds, **kw):
    design = load_spec(spec, [f"array.shape={shape}"])
    fg = derive_interconnect(design)
    return simulate_array(fg, map_problem(design, bounds, fg.dataflow), **kw)


def test_os_64x64_by_hand():
    # OS, 64x64, M=K=N=130: 3x3 tiles; per tile 1 (TILE) + 0 (LOAD) + K + skew 126 (COMPUTE) + 64 (DRAIN)
    per_tile = 1 + 0 + (130 + 126) + 64
    assert _model("gemm_os.yaml", "64x64", {"i": 130, "k": 130, "j": 130}).total_cycles == 1 + 9 * per_tile


def test_ws_64x64_by_hand():
    # WS, 64x64, M=100, K=130, N=70: tiles over (j, k) = 2 x 3; LOAD 64 rows every tile; COMPUTE
    # M + drain skew (63 + 63) + 1; the first k tile of each j column reads no partial sums (no cost difference)
    per_tile = 1 + 64 + (100 + 127)
    assert _model("gemm_ws.yaml", "64x64", {"i": 100, "k": 130, "j": 70}).total_cycles == 1 + 6 * per_tile


def test_bcast_has_no_skew():
    # the broadcast array has control vector 0: COMPUTE = K exactly, DRAIN = 8 rows
    per_tile = 1 + 0 + 50 + 8
    assert _model("gemm_os_bcast.yaml", "8x8", {"i": 16, "k": 50, "j": 24}).total_cycles == 1 + 2 * 3 * per_tile


@pytest.mark.parametrize("spec", ["gemm_os.yaml", "gemm_ws.yaml", "gemm_is.yaml", "gemm_os_bcast.yaml"])
def test_model_equals_closed_form(spec):
    design = load_spec(spec, ["array.shape=7x5"])
    fg = derive_interconnect(design)
    mp = map_problem(design, {"i": 23, "k": 31, "j": 17}, fg.dataflow)
    assert simulate_array(fg, mp).total_cycles == array_schedule(fg).total_cycles(mp)


def test_finite_bandwidth_never_faster_than_ideal_or_roofline():
    ideal = _model("gemm_os.yaml", "16x16", {"i": 64, "k": 64, "j": 64})
    slow = _model("gemm_os.yaml", "16x16", {"i": 64, "k": 64, "j": 64}, bytes_per_cycle=4.0)
    assert slow.total_cycles > ideal.total_cycles
    nbytes = sum(slow.bytes_moved.values())
    assert slow.total_cycles >= max(slow.macs / 256, nbytes / 4.0)


def test_utilisation_accounts_for_padding():
    r = _model("gemm_os.yaml", "4x4", {"i": 5, "k": 8, "j": 4})
    assert r.mac_slots == 2 * 1 * 8 * 16
    assert r.macs == 5 * 8 * 4
    assert math.isclose(r.utilisation, r.macs / (r.total_cycles * 16))
