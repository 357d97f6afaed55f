"""How good, and how seed-dependent, is the mapping search (mappings/mapper.py ``search_layer``)?

For each case (a layer on a design: the reproducer of r144, GEMM and conv layers from workloads/, several array
shapes and buffer sizes) the search runs for every objective and seeds 0..N-1, judged as ``archgen sim --mapper
search`` judges it (sim/array_sim.py ``searched_command``: the layer model ``_memory_layer``, the memory system's
rooms and fit check). Per case and objective the table gives the model's objective value of the chosen command across
seeds (best / median / worst) relative to a reference: the best value over every admissible command of the
search's grid (every block size of ``_tile_choices`` x every order) run through the model when the grid has at most
``--max-grid`` points (with its size and admissible commands; a grid with blocks of one tile, as bert's q_proj has,
takes the model hours: lower ``--max-grid`` for it), or over every search of this run (both versions, any seed and
objective), whichever is lower (a local search also reaches block sizes off the grid). "ms" is the median time of
one search; "runs" the median commands judged by the model.

    python benchmarks/mapper_quality.py [--seeds 10] [--case NAME ...] [--max-grid 10000] [--baseline REV]

``--baseline REV`` runs mappings/mapper.py as of git revision REV too (``git show REV:mappings/mapper.py``, loaded
in place of the current one for its own searches), on the same cases, seeds and load: the before / after columns.
A ratio of 1.000 is the reference; the objective values are cycles (latency), pJ (energy) and cycles x pJ (edp).
"""
import argparse
import importlib.util
import itertools
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.dataflow.memctl import buffer_fit, buffer_rooms
from archgen.mappings.mapper import OBJECTIVES, _same_blocks, _tile_choices, search_layer
from archgen.mappings.memory_tiling import (LayerCommand, _canonical, _forbidden_spill, _misfits, _split_orders,
                                            make_command, plan_layer)
from archgen.mappings.tiling import map_problem
from archgen.sim.array_sim import _memory_layer, lower_layer
from archgen.sim.energy import EnergyModel
from archgen.workloads.library import get_workload

ENERGY = EnergyModel.load()
KIB = 1024
# name -> (spec, --set overrides, workload, layer name or None for a gemm:M,K,N workload's one layer)
CASES = {
    "repro 2x2 A96": ("gemm_os", ["array.shape=2x2", "memory.A.bytes=96"], "gemm:8,48,8", None),
    "os 2x2 A160": ("gemm_os", ["array.shape=2x2", "memory.A.bytes=160"], "gemm:12,40,6", None),
    "ws 2x4 B128": ("gemm_ws", ["array.shape=2x4", "memory.B.bytes=128"], "gemm:10,24,16", None),
    "os 4x4 2/2/4K": ("gemm_os", ["array.shape=4x4", "memory.A.bytes=2048", "memory.B.bytes=2048",
                                  "memory.C.bytes=4096"], "gemm:96,80,72", None),
    "is 8x4 1/4/8K": ("gemm_is", ["array.shape=8x4", "memory.A.bytes=1024", "memory.B.bytes=4096",
                                  "memory.C.bytes=8192"], "gemm:96,80,72", None),
    "bert q 8x8 16/16/64K": ("gemm_os", ["array.shape=8x8", f"memory.A.bytes={16 * KIB}", f"memory.B.bytes={16 * KIB}",
                                         f"memory.C.bytes={64 * KIB}"], "bert-base", "block.attn.q_proj"),
    "mbv2 proj 8x8 4/4/16K": ("gemm_os", ["array.shape=8x8", f"memory.A.bytes={4 * KIB}", f"memory.B.bytes={4 * KIB}",
                                          f"memory.C.bytes={16 * KIB}"], "mobilenetv2", "features.2.project"),
    "rn50 3x3 conv_rs 4x4 8/8/32K": ("conv_rs", [f"memory.I.bytes={8 * KIB}", f"memory.W.bytes={8 * KIB}",
                                                 f"memory.O.bytes={32 * KIB}"], "resnet50", "layer1.0.conv2"),
    "rn50 conv1 conv_ws 4x4": ("conv_ws", [], "resnet50", "conv1"),
}


def build_case(name: str):
    """(compiled, bounds, evaluate, layer name) of a case: ``evaluate`` is sim's own judge of a command."""
    spec, sets, workload, layer_name = CASES[name]
    design = load_spec(spec, sets)
    compiled = compile_array(design)
    layers = [x for x in get_workload(workload).layers if x.einsum]
    layer = layers[0] if layer_name is None else next(x for x in layers if x.name == layer_name)
    bounds, repeat, how = lower_layer(layer, design)
    layer = SimpleNamespace(name=layer.name, kind=layer.kind, macs=layer.macs)

    def evaluate(cmd):
        r = _memory_layer(compiled, layer, cmd, repeat, how, ENERGY)
        return r.cycles, sum(r.energy_pj.values())
    return compiled, bounds, evaluate, layer.name


def search(compiled, bounds, evaluate, layer: str, objective: str, seed: int, searcher=search_layer):
    """One search as sim runs it (the memory system's rooms and fit check)."""
    return searcher(compiled.design, bounds, compiled.fu_graph.dataflow, evaluate, ENERGY, objective=objective,
                    seed=seed, layer=layer, fits=buffer_fit(compiled, layer), rooms=buffer_rooms(compiled))


def baseline_search(rev: str):
    """``search_layer`` of mappings/mapper.py at git revision ``rev``: the file as git stores it, written to a
    temporary directory and imported by the import system as a module of the ``archgen.mappings`` package (its
    relative imports resolve to the current package)."""
    import tempfile
    root = Path(__file__).resolve().parents[1]
    text = subprocess.run(["git", "-C", str(root), "show", f"{rev}:mappings/mapper.py"], check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="mapper_baseline_")) / "mapper.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("archgen.mappings._mapper_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.search_layer


