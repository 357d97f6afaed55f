"""The mapping search: always fits, never worse than plan_layer on its objective, deterministic per seed, and on its
objective never beaten by another objective's search (r144's seed-sensitive reproducer)."""
import itertools
import math

import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.mappings.mapper import search_layer
from archgen.mappings.memory_tiling import _misfits, make_command, plan_layer
from archgen.sim.array_sim import _memory_layer
from archgen.sim.energy import EnergyModel

ENERGY = EnergyModel.load()


class _L:                      # the few fields _memory_layer reads from a workload layer
    def __init__(self, name, macs):
        self.name, self.kind, self.macs = name, "gemm", macs


def _evaluator(compiled, layer):
    def evaluate(cmd):
        r = _memory_layer(compiled, layer, cmd, 1, "direct", ENERGY)
        return r.cycles, sum(r.energy_pj.values())
    return evaluate


def _value(objective, cycles, pj):
    return {"latency": cycles, "energy": pj, "edp": cycles * pj}[objective]


CASES = [
    ("gemm_os", [4, 4], {"A": 2048, "B": 2048, "C": 4096}),
    ("gemm_ws", [4, 8], {"A": 4096, "B": 1024, "C": 8192}),
    ("gemm_is", [8, 4], {"A": 1024, "B": 4096, "C": 8192}),
]


def _bounds(design):
    dims = design.operation.dims
    return dict(zip(dims, (96, 72, 80)[:len(dims)]))


@pytest.mark.parametrize("spec,shape,buffers", CASES)
@pytest.mark.parametrize("objective", ["latency", "energy", "edp"])
def test_search_fits_and_is_never_worse_than_the_heuristic(spec, shape, buffers, objective):
    design = load_spec(spec, [f"array.shape={shape}"] + [f"memory.{k}.bytes={v}" for k, v in buffers.items()])
    compiled = compile_array(design)
    bounds = _bounds(design)
    layer = _L("g", 96 * 72 * 80)
    evaluate = _evaluator(compiled, layer)
    df = compiled.fu_graph.dataflow
    choice = search_layer(design, bounds, df, evaluate, ENERGY, objective=objective, seed=1, samples=24)
    assert not _misfits(choice.command)
    make_command(design, bounds, df, dict(choice.command.tile), choice.command.order)   # raises on a misfit
    h = evaluate(plan_layer(design, bounds, df))
    got = evaluate(choice.command)
    assert (choice.cycles, choice.energy_pj) == got            # the reported figures are the model's
    assert _value(objective, *got) <= _value(objective, *h)


def test_search_is_deterministic_per_seed_and_explores():
    spec, shape, buffers = CASES[0]
    design = load_spec(spec, [f"array.shape={shape}"] + [f"memory.{k}.bytes={v}" for k, v in buffers.items()])
    compiled = compile_array(design)
    bounds = _bounds(design)
    evaluate = _evaluator(compiled, _L("g", 96 * 72 * 80))
    df = compiled.fu_graph.dataflow
    runs = [search_layer(design, bounds, df, evaluate, ENERGY, seed=s, samples=16) for s in (7, 7, 8)]
    assert (runs[0].command.tile, runs[0].command.order) == (runs[1].command.tile, runs[1].command.order)
    assert runs[0].candidates_estimated > 16


def test_search_rejects_an_unknown_objective_and_a_layer_that_cannot_fit():
    spec, shape, _ = CASES[0]
    design = load_spec(spec, [f"array.shape={shape}", "memory.A.bytes=4"])      # not even one k chunk of A fits
    compiled = compile_array(design)
    df = compiled.fu_graph.dataflow
    with pytest.raises(SpecError, match="objective"):
        search_layer(design, _bounds(design), df, None, ENERGY, objective="speed")
    with pytest.raises(SpecError, match="memory.A.bytes"):
        search_layer(design, _bounds(design), df, None, ENERGY)


def test_cli_sim_with_the_search_mapper(tmp_path, monkeypatch):
    from conftest import run_cli
    code, out, err = run_cli(["sim", "gemm_os", "--set", "array.shape=[4,4]", "--workload", "gemm:40,48,36",
                              "--mapper", "search", "--objective", "latency", "--seed", "3"], tmp_path, monkeypatch)
    assert code == 0, err
    assert "cycles" in out.lower()


# r144's reproducer: gemm_os 2x2 with memory.A.bytes 96 (32 B of A per half in whole bank rows), i=8, j=8, k=48
REPRO = ("gemm_os", ["array.shape=2x2", "memory.A.bytes=96"], {"i": 8, "j": 8, "k": 48})


