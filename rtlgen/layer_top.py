"""The whole accelerator for one layer: the array inside its memory system, with a testbench DRAM.

    DRAM model --(bursts)--> DMA --> operand buffers --(address generators)--> ArrayTop --> accumulator
    buffer --> DMA --> DRAM model

Built from a :class:`~archgen.dataflow.memctl.LayerProgram` (buffer layouts, ports, and the layer's
``WalkerCommand``: one command per layer, whatever its block count). The control rules are the hardware
halves of dataflow/memctl.py: ``block_walker_hw`` (nested block counters, DRAM address adds, residency
flags and the shape table by edge mask: the command expanded block by block, as ``walk_rows`` and the
SimPy model's ``layer_jobs`` do), ``layer_sequencer_hw`` (DMA order and gates) and ``transfer_timer_hw``
(burst timing of the DRAM port). Everything else is data
movement that those rules time:

* buffers (rtlgen/buffer.py ``CyclicBanks``): position p in bank ``p mod banks``, one element per word,
  one write port and synchronous read ports, two halves when double-buffered;
* address generators (:func:`affine_walk_hw`): nested counters with per-block constant strides, adds
  only; a port re-reads its current position every cycle, so what it presents is always up to date;
* the add-on write (a split reduction's later block, command flag ``acc``): the output write walk adds
  the partial sum already in the accumulator buffer to what the array writes where it starts a sum
  from zero (docs/memory.md "Split inner loops and split reductions"); cycle-neutral;
* the DMA: a load job moves every changed operand block one after another (the timer started the cycle
  after the previous transfer's last cycle); data words arrive ``latency`` cycles after each burst
  request, one word a cycle, and are written straight into the buffer; a write-back streams the
  accumulator half out a word a cycle from its start;
* the testbench DRAM: a memory of ``width_bytes`` words initialised at elaboration with the layer's
  tensors (the host's bulk preload), read back through ``rb_addr``/``rb_data`` after ``finished``.

``cycles`` counts the cycles from the first cycle of the layer to ``finished`` (the model's cycle count).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

from amaranth import Array, Cat, Const, Elaboratable, Module, Mux, Signal, hdl, signed, unsigned
from amaranth.lib.memory import Memory

from archgen.dataflow.ir import STEP_BITS
from archgen.dataflow.memctl import (BLOCK_COUNT_BITS, DRAM_WORD_BITS, DescriptorFormat, LayerProgram,
                                     block_walker_hw, descriptor_format, layer_sequencer_hw, transfer_timer_hw)
from archgen.rtlgen.array import ArrayTop
from archgen.rtlgen.buffer import CyclicBanks
from archgen.rtlgen.datapath import fifo_buffer

__all__ = ["LayerCore", "LayerTop", "affine_walk_hw", "buffer_copies", "read_shape"]

CYCLE_BITS = 40
_LD_FIELDS = ("ld_bytes", "ld_word", "ld_pos", "ld_elems")


@dataclass(frozen=True)
class _Dma:
    """The DMA's signals shared by its control, burst-request and load data-path blocks."""
    timer: object          # transfer_timer_hw's outputs (issue, done)
    t_start: Signal        # a transfer starts this cycle
    is_w: Signal           # the running job is a write-back
    ld_start: object       # a load transfer starts this cycle
    sel: Signal            # operand of the transfer starting now
    sel_fields: dict       # its descriptor fields: bytes, word, pos, elems


class _Row:
    """A block's fields as the controller sees them in the current cycle (the block walker's counters,
    flags and addresses, and the shape-table entry of its edge mask), by field name."""

    def __init__(self, fields: dict):
        self.fields = fields

    def __getitem__(self, name):
        return self.fields[name]

    def get(self, name, default=0):
        return self.fields[name] if name in self.fields else Const(default)


def _unpack(fmt: DescriptorFormat, table: str, word) -> dict:
    out, off = {}, 0
    for n, w in fmt.tables[table]:
        out[n] = word[off:off + w].as_signed() if n in fmt.signed else word[off:off + w]
        off += w
    return out


def affine_walk_hw(m: Module, name: str, n_levels: int, load, base, strides, trips, advance, pos_bits: int = 24,
                   cnt_bits: int = 20, hold: tuple[int, int] | None = None, skip=None, holds=()):
    """Nested counters (outer to inner) walking ``base + sum_j c_j * strides[j]`` with adds only: an anchor
    per level holds the position where that level's current iteration began. ``load`` (with ``base``,
    ``strides``, ``trips`` valid that cycle) restarts the walk; ``advance`` steps it. Returns (pos, next,
    counters, trips_minus_1): ``pos`` the current position (registered), ``next`` the position after an
    advance this cycle (combinational). ``hold`` = (level, h): that level's first h iterations stay at its
    first position (the halo steps of delay connections: position base + max(0, c - h) * stride); ``holds``: further
    (level, h) pairs held the same way (a de-skewed output's write over several padded loops). ``skip`` =
    (level, signal): while the signal is high (never with ``advance``) the walk steps that level as if every
    inner level wrapped (a whole iteration of the inner levels skipped in one cycle); ``next`` shows it too."""
    cnt = [Signal(cnt_bits, name=f"{name}_c{j}") for j in range(n_levels)]
    anchor = [Signal(pos_bits, name=f"{name}_anchor{j}") for j in range(n_levels)]
    stride = [Signal(pos_bits, name=f"{name}_stride{j}") for j in range(n_levels)]
    tm1 = [Signal(cnt_bits, name=f"{name}_last{j}") for j in range(n_levels)]
    wrap = [cnt[j] == tm1[j] for j in range(n_levels)]
    pos = anchor[-1]
    nxt = Signal(pos_bits, name=f"{name}_next")
    # level j increments when every inner level wraps and j does not
    incs = []
    for j in range(n_levels):
        inner_wrap = Const(1)
        for i in range(j + 1, n_levels):
            inner_wrap = inner_wrap & wrap[i]
        incs.append(Signal(name=f"{name}_inc{j}"))
        m.d.comb += incs[j].eq(inner_wrap & ~wrap[j])
    step = list(stride)
    if hold is not None and hold[1]:
        hj, h = hold
        step[hj] = Mux(cnt[hj] >= h, stride[hj], 0)
    for hj, h in holds:
        step[hj] = Mux(cnt[hj] >= h, stride[hj], 0)
    skips = []
    if skip is not None:                   # level j steps on a skip when levels j+1 .. sj wrap and j does not
        sj, on = skip
        for j in range(sj + 1):
            w_in = Const(1)
            for i in range(j + 1, sj + 1):
                w_in = w_in & wrap[i]
            skips.append(Signal(name=f"{name}_skip{j}"))
            m.d.comb += skips[j].eq(on & w_in & ~wrap[j])
    m.d.comb += nxt.eq(pos)
    skipping = Cat(*skips).any() if skips else Const(0)
    for j in range(n_levels):              # the innermost incrementing level wins (later assignment)
        with m.If(incs[j] if not skips else Mux(skipping, skips[j], incs[j]) if j < len(skips) else incs[j] & ~skipping):
            m.d.comb += nxt.eq(anchor[j] + step[j])
    with m.If(load):
        m.d.sync += [c.eq(0) for c in cnt]
        m.d.sync += [a.eq(base) for a in anchor]
        m.d.sync += [s.eq(v) for s, v in zip(stride, strides)]
        m.d.sync += [t.eq(v - 1) for t, v in zip(tm1, trips)]
    with m.Elif(advance):
        for j in range(n_levels):
            with m.If(incs[j]):
                m.d.sync += [cnt[j].eq(cnt[j] + 1), anchor[j].eq(anchor[j] + step[j])]
                for i in range(j + 1, n_levels):
                    m.d.sync += [cnt[i].eq(0), anchor[i].eq(anchor[j] + step[j])]
    if skips:
        with m.Elif(skip[1]):
            for j in range(len(skips)):
                with m.If(skips[j]):
                    m.d.sync += [cnt[j].eq(cnt[j] + 1), anchor[j].eq(anchor[j] + step[j])]
                    for i in range(j + 1, n_levels):
                        m.d.sync += [cnt[i].eq(0), anchor[i].eq(anchor[j] + step[j])]
    return pos, nxt, cnt, tm1