def _space(compiled, bounds):
    """The search's space: (loops, per-loop block choices, orders, bounds as the commands carry them)."""
    design, df = compiled.design, compiled.fu_graph.dataflow
    outer, inner = tuple(df.outer_dims()), tuple(df.inner_dims())
    loops = outer + inner
    trips = map_problem(design, bounds, df).trips()
    red = {d for d in outer if not design.operation.output.uses(d)}
    orders = list(itertools.permutations(loops)) if len(loops) <= 4 else _split_orders(outer, inner, red)
    b = plan_layer(design, bounds, df, rooms=buffer_rooms(compiled)).bounds
    return loops, [_tile_choices(trips[d]) for d in loops], orders, b


def grid_size(compiled, bounds) -> int:
    _, choices, orders, _ = _space(compiled, bounds)
    n = len(orders)
    for c in choices:
        n *= len(c)
    return n


def exhaustive(compiled, bounds, evaluate, layer: str):
    """Every admissible command of the search's grid through the model: (count, {objective: best value}). Raises
    AssertionError if two commands the search judges as one (``_same_blocks``) get different verdicts."""
    design, df = compiled.design, compiled.fu_graph.dataflow
    loops, choices, orders, b = _space(compiled, bounds)
    rooms, fits = buffer_rooms(compiled), buffer_fit(compiled, layer)
    seen, admissible, best, verdicts = set(), 0, {o: None for o in OBJECTIVES}, {}
    for tile in itertools.product(*choices):
        for order in orders:
            cmd = LayerCommand(design, df, b, tuple(zip(loops, tile)), order)
            if _misfits(cmd, rooms) or _forbidden_spill(cmd):
                continue
            cmd = _canonical(cmd)
            if (cmd.tile, cmd.order) in seen:
                continue
            seen.add((cmd.tile, cmd.order))
            try:
                if fits is not None:
                    fits(cmd)
                cycles, pj = evaluate(make_command(design, bounds, df, dict(cmd.tile), cmd.order, layer, rooms))
            except SpecError:
                continue
            admissible += 1
            assert verdicts.setdefault(_same_blocks(cmd), (cycles, pj)) == (cycles, pj), cmd.describe()
            for o in OBJECTIVES:
                v = _value(o, cycles, pj)
                best[o] = v if best[o] is None else min(best[o], v)
    return admissible, best


def _value(objective: str, cycles: float, pj: float) -> float:
    return {"latency": cycles, "energy": pj, "edp": cycles * pj}[objective]


def runs_of(case, searcher, seeds: int) -> dict:
    """(objective, seed) -> (cycles, pJ, ms, commands judged) of one search each."""
    compiled, bounds, evaluate, layer = case
    out = {}
    for o in OBJECTIVES:
        for s in range(seeds):
            t = time.perf_counter()
            ch = search(compiled, bounds, evaluate, layer, o, s, searcher)
            out[o, s] = (ch.cycles, ch.energy_pj, (time.perf_counter() - t) * 1e3, ch.finalists_simulated)
    return out


def summary(runs: dict, o: str, seeds: int, ref: float) -> dict:
    values = sorted(_value(o, *runs[o, s][:2]) for s in range(seeds))
    return {"best": values[0] / ref, "median": statistics.median(values) / ref, "worst": values[-1] / ref,
            "ms": statistics.median(runs[o, s][2] for s in range(seeds)),
            "runs": statistics.median(runs[o, s][3] for s in range(seeds)),
            "cycles": sorted({runs[o, s][0] for s in range(seeds)})}


def measure(name: str, seeds: int, max_grid: int, baseline=None) -> list[dict]:
    case = build_case(name)
    versions = {"after": runs_of(case, search_layer, seeds)}
    if baseline is not None:
        versions["before"] = runs_of(case, baseline, seeds)
    size = grid_size(*case[:2])
    admissible, grid = exhaustive(*case) if size <= max_grid else (None, {})
    rows = []
    for o in OBJECTIVES:
        ref = min([_value(o, *r[:2]) for runs in versions.values() for r in runs.values()]
                  + ([grid[o]] if grid.get(o) is not None else []))
        rows.append({"case": name, "grid": size, "admissible": admissible, "objective": o,
                     **{v: summary(runs, o, seeds, ref) for v, runs in versions.items()}})
    return rows


def _cells(r: dict | None) -> str:
    if r is None:
        return "| | | |"
    cyc = ", ".join(f"{c:,}" for c in r["cycles"][:3]) + (" ..." if len(r["cycles"]) > 3 else "")
    return (f"| {r['best']:.3f} / {r['median']:.3f} / {r['worst']:.3f} | {r['ms']:.0f} ({r['runs']:.0f}) | "
            f"{cyc} ")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="default: every case")
    ap.add_argument("--max-grid", type=int, default=10000, help="largest grid (commands before the fit check) "
                    "run whole through the model")
    ap.add_argument("--baseline", metavar="REV", help="also run mappings/mapper.py of this git revision")
    args = ap.parse_args()
    baseline = baseline_search(args.baseline) if args.baseline else None
    print("| case | grid (admissible) | objective | before: best / median / worst | ms (runs) | cycles over seeds "
          "| after: best / median / worst | ms (runs) | cycles over seeds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.case or CASES:
        for r in measure(name, args.seeds, args.max_grid, baseline):
            adm = f"{r['grid']:,} ({r['admissible']:,})" if r["admissible"] is not None else f"{r['grid']:,}"
            print(f"| {r['case']} | {adm} | {r['objective']} {_cells(r.get('before'))}{_cells(r['after'])}|",
                  flush=True)


if __name__ == "__main__":
    main()
