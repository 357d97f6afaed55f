"""Run the specs of one refusal class of benchmarks/dataflow_refusal_search.py that a later version builds.

    python benchmarks/refusal_class_check.py BEFORE.json AFTER.json "MESSAGE PART" [N [SEED]] [--memory] [--per-shape K]
                                              [--bytes] [--load-gap]

BEFORE.json / AFTER.json are two runs of the search (AFTER may be "-": every spec of the class). The specs whose
BEFORE message contains MESSAGE PART and that AFTER no longer refuses (N of them at random, default all) are run:
at the array level in Amaranth's simulator (verif/array_amaranth.py: output beats and the assembled result exact,
no partial sum read before its write, RTL cycles == model cycles), or with --memory as whole layers through the
generated memory system (rtlgen/layer_top.py in Amaranth against sim/layer_model.py). A spec the array or the
memory system still refuses is counted as refused, not as a failure. --per-shape K: K specs at random from each
(operation, array shape) of the class (then N of those). Problem sizes: k, p, i, r = 5/5/5/3 and the
others 3 (ragged on the 2- and 3-wide axes). docs/limits.md, the audit, has the figures. An entry of the search's
``fused`` mode (a dict of named dataflows) runs every dataflow of its fused design: on the fused array top in
Amaranth (one problem per dataflow), or with --memory each dataflow as a layer through its memory system around the
fused array (a tiled dataflow's layer top, a skewed map's stt layer top; DRAM bytes moved == the model's for the
latter). --bytes (with --memory, a tiled layer): the DRAM bytes the RTL's DMA moved (its byte counters) must equal
the model's (sim/layer_model.py) and the closed form's (memctl.layer_dram_bytes) too, printed per layer.
The search's ``schedule`` mode writes every spec with each level's outcome (``spec: ok | array: ok | memory: ...``):
``refusal_class_check.py refusal_search_schedule.json - "| array: ok" 20`` runs 20 ``schedule: map`` specs the array
builds (``"| memory: ok" ... --memory``: those the memory system builds; ``"fused array: ok"``: the fused ones); with
two such jsons, BEFORE AFTER "MESSAGE PART" runs the specs of the class that AFTER's array (with --memory, its memory
system) builds.
--load-gap (array level, the class of inputs loaded per run): the cycles the run build spends more than the tile's
own schedule, modelled with the same loader, issuer and drain (sim/array_model.py ``load_gaps``), before the first
step and after it.
"""
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from dataflow_refusal_search import base  # noqa: E402

from archgen.arch.errors import SpecError  # noqa: E402
from archgen.arch.spec import load_spec_data  # noqa: E402
from archgen.sim.array_model import load_gaps  # noqa: E402

GAP_LINES: list[str] = []
GAPS: list = []              # --load-gap: (before, after) per spec, summed up at the end
LOAD_GAP = False             # --load-gap: also the cycles against the tile's own schedule (``load_gaps``)
BOUNDS = {"i": 5, "j": 3, "k": 5, "p": 5, "q": 3, "r": 3, "c": 3}
CHECK_BYTES = False          # --bytes: the DMA's moved bytes == the model's == the closed form's (``_layer``)


def _layer(design, bounds, seed):
    from archgen.dataflow.compile import compile_array
    from archgen.dataflow.host import random_operands
    from archgen.dataflow.memctl import layer_program
    from archgen.mappings.memory_tiling import plan_layer
    from archgen.rtlgen.layer_top import LayerTop
    from archgen.sim.layer_model import simulate_layer
    from archgen.verif.golden import reference_einsum
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "rtlgen"))
    from layer_sim import run_top
    c = compile_array(design)
    cmd = plan_layer(design, bounds, c.dataflow)
    p = layer_program(c, cmd, spec_size=False)
    mp, out = cmd.mapping, design.operation.output.name
    tensors = random_operands(c.fu_graph, mp, np.random.default_rng(seed))
    res = run_top(LayerTop(p, p.dram_image(tensors)), p.dram_words, 200_000)
    got = p.read_output(res["words"], design.operation.tensor_shape(out, mp.bound), signed=design.type_of[out].signed)
    exact = bool(np.array_equal(got, reference_einsum(design.operation, tensors, mp.bound, c.fu_graph.acc_width)))
    model = simulate_layer(c, cmd)
    if CHECK_BYTES:                   # the DMA's byte counters against the model and the closed form
        from archgen.dataflow.memctl import layer_dram_bytes
        moved = {k: v for k, v in res["moved"].items() if v or k in model.dram_bytes}
        same = moved == model.dram_bytes == layer_dram_bytes(c, cmd)
        print(f"    DRAM bytes: RTL {moved}, model {model.dram_bytes} ({'equal' if same else 'DIFFERENT'})", flush=True)
        exact = exact and same
    return exact, res["cycles"], model.cycles


