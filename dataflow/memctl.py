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

import math
from dataclasses import dataclass

from archgen.arch.errors import SpecError, problem
from archgen.arch.spec import DramPort
from archgen.mappings.memory_tiling import Block, LayerCommand, bounding_box, element_bytes

from .interconnect import FUGraph

__all__ = ["check_memory_system", "check_command", "transfer_cycles", "BlockJobs", "layer_jobs",
           "adds_onto_partial_sums", "dma_order", "dma_process", "compute_process",
           "TransferTimerHW", "transfer_timer_hw", "SequencerHW", "layer_sequencer_hw",
           "DescriptorFormat", "descriptor_format", "probe_command"]


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
    if problems:
        raise SpecError(problems)


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


def layer_jobs(cmd: LayerCommand) -> list[BlockJobs]:
    """The job list of a layer command, block by block: residency decides what each L(b) moves."""
    op = cmd.design.operation
    out = op.output.name
    blocks = list(cmd.blocks())
    dep = {x.name: [i for i, d in enumerate(cmd.order) if x.uses(d)] for x in op.operands}

    # each operand's block key (its block index along the loops it depends on), once per block
    keys = {x: [tuple(blk.tiles[i][1] for i in ix) for blk in blocks] for x, ix in dep.items()}

    def key(x: str, k: int):
        return keys[x][k]

    seen_out: set = set()
    jobs = []
    for k, blk in enumerate(blocks):
        load = []
        for x in op.inputs:
            if k == 0 or key(x.name, k - 1) != key(x.name, k):
                load.append((x.name, cmd.footprint_bytes(x.name, blk)))
        new_out = k == 0 or key(out, k - 1) != key(out, k)
        if new_out and key(out, k) in seen_out:
            load.append((out, cmd.footprint_bytes(out, blk)))       # partial sums of an earlier visit
        leaving = k == len(blocks) - 1 or key(out, k + 1) != key(out, k)
        if leaving:
            seen_out.add(key(out, k))
        jobs.append(BlockJobs(blk, tuple(load), cmd.footprint_bytes(out, blk) if leaving else 0))
    return jobs


def adds_onto_partial_sums(cmd: LayerCommand, jobs: list[BlockJobs]) -> list[bool]:
    """Per block: it continues the previous block's output block (a reduction loop split over blocks, the
    output kept in its buffer half), so the array's results add onto the partial sums there."""
    out = cmd.design.operation.output
    ix = [i for i, d in enumerate(cmd.order) if out.uses(d)]
    keys = [tuple(j.block.tiles[i][1] for i in ix) for j in jobs]
    return [k > 0 and keys[k] == keys[k - 1] for k in range(len(jobs))]


def dma_order(n: int, depth: int) -> list[tuple[str, int]]:
    """The DMA's job order: ("L", b) and ("W", b) entries (docs/memory.md)."""
    order = [("L", b) for b in range(min(depth, n))]
    for b in range(n):
        if b + depth < n:
            order.append(("L", b + depth))
        order.append(("W", b))
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
                       width: int = 20) -> SequencerHW:
    """LAYER CONTROLLER (hardware half of ``dma_process`` + ``compute_process``): the DMA's job order and
    the gates of docs/memory.md on counters. ``n_blocks`` (registered, >= 1) and ``run`` (level: the
    layer command is running, cleared by the caller); ``*_done`` are the units' done pulses."""
    Signal = hdl.Signal
    nl, nw, nc = (Signal(width, name=f"{name}_next_{k}") for k in ("load", "write", "compute"))
    lf, wf, cf = (Signal(width, name=f"{name}_{k}_finished") for k in ("loads", "writes", "computes"))
    dma_busy = Signal(name=f"{name}_dma_busy")
    arr_busy = Signal(name=f"{name}_array_busy")
    start_l, start_w, start_c = (Signal(name=f"{name}_start_{k}") for k in "lwc")
    pick_l = (nl < n_blocks) & (nl <= nw + depth)
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

    @property
    def depth(self) -> int:       # words per bank
        return self.halves * self.half_elems // self.banks


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


