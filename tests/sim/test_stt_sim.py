"""``archgen sim`` on a skewed stt array (sim/array_sim.py): array level, the same cycles verify measures."""
import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.dataflow.stt_array import stt_tiling
from archgen.sim.array_model import simulate_array
from archgen.sim.array_sim import simulate_workload_on_array
from archgen.workloads.library import get_workload


def test_gemm_layer_cycles_are_the_array_model_cycles():
    design = load_spec("gemm_hex", ["array.shape=3x5"])
    results, skipped = simulate_workload_on_array(design, get_workload("gemm:9,7,11"), ideal_dram=True)
    assert not skipped and len(results) == 1
    compiled = compile_array(design)
    tiling = stt_tiling(compiled.network, {"i": 9, "k": 7, "j": 11})
    assert results[0].cycles == simulate_array(compiled, tiling).total_cycles == tiling.total_cycles
    assert results[0].macs == 9 * 7 * 11
    assert results[0].extra["box"] == tiling.box


def test_memory_system_path_is_refused_by_name():
    with pytest.raises(SpecError) as err:
        simulate_workload_on_array(load_spec("gemm_hex"), get_workload("gemm:8,8,8"))
    msg = str(err.value.problems[0])
    assert msg.startswith("dataflows.hex.stt: a skewed stt map runs at the array level only")
    assert msg.endswith("(got [[1, 0, -1], [0, 1, -1], [1, 1, 1]])")


def test_box_timing_is_a_closed_form_for_millions_of_boxes():
    """The ideal-stream model keeps no per-box list: a GEMM of tens of millions of boxes is one formula, and
    the workload guard no longer refuses skewed maps for their box count."""
    design = load_spec("gemm_hex")
    compiled = compile_array(design)
    tiling = stt_tiling(compiled.network, {"i": 1024, "k": 1024, "j": 1024})
    assert tiling.n_tiles > 10_000_000
    res = simulate_array(compiled, tiling)
    assert res.total_cycles == (tiling.n_tiles - 1) * tiling.period + tiling.span + 1
    assert len(res.tile_cycles) == tiling.n_tiles and sum(res.tile_cycles[-3:]) == 2 * tiling.period + tiling.span
    small = stt_tiling(compiled.network, {"i": 7, "k": 5, "j": 6})
    gaps = simulate_array(compiled, small).tile_cycles
    firsts = [1 + m * small.period for m in range(small.n_tiles)] + [small.slots + 1]
    assert gaps == tuple(b - a for a, b in zip(firsts, firsts[1:]))
    results, _ = simulate_workload_on_array(design, get_workload("gemm:1024,1024,1024"), ideal_dram=True)
    assert results[0].cycles == res.total_cycles
