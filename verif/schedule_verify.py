"""A spec's design run in Amaranth's simulator at four levels, each as one record: the array alone
(verif/array_amaranth.py), a whole layer through its memory system (rtlgen/layer_top.py ``LayerTop``, planned as
``archgen verify`` plans it), and for a fused design every dataflow on the fused array (verif/fused_amaranth.py) and
every dataflow, then the first again, as layers on the one fused layer core (verif/fused_program_check.py). No
Verilator build, so a random sweep of specs (benchmarks/dataflow_refusal_search.py ``schedule-verify``) can run each
one it builds: outputs exact, RTL cycles == model cycles, and through the memory system the DRAM bytes the RTL's
DMA moved == the model's."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from archgen.arch.spec import Design

__all__ = ["LevelRun", "run_array", "run_memory", "run_fused_array", "run_fused_memory", "LEVELS"]


@dataclass(frozen=True)
class LevelRun:
    """One dataflow's run at one level: ``dram_equal`` is None at the array level (no DRAM)."""
    dataflow: str
    exact: bool
    rtl_cycles: int | None
    model_cycles: int
    dram_equal: bool | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.exact and self.rtl_cycles == self.model_cycles and self.dram_equal is not False


def run_array(design: Design, bounds: dict[str, int], seed: int) -> list[LevelRun]:
    """The array top fed the host program's streams (verif/array_amaranth.py)."""
    from archgen.verif.array_amaranth import verify_array_amaranth
    r = verify_array_amaranth(design, bounds, seed=seed)
    return [LevelRun(r.dataflow, r.outputs_exact, r.rtl_cycles, r.model_cycles, None, str(r.detail))]


def run_memory(design: Design, bounds: dict[str, int], seed: int, max_cycles: int = 200_000) -> list[LevelRun]:
    """One layer of ``bounds`` through the memory system around the array (``LayerTop``), planned by ``plan_command``
    (``plan_layer`` with the memory system's fit check and bank-row rooms, as ``archgen verify`` plans it), its
    output read back from DRAM against numpy, its cycles against ``simulate_layer`` and the bytes its DMA moved
    against the model's and the closed form's (``layer_dram_bytes``). A run that does not finish within
    ``max_cycles`` (or 4x the model's cycles + 1000, the smaller) counts as not exact."""
    from archgen.dataflow.compile import compile_array
    from archgen.dataflow.host import random_operands
    from archgen.dataflow.memctl import layer_dram_bytes, layer_program
    from archgen.rtlgen.layer_top import LayerTop
    from archgen.sim.layer_model import simulate_layer
    from archgen.verif.layer_amaranth import run_layer_top
    from archgen.verif.layer_check import layer_output, plan_command
    c = compile_array(design)
    cmd = plan_command(c, bounds, "layer")
    prog = layer_program(c, cmd, spec_size=False)
    model = simulate_layer(c, cmd)
    tensors = random_operands(c.fu_graph, cmd.mapping, np.random.default_rng(seed))
    top = LayerTop(prog, prog.dram_image(tensors))
    res = run_layer_top(top, prog.dram_words, min(max_cycles, 4 * model.cycles + 1000), top.moved)
    got, ref = layer_output(prog, res["words"], tensors, cmd.mapping.bound, c.fu_graph.acc_width)
    moved = {k: v for k, v in res["moved"].items() if v or k in model.dram_bytes}
    closed = {k: v for k, v in layer_dram_bytes(c, cmd).items() if v or k in model.dram_bytes}
    exact = "error" not in res and bool(np.array_equal(got, ref))
    detail = f"{cmd.describe()}; RTL bytes {moved}, model {model.dram_bytes}, closed form {closed}"
    return [LevelRun(c.dataflow.name, exact, res["cycles"], model.cycles, moved == model.dram_bytes == closed,
                     detail + (f"; {res['error']}" if "error" in res else ""))]


def run_fused_array(design: Design, bounds: dict[str, int], seed: int) -> list[LevelRun]:
    """Every dataflow of the spec's ``fuse:`` on the fused array top, one problem each (verif/fused_amaranth.py)."""
    from archgen.verif.fused_amaranth import verify_fused_amaranth
    return [LevelRun(r.dataflow, r.outputs_exact, r.rtl_cycles, r.model_cycles, None, str(r.detail))
            for r in verify_fused_amaranth(design, design.fuse, bounds, seed=seed)]


def run_fused_memory(design: Design, bounds: dict[str, int], seed: int) -> list[LevelRun]:
    """Every dataflow of the spec's ``fuse:`` as a layer of ``bounds``, then the first again, back to back on the one
    fused layer core ``archgen build --memory`` writes (verif/fused_program_check.py, in Amaranth)."""
    from archgen.verif.fused_program_check import verify_fused_program
    layers = [(n, bounds) for n in design.fuse] + [(design.fuse[0], bounds)]
    runs = verify_fused_program(design, layers, seed=seed, simulator="amaranth")
    return [LevelRun(r.dataflow, r.outputs_exact, r.rtl_cycles, r.model_cycles,
                     r.detail["rtl_dram_bytes"] == r.dram_bytes,
                     f"{r.command}; RTL bytes {r.detail['rtl_dram_bytes']}, model {r.dram_bytes}; "
                     f"{r.detail.get('error') or ''}") for r in runs]


# level name -> (runner, fused design?)
LEVELS = {"array": (run_array, False), "memory": (run_memory, False),
          "fused array": (run_fused_array, True), "fused memory": (run_fused_memory, True)}
