"""Buffer-level tiling of one layer: the layer command of docs/memory.md, its fit and its DRAM bytes.

A *block* groups ``tile[d]`` consecutive array tiles along every outer (tile-walk) loop d of the
dataflow and, for an inner (streamed) loop d that the command *splits*, ``tile[d]`` consecutive
elements of it (a chunk): the chunk loop is one more tile loop, and each block is one array command
over its shorter inner range (the array reloads its stationary operand for every tile of it, as it
always does). Blocks are walked in ``order`` (outer to inner, over the outer loops and the split inner
loops). An operand's block is kept resident while only loops it does not depend on advance, so its
DRAM bytes are a closed form of the tiling and the order (:func:`dram_bytes`);
``tests/mappings/test_memory_tiling.py`` checks that form against a walk that collects element indices
block by block. A reduction loop split over blocks (an outer reduction tile loop, or a split inner
reduction loop such as OS's k) makes a later block *add onto* the partial sums an earlier block left in
the output buffer; when the output block comes back after another one, the partial sums go to DRAM
and back (``<Y>.read``): the cycle model and the generated RTL both do that (docs/memory.md "Partial
sums through DRAM") when the spec grants ``memory.partial_sums_through_dram`` (a psum-load copy of the
accumulator buffer); then the planner may choose it too (ranked like any order: estimated cycles, then DRAM
bytes), and without it such a command is refused (:func:`check_partial_sums`).

The heuristic (:func:`plan_layer`), deterministic and documented:

1. whole inner loops: start from one array tile per block along every loop the output depends on and
   the whole loop along every outer reduction loop (if that does not fit, one array tile along those
   too); per order (every permutation of the outer loops when there are at most four, else the
   dataflow's own order) repeatedly double the block along the loop whose doubling lowers the estimate
   most, among the doublings that still fit, until none helps;
2. split inner loops, when step 1 found no command or only one that splits a reduction tile loop over
   blocks (whole inner loops fit the buffers only badly; otherwise step 1's command stands, which keeps
   planning fast): from the same two starts, with every inner loop in the tile set and every order
   of outer and inner loops (at most four loops; else two fixed orders), halve the largest inner chunk
   until the block fits, then the same greedy descent with two moves: double any loop's block, halve
   an inner chunk; inner loops left whole are dropped from the command;
3. commands whose output partial sums would go back to DRAM are skipped in both unless the spec grants
   ``memory.partial_sums_through_dram`` (then they compete like any other); the estimate is
   ``max(compute, transfer(DRAM bytes)) + transfer(first block's bytes) + blocks x per-block overhead``
   cycles (transfer: the DRAM port's burst timing; compute counts one fill and drain, ``rows + cols``
   cycles, per extra chunk of every array tile); the lowest estimate wins, ties go to the earlier
   candidate (whole inner loops first). The estimate is a heuristic; the cycle model gives the number.

A block *fits* when every operand's block fits one half of its buffer and, with delay connections on an outer inner
loop, when the block's FIFO depth (its trips of the inner loops after the halo loop) fits the FIFO
buffers (``array.max_fifo_depth``): a layer whose whole loops are deeper is planned in chunks of those
loops (step 2), not refused; :func:`make_command` checks a given command's blocks the same way.

The memory system may keep a *margin* in front of a block in its buffer half (dataflow/memctl.py ``margins``:
the elements a lane reads before the block's box, lane leads under ``schedule: map``, FIFO chain halos), which the
footprint above does not count; its fit check then refuses a block that the footprint lets through. The margin
depends on the compiled array's walks, which this module cannot see (mappings sits below dataflow), so a caller
that has them passes ``plan_layer(..., fits=...)``: memctl's own fit check (``memctl.buffer_fit``, the very check
``layer_program`` makes). The planner checks its command with it and, if refused, plans again applying it to every
candidate after its own cheaper tests.

The generated memory system also rounds each half down to whole bank rows (``memory.<X>.bytes / halves`` elements,
rounded down to a multiple of its banks: a power of two, at least one beat's lanes and one DRAM word's elements), and
pads a lane-interleaved output's block to whole array tiles. The banks, too, come from the compiled array, so the
caller passes ``plan_layer(..., rooms=...)`` (``memctl.buffer_rooms``: per operand, the bytes of one half in whole
bank rows), which every candidate's footprint is checked against in place of ``bytes / halves``; the padding is in
``fits`` (``buffer_fit`` checks such a design too).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterator

import numpy as np

from archgen.arch.errors import SpecError, problem
from archgen.arch.spec import Dataflow, Design

from .tiling import TileMapping, check_fifo_depth, fifo_depth_loops, fifo_steps, map_problem, outer_pads

__all__ = ["LayerCommand", "Block", "Room", "plan_layer", "make_command", "check_partial_sums", "dram_bytes",
           "element_bytes", "BLOCK_OVERHEAD_CYCLES"]

# estimate of the cycles one array command costs beyond its steps (fill and drain); used by the
# heuristic only, never by the cycle model
BLOCK_OVERHEAD_CYCLES = 64


def element_bytes(design: Design, operand: str) -> int:
    return max(1, math.ceil(design.type_of[operand].bits / 8))


def block_trips(mapping: TileMapping) -> dict[str, int]:
    """Trip counts the blocks cut: the layer's tiles per loop, without the span a skewed reduction loop outside the
    tile adds (mappings/tiling.py ``outer_pads``: each block's array command runs its own chunk K + span tiles, so
    blocks split the loop's K tiles, and its DRAM box along the loop stays the chunk)."""
    t = mapping.trips()
    for pad in outer_pads(mapping.design, mapping.dataflow):
        t[pad.loop] -= pad.span(mapping.design.shape)
    return t


@dataclass(frozen=True)
class Block:
    index: int
    tiles: tuple[tuple[str, int], ...]             # outer loop -> block index along it
    ranges: tuple[tuple[str, int, int], ...]       # every loop -> [start, end) of its elements


@dataclass(frozen=True)
class LayerCommand:
    """The layer command: bounds, block sizes (array tiles per block along each outer loop), order."""

    design: Design
    dataflow: Dataflow
    bounds: tuple[tuple[str, int], ...]
    tile: tuple[tuple[str, int], ...]              # outer loop -> array tiles per block
    order: tuple[str, ...]                         # tile-loop order, outer to inner

    @cached_property
    def mapping(self) -> TileMapping:
        return TileMapping(self.design, self.dataflow, self.bounds)

    @property
    def bound(self) -> dict[str, int]:
        return dict(self.bounds)

    @cached_property
    def _ranges_of(self) -> dict:
        """Per outer loop: (elements per block, the loop's bound), for :meth:`loop_range`."""
        tile, bound, axis_of = dict(self.tile), dict(self.bounds), self.dataflow.axis_of
        return {d: (t * (self.design.shape[axis_of[d]] if d in axis_of else 1), bound[d]) for d, t in tile.items()}

    @cached_property
    def _boxes(self) -> dict:
        """Per operand: [(const, ((loop, coeff), ...))] per index, and its element bytes."""
        op = self.design.operation
        return {x.name: ([(e.const, tuple(e.coeffs.items())) for e in x.indices], element_bytes(self.design, x.name))
                for x in op.operands}

    def n_blocks(self) -> dict[str, int]:
        trips, tile = block_trips(self.mapping), dict(self.tile)
        return {d: math.ceil(trips[d] / tile[d]) for d in self.order}

    def loop_range(self, d: str, b: int) -> tuple[int, int]:
        """Elements [start, end) of outer loop d in its block b (ragged at the edge)."""
        per, end = self._ranges_of[d]
        return b * per, min((b + 1) * per, end)

    def blocks(self) -> Iterator[Block]:
        nb = self.n_blocks()
        inner = [(d, 0, self.bound[d]) for d in self.design.operation.dims if d not in nb]
        for i, idx in enumerate(itertools.product(*[range(nb[d]) for d in self.order])):
            rng = [(d, *self.loop_range(d, b)) for d, b in zip(self.order, idx)] + inner
            yield Block(i, tuple(zip(self.order, idx)), tuple(rng))

    def block_mapping(self, block: Block) -> TileMapping:
        """The array command a block runs: its loop extents as a problem of their own."""
        return TileMapping(self.design, self.dataflow, tuple((d, e - s) for d, s, e in
                                                             sorted(block.ranges, key=lambda r: self._dim_pos(r[0]))))

    def _dim_pos(self, d: str) -> int:
        return self.design.operation.dims.index(d)

    def depends(self, operand: str) -> tuple[str, ...]:
        """Tile loops the operand's block depends on, in order."""
        x = self.design.operation.operand(operand)
        return tuple(d for d in self.order if x.uses(d))

    def footprint_bytes(self, operand: str, block: Block) -> int:
        """Bytes of the box of elements of ``operand`` the block touches (:func:`bounding_box`: not clipped, an input
        index outside the tensor is zero padding, stored and moved as zeros)."""
        # footprint_elements (bounding_box) on data cached per command: the same arithmetic, per block
        indices, eb = self._boxes[operand]
        ranges = {d: (s, e) for d, s, e in block.ranges}
        n = 1
        for const, coeffs in indices:
            lo = hi = const
            for d, c in coeffs:
                s, t = ranges[d]
                lo += min(c * s, c * (t - 1))
                hi += max(c * s, c * (t - 1))
            n *= max(0, hi - lo + 1)
        return n * eb

    @property
    def split_inner(self) -> tuple[str, ...]:
        """Inner (streamed) loops of the dataflow that this command cuts into chunks: each chunk is an extra
        tile loop whose blocks run the array over ``tile[d]`` elements of the loop (docs/memory.md)."""
        inner = self.dataflow.inner_dims()
        return tuple(d for d, _ in self.tile if d in inner)

    def describe(self) -> str:
        tile = dict(self.tile)
        split = self.split_inner
        text = " > ".join(f"{d}:{tile[d]}" for d in self.order)
        if not split:
            return text + " array tiles per block"
        return text + f" per block (array tiles; {', '.join(split)}: elements per chunk)"


def bounding_box(design: Design, operand: str, ranges: dict[str, tuple[int, int]],
                 bounds: dict[str, int]) -> list[tuple[int, int]]:
    """Per tensor axis, the inclusive [lo, hi] that the operand's affine indices reach over the loop ranges
    (half-open ``(start, end)`` per loop). Not clipped to the tensor's shape: an input index that reaches below 0
    (a true convolution's ``I[p - r]``) or past the tensor is zero padding, which the host packs into the block's
    box as zeros, so the buffers, walks and DMA see an ordinary box (docs/memory.md "Zero padding"). For an index
    inside the tensor over the layer (every index before 2026-12-05) the box is the same as clipped: the ranges
    lie inside the bounds and ``tensor_shape`` holds every access inside them."""
    x = design.operation.operand(operand)
    box = []
    for e in x.indices:
        lo = hi = e.const
        for d, c in e.coeffs.items():
            s, t = ranges[d]
            lo += min(c * s, c * (t - 1))
            hi += max(c * s, c * (t - 1))
        box.append((lo, hi))
    return box


def footprint_elements(design: Design, operand: str, ranges: dict[str, tuple[int, int]], bounds: dict[str, int]) -> int:
    """Elements in the bounding box of the operand's indices over the loop ranges (zero padding included)."""
    n = 1
    for lo, hi in bounding_box(design, operand, ranges, bounds):
        n *= max(0, hi - lo + 1)
    return n


def _reload_position(cmd: LayerCommand, operand: str) -> int:
    """Position in the order of the innermost loop the operand depends on that has more than one block
    (-1: the operand's block never changes)."""
    nb = cmd.n_blocks()
    x = cmd.design.operation.operand(operand)
    pos = -1
    for i, d in enumerate(cmd.order):
        if x.uses(d) and nb[d] > 1:
            pos = i
    return pos


def _separable_sum(cmd: LayerCommand, x, dep, nb, inner) -> int | None:
    """Sum of the footprints of all of X's blocks when every tensor index uses at most one tiled loop
    and no tiled loop appears in two indices: the box then factorises into one sum per index (the
    box is per index too). None when the indices couple tiled loops (enumerate instead)."""
    tiled = set(dep)
    seen: set = set()
    for e in x.indices:
        used = [d for d in e.coeffs if d in tiled]
        if len(used) > 1 or seen & set(used):
            return None
        seen |= set(used)
    total = 1
    for e in x.indices:
        used = [d for d in e.coeffs if d in tiled]
        # every block of the tiled loop at once (int64 arrays; the same integer arithmetic as a block loop)
        ranges: dict = dict(inner)
        if used:
            per, end = cmd._ranges_of[used[0]]
            b = np.arange(nb[used[0]], dtype=np.int64)
            ranges[used[0]] = (b * per, np.minimum((b + 1) * per, end))
        lo = hi = e.const
        for d, c in e.coeffs.items():
            s0, t0 = ranges[d]
            lo = lo + np.minimum(c * s0, c * (t0 - 1))
            hi = hi + np.maximum(c * s0, c * (t0 - 1))
        total *= int(np.maximum(0, hi - lo + 1).sum())
    return total


def _enumerated_sum(cmd: LayerCommand, x, dep, nb, inner) -> int:
    """Sum of the footprints of all of X's blocks, block by block."""
    total = 0
    for idx in itertools.product(*[range(nb[d]) for d in dep]):
        ranges = dict(inner)
        for d, b in zip(dep, idx):
            ranges[d] = cmd.loop_range(d, b)
        total += footprint_elements(cmd.design, x.name, ranges, cmd.bound)
    return total


def dram_bytes(cmd: LayerCommand) -> dict[str, int]:
    """Closed form of docs/memory.md: ``"<X>.read"`` / ``"<Y>.write"`` bytes of one run of the layer."""
    op = cmd.design.operation
    nb = cmd.n_blocks()
    out: dict[str, int] = {}
    for x in op.operands:
        p = _reload_position(cmd, x.name)
        repeats = math.prod(nb[d] for d in cmd.order[:p + 1] if not x.uses(d))
        dep = [d for d in cmd.order if x.uses(d)]
        inner = {d: (0, cmd.bound[d]) for d in op.dims if d not in nb}
        distinct = _separable_sum(cmd, x, dep, nb, inner)
        if distinct is None:
            distinct = _enumerated_sum(cmd, x, dep, nb, inner)
        distinct *= element_bytes(cmd.design, x.name)
        if x is op.output:
            out[f"{x.name}.write"] = repeats * distinct
            if repeats > 1:
                out[f"{x.name}.read"] = (repeats - 1) * distinct
        else:
            out[f"{x.name}.read"] = repeats * distinct
    return out


def _largest_block_bytes(cmd: LayerCommand) -> dict[str, int]:
    """Per operand, the footprint of the first block (the largest: edge blocks are only smaller)."""
    first = next(cmd.blocks())
    return {x.name: cmd.footprint_bytes(x.name, first) for x in cmd.design.operation.operands}


@dataclass(frozen=True)
class Room:
    """One buffer half as the memory system lays it out (``memctl.buffer_rooms``): the bytes a block may take
    (``memory.<X>.bytes / halves`` rounded down to whole bank rows) and the bytes of one bank row."""
    half_bytes: int
    row_bytes: int


# per operand, its buffer half as the memory system lays it out; None: ``memory.<X>.bytes / halves`` (no rounding)
Rooms = dict[str, Room] | None


def _misfits(cmd: LayerCommand, rooms: Rooms = None) -> list[tuple[str, int, int]]:
    """Operands whose largest block is over the bytes one buffer half gives it (with ``rooms``: in whole bank rows):
    (operand, block bytes, memory bytes). Called for every candidate of the planner, so kept to main's loop."""
    mem = cmd.design.memory_system
    bad = []
    for name, nbytes in _largest_block_bytes(cmd).items():
        buf = mem.buffer(name)
        if nbytes > (rooms[name].half_bytes if rooms else buf.bytes // buf.halves):
            bad.append((name, nbytes, buf.bytes))
    return bad


def _misfit_problem(design: Design, name: str, need: int, have: int, rooms: Rooms, layer: str, what: str):
    """The refusal of a block of ``need`` B of ``name`` (``what`` describes the block), with the bytes that fit it."""
    halves = design.memory_system.buffer(name).halves
    row = rooms[name].row_bytes if rooms else 1
    rounded = f", which leaves {rooms[name].half_bytes} B per half in whole bank rows of {row} B" if rooms else ""
    enough = halves * -(-need // row) * row
    return problem(f"layers.{layer}", f"operand {name} needs {halves} x {need} B for a block of {what}; buffer "
                   f"memory.{name}.bytes is {have} B{rounded} (--set memory.{name}.bytes={enough} or more)")


def make_command(design: Design, bounds: dict[str, int], dataflow: Dataflow, tile: dict[str, int],
                 order: tuple[str, ...], layer: str = "layer", rooms: Rooms = None) -> LayerCommand:
    """A checked command: every outer loop tiled by a positive count, the order a permutation of them,
    and every block fitting its buffer (a half of it, whole bank rows with ``rooms``: :func:`plan_layer`). Raises
    SpecError naming the layer, the operand and the sizes."""
    mapping = map_problem(design, bounds, dataflow, fifo_check=False)       # the blocks' FIFO depth: below
    outer = tuple(dataflow.outer_dims())
    inner = tuple(dataflow.inner_dims())
    split = tuple(d for d in inner if d in tile)
    problems = []
    for d in tile:
        if d not in outer and d not in inner:
            problems.append(problem(f"layers.{layer}.tile.{d}", f"no loop of that name under dataflow {dataflow.name!r} "
                                    f"(outer loops: {', '.join(outer)}; inner loops: {', '.join(inner)})", tile[d]))
    if sorted(order) != sorted(outer + split):
        want = ", ".join(outer) + (f", and the split inner loops {', '.join(split)}" if split else "")
        problems.append(problem(f"layers.{layer}.order", f"the tile-loop order must list the outer loops of dataflow "
                                f"{dataflow.name!r} ({want}) once each", list(order)))
    for d in outer:
        t = tile.get(d)
        if t is None:
            problems.append(problem(f"layers.{layer}.tile.{d}", f"missing: give the array tiles per block of every outer "
                                    f"loop of dataflow {dataflow.name!r} ({', '.join(outer)}), e.g. {d}: 1"))
        elif not isinstance(t, int) or t < 1:
            problems.append(problem(f"layers.{layer}.tile.{d}", "array tiles per block must be a positive integer", t))
    for d in split:
        t = tile[d]
        if not isinstance(t, int) or t < 1:
            problems.append(problem(f"layers.{layer}.tile.{d}", "elements per chunk of a split inner loop must be a "
                                    "positive integer", t))
    if problems:
        raise SpecError(problems)
    trips = block_trips(mapping)
    cmd = LayerCommand(design, dataflow, mapping.bounds, tuple((d, min(tile[d], trips[d])) for d in outer + split),
                       tuple(order))
    bad = _misfits(cmd, rooms)
    if bad:
        raise SpecError([_misfit_problem(design, name, need, have, rooms, layer, cmd.describe())
                         for name, need, have in bad])
    check_fifo_depth(design, dataflow, _fifo_chunks(cmd), f"blocks of layer {layer}")
    return cmd


def _fifo_chunks(cmd: LayerCommand) -> dict[str, int]:
    """Delay connections on an outer inner loop: the largest block's trips of the loops that set the FIFO
    depth (a split inner loop's chunk, else the whole loop); empty without such FIFOs."""
    trips, tile = cmd.mapping.trips(), dict(cmd.tile)
    return {d: min(tile.get(d, trips[d]), trips[d]) for d in fifo_depth_loops(cmd.design, cmd.dataflow)}


# the memory system's fit check of a command (with its margin): raises SpecError naming memory.<X>.bytes when a block
# does not fit; the module docstring
Fits = Callable[[LayerCommand], None]


def _unfit(cmd: LayerCommand, rooms: Rooms = None, fits: Fits | None = None) -> bool:
    """A block overflows a buffer half (whole bank rows with ``rooms``), or its FIFO depth the FIFO buffers
    (``array.max_fifo_depth``; a padded loop of the map's own schedule counts its span, tiling.py ``fifo_steps``),
    or, with ``fits``, the memory system refuses it at the spec's buffer sizes (its margin in front of the block;
    checked last, it is the costly test)."""
    depth = fifo_steps(cmd.design, cmd.dataflow, _fifo_chunks(cmd)) if _fifo_chunks(cmd) else {}
    if _misfits(cmd, rooms) or max(depth.values(), default=0) > cmd.design.max_fifo_depth:
        return True
    if fits is None:
        return False
    try:
        fits(cmd)
    except SpecError:
        return True
    return False


def _chunk_overhead(cmd: LayerCommand) -> int:
    """Estimated cycles that cutting inner loops into chunks adds: every extra chunk of an array tile is one
    more array tile (the stationary operand reloaded, the pipeline filled and drained once more)."""
    nb = cmd.n_blocks()
    chunks = math.prod(nb[d] for d in cmd.split_inner)
    if chunks == 1:
        return 0
    m = cmd.mapping
    return m.n_tiles * (chunks - 1) * sum(cmd.design.shape)


def _reloads_partial_sums(cmd: LayerCommand) -> bool:
    """The output's block comes back after another output block (its partial sums go to DRAM and back):
    the cycle model and the generated RTL run it (docs/memory.md "Partial sums through DRAM") when the spec
    grants ``memory.partial_sums_through_dram``; the planner and the mapper then may choose it."""
    return f"{cmd.design.operation.output.name}.read" in dram_bytes(cmd)


def _forbidden_spill(cmd: LayerCommand) -> bool:
    """The command's partial sums go to DRAM and back, and the spec does not grant that
    (``memory.partial_sums_through_dram``): the planner and the mapper skip it."""
    return not cmd.design.memory_system.partial_sums_through_dram and _reloads_partial_sums(cmd)


def check_partial_sums(cmd: LayerCommand, layer: str = "layer") -> None:
    """Refuse a command whose output blocks come back after other ones (partial sums to DRAM and back)
    unless the spec grants it (``memory.partial_sums_through_dram``: the generated memory system then
    has the psum-load copy and the revisit logic)."""
    if not _forbidden_spill(cmd):
        return
    op = cmd.design.operation
    nb = cmd.n_blocks()
    split = [d for d in cmd.order if not op.output.uses(d) and nb[d] > 1]
    d = split[0] if split else cmd.order[-1]
    raise SpecError([problem("memory.partial_sums_through_dram", f"the order of layer {layer!r} ({' > '.join(cmd.order)}) "
                             f"splits the reduction loop {d} over {nb[d]} blocks and brings output blocks back after "
                             f"other ones, so their partial sums go to DRAM and back; set it to true (--set "
                             f"memory.partial_sums_through_dram=true), or put the split reduction loops after every "
                             f"loop the output depends on (or layers.{layer}.tile.{d} = {block_trips(cmd.mapping)[d]})",
                             False)])


def _estimate(cmd: LayerCommand) -> tuple[float, int]:
    port = cmd.design.memory_system.dram
    nbytes = sum(dram_bytes(cmd).values())
    m = cmd.mapping
    compute = m.n_tiles * m.steps + _chunk_overhead(cmd)
    blocks = math.prod(cmd.n_blocks().values())
    first = sum(_largest_block_bytes(cmd).values())
    return (max(compute, port.transfer_cycles(nbytes)) + port.transfer_cycles(first) + blocks * BLOCK_OVERHEAD_CYCLES,
            nbytes)


def _canonical(cmd: LayerCommand) -> LayerCommand:
    """The same command without the inner loops it leaves whole (one chunk: nothing is split)."""
    nb = cmd.n_blocks()
    whole = {d for d in cmd.split_inner if nb[d] == 1}
    if not whole:
        return cmd
    return LayerCommand(cmd.design, cmd.dataflow, cmd.bounds, tuple((d, t) for d, t in cmd.tile if d not in whole),
                        tuple(d for d in cmd.order if d not in whole))


def _greedy(design, dataflow, bounds, tile: dict, order: tuple, trips: dict, halve: tuple = (),
            rooms: Rooms = None, fits: Fits | None = None):
    """From a fitting ``tile``: repeatedly take the move that lowers the estimate most among those that still
    fit and reload no partial sums (double one loop's block; halve a chunk of a loop in ``halve``), until
    none helps. Returns (estimate, command)."""
    keys = tuple(tile)
    cmd = LayerCommand(design, dataflow, bounds, tuple((e, tile[e]) for e in keys), order)
    cost = _estimate(cmd)
    while True:
        better = []
        for d in order:
            moves = [min(2 * tile[d], trips[d])] + ([max(1, tile[d] // 2)] if d in halve else [])
            for v in moves:
                if v == tile[d]:
                    continue
                trial = dict(tile, **{d: v})
                c2 = LayerCommand(design, dataflow, bounds, tuple((e, trial[e]) for e in keys), order)
                if _forbidden_spill(c2) or _unfit(c2, rooms):
                    continue
                e2 = _estimate(c2)
                if e2 < cost:
                    better.append((e2, trial, c2))
        # the lowest estimate that the memory system's fit check (costly) also passes; ties: the earlier move
        step = next((m for m in sorted(better, key=lambda m: m[0]) if not _unfit(m[2], rooms, fits)), None)
        if step is None:
            return cost, cmd
        cost, tile, cmd = step


def _split_start(design, dataflow, bounds, outer_tile: dict, inner: tuple, order: tuple, trips: dict,
                 rooms: Rooms = None, fits: Fits | None = None):
    """Halve the largest inner chunk (the earlier loop on ties) until the block fits; None if it never does."""
    tile = dict(outer_tile, **{d: trips[d] for d in inner})
    keys = tuple(tile)
    while True:
        cmd = LayerCommand(design, dataflow, bounds, tuple((e, tile[e]) for e in keys), order)
        if not _unfit(cmd, rooms, fits):
            return tile
        d = max(inner, key=lambda e: (tile[e], -inner.index(e)))
        if tile[d] == 1:
            return None
        tile[d] = -(-tile[d] // 2)


def _whole_inner_orders(outer: tuple, red: set) -> list[list[tuple]]:
    """The block orders tried with whole inner loops, in rounds (a later round only if no order of the earlier ones
    gives a command): every order of up to four outer loops; else the dataflow's own, then the loops the output
    depends on before the reduction loops, which never brings an output block back (without it a layer of five or
    more outer loops whose own order splits a reduction loop before an output loop found no command when partial
    sums may not go through DRAM)."""
    if len(outer) <= 4:
        return [list(itertools.permutations(outer))]
    return [[outer], [tuple(d for d in outer if d not in red) + tuple(d for d in outer if d in red)]]


def _split_orders(outer: tuple, inner: tuple, red: set) -> list[tuple]:
    loops = outer + inner
    if len(loops) <= 4:
        return list(itertools.permutations(loops))
    keep = tuple(d for d in outer if d not in red)
    return [loops, keep + inner + tuple(d for d in outer if d in red)]


def plan_layer(design: Design, bounds: dict[str, int], dataflow: Dataflow, layer: str = "layer",
               fits: Fits | None = None, rooms: Rooms = None) -> LayerCommand:
    """The heuristic of this module's docstring: the command for one layer, or SpecError if none fits. ``rooms``:
    the buffer halves as the memory system lays them out (``memctl.buffer_rooms(compiled)``: whole bank rows; None:
    ``memory.<X>.bytes / halves``), every candidate's blocks are checked against them. ``fits``: the memory
    system's fit check (``memctl.buffer_fit(compiled)``, its margins); when it refuses the command planned without
    it, the heuristic runs again with ``fits`` on every candidate (it costs a program build each, so the common
    case, a command whose margin fits, costs one)."""
    cmd = _plan(design, bounds, dataflow, layer, rooms)
    if fits is None:
        return cmd
    try:
        fits(cmd)
        return cmd
    except SpecError:
        return _plan(design, bounds, dataflow, layer, rooms, fits)


def _plan(design: Design, bounds: dict[str, int], dataflow: Dataflow, layer: str, rooms: Rooms = None,
          fits: Fits | None = None):
    """:func:`plan_layer`'s heuristic, with ``rooms`` and ``fits`` (if given) on every candidate."""
    mapping = map_problem(design, bounds, dataflow, fifo_check=False)   # FIFO depth per block: _unfit
    outer = tuple(dataflow.outer_dims())
    inner = tuple(dataflow.inner_dims())
    trips = block_trips(mapping)
    b = mapping.bounds
    red = {d for d in outer if not design.operation.output.uses(d)}
    whole_red = {d: trips[d] if d in red else 1 for d in outer}
    ones = {d: 1 for d in outer}
    best = None
    # 1. blocks with whole inner loops (the reduction tile loops whole when that fits, else one array tile)
    for start in (whole_red, ones):
        if _unfit(LayerCommand(design, dataflow, b, tuple(start.items()), outer), rooms, fits):
            continue
        for orders in _whole_inner_orders(outer, red):
            for order in orders:
                if _forbidden_spill(LayerCommand(design, dataflow, b, tuple(start.items()), order)):
                    continue
                cost, cmd = _greedy(design, dataflow, b, dict(start), order, trips, rooms=rooms, fits=fits)
                if best is None or cost < best[0]:
                    best = (cost, cmd)
            if best is not None:
                break
        break
    # 2. blocks that also cut the inner loops into chunks (every loop order; partial-sum reloads only if granted), when
    #    whole inner loops fit only with a reduction tile loop split over blocks, or not at all
    nb = best[1].n_blocks() if best else {}
    if inner and (best is None or any(nb[d] > 1 for d in red)):
        for start in (whole_red, ones):
            for order in _split_orders(outer, inner, red):
                tile = _split_start(design, dataflow, b, start, inner, order, trips, rooms, fits)
                if tile is None:
                    continue
                cmd = LayerCommand(design, dataflow, b, tuple(tile.items()), order)
                if _forbidden_spill(cmd):
                    continue
                cost, cmd = _greedy(design, dataflow, b, tile, order, trips, halve=inner, rooms=rooms, fits=fits)
                if best is None or cost < best[0]:
                    best = (cost, _canonical(cmd))
    if best is None:
        smallest = make_command(design, bounds, dataflow, dict(ones, **{d: 1 for d in inner}), outer + inner, layer,
                                rooms)
        if fits:
            fits(smallest)                                       # make_command or this raises
        check_partial_sums(smallest, layer)                      # or the smallest block spills partial sums
        raise AssertionError("a fitting command was not found")     # unreachable: the smallest block fits
    return best[1]
