"""A whole layer through the generated memory system on Verilator, against numpy and the cycle model.

``verify_layer`` is what ``archgen verify SPEC --gemm M,K,N`` runs: the layer command (``plan_layer``,
or a given tiling and order), random operands over each type's whole range preloaded into the top's
DRAM, the layer run at Verilator speed, the output tensor read back from DRAM against an independent
numpy evaluation of the loop nest, and the RTL's cycles against ``sim/layer_model.simulate_layer``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from amaranth.back import verilog

from archgen.arch.errors import SpecError, problem
from archgen.arch.spec import Design
from archgen.dataflow.compile import compile_array
from archgen.dataflow.host import random_operands
from archgen.dataflow.memctl import (buffer_fit, buffer_rooms, descriptor_format, fused_banks, layer_dram_bytes,
                                     layer_program)
from archgen.mappings.memory_tiling import make_command, plan_layer
from archgen.rtlgen.layer_top import LayerTop
from archgen.sim.layer_model import simulate_layer

from .golden import reference_einsum
from .runner import run_testbench

__all__ = ["LayerVerification", "plan_command", "verify_layer", "layer_verilog"]


@dataclass(frozen=True)
class LayerVerification:
    design: str
    dataflow: str
    bounds: dict
    command: str
    outputs_exact: bool
    rtl_cycles: int | None
    model_cycles: int
    dram_bytes: dict
    detail: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (self.outputs_exact and self.rtl_cycles == self.model_cycles
                and self.detail.get("rtl_dram_bytes") == self.dram_bytes)


def plan_command(compiled, bounds: dict[str, int], layer: str, *, mapper: str = "heuristic",
                 mapper_objective: str = "edp", mapper_seed: int = 0, core_banks=None):
    """The layer command ``archgen verify`` runs, planned as ``archgen sim --mapper MAPPER`` plans it: ``plan_layer``
    (``heuristic``) or the mapper's search (``search``) judged by sim's own layer model and energy, so that the
    command verified is the one sim reports. Both with the memory system's fit check and bank-row rooms
    (``buffer_fit``, ``buffer_rooms``; ``core_banks``: a fused design's one layer core, memctl ``fused_banks``, as
    sim plans its layers)."""
    if mapper not in ("heuristic", "search"):
        raise SpecError([problem("mapper", "must be heuristic or search", mapper)])
    if mapper == "heuristic":
        return plan_layer(compiled.design, bounds, compiled.dataflow, layer, fits=buffer_fit(compiled, layer, core_banks),
                          rooms=buffer_rooms(compiled, core_banks))
    from archgen.sim.array_sim import searched_command     # sim's search itself: the same candidates, model and ranking
    from archgen.sim.energy import EnergyModel
    one = SimpleNamespace(name=layer, kind="verify", macs=math.prod(bounds.values()))   # one instance, no repeat
    return searched_command(compiled, one, bounds, 1, "verify", EnergyModel.load(), mapper_objective, mapper_seed,
                            core_banks)


def mapper_note(cmd, mapper: str, objective: str, seed: int, by_hand: bool = True) -> str | None:
    """How a searched command was planned and, ``by_hand``, the ``--tile``/``--order`` that give it (verify takes
    them for a single design, not a fused one), for ``format_layer_verification``; None for the heuristic."""
    if mapper != "search":
        return None
    note = f"--mapper search, objective {objective}, seed {seed} (as archgen sim)"
    if not by_hand:
        return note
    tile = dict(cmd.tile)
    return (f"{note}; by hand: --tile " + ",".join(f"{d}={tile[d]}" for d in cmd.order)
            + " --order " + ",".join(cmd.order))


def layer_verilog(prog, image, name: str) -> str:
    """Verilog of the layer top (array, memory system and testbench DRAM preloaded with ``image``)."""
    return _convert(prog, image, name)


def _convert(prog, image, name, fused=None, fmt=None, one_core=False):
    if fused is not None and one_core:   # one core for every tiled dataflow, the select in the layer command
        from archgen.rtlgen.fused_layer import FusedLayerCore, FusedLayerTop, fused_layer_programs
        top = FusedLayerTop(FusedLayerCore(fused, fused_layer_programs(fused)), prog, image)
        return verilog.convert(top, name=name, ports=top.ports(), emit_src=False)
    if fused is not None:             # the fused array inside the memory system, its select from the layer
        from archgen.rtlgen.build import fused_command_constants
        from archgen.rtlgen.fused_array import FusedArrayTop
        fields = fused_command_constants(fused, prog.compiled.dataflow.name)
        top = LayerTop(prog, image, FusedArrayTop(fused), fields, fmt=fmt)
        return verilog.convert(top, name=name, ports=top.ports(), emit_src=False)
    top = LayerTop(prog, image, fmt=fmt)
    return verilog.convert(top, name=name, ports=top.ports(), emit_src=False)


def layer_output(prog, words: list[int], tensors: dict, bound: dict, acc_width: int):
    """(got, ref): the layer's output assembled from the DRAM ``words`` after the run (word 0 = the layer's
    DRAM word 0; missing words read 0) and numpy's reference on the same tensors."""
    design = prog.compiled.design
    out = design.operation.output
    got = prog.read_output(list(words) + [0] * max(0, prog.dram_words - len(words)),
                           design.operation.tensor_shape(out.name, bound), signed=design.type_of[out.name].signed)
    return got, reference_einsum(design.operation, tensors, bound, acc_width)


