"""Skewed stt maps of true convolutions (an input index with a negative coefficient) through the stt memory system
with buffers small enough that the blocks cut a loop of the padded index: the regions' halo (dataflow/stt_layer.py
``block_halo``; docs/memory.md "Zero padding", docs/limits.md, the audit).

    python benchmarks/stt_halo_check.py search SEED COUNT OUT.json     # COUNT random specs, each planned
    python benchmarks/stt_halo_check.py check BEFORE.json AFTER.json [N [SEED]] [--changed]

``search``: random stt rows (entries 0, 1, -1) of ``I[p-r]`` and ``I[p-r+2]`` on 1x2 .. 3x5 arrays, random layers
(k 1-4, p 6-14, r 2-5), DRAM words of 4 or 8 B and I (and sometimes W) buffers of a few words; each spec that
passes the spec checks is planned on its own top (``plan_stt_layer``). OUT.json: per spec its outcome ("ok"
with the grid and the halo, or the refusal's message). Run it with two versions (e.g. main's tree and this one)
for BEFORE and AFTER.
``check``: the specs BEFORE refused because a block could not cut the padded index ("blocks cannot cut") and AFTER
plans (N of them at random, default all), each run as a whole layer on its top specialised to the layer
(rtlgen/stt_layer.py ``SttLayerTop``) in Amaranth's simulator: the output read back from DRAM against numpy
(zero padding), RTL cycles == model cycles (``simulate_stt_layer``) and the DMA's byte counters == the model's
DRAM bytes (halo elements read again by every block that holds them). Prints one line per spec and the counts;
exit 1 when one is wrong. ``--changed``: instead, the specs both versions plan but into another grid (a cut the
planner could not make before).
"""
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec_data

OPS = ["O[k,p] += W[k,r] * I[p-r]", "O[k,p] += W[k,r] * I[p-r+2]"]
SHAPES = [[1, 2], [1, 3], [2, 2], [1, 4], [2, 3], [3, 5]]


def spec(op, shape, rows, word, mem):
    m = {"dram": {"width_bytes": word, "latency": 5, "burst_bytes": 2 * word, "outstanding": 2}}
    m.update({t: {"bytes": b} for t, b in mem.items()})
    return {"version": 1, "name": "conv_pad_stt", "operation": op, "clock_mhz": 500,
            "types": {"W": "int8", "I": "int8", "O": "int32"}, "array": {"shape": list(shape)},
            "dataflows": {"d": {"stt": rows, "order": ["r", "k", "p"]}}, "memory": m}


def _plan(data, bounds):
    from archgen.dataflow.compile import compile_array
    from archgen.dataflow.stt_array import stt_tiling
    from archgen.dataflow.stt_layer import plan_stt_layer
    design = load_spec_data(data)
    c = compile_array(design)
    return design, c, plan_stt_layer(stt_tiling(c.network, bounds))


def search(seed: int, count: int, out: str) -> None:
    rng = random.Random(seed)
    rows_done = []
    t0 = time.time()
    while len(rows_done) < count:
        op, shape = rng.choice(OPS), rng.choice(SHAPES)
        rows = [[rng.choice([0, 0, 1, 1, -1]) for _ in range(3)] for _ in range(3)]
        word = rng.choice([4, 8])
        mem = {"I": word * rng.choice([2, 3, 4, 6, 8])}
        if rng.random() < 0.3:
            mem["W"] = word * rng.choice([2, 4, 8])
        bounds = {"k": rng.randint(1, 4), "p": rng.randint(6, 14), "r": rng.randint(2, 5)}
        case = [op, shape, rows, word, mem, bounds]
        try:
            from archgen.dataflow.compile import compile_array
            if not compile_array(load_spec_data(spec(op, shape, rows, word, mem))).dataflow.skewed:
                continue                    # rows the compiler turns into a tiled map: not this memory system
        except SpecError:
            continue                        # not an stt map the spec checks accept: not counted
        try:
            _d, _c, plan = _plan(spec(op, shape, rows, word, mem), bounds)
            res = ["ok", {d: n for d, n in plan.grid}, {t: list(h) for t, h in (getattr(plan, "halo", None) or {}).items()}]
        except SpecError as err:
            res = ["refused", str(err)]
        except Exception as err:            # noqa: BLE001 -- a crash is an outcome to report
            res = ["crash", repr(err)]
        rows_done.append(case + [res])
    Path(out).write_text(json.dumps(rows_done))
    kinds = {}
    for r in rows_done:
        k = r[-1][0] if r[-1][0] != "refused" else ("refused: blocks cannot cut" if "blocks cannot cut" in r[-1][1]
                                                    else "refused: other")
        kinds[k] = kinds.get(k, 0) + 1
    print(f"{len(rows_done)} specs in {time.time() - t0:.0f} s: {kinds}")