class LayerCore(Elaboratable):
    """The synthesizable accelerator: array, buffers, address generators, DMA and layer controller, with
    an external DRAM port and a run-time command interface. One build runs every layer of its dataflow
    (the structure comes from ``prog``'s buffers and ports, never from its layer).

    Command interface (host side, written while ``go`` is low): ``desc_we`` writes row ``desc_addr`` of
    the command's tables (``desc_k``, ``desc_b``, ``desc_s``: levels, bases and block count, shape table;
    fields in ``dataflow/memctl.descriptor_format``), held in registers. ``go`` (level) runs the layer; ``finished`` rises when it has ended; dropping ``go`` resets the controller.

    DRAM port (fixed-latency contract, the one the cycle model times): a read burst request
    (``rd_req_valid``, word address ``rd_req_addr``, ``rd_req_words`` words) is answered with
    ``rd_req_words`` words on ``rd_rsp_valid``/``rd_rsp_data``, one a cycle, the first exactly
    ``memory.dram.latency`` cycles after the request. Writes: burst requests on ``wr_req_*`` (issued on
    the same timer) and the data as a word stream ``wr_valid``/``wr_addr``/``wr_data`` (posted; the
    write job ends at the timer's acknowledge time)."""

    def __init__(self, prog: LayerProgram, fmt: DescriptorFormat | None = None, array=None, command_fields=None):
        self.prog = prog
        # a fused array (rtlgen/fused_array.py) runs the layer with extra command fields (its dataflow select)
        self.array, self.command_fields = array, dict(command_fields or {})
        self.fmt = fmt or descriptor_format(prog)
        self.alt_walks = ()                 # one core for several dataflows: each one's walks (buffer_copies)
        ab = max(1, (max(self.fmt.depths.values()) - 1).bit_length())
        Wbits = 8 * prog.word_bytes
        self.go = Signal()
        self.finished = Signal()
        self.cycles = Signal(CYCLE_BITS)
        self.desc_we = Signal()
        self.desc_addr = Signal(ab)
        self.desc = {t: Signal(self.fmt.width(t), name=f"desc_{t.lower()}") for t in self.fmt.tables}
        self.rd_req_valid = Signal()
        self.rd_req_addr = Signal(DRAM_WORD_BITS)
        self.rd_req_words = Signal(16)
        self.rd_rsp_valid = Signal()
        self.rd_rsp_data = Signal(Wbits)
        self.wr_req_valid = Signal()
        self.wr_req_addr = Signal(DRAM_WORD_BITS)
        self.wr_req_words = Signal(16)
        self.wr_valid = Signal()
        self.wr_addr = Signal(DRAM_WORD_BITS)
        self.wr_data = Signal(Wbits)
        # bytes the DMA actually moved, counted from the data path (elements written into a buffer, or
        # read out of the accumulator buffer for DRAM), per "<X>.read" / "<Y>.write"
        op = prog.compiled.design.operation
        spill = prog.compiled.design.memory_system.partial_sums_through_dram     # the output's read too
        self.moved = {f"{x.name}.read": Signal(40, name=f"moved_{x.name}_read")
                      for x in (*op.inputs, *((op.output,) if spill else ()))}
        self.moved[f"{op.output.name}.write"] = Signal(40, name=f"moved_{op.output.name}_write")

    def ports(self):
        return [self.go, self.finished, self.cycles, self.desc_we, self.desc_addr, *self.desc.values(),
                self.rd_req_valid, self.rd_req_addr, self.rd_req_words, self.rd_rsp_valid, self.rd_rsp_data,
                self.wr_req_valid, self.wr_req_addr, self.wr_req_words, self.wr_valid, self.wr_addr, self.wr_data,
                *self.moved.values()]

    def elaborate(self, platform):
        m = Module()
        P = self.prog
        comp = P.compiled
        op = comp.design.operation
        m.submodules.array = arr = ArrayTop(comp) if self.array is None else self.array
        regs = self._command_registers(m)
        # memory.partial_sums_through_dram: the next load job may bring partial sums back (after W(b - D))
        spill = comp.design.memory_system.partial_sums_through_dram
        l_back = Signal(name="load_partial_sums_next") if spill else None
        run, seq, done = self._sequencer(m, _unpack(self.fmt, "B", regs["B"][0])["blocks"], l_back)
        rows = self._block_walkers(m, run, seq, regs)
        if spill:
            m.d.comb += l_back.eq(rows["L"]["back"])
        bufs = self._buffers(m)
        loads = [x.name for x in op.inputs] + [op.output.name] * spill     # what a load job moves, in this order
        dma = self._dma_control(m, seq, rows, done, loads)
        self._burst_requests(m, seq, rows, dma)
        self._load_datapath(m, bufs, dma, loads)
        self._write_back(m, seq, rows["W"], bufs[op.output.name])
        self._array_command(m, arr, seq, rows["C"], done)
        self._psum_lags = []                # a de-skewed output's write and psum delays (lane 0), from _port_walk
        for w in sorted(P.walks, key=lambda w: w.kind != "write"):
            self._port_walk(m, arr, w, seq, rows["C"], bufs[w.operand], bufs.get((w.operand, "back")))
        self._psum_skew(m, arr, seq)
        return m

    def _psum_skew(self, m, arr, seq):
        """A de-skewed output read back as partial sums: the array's read-after-write wait counts the beats S by
        which the write of an element follows the psum walk's read of it (dataflow/control.py ``psum_raw_hw``), the
        write's and the psum's delay of any one lane (span - offset and offset summed over the padded loops: lane
        0's, as the walks set them per block, memctl ``psum_read_skew`` for the model). Latched with the array's
        command (the compute row is valid at ``start_c``), so it is valid from the command's first running cycle;
        the array keeps None (no wait added) for every other output."""
        if len(self._psum_lags) < 2:        # nothing de-skewed, or no partial sums read back
            return
        skew = Signal(STEP_BITS, name="psum_skew")
        with m.If(seq.start_c):
            m.d.sync += skew.eq(sum(self._psum_lags))
        arr.psum_skew = skew

    def _sequencer(self, m, n_blocks, l_back):
        """dataflow/memctl.py's DMA order and gates; the cycle and byte counters run while ``go`` is high.
        ``l_back``: the next load job loads partial sums (it goes after W(b - depth)); None without them."""
        run = Signal(name="layer_run")
        m.d.sync += run.eq(self.go)
        done = {"L": Signal(name="l_done"), "W": Signal(name="w_done"), "C": Signal(name="c_done")}
        seq = layer_sequencer_hw(m, hdl, self.prog.depth, n_blocks, done["L"], done["W"], done["C"], run,
                                 width=BLOCK_COUNT_BITS, l_after_w=l_back)
        m.d.comb += self.finished.eq(seq.finished)
        with m.If(run & ~seq.finished):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(~run):
            m.d.sync += [self.cycles.eq(0), *[v.eq(0) for v in self.moved.values()]]
        return run, seq, done

    def _command_registers(self, m):
        """The layer command (tables K, B, S of ``descriptor_format``) in registers, row ``desc_addr`` of
        every table written by the host while ``desc_we``."""
        regs = {}
        for t in self.fmt.tables:
            regs[t] = [Signal(self.fmt.width(t), name=f"cmd_{t.lower()}{i}") for i in range(self.fmt.depth(t))]
            for i, r in enumerate(regs[t]):
                with m.If(self.desc_we & (self.desc_addr == i)):
                    m.d.sync += r.eq(self.desc[t])
        return regs

    def _block_walkers(self, m, run, seq, regs):
        """One block walker per job kind (memctl ``block_walker_hw``), stepping as its jobs start: L (input
        addresses, residency flags and halves), W (output address, half, write-back flag) and C (halves and
        the add-on flag); each reads the shape table at its block's edge mask. Returns the rows by kind."""
        P, fmt = self.prog, self.fmt
        op = P.compiled.design.operation
        names, inputs, y = list(P.layouts), [x.name for x in op.inputs], op.output.name
        K = [_unpack(fmt, "K", r) for r in regs["K"]]
        B = _unpack(fmt, "B", regs["B"][0])
        halves = {x: lay.halves for x, lay in P.layouts.items()}
        args = ([k["trips"] for k in K], {x: [k[f"stride_{x}"] for k in K] for x in names},
                {x: [k[f"reload_{x}"] for k in K] for x in names}, {x: B[f"base_{x}"] for x in names})
        spill = P.compiled.design.memory_system.partial_sums_through_dram
        # a later visit of the output block (its partial sums come back from DRAM), when the spec grants it
        back = {"revisit": [k["revisit"] for k in K], "output": y} if spill else {}
        wl = block_walker_hw(m, hdl, *args, inputs + [y] * spill, inputs + [y] * spill, halves, seq.start_l, run,
                             "walk_l", **back)
        ww = block_walker_hw(m, hdl, *args, [y], [y], halves, seq.start_w, run, "walk_w")
        wc = block_walker_hw(m, hdl, *args, names, [], halves, seq.start_c, run, "walk_c", **back)

        sbits = (fmt.depth("S") - 1).bit_length()

        def shape(walker, name):
            word = Signal(fmt.width("S"), name=f"{name}_shape")
            m.d.comb += word.eq(Array(regs["S"])[walker.mask[:sbits]] if sbits else regs["S"][0])
            return _unpack(fmt, "S", word)

        def pos(walker, x):
            return Mux(walker.half[x], P.layouts[x].half_elems, 0) if halves[x] == 2 else Const(0)
        sl, sw, sc = shape(wl, "walk_l"), shape(ww, "walk_w"), shape(wc, "walk_c")
        row_l = {}
        for x in inputs:
            # a FIFO chain root's operand sits ld_off_X into its half (memctl.chained_inputs: the margin)
            off = sl.get(f"ld_off_{x}", None)
            row_l.update({f"ld_{x}": wl.fresh[x], f"ld_bytes_{x}": sl[f"ld_bytes_{x}"], f"ld_word_{x}": wl.addr[x],
                          f"ld_pos_{x}": pos(wl, x) if off is None else pos(wl, x) + off,
                          f"ld_elems_{x}": sl[f"ld_elems_{x}"]})
        if spill:       # the output's partial sums come back (a later visit): at the block's position in its half
            row_l.update({f"ld_{y}": wl.back, f"ld_bytes_{y}": sl["wr_bytes"], f"ld_word_{y}": wl.addr[y],
                          f"ld_pos_{y}": pos(wl, y), f"ld_elems_{y}": sl["wr_elems"], "back": wl.back})
        row_w = {"wr_bytes": Mux(ww.leaving[y], sw["wr_bytes"], 0), "wr_word": ww.addr[y], "wr_pos": pos(ww, y),
                 "wr_elems": sw["wr_elems"]}
        row_c = {k: v for k, v in sc.items() if not k.startswith(("ld_", "wr_"))}
        row_c["acc"] = ~wc.fresh[y] | wc.back if spill else ~wc.fresh[y]
        if spill:
            row_c["back"] = wc.back
        for w in P.walks:
            row_c[f"{w.port}_base"] = sc[f"{w.port}_base"] + pos(wc, w.operand)
        return {"L": _Row(row_l), "W": _Row(row_w), "C": _Row(row_c)}

    def _buffers(self, m):
        """One banked buffer per operand, with a read copy per reader (:func:`buffer_copies`). The output
        has one more copy, the *psum-load copy* (key ``(Y, "back")``): written only by the DMA when a later
        visit's partial sums come back from DRAM, read only by the add-on write of that visit's block. It
        is a memory of its own because the array writes the other copies (the other half) while the DMA
        loads it, and a block RAM has one write port."""
        P = self.prog
        y = P.compiled.design.operation.output.name
        spill = P.compiled.design.memory_system.partial_sums_through_dram     # the psum-load copy is built
        copies = buffer_copies(P, self.alt_walks)
        bufs = {x: CyclicBanks(m, f"buf_{x}", lay.banks, lay.depth, 8 * lay.elem_bytes,
                               copies=copies[x] - (x == y and spill))
                for x, lay in P.layouts.items()}
        if spill:
            lay = P.layouts[y]
            bufs[(y, "back")] = CyclicBanks(m, f"buf_{y}_back", lay.banks, lay.depth, 8 * lay.elem_bytes)
        return bufs

    def _dma_control(self, m, seq, rows, done, loads):
        """One transfer timer for the DRAM port: a load job moves its flagged operands one after another
        (the first starts with the job, each next one the cycle after the previous ends); a write-back job
        is one transfer. ``loads``: the operands a load job may move, in order (the inputs, then the output's
        partial sums on a later visit). Returns the DMA's shared signals (timer, selected operand and its fields)."""
        row_l, row_w = rows["L"], rows["W"]
        t_start = Signal(name="dma_transfer_start")
        t_bytes = Signal(32, name="dma_transfer_bytes")
        timer = transfer_timer_hw(m, hdl, self.prog.compiled.design.memory_system.dram, t_start, t_bytes)
        is_w = Signal(name="dma_job_is_write")
        pend = Signal(len(loads), name="dma_pending")      # operands of the load job still to move
        cur = Signal(range(len(loads) + 1), name="dma_operand")
        kick = Signal(name="dma_kick")                       # start the next transfer of the job this cycle
        latched = {f"{k}_{x}": Signal(32, name=f"dma_l_{k}_{x}") for x in loads for k in _LD_FIELDS}
        m.d.sync += kick.eq(0)
        flags = Cat(*[row_l[f"ld_{x}"] for x in loads])
        sel, sel_fields = self._dma_select(m, seq, row_l, flags, pend, latched, loads)
        with m.If(seq.start_l):
            m.d.sync += is_w.eq(0)
            for x in loads:
                for k in _LD_FIELDS:
                    m.d.sync += latched[f"{k}_{x}"].eq(row_l[f"{k}_{x}"])
            with m.If(flags == 0):
                m.d.comb += done["L"].eq(1)                   # an empty job: the sequencer's one cycle
            with m.Else():
                m.d.comb += [t_start.eq(1), t_bytes.eq(sel_fields["bytes"])]
                m.d.sync += [cur.eq(sel), pend.eq(flags & ~(1 << sel))]
        with m.If(kick):
            m.d.comb += [t_start.eq(1), t_bytes.eq(sel_fields["bytes"])]
            m.d.sync += [cur.eq(sel), pend.eq(pend & ~(1 << sel))]
        with m.If(timer.done & ~is_w):
            with m.If(pend != 0):
                m.d.sync += kick.eq(1)
            with m.Else():
                m.d.comb += done["L"].eq(1)
        with m.If(seq.start_w):
            m.d.sync += is_w.eq(1)
            with m.If(row_w["wr_bytes"] == 0):
                m.d.comb += done["W"].eq(1)
            with m.Else():
                m.d.comb += [t_start.eq(1), t_bytes.eq(row_w["wr_bytes"])]
        with m.If(timer.done & is_w):
            m.d.comb += done["W"].eq(1)
        return _Dma(timer, t_start, is_w, t_start & ~seq.start_w, sel, sel_fields)

    @staticmethod
    def _dma_select(m, seq, row_l, flags, pend, latched, loads):
        """The operand of the transfer starting now (the first flagged one) and its descriptor fields: from
        the load row when the job starts, from the job's latched copy for its later transfers."""
        sel = Signal(range(len(loads) + 1), name="dma_sel")
        sel_fields = {k: Signal(32, name=f"dma_sel_{k}") for k in ("bytes", "word", "pos", "elems")}
        with m.If(seq.start_l):
            m.d.comb += sel.eq(_first_set(flags, len(loads)))
            for k, fk in zip(("bytes", "word", "pos", "elems"), _LD_FIELDS):
                m.d.comb += sel_fields[k].eq(Array([row_l[f"{fk}_{x}"] for x in loads])[sel])
        with m.Else():
            m.d.comb += sel.eq(_first_set(pend, len(loads)))
            for k, fk in zip(("bytes", "word", "pos", "elems"), _LD_FIELDS):
                m.d.comb += sel_fields[k].eq(Array([latched[f"{fk}_{x}"] for x in loads])[sel])
        return sel, sel_fields

    def _burst_requests(self, m, seq, rows, dma):
        """One burst request per timer issue, word addresses consecutive within a transfer."""
        Wb = self.prog.word_bytes
        row_w = rows["W"]
        c_words = self.prog.compiled.design.memory_system.dram.burst_bytes // Wb
        ld_start = dma.ld_start
        writing = Mux(dma.t_start, seq.start_w, dma.is_w)
        req_ptr = Signal(DRAM_WORD_BITS, name="dma_req_word")
        req_left = Signal(32, name="dma_req_words_left")
        cur_ptr = Signal(DRAM_WORD_BITS, name="dma_req_word_now")
        cur_left = Signal(32, name="dma_req_words_left_now")
        with m.If(ld_start):
            m.d.comb += [cur_ptr.eq(dma.sel_fields["word"]), cur_left.eq(_ceil_div_const(dma.sel_fields["bytes"], Wb))]
        with m.Elif(dma.t_start):
            m.d.comb += [cur_ptr.eq(row_w["wr_word"]), cur_left.eq(_ceil_div_const(row_w["wr_bytes"], Wb))]
        with m.Else():
            m.d.comb += [cur_ptr.eq(req_ptr), cur_left.eq(req_left)]
        words_now = Mux(cur_left < c_words, cur_left, c_words)
        with m.If(dma.timer.issue):
            m.d.sync += [req_ptr.eq(cur_ptr + c_words), req_left.eq(cur_left - words_now)]
        m.d.comb += [self.rd_req_valid.eq(dma.timer.issue & ~writing), self.rd_req_addr.eq(cur_ptr),
                     self.rd_req_words.eq(words_now),
                     self.wr_req_valid.eq(dma.timer.issue & writing), self.wr_req_addr.eq(cur_ptr),
                     self.wr_req_words.eq(words_now)]

    def _load_datapath(self, m, bufs, dma, loads):
        """The read response words straight into the selected operand's buffer (the output's partial sums
        into its psum-load copy), counted per operand."""
        P = self.prog
        y = P.compiled.design.operation.output.name
        dst_pos = Signal(32, name="dma_dst_pos")
        elems_left = Signal(32, name="dma_elems_left")
        target = Signal(range(len(loads) + 1), name="dma_target")
        with m.If(dma.ld_start):
            m.d.sync += [dst_pos.eq(dma.sel_fields["pos"]), elems_left.eq(dma.sel_fields["elems"]), target.eq(dma.sel)]
        data_v = self.rd_rsp_valid
        widths = [P.layouts[x].per_word for x in loads]
        per_word = widths[0]           # every input has the same element width in the supported designs
        if len(set(widths)) > 1:       # the output's partial sums (int32) come back too
            per_word = Signal(range(max(widths) + 1), name="dma_elems_per_word")
            m.d.comb += per_word.eq(Array(widths)[target])
        for xi, x in enumerate(loads):
            lay = P.layouts[x]
            bits = 8 * lay.elem_bytes
            elems = [self.rd_rsp_data[i * bits:(i + 1) * bits] for i in range(lay.per_word)]
            en = [data_v & (target == xi) & (elems_left > i) for i in range(lay.per_word)]
            bufs[(x, "back") if x == y else x].write_group(m, dst_pos, elems, en)
        for xi, x in enumerate(loads):
            lay = P.layouts[x]
            with m.If(data_v & (target == xi)):
                m.d.sync += self.moved[f"{x}.read"].eq(self.moved[f"{x}.read"] + lay.elem_bytes * Mux(
                    elems_left >= lay.per_word, lay.per_word, elems_left))
        with m.If(data_v):
            m.d.sync += [dst_pos.eq(dst_pos + per_word), elems_left.eq(elems_left - per_word)]
            with m.If(elems_left < per_word):
                m.d.sync += elems_left.eq(0)

    def _write_back(self, m, seq, row_w, obuf):
        """The accumulator half out to the DRAM write stream, one word a cycle from the job's start."""
        P = self.prog
        Wb = P.word_bytes
        out_name = P.compiled.design.operation.output.name
        olay = P.layouts[out_name]
        wb_pos = Signal(32, name="wb_pos")
        wb_left = Signal(32, name="wb_words_left")
        wb_ptr = Signal(DRAM_WORD_BITS, name="wb_dram_ptr")
        wb_v = Signal(name="wb_valid")
        wb_elems = Signal(32, name="wb_elems_left")
        with m.If(seq.start_w & (row_w["wr_bytes"] != 0)):
            m.d.sync += [wb_pos.eq(row_w["wr_pos"]), wb_ptr.eq(row_w["wr_word"]), wb_elems.eq(row_w["wr_elems"]),
                         wb_left.eq(_ceil_div_const(row_w["wr_bytes"], Wb))]
        with m.Elif(wb_left != 0):
            take = Mux(wb_elems >= olay.per_word, olay.per_word, wb_elems)
            m.d.sync += [wb_elems.eq(wb_elems - take),
                         self.moved[f"{out_name}.write"].eq(self.moved[f"{out_name}.write"] + olay.elem_bytes * take)]
        wb_read = Signal(name="wb_reading")
        m.d.comb += wb_read.eq(wb_left != 0)
        wb_data = obuf.read_group(m, wb_pos, olay.per_word, port="drain")
        with m.If(wb_read):
            m.d.sync += [wb_pos.eq(wb_pos + olay.per_word), wb_left.eq(wb_left - 1)]
        m.d.sync += wb_v.eq(wb_read)
        with m.If(wb_v):
            m.d.sync += wb_ptr.eq(wb_ptr + 1)
        m.d.comb += [self.wr_valid.eq(wb_v), self.wr_addr.eq(wb_ptr), self.wr_data.eq(Cat(*wb_data))]

    def _array_command(self, m, arr, seq, row_c, done):
        """The array's command from the compute row, issued when the compute job starts."""
        cmdp = arr.cmd.payload
        m.d.comb += arr.cmd.valid.eq(seq.start_c)
        for f in self.prog.compiled.command.fields:
            if f.loop is None:
                m.d.comb += getattr(cmdp, f.name).eq(row_c["steps"])
            else:
                m.d.comb += getattr(cmdp, f.name).eq(row_c[f"trips_{f.loop}"])
        for name, value in self.command_fields.items():
            m.d.comb += getattr(cmdp, name).eq(value)
        m.d.comb += done["C"].eq(arr.done)

    def _port_walk(self, m, arr, w, seq, row_c, buf, bufs_back=None, alts=None):
        """One array port's address generator: its buffer positions walked per beat, lanes and rows out of
        the block's bounds masked (reads give 0, writes are dropped). ``alts``: [(walk, on, prog)] this port's
        walk in each dataflow of one core for several (rtlgen/fused_layer.py), ``on`` high while that dataflow
        is selected: one generator each, the selected one's position and masks drive the buffer; default ``w``."""
        p = getattr(arr, w.port)
        fire = p.valid & p.ready
        if alts is None:
            st = self._walk_state(m, w, w.port, seq, row_c, fire, self.prog)
        else:
            st = _select_state([self._walk_state(m, wa, f"{w.port}_{wp.compiled.dataflow.name}", seq, row_c,
                                                 fire & on, wp, on) for wa, on, wp in alts], [on for _, on, _ in alts])
        lay = self.prog.layouts[w.operand]
        shape = p.payload[0].shape()
        if w.kind == "write":
            m.d.comb += p.ready.eq(1)
            bits = 8 * lay.elem_bytes
            data = [p.payload[l].as_unsigned()[:bits] if shape.width >= bits else p.payload[l]
                    for l in range(w.lanes)]
            data = _deskewed(m, w, alts, data, fire, seq, row_c, self.prog.compiled.design.max_fifo_depth)
            if any(wa.deskew or wa.deskew_terms for wa, _, _ in alts or [(w, None, None)]):
                self._psum_lags.append(_lane0_delay(w, alts, row_c))
            wdata = [Signal(bits, name=f"{w.port}_wdata{l}") for l in range(w.lanes)]
            en = [fire & ok & st.row_ok for ok in st.lane_ok]
            if _scatters(w, alts):       # each lane at its own position, in its own bank (memctl.PortWalk.scatter)
                buf.write_scattered(m, st.pos, _lane_offsets(m, w, alts, seq, row_c, ahead=False), wdata, en,
                                    _write_live(m, w, alts, seq, row_c, en))
            else:   # a lane-interleaved output: lane l at its offset in the one run (the selected dataflow's, _run_lanes)
                buf.write_lanes(m, st.pos, *_run_lanes(w, alts, wdata, en))
            self._add_onto_partial_sums(m, w, seq, row_c, (buf, bufs_back), st, fire, data, wdata, alts)
            return
        m.d.comb += p.valid.eq(st.beats != 0)
        addr = Signal(32, name=f"{w.port}_read_pos")
        m.d.comb += addr.eq(Mux(seq.start_c, row_c[f"{w.port}_base"], Mux(st.moving, st.nxt, st.pos)))
        if _scatters(w, alts):
            vals = buf.read_scattered(m, addr, _lane_offsets(m, w, alts, seq, row_c), transparent=True, port=w.kind,
                                      live=_live_lanes(m, w, alts, seq, row_c))
        elif alts is not None and len({read_shape(wa) for wa, _, _ in alts}) > 1:
            vals = self._selected_read(m, w, alts, seq, row_c, buf, addr)
        elif w.lane_groups:
            vals = self._lane_map_read(m, w, seq, row_c, buf, addr)
        else:
            vals = buf.read_lanes(m, addr, 1 if w.broadcast else w.lanes * w.lane_step,
                                  transparent=(w.kind == "psum"), port=w.kind)
            if w.broadcast:              # every lane holds the element at lane 0's position (memctl.PortWalk)
                vals = [vals[0]] * w.lanes
            vals = vals[::w.lane_step]   # lane l at position base + lane_step x l
        if any(wa.deskew or wa.deskew_terms for wa, _, _ in alts or [(w, None, None)]):   # a streamed output's psums
            self._psum_lags.append(_lane0_delay(w, alts, row_c))
            vals = _deskewed(m, w, alts, [Mux(st.lane_ok[l] & st.row_ok, vals[l], 0) for l in range(w.lanes)], fire,
                             seq, row_c, self.prog.compiled.design.max_fifo_depth)
            m.d.comb += [p.payload[l].eq(vals[l]) for l in range(w.lanes)]
            return
        for l in range(w.lanes):
            m.d.comb += p.payload[l].eq(Mux(st.lane_ok[l] & st.row_ok, vals[l], 0))

    @staticmethod
    def _lane_map_read(m, w, seq, row_c, buf, addr):
        """Lanes on several array axes (memctl.PortWalk.lane_groups): group g reads one run of ``w.run``
        positions from ``addr`` + its command offset through its own read copy; lane l takes its offset in it."""
        runs = _group_runs(m, w.port, w.kind, w.groups, w.run, seq, row_c, buf, addr)
        return [runs[g][o] for g, o in zip(w.lane_groups, w.lane_offsets)]

    @staticmethod
    def _selected_read(m, w, alts, seq, row_c, buf, addr):
        """The port's lanes read the way of the selected dataflow, for one core whose dataflows read this port
        differently (one run, broadcast, a lane step, a lane map: ``read_shape``). The read copies are shared, as
        one dataflow runs at a time: copy g reads the run of group g, from ``addr`` plus the command's offset
        ``<port>_group<g>`` (0 in a dataflow with fewer groups), as long as the longest run any dataflow reads
        (each fits the buffer's banks, and their layouts are equal); each dataflow's lanes take their elements
        of those runs. The lanes are muxed on the select after the registered read, like the walk state
        (``_select_state``), so the selection adds no cycle: a layer of D keeps D's cycles."""
        assert len({(wa.kind, wa.operand) for wa, _, _ in alts}) == 1, alts
        n = max(wa.run if wa.lane_groups else 1 if wa.broadcast else wa.lanes * wa.lane_step for wa, _, _ in alts)
        runs = _group_runs(m, w.port, w.kind, max(wa.groups for wa, _, _ in alts), n, seq, row_c, buf, addr)
        lanes = []
        for wa, _, _ in alts:
            if wa.lane_groups:
                got = [runs[g][o] for g, o in zip(wa.lane_groups, wa.lane_offsets)]
            else:
                got = [runs[0][0]] * wa.lanes if wa.broadcast else runs[0][:wa.lanes * wa.lane_step:wa.lane_step]
            lanes.append(got + [Const(0)] * (w.lanes - len(got)))     # a narrower walk's other lanes are masked
        ons = [on for _, on, _ in alts]
        return [_pick_on([vals[l] for vals in lanes], ons) for l in range(w.lanes)]

    def _walk_state(self, m, w, name, seq, row_c, fire, prog, on=None):
        """One walk's counters (``affine_walk_hw``), beats left and masks; ``fire`` advances it. ``on`` (one
        core for several dataflows): the walk loads only while its dataflow is selected."""
        nl = len(w.levels)
        skip = None
        if w.skip_level is not None:          # a first visit's tile (every reduction level at 0): no partial sums
            sk = Signal(name=f"{name}_skip_tile")
            skip = (w.skip_level, sk)
        load = seq.start_c if on is None else seq.start_c & on
        pos, nxt_pos, cnt, tm1 = affine_walk_hw(
            m, name, nl, load, row_c[f"{w.port}_base"],
            [row_c[f"{w.port}_stride{j}"] for j in range(nl)], [row_c[f"{w.port}_trips{j}"] for j in range(nl)],
            fire, hold=(w.halo_level, w.halo) if w.halo_level is not None else None, skip=skip, holds=w.holds)
        beats = Signal(32, name=f"{name}_beats_left")
        if skip is not None and w.keep_levels:    # a kept stationary load (ArraySchedule.loads): skip its tiles
            at_tile_start = Cat(*[cnt[j] == 0 for j in (*w.red_levels, *range(w.skip_level + 1, nl))]).all()
            cond = ~seq.start_c & (beats != 0) & at_tile_start & Cat(*[cnt[j] != 0 for j in w.keep_levels]).any()
            m.d.comb += skip[1].eq(cond if on is None else cond & on)
        elif skip is not None:
            at_tile_start = Cat(*[cnt[j] == 0 for j in (*w.red_levels, *range(w.skip_level + 1, nl))]).all()
            cond = ~seq.start_c & (beats != 0) & at_tile_start
            m.d.comb += skip[1].eq(cond if on is None else cond & on)
        with m.If(load):
            m.d.sync += beats.eq(row_c[f"{w.port}_beats"])
        with m.Elif(fire):
            m.d.sync += beats.eq(beats - 1)
        lane_ok, row_ok = self._walk_bounds(m, w, seq, row_c, cnt, tm1)
        if w.halo_level is not None and w.halo:      # a halo step: no element of this port (masked)
            row_ok = row_ok & (cnt[w.halo_level] >= w.halo)
        for hj, h in w.holds:                        # the other padded levels of a de-skewed output's write
            row_ok = row_ok & (cnt[hj] >= h)
        red = {d for d in prog.cmd.dataflow.outer_dims() if not prog.compiled.design.operation.output.uses(d)}
        first = Const(1)                      # the first reduction tile of the command (add-on writes)
        for j, lv in enumerate(w.levels):
            if lv.startswith("tile:") and lv[5:] in red:
                first = first & (cnt[j] == 0)
        return SimpleNamespace(pos=pos, nxt=nxt_pos, beats=beats, lane_ok=lane_ok, row_ok=row_ok, first=first,
                               moving=fire if skip is None else fire | skip[1])

    def _add_onto_partial_sums(self, m, w, seq, row_c, bufs, st, fire, data, wdata, alts=None):
        """A split reduction's later block, or a later visit of an output block (command flag ``acc``): where
        the array starts a sum from zero (the first reduction tile of the command; every tile when the
        reduction is the streamed loop) the result written is the array's plus the partial sum already at
        that position. The old value comes from the accumulator's own read copy (a continued block) or from
        the psum-load copy the DMA filled from DRAM (a later visit: ``back``), addressed one cycle ahead like
        the read walks (transparent for the write port), so the add costs no cycle: the write port stays
        always ready. ``alts`` (one core for several dataflows): lane l's old value is at the selected
        dataflow's position of lane l (:func:`_run_orders`)."""
        buf, buf_back = bufs
        first = st.first
        acc = Signal(name=f"{w.port}_acc")
        with m.If(seq.start_c):
            m.d.sync += acc.eq(row_c["acc"])
        if buf_back is not None:          # memory.partial_sums_through_dram
            back = Signal(name=f"{w.port}_acc_from_dram")
            with m.If(seq.start_c):
                m.d.sync += back.eq(row_c["back"])
        addr = Signal(32, name=f"{w.port}_acc_pos")
        m.d.comb += addr.eq(Mux(seq.start_c, row_c[f"{w.port}_base"], Mux(fire, st.nxt, st.pos)))
        scatter = _scatters(w, alts)
        if scatter:                       # each lane at its own position (memctl.PortWalk.scatter)
            lane_offs = _lane_offsets(m, w, alts, seq, row_c, name="acc")
            live = _live_lanes(m, w, alts, seq, row_c, name="acc")
            kept = buf.read_scattered(m, addr, lane_offs, transparent=True, port="accumulate", live=live)
            loaded = (buf_back.read_scattered(m, addr, lane_offs, port="accumulate", live=live)
                      if buf_back is not None else None)
        else:
            kept = buf.read_lanes(m, addr, w.lanes, transparent=True, port="accumulate")
            loaded = buf_back.read_lanes(m, addr, w.lanes, port="accumulate") if buf_back is not None else None
        bits = len(wdata[0])
        offs = ([list(range(w.lanes))] if scatter else
                [[at.index(l) for l in range(w.lanes)] for at in _run_orders(w, alts)])   # lane l's run position
        for l in range(w.lanes):
            olds = [kept[off[l]] if loaded is None else Mux(back, loaded[off[l]], kept[off[l]]) for off in offs]
            old = _pick_on(olds, [on for _, on, _ in alts or ()]) if len(offs) > 1 else olds[0]
            m.d.comb += wdata[l].eq(Mux(acc & first, (data[l] + old)[:bits], data[l]))

    @staticmethod
    def _walk_bounds(m, w, seq, row_c, cnt, tm1):
        """Lanes and rows in bounds for the current beat (a ragged block's last lane/row group is short)."""
        lane_ok = [Const(1)] * w.lanes
        lane_last = Signal(16, name=f"{w.port}_lane_last")
        row_last = Signal(16, name=f"{w.port}_row_last")
        with m.If(seq.start_c):
            m.d.sync += [lane_last.eq(row_c.get(f"{w.port}_lane_last", w.lanes)),
                         row_last.eq(row_c.get(f"{w.port}_row_last", w.rows))]
        if w.lane_level is not None:
            j = w.lane_level
            nv = Mux(cnt[j] == tm1[j], lane_last, w.lanes)
            lane_ok = [nv > l for l in range(w.lanes)]
        row_ok = Const(1)
        if w.row_level is not None:
            j = w.row_level
            nv = Mux(cnt[j] == tm1[j], row_last, w.rows)
            row_ok = cnt[w.row_counter] < nv
        for tl, a, n, cs in w.lane_masks:        # lanes on several array axes: one bound per axis (memctl)
            last = Signal(range(n + 1), name=f"{w.port}_lane_last{a}")
            with m.If(seq.start_c):
                m.d.sync += last.eq(row_c.get(f"{w.port}_lane_last@{a}", n))
            nv = Mux(cnt[tl] == tm1[tl], last, n)
            lane_ok = [ok & (nv > c) for ok, c in zip(lane_ok, cs)]
        for tl, rl, n in w.row_masks:            # rows of a reduction loop on a leading axis (memctl.PortWalk)
            last = Signal(range(n + 1), name=f"{w.port}_row_last{rl}")
            with m.If(seq.start_c):
                m.d.sync += last.eq(row_c.get(f"{w.port}_row_last@{rl}", n))
            row_ok = row_ok & (cnt[rl] < Mux(cnt[tl] == tm1[tl], last, n))
        for tl, offs, step in w.tile_masks:      # an output lane on its FU's tile t - offset of a skewed outer loop
            tiles = Signal(len(tm1[tl]), name=f"{w.port}_tile_len{tl}")
            with m.If(seq.start_c):
                m.d.sync += tiles.eq(row_c[f"{w.port}_tile_len@{tl}"])
            lead = _row_lead(w, cnt, step)
            lane_ok = [ok & (cnt[tl] >= o + lead) & (cnt[tl] < o + lead + tiles) for ok, o in zip(lane_ok, offs)]
        row = _drained_row(w, cnt) if w.drain_rows else None
        for ln, keep in enumerate(w.drain_rows):  # waited drain groups: only representatives' rows (memctl)
            lane_ok[ln] = lane_ok[ln] & Cat(*(row == r for r in keep)).any()
        return lane_ok, row_ok