def verify_layer(design: Design, bounds: dict[str, int], *, seed: int = 0, dataflow: str | None = None,
                 tile: dict | None = None, order: tuple | None = None, cache_dir: Path | None = None,
                 layer: str = "layer", binary: bool = True, fuse=None, spec_size: bool = False,
                 one_core: bool = False, mapper: str = "heuristic", mapper_objective: str = "edp",
                 mapper_seed: int = 0) -> LayerVerification:
    """Plan (or take ``tile``/``order``), check, build and run one layer; nothing runs if the command is refused.
    ``binary`` (default): run as a stand-alone Verilator executable (verif/layer_binary.py); False: under
    cocotb (verif/tb_layer.py), same top, same checks. ``fuse``: the array is the fused design of these
    dataflows (dataflow/fusion.py), running ``dataflow`` with the fused timing, selected by the layer.
    ``spec_size``: the core is the synthesis build's (``archgen build --memory``: buffers at the spec's sizes,
    the descriptor tables of ``descriptor_format(prog)``), not one sized to this layer. ``one_core`` (with
    ``fuse``): the core is rtlgen/fused_layer.py's one core for every tiled fused dataflow (the build's), the
    layer's dataflow selected by its command (implies ``spec_size``). ``mapper``, ``mapper_objective``,
    ``mapper_seed``: how the command is planned without ``tile`` (``plan_command``: as ``archgen sim`` plans it)."""
    spec_size = spec_size or one_core
    fused = core_banks = None
    if fuse:
        from archgen.dataflow.compile import compile_fused
        fused = compile_fused(design, fuse)
        compiled = fused.view(dataflow or fused.names[0])
        if one_core:          # planned on the one core's banks, as sim plans a fused design's layers
            core_banks = fused_banks(fused)          # the tiled dataflows' most banks
    else:
        compiled = compile_array(design, dataflow)
    df = compiled.dataflow
    if tile is not None:
        split = tuple(d for d in df.inner_dims() if d in tile)       # default order: split inner loops innermost
        cmd = make_command(compiled.design, bounds, df, tile, tuple(order or (*df.outer_dims(), *split)), layer)
    else:       # the view's design: a folded map fused beside others runs on its own logical array
        cmd = plan_command(compiled, bounds, layer, mapper=mapper, mapper_objective=mapper_objective,
                           mapper_seed=mapper_seed, core_banks=core_banks)
    prog = layer_program(compiled, cmd, layer, spec_size=spec_size,     # refusals happen here, before anything is built
                         core_banks=core_banks)
    model = simulate_layer(compiled, cmd, layer=layer)
    mapping = cmd.mapping                 # blocks, not the whole problem, bound the FIFO depth (plan_layer)
    tensors = random_operands(compiled.fu_graph, mapping, np.random.default_rng(seed))
    image = prog.dram_image(tensors)
    name = f"{design.name}_layer"
    text = _convert(prog, image, name, fused, descriptor_format(prog) if spec_size else None, one_core)
    out_regions = [a for (x, _k), (a, *_r) in prog.regions.items() if x == design.operation.output.name]
    lo = min(out_regions)
    moved_names = {k: f"moved_{k.replace('.', '_')}" for k in
                   [f"{x.name}.read" for x in (*design.operation.inputs, design.operation.output)
                    if x is not design.operation.output or design.memory_system.partial_sums_through_dram]
                   + [f"{design.operation.output.name}.write"]}
    params = {"max_cycles": 4 * model.cycles + 1000, "read_words": [lo, prog.dram_words],
              "moved": moved_names}
    if binary:
        from .layer_binary import run_layer_binary, strip_zero_memory_init
        res = run_layer_binary(strip_zero_memory_init(text), name, dram_words=prog.dram_words,
                               word_bits=8 * prog.word_bytes, read=(lo, prog.dram_words),
                               max_cycles=params["max_cycles"], moved=tuple(moved_names.values()),
                               cache_dir=cache_dir)
    else:
        res = run_testbench(text, name, "archgen.verif.tb_layer", params, cache_dir=cache_dir)
    got, ref = layer_output(prog, [0] * lo + list(res.get("words", [])), tensors, mapping.bound,
                            compiled.fu_graph.acc_width)
    exact = bool(res.get("passed", True)) and "error" not in res and bool(np.array_equal(got, ref))
    raw = res.get("moved") or {}
    rtl_bytes = {k: raw[n] for k, n in moved_names.items() if n in raw and (raw[n] or k in model.dram_bytes)}
    detail = {"wall_s": res.get("wall_s"), "rtl_dram_bytes": rtl_bytes, "blocks": model.blocks, "stall_cycles": model.stall_cycles,
              "compute_cycles": model.compute_cycles, "n_blocks": cmd.n_blocks(),
              "verilog_lines": text.count("\n"), "mismatches": int(np.sum(got != ref)), "error": res.get("error"),
              "mapper": None if tile is not None else mapper_note(cmd, mapper, mapper_objective, mapper_seed,
                                                                 by_hand=fuse is None)}
    return LayerVerification(design.name, df.name, dict(mapping.bound), cmd.describe(), exact, res.get("rtl_cycles"),
                             model.cycles, layer_dram_bytes(compiled, cmd), detail)


