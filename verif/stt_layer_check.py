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

__all__ = ["verify_stt_layer", "stt_layer_operands"]


def stt_layer_operands(design: Design, plan, rng) -> dict:
    """Random operands over each input type's whole range, at the layer's tensor shapes."""
    out = {}
    for x in design.operation.inputs:
        t = design.type_of[x.name]
        lo, hi = (-(1 << (t.bits - 1)), 1 << (t.bits - 1)) if t.signed else (0, 1 << t.bits)
        out[x.name] = rng.integers(lo, hi, size=plan.layer_shape(x.name))
    return out


def verify_stt_layer(design: Design, bounds: dict[str, int], *, seed: int = 0, dataflow: str | None = None,
                     box: dict | None = None, cache_dir: Path | None = None, layer: str = "layer") -> LayerVerification:
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