class LayerTop(Elaboratable):
    """The simulation wrapper: :class:`LayerCore` with a DRAM (the spec's fixed latency, one word a cycle,
    preloaded at elaboration: the host's bulk write) and a host that writes the layer's command rows
    into the core's tables, one row a cycle, before raising the core's ``go``. Ports: ``go`` (in, level:
    run the layer), ``finished`` (out), ``cycles`` (out: from the core's first running cycle, the model's
    count), ``rb_addr``/``rb_data`` (the DRAM's read-back port), ``moved`` (the core's byte counters)."""

    def __init__(self, prog: LayerProgram, dram_init: list[int], array=None, command_fields=None,
                 layer: str = "layer", fmt: DescriptorFormat | None = None):
        self.prog = prog
        self.dram_init = list(dram_init)
        self.dram_depth = max(1, len(self.dram_init))
        # a simulation build for one command: the shape table holds the rows its edge masks need; ``fmt``
        # (e.g. ``descriptor_format(prog)``, every edge mask) runs the synthesis build's core instead
        self.fmt = fmt or descriptor_format(prog, shape_rows=1 << max(prog.command.shapes).bit_length())
        self.words = self.fmt.encode(prog.command, layer, prog.cmd.dataflow.name)
        self.core = LayerCore(prog, self.fmt, array, command_fields)
        self.go = Signal()
        self.finished = Signal()
        self.cycles = Signal(CYCLE_BITS)
        self.rb_addr = Signal(range(self.dram_depth + 1))
        self.rb_data = Signal(8 * prog.word_bytes)
        self.moved = self.core.moved

    def ports(self):
        return [self.go, self.finished, self.cycles, self.rb_addr, self.rb_data, *self.moved.values()]

    def elaborate(self, platform):
        m = Module()
        core = self.core
        m.submodules.core = core
        P = self.prog
        n = max(self.fmt.depths.values())
        m.d.comb += [self.finished.eq(core.finished), self.cycles.eq(core.cycles)]

        # ---- host: the layer command into the core's registers (one row of each table a cycle), then go --
        ab = len(core.desc_addr)
        idx = Signal(ab + 1, name="host_row")
        for t in self.fmt.tables:
            rom = Memory(shape=unsigned(self.fmt.width(t)), depth=len(self.words[t]), init=self.words[t])
            m.submodules[f"host_rows_{t.lower()}"] = rom
            rp = rom.read_port(domain="comb")
            m.d.comb += [rp.addr.eq(idx), core.desc[t].eq(rp.data)]
        loading = self.go & (idx < n)
        m.d.comb += [core.desc_we.eq(loading), core.desc_addr.eq(idx), core.go.eq(self.go & (idx == n))]
        with m.If(loading):
            m.d.sync += idx.eq(idx + 1)

        # ---- DRAM: answers a read burst latency cycles after its request, one word a cycle ----------
        simulated_dram(m, word_bytes=P.word_bytes, depth=self.dram_depth, init=self.dram_init,
                       latency=P.compiled.design.memory_system.dram.latency, addr_bits=DRAM_WORD_BITS,
                       rd_req=(core.rd_req_valid, core.rd_req_addr, core.rd_req_words),
                       rd_rsp=(core.rd_rsp_valid, core.rd_rsp_data),
                       wr=(core.wr_valid, core.wr_addr, core.wr_data), rb=(self.rb_addr, self.rb_data))
        return m