@dataclass(frozen=True)
class LayerProgram:
    compiled: object
    cmd: LayerCommand
    depth: int
    word_bytes: int
    layouts: dict                 # operand -> BufferLayout
    walks: tuple                  # PortWalk per array stream port
    rows: tuple                   # per block: dict field -> int (the descriptor table)
    dram_words: int
    regions: dict                 # (operand, block key) -> (word address, box lo, box ext (permuted), perm)
    jobs: tuple

    def dram_image(self, tensors: dict) -> list[int]:
        """The DRAM's initial words: every input block, tile-major (the host's bulk preload)."""
        words = [0] * self.dram_words
        for (x, _key), (addr, lo, ext, perm) in self.regions.items():
            if x not in tensors:
                continue
            lay = self.layouts[x]
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
            inv = [perm.index(k) for k in range(len(perm))]
            arr = arr.transpose(inv)
            result[tuple(slice(a, a + e) for a, e in zip(lo, [ext[perm.index(k)] for k in range(len(perm))]))] = arr
        return result


def _box_values(tensor, lo, ext, perm) -> list[int]:
    sl = tuple(slice(lo[k], lo[k] + ext[perm.index(k)]) for k in range(len(lo)))
    return [int(v) for v in tensor[sl].transpose(perm).reshape(-1)]


def _pack(words: list[int], addr: int, values: list[int], eb: int, per_word: int, word_bytes: int) -> None:
    bits = 8 * eb
    mask = (1 << bits) - 1
    for i, v in enumerate(values):
        w, s = divmod(i, per_word)
        words[addr + w] |= (int(v) & mask) << (s * bits)


def _refuse(field: str, msg: str, value=None):
    raise SpecError([problem(field, msg, value) if value is not None else problem(field, msg)])


def check_rtl_command(cmd: LayerCommand, layer: str = "layer") -> None:
    """What the generated top needs beyond the model. A reduction loop split over blocks is supported while
    the output block stays in its buffer half across the split (later blocks add onto the partial sums
    there: the ``acc`` command flag, docs/memory.md); an output block that comes back after another one
    (its partial sums written to DRAM and read again) is refused: the DMA loads inputs only."""
    from archgen.mappings.memory_tiling import _reloads_partial_sums
    if _reloads_partial_sums(cmd):
        op = cmd.design.operation
        nb = cmd.n_blocks()
        split = [d for d in cmd.order if not op.output.uses(d) and nb[d] > 1]
        d = split[0] if split else cmd.order[-1]
        _refuse(f"layers.{layer}.order", f"the reduction loop {d} is split over {nb[d]} blocks and the output block "
                f"comes back after another one, so its partial sums would go to DRAM and back; the generated top keeps "
                f"partial sums on chip only: put the split reduction loops after every loop the output depends on "
                f"(or tile.{d} = {cmd.mapping.trips()[d]})", list(cmd.order))