def _array(design, bounds, seed):
    from archgen.verif.array_amaranth import verify_array_amaranth
    r = verify_array_amaranth(design, bounds, seed=seed)
    if LOAD_GAP:
        GAPS.append(load_gaps(design, bounds))
        GAP_LINES.append("    " + load_gap_text(design, bounds))     # printed after the spec's line
    return r.outputs_exact, r.rtl_cycles, r.model_cycles


def load_gap_text(design, bounds) -> str:
    gaps = load_gaps(design, bounds)
    if gaps is None:
        return "no output held per run"
    first, after = gaps
    return (f"run build against the tile's own schedule (model): {first} cycle(s) more before the first step, "
            f"{after} after it")


def _fused_array(design, bounds, seed):
    """Every dataflow of a fused design on the fused array top in Amaranth (verif/fused_amaranth.py)."""
    from archgen.verif.fused_amaranth import verify_fused_amaranth
    runs = verify_fused_amaranth(design, design.fuse, bounds, seed=seed)
    return all(r.outputs_exact for r in runs), tuple(r.rtl_cycles for r in runs), tuple(r.model_cycles for r in runs)


def _fused_layer(design, bounds, seed):
    """Every dataflow of a fused design as a whole layer through its memory system around the fused array
    (LayerTop with FusedArrayTop, the select tied from the layer, as verif/layer_check.py builds it) in
    Amaranth against sim/layer_model.py on the fused view; a skewed map through its stt layer top."""
    from archgen.dataflow.compile import compile_fused
    from archgen.dataflow.fusion import is_stt_view
    from archgen.dataflow.host import random_operands
    from archgen.dataflow.memctl import layer_program
    from archgen.mappings.memory_tiling import plan_layer
    from archgen.rtlgen.build import fused_command_constants
    from archgen.rtlgen.fused_array import FusedArrayTop
    from archgen.rtlgen.layer_top import LayerTop
    from archgen.sim.layer_model import simulate_layer
    from archgen.verif.golden import reference_einsum
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "rtlgen"))
    from layer_sim import run_top
    fused = compile_fused(design, design.fuse)
    exact_all, rtls, models = True, [], []
    out = design.operation.output.name
    for name in fused.names:
        c = fused.view(name)
        if is_stt_view(c):              # the stt layer top around the fused array, its select tied
            exact, rtl, model = _fused_stt_layer(fused, name, bounds, seed)
            exact_all &= exact
            rtls.append(rtl)
            models.append(model)
            continue
        cmd = plan_layer(c.design, bounds, c.dataflow)
        p = layer_program(c, cmd, spec_size=False)
        mp = cmd.mapping
        tensors = random_operands(c.fu_graph, mp, np.random.default_rng(seed))
        top = LayerTop(p, p.dram_image(tensors), FusedArrayTop(fused), fused_command_constants(fused, name))
        res = run_top(top, p.dram_words, 200_000)
        got = p.read_output(res["words"], design.operation.tensor_shape(out, mp.bound),
                            signed=design.type_of[out].signed)
        exact_all &= bool(np.array_equal(got, reference_einsum(design.operation, tensors, mp.bound,
                                                               c.fu_graph.acc_width)))
        rtls.append(res["cycles"])
        models.append(simulate_layer(c, cmd).cycles)
    return exact_all, tuple(rtls), tuple(models)


def _fused_stt_layer(fused, name, bounds, seed):
    """A skewed map of a fused design as a layer through its stt memory system (rtlgen/stt_layer.py SttLayerTop
    driving the fused array, as rtlgen/stt_layer.py stt_layer_verilog builds it) in Amaranth, against numpy and
    simulate_stt_layer on the fused view."""
    from archgen.dataflow.stt_array import stt_tiling
    from archgen.dataflow.stt_layer import plan_stt_layer, simulate_stt_layer
    from archgen.rtlgen.build import fused_command_constants
    from archgen.rtlgen.fused_array import FusedArrayTop
    from archgen.rtlgen.stt_layer import SttLayerTop
    from archgen.verif.golden import reference_einsum
    from archgen.verif.stt_layer_check import stt_layer_operands
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "rtlgen"))
    from layer_sim import run_top
    view, design = fused.view(name), fused.design
    tiling = stt_tiling(view.network, bounds)
    plan = plan_stt_layer(tiling)
    tensors = stt_layer_operands(design, plan, np.random.default_rng(seed))
    top = SttLayerTop(plan, view, plan.dram_image(tensors), array=FusedArrayTop(fused),
                      command_fields=fused_command_constants(fused, name))
    model = simulate_stt_layer(plan)
    res = run_top(top, plan.dram_words, 20 * model.cycles + 2000)
    ref = reference_einsum(design.operation, tensors, tiling.bound, view.network.acc_width)
    exact = bool(np.array_equal(plan.read_output(res["words"]), ref)) and res["moved"] == model.dram_bytes
    return exact, res["cycles"], model.cycles