def simulated_dram(m: Module, *, word_bytes: int, depth: int, init: list, latency: int, addr_bits: int,
                   rd_req, rd_rsp, wr, rb) -> None:
    """The simulation tops' DRAM: a read burst (valid, first word, words) is answered `latency` cycles after
    its request, one word a cycle (rd_rsp: valid, data); writes (valid, word, data) are posted; rb (addr,
    data) is the host's combinational read-back port."""
    dmem = Memory(shape=unsigned(8 * word_bytes), depth=depth, init=init + [0] * (depth - len(init)))
    m.submodules.dram = dmem
    d_rd = dmem.read_port()
    d_wr = dmem.write_port()
    d_rb = dmem.read_port(domain="comb")
    m.d.comb += [d_rb.addr.eq(rb[0]), rb[1].eq(d_rb.data)]
    line = [tuple(rd_req)]
    for k in range(latency - 1):
        v = Signal(name=f"dram_req_d{k + 1}")
        a = Signal(addr_bits, name=f"dram_req_addr_d{k + 1}")
        w = Signal(16, name=f"dram_req_words_d{k + 1}")
        m.d.sync += [v.eq(line[-1][0]), a.eq(line[-1][1]), w.eq(line[-1][2])]
        line.append((v, a, w))
    go_v, go_a, go_w = line[-1]
    ptr = Signal(addr_bits, name="dram_read_ptr")
    left = Signal(16, name="dram_read_words_left")
    reading = Signal(name="dram_reading")
    m.d.comb += reading.eq(go_v | (left != 0))
    m.d.comb += d_rd.addr.eq(Mux(go_v, go_a, ptr))
    with m.If(go_v):
        m.d.sync += [ptr.eq(go_a + 1), left.eq(go_w - 1)]
    with m.Elif(left != 0):
        m.d.sync += [ptr.eq(ptr + 1), left.eq(left - 1)]
    m.d.sync += rd_rsp[0].eq(reading)
    m.d.comb += rd_rsp[1].eq(d_rd.data)
    m.d.comb += [d_wr.en.eq(wr[0]), d_wr.addr.eq(wr[1]), d_wr.data.eq(wr[2])]


