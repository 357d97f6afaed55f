"""The mapping search: always fits, never worse than plan_layer on its objective, deterministic per seed."""
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
