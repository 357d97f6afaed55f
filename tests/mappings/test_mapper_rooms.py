"""The mapper's search and the fused layer core plan blocks the memory system builds (issue 14, after H131).

``layer_program`` gives a block one buffer half rounded down to whole bank rows (``memctl.buffer_rooms``). H131 made
``plan_layer`` check that for ``archgen sim`` and ``archgen verify``; two callers still checked ``bytes / halves``:
``--mapper search`` (mappings/mapper.py ``search_layer``, called by sim/array_sim.py ``searched_command``) and the fused
core's program check (verif/fused_program_check.py). On fa98e34, gemm_os 2x2 with ``memory.A.bytes: 96`` (48 B per
half, 32 B in whole bank rows) and the layer i=8, j=8, k=48 made the search pick ``i:4 > k:6 > j:4``, a 48 B block of
A that ``layer_program`` refuses (``archgen sim --mapper search`` reported its 1,236 cycles), and made the fused
verify of gemm_fused at 2x2 exit 2 on os's ``k:24`` plan."""
import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array, compile_fused
from archgen.dataflow.memctl import buffer_fit, buffer_rooms, layer_program
from archgen.mappings.mapper import search_layer
from archgen.mappings.memory_tiling import plan_layer
from archgen.sim.energy import EnergyModel
from archgen.workloads.library import get_workload

LAYER = {"i": 8, "j": 8, "k": 48}


def _gemm_os(a_bytes):
    """The built-in gemm_os at 2x2 with ``memory.A.bytes`` = ``a_bytes`` (the CLI's ``--set``)."""
    return load_spec("gemm_os", ["array.shape=2x2", f"memory.A.bytes={a_bytes}"])


def test_archgen_sim_mapper_search_picks_a_block_the_memory_system_builds(monkeypatch):
    """The reproducer through ``archgen sim --mapper search``'s planning: the searched command passes
    ``layer_program`` at the spec's buffer sizes, and the reported mapping is that command. On fa98e34 the search
    chose i:4 > k:6 > j:4 and layer_program refused it (48 B of A in a 32 B half)."""
    import archgen.mappings.mapper as mapper
    import archgen.sim.array_sim as array_sim
    chosen = []

    def spy(*args, **kwargs):
        chosen.append(search_layer(*args, **kwargs).command)
        return mapper.MapperChoice(chosen[-1], 0, 0.0, "edp", 0, 0)
    monkeypatch.setattr(mapper, "search_layer", spy)
    design = _gemm_os(96)
    results, _ = array_sim.simulate_workload_on_array(design, get_workload("gemm:8,48,8"), mapper="search")
    assert len(chosen) == 1 and results[0].extra["mapping"] == chosen[0].describe()
    layer_program(compile_array(design), chosen[0], spec_size=True)


@pytest.mark.parametrize("a_bytes", [64, 96, 100, 126, 128, 160])
@pytest.mark.parametrize("objective", ["latency", "energy", "edp"])
def test_every_candidate_the_search_keeps_fits_the_rooms(a_bytes, objective):
    """Around the boundary (32 B of A per half up to 127 B of buffer, 64 B from 128 B) and on each objective: the
    command ``search_layer`` returns with the rooms builds, and it is never worse on the objective than the
    heuristic's command planned with the same rooms (the search's guarantee, kept)."""
    c = compile_array(_gemm_os(a_bytes))
    rooms, energy = buffer_rooms(c), EnergyModel.load()
    evaluate = _evaluator(c)
    choice = search_layer(c.design, LAYER, c.dataflow, evaluate, energy, objective=objective, rooms=rooms)
    prog = layer_program(c, choice.command, spec_size=True)
    first = next(choice.command.blocks())
    assert choice.command.footprint_bytes("A", first) <= prog.layouts["A"].half_elems
    heuristic = plan_layer(c.design, LAYER, c.dataflow, rooms=rooms)
    assert choice.value <= _value(objective, *evaluate(heuristic))


def test_without_the_rooms_the_search_picks_a_refused_block():
    """The cause, kept visible: ``bytes / halves`` (``rooms=None``) admits the 48 B block layer_program refuses, so a
    caller that plans for a design it builds must pass the rooms."""
    c = compile_array(_gemm_os(96))
    choice = search_layer(c.design, LAYER, c.dataflow, _evaluator(c), EnergyModel.load())
    with pytest.raises(SpecError, match=r"memory\.A\.bytes: a block of 48 B does not fit one half"):
        layer_program(c, choice.command, spec_size=True)