def buffer_copies(prog: LayerProgram, alt_walks: tuple = ()) -> dict[str, int]:
    """Read copies of each operand's buffer (rtlgen/buffer.py: one simple dual-port memory per reader): one per
    array port reading it, one per lane-map group; the output's also one for the write-back, one for the add
    onto partial sums and with ``memory.partial_sums_through_dram`` the psum-load copy (partial sums loaded
    back from DRAM, written by the DMA only). ``alt_walks``: every dataflow's walks of one core for several
    (rtlgen/fused_layer.py), whose dataflows share a port's copies: the port has the most groups of any."""
    op = prog.compiled.design.operation
    extra = 3 if prog.compiled.design.memory_system.partial_sums_through_dram else 2
    groups = {w.port: max([w.copies] + [a.copies for a in alt_walks if a.port == w.port]) for w in prog.walks}
    out = {}
    for x in prog.layouts:
        n = sum(groups[w.port] for w in prog.walks if w.operand == x and w.kind != "write")   # a run per group
        out[x] = max(1, n + (extra if x == op.output.name else 0))
    return out


def _run_order(w, lanes: int = 0) -> list[int]:
    """The lane written at each position of a write walk's run: lane l at ``w.lane_offsets[l]`` (one group: an
    output's lanes on several array axes in the lane-interleaved layout, memctl.output_lane_split), else l.
    ``lanes``: the port's width when wider than the walk (its further lanes at their own positions)."""
    tail = list(range(w.lanes, max(lanes, w.lanes)))
    if not w.lane_groups:
        return list(range(w.lanes)) + tail
    assert w.groups == 1 and sorted(w.lane_offsets) == list(range(w.lanes)), w
    return [w.lane_offsets.index(j) for j in range(w.lanes)] + tail