def _as_sim(spec, sets, bounds):
    """(compiled, evaluate, search) as ``archgen sim --mapper search`` plans the layer: the memory system's rooms
    and fit check, sim's layer model."""
    from archgen.dataflow.memctl import buffer_fit, buffer_rooms
    compiled = compile_array(load_spec(spec, sets))
    evaluate = _evaluator(compiled, _L("g", math.prod(bounds.values())))
    rooms, fits = buffer_rooms(compiled), buffer_fit(compiled, "g")

    def search(objective, seed):
        return search_layer(compiled.design, bounds, compiled.fu_graph.dataflow, evaluate, ENERGY,
                            objective=objective, seed=seed, layer="g", fits=fits, rooms=rooms)
    return compiled, evaluate, search


def _grid_optimum(compiled, bounds, evaluate):
    """The fewest cycles of any admissible command of the search's grid (every block size of ``_tile_choices`` x
    every order), by brute force through the model; and a check that commands the search judges as one
    (``_same_blocks``: they differ only in where a one-block loop sits) get one verdict."""
    from archgen.dataflow.memctl import buffer_rooms
    from archgen.mappings.mapper import _same_blocks, _tile_choices
    from archgen.mappings.memory_tiling import LayerCommand, _canonical, _forbidden_spill
    from archgen.mappings.tiling import map_problem
    df, design, rooms = compiled.fu_graph.dataflow, compiled.design, buffer_rooms(compiled)
    loops = tuple(df.outer_dims()) + tuple(df.inner_dims())
    trips = map_problem(design, bounds, df).trips()
    verdicts = {}
    for tile in itertools.product(*(_tile_choices(trips[d]) for d in loops)):
        for order in itertools.permutations(loops):
            cmd = LayerCommand(design, df, tuple(bounds.items()), tuple(zip(loops, tile)), order)
            if _misfits(cmd, rooms) or _forbidden_spill(cmd):
                continue
            cmd = _canonical(cmd)
            got = evaluate(make_command(design, bounds, df, dict(cmd.tile), cmd.order, "g", rooms))
            assert verdicts.setdefault(_same_blocks(cmd), got) == got, cmd.describe()
    return min(c for c, _ in verdicts.values())


def test_the_reproducers_latency_search_finds_the_grids_fastest_command_at_every_seed():
    """r144: under ``--objective latency`` the search found 1,937 cycles at seed 0 and the heuristic's 2,441 at seed
    5, while edp and energy found 1,727. Now every seed finds the fewest cycles any command of the grid gives (by
    brute force, 84 distinct commands through the model), and no other objective's choice is faster."""
    spec, sets, bounds = REPRO
    compiled, evaluate, search = _as_sim(spec, sets, bounds)
    fastest = _grid_optimum(compiled, bounds, evaluate)
    from archgen.dataflow.memctl import buffer_rooms
    heuristic = evaluate(plan_layer(compiled.design, bounds, compiled.fu_graph.dataflow, rooms=buffer_rooms(compiled)))
    assert fastest < heuristic[0]                  # else the search has nothing to find
    chosen = set()
    for seed in range(6):
        runs = {o: search(o, seed) for o in ("latency", "energy", "edp")}
        assert runs["latency"].cycles == fastest, seed
        assert all(runs["latency"].cycles <= r.cycles for r in runs.values())
        chosen.add(runs["latency"].command.describe())
    assert len(chosen) == 1, chosen            # one command, reported in one order (mapper._representative)


@pytest.mark.parametrize("spec, sets, bounds", [
    REPRO,
    ("gemm_ws", ["array.shape=2x4", "memory.B.bytes=128"], {"i": 10, "j": 16, "k": 24}),
    ("gemm_is", ["array.shape=8x4", "memory.A.bytes=1024", "memory.B.bytes=4096", "memory.C.bytes=8192"],
     {"i": 96, "j": 72, "k": 80}),
])
@pytest.mark.parametrize("seed", [0, 3])
def test_no_other_objective_beats_the_search_on_its_own_objective(spec, sets, bounds, seed):
    """Every objective's finalists and model-guided local search are judged whatever the objective, so at one seed the
    latency search's cycles, the energy search's pJ and the edp search's product are each the lowest of the three
    searches' choices."""
    _, _, search = _as_sim(spec, sets, bounds)
    runs = {o: search(o, seed) for o in ("latency", "energy", "edp")}
    for o, mine in runs.items():
        assert all(mine.value <= _value(o, r.cycles, r.energy_pj) for r in runs.values()), o


def test_the_search_is_deterministic_per_seed():
    """The same seed: the same command, figures and work done (candidates estimated, commands judged)."""
    _, _, search = _as_sim(*REPRO)
    a, b = search("latency", 4), search("latency", 4)
    assert (a.command, a.cycles, a.energy_pj) == (b.command, b.cycles, b.energy_pj)
    assert (a.candidates_estimated, a.finalists_simulated) == (b.candidates_estimated, b.finalists_simulated)
