"""The cost-of-fusion report (archgen/fusion_cli.py, what ``archgen build gemm_fused --report`` prints):
Yosys cells of the fused design below the sum of its single-dataflow designs, cycles per dataflow."""
import pytest

from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_fused
from archgen.fusion_cli import format_fusion_report, fusion_report
from archgen.rtlgen.fused_array import fused_verilog


@pytest.mark.yosys
@pytest.mark.parametrize("shape", ["3x2"])
def test_fused_design_is_smaller_than_the_sum_of_its_single_designs(shape):
    design = load_spec("gemm_fused", [f"array.shape={shape}"])
    fused = compile_fused(design, design.fuse)
    text, top = fused_verilog(fused)
    rep = fusion_report(fused, text, top, pnr=False)
    syn = rep["synthesis"]
    total = syn["sum_of_singles"]
    assert syn["fused"]["cells"] < total["cells"]
    # the fused design holds at least the largest single design's multipliers and accumulators
    assert syn["fused"]["cells"] > max(s["cells"] for s in syn["single"].values()) // 2
    assert set(rep["cycles"]) == {"os", "ws", "is"}
    lines = format_fusion_report(rep)
    assert any(line.strip().startswith("sum of singles") for line in lines)
    assert any("fused / sum of singles" in line for line in lines)


def test_cycle_differences_are_explained_by_the_schedule():
    """At 1 GHz the select muxes in front of the multipliers cost a pipeline register: the report names the
    schedule constant that moved with every cycle difference."""
    design = load_spec("gemm_fused", ["clock_mhz=1000"])
    fused = compile_fused(design, design.fuse)
    text, top = fused_verilog(fused)
    rep = fusion_report(fused, text, top, synth=False)
    for name, c in rep["cycles"].items():
        if c["fused"] != c["single"]:
            assert c["schedule_changes"], name
    assert any(c["fused"] > c["single"] for c in rep["cycles"].values())
    text = "\n".join(format_fusion_report(rep))
    assert "the mux stages move the schedule" in text


def test_report_of_a_skewed_map_fused_with_os():
    """gemm_fused_hex at 1 GHz: the muxes in front of the shared multipliers cost OS a register (the report
    names the schedule constant); the hexagonal map's cycles are its single design's unless the shared stages
    exceed its own (then the report names product_stages)."""
    design = load_spec("gemm_fused_hex", ["clock_mhz=1000"])
    fused = compile_fused(design, design.fuse)
    text, top = fused_verilog(fused)
    rep = fusion_report(fused, text, top, synth=False)
    assert set(rep["cycles"]) == {"os", "hex"}
    for name, c in rep["cycles"].items():
        if c["fused"] != c["single"]:
            assert c["schedule_changes"], name
    assert rep["cycles"]["os"]["fused"] > rep["cycles"]["os"]["single"]
    hexc = rep["cycles"]["hex"]
    if hexc["fused"] != hexc["single"]:
        assert "product_stages" in hexc["schedule_changes"]
    assert rep["mux_points_lp"] == 2 * design.n_fus          # both operands of every multiplier
    assert rep["skewed_maps"] == ["hex"]
    lines = format_fusion_report(rep)
    assert any(line.strip().startswith("hex") for line in lines)
    assert "skewed stt map(s) hex share the multipliers" in lines[0]