def _run_orders(w, alts) -> list[list[int]]:
    """:func:`_run_order` of each dataflow's walk of the port in ``alts`` (one core for several), or just one
    when they all agree (then no mux is built: a single-dataflow core and a fused core whose outputs agree keep
    their Verilog)."""
    orders = [_run_order(wa, w.lanes) for wa, _, _ in alts or [(w, None, None)]]
    return orders if any(o != orders[0] for o in orders) else orders[:1]


def _run_lanes(w, alts, wdata, en) -> tuple[list, list]:
    """The data and enable written at each position of the output's run (:func:`_run_order`); in one core for
    several dataflows (``alts``) whose lanes land in different orders (a lane-interleaved output in one of them,
    or another interleaving), each position muxed on the select: combinational, so the write keeps its cycle."""
    ats = _run_orders(w, alts)
    if len(ats) == 1:
        return [wdata[l] for l in ats[0]], [en[l] for l in ats[0]]
    ons = [on for _, on, _ in alts]
    return ([_pick_on([wdata[at[j]] for at in ats], ons) for j in range(w.lanes)],
            [_pick_on([en[at[j]] for at in ats], ons) for j in range(w.lanes)])


def read_shape(w) -> tuple:
    """How a read walk serves its lanes (memctl.PortWalk): one run, broadcast, a lane step, a lane map."""
    return w.broadcast, w.lane_step, w.lane_groups, w.lane_offsets, w.run


