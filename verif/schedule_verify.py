"""A spec's design run in Amaranth's simulator at four levels, each as one record: the array alone
(verif/array_amaranth.py), a whole layer through its memory system (rtlgen/layer_top.py ``LayerTop``, planned as
``archgen verify`` plans it), and for a fused design every dataflow on the fused array (verif/fused_amaranth.py) and
every dataflow, then the first again, as layers on the one fused layer core (verif/fused_program_check.py). No
Verilator build, so a random sweep of specs (benchmarks/dataflow_refusal_search.py ``schedule-verify``) can run each
one it builds: outputs exact, RTL cycles == model cycles, and through the memory system the DRAM bytes the RTL's
DMA moved == the model's."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from archgen.arch.spec import Design

__all__ = ["LevelRun", "run_array", "run_memory", "run_memory_blocks", "run_memory_psums", "random_command", "run_layer",
           "run_fused_array", "run_fused_memory", "LEVELS"]


@dataclass(frozen=True)
class LevelRun:
    """One dataflow's run at one level: ``dram_equal`` is None at the array level (no DRAM)."""
    dataflow: str
    exact: bool
    rtl_cycles: int | None
    model_cycles: int
    dram_equal: bool | None = None
    detail: str = ""
    blocks: int | None = None           # through the memory system: the command's blocks, and whether its output's
    spill: bool | None = None           # partial sums went to DRAM and back (read back)

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
    (``plan_layer`` with the memory system's fit check and bank-row rooms, as ``archgen verify`` plans it): see
    :func:`run_layer`."""
    from archgen.dataflow.compile import compile_array
    from archgen.verif.layer_check import plan_command
    c = compile_array(design)
    return run_layer(c, plan_command(c, bounds, "layer"), seed, max_cycles)


def run_memory_blocks(design: Design, bounds: dict[str, int], seed: int, max_cycles: int = 200_000,
                      dram_psums: bool = False) -> list[LevelRun]:
    """As :func:`run_memory`, but the command drawn at random (:func:`random_command`, from ``seed``; with
    ``dram_psums`` one whose partial sums go through DRAM where these bounds allow it) rather than planned: the
    planner keeps a small layer in one block, so its multi-block walks, split inner loops and (with
    ``memory.partial_sums_through_dram``) partial sums through DRAM and back are met only by such commands."""
    import random
    from archgen.dataflow.compile import compile_array
    c = compile_array(design)
    cmd = random_command(c, bounds, random.Random(seed), dram_psums=dram_psums)
    return run_layer(c, cmd, seed, max_cycles)


def run_memory_psums(design: Design, bounds: dict[str, int], seed: int) -> list[LevelRun]:
    """:func:`run_memory_blocks` drawing a command whose partial sums go through DRAM (``dram_psums``)."""
    return run_memory_blocks(design, bounds, seed, dram_psums=True)


def random_command(compiled, bounds: dict[str, int], rng, dram_psums: bool = False):
    """A layer command of random block sizes (array tiles per block of each outer loop, 1 .. its trips; one inner
    loop in three split into chunks of 1 .. its bound) in a random order, as ``archgen verify --tile --order``
    takes it (``make_command``), with the memory system's bank-row rooms and fit check (``buffer_fit``): a block
    that does not fit is a SpecError (refused at these bounds), not a wrong run. ``dram_psums``: then one reduction
    loop (one the output does not use) and one output loop, each of 2 or more trips (chunks for an inner loop), are
    cut into 2 or more blocks and the reduction loop put outside the output loop, so the output's partial sums go to
    DRAM and back (:func:`_psum_pair`); at bounds where no such pair exists, the default draw. The default draws
    (``dram_psums`` False) are those of earlier sessions, seed for seed."""
    from archgen.dataflow.memctl import buffer_fit, buffer_rooms
    from archgen.mappings.memory_tiling import block_trips, make_command
    from archgen.mappings.tiling import map_problem
    df = compiled.dataflow
    trips = block_trips(map_problem(compiled.design, bounds, df, fifo_check=False))
    pair = _psum_pair(compiled, trips, bounds, rng) if dram_psums else None
    if pair is not None:
        tile, order = pair
    else:
        tile = _random_tiles(df, trips, bounds, rng)
        order = rng.sample(sorted(tile), len(tile))
    cmd = make_command(compiled.design, bounds, df, tile, tuple(order), "layer", rooms=buffer_rooms(compiled))
    fits = buffer_fit(compiled, "layer")
    if fits is not None:
        fits(cmd)
    return cmd


def _random_tiles(df, trips: dict[str, int], bounds: dict[str, int], rng) -> dict[str, int]:
    """Array tiles per block of every outer loop (1 .. its trips) and, one inner loop in three, elements per chunk
    (1 .. its bound)."""
    tile = {d: rng.randint(1, trips[d]) for d in df.outer_dims()}
    tile.update({d: rng.randint(1, bounds[d]) for d in df.inner_dims() if rng.random() < 1 / 3})
    return tile


def _psum_pair(compiled, trips: dict[str, int], bounds: dict[str, int], rng):
    """The tiles and order of a command whose partial sums go through DRAM: a reduction loop ``r`` and an output
    loop ``o`` drawn among the loops a command can cut into 2 or more blocks (an outer loop of 2 or more trips, an
    inner loop of 2 or more elements, split into chunks), each cut into 2 or more (tile 1 .. count - 1), ``r``
    placed before ``o`` in an otherwise random order; the other outer loops tiled at random as by default, another
    inner loop split one time in three. None when the bounds leave no such pair (every output loop or every
    reduction loop in one block)."""
    df, out = compiled.dataflow, compiled.design.operation.output
    count = {**{d: trips[d] for d in df.outer_dims()}, **{d: bounds[d] for d in df.inner_dims()}}
    cut = [d for d in count if count[d] > 1]
    reds, outs = [d for d in cut if not out.uses(d)], [d for d in cut if out.uses(d)]
    if not reds or not outs:
        return None
    r, o = rng.choice(reds), rng.choice(outs)
    tile = _random_tiles(df, trips, bounds, rng)
    tile.update({d: rng.randint(1, count[d] - 1) for d in (r, o)})
    order = rng.sample(sorted(tile), len(tile))
    i, j = order.index(r), order.index(o)
    if i > j:
        order[i], order[j] = o, r
    return tile, order


def run_layer(c, cmd, seed: int, max_cycles: int = 200_000, fused=None) -> list[LevelRun]:
    """The layer ``cmd`` of the compiled design ``c`` through the memory system around the array (``LayerTop``), its
    output read back from DRAM against numpy, its cycles against ``simulate_layer`` and the bytes its DMA moved
    against the model's and the closed form's (``layer_dram_bytes``). A run that does not finish within
    ``max_cycles`` (or 4x the model's cycles + 1000, the smaller) counts as not exact. ``fused``: ``c`` is a view of
    this fused design, run on its own memory-system build around the fused array (its select and the loops it does
    not fill tied to constants), as ``archgen verify`` runs a dataflow the one fused layer core does not."""
    from archgen.dataflow.host import random_operands
    from archgen.dataflow.memctl import layer_dram_bytes, layer_program
    from archgen.rtlgen.layer_top import LayerTop
    from archgen.sim.layer_model import simulate_layer
    from archgen.verif.layer_amaranth import run_layer_top
    from archgen.verif.layer_check import layer_output
    prog = layer_program(c, cmd, spec_size=False)
    model = simulate_layer(c, cmd)
    tensors = random_operands(c.fu_graph, cmd.mapping, np.random.default_rng(seed))
    top = LayerTop(prog, prog.dram_image(tensors), *_fused_array(fused, c.dataflow.name))
    res = run_layer_top(top, prog.dram_words, min(max_cycles, 4 * model.cycles + 1000), top.moved)
    got, ref = layer_output(prog, res["words"], tensors, cmd.mapping.bound, c.fu_graph.acc_width)
    moved = {k: v for k, v in res["moved"].items() if v or k in model.dram_bytes}
    closed = {k: v for k, v in layer_dram_bytes(c, cmd).items() if v or k in model.dram_bytes}
    exact = "error" not in res and bool(np.array_equal(got, ref))
    detail = f"{cmd.describe()}; RTL bytes {moved}, model {model.dram_bytes}, closed form {closed}"
    return [LevelRun(c.dataflow.name, exact, res["cycles"], model.cycles, moved == model.dram_bytes == closed,
                     detail + (f"; {res['error']}" if "error" in res else ""), math.prod(cmd.n_blocks().values()),
                     bool(model.dram_bytes.get(f"{c.design.operation.output.name}.read")))]


def run_fused_array(design: Design, bounds: dict[str, int], seed: int) -> list[LevelRun]:
    """Every dataflow of the spec's ``fuse:`` on the fused array top, one problem each (verif/fused_amaranth.py)."""
    from archgen.verif.fused_amaranth import verify_fused_amaranth
    return [LevelRun(r.dataflow, r.outputs_exact, r.rtl_cycles, r.model_cycles, None, str(r.detail))
            for r in verify_fused_amaranth(design, design.fuse, bounds, seed=seed)]


def _fused_array(fused, name: str) -> tuple:
    """``LayerTop``'s array and command constants for dataflow ``name`` of ``fused`` (none without ``fused``)."""
    if fused is None:
        return ()
    from archgen.rtlgen.build import fused_command_constants
    from archgen.rtlgen.fused_array import FusedArrayTop
    return FusedArrayTop(fused), fused_command_constants(fused, name)


def run_fused_memory(design: Design, bounds: dict[str, int], seed: int) -> list[LevelRun]:
    """Every dataflow of the spec's ``fuse:`` as a layer of ``bounds`` through the memory system, as ``archgen verify``
    runs them: two or more tiled dataflows back to back, then the first again, on the one fused layer core
    ``archgen build --memory`` writes (verif/fused_program_check.py, in Amaranth); a dataflow that core does not run
    (a folded map beside dataflows that fold otherwise, or a lone tiled one) on its own memory-system build around
    the fused array (:func:`run_layer`). A skewed map's stt layer core is Verilator only: not run here."""
    from archgen.dataflow.compile import compile_fused
    from archgen.rtlgen.fused_layer import tiled_fused_names
    from archgen.verif.fused_program_check import verify_fused_program
    from archgen.verif.layer_check import plan_command
    fused = compile_fused(design, tuple(design.fuse))
    shared = tiled_fused_names(fused) if len(tiled_fused_names(fused)) >= 2 else []
    runs = []
    if shared:
        layers = [(n, bounds) for n in shared] + [(shared[0], bounds)]
        runs = [LevelRun(r.dataflow, r.outputs_exact, r.rtl_cycles, r.model_cycles,
                         r.detail["rtl_dram_bytes"] == r.dram_bytes,
                         f"{r.command}; RTL bytes {r.detail['rtl_dram_bytes']}, model {r.dram_bytes}; "
                         f"{r.detail.get('error') or ''}")
                for r in verify_fused_program(design, layers, seed=seed, simulator="amaranth")]
    for n in design.fuse:
        view = fused.view(n)
        if n not in shared and not hasattr(view, "network"):
            runs += run_layer(view, plan_command(view, bounds, "layer"), seed, fused=fused)
    return runs


# level name -> (runner, fused design?)
LEVELS = {"array": (run_array, False), "memory": (run_memory, False), "memory (blocks)": (run_memory_blocks, False),
          "memory (blocks, dram psums)": (run_memory_psums, False),
          "fused array": (run_fused_array, True), "fused memory": (run_fused_memory, True)}