def test_the_search_passes_over_a_finalist_the_fit_check_refuses():
    """``fits`` (``memctl.buffer_fit``, a design with margins or a lane-interleaved output) is asked of the finalists:
    a check that refuses every command but the heuristic's leaves the heuristic, and one that refuses nothing leaves
    the search's choice as without it."""
    c = compile_array(_gemm_os(256))
    rooms, energy, evaluate = buffer_rooms(c), EnergyModel.load(), _evaluator(c)
    free = search_layer(c.design, LAYER, c.dataflow, evaluate, energy, rooms=rooms)
    heuristic = plan_layer(c.design, LAYER, c.dataflow, rooms=rooms)
    assert (free.command.tile, free.command.order) != (heuristic.tile, heuristic.order)   # else this proves nothing

    def only_heuristic(cmd):
        if (cmd.tile, cmd.order) != (heuristic.tile, heuristic.order):
            raise SpecError([])
    kept = search_layer(c.design, LAYER, c.dataflow, evaluate, energy, rooms=rooms, fits=only_heuristic)
    assert (kept.command.tile, kept.command.order) == (heuristic.tile, heuristic.order)
    same = search_layer(c.design, LAYER, c.dataflow, evaluate, energy, rooms=rooms, fits=lambda cmd: None)
    assert same.command == free.command


def test_the_fused_core_plans_with_its_own_rooms(monkeypatch):
    """verif/fused_program_check.py plans each layer against the fused core's own layouts (``core_rooms``): every
    planned command passes ``layer_program`` of its view. On fa98e34 os planned k:24 here and the check raised
    SpecError before building anything. The programs are built; the simulation is stubbed (the Verilator run is
    ``test_the_fused_core_runs_the_planned_blocks``)."""
    import archgen.verif.fused_program_check as fpc
    design = load_spec("gemm_fused", ["array.shape=2x2", "memory.A.bytes=96"])
    fused = compile_fused(design, tuple(design.fuse))
    seen = []
    real = fpc.layer_program

    def spy(view, cmd, *args, **kwargs):
        seen.append((view.dataflow.name, cmd))
        return real(view, cmd, *args, **kwargs)
    monkeypatch.setattr(fpc, "layer_program", spy)
    monkeypatch.setattr(fpc, "run_layer_top", lambda *args: {"passed": False})
    fpc.verify_fused_program(design, [(n, LAYER) for n in fused.names], simulator="amaranth")
    assert [n for n, _ in seen] == list(fused.names)
    os_cmd = dict(seen)["os"]
    assert dict(os_cmd.tile)["k"] == 12


def test_the_fused_core_rooms_are_every_views_rooms():
    """The layouts every fused dataflow shares give the rooms ``buffer_rooms`` gives each view (at sizes that are and
    are not whole bank rows per half)."""
    from archgen.rtlgen.fused_layer import FusedLayerCore, fused_layer_programs
    from archgen.verif.fused_program_check import core_rooms
    for shape, memory in (("2x2", "memory.A.bytes=96"), ("4x4", "memory.B.bytes=200"), ("2x4", "memory.C.bytes=300")):
        design = load_spec("gemm_fused", [f"array.shape={shape}", memory])
        fused = compile_fused(design, tuple(design.fuse))
        rooms = core_rooms(FusedLayerCore(fused, fused_layer_programs(fused)))
        assert all(buffer_rooms(fused.view(n)) == rooms for n in fused.names)
        assert all(buffer_fit(fused.view(n)) is None for n in fused.names)      # no margins, no split output


@pytest.mark.slow
def test_the_fused_core_runs_the_planned_blocks(tmp_path):
    """The fused reproducer on Verilator: os, ws and is one after another on the one core, outputs exact, RTL cycles
    equal to the model's."""
    from archgen.verif.fused_program_check import verify_fused_program
    design = load_spec("gemm_fused", ["array.shape=2x2", "memory.A.bytes=96"])
    results = verify_fused_program(design, [(n, LAYER) for n in design.fuse], cache_dir=tmp_path)
    assert [r.outputs_exact and r.rtl_cycles == r.model_cycles for r in results] == [True, True, True]


def _evaluator(c):
    from archgen.sim.layer_model import simulate_layer
    energy = EnergyModel.load()

    def evaluate(cmd):
        from archgen.mappings.mapper import estimate_command
        return simulate_layer(c, cmd).cycles, estimate_command(cmd, energy)[1]
    return evaluate


def _value(objective, cycles, pj):
    return {"latency": cycles, "energy": pj, "edp": cycles * pj}[objective]
