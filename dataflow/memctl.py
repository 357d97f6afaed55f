"""The memory system's control rules (docs/memory.md): the layer controller's job list, the DMA order
and gates, and DRAM burst timing, stated once as data and closed forms, with the model halves (SimPy
processes, given an environment by sim/) next to them.

Jobs per block b: ``L(b)`` loads every operand whose block changed (and the output's partial sums when
its block comes back), ``C(b)`` runs the block as one array command, ``W(b)`` writes the output block back
when the next block moves to another output block (or b is the last). With ``D`` halves per buffer:

* DMA order: ``L(0) .. L(D-1)``, then for b = 0, 1, ...: ``L(b+D)``, ``W(b)``; one job at a time;
* ``L(b)`` waits for ``C(b-D)``; ``W(b)`` waits for ``C(b)``;
* ``C(b)`` waits for ``L(b)``, ``C(b-1)`` and ``W(b-D)``; it takes the array's cycles plus one (the
  array is idle again in the cycle after ``done``);
* a transfer of B bytes is bursts issued every ``c`` cycles, at most ``outstanding`` in flight
  (:func:`transfer_cycles`); a job is its transfers back to back and takes at least one cycle;
* every unit's job occupies cycles [start, end): its ``done`` is high in cycle end - 1, and what waits on
  it may start at ``end`` (the hardware registers done into counters).

This module imports neither simpy nor amaranth: the model halves receive a SimPy environment.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

from archgen.arch.errors import SpecError, problem
from archgen.arch.spec import DramPort
from archgen.mappings.memory_tiling import Block, LayerCommand, Room, bounding_box, check_partial_sums, element_bytes
from archgen.mappings.tiling import check_fifo_depth, outer_pads, output_wait_steps, row_pads

from .interconnect import FUGraph
from .ir import Role
from .reduce_skew import drain_groups, drain_skews, lane_offsets, memory_drain_waits, product_waits

__all__ = ["check_memory_system", "check_command", "transfer_cycles", "BlockJobs", "layer_jobs",
           "adds_onto_partial_sums", "loads_partial_sums", "dma_order", "dma_process", "compute_process",
           "TransferTimerHW", "transfer_timer_hw", "SequencerHW", "layer_sequencer_hw",
           "DescriptorFormat", "descriptor_format", "probe_command", "WalkerCommand", "reload_flags",
           "block_steps", "walk_rows", "revisit_flags", "revisits", "BlockWalkerHW", "block_walker_hw", "chained_inputs",
           "lane_map", "output_lane_split", "block_bytes", "layer_dram_bytes", "psum_read_skew", "fused_banks",
           "tiled_fused_names"]


def check_memory_system(fg: FUGraph, design=None) -> None:
    """The spec's buffers against the array under one dataflow: every bank count divides the lanes its
    operand is fed on (the banking of ``--explain``), so one bank port serves each lane every cycle.
    ``design``: the compiled design (``CompiledArray.design``), whose memory system counts."""
    mem = (fg.design if design is None else design).memory_system
    problems = []
    for plan in fg.plans:
        buf = mem.buffer(plan.name)
        if buf.banks and plan.n_lanes % buf.banks:
            problems.append(problem(f"memory.{plan.name}.banks", f"must divide the {plan.n_lanes} memory-fed lanes of "
                                    f"operand {plan.name} under dataflow {fg.dataflow.name!r} (0 = one bank per lane)",
                                    buf.banks))
    problems += memory_drain_waits(fg)      # H148: the waited drain
    if problems:
        raise SpecError(problems)


def output_pads(fg: FUGraph) -> tuple:
    """An output streamed per step over padded loops of the map's own schedule (``schedule: map``): lane s streams, at
    row positions pos, the element (and takes the partial sum) of its FUs' iteration pos - offset(s) on each padded
    loop (mappings/tiling.py ``RowPad``; one offset per lane, interconnect.py ``_check_output_over_tile``). Returns
    (loop, span, offset per output lane) per padded loop the output uses, in the tile's order; () for every other
    output."""
    out = fg.output
    xop = fg.design.operation.output
    if out.role is not Role.STREAM_OUT:
        return ()
    tops = lane_offsets(fg)             # a lane reduced along a skewed axis streams its FUs' largest offset
    return tuple((p.loop, p.span(fg.design.shape), tuple(top.get(p.loop, p.offset(ln.fus[-1]))
                                                         for top, ln in zip(tops, out.lanes)))
                 for p in row_pads(fg.design, fg.dataflow) if xop.uses(p.loop))


def output_deskew(fg: FUGraph):
    """The memory system writes every lane at one position, so the layer core delays each lane of a streamed output
    (:func:`output_pads`): its partial sum by its offsets (the psum walk reads iteration pos on every lane) and its
    result by span - offset (the write walk writes iteration pos - span, holding its first span positions of each
    row of every padded loop: masked). Over one padded loop l that is the tile's last, those are fixed numbers of
    beats: returns (l, span, offsets per output lane); None otherwise (no such output, or a delay set per block:
    :func:`deskew_terms`)."""
    pads = output_pads(fg)
    if len(pads) != 1 or fg.dataflow.inner_dims()[-1] != pads[0][0]:
        return None
    return pads[0]


def deskew_terms(fg: FUGraph, kind: str) -> tuple:
    """Over several padded loops, or loops after the padded one, a lane's delay is a number of beats set per block:
    the beats of a row position of each padded loop d are the trips of the inner loops after d (L + span of the
    padded ones), so lane s is delayed by sum_d c_d(s) x prod(trips after d), c_d = offset_d(s) for the partial
    sums (``kind`` "psum") and span_d - offset_d(s) for the result ("write"). Returns, per output lane, c per inner
    loop of the tile (0 on loops without a pad); () when :func:`output_deskew` applies or nothing is streamed."""
    pads = output_pads(fg)
    if not pads or output_deskew(fg) is not None:
        return ()
    inner = fg.dataflow.inner_dims()
    by_loop = {loop: (span, offs) for loop, span, offs in pads}
    lanes = len(pads[0][2])
    return tuple(tuple(0 if d not in by_loop else by_loop[d][1][s] if kind == "psum" else
                       by_loop[d][0] - by_loop[d][1][s] for d in inner) for s in range(lanes))


def _deskew_strides(compiled, ext: dict) -> dict:
    """Beats of one row position of each inner loop of the tile in a block of extents ``ext`` (loop -> elements):
    the trips (L + span of a padded loop) of the inner loops after it."""
    inner = tuple(compiled.dataflow.inner_dims())
    halos = dict(compiled.fu_graph.halo)
    return {d: math.prod(ext[e] + halos.get(e, 0) for e in inner[i + 1:]) for i, d in enumerate(inner)}


def psum_read_skew(compiled, ext: dict) -> int:
    """The beats by which the layer core writes an element of a de-skewed output (:func:`output_pads`) after its
    psum walk read it, in a block of extents ``ext``: sum_d span_d x the beats of a row position of d (lane s reads
    offset(s) beats early and writes span - offset(s) beats late, so every lane's sum is the same). The array's
    read-after-write wait counts it (dataflow/control.py ``psum_raw_hw``: a distance of steps x tiles - this);
    0 for every other output, and with no partial sums read back."""
    pads = () if hasattr(compiled, "network") else output_pads(compiled.fu_graph)
    if not pads or compiled.psum_port is None:
        return 0
    strides = _deskew_strides(compiled, ext)
    return sum(span * strides[loop] for loop, span, _offs in pads)


def _check_deskewed_output(compiled, blocks, layer: str) -> None:
    """The layer core's de-skew buffers of an output de-skewed with a delay set per block (:func:`output_pads`,
    :func:`deskew_terms`) in every block: one row position of a padded loop that is not the tile's last holds at
    most ``array.max_fifo_depth`` beats (as the delay connections' FIFOs of run-time depth, mappings/tiling.py
    ``check_fifo_depth``), refused naming that field otherwise. (Its partial sums read back are never refused: the
    array's read-after-write wait counts the de-skew, dataflow/control.py ``psum_raw_hw``.)"""
    pads = output_pads(compiled.fu_graph)
    if not pads or output_deskew(compiled.fu_graph) is not None:
        return
    design, last = compiled.design, compiled.dataflow.inner_dims()[-1]
    for blk in blocks:
        strides = _deskew_strides(compiled, {d: e - s for d, s, e in blk.ranges})
        for loop, _span, _offs in pads:
            if loop != last and strides[loop] > design.max_fifo_depth:
                _refuse("array.max_fifo_depth", f"the output {compiled.fu_graph.output.name} is streamed over the "
                        f"padded loop {loop}, whose row position is {strides[loop]} beats in the blocks of layer "
                        f"{layer}; the layer core's de-skew buffers hold at most array.max_fifo_depth beats per "
                        "position: raise it, or give the loops after it fewer trips", design.max_fifo_depth)


def lane_skewed_output(compiled) -> bool:
    """Whether the output's lanes write their own tiles of a skewed loop outside the tile (:func:`_lane_skewed_loops`).
    Such a loop (built at the array level since H141) has FU s write its element of tile t - offset(s) at each
    drain. The memory system's output and partial-sum walks give each drained row its lead on the loop's tile level
    (:func:`lane_lead`) and drop the writes of its masked tiles (``PortWalk.tile_masks``, H147); lanes of one row
    with different offsets (a skew along the lanes) write positions on a diagonal of the box: a lane map on the write
    side whose lanes each go to their own bank (``PortWalk.scatter``, :func:`_bank_clash`), in the plain layout even
    where the lanes span several array axes (no lane-interleaved layout, :func:`output_lane_split`: its one run per
    beat assumes one tile for every lane)."""
    return bool(_lane_skewed_loops(compiled.fu_graph))


def _bank_clash(w, starts, banks: int, live) -> list[int] | None:
    """A scattered output walk (``PortWalk.scatter``) in one block: lane l sits ``starts[group] + offset`` positions
    from lane 0 on every beat (the offsets come from the box's pitches, which the block's extents set); the bank
    crossbar writes every lane in one cycle only when those positions fall in distinct banks (position mod banks).
    Lanes never in bounds in the block (``live`` False, :func:`live_lanes`) take no bank, and lanes of one drain group
    (``PortWalk.lane_alias``) sit at one position and count once: their reads share the address, and only the
    enabled one writes. Returns the live lanes' offsets when two share a bank, else None."""
    alias = w.lane_alias or range(w.lanes)
    offs = [starts[g] + o for (g, o), a, ln, ok in zip(zip(w.lane_groups, w.lane_offsets), alias, range(w.lanes), live)
            if ok and a == ln]
    return None if len({o % banks for o in offs}) == len(offs) else offs


def live_lanes(w, trips, last) -> list[bool]:
    """Per lane of a walk with ``lane_masks``: whether it is in bounds at some beat of the block, given per mask the
    block's trips of its tile level (``trips``) and its ``lane_last@a`` (``last``, by axis): with one tile along the
    axis a lane past the last valid one never is; with more, the first tile has every lane. The crossbar's banks
    ignore the others (rtlgen/buffer.py ``write_scattered``)."""
    return [all(t > 1 or cs[ln] < last[a] for t, (_tl, a, _n, cs) in zip(trips, w.lane_masks))
            for ln in range(w.lanes)]


_BANK_CLASH = "two lanes cannot write one bank in one cycle"     # the planner plans around it (buffer_fit)
_DRAIN_DEPTH = "more than the drain buffers' array.max_fifo_depth"     # the planner plans around it too


def _refuse_bank_clash(compiled, w, offs, banks: int, pext, layer: str) -> None:
    """Two lanes of a scattered output walk in one bank with every innermost dimension tried (:func:`_bank_clash`):
    refused, naming the layer (one bank's one write port cannot take both in one cycle)."""
    fg = compiled.fu_graph
    _refuse(f"layers.{layer}", f"the output {fg.output.name}'s {w.lanes} lanes write their own tiles of the skewed "
            f"loop(s) {', '.join(_lane_skewed_loops(fg) or [p.loop for p in drain_skews(fg)])} at buffer positions {offs} from lane 0's (a block box of "
            f"{'x'.join(map(str, pext))} elements), which fall in banks {[o % banks for o in offs]} of its {banks}, with "
            f"each dimension it moves tried innermost: {_BANK_CLASH}; choose bounds or "
            "chunks whose box extents put the lanes in distinct banks (an even extent along the output's innermost "
            "dimension often does), or schedule: compressed", offs)


def _lane_skewed_loops(fg: FUGraph) -> list[str]:
    """The skewed loops outside the tile that the output uses on which the output's lanes of one drained row carry
    different offsets: each lane then writes its own tile of them (``PortWalk.scatter``)."""
    xop = fg.design.operation.output
    lanes = fg.output.lanes
    return [p.loop for p in outer_pads(fg.design, fg.dataflow) if xop.uses(p.loop) and len(lanes) > 1
            and any(len({_drained_offset(fg, p, ln.fus[r]) for ln in lanes}) > 1 for r in range(len(lanes[0].fus)))]


def _drained_offset(fg: FUGraph, pad, coord) -> int:
    """The offset on skewed loop ``pad`` outside the tile of the element the output's drained row of FU ``coord``
    carries: its own offset, or, for an output whose drain groups wait (reduce_skew.py ``drain_groups``), its
    group's largest O_l (the representative row drains the group's element of tile t - O; each FU's offset plus its
    wait is O_l, and an FU that waits nothing has offset O_l)."""
    waits = {s: dict(w) for _rep, members in drain_groups(fg) for s, w in members}
    return pad.offset(coord) + waits.get(tuple(coord), {}).get(pad.loop, 0) + _streamed_wait(fg, pad, coord)


def _streamed_wait(fg: FUGraph, pad, coord) -> int:
    """For an output streamed per step whose FUs' products wait across tiles (reduce_skew.py ``product_waits`` on a
    skewed loop outside the tile): the wait of FU ``coord``, a lane's FU, on ``pad``'s loop, so that its offset plus it
    is the lane's O_l, the tile t - O_l whose element the lane streams (H150); 0 otherwise."""
    if fg.output.role is not Role.STREAM_OUT:
        return 0
    return product_waits(fg).get(tuple(coord), {}).get(pad.loop, 0)


def _drain_lane_aliases(fg: FUGraph) -> tuple[int, ...]:
    """``PortWalk.lane_alias`` of the output: for waited drain groups (reduce_skew.py ``drain_groups``) that span lanes
    of one drained row, per lane the first lane whose FU is in its group in every row (the lanes then carry one
    element at one position: the representative's lane drains the group's sum, the others padding, masked per row by
    ``drain_rows``); () when every lane of a row is in a group of its own (reduce_skew.py ``memory_drain_waits``
    refuses lanes that share a group in some rows only)."""
    groups = drain_groups(fg)
    rep_of = {tuple(s): tuple(rep) for rep, members in groups for s in [rep, *(m for m, _w in members)]}
    lanes = fg.output.lanes
    if not groups or len(lanes) < 2:
        return ()
    keys = [tuple(rep_of.get(tuple(f), tuple(f)) for f in ln.fus) for ln in lanes]
    alias = tuple(keys.index(k) for k in keys)
    return alias if alias != tuple(range(len(lanes))) else ()


def _drain_rows(compiled, x: str, coords, rows: bool) -> tuple[tuple[int, ...], ...]:
    """``PortWalk.drain_rows`` of a walk of operand ``x``: for the output held per FU with waited drain groups
    (reduce_skew.py ``drain_groups``), per lane the drained rows whose FU is a group's representative; the other rows
    drain 0 (padding) at an element of the group's, so their writes would overwrite its drained value and their
    partial-sum reads would add it twice (into their waited tile sum and the representative's). () otherwise."""
    fg = compiled.fu_graph
    groups = drain_groups(fg)
    if x != fg.output.name or not groups or not rows:
        return ()
    reps = {tuple(rep) for rep, _members in groups}
    n = len(fg.output.lanes[0].fus)
    return tuple(tuple(r for r in range(n) if tuple(coords(ln, r)) in reps) for ln in range(len(fg.output.lanes)))


def _tile_masks(compiled, x: str, levels, coords, rows: bool, multi: bool) -> tuple:
    """``PortWalk.tile_masks`` of a walk of operand ``x``: for the output, per skewed loop outside the tile that it
    uses (``outer_pads``), its tile level, each lane's row-0 FU offset and the offset step per drained row (the
    offset is affine in the FU coordinate and the rows lie on one line of the array: one step); () for inputs (their
    out-of-box reads meet masked products only, :func:`_tile_led`) and every other walk."""
    fg = compiled.fu_graph
    if x != fg.output.name:
        return ()
    out = []
    for pad in outer_pads(compiled.design, compiled.dataflow):
        if not compiled.design.operation.output.uses(pad.loop):
            continue
        offs = tuple(_drained_offset(fg, pad, coords(ln, 0)) for ln in range(len(fg.output.lanes)))
        step = (_row_steps(compiled, pad, levels, coords, offs[0]) if multi else
                _drained_offset(fg, pad, coords_of_spec(coords, 0, 1)) - offs[0] if rows else 0)
        out.append((levels.index(f"tile:{pad.loop}"), offs, step))
    return tuple(out)


def _row_steps(compiled, pad, levels, coords, off0: int) -> tuple[tuple[int, int], ...]:
    """A tile mask's offset steps for an output drained over several leading axes of a 3-D array (its ``row@a``
    levels, unravel order, the last axis fastest): per leading axis a, (the ``row@a`` level, the drained offset's step
    per FU along a). The offset is affine in the FU coordinate, so row r's is row 0's plus the sum of the steps times
    its ``row@a`` counters (rtlgen/layer_top.py ``_walk_bounds``)."""
    lead = compiled.design.shape[:-1]
    return tuple((levels.index(f"row@{a}"), _drained_offset(compiled.fu_graph, pad, coords_of_spec(
        coords, 0, math.prod(lead[a + 1:]))) - off0) for a in range(len(lead)))


def _with_rounds(compiled, blocks) -> list:
    """The blocks as their array commands run them: a skewed reduction loop outside the tile (mappings/tiling.py
    ``outer_pads``) runs its chunk + span tiles, so the checks per block see the tiles the array runs."""
    spans = {p.loop: p.span(compiled.design.shape) for p in outer_pads(compiled.design, compiled.dataflow)}
    if not spans:
        return blocks
    return [dataclasses.replace(b, ranges=tuple((d, s, e + spans.get(d, 0)) for d, s, e in b.ranges)) for b in blocks]


def _check_drain_depth(compiled, blocks, layer: str) -> None:
    """The array's drain buffers (reduce_skew.py ``drain_groups``) hold ``array.max_fifo_depth`` tiles per iteration
    of each waited loop l; in a block one iteration is its trips of the loops outside the tile after l (the command
    fields the array latches D from; mappings/tiling.py ``check_drain_waits`` checks the whole problem's). Deeper:
    refused per layer (Amaranth: a 3x1 conv with D = 90 tiles in one block gave wrong outputs, H154)."""
    design, df = compiled.design, compiled.dataflow
    if not drain_groups(compiled.fu_graph):
        return
    outer, axis_of = list(df.outer_dims()), df.spatial_dims
    on = {d: design.shape[a] for a, d in axis_of.items()}
    for blk in blocks:
        trips = {d: -(-(e - s) // on.get(d, 1)) for d, s, e in blk.ranges}
        for pad in drain_skews(compiled.fu_graph):
            per = math.prod(trips[d] for d in outer[outer.index(pad.loop) + 1:])
            if per > design.max_fifo_depth:
                _refuse(f"layers.{layer}", f"a block runs {per} tiles per iteration of the skewed loop {pad.loop} "
                        f"(its trips of the loops after it outside the tile), {_DRAIN_DEPTH} = "
                        f"{design.max_fifo_depth}: choose smaller chunks (layers.{layer}.tile) "
                        "of those loops, or raise array.max_fifo_depth", per)


_WAIT_DEPTH = "more than the product wait buffers' array.max_fifo_depth"     # the planner plans around it too


def _check_wait_depth(compiled, blocks, layer: str) -> None:
    """The array's product wait buffers (reduce_skew.py ``product_waits``) hold ``array.max_fifo_depth`` steps per
    iteration of each waited loop with loops after it; in a block one iteration is the block's trips of the loops
    after it (outside the tile, with a skewed loop's rounds, then the tile's), the command fields the array latches
    ``wait_steps_<l>`` from (rtlgen/array.py ``wait_step_registers``; mappings/tiling.py ``check_output_waits``
    checks the whole problem's, which the memory path does not call: it runs blocks). Deeper: refused per layer."""
    design, df = compiled.design, compiled.dataflow
    loops = sorted({d for w in product_waits(compiled.fu_graph).values() for d in w} - set(df.inner_dims()[-1:]))
    if not loops:
        return
    on = {d: design.shape[a] for a, d in df.spatial_dims.items()}
    for blk in blocks:
        steps = output_wait_steps(design, df, {d: -(-(e - s) // on.get(d, 1)) for d, s, e in blk.ranges})
        for loop in loops:
            if steps[loop] > design.max_fifo_depth:
                _refuse(f"layers.{layer}", f"a block waits {steps[loop]} array steps per iteration of the skewed loop "
                        f"{loop} (its trips of the loops after it), {_WAIT_DEPTH} = {design.max_fifo_depth}: choose "
                        f"smaller chunks (layers.{layer}.tile) of those loops, or raise array.max_fifo_depth",
                        steps[loop])


def check_command(cmd: LayerCommand, fg: FUGraph, layer: str = "layer", design=None) -> None:
    """A command planned for another design or dataflow is refused before anything runs. ``design``: the
    design the array was compiled for (``CompiledArray.design``; the FU graph's own is the hardware-only
    view that compiles are shared under, without DRAM settings)."""
    design = fg.design if design is None else design
    if cmd.dataflow != fg.dataflow:
        raise SpecError([problem(f"layers.{layer}.dataflow", f"the command was planned for dataflow "
                                 f"{cmd.dataflow.name!r}; this design runs {fg.dataflow.name!r}", cmd.dataflow.name)])
    if cmd.design != design:
        raise SpecError([problem(f"layers.{layer}", f"the command was planned for design {cmd.design.name!r}, "
                                 f"not this {design.name!r}")])


def transfer_cycles(nbytes: int, port: DramPort) -> int:
    """The DRAM port's burst timing (``DramPort.transfer_cycles``, the one statement of the rule)."""
    return port.transfer_cycles(nbytes)


@dataclass(frozen=True)
class BlockJobs:
    """What the controller does for one block: bytes loaded per operand, bytes written back, the block."""

    block: Block
    load: tuple[tuple[str, int], ...]     # operand -> bytes (inputs whose block changed; output partial sums)
    write: int                            # output bytes written back after the block (0: it stays resident)

    def load_cycles(self, port: DramPort) -> int:
        return sum(transfer_cycles(b, port) for _, b in self.load)

    def write_cycles(self, port: DramPort) -> int:
        return transfer_cycles(self.write, port)


def layer_jobs(cmd: LayerCommand, out_split: tuple = ()) -> list[BlockJobs]:
    """The job list of a layer command, block by block: the block walker's steps (:func:`block_steps`) and
    residency flags (:func:`reload_flags`) decide what each L(b) moves and whether W(b) writes back.
    ``out_split``: the output's lane-interleaved layout (:func:`output_lane_split`), whose blocks move padded."""
    op = cmd.design.operation
    out = op.output.name

    def ob(blk):
        return block_bytes(cmd, out, blk, out_split)
    nb = cmd.n_blocks()
    reload = reload_flags(cmd)
    out_ix = [i for i, d in enumerate(cmd.order) if op.output.uses(d)]
    seen_out: set = set()
    jobs = []
    for blk, (_cnt, prev, nxt) in zip(cmd.blocks(), block_steps([nb[d] for d in cmd.order])):
        load = [(x.name, cmd.footprint_bytes(x.name, blk)) for x in op.inputs if prev is None or reload[prev][x.name]]
        key = tuple(blk.tiles[i][1] for i in out_ix)
        if (prev is None or reload[prev][out]) and key in seen_out:
            load.append((out, ob(blk)))       # partial sums of an earlier visit
        leaving = nxt is None or bool(reload[nxt][out])
        if leaving:
            seen_out.add(key)
        jobs.append(BlockJobs(blk, tuple(load), ob(blk) if leaving else 0))
    return jobs


def adds_onto_partial_sums(cmd: LayerCommand, jobs: list[BlockJobs]) -> list[bool]:
    """Per block: the array's results add onto partial sums already in the output buffer, because the block
    continues the previous block's output block (a reduction loop split over blocks, the output kept in its
    buffer half) or because its L job loaded the output block's partial sums from DRAM (the block comes back
    after other output blocks: :func:`loads_partial_sums`)."""
    out = cmd.design.operation.output
    ix = [i for i, d in enumerate(cmd.order) if out.uses(d)]
    keys = [tuple(j.block.tiles[i][1] for i in ix) for j in jobs]
    back = loads_partial_sums(cmd, jobs)
    return [(k > 0 and keys[k] == keys[k - 1]) or back[k] for k in range(len(jobs))]


def loads_partial_sums(cmd: LayerCommand, jobs: list[BlockJobs]) -> list[bool]:
    """Per block: its L job loads the output block's partial sums from DRAM (the output block comes back
    after another one: a visit after the first, docs/memory.md "Partial sums through DRAM")."""
    out = cmd.design.operation.output.name
    return [any(x == out for x, _ in j.load) for j in jobs]


def dma_order(n: int, depth: int, after_write=None) -> list[tuple[str, int]]:
    """The DMA's job order: ("L", b) and ("W", b) entries (docs/memory.md). ``after_write[b]``: L(b) loads
    partial sums, so it comes after W(b - depth) instead of before it (the previous visit's write-back of
    its output block is then always ahead of the load in DRAM: it is W(b - depth) or earlier)."""
    after_write = after_write or [False] * n
    order = [("L", b) for b in range(min(depth, n))]
    for b in range(n):
        if b + depth < n and not after_write[b + depth]:
            order.append(("L", b + depth))
        order.append(("W", b))
        if b + depth < n and after_write[b + depth]:
            order.append(("L", b + depth))
    return order


# ------------------------------------------------------------------------------------------------
# model halves (SimPy): events ``loaded[b]``, ``computed[b]``, ``written[b]``

def dma_process(env, order, depth: int, load_cycles, write_cycles, loaded, computed, written, trace=None):
    """DMA (model half): one job at a time in ``order``; L(b) after C(b-depth), W(b) after C(b)."""
    for kind, b in order:
        gate = computed[b - depth] if kind == "L" and b >= depth else (computed[b] if kind == "W" else None)
        if gate is not None:
            yield gate
        t0 = env.now
        # an empty job still takes the sequencer's cycle (the hardware moves one job per cycle at most)
        yield env.timeout(max(1, load_cycles[b] if kind == "L" else write_cycles[b]))
        if trace is not None:
            trace.append((kind, b, t0, env.now))
        (loaded if kind == "L" else written)[b].succeed()


def compute_process(env, depth: int, array_cycles, loaded, computed, written, waits, trace=None):
    """LAYER CONTROLLER (model half): C(b) after L(b), C(b-1) and W(b-depth); ``waits[b]`` gets the
    cycles the array sat idle before C(b) (waiting on the DMA). Returns the cycle C(n-1) ended."""
    for b, cycles in enumerate(array_cycles):
        t0 = env.now
        yield loaded[b]
        if b >= depth:
            yield written[b - depth]
        waits[b] = env.now - t0
        start = env.now
        yield env.timeout(cycles + 1)
        if trace is not None:
            trace.append(("C", b, start, env.now))
        computed[b].succeed()
    return env.now


# ------------------------------------------------------------------------------------------------
# hardware halves (Amaranth: ``hdl`` namespace and a Module from rtlgen)

@dataclass(frozen=True)
class TransferTimerHW:
    busy: object            # a transfer is running (start cycle included)
    issue: object           # a burst request leaves this cycle
    data: object            # a cycle of the last burst's data
    done: object            # the transfer's last cycle (the next transfer may start in the next cycle)


def transfer_timer_hw(m, hdl, port: DramPort, start, nbytes, name: str = "dma", width: int = 32) -> TransferTimerHW:
    """DRAM burst timing (hardware half of ``DramPort.transfer_cycles``): ``start`` for one cycle with
    ``nbytes`` (> 0) begins a transfer whose ``done`` is high in its last cycle, ``transfer_cycles`` - 1
    cycles after ``start``. Bursts issue on group counters (a group of ``outstanding`` bursts ``c`` cycles
    apart, groups ``P`` cycles apart); the tail counts the latency, then the last burst's data ``width``
    bytes a cycle. Comparisons and constant steps only: no division, no multiplication at run time."""
    o, lat = port.outstanding, port.latency
    c = -(-port.burst_bytes // port.width_bytes)
    period = max(o * c, lat + c)
    Signal, Mux = hdl.Signal, hdl.Mux
    issuing = Signal(name=f"{name}_issuing")
    in_tail = Signal(name=f"{name}_tail")
    in_data = Signal(name=f"{name}_data_phase")
    rem = Signal(width, name=f"{name}_bytes_left")
    gcyc = Signal(range(period + 1), name=f"{name}_group_cycle")
    gi = Signal(range(o + 1), name=f"{name}_group_issued")
    nxt = Signal(range(o * c + 1), name=f"{name}_next_issue")
    lat_cnt = Signal(range(lat + 1), name=f"{name}_latency_left")
    data_rem = Signal(width, name=f"{name}_data_left")
    done = Signal(name=f"{name}_done")
    issue = Signal(name=f"{name}_issue")
    data = Signal(name=f"{name}_data")
    # the issue phase as seen this cycle: the start cycle is a group's first cycle with every byte left
    cur_rem = Mux(start, nbytes, rem)
    cur_gcyc = Mux(start, 0, gcyc)
    cur_gi = Mux(start, 0, gi)
    cur_nxt = Mux(start, 0, nxt)
    m.d.comb += issue.eq((start | issuing) & (cur_gi < o) & (cur_gcyc == cur_nxt))
    last = issue & (cur_rem <= port.burst_bytes)

    def data_cycle(left):
        """One data cycle of the last burst with ``left`` bytes still to come."""
        m.d.comb += data.eq(1)
        with m.If(left <= port.width_bytes):
            m.d.comb += done.eq(1)
            m.d.sync += [in_tail.eq(0), in_data.eq(0)]
        with m.Else():
            m.d.sync += [data_rem.eq(left - port.width_bytes), in_tail.eq(1), in_data.eq(1)]

    with m.If(start | issuing):
        m.d.sync += issuing.eq(1)
        with m.If(issue):
            m.d.sync += [rem.eq(cur_rem - port.burst_bytes), nxt.eq(cur_nxt + c)]
        m.d.sync += [gcyc.eq(cur_gcyc + 1), gi.eq(Mux(issue, cur_gi + 1, cur_gi))]
        with m.If(cur_gcyc == period - 1):
            m.d.sync += [gcyc.eq(0), gi.eq(0), nxt.eq(0)]
        with m.If(last):
            m.d.sync += issuing.eq(0)
            if lat == 0:
                data_cycle(cur_rem)
            else:
                m.d.sync += [in_tail.eq(1), lat_cnt.eq(lat - 1), data_rem.eq(cur_rem)]
    with m.Elif(in_tail & ~in_data):
        with m.If(lat_cnt == 0):
            data_cycle(data_rem)
        with m.Else():
            m.d.sync += lat_cnt.eq(lat_cnt - 1)
    with m.Elif(in_data):
        data_cycle(data_rem)
    return TransferTimerHW(start | issuing | in_tail, issue, data, done)


@dataclass(frozen=True)
class SequencerHW:
    start_l: object         # L(l_block) starts this cycle
    start_w: object         # W(w_block) starts this cycle
    start_c: object         # C(c_block) starts this cycle
    l_block: object
    w_block: object
    c_block: object
    finished: object        # every job has ended (level)


def layer_sequencer_hw(m, hdl, depth: int, n_blocks, l_done, w_done, c_done, run, name: str = "layer",
                       width: int = 20, l_after_w=None) -> SequencerHW:
    """LAYER CONTROLLER (hardware half of ``dma_process`` + ``compute_process``): the DMA's job order and
    the gates of docs/memory.md on counters. ``n_blocks`` (registered, >= 1) and ``run`` (level: the
    layer command is running, cleared by the caller); ``*_done`` are the units' done pulses. ``l_after_w``:
    the next load job loads partial sums, so it waits for W(l_block - depth) (``dma_order``'s ``after_write``)."""
    Signal, Mux = hdl.Signal, hdl.Mux
    nl, nw, nc = (Signal(width, name=f"{name}_next_{k}") for k in ("load", "write", "compute"))
    lf, wf, cf = (Signal(width, name=f"{name}_{k}_finished") for k in ("loads", "writes", "computes"))
    dma_busy = Signal(name=f"{name}_dma_busy")
    arr_busy = Signal(name=f"{name}_array_busy")
    start_l, start_w, start_c = (Signal(name=f"{name}_start_{k}") for k in "lwc")
    ahead = (nl <= nw + depth) if l_after_w is None else Mux(l_after_w, nl < nw + depth, nl <= nw + depth)
    pick_l = (nl < n_blocks) & ahead
    pick_w = ~pick_l & (nw < n_blocks)
    m.d.comb += [start_l.eq(run & ~dma_busy & pick_l & (cf + depth > nl)),
                 start_w.eq(run & ~dma_busy & pick_w & (cf > nw)),
                 start_c.eq(run & ~arr_busy & (nc < n_blocks) & (lf > nc) & ((nc < depth) | (wf + depth > nc)))]
    with m.If(start_l):
        m.d.sync += [nl.eq(nl + 1), dma_busy.eq(1)]
    with m.If(start_w):
        m.d.sync += [nw.eq(nw + 1), dma_busy.eq(1)]
    with m.If(start_c):
        m.d.sync += [nc.eq(nc + 1), arr_busy.eq(1)]
    with m.If(l_done | w_done):
        m.d.sync += dma_busy.eq(0)
    with m.If(c_done):
        m.d.sync += arr_busy.eq(0)
    m.d.sync += [lf.eq(lf + l_done), wf.eq(wf + w_done), cf.eq(cf + c_done)]
    with m.If(~run):
        m.d.sync += [x.eq(0) for x in (nl, nw, nc, lf, wf, cf, dma_busy, arr_busy)]
    return SequencerHW(start_l, start_w, start_c, nl, nw, nc, run & (wf == n_blocks) & (cf == n_blocks))


# ------------------------------------------------------------------------------------------------
# the layer program: the command expanded block by block for the generated top (rtlgen/layer_top.py)
#
# Buffer layout (both halves, every operand): a block's box of tensor elements (the footprint of
# docs/memory.md) row-major with the operand's *lane dimension* last, so the lanes of one beat are
# consecutive positions; position p lives in bank ``p mod banks`` at word ``p div banks`` (banks a power
# of two >= the lanes and >= the elements of one DRAM word), so a beat's lanes and a DRAM word's elements
# each hit distinct banks. DRAM holds every distinct block once, in the same order, word aligned, so a
# load moves exactly ``footprint_bytes`` (the model's count). Each array port walks its buffer with
# nested counters and constant per-block strides (``PortWalk``): the affine address generator.

def _pow2_at_least(n: int) -> int:
    return 1 << max(1, (max(1, n) - 1).bit_length())


@dataclass(frozen=True)
class BufferLayout:
    operand: str
    elem_bytes: int
    banks: int                    # power of two
    half_elems: int               # elements per half (a multiple of banks)
    halves: int
    per_word: int                 # elements in one DRAM word
    # a lane-interleaved output (output_lane_split): (tensor dimension, array extent) stored as (tile, lane),
    # the lane parts innermost; a block's box is padded to whole tiles along them
    split: tuple = ()

    @property
    def depth(self) -> int:       # words per bank
        return self.halves * self.half_elems // self.banks


def _loading_tiles(w: PortWalk, trips) -> int:
    """Tiles of one command whose stationary load a keeping walk (``PortWalk.keep_levels``) does not skip: every
    keep level at 0, or (with ``red_levels``) a reduction level not at 0."""
    tiles = trips[:w.skip_level + 1]
    free = [i for i in range(len(tiles)) if i not in w.keep_levels and i not in w.red_levels]
    tied = sorted(set(w.keep_levels) | set(w.red_levels))
    n = 0
    for vals in itertools.product(*[range(tiles[i]) for i in tied]):
        at = dict(zip(tied, vals))
        keeps = any(at[i] for i in w.keep_levels) and not any(at[i] for i in w.red_levels)
        n += not keeps
    return n * math.prod(tiles[i] for i in free)


@dataclass(frozen=True)
class PortWalk:
    """One array port's address generator: its levels (outer to inner) and per-block values."""

    port: str                     # array port name
    operand: str
    kind: str                     # "read" (input / psum) or "write" (output)
    levels: tuple[str, ...]       # "tile:<d>", "red" (the non-first reduction tiles), "inner:<d>", "row"
    lanes: int
    lane_level: int | None        # level whose last iteration may have fewer valid lanes
    row_level: int | None         # tile level whose last iteration may have fewer valid rows
    row_counter: int | None       # the "row" level
    rows: int
    # delay connections (issue 14): the level of the halo loop, whose first ``halo`` iterations are the array's
    # halo steps; the walk holds its position there and masks the beat (reads give 0, writes are dropped).
    # A FIFO chain's root walks through the halo instead (it streams what the FUs behind it use first).
    halo_level: int | None = None
    halo: int = 0
    # a partial-sum walk whose reduction tile loops are split by an output loop in the dataflow's order: it
    # walks every tile (the reduction levels with stride 0) and skips, one tile a cycle, the tiles of a first
    # visit (every reduction level at 0), whose partial sums the array does not read; ``skip_level`` is the
    # innermost tile level, ``red_levels`` the reduction levels
    skip_level: int | None = None
    red_levels: tuple[int, ...] = ()
    # a stationary load whose operand does not depend on the loop along the lanes' axis: every lane of a beat
    # holds the same element, read once (lane 0's position) and fanned out to the lanes
    broadcast: bool = False
    # an input whose lanes step their tensor dimension by ``lane_step`` > 1 (a stride-2 convolution's input with
    # the output position on the lanes): lane l reads position base + lane_step x l, one run of
    # lane_step x lanes positions read at once (the buffer has that many banks) and every lane_step-th kept
    lane_step: int = 1
    # a stationary load over leading axes (3-D arrays): per leading axis a that carries a reduction loop the
    # operand uses, (its tile level, its ``row@a`` level, extent): rows past that loop's bound on its last
    # tile read 0 (they would add stale buffer contents onto in-bound outputs)
    row_masks: tuple[tuple[int, int, int], ...] = ()
    # an input streamed from lanes on several array axes (the lane map, docs/memory.md): lane l's element is
    # lane 0's plus, per array axis, the lane's coordinate there times that axis's index step. Lanes whose
    # elements differ only along the lane dimension (innermost in the buffer) form a *group*: group g reads one
    # run of ``run`` consecutive positions from ``group{g}`` positions past lane 0's (a per-block command field,
    # negative where lanes lead: signed_group_offsets; group 0 at 0), through its own read copy of the buffer,
    # and lane l takes element ``lane_offsets[l]`` of its group's run (lanes on one element read it once).
    # Empty: one run (``lane_step``, ``broadcast``).
    lane_groups: tuple[int, ...] = ()
    lane_offsets: tuple[int, ...] = ()
    run: int = 0
    # per array axis that the lanes span and whose loop the operand uses: (tile level, axis, extent, the lanes'
    # coordinates on it); a lane past that loop's bound on its last tile reads 0 (``<port>_lane_last@<axis>``)
    lane_masks: tuple[tuple[int, int, int, tuple[int, ...]], ...] = ()
    # a stationary load that tiles keep (``ArraySchedule.keep_dims``: an output held per run whose stationary inputs
    # use none of the tile's loops): the walk skips, one tile a cycle, every tile with a keep level not at 0 (and
    # every reduction level, ``red_levels``, at 0 when partial sums are preloaded: those tiles load anyway)
    keep_levels: tuple[int, ...] = ()
    # an output streamed over a padded loop (``output_deskew``): per lane, the beats the layer core delays the
    # partial sum read for it (psum walk) or its result before the write (write walk); empty: no delay
    deskew: tuple[int, ...] = ()
    # the same over several padded loops, or loops after the padded one (``deskew_terms``): per lane, a coefficient
    # per level; lane l is delayed by sum_j c_j x the trips of the levels after j (set per block); empty: none
    deskew_terms: tuple[tuple[int, ...], ...] = ()
    # further (level, h) pairs held like ``halo_level``/``halo`` (the write walk of an output de-skewed over several
    # padded loops: every padded level holds and masks its first span positions)
    holds: tuple[tuple[int, int], ...] = ()
    # an output walk over a skewed loop outside the tile that the output uses (mappings/tiling.py ``outer_pads``):
    # per such loop, (its tile level, the offset of each lane's row-0 FU, the offset step per row: on a 3-D array
    # drained over several leading axes, ((its ``row@a`` level, step), ...) per axis, :func:`_row_steps`). At tile counter t
    # lane l of row r carries its FU's tile t - offset, so it is in the block only for 0 <= t - offset < the block's
    # tiles of the loop (``<port>_tile_len@<level>``); outside them the write is dropped (its position would alias
    # another element of the box) and the partial-sum read gives 0
    tile_masks: tuple[tuple[int, tuple[int, ...], int | tuple[tuple[int, int], ...]], ...] = ()
    # an output walk whose lanes carry different offsets on such a loop (a skew along the lanes): lane l's position
    # is the lane map's (``lane_groups``: its group's ``group{g}`` field + its offset), each lane in a bank of its
    # own (:func:`_bank_clash`), so every lane writes (and reads its partial sum) through one port per
    # bank in one cycle, in one copy, the bank crossbar choosing the lane per bank (rtlgen/buffer.py)
    scatter: bool = False
    # an output held per FU whose drain groups wait (dataflow/reduce_skew.py ``drain_groups``): per lane, the drained
    # rows that carry a group's element (its representative's); the other rows are padding, their writes dropped and
    # their partial-sum reads 0 (:func:`_drain_rows`); empty: every row
    drain_rows: tuple[tuple[int, ...], ...] = ()
    # such an output whose drain groups span lanes of one drained row (:func:`_drain_lane_aliases`): per lane, the first
    # lane of its group (in every row; those lanes carry one element, at one position); a scattered walk whose aliased
    # lanes count as one in the banks (:func:`_bank_clash`) and whose write crossbar takes enabled lanes only, so the
    # representative's lane alone writes the element; empty: every lane its own
    lane_alias: tuple[int, ...] = ()
    # such an output drained over several leading axes of a 3-D array (its ``row@a`` levels) with ``drain_rows``: the
    # leading axes' extents, which number its drained rows (unravel order, the last axis fastest); empty otherwise
    row_extents: tuple[int, ...] = ()

    @property
    def groups(self) -> int:
        """Lane-map groups (their ``group{g}`` fields)."""
        return max(self.lane_groups, default=0) + 1

    @property
    def copies(self) -> int:
        """Runs read per beat (buffer read copies this port needs): one per group, one for a scattered walk."""
        return 1 if self.scatter else self.groups


@dataclass(frozen=True)
class LayerProgram:
    compiled: object
    cmd: LayerCommand
    depth: int
    word_bytes: int
    layouts: dict                 # operand -> BufferLayout
    walks: tuple                  # PortWalk per array stream port
    rows: tuple                   # per block: dict field -> int (what the controller derives; ``walk_rows``)
    dram_words: int
    regions: dict                 # (operand, block key) -> (word address, box lo, box ext (permuted), perm)
    jobs: tuple
    command: "WalkerCommand"      # what the controller receives (its block walker expands it to ``rows``)

    def dram_image(self, tensors: dict) -> list[int]:
        """The DRAM's initial words: every input block, tile-major (the host's bulk preload)."""
        words = [0] * self.dram_words
        for (x, _key), (addr, lo, ext, perm) in self.regions.items():
            if x not in tensors:
                continue
            lay = self.layouts[x]
            assert not lay.split, "a lane-interleaved output is written by the layer, not preloaded"
            box = _box_values(tensors[x], lo, ext, perm)
            _pack(words, addr, box, lay.elem_bytes, lay.per_word, self.word_bytes)
        return words

    def read_output(self, words: list[int], shape: tuple[int, ...], signed: bool = True):
        """The output tensor assembled from the DRAM's words after the layer (the host's bulk read)."""
        import numpy as np
        out_name = self.cmd.design.operation.output.name
        lay = self.layouts[out_name]
        result = np.zeros(shape, dtype=np.int64)
        bits = 8 * lay.elem_bytes
        for (x, _key), (addr, lo, ext, perm) in self.regions.items():
            if x != out_name:
                continue
            n = math.prod(ext)
            flat = []
            for i in range(n):
                w, s = divmod(i, lay.per_word)
                v = (words[addr + w] >> (s * bits)) & ((1 << bits) - 1)
                flat.append(v - (1 << bits) if signed and v >> (bits - 1) else v)
            arr = np.array(flat, dtype=np.int64).reshape(ext)
            if lay.split:                 # each split dimension's (tile, lane) axes back into one, padded
                n_ax = len(perm)
                at = {k: n_ax + j for j, (k, _e) in enumerate(lay.split)}
                order = [a for i in range(n_ax) for a in ((i, at[perm[i]]) if perm[i] in at else (i,))]
                arr = arr.transpose(order).reshape([arr.shape[i] * (dict(lay.split).get(perm[i], 1))
                                                    for i in range(n_ax)])
            arr = arr.transpose([perm.index(k) for k in range(len(perm))])
            arr = arr[tuple(slice(0, min(arr.shape[k], shape[k] - lo[k])) for k in range(len(lo)))]   # padding
            result[tuple(slice(a, a + e) for a, e in zip(lo, arr.shape))] = arr
        return result


def _box_values(tensor, lo, ext, perm) -> list[int]:
    """The box's elements in its buffer order (axes ``perm``, extents ``ext`` in that order, lower corner ``lo``
    in tensor order); positions outside the tensor (zero padding: a box reaching below index 0 or past the
    tensor's end, :func:`~archgen.mappings.memory_tiling.bounding_box`) are zeros."""
    import numpy as np
    shape = [ext[perm.index(k)] for k in range(len(lo))]
    out = np.zeros(shape, dtype=np.int64)
    src = tuple(slice(max(a, 0), min(a + e, n)) for a, e, n in zip(lo, shape, tensor.shape))
    dst = tuple(slice(s.start - a, s.stop - a) for s, a in zip(src, lo))
    if all(s.stop > s.start for s in src):
        out[dst] = tensor[src]
    return [int(v) for v in out.transpose(perm).reshape(-1)]


def _pack(words: list[int], addr: int, values: list[int], eb: int, per_word: int, word_bytes: int) -> None:
    bits = 8 * eb
    mask = (1 << bits) - 1
    for i, v in enumerate(values):
        w, s = divmod(i, per_word)
        words[addr + w] |= (int(v) & mask) << (s * bits)


def _refuse(field: str, msg: str, value=None):
    raise SpecError([problem(field, msg, value) if value is not None else problem(field, msg)])


def chained_inputs(compiled) -> frozenset:
    """Inputs whose lane roots' walks stream elements outside a block's box, so their buffers keep a margin around
    the box (``ld_off_X``): those fed through delay connections (FIFO chains, issue 14), and under the map's own
    schedule (``schedule: map``) every streamed input that uses a padded loop (its lanes start ``h_l + sigma_l.s``
    positions early: :func:`lane_lead`) and every input that uses a skewed reduction loop outside the tile
    (:func:`_tile_led`)."""
    from archgen.dataflow.ir import Role
    fg = compiled.fu_graph
    pads = row_pads(fg.design, fg.dataflow)
    led = (p.name for p in fg.inputs if p.role is Role.STREAM
           and any(fg.design.operation.operand(p.name).uses(pad.loop) for pad in pads))
    return frozenset(e.operand for _u, _v, e in fg.fifos()) | frozenset(led) | _tile_led(compiled)


def _tile_led(compiled) -> frozenset:
    """Inputs, streamed or stationary, that use a skewed reduction loop outside the tile (mappings/tiling.py
    ``outer_pads``): in tile t each lane (and each row of a stationary load) reads the element of its FU's tile
    t - offset(s) of the loop (:func:`lane_lead`), up to the span tiles before the block's box. Those elements are
    never used (the FU's products are masked outside its own tiles), so like a FIFO chain root's they need only a
    margin in front of the box, no load."""
    fg = compiled.fu_graph
    loops = [p.loop for p in outer_pads(fg.design, fg.dataflow)]
    return frozenset(p.name for p in fg.inputs if any(fg.design.operation.operand(p.name).uses(d) for d in loops))


def lane_lead(compiled, operand: str, coord) -> dict[str, int]:
    """The inner-loop values a stream lane whose root is FU ``coord`` starts at, as walk levels (``inner:<d>`` ->
    value): a FIFO chain's root ``-halo`` on the halo loop (it streams what the FUs behind it use first); under the
    map's own schedule ``-(h_l + sigma_l.s)`` of its root on each padded loop l it uses (FU s runs iteration
    pos - h_l - sigma_l.s at row position pos, mappings/tiling.py ``RowPad``); and on each skewed reduction loop
    outside the tile that the operand uses, ``-offset(s)`` of the FU on its tile walk (``tile:<d>``: in tile t FU s
    runs tile t - offset(s), ``outer_pads``, for streamed lanes and stationary rows alike); {} for every other lane."""
    fg = compiled.fu_graph
    xop = fg.design.operation.operand(operand)
    off = (lambda pad: _drained_offset(fg, pad, coord)) if operand == fg.output.name else (lambda pad: pad.offset(coord))
    tiles = {f"tile:{pad.loop}": -off(pad) for pad in outer_pads(fg.design, fg.dataflow) if xop.uses(pad.loop)}
    if operand not in chained_inputs(compiled) or not fg.halo:
        return tiles
    pads = row_pads(fg.design, fg.dataflow)
    if not pads:
        loop, halo = fg.halo[0]
        return {f"inner:{loop}": -halo} | tiles
    return {f"inner:{pad.loop}": -pad.offset(coord) for pad in pads if xop.uses(pad.loop)} | tiles


def signed_group_offsets(compiled, operand: str) -> bool:
    """Whether the lane-map group offsets (``{port}_group{g}``) of ``operand``'s ports may be negative, so their
    command fields are signed (design-level: the descriptor's widths never depend on a layer). Under the map's own
    schedule each lane starts at its root's lead (:func:`lane_lead`), which differs from lane to lane on every
    padded loop, so a group's run can start below lane 0's; an index with a negative coefficient (I[p - r]) steps
    the lanes of one group below another's. Otherwise every group lies at or past lane 0's run."""
    fg = compiled.fu_graph
    op = compiled.design.operation
    xop = op.operand(operand)
    pads = row_pads(fg.design, fg.dataflow) + outer_pads(fg.design, fg.dataflow)
    led = operand in chained_inputs(compiled) and any(xop.uses(p.loop) for p in pads)
    return led or bool((xop.access_matrix(op.dims) < 0).any()) or _output_tile_led(compiled, operand)


def _lead_text(compiled, operand: str) -> str:
    """What walks in front of ``operand``'s box, for the fit refusal: a FIFO chain root, or lanes on their FU's tiles of
    a skewed loop outside the tile (:func:`_tile_led`)."""
    if operand in _tile_led(compiled):
        return "its lanes read their FUs' tiles of a skewed loop outside the tile, starting up to"
    return "its FIFO chain root's walk starts"


def walks_down(compiled, operand: str) -> bool:
    """Whether a walk of ``operand`` may step its buffer downwards, so its stride fields are signed (design-level): an
    index with a negative coefficient (a true convolution's I[p - r]) along that loop, or a lead on a skewed reduction
    loop's tile walk (:func:`_tile_led`) that grows from row to row of a stationary load faster than the row's own
    step (offset(s) tiles of the loop back per row)."""
    op = compiled.design.operation
    return (bool((op.operand(operand).access_matrix(op.dims) < 0).any()) or operand in _tile_led(compiled)
            or _output_tile_led(compiled, operand))


def _output_lead_bits(compiled, operand: str) -> int:
    """The bits a tile-led output's walk bases need below the box (:func:`_output_tile_led`): a drained row starts up
    to sum_l span_l tiles of its loops before it, each tile at most a buffer half, so the signed base reaches
    -S x half with S = sum_l span_l (one bit covers S <= 2, as with one loop; two loops' group leads reach further:
    a -36 base did not fit 6 bits on a two-loop conv, H154). 0 for any other operand."""
    if not _output_tile_led(compiled, operand):
        return 0
    fg = compiled.fu_graph
    span = sum(p.span(fg.design.shape) for p in outer_pads(fg.design, fg.dataflow)
               if compiled.design.operation.output.uses(p.loop))
    return max(1, (span - 1).bit_length())


def _output_tile_led(compiled, operand: str) -> bool:
    """Whether ``operand`` is the output and uses a skewed loop outside the tile (``outer_pads``): its walks start each
    drained row at its FU's tile t - offset, up to span tiles before the box (the output keeps no margin), so their
    base may be negative and their row stride may step down (signed fields; the masked tiles' positions are never
    written, :func:`_tile_masks`)."""
    fg = compiled.fu_graph
    return operand == fg.output.name and any(compiled.design.operation.output.uses(p.loop)
                                             for p in outer_pads(fg.design, fg.dataflow))


def _unravel(r: int, dims) -> tuple[int, ...]:
    """Row-major coordinates of flat index ``r`` over ``dims`` (the last fastest)."""
    out = []
    for n in reversed(dims):
        out.append(r % n)
        r //= n
    return tuple(reversed(out))


def _lane_axes(coords, lanes: int, rank: int) -> tuple[int, ...]:
    """The array axes along which a port's lanes (FU ``coords(l, 0)``) lie."""
    return tuple(a for a in range(rank) if len({coords(ln, 0)[a] for ln in range(lanes)}) > 1)


def coords_of_spec(coords, l: int, r: int) -> tuple[int, ...]:
    """A port spec's FU coordinate of lane ``l``, row ``r`` (a row past the last gives the last row's)."""
    try:
        return tuple(coords(l, r))
    except IndexError:
        return tuple(coords(l, 0))


def _check_psum_lanes(compiled) -> None:
    """The array reads partial sums on memory lanes its partial-sum port does not have (seen on reductions over
    two array axes, e.g. c and r of a convolution on 2x2x2; rtlgen/array.py cannot elaborate them, with or without
    the memory system): refused by name here rather than failing inside the array's build."""
    from archgen.dataflow.ir import NodeKind
    timing, port = getattr(compiled, "timing", None), compiled.psum_port
    if timing is None or port is None:
        return
    y = compiled.fu_graph.output.name
    read = [v.lane for v in timing.prim.graph.nodes
            if v.kind is NodeKind.MEM_PORT and v.operand == y and v in timing.lane_offset]
    if read and max(read) >= port.lanes:
        _refuse(f"dataflows.{compiled.dataflow.name}", f"the array reads partial sums of {y} on {max(read) + 1} memory "
                f"lanes but its port {port.name} has {port.lanes}; the generator cannot build this reduction over "
                "several array axes (choose another control vector or loop-to-axis assignment)")


def lane_map(indices, lane_dim: int) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """The lane map of a port whose lanes read tensor elements ``indices`` (per lane, lane 0 first): lanes whose
    indices differ only along ``lane_dim`` (the buffer's innermost dimension) share a group, numbered in order
    of their first lane; returns (group per lane, offset of each lane in its group's run, run length). Lane 0
    need not be first in its run (lanes that step the index by -1: the walk's base is then its run's start)."""
    keys: dict = {}
    group, low, high = [], {}, {}
    for idx in indices:
        d = tuple(a - b for a, b in zip(idx, indices[0]))
        g = keys.setdefault(d[:lane_dim] + d[lane_dim + 1:], len(keys))
        group.append(g)
        low[g] = min(low.get(g, d[lane_dim]), d[lane_dim])
        high[g] = max(high.get(g, d[lane_dim]), d[lane_dim])
    offsets = tuple(idx[lane_dim] - indices[0][lane_dim] - low[g] for idx, g in zip(indices, group))
    return tuple(group), offsets, max(high[g] - low[g] + 1 for g in low)


def output_lane_split(compiled):
    """The lane-interleaved layout of a streamed output whose lanes span several array axes (docs/memory.md
    "Outputs whose lanes span several array axes"), or None. Each lane axis a steps one tensor dimension k_a of
    the output by 1 per FU, k_a being the loop on a itself; the dimension lane 0 -> lane 1 steps stays whole
    (the *lane dimension*, innermost), every other k_a is stored split as (k_a div E_a, k_a mod E_a), E_a the
    axis's extent, with the ``mod`` parts innermost of all. A block starts at whole array tiles along k_a, so
    lane l's element is lane 0's position plus a constant offset, and the lanes' positions are one run of
    consecutive positions: one port per bank writes (and reads) them all in one cycle, in the one buffer,
    without read copies, stalls or a change of timing. Returns (lane dimension, ((k_a, E_a), ...), offset of
    each lane in the run)."""
    from archgen.dataflow.ir import Role
    fg = getattr(compiled, "fu_graph", None)
    if fg is None or fg.output.role is Role.ACCUMULATE or len(fg.output.lanes) < 2 or _lane_skewed_loops(fg):
        return None           # (lanes writing their own tiles of a skewed loop: scattered, PortWalk.scatter)
    shape, axis_of = compiled.design.shape, compiled.dataflow.axis_of
    xop = compiled.design.operation.operand(fg.output.name)
    coords = [tuple(ln.fus[-1]) for ln in fg.output.lanes]
    axes = [a for a in range(len(shape)) if len({c[a] for c in coords}) > 1]
    if len(axes) < 2 or any(coords[0][a] != min(c[a] for c in coords) for a in axes):
        return None
    dim_of = {}                       # lane axis -> the output dimension it steps (by 1, being that loop itself)
    for a in axes:
        ks = [k for k, e in enumerate(xop.indices) if any(axis_of.get(d) == a for d in e.coeffs)]
        if len(ks) != 1 or len(xop.indices[ks[0]].coeffs) != 1 or set(xop.indices[ks[0]].coeffs.values()) != {1}:
            return None
        dim_of[a] = ks[0]
    step = [a for a in axes if coords[1][a] != coords[0][a]]
    if len(step) != 1 or len(set(dim_of.values())) != len(axes):
        return None
    lane_axis = step[0]
    split = tuple((dim_of[a], shape[a]) for a in axes if a != lane_axis)
    groups = math.prod(e for _k, e in split)
    offsets = []
    for c in coords:
        off = c[lane_axis] - coords[0][lane_axis]
        for a in axes:
            if a != lane_axis:
                off = off * shape[a] + c[a] - coords[0][a]
        offsets.append(off)
    run = groups * (1 + max(c[lane_axis] for c in coords) - coords[0][lane_axis])
    if run != len(coords) or sorted(offsets) != list(range(run)):      # every lane of the run, once
        return None
    return dim_of[lane_axis], split, tuple(offsets)


def block_bytes(cmd: LayerCommand, x: str, blk: Block, split: tuple = ()) -> int:
    """Bytes of operand ``x``'s block in the buffer and in DRAM: its footprint (the box, docs/memory.md), with the
    dimensions of ``split`` (a lane-interleaved output, :func:`output_lane_split`) padded to whole array tiles."""
    if not split:
        return cmd.footprint_bytes(x, blk)
    sp = dict(split)
    ranges = {d: (s, e) for d, s, e in blk.ranges}
    ext = [b - a + 1 for a, b in bounding_box(cmd.design, x, ranges, cmd.bound)]
    return math.prod(-(-e // sp[k]) * sp[k] if k in sp else e for k, e in enumerate(ext)) * element_bytes(cmd.design, x)


def layer_dram_bytes(compiled, cmd: LayerCommand) -> dict[str, int]:
    """The closed form of DRAM bytes (``memory_tiling.dram_bytes``) for the generated memory system: a
    lane-interleaved output (:func:`output_lane_split`) moves its blocks padded to whole array tiles along the
    split dimensions, so its bytes are the visits times the padded bytes of its distinct blocks (enumerated
    here by their tile indices, not from the job list)."""
    from archgen.mappings.memory_tiling import dram_bytes
    out = dram_bytes(cmd)
    osplit = output_lane_split(compiled)
    if osplit is None:
        return out
    y = cmd.design.operation.output
    ix = [i for i, d in enumerate(cmd.order) if y.uses(d)]
    distinct = {tuple(blk.tiles[i][1] for i in ix): blk for blk in cmd.blocks()}
    plain = sum(cmd.footprint_bytes(y.name, b) for b in distinct.values())
    padded = sum(block_bytes(cmd, y.name, b, osplit[1]) for b in distinct.values())
    for key in (f"{y.name}.write", f"{y.name}.read"):
        if key in out:
            out[key] = out[key] // plain * padded
    return out


def layer_program(compiled, cmd: LayerCommand, layer: str = "layer", *, spec_size: bool = True,
                  fit_only: bool = False, out_dim: int | None = None,
                  core_banks: dict | None = None) -> LayerProgram | dict:
    """The command for the generated top: buffer layouts, DRAM layout, the per-block rows (what L, C and W
    do, expanded directly from :func:`layer_jobs`, the model's job list) and the ``WalkerCommand`` the
    controller receives, whose walk (:func:`walk_rows`) gives the same rows.

    ``spec_size``: each buffer half holds ``memory.<X>.bytes / halves`` (what synthesis builds); False
    sizes the halves to this command's largest block (after the same fit check), which keeps a
    simulation build small; the timing does not depend on it. ``fit_only``: stop after the buffer layouts, whose
    refusals (``memory.<X>.bytes``, the margins included) are all it checks, and return them (operand ->
    ``BufferLayout``; :func:`buffer_fit`, :func:`buffer_rooms`: the DRAM layout and the per-block rows, most of the
    cost, are skipped). ``out_dim``: the output's innermost buffer dimension, for an output whose lanes write their
    own tiles of a skewed loop (``PortWalk.scatter``): tried in turn until the lanes fall in distinct banks.
    ``core_banks``: operand -> the banks of a core built for several dataflows (rtlgen/fused_layer.py: the most any
    of them needs), at least this dataflow's own; its halves are then rounded to those banks, so every dataflow of
    the core plans, loads and addresses the same positions (None: this dataflow's own banks)."""
    from archgen.dataflow.ir import PortRole, Role, port_name as port_name_of
    if hasattr(compiled, "network"):        # a skewed stt map: its memory system is dataflow/stt_layer.py
        raise SpecError([problem(f"dataflows.{compiled.dataflow.name}.stt", "the tiled layer core cannot run a skewed "
                                 "stt map; its memory system is the stt layer top (docs/memory.md, skewed stt maps), "
                                 "built per layer: archgen build --memory, archgen verify or archgen sim",
                                 [list(r) for r in compiled.dataflow.stt])])
    check_command(cmd, compiled.fu_graph, layer, compiled.design)
    check_memory_system(compiled.fu_graph, compiled.design)
    check_partial_sums(cmd, layer)
    _check_psum_lanes(compiled)
    design, df, fg = compiled.design, compiled.dataflow, compiled.fu_graph
    osplit = output_lane_split(compiled)          # a lane-interleaved output (its lanes on several array axes)
    split_of = {fg.output.name: osplit[1]} if osplit else {}
    mem = design.memory_system
    port = mem.dram
    op = design.operation
    W = port.width_bytes
    if port.latency < 1:
        _refuse("memory.dram.latency", "the generated DRAM port needs a latency of at least 1 cycle", port.latency)
    if port.burst_bytes % W:
        _refuse("memory.dram.burst_bytes", f"must be a multiple of memory.dram.width_bytes ({W}) in the generated top",
                port.burst_bytes)
    depth = 2 if all(b.double_buffer for b in mem.buffers) else 1
    jobs = layer_jobs(cmd, split_of.get(fg.output.name, ()))
    blocks = [j.block for j in jobs]
    bound = cmd.bound
    outer = tuple(df.outer_dims())
    inner = tuple(df.inner_dims())
    red = tuple(d for d in outer if not op.output.uses(d))
    at = [outer.index(d) for d in red]
    # the partial-sum port reads the output for every tile but the first visits (all reduction counters 0):
    # one counter level ("red") when the reduction loops are adjacent; split by an output loop, the tiles it
    # reads are not one nested walk, so its walk steps through every tile and skips the first visits
    red_split = bool(red) and at != list(range(at[0], at[0] + len(red)))
    axis_of = df.axis_of
    shape = design.shape
    out = fg.output
    # delay connections: every row of the halo loop starts with ``halo`` steps (mappings/tiling.py delay_halo)
    halo_loop, halo = fg.halo[0] if fg.halo else (None, 0)
    halos = dict(fg.halo)         # several loops under the map's own schedule (each padded by its span)
    chained = chained_inputs(compiled)
    pads = row_pads(design, df)
    deskew, opads = output_deskew(fg), output_pads(fg)
    _check_deskewed_output(compiled, _with_rounds(compiled, blocks), layer)
    _check_drain_depth(compiled, _with_rounds(compiled, blocks), layer)
    _check_wait_depth(compiled, _with_rounds(compiled, blocks), layer)
    for blk in blocks:                # the FIFO buffers hold one halo-loop iteration of each block's chunk
        ext = {d: e - s for d, s, e in blk.ranges}
        check_fifo_depth(design, df, {d: ext[d] for d in fg.fifo_depth_loops}, f"blocks of layer {layer}")

    # per port: how lane l and row r map to FU coordinates
    port_specs = []      # (port name, operand, kind, coords(l, r) -> FU coord, has_rows, steps?)
    lead_axes = shape[:-1]          # a stationary load's beat r: FU (unravel(r, shape[:-1]), lane) (dataflow/host.py)
    for p in fg.inputs:
        pn = port_name_of(PortRole.INPUT, p.name)
        if p.role is Role.STATIONARY:
            port_specs.append((pn, p.name, "read", (lambda l, r: (r, l)) if len(shape) == 2 else
                               (lambda l, r: (*_unravel(r, lead_axes), l)), True))
        else:
            roots = [ln.fus[0] for ln in p.lanes]
            port_specs.append((pn, p.name, "read", (lambda rs: lambda l, r: rs[l])(roots), False))
    # an accumulated output drains (and preloads) row r of lane l at the lane's r-th FU: on a 2-D array with
    # an output per FU that is FU (r, l); with a reduction across the rows (c on axis 0 summed by a tree into
    # row 0's accumulators) a lane has fewer FUs than the array has rows, and only those drain
    drained = len(out.lanes[0].fus) if out.lanes else 0
    if out.role is Role.ACCUMULATE:
        per_fu = len(shape) == 2 and all(tuple(ln.fus) == tuple((r, l) for r in range(shape[0]))
                                         for l, ln in enumerate(out.lanes))
        out_coords, out_rows = ((lambda l, r: (r, l)) if per_fu else
                                (lambda ln: lambda l, r: ln[l].fus[r])(out.lanes)), True
    else:
        terms = [ln.fus[-1] for ln in out.lanes]
        out_coords, out_rows = (lambda ts: lambda l, r: ts[l])(terms), False
    # an accumulated output drained from FUs over every leading axis of a 3-D array (lane l's FUs in the
    # stationary loads' order, unravel(r, shape[:-1])): one row level per leading axis, as those loads walk, and
    # rows past an output loop's bound masked per axis (one "row" level has one stride: one line of FUs only)
    out_multi = (out.role is Role.ACCUMULATE and len(shape) > 2 and drained > shape[0] and
                 all(tuple(f[:-1] for f in ln.fus) == tuple(_unravel(r, lead_axes) for r in range(math.prod(lead_axes)))
                     for ln in out.lanes))
    if compiled.psum_port is not None:
        port_specs.append((compiled.psum_port.name, out.name, "psum", out_coords, out_rows))
    port_specs.append((compiled.output_port.name, out.name, "write", out_coords, out_rows))
    lanes_of = {p.name: p.lanes for p in compiled.stream_ports}

    def xvec(blk, start, vals, coord):
        """Loop values at tile counters / inner counters ``vals`` and FU coordinate ``coord``."""
        x = {}
        for d in op.dims:
            if d in axis_of:
                a = axis_of[d]
                x[d] = shape[a] * (start[d] + vals.get(f"tile:{d}", 0)) + coord[a]
            elif d in inner:
                x[d] = start.get(d, 0) + vals.get(f"inner:{d}", 0)      # a split inner loop starts at its chunk
            else:
                x[d] = start[d] + vals.get(f"tile:{d}", 0)
        return x

    def index(x_op, x):
        return tuple(e.const + sum(c * x[d] for d, c in e.coeffs.items()) for e in x_op.indices)

    # lane dimension of every operand (the tensor dimension the lanes step through, by +1)
    lane_dim: dict[str, int] = {}
    broadcast: set[str] = set()     # stationary ports whose lanes all hold one element (see PortWalk.broadcast)
    lane_step: dict[str, int] = {}  # input ports whose lanes step their dimension by more than 1 (PortWalk.lane_step)
    lane_groups: dict[str, tuple] = {}   # input ports read through a lane map (PortWalk.lane_groups): lane_map()
    scatter: set[str] = set()       # output ports whose lane map puts each lane in its own bank (PortWalk.scatter)
    skew_dims: list[int] = []       # their candidates for the output's innermost dimension (``out_dim``)
    first = blocks[0]
    start0 = {d: b * dict(cmd.tile)[d] for d, b in first.tiles}

    def lane_index(x, coords, ln):
        """Lane ``ln``'s element at the block's first step (its lead included: :func:`lane_lead`)."""
        c = coords(ln, 0)
        return index(op.operand(x), xvec(first, start0, lane_lead(compiled, x, c), c))
    for pn, x, kind, coords, rows in port_specs:
        xop = op.operand(x)
        if lanes_of[pn] < 2:
            lane_dim.setdefault(x, len(xop.indices) - 1)
            continue
        i0 = lane_index(x, coords, 0)
        i1 = lane_index(x, coords, 1)
        diff = [k for k in range(len(i0)) if i0[k] != i1[k]]
        step = i1[diff[0]] - i0[diff[0]] if len(diff) == 1 else None
        # every lane on the line lane 0 -> lane 1 (lane l at i0 + l x (i1 - i0)) for the cases built below
        linear = all(lane_index(x, coords, ln) == tuple(a + ln * (b - a) for a, b in zip(i0, i1))
                     for ln in range(lanes_of[pn]))
        if not diff and kind == "read" and rows and x != out.name and linear:
            broadcast.add(pn)
            continue
        # the array axes the lanes lie along: on several, one lane_last (a bound on the lane index) cannot mask
        # them even when their elements are consecutive (I[c, 2p+r] with p and r on two axes of 2): the lane map
        span = len(_lane_axes(coords, lanes_of[pn], len(shape)))
        if (step is not None and step > 1 and kind == "read" and x != out.name and linear and span < 2
                and lane_dim.get(x, diff[0]) == diff[0]):
            lane_step[pn] = step
            lane_dim[x] = diff[0]
            continue
        if x == out.name and osplit is not None and span > 1 and len(osplit[2]) == lanes_of[pn]:
            # an output's lanes on several array axes: one run in the lane-interleaved layout (output_lane_split)
            lane_groups[pn] = ((0,) * lanes_of[pn], osplit[2], lanes_of[pn])
            lane_dim[x] = osplit[0]
            continue
        skew_out = x == out.name and (lane_skewed_output(compiled) or bool(_drain_lane_aliases(fg)))
        if skew_out or kind == "read" and x != out.name and (
                span > 1 or len(diff) != 1 or step != 1 or lane_dim.get(x, diff[0]) != diff[0] or not linear):
            # lanes on several array axes (or stepping by more than 1 off one line): the lane map
            each = [lane_index(x, coords, ln) for ln in range(lanes_of[pn])]
            moved = [k for k in range(len(i0)) if any(ix[k] != i0[k] for ix in each)] or [len(i0) - 1]
            ld = lane_dim.get(x, diff[-1] if diff else moved[-1])
            if skew_out:              # the output's innermost dimension: the default, or the one tried after it
                if not skew_dims:     # (the first output port's lanes; the other's are the same)
                    skew_dims += [ld] + [k for k in moved if k != ld]
                ld = skew_dims[0] if out_dim is None else out_dim
            try:
                lane_groups[pn] = lane_map(each, ld)
            except ValueError as e:
                _refuse(f"dataflows.{df.name}", f"port {pn}: its lanes do not step one tensor dimension of {x} by 1 "
                        f"({e}); the generated buffers cannot bank it")
            lane_dim[x] = ld
            if skew_out:              # the output's lanes on a diagonal of the box: one bank each (PortWalk.scatter)
                scatter.add(pn)
            continue
        if len(diff) != 1 or step != 1 or lane_dim.get(x, diff[0]) != diff[0] or not linear:
            # (not linear: the lanes span several array axes, e.g. I[c, p+r] with c and p both on the array and
            # streamed from 4 lanes on 2x2; lane l is then not at lane 0's position + l, which the buffers assume)
            why = (f"lane 0 -> lane 1 steps {x}'s index by {tuple(b - a for a, b in zip(i0, i1))}" if step != 1 or
                   len(diff) != 1 else f"another port of {x} steps its dimension {lane_dim[x]}"
                   if lane_dim.get(x, diff[0]) != diff[0] else
                   f"its {lanes_of[pn]} lanes span several array axes, so lane l is not lane 0's element + l")
            _refuse(f"dataflows.{df.name}", f"port {pn}: its lanes do not step one tensor dimension of {x} by 1 "
                    f"({why}); the generated buffers cannot bank it")
        lane_dim[x] = diff[0]
    for x in op.operands:             # an operand read only by broadcast lanes: its last dimension innermost
        lane_dim.setdefault(x.name, len(x.indices) - 1)

    def box(x, blk):
        # an input's box may reach below 0 (a true convolution's I[p - r]): zero padding, packed as zeros by the host
        # (_box_values); an output index is a plain loop index (the operation parser), never below 0
        ranges = {d: (s, e) for d, s, e in blk.ranges}
        extent = bounding_box(design, x, ranges, bound)
        lo = [a for a, _ in extent]
        ext = [b - a + 1 for a, b in extent]
        ld = lane_dim[x]
        perm = [k for k in range(len(lo)) if k != ld] + [ld]
        sp = split_of.get(x, ())          # a split dimension: its tiles in the box's order, its lanes innermost
        return (tuple(lo), tuple(-(-ext[k] // dict(sp)[k]) if k in dict(sp) else ext[k] for k in perm)
                + tuple(e for _k, e in sp), tuple(perm))

    def pos_fn(x, lo, pext, perm):
        sp = split_of.get(x, ())
        spd = dict(sp)
        pitch = [math.prod(pext[i + 1:]) for i in range(len(pext))]

        def f(idx):
            rel = [idx[k] - lo[k] for k in range(len(lo))]
            v = [rel[k] // spd[k] if k in spd else rel[k] for k in perm] + [rel[k] % e for k, e in sp]
            return sum(a * b for a, b in zip(v, pitch))
        return f

    # walks
    coords_of = {pn: coords for pn, _x, _k, coords, _r in port_specs}
    walks = []
    for pn, x, kind, coords, rows in port_specs:
        levels = []
        for d in outer:               # the psum walk: the adjacent reduction loops as one level, at their place
            if kind == "psum" and d in red and not red_split:
                if "red" not in levels:
                    levels.append("red")
            else:
                levels.append(f"tile:{d}")
        # a stationary load over more than one leading axis (a 3-D array): one row level per leading axis
        multi = rows and len(shape) > 2 and (kind == "read" and x != out.name or (x == out.name and out_multi))
        levels += ([f"row@{a}" for a in range(len(lead_axes))] if multi else ["row"]) if rows else \
            [f"inner:{d}" for d in inner]
        lane_loop = next((d for d in outer if d in axis_of and coords(0, 0)[axis_of[d]] != coords(min(1, lanes_of[pn] - 1), 0)[axis_of[d]]), None)
        row_axis = next((a for a in range(len(shape)) if coords_of_spec(coords, 0, 0)[a] != coords_of_spec(coords, 0, 1)[a]), 0)
        row_loop = (next((d for d in outer if d in axis_of and axis_of[d] == row_axis), None)
                    if rows and not multi and len(shape) > 1 else None)       # a 1-D array: one row, no row loop
        xop = op.operand(x)
        lane_level = levels.index(f"tile:{lane_loop}") if lane_loop and xop.uses(lane_loop) and f"tile:{lane_loop}" in levels else None
        row_level = levels.index(f"tile:{row_loop}") if row_loop and xop.uses(row_loop) and f"tile:{row_loop}" in levels else None
        hl = levels.index(f"inner:{halo_loop}") if halo and f"inner:{halo_loop}" in levels else None
        held = hl is not None and x not in chained and not pads     # the map's own schedule masks per FU
        delays, terms, holds = (), (), ()
        if opads and x == out.name:      # the write holds the spans; both are delayed per lane
            held = kind == "write"
            hl, hold = levels.index(f"inner:{opads[-1][0]}"), opads[-1][1]
            holds = tuple((levels.index(f"inner:{lp}"), sp) for lp, sp, _ in opads[:-1]) if held else ()
            if deskew is not None:       # fixed delays (one padded loop, the tile's last)
                delays = tuple(deskew[1] - o for o in deskew[2]) if kind == "write" else deskew[2]
            else:                        # delays set per block from the walk's trips (its inner levels last)
                assert tuple(levels[len(levels) - len(inner):]) == tuple(f"inner:{d}" for d in inner), levels
                terms = tuple((0,) * (len(levels) - len(inner)) + t for t in deskew_terms(fg, kind))
        else:
            hold = halo
        skips = kind == "psum" and red_split
        keeps = rows and kind == "read" and x != out.name and bool(compiled.schedule.keep_dims)
        preload = compiled.schedule.accumulate and compiled.schedule.psum_in
        masks = tuple((levels.index(f"tile:{d}"), levels.index(f"row@{axis_of[d]}"), shape[axis_of[d]])
                      for d in outer if multi and (d in red or x == out.name)
                      and axis_of.get(d, len(lead_axes)) < len(lead_axes) and xop.uses(d))
        lmap = lane_groups.get(pn)
        lane_masks = ()
        lane_axes = _lane_axes(coords, lanes_of[pn], len(shape))
        if lmap is not None or len(lane_axes) > 1:   # one mask per array axis the lanes span (not one lane_last)
            lane_level = None
            lane_masks = tuple((levels.index(f"tile:{d}"), axis_of[d], shape[axis_of[d]],
                                tuple(coords(ln, 0)[axis_of[d]] for ln in range(lanes_of[pn])))
                               for d in outer if d in axis_of and xop.uses(d) and f"tile:{d}" in levels
                               and axis_of[d] in lane_axes)
        drain = _drain_rows(compiled, x, coords, rows)
        walks.append(PortWalk(pn, x, kind, tuple(levels), lanes_of[pn], lane_level, row_level,
                              levels.index("row") if rows and not multi else None,
                              (1 if not rows else shape[0] if len(shape) == 2 and x != out.name else
                               math.prod(lead_axes) if multi or x != out.name else drained),
                              hl if held else None, hold if held else 0,
                              len(outer) - 1 if skips or keeps else None,
                              tuple(levels.index(f"tile:{d}") for d in red) if skips or (keeps and preload) else (),
                              pn in broadcast,
                              row_masks=masks, lane_step=lane_step.get(pn, 1),
                              lane_masks=lane_masks,
                              keep_levels=tuple(levels.index(f"tile:{d}") for d in compiled.schedule.keep_dims)
                              if keeps else (), **({} if lmap is None else {
                                  "lane_groups": lmap[0], "lane_offsets": lmap[1], "run": lmap[2]}),
                              deskew=delays, deskew_terms=terms, holds=holds,
                              tile_masks=_tile_masks(compiled, x, levels, coords, rows, multi),
                              scatter=pn in scatter, drain_rows=drain,
                              lane_alias=_drain_lane_aliases(fg) if pn in scatter else (),
                              row_extents=tuple(lead_axes) if multi and drain else ()))

    def block_geometry(blk):
        """Loop starts, array trips of the outer loops and extents of one block."""
        start = {d: b * dict(cmd.tile)[d] for d, b in blk.tiles}
        btrips = {d: -(-(e - s) // (shape[axis_of[d]] if d in axis_of else 1)) for d, s, e in blk.ranges if d in outer}
        for pad in outer_pads(design, df):       # a skewed reduction loop outside the tile: K + span tiles a block
            btrips[pad.loop] += pad.span(shape)
        bext = {d: e - s for d, s, e in blk.ranges}
        return start, btrips, bext

    def walk_geometry(w, blk, lo, pext, perm, groups=False):
        """A port walk in one block: base position, per-level strides and trips, relative to the box start
        (no buffer half, no margin). A lane starts at its :func:`lane_lead` (a FIFO chain's root ``halo`` steps
        before the row, at negative loop values: the elements the FUs behind it use first; under the map's own
        schedule ``h + sigma.s`` of its root before it); a held walk starts at the row."""
        start, btrips, bext = block_geometry(blk)
        xop = op.operand(w.operand)
        f = pos_fn(w.operand, lo, pext, perm)

        def at(vals, l=0, r=0):
            v = lane_lead(compiled, w.operand, coords_of[w.port](l, r))
            for key, n in vals.items():
                v[key] = v.get(key, 0) + n
            return f(index(xop, xvec(blk, start, v, coords_of[w.port](l, r))))
        base = at({})
        trips, strides = [], []
        for lv in w.levels:
            if lv.startswith("tile:"):
                trips.append(btrips[lv[5:]])
            elif lv == "red":
                trips.append(math.prod(btrips[d] for d in red) - 1)
            elif lv == "row":
                trips.append(w.rows)
            elif lv.startswith("row@"):
                trips.append(shape[int(lv[4:])])
            else:
                trips.append(bext[lv[6:]] + halos.get(lv[6:], 0))
            if lv == "red":
                strides.append(0)
            elif lv == "row":            # (one drained row of the output's lanes: no next row, stride 0)
                strides.append(at({}, 0, 1) - base if w.rows > 1 else 0)
                if any(at({}, 0, r) - base != r * strides[-1] for r in range(2, w.rows)):
                    _refuse(f"dataflows.{df.name}", f"port {w.port}: its {w.rows} rows of FUs do not lie on one line of "
                            "the array, which one row counter cannot walk; the generated memory system cannot drain them")
            elif lv.startswith("row@"):         # one step along a leading axis: unravel order, last axis fastest
                strides.append(at({}, 0, math.prod(lead_axes[int(lv[4:]) + 1:])) - base)
            else:
                strides.append(at({lv: 1}) - base)
        if w.lane_groups:             # the lane map: each lane at its group's run start + its offset
            start_of = {}
            for ln, (g, o) in enumerate(zip(w.lane_groups, w.lane_offsets)):
                start_of.setdefault(g, at({}, ln) - base - o)
                if at({}, ln) - base != start_of[g] + o:
                    raise AssertionError(f"lane {ln} of {w.port}: position {at({}, ln) - base}, not its group's "
                                         f"{start_of[g]} + {o}")
            # lanes before lane 0 in its run (an index that lanes step by -1): the walk starts at the run's start
            base += start_of[0]
            start_of = {g: v - start_of[0] for g, v in start_of.items()}
            if groups:
                return base, strides, trips, [start_of[g] for g in range(w.groups)]
        elif w.lanes > 1 and not w.broadcast and at({}, 1) - base != w.lane_step:
            raise AssertionError(f"lane stride of {w.port}: {at({}, 1) - base}, not {w.lane_step}")
        return (base, strides, trips, [0]) if groups else (base, strides, trips)

    def margins(blk):
        """Operand -> (positions below, positions above) its box that a FIFO chain root's walk reaches (it
        streams elements outside the block's box: halo steps, padded root FUs). Those elements are never
        used by a real product (only elements of the box are), so nothing loads them and any value will do:
        the box sits ``below`` positions into its half (``ld_off_X``) so no position is negative; positions
        past the box's end read whatever lies there (the rest of the half, the other half, or a wrapped bank
        word), so the half need not hold them."""
        out = {}
        for w in walks:
            if w.operand not in chained:
                continue
            lo, pext, perm = box(w.operand, blk)
            base, strides, trips, starts = walk_geometry(w, blk, lo, pext, perm, groups=True)
            low = base + min(starts) + sum(min(0, s * (t - 1)) for s, t in zip(strides, trips))
            high = base + sum(max(0, s * (t - 1)) for s, t in zip(strides, trips))
            m_lo, m_hi = out.get(w.operand, (0, 0))
            out[w.operand] = (max(m_lo, -low), max(m_hi, high - (math.prod(pext) - 1)))
        return out

    margin_at = [margins(b) for b in blocks]

    # buffer layouts
    layouts = {}
    for x in op.operands:
        buf = mem.buffer(x.name)
        eb = element_bytes(design, x.name)
        if W % eb:
            _refuse("memory.dram.width_bytes", f"must be a multiple of operand {x.name}'s element size ({eb} B) in "
                    "the generated top", W)
        lanes = max(1 if pn in broadcast else lanes_of[pn] if pn in scatter else lane_groups[pn][2] if pn in lane_groups else
                    lanes_of[pn] * lane_step.get(pn, 1) for pn, xx, *_ in port_specs if xx == x.name)
        own = _pow2_at_least(max(lanes, W // eb))
        banks = max(own, (core_banks or {}).get(x.name, 0))      # a fused core: the most any of its dataflows needs
        if buf.banks and buf.banks != banks:
            _refuse(f"memory.{x.name}.banks", f"the generated buffer of {x.name} needs {banks} banks (a power of two, at "
                    f"least the {lanes} lanes of one beat and the {W // eb} elements of one DRAM word, so that each "
                    "moves through one port per bank in one cycle"
                    + ("" if banks == own else f"; {banks} for another dataflow of the fused core") +
                    f"); set {banks}, or 0 to let the generator choose", buf.banks)
        half = buf.bytes // (eb * buf.halves)
        if half < banks:
            _refuse(f"memory.{x.name}.bytes", f"the generated buffer of {x.name} needs at least one {eb}-byte word in "
                    f"each of its {banks} banks per half ({buf.halves} x {banks} x {eb} = {buf.halves * banks * eb} B)",
                    buf.bytes)
        half = half // banks * banks
        need = max(block_bytes(cmd, x.name, b, split_of.get(x.name, ())) // eb + mg.get(x.name, (0, 0))[0]
                   for b, mg in zip(blocks, margin_at))
        if need > half:
            edge = max(mg.get(x.name, (0, 0))[0] for mg in margin_at)
            _refuse(f"memory.{x.name}.bytes", f"a block of {need * eb} B does not fit one half"
                    + (f" ({_lead_text(compiled, x.name)} {edge * eb} B before the block's box)" if edge else ""),
                    buf.bytes)
        if not spec_size:
            half = max(banks, -(-need // banks) * banks)
        layouts[x.name] = BufferLayout(x.name, eb, banks, half, buf.halves, W // eb, split_of.get(x.name, ()))
    for w in walks:                   # a scattered output: each lane in its own bank, in every block
        for blk in blocks if w.scatter else ():
            lo, pext, perm = box(w.operand, blk)
            start, btrips, _ext = block_geometry(blk)
            last = {a: min(n, bound[w.levels[tl][5:]] - n * (start[w.levels[tl][5:]] + btrips[w.levels[tl][5:]] - 1))
                    for tl, a, n, _cs in w.lane_masks}
            offs = _bank_clash(w, walk_geometry(w, blk, lo, pext, perm, groups=True)[3], layouts[w.operand].banks,
                               live_lanes(w, [btrips[w.levels[tl][5:]] for tl, *_ in w.lane_masks], last))
            later = skew_dims[skew_dims.index(lane_dim[w.operand]) + 1:]
            if offs and later:        # another innermost dimension of the output may put its lanes apart
                return layer_program(compiled, cmd, layer, spec_size=spec_size, fit_only=fit_only, out_dim=later[0],
                                     core_banks=core_banks)
            if offs:
                _refuse_bank_clash(compiled, w, offs, layouts[w.operand].banks, pext, layer)
    if fit_only:
        return layouts

    # DRAM layout (affine, what the walker's address adds step through): one region per operand, the
    # inputs first and the output last; a block of X at base_X + (its block index along the loops X
    # depends on, mixed radix in the command's order) x the words of X's largest block, word aligned
    dep = {x.name: [i for i, d in enumerate(cmd.order) if x.uses(d)] for x in op.operands}
    adds = adds_onto_partial_sums(cmd, jobs)
    nbl = cmd.n_blocks()
    slot = {x.name: max(1, max(-(-block_bytes(cmd, x.name, b, split_of.get(x.name, ())) // W) for b in blocks))
            for x in op.operands}
    dram_base: dict[str, int] = {}
    next_word = 0
    for x in [*op.inputs, op.output]:
        dram_base[x.name] = next_word
        next_word += slot[x.name] * math.prod(nbl[cmd.order[i]] for i in dep[x.name])
    dram_stride = {x: [slot[x] * math.prod(nbl[cmd.order[j]] for j in ix if j > i) if i in ix else 0
                       for i in range(len(cmd.order))] for x, ix in dep.items()}
    regions: dict = {}
    for blk in blocks:
        for x in op.operands:
            key = (x.name, tuple(blk.tiles[i][1] for i in dep[x.name]))
            if key not in regions:
                lo, pext, perm = box(x.name, blk)
                addr = dram_base[x.name] + sum(blk.tiles[i][1] * dram_stride[x.name][i] for i in dep[x.name])
                regions[key] = (addr, lo, pext, perm)

    # the per-block rows
    half_of = {x.name: -1 for x in op.operands}
    cur_key: dict = {}
    rows_out, halves_at = [], []
    for k, j in enumerate(jobs):
        blk = j.block
        row: dict[str, int] = {}
        start, btrips, bext = block_geometry(blk)
        for d in outer:
            row[f"trips_{d}"] = btrips[d]
        for d in halos:               # the array command's row length of a halo loop (its steps add the halo)
            row[f"trips_{d}"] = bext[d]
        for d in fg.fifo_depth_loops:  # FIFOs of run-time depth: one halo-loop iteration of this block's chunk
            row[f"trips_{d}"] = bext[d]
        # this block's chunk of the inner loops, every row of the halo loop with its halo steps
        row["steps"] = math.prod(bext[d] + halos.get(d, 0) for d in inner)
        margin = {x: lo for x, (lo, _hi) in margin_at[k].items()}
        # a later block of the same output block (a split reduction): the array's results add onto the
        # partial sums in the buffer half (the output half and block stay; layer_jobs writes back once)
        row["acc"] = int(adds[k])
        loads = dict(j.load)
        for x in op.operands:
            key = (x.name, tuple(blk.tiles[i][1] for i in dep[x.name]))
            lay = layouts[x.name]
            if x is op.output:
                if k == 0 or key != cur_key.get(x.name):
                    half_of[x.name] = (half_of[x.name] + 1) % lay.halves
                cur_key[x.name] = key
                addr = regions[key][0]
                row.update({f"wr_bytes": j.write, "wr_word": addr, "wr_pos": half_of[x.name] * lay.half_elems,
                            "wr_elems": j.write // lay.elem_bytes})
                # a later visit of the output block: L loads its partial sums back (into the psum-load copy,
                # at the block's position in its half), and the array's results add onto them (``acc``)
                back = loads.get(x.name, 0)
                if mem.partial_sums_through_dram:
                    row.update({f"ld_{x.name}": int(bool(back)), f"ld_bytes_{x.name}": back,
                                f"ld_word_{x.name}": addr if back else 0,
                                f"ld_pos_{x.name}": half_of[x.name] * lay.half_elems if back else 0,
                                f"ld_elems_{x.name}": back // lay.elem_bytes})
                continue
            if x.name in loads:
                half_of[x.name] = (half_of[x.name] + 1) % lay.halves
                row.update({f"ld_{x.name}": 1, f"ld_bytes_{x.name}": loads[x.name], f"ld_word_{x.name}": regions[key][0],
                            f"ld_pos_{x.name}": half_of[x.name] * lay.half_elems + margin.get(x.name, 0),
                            f"ld_elems_{x.name}": loads[x.name] // lay.elem_bytes})
            else:
                row.update({f"ld_{x.name}": 0, f"ld_bytes_{x.name}": 0, f"ld_word_{x.name}": 0, f"ld_pos_{x.name}": 0,
                            f"ld_elems_{x.name}": 0})
        halves_at.append(dict(half_of))
        for w in walks:
            lo, pext, perm = regions[(w.operand, tuple(blk.tiles[i][1] for i in dep[w.operand]))][1:]
            rel, strides, trips, starts = walk_geometry(w, blk, lo, pext, perm, groups=True)
            for g, off in enumerate(starts[1:], 1):      # the lane map's runs, from lane 0's (signed_group_offsets)
                if off < 0 and not signed_group_offsets(compiled, w.operand):    # a guard (none seen)
                    _refuse(f"dataflows.{df.name}", f"port {w.port}: lane group {g}'s run starts {-off} positions "
                            f"before lane 0's, but its command field {w.port}_group{g} is unsigned in this design "
                            f"({w.operand} has no lane leads and no negative index coefficient); map the lane axes so "
                            "that lane 0 is the FU with the lowest coordinates", off)
                row[f"{w.port}_group{g}"] = off
            base = half_of[w.operand] * layouts[w.operand].half_elems + margin.get(w.operand, 0) + rel
            for li, stride in enumerate(strides):
                if stride < 0 and not walks_down(compiled, w.operand):
                    # a guard: only an index with a negative coefficient or a tile lead walks downwards
                    # (descriptor_format's signed stride fields)
                    _refuse(f"dataflows.{df.name}", f"port {w.port}: a negative address stride is not supported")
                row[f"{w.port}_stride{li}"] = stride
                row[f"{w.port}_trips{li}"] = trips[li]
            row[f"{w.port}_base"] = base
            row[f"{w.port}_beats"] = math.prod(trips)
            if w.keep_levels:                 # the beats of the tiles that load (ArraySchedule.loads)
                row[f"{w.port}_beats"] = _loading_tiles(w, trips) * math.prod(trips[w.skip_level + 1:])
            elif w.skip_level is not None:    # every tile's beats but the first visits' (all reduction levels 0)
                tiles = trips[:w.skip_level + 1]
                first = math.prod(t for i, t in enumerate(tiles) if i not in w.red_levels)
                row[f"{w.port}_beats"] = (math.prod(tiles) - first) * math.prod(trips[w.skip_level + 1:])
            if w.lane_level is not None:
                d = w.levels[w.lane_level][5:]
                row[f"{w.port}_lane_last"] = min(w.lanes, bound[d] - shape[axis_of[d]] * (start[d] + btrips[d] - 1))
            if w.row_level is not None:
                d = w.levels[w.row_level][5:]
                row[f"{w.port}_row_last"] = min(w.rows, bound[d] - shape[axis_of[d]] * (start[d] + btrips[d] - 1))
            for tl, rl, n in w.row_masks:
                d = w.levels[tl][5:]
                row[f"{w.port}_row_last@{rl}"] = min(n, bound[d] - n * (start[d] + btrips[d] - 1))
            for tl, a, n, _cs in w.lane_masks:
                d = w.levels[tl][5:]
                row[f"{w.port}_lane_last@{a}"] = min(n, bound[d] - n * (start[d] + btrips[d] - 1))
            for tl, _offs, _step in w.tile_masks:       # the block's own tiles of the skewed (non-spatial) loop
                row[f"{w.port}_tile_len@{tl}"] = next(e - s for d, s, e in blk.ranges if d == w.levels[tl][5:])
        rows_out.append(row)
    wcmd = walker_command(cmd, df, layouts, walks, rows_out, halves_at, dram_base, dram_stride, layer,
                          [{x: lo for x, (lo, _hi) in mg.items()} for mg in margin_at])
    return LayerProgram(compiled, cmd, depth, W, layouts, tuple(walks), tuple(rows_out), next_word,
                        {k: v for k, v in regions.items()}, tuple(jobs), wcmd)


# ------------------------------------------------------------------------------------------------
# the layer command as the controller receives it, and its block walker (docs/memory.md "The layer command")
#
# One command per layer, independent of the block count: per tile-loop level (the command's order, outer to
# inner, padded outermost with one-block levels to the dataflow's loop count) the trip count, per operand
# the DRAM word increment when that level steps and whether the operand's block changes then (residency:
# it changes when the level or an inner level with more than one block is one of its loops); per operand
# the DRAM base; the block count; and the *shape table*: per edge mask (bit i: level i is at its last
# block) the values that depend on a block's extents (array trip counts, byte counts, buffer-walk strides,
# trip counts and ragged-edge counts), precomputed by the host so that a ragged block needs no run-time
# multiplication. The walker's counters, address adds and flags expand it block by block; the model half
# (:func:`block_steps`, :func:`walk_rows`) and the hardware half (:func:`block_walker_hw`) state the same
# walk. Every field's width follows from the design, the dataflow and the memory system alone.

DRAM_WORD_BITS = 32          # DRAM word address width of the generated top's port
WALK_COUNTER_BITS = 20       # block counters (trip counts per level) and buffer-walk counters
BLOCK_COUNT_BITS = 32        # blocks one command may have (the sequencer's job counters)


@dataclass(frozen=True)
class WalkerCommand:
    """What the layer controller receives for one layer (its size depends on the dataflow only)."""

    loops: tuple[str, ...]        # per level, outer to inner: the tile loop ("" for a padding level)
    trips: tuple[int, ...]        # per level: blocks along it
    stride: tuple[dict, ...]      # per level: operand -> DRAM words added when the level steps
    reload: tuple[dict, ...]      # per level: operand -> 1 if its block changes when the level steps
    base: dict                    # operand -> DRAM word of its first block
    blocks: int
    shapes: dict                  # edge mask (``_edge_mask``) -> the block-extent fields (table S)
    inputs: tuple[str, ...]
    output: str
    # per level: 1 if a nonzero counter there means the current output block was visited before (the level's
    # loop is not one of the output's, and a step of it changes the output block); a block the output
    # changed into with such a counter nonzero loads its partial sums (docs/memory.md)
    revisit: tuple[int, ...] = ()    # empty: the spec does not grant partial sums through DRAM


def revisit_flags(cmd: LayerCommand) -> tuple[int, ...]:
    """Per level of ``cmd.order``: :attr:`WalkerCommand.revisit`."""
    out = cmd.design.operation.output
    return tuple(int(not out.uses(d) and bool(r[out.name])) for d, r in zip(cmd.order, reload_flags(cmd)))


def revisits(cnt, revisit) -> bool:
    """The output block of the block at counters ``cnt`` was visited before (model half of the walker's flag)."""
    return any(c and r for c, r in zip(cnt, revisit))


def reload_flags(cmd: LayerCommand) -> tuple[dict, ...]:
    """Residency from the loop order: per level of ``cmd.order``, per operand, 1 if a step of that level
    changes the operand's block (it uses the loop, or an inner loop with more than one block)."""
    nb = cmd.n_blocks()
    return tuple({x.name: int(x.uses(d) or any(x.uses(e) and nb[e] > 1 for e in cmd.order[i + 1:]))
                  for x in cmd.design.operation.operands} for i, d in enumerate(cmd.order))


def block_steps(trips):
    """The block walker's odometer (model half of :func:`block_walker_hw`): per block (counters, the level
    whose step entered it (None for the first block), the level the next step increments (None: last))."""
    k = len(trips)
    cnt, prev = [0] * k, None
    while True:
        nxt = next((j for j in reversed(range(k)) if cnt[j] < trips[j] - 1), None)
        yield tuple(cnt), prev, nxt
        if nxt is None:
            return
        cnt[nxt] += 1
        cnt[nxt + 1:] = [0] * (k - nxt - 1)
        prev = nxt


def _edge_mask(cnt, trips) -> int:
    """Bit k-1-i: level i (of k, outer to inner) is at its last block and has more than one (a level of
    one block is the same for every block, so its bit stays 0 and padding levels cost no table rows)."""
    k = len(trips)
    return sum(1 << (k - 1 - i) for i, (c, t) in enumerate(zip(cnt, trips)) if c == t - 1 and t > 1)


def walker_command(cmd, df, layouts, walks, rows, halves_at, dram_base, dram_stride, layer,
                   margins=None) -> WalkerCommand:
    """The command for the rows :func:`layer_program` expanded: the shape table collects each block's
    extent-dependent fields under its edge mask (blocks with the same edges must agree: refused if not)."""
    op = cmd.design.operation
    pad = len(df.order) - len(cmd.order)
    nb = cmd.n_blocks()
    names = [x.name for x in op.operands]
    trips = (1,) * pad + tuple(nb[d] for d in cmd.order)
    zero = tuple({x: 0 for x in names} for _ in range(pad))
    stride = zero + tuple({x: dram_stride[x][i] for x in names} for i in range(len(cmd.order)))
    spill = cmd.design.memory_system.partial_sums_through_dram
    dynamic = ({"acc", "wr_word", "wr_pos"} | {f"ld_{f}{x.name}" for x in op.inputs for f in ("", "word_", "pos_")}
               | {f"ld_{f}{op.output.name}" for f in ("", "word_", "pos_", "bytes_", "elems_") if spill})
    shapes: dict = {}
    margins = margins or [{} for _ in rows]
    for row, (cnt, _p, _n), blk, halves, mg in zip(rows, block_steps(trips), cmd.blocks(), halves_at, margins):
        f = {k: v for k, v in row.items() if k not in dynamic}
        for x, off in mg.items():         # a FIFO chain root's operand: its block sits ``off`` into the half
            f[f"ld_off_{x}"] = off
        for x in op.operands:
            fb = block_bytes(cmd, x.name, blk, layouts[x.name].split)
            pre = "wr_" if x is op.output else "ld_"
            sfx = "" if x is op.output else f"_{x.name}"
            f[f"{pre}bytes{sfx}"], f[f"{pre}elems{sfx}"] = fb, fb // layouts[x.name].elem_bytes
        for w in walks:
            f[f"{w.port}_base"] -= halves[w.operand] * layouts[w.operand].half_elems
        mask = _edge_mask(cnt, trips)
        old = shapes.setdefault(mask, f)
        if old != f:
            bad = next(k for k in f if f[k] != old.get(k))
            _refuse(f"layers.{layer}.tile", f"blocks with the same ragged edges differ in {bad} ({old.get(bad)} and "
                    f"{f[bad]}), which the command's shape table cannot express", dict(cmd.tile))
    return WalkerCommand(("",) * pad + tuple(cmd.order), trips, stride, zero + reload_flags(cmd),
                         {x: dram_base[x] for x in names}, math.prod(trips), shapes,
                         tuple(x.name for x in op.inputs), op.output.name,
                         (0,) * pad + revisit_flags(cmd) if spill else ())


def walk_rows(wc: WalkerCommand, layouts: dict, walks) -> list[dict]:
    """The command expanded block by block as the controller does (model half): counters, residency
    flags, buffer halves toggled at each change, DRAM addresses (here in closed form; the hardware adds
    the level strides), and the shape-table entry of each block's edge mask. Equals ``LayerProgram.rows``."""
    half = {x: 0 for x in layouts}
    out, y = [], wc.output
    for cnt, prev, nxt in block_steps(wc.trips):
        changed = {x: prev is None or bool(wc.reload[prev][x]) for x in layouts}
        for x in layouts:
            half[x] = (half[x] + (prev is not None and changed[x])) % layouts[x].halves
        pos = {x: half[x] * layouts[x].half_elems for x in layouts}
        addr = {x: wc.base[x] + sum(c * st[x] for c, st in zip(cnt, wc.stride)) for x in layouts}
        s = wc.shapes[_edge_mask(cnt, wc.trips)]
        row = {k: v for k, v in s.items() if not k.startswith(("ld_", "wr_"))}
        back = changed[y] and revisits(cnt, wc.revisit)     # a later visit: partial sums loaded from DRAM
        row["acc"] = int(not changed[y] or back)
        for w in walks:
            row[f"{w.port}_base"] += pos[w.operand]
        for x in wc.inputs:
            ld = changed[x]
            row.update({f"ld_{x}": int(ld), f"ld_bytes_{x}": s[f"ld_bytes_{x}"] * ld, f"ld_word_{x}": addr[x] * ld,
                        f"ld_pos_{x}": (pos[x] + s.get(f"ld_off_{x}", 0)) * ld, f"ld_elems_{x}": s[f"ld_elems_{x}"] * ld})
        if wc.revisit:                   # memory.partial_sums_through_dram: the output's load fields
            row.update({f"ld_{y}": int(back), f"ld_bytes_{y}": s["wr_bytes"] * back, f"ld_word_{y}": addr[y] * back,
                        f"ld_pos_{y}": pos[y] * back, f"ld_elems_{y}": s["wr_elems"] * back})
        leaving = nxt is None or bool(wc.reload[nxt][y])
        row.update({"wr_bytes": s["wr_bytes"] * leaving, "wr_word": addr[y], "wr_pos": pos[y],
                    "wr_elems": s["wr_elems"] * leaving})
        out.append(row)
    return out


@dataclass(frozen=True)
class BlockWalkerHW:
    mask: object            # edge mask of the current block (``_edge_mask``: bit 0 the innermost level)
    addr: dict              # operand -> DRAM word of its current block
    fresh: dict             # operand -> its block changed on the step into the current block (1 at the first)
    half: dict              # operand -> buffer half of its current block (toggles at each change)
    leaving: dict           # operand -> the next step changes its block, or this is the last block
    back: object = None     # the output changed into a block it visited before (its partial sums come back)


def block_walker_hw(m, hdl, trips, stride, reload, base, ops, addr_ops, halves, step, run, name: str,
                    cnt_bits: int = WALK_COUNTER_BITS, addr_bits: int = DRAM_WORD_BITS,
                    revisit=None, output: str | None = None) -> BlockWalkerHW:
    """The block walker (hardware half of :func:`block_steps` / :func:`walk_rows`): nested block counters
    (``trips[j]``, registered command values per level) stepping when ``step``; per operand of ``addr_ops`` an
    anchor per level where that level's current iteration began, so a step adds its level's stride and
    every inner anchor restarts there (adds only); residency flags ``reload[x][j]`` pick the operands that
    change. ``~run`` restarts at the first block (every operand fresh, half 0, anchors at ``base``)."""
    Signal, Cat, Const = hdl.Signal, hdl.Cat, hdl.Const
    k = len(trips)
    cnt = [Signal(cnt_bits, name=f"{name}_block{j}") for j in range(k)]
    wrap = [cnt[j] + 1 == trips[j] for j in range(k)]
    mask = Signal(k, name=f"{name}_edges")
    m.d.comb += mask.eq(Cat(*[wrap[j] & (trips[j] != 1) for j in reversed(range(k))]))
    inc = [Signal(name=f"{name}_step{j}") for j in range(k)]
    for j in range(k):
        inner = Const(1)
        for i in range(j + 1, k):
            inner = inner & wrap[i]
        m.d.comb += inc[j].eq(inner & ~wrap[j])
    last = Signal(name=f"{name}_last_block")
    m.d.comb += last.eq(Cat(*wrap).all())
    anchor = {x: [Signal(addr_bits, name=f"{name}_{x}_anchor{j}") for j in range(k)] for x in addr_ops}
    fresh = {x: Signal(name=f"{name}_{x}_fresh") for x in ops}
    half = {x: Signal(name=f"{name}_{x}_half") for x in ops}
    changes = {x: Cat(*[inc[j] & reload[x][j] for j in range(k)]).any() for x in ops}
    with m.If(~run):
        m.d.sync += [c.eq(0) for c in cnt] + [f.eq(1) for f in fresh.values()] + [h.eq(0) for h in half.values()]
        m.d.sync += [a.eq(base[x]) for x in addr_ops for a in anchor[x]]
    with m.Elif(step):
        for j in range(k):
            with m.If(inc[j]):
                m.d.sync += [cnt[j].eq(cnt[j] + 1)] + [cnt[i].eq(0) for i in range(j + 1, k)]
                for x in addr_ops:
                    nxt = anchor[x][j] + stride[x][j]
                    m.d.sync += [anchor[x][i].eq(nxt) for i in range(j, k)]
        m.d.sync += [fresh[x].eq(changes[x]) for x in ops]
        m.d.sync += [half[x].eq(half[x] ^ changes[x]) for x in ops if halves[x] == 2]
    back = None
    if output is not None:            # :func:`revisits`: a counter of a revisit level is nonzero
        back = Signal(name=f"{name}_{output}_back")
        m.d.comb += back.eq(fresh[output] & Cat(*[(cnt[j] != 0) & revisit[j] for j in range(k)]).any())
    return BlockWalkerHW(mask, {x: anchor[x][-1] for x in addr_ops}, fresh, half,
                         {x: changes[x] | last for x in ops}, back)


@dataclass(frozen=True)
class DescriptorFormat:
    """The command interface of the generated top: tables K (one row per level: trips, per operand DRAM
    stride and reload flag), B (one row: per operand DRAM base, the block count) and S (the shape table,
    one row per edge mask), written by the host before ``go``. Depths and widths depend on the design,
    the dataflow and the memory system alone, never on a layer."""

    tables: dict                  # "K" | "B" | "S" -> tuple of (field, bits)
    depths: dict                  # table -> rows
    design: str = ""              # the design and dataflow the top was built for
    dataflow: str = ""
    signed: frozenset = frozenset()   # fields held in two's complement (walk strides that may be negative)

    def width(self, table: str) -> int:
        return max(1, sum(w for _, w in self.tables[table]))

    def depth(self, table: str) -> int:
        return self.depths[table]

    def bits(self) -> int:
        """The command's size in bits (every table's rows)."""
        return sum(self.width(t) * self.depth(t) for t in self.tables)

    def encode(self, wc: WalkerCommand, layer: str = "layer", dataflow: str | None = None) -> dict:
        """Packed words per table for a walker command (``dataflow``: the one it was planned for); refuses a
        command for another dataflow or a value that does not fit its field, naming the layer and field."""
        if dataflow is not None and self.dataflow and dataflow != self.dataflow:
            _refuse(f"layers.{layer}.dataflow", f"the command was planned for dataflow {dataflow!r}; this top "
                    f"({self.design}) runs {self.dataflow!r}", dataflow)
        names = list(wc.base)
        for d, t in zip(wc.loops, wc.trips):
            if t >> WALK_COUNTER_BITS:
                _refuse(f"layers.{layer}.tile.{d}", f"{t} blocks along {d} do not fit the controller's "
                        f"{WALK_COUNTER_BITS}-bit block counter (at most {(1 << WALK_COUNTER_BITS) - 1}); larger "
                        f"tiles along {d} give fewer blocks", t)
        rows = {"K": [{"trips": t, **{f"stride_{x}": st[x] for x in names}, **{f"reload_{x}": r[x] for x in names},
                       **({"revisit": v} if wc.revisit else {})}
                      for t, st, r, v in zip(wc.trips, wc.stride, wc.reload, wc.revisit or wc.trips)],
                "B": [{**{f"base_{x}": wc.base[x] for x in names}, "blocks": wc.blocks}],
                "S": [wc.shapes.get(mask, {}) for mask in range(self.depths["S"])]}
        if max(wc.shapes) >= self.depths["S"]:
            _refuse(f"layers.{layer}.order", f"the command's edge masks need {max(wc.shapes) + 1} shape-table rows; "
                    f"this top holds {self.depths['S']}", list(wc.loops))
        return {t: [self._pack(t, r, layer) for r in rows[t]] for t in self.tables}

    def _pack(self, table: str, row: dict, layer: str) -> int:
        word, off = 0, 0
        for name, w in self.tables[table]:
            v = int(row.get(name, 0))
            if name in self.signed:          # two's complement in w bits
                if not -(1 << (w - 1)) <= v < 1 << (w - 1):
                    _refuse(f"layers.{layer}.{name}", f"the value does not fit the generated top's {w}-bit signed "
                            "command field", v)
                v &= (1 << w) - 1
            elif v < 0 or v >> w:
                _refuse(f"layers.{layer}.{name}", f"the value does not fit the generated top's {w}-bit command field", v)
            word |= v << off
            off += w
        return word


def descriptor_format(prog: "LayerProgram", shape_rows: int | None = None) -> DescriptorFormat:
    """The command tables' fields and widths for the structure of ``prog`` (its buffers, ports and array
    command), independent of the layer it was expanded from. ``shape_rows``: the shape table's depth (a
    power of two; default every edge mask of the dataflow's levels); a simulation build of one command
    passes the rows its masks need."""
    comp = prog.compiled
    op = comp.design.operation
    names = [x.name for x in op.operands]
    k = len(comp.dataflow.order)
    pos_bits = {x: (lay.halves * lay.half_elems).bit_length() for x, lay in prog.layouts.items()}
    byte_bits = {x: (lay.half_elems * lay.elem_bytes).bit_length() for x, lay in prog.layouts.items()}
    K = ([("trips", WALK_COUNTER_BITS)] + [(f"stride_{x}", DRAM_WORD_BITS) for x in names]
         + [(f"reload_{x}", 1) for x in names]
         + ([("revisit", 1)] if comp.design.memory_system.partial_sums_through_dram else []))
    B = [(f"base_{x}", DRAM_WORD_BITS) for x in names] + [("blocks", BLOCK_COUNT_BITS)]
    steps_bits = max([f.bits for f in comp.command.fields if f.loop is None] or [32])
    S = [(f"trips_{f.loop}", f.bits) for f in comp.command.fields if f.loop is not None] + [("steps", steps_bits)]
    for x in op.inputs:
        S += [(f"ld_bytes_{x.name}", byte_bits[x.name]), (f"ld_elems_{x.name}", byte_bits[x.name])]
        if x.name in chained_inputs(comp):
            S.append((f"ld_off_{x.name}", pos_bits[x.name]))
    y = op.output.name
    S += [("wr_bytes", byte_bits[y]), ("wr_elems", byte_bits[y])]
    signed = set()
    for w in prog.walks:
        pb = pos_bits[w.operand]
        below = _output_lead_bits(comp, w.operand)          # a base before the box: signed, wider
        S += [(f"{w.port}_base", pb + below), (f"{w.port}_beats", 32)]
        signed |= {f"{w.port}_base"} if below else set()
        # an operand walked downwards (walks_down): its strides are signed, one bit wider (positions stay >= 0: the
        # walk's adds wrap)
        neg = walks_down(comp, w.operand)
        for j in range(len(w.levels)):
            S += [(f"{w.port}_stride{j}", pb + neg), (f"{w.port}_trips{j}", WALK_COUNTER_BITS)]
            if neg:
                signed.add(f"{w.port}_stride{j}")
        if w.lane_level is not None:
            S.append((f"{w.port}_lane_last", w.lanes.bit_length()))
        if w.row_level is not None:
            S.append((f"{w.port}_row_last", w.rows.bit_length()))
        S += [(f"{w.port}_row_last@{rl}", n.bit_length()) for _tl, rl, n in w.row_masks]
        sg = signed_group_offsets(comp, w.operand)     # a group's run may start below lane 0's: one bit wider
        S += [(f"{w.port}_group{g}", pb + sg) for g in range(1, w.groups)]
        signed |= {f"{w.port}_group{g}" for g in range(1, w.groups) if sg}
        S += [(f"{w.port}_lane_last@{a}", n.bit_length()) for _tl, a, n, _cs in w.lane_masks]
        S += [(f"{w.port}_tile_len@{tl}", WALK_COUNTER_BITS) for tl, _offs, _step in w.tile_masks]
    return DescriptorFormat({"K": tuple(K), "B": tuple(B), "S": tuple(S)}, {"K": k, "B": 1, "S": shape_rows or 1 << k},
                            comp.design.name, comp.dataflow.name, frozenset(signed))


def buffer_fit(compiled, layer: str = "layer", core_banks: dict | None = None):
    """The planner's ``fits`` (mappings/memory_tiling.py ``plan_layer``): a check that raises the fit refusal of
    :func:`layer_program` at the spec's buffer sizes (``memory.<X>.bytes``), which counts the margin a block keeps
    in front of it (its ``margins``), a lane-interleaved output's padding to whole array tiles
    (:func:`output_lane_split`, :func:`block_bytes`), and for an output de-skewed per lane (:func:`output_pads`)
    its de-skew buffers (:func:`_check_deskewed_output`; its partial sums read back within the de-skew are a wait of
    the array, dataflow/control.py ``psum_raw_hw``, never a refusal), and
    for an output whose lanes write their own tiles of a skewed loop those lanes' banks (:func:`_bank_clash`), and
    for waited drains a block's tiles per iteration of each waited loop (:func:`_check_drain_depth`), and for waited
    products its steps per iteration (:func:`_check_wait_depth`), so
    the planner picks an order and chunks that run; None for a design without any of them (no chained input, no split output, no
    de-skew: the planner's footprint against :func:`buffer_rooms` is the whole need). A command this check cannot
    judge (another refusal first) passes: that refusal is not the buffers', and the commands that build are refused
    where they are built. ``core_banks``: as :func:`buffer_rooms`'s."""
    deskew = () if hasattr(compiled, "network") else output_pads(compiled.fu_graph)
    if hasattr(compiled, "network") or not (chained_inputs(compiled) or output_lane_split(compiled) or deskew
                                            or lane_skewed_output(compiled) or drain_groups(compiled.fu_graph)
                                            or product_waits(compiled.fu_graph)):
        return None
    known = {}      # (bounds, tile) -> the refusal or None: the buffer refusals do not depend on the loop order

    def fits(cmd: LayerCommand) -> None:
        if deskew:        # a de-skewed output's de-skew buffers (array.max_fifo_depth)
            _check_deskewed_output(compiled, _with_rounds(compiled, [j.block for j in layer_jobs(cmd)]), layer)
        key = (tuple(sorted(cmd.bounds)), tuple(sorted(cmd.tile)))
        if key not in known:
            try:
                layer_program(compiled, cmd, layer, spec_size=True, fit_only=True, core_banks=core_banks)
                known[key] = None
            except SpecError as err:
                if any(p.path.startswith("memory.") and p.path.endswith(".bytes") or _BANK_CLASH in p.message
                       or _DRAIN_DEPTH in p.message or _WAIT_DEPTH in p.message for p in err.problems):
                    known[key] = err
        if known.get(key) is not None:
            raise known[key]
    return fits


def buffer_rooms(compiled, core_banks: dict | None = None) -> dict[str, Room] | None:
    """The planner's ``rooms`` (mappings/memory_tiling.py ``plan_layer``): per operand, the bytes of one buffer half
    that :func:`layer_program` lets a block (and its margin) take, ``memory.<X>.bytes / halves`` rounded down to whole
    bank rows, and the bytes of one bank row. The banks depend on the dataflow's lanes and the DRAM width, not on the
    command, so the buffer layouts of a one-element layer give them. None when the memory system refuses even that
    (a skewed stt map, another refusal, a half below one bank row): its refusal is made where the command is built.
    ``core_banks``: a dataflow of a fused design's one layer core plans on the core's banks (:func:`fused_banks`)."""
    from archgen.mappings.memory_tiling import make_command
    if hasattr(compiled, "network"):
        return None
    outer = tuple(compiled.dataflow.outer_dims())
    try:
        one = make_command(compiled.design, {d: 1 for d in compiled.design.operation.dims}, compiled.dataflow,
                           {d: 1 for d in outer}, outer, "probe")
        layouts = layer_program(compiled, one, "probe", spec_size=True, fit_only=True, core_banks=core_banks)
    except SpecError:
        return None
    return {x: Room(lay.half_elems * lay.elem_bytes, lay.banks * lay.elem_bytes) for x, lay in layouts.items()}


def tiled_fused_names(fused) -> list[str]:
    """The fused dataflows the one tiled layer core runs: a skewed map has its own core (rtlgen/stt_layer.py), and
    so does a folded map beside dataflows that fold otherwise (its view on its own logical array: its lanes, and
    so its buffer layouts, are that array's; rtlgen/build.py ``layer_core_verilog`` around the fused array)."""
    return [n for n in fused.names if not hasattr(fused.view(n), "network") and fused.view(n).design is fused.design]


def fused_banks(fused, names=None) -> dict:
    """Operand -> the banks of the one fused layer core's shared buffer (rtlgen/fused_layer.py): the most any of its
    dataflows needs (a power of two, :func:`layer_program`). Every dataflow plans its layers on these banks
    (``layer_program(core_banks=)``, and the planner's :func:`buffer_rooms` / :func:`buffer_fit` with them), so a
    buffer half (``memory.<X>.bytes`` / halves, rounded down to whole bank rows) holds the same positions in each:
    rounded per dataflow, a size that is not a multiple of every dataflow's bank row (3x5 gemm_fused, 4 B DRAM words,
    ``memory.A.bytes=200``: 100 elements a half on os's 4 banks, 96 on is's 8) gave the dataflows different halves,
    which one buffer cannot have. A bank count the spec sets (``memory.<X>.banks``) is the floor: the core has it, or
    the dataflow that needs more is refused by that field, as alone (``check_memory_system``'s rule that it divides
    every dataflow's lanes comes first)."""
    mem = fused.design.memory_system
    banks: dict = {}
    for n in names or tiled_fused_names(fused):
        view = fused.view(n)
        layouts = layer_program(view, probe_command(view.design, view.dataflow), "probe", fit_only=True,
                                core_banks={b.operand: b.banks for b in mem.buffers})
        for x, lay in layouts.items():
            banks[x] = max(banks.get(x, 0), lay.banks)
    return banks


def probe_command(design, dataflow=None) -> LayerCommand:
    """The smallest layer of a dataflow (one array tile, every other loop 1): what a synthesis build
    expands to get the top's structure; the top itself does not depend on the layer."""
    from archgen.mappings.memory_tiling import make_command
    df = design.dataflow(dataflow) if not hasattr(dataflow, "outer_dims") else dataflow
    axis_of = df.axis_of
    op = design.operation
    bounds = {d: design.shape[axis_of[d]] if d in axis_of else 1 for d in op.dims}
    outer = tuple(df.outer_dims())
    return make_command(design, bounds, df, {d: 1 for d in outer}, outer, "probe")
