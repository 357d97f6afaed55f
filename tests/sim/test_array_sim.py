"""Whole networks on generated arrays: every layer lowered, none faster than its roofline."""
import pytest

from archgen.arch.spec import load_spec
from archgen.sim.array_sim import lower_layer, simulate_workload_on_array
from archgen.sim.results import totals
from archgen.workloads.library import get_workload


@pytest.mark.parametrize("workload, seq", [("bert-base", 128), ("resnet50", None), ("mobilenetv2", None)])
def test_no_layer_beats_its_roofline(workload, seq):
    design = load_spec("gemm_os.yaml", ["array.shape=16x16"])
    results, skipped = simulate_workload_on_array(design, get_workload(workload, seq=seq))
    assert results
    for r in results:
        # the bound uses the array's peak MACs/cycle and the spec's DRAM bandwidth
        assert r.cycles >= r.roofline_cycles
        assert r.cycles >= r.macs / design.n_fus
        assert 0 < r.utilisation <= 1
    assert totals(results)["macs"] == sum(l.macs for l in get_workload(workload, seq=seq).layers if l.einsum)


def test_more_bandwidth_never_slower():
    wl = get_workload("bert-base", seq=64)
    slow = load_spec("gemm_ws.yaml", ["array.shape=8x8", "dram.bandwidth_gbps=4"])
    fast = load_spec("gemm_ws.yaml", ["array.shape=8x8", "dram.bandwidth_gbps=64"])
    t_slow = totals(simulate_workload_on_array(slow, wl)[0])["cycles"]
    t_fast = totals(simulate_workload_on_array(fast, wl)[0])["cycles"]
    assert t_fast < t_slow


def test_lowering_conv_onto_a_gemm_array_is_im2col():
    layer = next(l for l in get_workload("resnet50").layers if l.kind == "conv" and l.bounds.get("r", 1) == 3)
    bounds, repeat, how = lower_layer(layer, load_spec("gemm_os.yaml"))
    b = layer.bounds
    assert how == "im2col"
    assert bounds["k"] == b["c"] * b["r"] * b["s"]
    assert bounds["i"] * bounds["j"] * bounds["k"] * repeat == layer.macs
