"""Whole layers through the memory system model (sim/layer_model.py, docs/memory.md)."""
import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.mappings.memory_tiling import dram_bytes, make_command, plan_layer
from archgen.mappings.tiling import map_problem
from archgen.sim.array_model import simulate_array
from archgen.sim.array_sim import simulate_workload_on_array
from archgen.sim.layer_model import simulate_layer
from archgen.workloads.library import get_workload

BIG = ["memory.A.bytes=1048576", "memory.B.bytes=1048576", "memory.C.bytes=1048576"]


def test_one_block_is_load_then_compute_then_write_back():
    design = load_spec("gemm_os", BIG + ["memory.dram.latency=10"])
    compiled = compile_array(design)
    bounds = {"i": 7, "k": 9, "j": 6}
    cmd = make_command(design, bounds, design.dataflow(), {"i": 2, "j": 2}, ("i", "j"))
    r = simulate_layer(compiled, cmd)
    port = design.memory_system.dram
    array = simulate_array(compiled, map_problem(design, bounds)).total_cycles
    load = port.transfer_cycles(7 * 9) + port.transfer_cycles(9 * 6)
    assert r.blocks == 1
    assert r.cycles == load + array + 1 + port.transfer_cycles(7 * 6 * 4)
    assert r.stall_cycles == {"dram": r.cycles - array - 1, "buffer_ports": 0, "array": array + 1 - r.steps}


@pytest.mark.parametrize("spec", ["gemm_os", "gemm_ws", "gemm_is"])
@pytest.mark.parametrize("width", [1, 64])
def test_cycles_respect_the_roofline_and_split_into_causes(spec, width):
    design = load_spec(spec, BIG + [f"memory.dram.width_bytes={width}"])
    compiled = compile_array(design)
    bounds = {"i": 21, "k": 18, "j": 14}
    cmd = plan_layer(design, bounds, design.dataflow())
    r = simulate_layer(compiled, cmd)
    assert r.dram_bytes == dram_bytes(cmd)
    macs = 21 * 18 * 14
    assert r.cycles >= max(macs / design.n_fus, sum(r.dram_bytes.values()) / width)
    assert r.cycles == r.compute_cycles + r.stall_cycles["dram"]
    if width == 1:
        assert r.stall_cycles["dram"] > r.compute_cycles        # memory-bound
    else:
        assert r.stall_cycles["dram"] < r.compute_cycles


def test_resident_tiles_cut_dram_bytes_and_time():
    design = load_spec("gemm_os", BIG + ["memory.dram.width_bytes=2"])
    compiled = compile_array(design)
    bounds = {"i": 16, "k": 64, "j": 16}
    good = simulate_layer(compiled, make_command(design, bounds, design.dataflow(), {"i": 1, "j": 4}, ("i", "j")))
    bad = simulate_layer(compiled, make_command(design, bounds, design.dataflow(), {"i": 1, "j": 1}, ("j", "i")))
    assert good.dram_bytes["A.read"] == 16 * 64 and good.dram_bytes["B.read"] == 64 * 16      # B block = all of B
    assert bad.dram_bytes["A.read"] == 4 * 16 * 64 and bad.dram_bytes["B.read"] == 64 * 16
    assert good.cycles < bad.cycles


def test_a_layer_that_cannot_fit_is_refused_before_anything_runs():
    # the planner may cut the streamed k into chunks, so A and B always fit; an output tile (4 x 4 x 4 B on
    # the 4x4 array) cannot be cut: two halves of it do not fit 64 B, a 1 x 1 output does
    design = load_spec("gemm_os", ["memory.C.bytes=64"])
    seen = []
    wl = get_workload("gemm:1,512,1")
    wl_big = get_workload("gemm:8,8,8")
    simulate_workload_on_array(design, wl)
    with pytest.raises(SpecError) as err:
        simulate_workload_on_array(design, wl._replace(layers=wl.layers + wl_big.layers), progress=seen.append)
    assert seen == []
    assert "layers.gemm: operand C needs 2 x 64 B" in str(err.value) and "memory.C.bytes is 64 B" in str(err.value)


def test_bank_counts_must_divide_the_lanes_and_commands_must_match_the_dataflow():
    from archgen.cli import main
    design = load_spec("gemm_os", ["memory.A.banks=3"])
    with pytest.raises(SpecError) as err:
        simulate_workload_on_array(design, get_workload("gemm:8,8,8"))
    assert str(err.value) == ("memory.A.banks: must divide the 4 memory-fed lanes of operand A under dataflow 'os' "
                              "(0 = one bank per lane) (got 3)")
    assert main(["sim", "gemm_os", "--set", "memory.A.banks=3", "--workload", "gemm:8,8,8"]) == 2
    assert simulate_workload_on_array(load_spec("gemm_os", ["memory.A.banks=2"]), get_workload("gemm:8,8,8"))[0]
    ws = load_spec("gemm_ws")
    other = load_spec("gemm_os")
    cmd = plan_layer(other, {"i": 8, "k": 8, "j": 8}, other.dataflow(), "fc")
    with pytest.raises(SpecError) as err:
        simulate_layer(compile_array(ws), cmd, layer="fc")
    assert str(err.value) == "layers.fc.dataflow: the command was planned for dataflow 'os'; this design runs 'ws' (got 'os')"


def test_cli_dram_overrides_force_a_memory_bound_run(capsys):
    from archgen.cli import main
    assert main(["sim", "gemm_os", "--workload", "gemm:64,64,64", "--dram-bw", "0"]) == 2
    assert "--dram-bw: must be in 1..65,536 (bytes per cycle of the DRAM port) (got 0)" in capsys.readouterr().err
    assert main(["sim", "gemm_os", "--workload", "gemm:64,64,64", "--dram-bw", "4", "--ideal-dram"]) == 2
    assert main(["sim", "gemm_os", "--workload", "gemm:64,64,64", "--dram-bw", "1", "--dram-latency", "300"]) == 0
    out = capsys.readouterr().out
    assert "DRAM 1 B/cycle, latency 300 cycles" in out and "memory system per layer" in out
    totals = [line.split() for line in out.splitlines() if line.split()[:1] == ["total"]]
    assert len(totals) == 2 and int(totals[1][1].replace(",", "")) > 0, totals    # memory table: stall DRAM (cycles)
    assert "mapping per layer:" in out
