"""Does the planner propose only blocks the memory system accepts? (docs/memory.md, the planner's fit.)

The generated memory system (dataflow/memctl.py ``layer_program``) gives a block ``memory.<X>.bytes / halves`` rounded
down to whole bank rows (banks: a power of two, at least one beat's lanes and one DRAM word's elements), minus the
margin of a FIFO chain root or a lane lead. This script plans random layers on random designs -- the built-in array
specs' dataflows, a conv whose output lanes span two array axes (a lane-interleaved output, its blocks padded to whole
array tiles) and H125's 3x2 map under ``schedule: map`` (margins), each on several array shapes and DRAM widths, with
every ``memory.<X>.bytes`` drawn near a bank-row boundary -- twice: *before*, the planner as on main (its halves not
rounded, memctl's own check ``buffer_fit`` for designs with margins only), and *after* (``rooms=buffer_rooms(c)``, and
``buffer_fit`` for a lane-interleaved output too). Each plan goes through
``layer_program(..., spec_size=True, fit_only=True)``; the counts are the plans it refuses (a ``memory.<X>.bytes``
refusal; "over the rounded half": a block over ``buffer_rooms``' half, the rest padding or margins), the plans that
differ, and the layers no command fits (the planner's own refusal, both times the same).

    python benchmarks/planner_bank_rows.py [--trials 400] [--seed 0]
"""
import argparse
import time
from pathlib import Path

import numpy as np
import yaml

import archgen.arch as arch
from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.memctl import buffer_fit, buffer_rooms, chained_inputs, layer_program
from archgen.mappings.memory_tiling import _misfits, plan_layer

SPECS = ["conv_rs", "conv_ws", "gemm_fused", "gemm_is", "gemm_os", "gemm_os3d", "gemm_os_bcast", "gemm_ws"]
TYPES = {"I": "int8", "W": "int8", "O": "int32"}
# a conv whose output lanes lie on two array axes (k, p): memctl.output_lane_split pads its blocks to whole tiles
SPLIT = {"version": 1, "kind": "array", "name": "split", "operation": "O[k,p,q] += I[c,p+r,q] * W[k,c,r]",
         "types": TYPES, "array": {"shape": [2, 2]},
         "dataflows": {"d": {"spatial": {"k": 0, "p": 1}, "order": ["r", "k", "c", "p", "q"], "control": [0, 0]}}}
# H125's 3x2 conv map under the map's own schedule: r lags by s0 + s1 (a lane lead, a margin in front of I's block)
SKEW = {"version": 1, "kind": "array", "name": "skew", "operation": "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]",
        "types": TYPES, "array": {"shape": [3, 2]},
        "dataflows": {"d": {"map": {"n": "t_n", "k": "3*t_k + s0", "p": "2*t_p + s1", "q": "t_q", "c": "t_c",
                                    "r": "t_r - s0 - s1", "s": "t_s"},
                            "order": ["n", "k", "p", "q", "r", "c", "s"], "inner": ["r", "c", "s"],
                            "schedule": "map", "control": [0, 1]}}}
SHAPES_2D = [[2, 2], [2, 4], [4, 2], [3, 3], [4, 4], [3, 2]]
SHAPES_3D = [[2, 2, 2], [2, 3, 2], [4, 2, 2]]
WIDTHS = [8, 16, 32, 64]
BOUNDS = {"n": (1, 2), "k": (1, 40), "c": (1, 6), "p": (1, 10), "q": (1, 8), "r": (1, 3), "s": (1, 3),
          "i": (1, 24), "j": (1, 24)}


def _builtin(name: str) -> list[dict]:
    """The built-in spec's data, one per array dataflow (a fused spec's dataflows one at a time)."""
    data = yaml.safe_load((Path(arch.__file__).parent / "specs" / f"{name}.yaml").read_text())
    data.pop("fuse", None)
    return [dict(data, dataflows={df: body}) for df, body in data["dataflows"].items()]


def _families() -> list[dict]:
    return [d for name in SPECS for d in _builtin(name)] + [SPLIT, SKEW]


def _design(rng, base: dict):
    """``base`` on a random shape and DRAM width with every buffer's half near a whole number of bank rows; None
    when the memory system refuses the design whatever the command (another refusal, found by ``buffer_rooms``)."""
    shapes = SHAPES_3D if len(base["array"]["shape"]) == 3 else SHAPES_2D
    shape = [int(v) for v in shapes[rng.integers(len(shapes))]] if base not in (SPLIT, SKEW) else base["array"]["shape"]
    width = int(WIDTHS[rng.integers(len(WIDTHS))])
    data = dict(base, array={"shape": shape}, memory={"dram": {"width_bytes": width}})
    rooms = buffer_rooms(compile_array(load_spec_data(data)))
    if rooms is None:
        return None
    mem = {"dram": {"width_bytes": width}}
    for x, room in rooms.items():                 # 2 halves of 1..4 bank rows, plus 0 .. (a row - 1 element) bytes
        rows = int(rng.integers(1, 5))
        extra = int(rng.integers(0, room.row_bytes))
        mem[x] = {"bytes": 2 * (rows * room.row_bytes + extra)}
    data = dict(data, memory=mem)
    return compile_array(load_spec_data(data))


def _layer(rng, c) -> dict[str, int]:
    return {d: int(rng.integers(BOUNDS[d][0], BOUNDS[d][1] + 1)) for d in c.design.operation.dims}


def _refused(c, cmd) -> bool:
    """The memory system refuses the command's blocks at the spec's buffer sizes."""
    try:
        layer_program(c, cmd, spec_size=True, fit_only=True)
    except SpecError as err:
        if any(p.path.startswith("memory.") and p.path.endswith(".bytes") for p in err.problems):
            return True
        raise
    return False


def _plan(c, bounds, after: bool):
    """The planner's command, or None when no command fits. Before (as on main at c7b9554): no rooms, and memctl's
    own check only for a design with margins (a chained input); after: the rooms, and that check for a design with
    margins or a lane-interleaved output too."""
    try:
        if after:
            return plan_layer(c.design, bounds, c.dataflow, fits=buffer_fit(c), rooms=buffer_rooms(c))
        return plan_layer(c.design, bounds, c.dataflow, fits=buffer_fit(c) if chained_inputs(c) else None)
    except SpecError:
        return None


def run(trials: int, seed: int) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    families = _families()
    n = {"layers": 0, "planned": 0, "refused before": 0, "of them over the rounded half": 0, "refused after": 0,
         "plans changed": 0,
         "changed and refused before": 0, "no command fits": 0, "designs skipped": 0}
    while n["layers"] < trials:
        c = _design(rng, families[rng.integers(len(families))])
        if c is None:
            n["designs skipped"] += 1
            continue
        for _ in range(4):
            bounds = _layer(rng, c)
            n["layers"] += 1
            before, after = _plan(c, bounds, False), _plan(c, bounds, True)
            if after is None:
                n["no command fits"] += 1
                assert before is None or _refused(c, before), (c.design.name, bounds)
                continue
            n["planned"] += 1
            was = before is not None and _refused(c, before)
            n["refused before"] += was
            n["of them over the rounded half"] += was and bool(_misfits(before, buffer_rooms(c)))
            n["refused after"] += _refused(c, after)
            changed = before is None or (before.tile, before.order) != (after.tile, after.order)
            n["plans changed"] += changed
            n["changed and refused before"] += changed and (before is None or was)
    return n


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t = time.process_time()
    counts = run(a.trials, a.seed)
    print(", ".join(f"{k}: {v}" for k, v in counts.items()) + f" ({time.process_time() - t:.1f} s CPU)")
