"""`archgen sim` on a fused design: each layer runs under the dataflow its objective prefers, timed
with the fused design's timing (docs/dataflows.md, Fusion)."""
import dataclasses

import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_fused
from archgen.mappings.memory_tiling import plan_layer
from archgen.sim.array_sim import lower_layer, simulate_workload_on_array
from archgen.sim.layer_model import simulate_layer
from archgen.workloads.library import get_workload
from archgen.workloads.ops import Workload

FUSE = ("os", "ws", "is")


def _two_gemms():
    """Two GEMM layers of different shapes (one tall, one wide) as one workload."""
    a, b = get_workload("gemm:40,12,6"), get_workload("gemm:6,20,48")
    return Workload("two", (a.layers[0], dataclasses.replace(b.layers[0], name="gemm2")))


@pytest.mark.parametrize("shape", ["4x4", "3x2"])
def test_each_layer_runs_under_its_best_dataflow_in_fused_timing(shape):
    design = load_spec("gemm_fused.yaml", [f"array.shape={shape}"])
    wl = _two_gemms()
    views = {v.fu_graph.dataflow.name: v for v in compile_fused(design, FUSE).views}
    results, _ = simulate_workload_on_array(design, wl, fuse=FUSE, mapper_objective="latency")
    assert [r.name for r in results] == [l.name for l in wl.layers]
    for layer, r in zip(wl.layers, results):
        bounds, repeat, _how = lower_layer(layer, design)
        # every dataflow's cycles, from the layer model directly on the fused design's views
        cycles = {name: simulate_layer(v, plan_layer(design, bounds, v.fu_graph.dataflow, layer.name),
                                       layer=layer.name).cycles * repeat for name, v in views.items()}
        assert r.extra["dataflow"] in FUSE
        assert r.cycles == cycles[r.extra["dataflow"]]
        assert r.cycles == min(cycles.values())


def test_fused_choice_follows_the_objective():
    design = load_spec("gemm_fused.yaml")
    pick = ("conv1", "layer1.0.conv2", "layer2.0.conv2", "layer3.0.conv1", "fc")
    wl = Workload("some", tuple(l for l in get_workload("resnet50").layers if l.name in pick))
    by = {obj: simulate_workload_on_array(design, wl, fuse=FUSE, mapper_objective=obj)[0]
          for obj in ("latency", "energy", "edp")}
    energy = lambda rs: [sum(r.energy_pj.values()) for r in rs]     # noqa: E731
    for i in range(len(by["latency"])):
        lat, eng, edp = by["latency"][i], by["energy"][i], by["edp"][i]
        assert lat.cycles <= eng.cycles and lat.cycles <= edp.cycles
        assert energy([eng])[0] <= energy([lat])[0] and energy([eng])[0] <= energy([edp])[0]
        assert edp.cycles * energy([edp])[0] <= min(r.cycles * energy([r])[0] for r in (lat, eng))
    # on these layers the choice is not a constant (else the checks above would hold trivially)
    assert len({r.extra["dataflow"] for o in by.values() for r in o}) > 1


def test_fuse_and_dataflow_together_are_refused():
    design = load_spec("gemm_fused.yaml")
    with pytest.raises(SpecError, match="dataflow"):
        simulate_workload_on_array(design, get_workload("gemm:8,8,8"), fuse=FUSE, dataflow="os")
    with pytest.raises(SpecError, match="objective"):
        simulate_workload_on_array(design, get_workload("gemm:8,8,8"), fuse=FUSE, mapper_objective="area")


def test_fused_skewed_map_competes_per_layer_at_the_array_level():
    """gemm_fused_hex with --ideal-dram: each layer runs under os or hex, whichever the objective prefers,
    each timed by its fused view (the stt model for hex, the ideal-stream array model for os)."""
    from archgen.dataflow.stt_array import stt_tiling
    from archgen.mappings.tiling import map_problem
    from archgen.sim.array_model import simulate_array
    design = load_spec("gemm_fused_hex")
    fuse = tuple(design.fuse)
    small = get_workload("gemm:5,6,3")
    wl = Workload("mix", (_two_gemms().layers + (dataclasses.replace(small.layers[0], name="small"),)))
    fused = compile_fused(design, fuse)
    results, _ = simulate_workload_on_array(design, wl, fuse=fuse, mapper_objective="latency", ideal_dram=True)
    for layer, r in zip(wl.layers, results):
        bounds, repeat, _how = lower_layer(layer, design)
        cycles = {"os": simulate_array(fused.view("os"), map_problem(design, bounds, fused.view("os").dataflow)),
                  "hex": simulate_array(fused.view("hex"), stt_tiling(fused.view("hex").network, bounds))}
        cycles = {k: v.total_cycles * repeat for k, v in cycles.items()}
        assert r.cycles == cycles[r.extra["dataflow"]] == min(cycles.values())
    assert {r.extra["dataflow"] for r in results} == {"os", "hex"}    # the choice is not a constant here


def test_fused_skewed_map_runs_through_the_memory_system():
    """Without --ideal-dram a fused design's skewed map runs in the stt memory system of its view's one build
    (dataflow/stt_command.py; the view's product stages included), the tiled dataflows in the layer model; each
    layer under the faster one (``--objective latency``)."""
    from archgen.dataflow.stt_command import build_stt, plan_for_build
    from archgen.dataflow.stt_layer import simulate_stt_layer
    design = load_spec("gemm_fused_hex", ["array.shape=3x5"])
    fuse = tuple(design.fuse)
    small = get_workload("gemm:4,2,4")          # hex 208 cycles against os 219
    wl = Workload("mix", (_two_gemms().layers + (dataclasses.replace(small.layers[0], name="small"),)))
    fused = compile_fused(design, fuse)
    build = build_stt(fused.view("hex"))
    results, _ = simulate_workload_on_array(design, wl, fuse=fuse, mapper_objective="latency")
    for layer, r in zip(wl.layers, results):
        bounds, repeat, _how = lower_layer(layer, design)
        os_view = fused.view("os")
        cycles = {"os": simulate_layer(os_view, plan_layer(design, bounds, os_view.fu_graph.dataflow)).cycles,
                  "hex": simulate_stt_layer(plan_for_build(build, bounds, layer.name)).cycles}
        assert r.cycles == cycles[r.extra["dataflow"]] * repeat == min(cycles.values()) * repeat, (layer.name, cycles)
    assert "hex" in {r.extra["dataflow"] for r in results}