def _group_runs(m, port, kind, groups, n, seq, row_c, buf, addr):
    """Runs of ``n`` positions, one per lane-map group g through its own read copy (reader ``kind``, then
    ``kind@g``): group 0 from ``addr``, group g from ``addr`` + the command field ``<port>_group<g>``, latched
    when the compute job starts."""
    runs = []
    for g in range(groups):
        pos = addr
        if g:
            off = Signal(32, name=f"{port}_group{g}_off")
            with m.If(seq.start_c):
                m.d.sync += off.eq(row_c[f"{port}_group{g}"])
            pos = Signal(32, name=f"{port}_group{g}_pos")
            m.d.comb += pos.eq(addr + Mux(seq.start_c, row_c[f"{port}_group{g}"], off))
        runs.append(buf.read_lanes(m, pos, n, transparent=(kind == "psum"), port=kind if g == 0 else f"{kind}@{g}"))
    return runs


def _scatters(w, alts) -> bool:
    """Whether the port's walk (in any dataflow of one core for several) puts each lane at its own position
    (memctl.PortWalk.scatter)."""
    return any(wa.scatter for wa, _, _ in alts or [(w, None, None)])


def _lane_offsets(m, w, alts, seq, row_c, ahead: bool = True, name: str = ""):
    """Each lane's position from the walk's, for a port written (and read) lane by lane (:func:`_scatters`): in a
    scattered walk lane l sits at its group's command field ``<port>_group<g>`` (latched when the compute job
    starts; group 0 at 0) plus its offset in the group; in any other its run position (:func:`_run_order`); in one
    core for several dataflows (``alts``) the selected one's. ``ahead``: a read addressed one cycle ahead, which
    takes the field itself in the start cycle."""
    each = []
    for i, (wa, _on, _p) in enumerate(alts or [(w, None, None)]):
        if not wa.scatter:
            at = _run_order(wa, w.lanes)
            each.append([Const(at.index(ln)) for ln in range(w.lanes)])
            continue
        offs = {0: Const(0)}
        for g in range(1, wa.groups):
            f = row_c[f"{w.port}_group{g}"]
            off = Signal(signed(len(f) + 1), name=f"{w.port}{name}_scatter{g}_off" + (f"_{i}" if alts else ""))
            with m.If(seq.start_c):
                m.d.sync += off.eq(f)
            offs[g] = Mux(seq.start_c, f, off) if ahead else off
        each.append([offs[g] + o for g, o in zip(wa.lane_groups, wa.lane_offsets)]
                    + [Const(ln) for ln in range(wa.lanes, w.lanes)])
    if len(each) == 1:
        return each[0]
    ons = [on for _, on, _ in alts]
    return [_pick_on([e[ln] for e in each], ons) for ln in range(w.lanes)]