def layer_program(compiled, cmd: LayerCommand, layer: str = "layer", *, spec_size: bool = True) -> LayerProgram:
    """The command expanded for the generated top: buffer layouts, DRAM layout, and the descriptor
    table (one row per block: what L, C and W do), built from :func:`layer_jobs` (the model's job list).

    ``spec_size``: each buffer half holds ``memory.<X>.bytes / halves`` (what synthesis builds); False
    sizes the halves to this command's largest block (after the same fit check), which keeps a
    simulation build small; the timing does not depend on it."""
    from archgen.dataflow.ir import PortRole, Role, port_name as port_name_of
    check_command(cmd, compiled.fu_graph, layer, compiled.design)
    check_memory_system(compiled.fu_graph, compiled.design)
    check_rtl_command(cmd, layer)
    if compiled.fu_graph.halo:
        # delay connections (issue 14): the array issues halo steps the layer top's descriptors do not carry
        _refuse(f"dataflows.{cmd.dataflow.name}", "has delay connections (FIFO chains with halo steps), which the "
                "generated memory system does not drive yet; run the array alone (archgen verify SPEC --ideal-dram)")
    design, df, fg = compiled.design, compiled.dataflow, compiled.fu_graph
    mem = design.memory_system
    port = mem.dram
    op = design.operation
    W = port.width_bytes
    if port.latency < 1:
        _refuse("memory.dram.latency", "the generated DRAM port needs a latency of at least 1 cycle", port.latency)
    if port.burst_bytes % W:
        _refuse("memory.dram.burst_bytes", f"must be a multiple of memory.dram.width_bytes ({W}) in the generated top",
                port.burst_bytes)
    if len(design.shape) != 2:
        _refuse("array.shape", "the generated memory system supports two-dimensional arrays", list(design.shape))
    depth = 2 if all(b.double_buffer for b in mem.buffers) else 1
    jobs = layer_jobs(cmd)
    blocks = [j.block for j in jobs]
    bound = cmd.bound
    outer = tuple(df.outer_dims())
    inner = tuple(df.inner_dims())
    red = tuple(d for d in outer if not op.output.uses(d))
    if red and tuple(outer[len(outer) - len(red):]) != red:
        _refuse(f"dataflows.{df.name}.order", "the generated memory system needs the reduction tile loops innermost "
                "among the outer loops", list(df.order))
    axis_of = df.axis_of
    shape = design.shape
    out = fg.output

    # per port: how lane l and row r map to FU coordinates
    port_specs = []      # (port name, operand, kind, coords(l, r) -> FU coord, has_rows, steps?)
    for p in fg.inputs:
        pn = port_name_of(PortRole.INPUT, p.name)
        if p.role is Role.STATIONARY:
            port_specs.append((pn, p.name, "read", lambda l, r: (r, l), True))
        else:
            roots = [ln.fus[0] for ln in p.lanes]
            port_specs.append((pn, p.name, "read", (lambda rs: lambda l, r: rs[l])(roots), False))
    if out.role is Role.ACCUMULATE:
        out_coords, out_rows = (lambda l, r: (r, l)), True
    else:
        terms = [ln.fus[-1] for ln in out.lanes]
        out_coords, out_rows = (lambda ts: lambda l, r: ts[l])(terms), False
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
    first = blocks[0]
    start0 = {d: b * dict(cmd.tile)[d] for d, b in first.tiles}
    for pn, x, kind, coords, rows in port_specs:
        xop = op.operand(x)
        if lanes_of[pn] < 2:
            lane_dim.setdefault(x, len(xop.indices) - 1)
            continue
        i0 = index(xop, xvec(first, start0, {}, coords(0, 0)))
        i1 = index(xop, xvec(first, start0, {}, coords(1, 0)))
        diff = [k for k in range(len(i0)) if i0[k] != i1[k]]
        if len(diff) != 1 or i1[diff[0]] - i0[diff[0]] != 1 or lane_dim.get(x, diff[0]) != diff[0]:
            _refuse(f"dataflows.{df.name}", f"port {pn}: its lanes do not step one tensor dimension of {x} by 1; "
                    "the generated buffers cannot bank it")
        lane_dim[x] = diff[0]

    # buffer layouts
    layouts = {}
    for x in op.operands:
        buf = mem.buffer(x.name)
        eb = element_bytes(design, x.name)
        if W % eb:
            _refuse("memory.dram.width_bytes", f"must be a multiple of operand {x.name}'s element size ({eb} B) in "
                    "the generated top", W)
        lanes = max(lanes_of[pn] for pn, xx, *_ in port_specs if xx == x.name)
        banks = _pow2_at_least(max(lanes, W // eb))
        if buf.banks and buf.banks != banks:
            _refuse(f"memory.{x.name}.banks", f"the generated buffer of {x.name} needs {banks} banks (a power of two, at "
                    f"least the {lanes} lanes of one beat and the {W // eb} elements of one DRAM word, so that each "
                    f"moves through one port per bank in one cycle); set {banks}, or 0 to let the generator choose",
                    buf.banks)
        half = buf.bytes // (eb * buf.halves)
        if half < banks:
            _refuse(f"memory.{x.name}.bytes", f"the generated buffer of {x.name} needs at least one {eb}-byte word in "
                    f"each of its {banks} banks per half ({buf.halves} x {banks} x {eb} = {buf.halves * banks * eb} B)",
                    buf.bytes)
        half = half // banks * banks
        need = max(cmd.footprint_bytes(x.name, b) for b in blocks) // eb
        if need > half:
            _refuse(f"memory.{x.name}.bytes", f"a block of {need * eb} B does not fit one half", buf.bytes)
        if not spec_size:
            half = max(banks, -(-need // banks) * banks)
        layouts[x.name] = BufferLayout(x.name, eb, banks, half, buf.halves, W // eb)

    def box(x, blk):
        ranges = {d: (s, e) for d, s, e in blk.ranges}
        extent = bounding_box(design, x, ranges, bound)
        lo = [a for a, _ in extent]
        ext = [b - a + 1 for a, b in extent]
        ld = lane_dim[x]
        perm = [k for k in range(len(lo)) if k != ld] + [ld]
        return tuple(lo), tuple(ext[k] for k in perm), tuple(perm)

    def pos_fn(x, lo, pext, perm):
        pitch = [0] * len(perm)
        acc = 1
        for i in reversed(range(len(perm))):
            pitch[perm[i]] = acc
            acc *= pext[i]
        return lambda idx: sum((idx[k] - lo[k]) * pitch[k] for k in range(len(lo)))

    # DRAM layout: every distinct block of every operand once, word aligned, in first-use order
    dep = {x.name: [i for i, d in enumerate(cmd.order) if x.uses(d)] for x in op.operands}
    adds = adds_onto_partial_sums(cmd, jobs)
    regions: dict = {}
    next_word = 0
    for blk in blocks:
        for x in op.operands:
            key = (x.name, tuple(blk.tiles[i][1] for i in dep[x.name]))
            if key not in regions:
                lo, pext, perm = box(x.name, blk)
                regions[key] = (next_word, lo, pext, perm)
                next_word += -(-math.prod(pext) * layouts[x.name].elem_bytes // W)

    # walks
    coords_of = {pn: coords for pn, _x, _k, coords, _r in port_specs}
    walks = []
    for pn, x, kind, coords, rows in port_specs:
        levels = [f"tile:{d}" for d in outer if not (kind == "psum" and d in red)]
        if kind == "psum" and red:
            levels.append("red")
        levels += ["row"] if rows else [f"inner:{d}" for d in inner]
        lane_loop = next((d for d in outer if d in axis_of and coords(0, 0)[axis_of[d]] != coords(min(1, lanes_of[pn] - 1), 0)[axis_of[d]]), None)
        row_loop = next((d for d in outer if d in axis_of and axis_of[d] == 0), None) if rows else None
        xop = op.operand(x)
        lane_level = levels.index(f"tile:{lane_loop}") if lane_loop and xop.uses(lane_loop) and f"tile:{lane_loop}" in levels else None
        row_level = levels.index(f"tile:{row_loop}") if row_loop and xop.uses(row_loop) and f"tile:{row_loop}" in levels else None
        walks.append(PortWalk(pn, x, kind, tuple(levels), lanes_of[pn], lane_level, row_level,
                              levels.index("row") if rows else None, shape[0] if rows else 1))

    # the descriptor table
    half_of = {x.name: -1 for x in op.operands}
    cur_key: dict = {}
    rows_out = []
    for k, j in enumerate(jobs):
        blk = j.block
        row: dict[str, int] = {}
        start = {d: b * dict(cmd.tile)[d] for d, b in blk.tiles}
        btrips = {d: -(-(e - s) // (shape[axis_of[d]] if d in axis_of else 1)) for d, s, e in blk.ranges if d in outer}
        bext = {d: e - s for d, s, e in blk.ranges}
        for d in outer:
            row[f"trips_{d}"] = btrips[d]
        row["steps"] = math.prod(bext[d] for d in inner)         # this block's chunk of the inner loops
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
                continue
            if x.name in loads:
                half_of[x.name] = (half_of[x.name] + 1) % lay.halves
                row.update({f"ld_{x.name}": 1, f"ld_bytes_{x.name}": loads[x.name], f"ld_word_{x.name}": regions[key][0],
                            f"ld_pos_{x.name}": half_of[x.name] * lay.half_elems,
                            f"ld_elems_{x.name}": loads[x.name] // lay.elem_bytes})
            else:
                row.update({f"ld_{x.name}": 0, f"ld_bytes_{x.name}": 0, f"ld_word_{x.name}": 0, f"ld_pos_{x.name}": 0,
                            f"ld_elems_{x.name}": 0})
        if op.output.name in loads:
            raise AssertionError("check_rtl_command refuses partial-sum reloads")
        for w in walks:
            xop = op.operand(w.operand)
            lo, pext, perm = regions[(w.operand, tuple(blk.tiles[i][1] for i in dep[w.operand]))][1:]
            f = pos_fn(w.operand, lo, pext, perm)
            hb = half_of[w.operand] * layouts[w.operand].half_elems

            def at(vals, l=0, r=0):
                return hb + f(index(xop, xvec(blk, start, vals, coords_of[w.port](l, r))))
            base = at({})
            trips = []
            for lv in w.levels:
                if lv.startswith("tile:"):
                    trips.append(btrips[lv[5:]])
                elif lv == "red":
                    trips.append(math.prod(btrips[d] for d in red) - 1)
                elif lv == "row":
                    trips.append(shape[0])
                else:
                    trips.append(bext[lv[6:]])
            for li, lv in enumerate(w.levels):
                if lv == "red":
                    stride = 0
                elif lv == "row":
                    stride = at({}, 0, 1) - base
                else:
                    stride = at({lv: 1}) - base
                if stride < 0:
                    _refuse(f"dataflows.{df.name}", f"port {w.port}: a negative address stride is not supported")
                row[f"{w.port}_stride{li}"] = stride
                row[f"{w.port}_trips{li}"] = trips[li]
            if w.lanes > 1 and at({}, 1) - base != 1:
                raise AssertionError("lane stride")
            row[f"{w.port}_base"] = base
            row[f"{w.port}_beats"] = math.prod(trips)
            if w.lane_level is not None:
                d = w.levels[w.lane_level][5:]
                row[f"{w.port}_lane_last"] = min(w.lanes, bound[d] - shape[axis_of[d]] * (start[d] + btrips[d] - 1))
            if w.row_level is not None:
                d = w.levels[w.row_level][5:]
                row[f"{w.port}_row_last"] = min(shape[0], bound[d] - shape[axis_of[d]] * (start[d] + btrips[d] - 1))
        rows_out.append(row)
    return LayerProgram(compiled, cmd, depth, W, layouts, tuple(walks), tuple(rows_out), next_word,
                        {k: v for k, v in regions.items()}, tuple(jobs))


# ------------------------------------------------------------------------------------------------
# the run-time command interface of the generated top: the descriptor tables the host writes
#
# The layer command reaches the hardware as three descriptor tables (one row per block, written by the
# host before ``go``, like a DMA descriptor list): L (what L(b) loads: flag, bytes, DRAM word, buffer
# position, elements per input), W (what W(b) writes back) and C (the array command's trip counts and
# every port's base, strides, trip counts and ragged-edge counts). Every field's width follows from the
# design, the dataflow and the memory system alone (never from a layer), so one build runs every layer
# of the dataflow whose values fit; a value that does not fit is refused naming the layer and the field.

DRAM_WORD_BITS = 32          # DRAM word address width of the generated top's port
DESCRIPTOR_ROWS = 512        # blocks one command may have in the synthesis build (the tables' depth)
WALK_COUNTER_BITS = 20       # address generator counters (rtlgen/layer_top.py affine_walk_hw)


@dataclass(frozen=True)
class DescriptorFormat:
    tables: dict                  # "L" | "W" | "C" -> tuple of (field, bits)
    rows: int                     # depth of every table: the most blocks a command may have
    design: str = ""              # the design and dataflow the top was built for
    dataflow: str = ""

    def width(self, table: str) -> int:
        return max(1, sum(w for _, w in self.tables[table]))

    def encode(self, rows, layer: str = "layer", dataflow: str | None = None) -> dict:
        """Packed words per table for the rows of a layer program (``dataflow``: the one it was planned
        for); refuses a command for another dataflow, more blocks than the tables hold, or a row value
        that does not fit its field, naming the layer and the field."""
        if dataflow is not None and self.dataflow and dataflow != self.dataflow:
            _refuse(f"layers.{layer}.dataflow", f"the command was planned for dataflow {dataflow!r}; this top "
                    f"({self.design}) runs {self.dataflow!r}", dataflow)
        if len(rows) > self.rows:
            _refuse(f"layers.{layer}.tile", f"the command has {len(rows)} blocks; the generated descriptor tables "
                    f"hold {self.rows} (larger tiles give fewer blocks)", len(rows))
        out = {}
        for t, fields in self.tables.items():
            words = []
            for r in rows:
                word, off = 0, 0
                for name, w in fields:
                    v = int(r.get(name, 0))
                    if v < 0 or v >> w:
                        _refuse(f"layers.{layer}.{name}", f"the value does not fit the generated top's {w}-bit "
                                "descriptor field", v)
                    word |= v << off
                    off += w
                words.append(word)
            out[t] = words
        return out


def descriptor_format(prog: "LayerProgram", rows: int = DESCRIPTOR_ROWS) -> DescriptorFormat:
    """The descriptor tables' fields and widths for the structure of ``prog`` (its buffers, ports and
    array command), independent of the layer it was expanded from."""
    comp = prog.compiled
    op = comp.design.operation
    pos_bits = {x: (lay.halves * lay.half_elems).bit_length() for x, lay in prog.layouts.items()}
    byte_bits = {x: (lay.half_elems * lay.elem_bytes).bit_length() for x, lay in prog.layouts.items()}
    L = []
    for x in op.inputs:
        n = x.name
        L += [(f"ld_{n}", 1), (f"ld_bytes_{n}", byte_bits[n]), (f"ld_word_{n}", DRAM_WORD_BITS),
              (f"ld_pos_{n}", pos_bits[n]), (f"ld_elems_{n}", byte_bits[n])]
    y = op.output.name
    W = [("wr_bytes", byte_bits[y]), ("wr_word", DRAM_WORD_BITS), ("wr_pos", pos_bits[y]), ("wr_elems", byte_bits[y])]
    steps_bits = max([f.bits for f in comp.command.fields if f.loop is None] or [32])
    C = [(f"trips_{f.loop}", f.bits) for f in comp.command.fields if f.loop is not None] + [("steps", steps_bits),
                                                                                            ("acc", 1)]
    for w in prog.walks:
        pb = pos_bits[w.operand]
        C += [(f"{w.port}_base", pb), (f"{w.port}_beats", 32)]
        for j in range(len(w.levels)):
            C += [(f"{w.port}_stride{j}", pb), (f"{w.port}_trips{j}", WALK_COUNTER_BITS)]
        if w.lane_level is not None:
            C.append((f"{w.port}_lane_last", w.lanes.bit_length()))
        if w.row_level is not None:
            C.append((f"{w.port}_row_last", w.rows.bit_length()))
    return DescriptorFormat({"L": tuple(L), "W": tuple(W), "C": tuple(C)}, rows, comp.design.name, comp.dataflow.name)


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