def still_refused(entries, memory: bool) -> set[str]:
    """The specs of a search json that its run refused: every entry, but for the ``schedule`` mode's, which lists
    built specs too (``... | array: ok | memory: ok``): those count as refused unless the level the check runs at
    (the array, or with --memory the memory system) built them."""
    built = "memory: ok" if memory else "array: ok"
    return {json.dumps(h[:3], sort_keys=True) for h in entries if built not in h[3]}


def _spec(op, shape, df):
    """The spec of one search entry: one dataflow, or (fused mode) a dict of named dataflows in ``fuse:``."""
    if all(isinstance(v, dict) for v in df.values()):
        return dict(base(op, shape, None), dataflows=df, fuse=list(df)), True
    return base(op, shape, df), False


def main(argv):
    global CHECK_BYTES
    global LOAD_GAP
    CHECK_BYTES = "--bytes" in argv
    LOAD_GAP = "--load-gap" in argv
    argv = [a for a in argv if a not in ("--bytes", "--load-gap")]
    memory = "--memory" in argv
    per_shape = int(argv[argv.index("--per-shape") + 1]) if "--per-shape" in argv else None
    if per_shape is not None:
        argv = argv[:argv.index("--per-shape")] + argv[argv.index("--per-shape") + 2:]
    args = [a for a in argv if a != "--memory"]
    before, after, part = args[:3]
    n = int(args[3]) if len(args) > 3 else None
    rng = random.Random(int(args[4]) if len(args) > 4 else 0)
    key = lambda h: json.dumps(h[:3], sort_keys=True)      # noqa: E731
    still = set() if after == "-" else still_refused(json.loads(Path(after).read_text()), memory)
    built = [h for h in json.loads(Path(before).read_text()) if part in h[3] and key(h) not in still]
    if per_shape is not None:          # K specs at random from every (operation, array shape) of the class
        groups = {}
        for h in built:
            groups.setdefault((h[0], tuple(h[1])), []).append(h)
        built = [h for g in sorted(groups) for h in rng.sample(groups[g], min(per_shape, len(groups[g])))]
    sample = built if n is None or n >= len(built) else rng.sample(built, n)
    print(f"class {part!r}: {len(built)} specs no longer refused, running {len(sample)}", flush=True)
    counts = {"ok": 0, "bad": 0, "refused": 0}
    for op, shape, df, _ in sample:
        data, fused = _spec(op, shape, df)
        design = load_spec_data(data)
        bounds = {d: BOUNDS[d] for d in design.operation.dims}
        t0 = time.time()
        run = ((_fused_layer if memory else _fused_array) if fused else (_layer if memory else _array))
        try:
            exact, rtl, model = run(design, bounds, 3)
        except SpecError as err:
            counts["refused"] += 1
            print("REFUSED", op, shape, json.dumps(df), str(err)[:160], flush=True)
            continue
        good = exact and rtl == model
        counts["ok" if good else "bad"] += 1
        print("OK " if good else "BAD", op, shape, json.dumps(df), bounds, f"exact={exact} rtl {rtl} model {model} cycles",
              f"{time.time() - t0:.0f} s", flush=True)
        while GAP_LINES:
            print(GAP_LINES.pop(0), flush=True)
    print(("memory system" if memory else "array") + ":", counts)
    if LOAD_GAP:
        held = [g for g in GAPS if g is not None]
        after = [g[1] for g in held if g[1]]
        print(f"against the tile's own schedule: {len(held)} held per run, {sum(1 for g in held if g == (0, 0))} "
              f"with the same cycles, {sum(1 for g in held if g[0] and not g[1])} only later before the "
              f"first step, {len(after)} later after it ({min(after, default=0)} to {max(after, default=0)} "
              "cycles)")
    return 1 if counts["bad"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
