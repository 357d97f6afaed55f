"""A skewed stt layer through its memory system on Verilator (rtlgen/stt_layer.py), against numpy and the
contract of dataflow/stt_layer.py: outputs exact, RTL cycles == model cycles, DMA bytes == the model's.

What ``archgen verify SPEC`` runs for a skewed stt map without ``--ideal-dram``: random operands over each
type's range preloaded into the top's DRAM, the layer as a stand-alone Verilator binary
(verif/layer_binary.py), the output tensor read back from DRAM.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from amaranth.back import verilog

from archgen.arch.spec import Design
from archgen.dataflow.compile import compile_array
from archgen.dataflow.stt_array import stt_tiling
from archgen.dataflow.stt_layer import plan_stt_layer, simulate_stt_layer
from archgen.rtlgen.stt_layer import SttLayerTop

from .golden import reference_einsum
from .layer_check import LayerVerification

__all__ = ["verify_stt_layer", "stt_layer_operands", "verify_stt_program"]


def stt_layer_operands(design: Design, plan, rng) -> dict:
    """Random operands over each input type's whole range, at the layer's tensor shapes."""
    out = {}
    for x in design.operation.inputs:
        t = design.type_of[x.name]
        lo, hi = (-(1 << (t.bits - 1)), 1 << (t.bits - 1)) if t.signed else (0, 1 << t.bits)
        out[x.name] = rng.integers(lo, hi, size=plan.layer_shape(x.name))
    return out


def verify_stt_layer(design: Design, bounds: dict[str, int], *, seed: int = 0, dataflow: str | None = None,
                     box: dict | None = None, cache_dir: Path | None = None, layer: str = "layer",
                     per_layer: bool = False, fuse=None) -> LayerVerification:
    """One layer: by default on the one run-time programmable build (``verify_stt_program`` with a stream of
    one layer; ``box`` fixes the build's box), what ``archgen build --memory`` makes and ``archgen sim``
    models; ``per_layer``: on a top specialised to this layer (its own box and period, every command value a
    constant of the elaboration). ``fuse``: the array is the fused design of these dataflows and ``dataflow``
    (one of its skewed maps) runs on it, selected by the array command (one build only)."""
    if fuse and per_layer:
        raise ValueError("a fused design's skewed map runs on the one programmable build only (per_layer=False)")
    if not per_layer:
        return _verify_on_build(design, bounds, seed=seed, dataflow=dataflow, box=box, cache_dir=cache_dir,
                                layer=layer, fuse=fuse)
    from .layer_binary import run_layer_binary, strip_zero_memory_init
    compiled = compile_array(design, dataflow)
    tiling = stt_tiling(compiled.network, bounds, box)
    plan = plan_stt_layer(tiling, layer)                 # refusals happen here, before anything is built
    model = simulate_stt_layer(plan)
    tensors = stt_layer_operands(design, plan, np.random.default_rng(seed))
    top = SttLayerTop(plan, compiled, plan.dram_image(tensors))
    name = f"{design.name}_stt_layer"
    text = verilog.convert(top, name=name, ports=top.ports(), emit_src=False)
    y = design.operation.output.name
    moved = {k: f"moved_{k.replace('.', '_')}" for k in top.moved}
    lo = plan.bases[y]
    res = run_layer_binary(strip_zero_memory_init(text), name, dram_words=plan.dram_words,
                           word_bits=8 * plan.word_bytes, read=(lo, plan.dram_words),
                           max_cycles=4 * model.cycles + 1000, moved=tuple(moved.values()), cache_dir=cache_dir)
    words = [0] * lo + list(res.get("words", []))
    got = plan.read_output(words + [0] * (plan.dram_words - len(words)))
    ref = reference_einsum(design.operation, tensors, tiling.bound, compiled.network.acc_width)
    exact = "error" not in res and bool(np.array_equal(got, ref))
    raw = res.get("moved") or {}
    detail = {"wall_s": res.get("wall_s"), "rtl_dram_bytes": {k: raw[n] for k, n in moved.items() if n in raw},
              "blocks": plan.n_blocks, "n_blocks": plan.n_blocks, "grid": dict(plan.grid),
              "block": dict(plan.tiling.bound), "box": tiling.box, "boxes": plan.tiling.n_tiles,
              "period": plan.tiling.period, "span": plan.tiling.span, "slots": plan.tiling.slots,
              "stall_cycles": {"dram": model.load_cycles + model.write_cycles,
                               "array": model.compute_cycles - plan.n_blocks * plan.tiling.slots},
              "compute_cycles": model.compute_cycles, "verilog_lines": text.count("\n"),
              "mismatches": int(np.sum(got != ref)), "error": res.get("error")}
    sub = plan.tiling
    command = (f"{plan.describe()}: boxes of {sub.box}, {sub.n_tiles} box(es) a block, one every "
               f"{sub.period} slots, {sub.slots} slots a block")
    return LayerVerification(design.name, compiled.dataflow.name, dict(tiling.bound), command, exact,
                             res.get("rtl_cycles"), model.cycles, model.dram_bytes, detail)


def _verify_on_build(design, bounds, *, seed, dataflow, box, cache_dir, layer, fuse=None) -> LayerVerification:
    res = verify_stt_program(design, [bounds], seed=seed, dataflow=dataflow, box=box, cache_dir=cache_dir,
                             names=[layer], fuse=fuse)
    row = res["layers"][0]
    detail = {"wall_s": res["wall_s"], "rtl_dram_bytes": res["rtl_dram_bytes"], "blocks": row["n_blocks"],
              "n_blocks": row["n_blocks"], "grid": row["grid"], "block": row["block"], "box": res["box"],
              "boxes": row["boxes"], "period": res["period"], "slots": row["slots"],
              "stall_cycles": row["stall_cycles"], "compute_cycles": row["compute_cycles"],
              "verilog_lines": res["verilog_lines"], "mismatches": row["mismatches"], "error": res["error"],
              "command_bits": res["command_bits"]}
    command = (f"{row['describe']}: the one run-time programmable build (boxes of {res['box']}, one every "
               f"{res['period']} slots; a command of {res['command_bits']} bits), {row['boxes']} box(es) a block, "
               f"{row['slots']} slots a block")
    return LayerVerification(design.name, res["dataflow"], dict(bounds), command, row["exact"], row["rtl_cycles"],
                             row["model_cycles"], row["dram_bytes"], detail)


def verify_stt_program(design: Design, layers: list[dict], *, seed: int = 0, dataflow: str | None = None,
                       box: dict | None = None, cache_dir: Path | None = None, names: list | None = None,
                       fuse=None) -> dict:
    """ONE run-time programmable build (dataflow/stt_command.py) running ``layers`` (loop bounds each) back to
    back on Verilator (rtlgen/stt_layer.py ``SttLayerProgramTop``): per layer, the host writes its command,
    the core runs it; every layer's output read back from DRAM against numpy, its RTL cycles against
    ``simulate_stt_layer`` with the build's box and period, and the DMA's bytes (summed over the layers)
    against the model's. Returns the build (box, period, command bits) and one row per layer. ``fuse``: the
    array is the fused design of these dataflows (dataflow/fusion.py) and ``dataflow`` (default: its first
    skewed map) runs on it with the fused timing (its view), selected by the layer core's array command."""
    from archgen.dataflow.stt_command import build_stt, command_bits, command_values, command_words, plan_for_build
    from archgen.rtlgen.stt_layer import SttLayerProgramTop

    from .layer_binary import run_layer_binary, strip_zero_memory_init
    array, fields = None, None
    if fuse:
        from archgen.dataflow.compile import compile_fused
        from archgen.rtlgen.build import fused_command_constants
        from archgen.rtlgen.fused_array import FusedArrayTop
        fused = compile_fused(design, fuse)
        name = dataflow or next(n for n, v in zip(fused.names, fused.views) if hasattr(v, "network"))
        compiled = fused.view(name)
        array = FusedArrayTop(fused)
        fields = fused_command_constants(fused, name)     # the select; the tiled loops' trips 1
    else:
        compiled = compile_array(design, dataflow)
    build = build_stt(compiled, box=box)
    rng = np.random.default_rng(seed)
    plans, cmds, image, spans = [], [], [], []
    names = list(names) if names is not None else [f"layer{li}" for li in range(len(layers))]
    for li, bounds in enumerate(layers):
        plan = plan_for_build(build, bounds, names[li])      # refusals happen here, before anything is built
        tensors = stt_layer_operands(design, plan, rng)
        at = len(image)
        image += plan.dram_image(tensors)
        cmds.append(command_words(build, command_values(build, plan, at, names[li])))
        plans.append((plan, tensors))
        spans.append((at, len(image)))
    models = [simulate_stt_layer(p) for p, _t in plans]
    top = SttLayerProgramTop(build, compiled, cmds, image, len(image), array, fields)
    name = f"{design.name}_stt_program"
    text = verilog.convert(top, name=name, ports=top.ports(), emit_src=False)
    moved = {k: f"moved_{k.replace('.', '_')}" for k in top.moved}
    lc = [s.name for s in top.layer_cycles]
    res = run_layer_binary(strip_zero_memory_init(text), name, dram_words=len(image), word_bits=8 * build.word_bytes,
                           read=(0, len(image)), max_cycles=4 * sum(m.cycles for m in models) + 1000 * len(layers),
                           moved=tuple(moved.values()) + tuple(lc), cache_dir=cache_dir)
    words = list(res.get("words", [])) + [0] * len(image)
    raw = res.get("moved") or {}
    y = design.operation.output.name
    rows = []
    for li, ((plan, tensors), (lo, hi), model) in enumerate(zip(plans, spans, models)):
        local = [0] * lo + words[lo:hi]
        shifted = type(plan)(**{**plan.__dict__, "bases": {t: b + lo for t, b in plan.bases.items()}})
        got = shifted.read_output(local + [0] * max(0, shifted.dram_words - len(local)))
        ref = reference_einsum(design.operation, tensors, plan.layer_bound, compiled.network.acc_width)
        rows.append({"layer": dict(layers[li]), "grid": dict(plan.grid), "block": dict(plan.tiling.bound),
                     "boxes": plan.tiling.n_tiles, "slots": plan.tiling.slots,
                     "exact": "error" not in res and bool(np.array_equal(got, ref)),
                     "mismatches": int(np.sum(got != ref)), "rtl_cycles": raw.get(lc[li]), "model_cycles": model.cycles,
                     "dram_bytes": model.dram_bytes, "n_blocks": plan.n_blocks, "describe": plan.describe(),
                     "compute_cycles": model.compute_cycles,
                     "stall_cycles": {"dram": model.load_cycles + model.write_cycles,
                                      "array": model.compute_cycles - plan.n_blocks * plan.tiling.slots}})
    model_bytes = {k: sum(r["dram_bytes"][k] for r in rows) for k in rows[0]["dram_bytes"]}
    return {"design": design.name, "dataflow": compiled.dataflow.name, "box": dict(build.box), "period": build.period,
            "command_bits": command_bits(build),
            "command_words": len(cmds[0]), "layers": rows, "error": res.get("error"), "wall_s": res.get("wall_s"),
            "rtl_dram_bytes": {k: raw.get(n) for k, n in moved.items()}, "model_dram_bytes": model_bytes,
            "verilog_lines": text.count("\n"), "output": y}
