"""What each command can do in reasonable time and memory on a workstation, checked before it starts.

Every guard estimates the work from closed forms (FU counts, tile counts, trace elements) in well under
a second, and refuses with the estimate, the limit and the fix. ``--force`` skips the guards of the
command it is given to. The figures behind the estimates were measured on the 2-core CI machine kind
(docs/limits.md lists them with the command that reproduces each); they are estimates, not promises.
"""
from __future__ import annotations

from dataclasses import dataclass

from archgen.arch.errors import SpecError, problem

__all__ = ["Limit", "LIMITS", "guard_design_size", "guard_verify_problem", "guard_array_workload",
           "guard_spatten_workload", "guard_int", "running_mapping"]


@dataclass(frozen=True)
class Limit:
    name: str
    value: int
    unit: str
    why: str


LIMITS = {
    "compile_fus": Limit("compile_fus", 16_384, "FUs", "build/sim compile the array (LP delay matching): measured "
                         "7 s at 64x64 and 69 s at 128x128, growing as FUs^1.65"),
    "verify_fus": Limit("verify_fus", 1_024, "FUs", "verify compiles the Verilog with Verilator: 35 s at 8x8, "
                        "95 s at 16x16, about 4 times as long per doubling of the side"),
    "verify_cycles": Limit("verify_cycles", 1_000_000, "cycles", "the Verilator bench drives every stream beat from "
                           "Python: 1,300 to 8,000 simulated cycles/s"),
    "sim_tiles": Limit("sim_tiles", 2_000_000, "tiles", "the array model handles about 30,000 tiles/s and keeps "
                       "about 2 KB per tile of a layer"),
    "spatten_elements": Limit("spatten_elements", 500_000_000, "attention scores", "the SpAtten simulation holds "
                              "a synthetic trace of 2 bytes per score and processes about 10 million scores/s"),
}


def _refuse(field: str, what: str, limit: Limit, got) -> SpecError:
    return SpecError([problem(field, f"{what}; the limit is {limit.value:,} {limit.unit} ({limit.why}); make the "
                              "problem smaller, or pass --force to run it anyway", got)])


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.3g} days"


def guard_int(flag: str, value, lo: int | None = None, hi: int | None = None, why: str = "") -> list:
    """Problems of one integer option (None means not given, which is always fine)."""
    if value is None:
        return []
    if lo is not None and value < lo or hi is not None and value > hi:
        if lo is not None and hi is not None:
            rule = f"must be in {lo}..{hi:,}"
        elif lo is not None:
            rule = f"must be at least {lo}"
        else:
            rule = f"must be at most {hi:,}"
        return [problem(flag, rule + (f" ({why})" if why else ""), value)]
    return []


def guard_design_size(design, command: str, force: bool) -> None:
    """Refuse arrays whose compile (LP) or Verilator build would take far too long."""
    if force:
        return
    fus = design.n_fus
    shape = "x".join(map(str, design.shape))
    limit = LIMITS["verify_fus" if command == "verify" else "compile_fus"]
    if fus <= limit.value:
        return
    if command == "verify":
        est = 35 * (fus / 64) ** 1.0
        what = f"{shape} is {fus:,} FUs; building it with Verilator would take about {_duration(est)} or more"
    else:
        est = 7 * (fus / 4096) ** 1.65
        what = f"{shape} is {fus:,} FUs; compiling it would take about {_duration(est)}"
    raise _refuse("array.shape", what, limit, shape)


def running_mapping(design, bounds, dataflow, *, fifo_check: bool = True):
    """The tiling of ``bounds`` under the form of ``dataflow`` the array runs (dataflow/interconnect.py
    ``tiled_equivalent``: reduction loops before an output-dependent inner loop moved out of the tile, the output
    held per run of a trailing reduction run), not the spec's tile: that form runs trips(moved loops) times more
    tiles of fewer steps, and the guards count tiles. Cheap: no compile (no LP)."""
    from archgen.dataflow.interconnect import tiled_equivalent
    from archgen.mappings.tiling import map_problem
    df = design.dataflow(dataflow) if dataflow is None or isinstance(dataflow, str) else dataflow
    if design.alone(df.name) is not design:     # a folded map beside dataflows that fold otherwise: its own array
        design = design.alone(df.name)
        df = design.dataflow(df.name)
    return map_problem(design, bounds, tiled_equivalent(design, df), fifo_check=fifo_check)


def guard_verify_problem(design, mapping, flag: str, force: bool) -> None:
    """Refuse Verilator runs whose cycle count (at least tiles x steps) is out of reach of the bench.
    ``mapping``: :func:`running_mapping` (the tiles the array runs)."""
    if force:
        return
    cycles = mapping.n_tiles * mapping.steps
    limit = LIMITS["verify_cycles"]
    if cycles > limit.value:
        sizes = ",".join(str(v) for v in mapping.bound.values())
        raise _refuse(flag, f"this problem takes at least {cycles:,} cycles ({mapping.n_tiles:,} tiles of "
                      f"{mapping.steps:,} steps), about {_duration(cycles / 3000)} on Verilator", limit, sizes)


def guard_array_workload(design, workload, dataflow, force: bool) -> None:
    """Refuse whole-workload simulations whose tile count is out of reach (time and memory)."""
    if force:
        return
    from archgen.sim.array_sim import lower_layer
    df = design.dataflow(dataflow)
    if df.skewed:     # a skewed stt map's model is a closed form per layer (sim/array_model.py BoxGaps): no limit
        return
    tiles = 0
    for layer in workload.layers:
        if not layer.einsum:
            continue
        bounds, _repeat, _how = lower_layer(layer, design)
        tiles = max(tiles, running_mapping(design, bounds, df, fifo_check=False).n_tiles)   # blocks bound FIFOs
    limit = LIMITS["sim_tiles"]
    if tiles > limit.value:
        under = f" under dataflow {df.name!r}" if len(design.dataflows) > 1 else ""
        raise _refuse("--workload", f"its largest layer is {tiles:,} tiles on this array{under}: about "
                      f"{_duration(tiles / 30_000)} and {tiles * 2e3 / 2**30:.3g} GiB", limit, workload.name)


def guard_spatten_workload(workload, force: bool) -> None:
    if force or workload is None or workload.heads is None:
        return
    keys = (workload.kv_len + 1) if workload.phase == "decode" else workload.seq
    queries = 1 if workload.phase == "decode" else workload.seq
    elements = workload.n_layers * workload.heads * queries * keys
    limit = LIMITS["spatten_elements"]
    if elements > limit.value:
        raise _refuse("--workload", f"{workload.name} at this length is {elements:,} attention scores: about "
                      f"{_duration(elements / 1e7)} and {elements * 2 / 2**30:.3g} GiB for its trace", limit,
                      workload.name)