def format_layer_verification(res: LayerVerification, seed: int) -> list[str]:
    """What ``archgen verify`` prints for a whole layer."""
    st = res.detail.get("stall_cycles", {})
    blocks = res.detail.get("blocks")
    out = [f"{res.design} / {res.dataflow}  layer {res.bounds}  seed {seed}",
           f"  command: {res.command}, {blocks} block{'' if blocks == 1 else 's'}",
           *([f"  planned by {res.detail['mapper']}"] if res.detail.get("mapper") else []),
           f"  outputs: {'exact' if res.outputs_exact else 'WRONG'}"
           + ("" if res.outputs_exact else f" ({res.detail.get('mismatches')} elements differ; {res.detail.get('error') or ''})"),
           f"  RTL cycles:   {res.rtl_cycles} cycles",
           f"  model cycles: {res.model_cycles} cycles  ({'equal' if res.rtl_cycles == res.model_cycles else 'DIFFERENT'})",
           f"  stalls: dram {st.get('dram')} cycles, array fill/drain {st.get('array')} cycles",
           "  DRAM: " + ", ".join(f"{k} {v:,} B" for k, v in sorted(res.dram_bytes.items()))
           + _dma_note(res)]
    return out


def _dma_note(res: LayerVerification) -> str:
    """Whether the RTL's DMA byte counters equal the model's DRAM bytes (part of ``ok``), when the check has them."""
    rtl = res.detail.get("rtl_dram_bytes")
    if rtl is None:
        return ""
    if rtl == res.dram_bytes:
        return "  (RTL's DMA moved the same)"
    return "  (RTL's DMA moved " + ", ".join(f"{k} {v:,} B" for k, v in sorted(rtl.items())) + ": DIFFERENT)"