def _live_lanes(m, w, alts, seq, row_c, ahead: bool = True, name: str = ""):
    """Per lane of a scattered port whether it is in bounds at some beat of the block (memctl ``live_lanes``: with
    one tile along a lane-mask axis, only the lanes before its ``lane_last@a``), from the block's command fields
    (latched when the compute job starts; ``ahead``: the field itself in the start cycle); the crossbar gives a bank
    to live lanes only (two lanes may share a bank when one of them never writes). On one core for several
    dataflows, each dataflow's own: the port's lanes past a dataflow's own count are not live under its select (they
    would take banks from its real lanes)."""
    each = []
    for i, (wa, _on, _p) in enumerate(alts or [(w, None, None)]):
        live = [Const(1)] * wa.lanes + [Const(0)] * (w.lanes - wa.lanes)
        for tl, a, _n, cs in wa.lane_masks if wa.scatter else ():
            got = []
            for field in (f"{w.port}_trips{tl}", f"{w.port}_lane_last@{a}"):
                reg = Signal(len(row_c[field]), name=f"{w.port}{name}_live_{field[len(w.port) + 1:]}_{i}".replace("@", "_"))
                with m.If(seq.start_c):
                    m.d.sync += reg.eq(row_c[field])
                got.append(Mux(seq.start_c, row_c[field], reg) if ahead else reg)
            live = [ok & ((got[0] > 1) | (got[1] > c)) for ok, c in zip(live, cs)] + live[len(cs):]
        each.append(live)
    if len(each) == 1:
        return each[0]
    ons = [on for _, on, _ in alts]
    return [_pick_on([e[ln] for e in each], ons) for ln in range(w.lanes)]


def _row_lead(w, cnt, step):
    """A tile mask's offset lead at the current drained row (memctl.PortWalk.tile_masks): its step times the row
    counter, or over several leading axes of a 3-D array the sum of each ``row@a`` level's step times its counter."""
    if isinstance(step, tuple):
        return sum(st * cnt[j] for j, st in step if st)
    return step * cnt[w.row_counter] if step else 0


def _drained_row(w, cnt):
    """The drained row's index (memctl.PortWalk.drain_rows numbers them): the row counter, or over several leading
    axes of a 3-D array their ``row@a`` counters unravelled (the last axis fastest)."""
    if w.row_counter is not None:
        return cnt[w.row_counter]
    at = [j for j, lv in enumerate(w.levels) if lv.startswith("row@")]
    return sum(cnt[j] * math.prod(w.row_extents[i + 1:]) for i, j in enumerate(at))


def _write_live(m, w, alts, seq, row_c, en):
    """The write crossbar's live lanes (:func:`_live_lanes`); where lanes of one drain group share a position
    (memctl.PortWalk.lane_alias), only the enabled lane of a beat (the representative's row) takes its bank, so a
    padding lane neither writes nor mixes its data into the element."""
    live = _live_lanes(m, w, alts, seq, row_c, ahead=False)
    if not any(wa.lane_alias for wa, _, _ in alts or [(w, None, None)]):
        return live
    return [ok & e for ok, e in zip(live, en)]


def _delayed(m, name, values, delays, fire):
    """Each lane's value ``delays[l]`` beats (``fire``s) ago: a shift register per lane that moves on every beat
    (an output streamed over a padded loop, memctl.output_deskew; its first positions of a row carry the previous
    row's last, which the write walk masks). No delays: the values themselves."""
    if not delays:
        return values
    out = []
    for l, (v, d) in enumerate(zip(values, delays)):
        regs = [Signal(len(v), name=f"{name}{l}_{i}") for i in range(d)]
        with m.If(fire):
            m.d.sync += [r.eq(prev) for r, prev in zip(regs, [v, *regs[:-1]])]
        out.append(regs[-1] if regs else v)
    return out


def _delayed_by(m, name, values, terms, trips, load, fire, max_depth: int):
    """Each lane's value a number of beats ago set per block (an output streamed over several padded loops, or
    loops after the padded one, memctl.deskew_terms): lane l by sum_j terms[l][j] x the trips of the levels after j,
    computed from the block's ``trips`` when ``load`` (the compute row's start) and held in a register. A buffer
    per lane written on every beat and read that many beats back (rtlgen/datapath.py ``fifo_buffer``) of the
    largest delay memctl lets a block ask: a row position of a padded level that is not the walk's last is at most
    ``array.max_fifo_depth`` beats (memctl ``_check_deskewed_output``). A lane without terms: its value."""
    out = []
    n = len(trips)
    for l, (v, cs) in enumerate(zip(values, terms)):
        if not any(cs):
            out.append(v)
            continue
        bound = sum(c * (1 if j == n - 1 else max_depth) for j, c in enumerate(cs))
        beats = Signal(range(bound + 1), name=f"{name}{l}_beats")
        with m.If(load):
            m.d.sync += beats.eq(_term_beats(cs, trips))
        out.append(fifo_buffer(m, f"{name}{l}", v, unsigned(len(v)), fire, 1, beats, bound))
    return out


def _term_beats(cs, trips):
    """sum_j cs[j] x the beats of one position of level j (the product of the ``trips`` of the levels after it)."""
    total = Const(0)
    for j, c in enumerate(cs):
        if c:
            per = Const(1)
            for t in trips[j + 1:]:
                per = per * t
            total = total + c * per
    return total


def _lane0_delay(w, alts, row_c):
    """The beats by which a de-skewed walk delays its lane 0 (``deskew`` or ``deskew_terms``, :func:`_deskewed`),
    the selected dataflow's in one core for several (``alts``; 0 for a walk without de-skew)."""
    walks = [(w, None, None)] if alts is None else alts
    beats = [_term_beats(wa.deskew_terms[0], [row_c[f"{wa.port}_trips{j}"] for j in range(len(wa.levels))])
             if wa.deskew_terms else Const(wa.deskew[0] if wa.deskew else 0) for wa, _, _ in walks]
    return beats[0] if alts is None else _pick_on(beats, [on for _, on, _ in walks])


def _deskewed(m, w, alts, values, fire, seq, row_c, max_depth: int):
    """A port's lanes delayed per lane by its walk's ``deskew`` (:func:`_delayed`) or ``deskew_terms``
    (:func:`_delayed_by`, from the compute row's trips); in one core for several dataflows (``alts``: [(walk, on,
    prog)]), by the selected dataflow's walk (a mux on ``on`` after the delays)."""
    walks = [(w, None, None)] if alts is None else alts
    if not any(wa.deskew or wa.deskew_terms for wa, _, _ in walks):
        return values
    outs = [_delayed(m, f"{w.port}_deskew{i}_", values, wa.deskew, fire) if not wa.deskew_terms else
            _delayed_by(m, f"{w.port}_deskew{i}_", values, wa.deskew_terms,
                        [row_c[f"{wa.port}_trips{j}"] for j in range(len(wa.levels))],
                        seq.start_c if on is None else seq.start_c & on, fire,
                        max_depth if wp is None else wp.compiled.design.max_fifo_depth)
            for i, (wa, on, wp) in enumerate(walks)]
    if alts is None:
        return outs[0]
    n = len(values)
    outs = [list(o) + [Const(0)] * (n - len(o)) for o in outs]
    return [_pick_on([o[l] for o in outs], [on for _, on, _ in walks]) for l in range(n)]


def _pick_on(values, ons):
    """The value of the selected dataflow (one ``on`` high): a mux chain, the last value the default."""
    out = values[-1]
    for v, on in zip(reversed(values[:-1]), reversed(ons[:-1])):
        out = Mux(on, v, out)
    return out


def _select_state(states, ons):
    """The walk state of the selected dataflow (one ``on`` high): every field through a mux chain on ``ons``;
    a walk of fewer lanes than the port's widest (a FIFO chain root's one lane) masks the others."""
    n = max(len(st.lane_ok) for st in states)
    for st in states:
        st.lane_ok = list(st.lane_ok) + [Const(0)] * (n - len(st.lane_ok))

    def pick(get):
        return _pick_on([get(st) for st in states], ons)
    fields = {k: pick(lambda st, k=k: getattr(st, k)) for k in ("pos", "nxt", "beats", "row_ok", "first", "moving")}
    return SimpleNamespace(lane_ok=[pick(lambda st, l=l: st.lane_ok[l]) for l in range(n)], **fields)


def _first_set(mask, n):
    out = Const(n, range(n + 1))
    for i in reversed(range(n)):
        out = Mux(mask[i], i, out)
    return out


def _is_pow2(v: int) -> bool:
    return v & (v - 1) == 0


def _log2(v: int) -> int:
    return v.bit_length() - 1


def _ceil_div_const(x, d: int):
    if _is_pow2(d):
        return (x + d - 1) >> _log2(d)
    return (x + d - 1) // d      # division by a constant (the DRAM word), never by a run-time value
