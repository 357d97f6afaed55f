"""``archgen sim`` on a skewed stt array (sim/array_sim.py): array level, the same cycles verify measures."""
import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.dataflow.stt_array import stt_tiling
from archgen.dataflow.stt_layer import COMMAND_OVERHEAD
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


def test_memory_system_path_runs_the_stt_layer_contract():
    """Without --ideal-dram a skewed map runs through the stt memory system (dataflow/stt_layer.py) of the one
    run-time programmable build (dataflow/stt_command.py: its box and period): loads of every input tensor, the
    array's slots plus its handshake and done cycles, the write-back."""
    from archgen.dataflow.stt_command import build_stt, plan_for_build
    design = load_spec("gemm_hex", ["array.shape=3x5", "memory.dram.latency=7"])
    results, _ = simulate_workload_on_array(design, get_workload("gemm:8,6,5"))
    build = build_stt(compile_array(design))
    tiling = stt_tiling(build.network, {"i": 8, "k": 6, "j": 5}, build.box, build.period)
    assert results[0].extra["box"] == build.box != stt_tiling(build.network, {"i": 8, "k": 6, "j": 5}).box
    dram = design.memory_system.dram
    plan = plan_for_build(build, {"i": 8, "k": 6, "j": 5})
    # every region in bank order: whole bank rows of the banked layout (dataflow/stt_bank.py), at least the tensor
    image = {t: plan.layouts[t].positions(plan.shapes[t]) * plan.elem_bytes[t] for t in ("A", "B", "C")}
    assert image["A"] >= 48 and image["B"] >= 30 and image["C"] >= 160
    want = (dram.transfer_cycles(image["A"]) + dram.transfer_cycles(image["B"]) + tiling.slots + COMMAND_OVERHEAD
            + dram.transfer_cycles(image["C"]))
    assert results[0].cycles == want == plan.cycles()
    assert results[0].dram_bytes == {"A.read": image["A"], "B.read": image["B"], "C.write": image["C"]}
    assert results[0].sram_accesses == {f"buffer.{k}": v for k, v in plan.buffer_accesses().items()}
    assert results[0].energy_pj["buffers"] > 0


def test_a_tensor_larger_than_its_buffer_is_refused_by_field():
    with pytest.raises(SpecError) as err:
        simulate_workload_on_array(load_spec("gemm_hex", ["memory.B.bytes=8"]), get_workload("gemm:8,9,8"))
    msg = str(err.value.problems[0])
    # the build's banks of B (2 banks of 16-element rows) cannot hold one row: no build, so no layer runs
    assert msg == "memory.B.bytes: the build's buffer of B needs at least one row of 2 x 16 elements (32 B) (got 8)"


def test_the_fit_check_counts_the_banked_buffers():
    """The refusal compares what the top instantiates (the banks of each tensor's layout, whole bank rows) with
    the buffer; one banked buffer per tensor holds a fraction of the per-lane copies of the first form."""
    from archgen.dataflow.stt_layer import plan_stt_layer
    design = load_spec("gemm_hex", ["array.shape=3x5"])
    tiling = stt_tiling(compile_array(design).network, {"i": 8, "k": 6, "j": 5})
    plan = plan_stt_layer(tiling)
    st = plan.storage_bytes()
    assert st == {t: lay.storage(plan.shapes[t]) * plan.elem_bytes[t] for t, lay in plan.layouts.items()}
    assert not any(lay.copies for lay in plan.layouts.values())
    assert st["A"] >= 48 and st["B"] >= 30 and st["C"] >= 160
    assert all(st[t] < plan.copies_storage_bytes()[t] for t in st)
    assert plan.grid == ()
    # a buffer one byte short of the output's banks: the layer runs in blocks that fit
    tight = load_spec("gemm_hex", ["array.shape=3x5", f"memory.C.bytes={st['C'] - 1}"])
    blocked = plan_stt_layer(stt_tiling(compile_array(tight).network, {"i": 8, "k": 6, "j": 5}))
    assert blocked.n_blocks > 1 and blocked.storage_bytes()["C"] <= st["C"] - 1
    ok = load_spec("gemm_hex", ["array.shape=3x5", f"memory.C.bytes={st['C']}"])
    whole = plan_stt_layer(stt_tiling(compile_array(ok).network, {"i": 8, "k": 6, "j": 5}))
    assert whole.grid == () and whole.storage_bytes()["C"] == st["C"]


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


def test_a_bert_sized_layer_runs_in_blocks_at_default_sizes():
    """gemm_hex's default buffers cannot hold a 128 x 768 x 768 layer's banked tensors; it runs as a grid of
    blocks whose storage fits, with the DRAM traffic of the blocks' regions (the one build's box and period)."""
    from archgen.dataflow.stt_command import build_stt, plan_for_build
    design = load_spec("gemm_hex")
    results, _ = simulate_workload_on_array(design, get_workload("gemm:128,768,768"))
    build = build_stt(compile_array(design))
    plan = plan_for_build(build, {"i": 128, "k": 768, "j": 768})
    assert plan.n_blocks > 1
    assert all(v <= design.memory_system.buffer(t).bytes for t, v in plan.storage_bytes().items())
    loads = {t: plan.n_blocks * plan.tensor_bytes(t) for t in ("A", "B")}
    assert results[0].dram_bytes == {"A.read": loads["A"], "B.read": loads["B"],
                                     "C.write": plan.out_blocks * plan.tensor_bytes("C")}
    # every output written once; the build's boxes of 3 along i pad the last block's region to i = 129
    assert build.box["i"] == 3 and results[0].dram_bytes["C.write"] == 129 * 768 * 4
    assert results[0].cycles == plan.cycles()
    assert results[0].extra["stt_blocks"] == plan.n_blocks