def run_layer(case, seed: int = 3):
    """(exact, rtl cycles, model cycles, moved bytes == model's, plan) of one case in Amaranth."""
    from archgen.dataflow.stt_layer import simulate_stt_layer
    from archgen.rtlgen.stt_layer import SttLayerTop
    from archgen.verif.golden import reference_einsum
    from archgen.verif.stt_layer_check import stt_layer_operands
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "rtlgen"))
    from layer_sim import run_top
    op, shape, rows, word, mem, bounds = case[:6]
    design, c, plan = _plan(spec(op, shape, rows, word, mem), bounds)
    tensors = stt_layer_operands(design, plan, np.random.default_rng(seed))
    model = simulate_stt_layer(plan)
    res = run_top(SttLayerTop(plan, c, plan.dram_image(tensors)), plan.dram_words, 4 * model.cycles + 1000)
    ref = reference_einsum(design.operation, tensors, plan.layer_bound, c.network.acc_width)
    exact = bool(np.array_equal(plan.read_output(res["words"]), ref))
    return exact, res["cycles"], model.cycles, res["moved"] == model.dram_bytes, plan


def check(before: str, after: str, n=None, seed: int = 0, changed: bool = False) -> int:
    key = lambda r: json.dumps(r[:6], sort_keys=True)      # noqa: E731
    now = {key(r): r[-1] for r in json.loads(Path(after).read_text())}
    if changed:
        cls = [r for r in json.loads(Path(before).read_text())
               if r[-1][0] == "ok" and now.get(key(r), ["?"])[0] == "ok" and now[key(r)][1] != r[-1][1]]
        what = "planned by both into another grid"
    else:
        cls = [r for r in json.loads(Path(before).read_text())
               if r[-1][0] == "refused" and "blocks cannot cut" in r[-1][1] and now.get(key(r), ["?"])[0] == "ok"]
        what = "refused before ('blocks cannot cut') and planned now"
    sample = cls if n is None or n >= len(cls) else random.Random(seed).sample(cls, n)
    print(f"{len(cls)} specs {what}; running {len(sample)}", flush=True)
    counts = {"ok": 0, "bad": 0}
    for case in sample:
        t0 = time.time()
        exact, rtl, model, moved, plan = run_layer(case)
        good = exact and rtl == model and moved
        counts["ok" if good else "bad"] += 1
        print("OK " if good else "BAD", case[0], case[1], json.dumps(case[2]), f"word {case[3]} B", case[4], case[5],
              f"grid {dict(plan.grid)} halo {plan.halo}: exact={exact} rtl {rtl} model {model} cycles, "
              f"DMA bytes {'==' if moved else '!='} model ({plan.dram_bytes()}), {time.time() - t0:.1f} s", flush=True)
    print("stt layers:", counts)
    return 1 if counts["bad"] else 0


if __name__ == "__main__":
    a = [x for x in sys.argv[1:] if x != "--changed"]
    if a[0] == "search":
        search(int(a[1]), int(a[2]), a[3])
    else:
        sys.exit(check(a[1], a[2], int(a[3]) if len(a) > 3 else None, int(a[4]) if len(a) > 4 else 0,
                       "--changed" in sys.argv))
