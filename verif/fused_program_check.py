"""Several layers of different dataflows back to back on ONE fused layer core (rtlgen/fused_layer.py), in one
Verilator simulation with no rebuild and no reset between them: the command's select picks each layer's
dataflow (issue 14: "the command selects the dataflow at run time, with no rebuild").

Each layer is checked as :func:`archgen.verif.layer_check.verify_layer` checks one: its output read back from
DRAM against numpy, its RTL cycles against ``simulate_layer`` on the dataflow's fused view, and the bytes the
core's DMA moved during it against the model's."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from archgen.arch.errors import SpecError, problem
from archgen.arch.spec import Design
from archgen.dataflow.compile import compile_fused
from archgen.dataflow.host import random_operands
from archgen.dataflow.memctl import layer_dram_bytes, layer_program
from archgen.mappings.memory_tiling import Room
from archgen.rtlgen.fused_layer import FusedLayerCore, FusedLayerProgramTop, fused_layer_programs
from archgen.sim.layer_model import simulate_layer

from .layer_amaranth import run_layer_top
from .layer_binary import run_layer_binary, strip_zero_memory_init
from .layer_check import LayerVerification, layer_output, mapper_note, plan_command

__all__ = ["core_rooms", "verify_fused_program"]


def core_rooms(core: FusedLayerCore) -> dict[str, Room]:
    """The planner's ``rooms`` (``plan_layer``) for the one fused core: per operand, one buffer half of the core's
    own layouts (which every fused dataflow shares, ``FusedLayerCore``) in whole bank rows, and one bank row, as
    ``memctl.buffer_rooms`` gives them for one dataflow's build."""
    return {x: Room(lay.half_elems * lay.elem_bytes, lay.banks * lay.elem_bytes) for x, lay in core.prog.layouts.items()}


def _check_layers(core: FusedLayerCore, layers) -> None:
    """Refuse a layer of a dataflow the core does not run (a skewed map, a folded map beside dataflows that fold
    otherwise): its command would select a dataflow no part of the core answers, and the simulation would hang."""
    problems = [problem(f"layers.layer{k}.dataflow", f"dataflow {name!r} does not run on the one fused layer core "
                        f"(it runs {', '.join(core.names)}): a skewed map, or a folded map beside dataflows that fold "
                        "otherwise, has its own memory-system build around the fused array, where `archgen verify` "
                        "runs it", name)
                for k, (name, _bounds) in enumerate(layers) if name not in core.names]
    if problems:
        raise SpecError(problems)


def verify_fused_program(design: Design, layers: list[tuple[str, dict]], *, seed: int = 0, fuse=None,
                         cache_dir: Path | None = None, simulator: str = "verilator",
                         mapper: str = "heuristic", mapper_objective: str = "edp",
                         mapper_seed: int = 0) -> list[LayerVerification]:
    """Run ``layers`` = [(dataflow, loop bounds), ...] in order on the one core ``archgen build --memory``
    writes for the fused design ``fuse`` (default: the spec's ``fuse:``). Refusals (a layer that does not
    fit the core's buffers, a dataflow the core does not run) happen before anything is built.
    ``simulator``: "verilator" (the Verilog, a stand-alone executable) or "amaranth" (the same top in
    Amaranth's simulator: no compile, for small tests). ``mapper``, ``mapper_objective``, ``mapper_seed``: how
    each layer is planned (``layer_check.plan_command``: as ``archgen sim --mapper`` plans it)."""
    if simulator not in ("verilator", "amaranth"):
        raise ValueError(f"simulator must be 'verilator' or 'amaranth', not {simulator!r}")
    fused = compile_fused(design, tuple(fuse or design.fuse))
    core = FusedLayerCore(fused, fused_layer_programs(fused))
    _check_layers(core, layers)
    rng = np.random.default_rng(seed)
    burst = max(1, design.memory_system.dram.burst_bytes // core.prog.word_bytes)
    image: list[int] = []
    runs, words = [], []
    for k, (name, bounds) in enumerate(layers):
        view = fused.view(name)
        cmd = plan_command(view, bounds, f"layer{k}", mapper=mapper, mapper_objective=mapper_objective,
                           mapper_seed=mapper_seed, core_banks=core.banks)
        prog = layer_program(view, cmd, f"layer{k}", spec_size=True, core_banks=core.banks)
        tensors = random_operands(view.fu_graph, cmd.mapping, rng)
        at = -(-len(image) // burst) * burst           # each layer's regions from a burst-aligned base word
        image += [0] * (at - len(image)) + prog.dram_image(tensors)
        wc = dataclasses.replace(prog.command, base={x: b + at for x, b in prog.command.base.items()})
        words.append(core.encode(wc, fused.index(name), f"layer{k}"))
        runs.append((name, view, cmd, prog, tensors, at, simulate_layer(view, cmd, layer=f"layer{k}")))
    top = FusedLayerProgramTop(core, words, image)
    max_cycles = 4 * sum(r[-1].cycles for r in runs) + 1000 * len(runs)
    counters = {s.name: s for s in [*top.layer_cycles, *[s for lm in top.layer_moved for s in lm.values()]]}
    if simulator == "amaranth":
        res, text = run_layer_top(top, len(image), max_cycles, counters), ""
    else:
        top_name = f"{design.name}_fused_program"
        text = verilog.convert(top, name=top_name, ports=top.ports(), emit_src=False)
        res = run_layer_binary(strip_zero_memory_init(text), top_name, dram_words=len(image),
                               word_bits=8 * core.prog.word_bytes, read=(0, len(image)), max_cycles=max_cycles,
                               moved=tuple(counters), cache_dir=cache_dir)
    got_words = list(res.get("words", [])) + [0] * len(image)
    raw = res.get("moved") or {}
    results = []
    for k, (name, view, cmd, prog, tensors, at, model) in enumerate(runs):
        got, ref = layer_output(prog, got_words[at:at + prog.dram_words], tensors, cmd.mapping.bound,
                                view.fu_graph.acc_width)
        exact = bool(res.get("passed", True)) and "error" not in res and bool(np.array_equal(got, ref))
        model_bytes = layer_dram_bytes(view, cmd)      # padded blocks of a lane-interleaved output (memctl)
        rtl_bytes = {x: raw.get(s.name) for x, s in top.layer_moved[k].items()
                     if raw.get(s.name) or x in model_bytes}
        detail = {"rtl_dram_bytes": rtl_bytes, "blocks": model.blocks, "stall_cycles": model.stall_cycles,
                  "compute_cycles": model.compute_cycles, "n_blocks": cmd.n_blocks(), "dram_base_word": at,
                  "mismatches": int(np.sum(got != ref)), "error": res.get("error"), "wall_s": res.get("wall_s"),
                  "verilog_lines": text.count("\n"),
                  "mapper": mapper_note(cmd, mapper, mapper_objective, mapper_seed, by_hand=False)}
        results.append(LayerVerification(design.name, name, dict(cmd.mapping.bound), cmd.describe(), exact,
                                         raw.get(top.layer_cycles[k].name), model.cycles, model_bytes, detail))
    return results
