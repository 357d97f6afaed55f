"""The whole accelerator for one layer: the array inside its memory system, with a testbench DRAM.

    DRAM model --(bursts)--> DMA --> operand buffers --(address generators)--> ArrayTop --> accumulator
    buffer --> DMA --> DRAM model

Built from a :class:`~archgen.dataflow.memctl.LayerProgram` (the layer command expanded by
dataflow/memctl.py into one descriptor row per block, from the same ``layer_jobs`` the SimPy model
runs). The control rules are the hardware halves of dataflow/memctl.py: ``layer_sequencer_hw`` (DMA
order and gates) and ``transfer_timer_hw`` (burst timing of the DRAM port). Everything else is data
movement that those rules time:

* buffers (rtlgen/buffer.py ``CyclicBanks``): position p in bank ``p mod banks``, one element per word,
  one write port and synchronous read ports, two halves when double-buffered;
* address generators (:func:`affine_walk_hw`): nested counters with per-block constant strides, adds
  only; a port re-reads its current position every cycle, so what it presents is always up to date;
* the DMA: a load job moves every changed operand block one after another (the timer started the cycle
  after the previous transfer's last cycle); data words arrive ``latency`` cycles after each burst
  request, one word a cycle, and are written straight into the buffer; a write-back streams the
  accumulator half out a word a cycle from its start;
* the testbench DRAM: a memory of ``width_bytes`` words initialised at elaboration with the layer's
  tensors (the host's bulk preload), read back through ``rb_addr``/``rb_data`` after ``finished``.

``cycles`` counts the cycles from the first cycle of the layer to ``finished`` (the model's cycle count).
"""
from __future__ import annotations

from amaranth import Array, Cat, Const, Elaboratable, Module, Mux, Signal, hdl, unsigned
from amaranth.lib.memory import Memory

from archgen.dataflow.ir import PortRole
from archgen.dataflow.memctl import LayerProgram, layer_sequencer_hw, transfer_timer_hw
from archgen.rtlgen.array import ArrayTop
from archgen.rtlgen.buffer import CyclicBanks

__all__ = ["LayerTop", "affine_walk_hw"]

CYCLE_BITS = 40


class _Table:
    """The descriptor table: one packed row per block, read combinationally at three block indices."""

    def __init__(self, m: Module, rows, n_index_bits: int):
        names = sorted({k for r in rows for k in r})
        self.fields = {}
        off = 0
        for n in names:
            w = max(1, max(int(r.get(n, 0)) for r in rows).bit_length())
            self.fields[n] = (off, w)
            off += w
        init = []
        for r in rows:
            word = 0
            for n, (o, w) in self.fields.items():
                word |= int(r.get(n, 0)) << o
            init.append(word)
        self.mem = Memory(shape=unsigned(off), depth=len(rows), init=init)
        m.submodules.descriptors = self.mem
        self.n_index_bits = n_index_bits

    def reader(self, index):
        rp = self.mem.read_port(domain="comb")
        return _Row(self, rp, index)


class _Row:
    def __init__(self, table, rp, index):
        self.table, self.rp = table, rp
        self.index = index

    def connect(self, m):
        m.d.comb += self.rp.addr.eq(self.index)

    def __getitem__(self, name):
        o, w = self.table.fields[name]
        return self.rp.data[o:o + w]

    def get(self, name, default=0):
        return self[name] if name in self.table.fields else Const(default)


def affine_walk_hw(m: Module, name: str, n_levels: int, load, base, strides, trips, advance, pos_bits: int = 24,
                   cnt_bits: int = 20):
    """Nested counters (outer to inner) walking ``base + sum_j c_j * strides[j]`` with adds only: an anchor
    per level holds the position where that level's current iteration began. ``load`` (with ``base``,
    ``strides``, ``trips`` valid that cycle) restarts the walk; ``advance`` steps it. Returns (pos, next,
    counters, trips_minus_1): ``pos`` the current position (registered), ``next`` the position after an
    advance this cycle (combinational)."""
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
    m.d.comb += nxt.eq(pos)
    for j in range(n_levels):              # the innermost incrementing level wins (later assignment)
        with m.If(incs[j]):
            m.d.comb += nxt.eq(anchor[j] + stride[j])
    with m.If(load):
        m.d.sync += [c.eq(0) for c in cnt]
        m.d.sync += [a.eq(base) for a in anchor]
        m.d.sync += [s.eq(v) for s, v in zip(stride, strides)]
        m.d.sync += [t.eq(v - 1) for t, v in zip(tm1, trips)]
    with m.Elif(advance):
        for j in range(n_levels):
            with m.If(incs[j]):
                m.d.sync += [cnt[j].eq(cnt[j] + 1), anchor[j].eq(anchor[j] + stride[j])]
                for i in range(j + 1, n_levels):
                    m.d.sync += [cnt[i].eq(0), anchor[i].eq(anchor[j] + stride[j])]
    return pos, nxt, cnt, tm1


class LayerTop(Elaboratable):
    """Ports: ``go`` (in, level: run the layer), ``finished`` (out), ``cycles`` (out), ``rb_addr``/``rb_data``
    (the testbench DRAM's read-back port)."""

    def __init__(self, prog: LayerProgram, dram_init: list[int], array=None, command_fields=None):
        self.prog = prog
        # a fused array (rtlgen/fused_array.py) runs the layer with extra command fields (its dataflow select)
        self.array, self.command_fields = array, dict(command_fields or {})
        self.dram_init = list(dram_init)
        self.dram_depth = max(1, len(self.dram_init))
        self.go = Signal()
        self.finished = Signal()
        self.cycles = Signal(CYCLE_BITS)
        self.rb_addr = Signal(range(self.dram_depth + 1))
        self.rb_data = Signal(8 * prog.word_bytes)
        # bytes the DMA actually moved, counted from the data path (elements written into a buffer, or
        # read out of the accumulator buffer for DRAM), per "<X>.read" / "<Y>.write"
        op = prog.cmd.design.operation
        self.moved = {f"{x.name}.read": Signal(40, name=f"moved_{x.name}_read") for x in op.inputs}
        self.moved[f"{op.output.name}.write"] = Signal(40, name=f"moved_{op.output.name}_write")

    def ports(self):
        return [self.go, self.finished, self.cycles, self.rb_addr, self.rb_data, *self.moved.values()]

    def elaborate(self, platform):
        m = Module()
        P = self.prog
        comp = P.compiled
        design = comp.design
        op = design.operation
        dram = design.memory_system.dram
        Wb = P.word_bytes
        n = len(P.rows)
        m.submodules.array = arr = ArrayTop(comp) if self.array is None else self.array

        # ---- sequencer (dataflow/memctl.py: DMA order and gates) -------------------------------------
        run = Signal(name="layer_run")
        with m.If(self.go):
            m.d.sync += run.eq(1)
        l_done, w_done, c_done = Signal(name="l_done"), Signal(name="w_done"), Signal(name="c_done")
        seq = layer_sequencer_hw(m, hdl, P.depth, Const(n, 20), l_done, w_done, c_done, run)
        m.d.comb += self.finished.eq(seq.finished)
        with m.If(run & ~seq.finished):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        table = _Table(m, P.rows, 20)
        row_l, row_w, row_c = table.reader(seq.l_block), table.reader(seq.w_block), table.reader(seq.c_block)
        for r in (row_l, row_w, row_c):
            r.connect(m)

        # ---- buffers ---------------------------------------------------------------------------------
        bufs = {}
        for x, lay in P.layouts.items():
            bufs[x] = CyclicBanks(m, f"buf_{x}", lay.banks, lay.depth, 8 * lay.elem_bytes)

        # ---- testbench DRAM ----------------------------------------------------------------------------
        dmem = Memory(shape=unsigned(8 * Wb), depth=self.dram_depth, init=self.dram_init + [0] * (self.dram_depth - len(self.dram_init)))
        m.submodules.dram = dmem
        d_rd = dmem.read_port()
        d_wr = dmem.write_port()
        d_rb = dmem.read_port(domain="comb")
        m.d.comb += [d_rb.addr.eq(self.rb_addr), self.rb_data.eq(d_rb.data)]

        # ---- DMA control: one transfer timer for the DRAM port ---------------------------------------
        inputs = [x.name for x in op.inputs]
        t_start = Signal(name="dma_transfer_start")
        t_bytes = Signal(32, name="dma_transfer_bytes")
        timer = transfer_timer_hw(m, hdl, dram, t_start, t_bytes)
        is_w = Signal(name="dma_job_is_write")             # the running job is a write-back
        pend = Signal(len(inputs), name="dma_pending")      # operands of the load job still to move
        cur = Signal(range(len(inputs) + 1), name="dma_operand")
        kick = Signal(name="dma_kick")                       # start the next transfer of the job this cycle
        lrow = {k: Signal(32, name=f"dma_{k}") for k in ("bytes", "word", "pos", "elems")}
        latched = {f"{k}_{x}": Signal(32, name=f"dma_l_{k}_{x}") for x in inputs for k in ("ld_bytes", "ld_word", "ld_pos", "ld_elems")}
        m.d.sync += kick.eq(0)

        flags = Cat(*[row_l[f"ld_{x}"] for x in inputs])
        first_of = lambda mask: _first_set(mask, len(inputs))      # noqa: E731
        # operand of the transfer starting now, its fields
        sel = Signal(range(len(inputs) + 1), name="dma_sel")
        sel_fields = {k: Signal(32, name=f"dma_sel_{k}") for k in ("bytes", "word", "pos", "elems")}
        with m.If(seq.start_l):
            m.d.comb += sel.eq(first_of(flags))
            for k, fk in (("bytes", "ld_bytes"), ("word", "ld_word"), ("pos", "ld_pos"), ("elems", "ld_elems")):
                m.d.comb += sel_fields[k].eq(Array([row_l[f"{fk}_{x}"] for x in inputs])[sel])
        with m.Else():
            m.d.comb += sel.eq(first_of(pend))
            for k, fk in (("bytes", "ld_bytes"), ("word", "ld_word"), ("pos", "ld_pos"), ("elems", "ld_elems")):
                m.d.comb += sel_fields[k].eq(Array([latched[f"{fk}_{x}"] for x in inputs])[sel])

        with m.If(seq.start_l):
            m.d.sync += is_w.eq(0)
            for x in inputs:
                for k in ("ld_bytes", "ld_word", "ld_pos", "ld_elems"):
                    m.d.sync += latched[f"{k}_{x}"].eq(row_l[f"{k}_{x}"])
            with m.If(flags == 0):
                m.d.comb += l_done.eq(1)                      # an empty job: the sequencer's one cycle
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
                m.d.comb += l_done.eq(1)

        out_name = op.output.name
        with m.If(seq.start_w):
            m.d.sync += is_w.eq(1)
            with m.If(row_w["wr_bytes"] == 0):
                m.d.comb += w_done.eq(1)
            with m.Else():
                m.d.comb += [t_start.eq(1), t_bytes.eq(row_w["wr_bytes"])]
        with m.If(timer.done & is_w):
            m.d.comb += w_done.eq(1)

        # ---- load data path: DRAM words latency cycles after each burst request -----------------------
        c_words = dram.burst_bytes // Wb
        ld_start = t_start & ~seq.start_w
        rd_ptr = Signal(32, name="dram_read_ptr")
        words_left = Signal(32, name="dram_read_words_left")
        burst_left = Signal(range(c_words + 1), name="dram_burst_left")
        dst_pos = Signal(32, name="dma_dst_pos")
        elems_left = Signal(32, name="dma_elems_left")
        target = Signal(range(len(inputs) + 1), name="dma_target")
        with m.If(ld_start):
            m.d.sync += [rd_ptr.eq(sel_fields["word"]), words_left.eq((sel_fields["bytes"] + Wb - 1) >> _log2(Wb))
                         if _is_pow2(Wb) else words_left.eq(_ceil_div_const(sel_fields["bytes"], Wb)),
                         dst_pos.eq(sel_fields["pos"]), elems_left.eq(sel_fields["elems"]), target.eq(sel)]
        issue_rd = timer.issue & ~Mux(t_start, seq.start_w, is_w)
        line = [issue_rd]
        for k in range(dram.latency - 1):
            s = Signal(name=f"dram_req_d{k + 1}")
            m.d.sync += s.eq(line[-1])
            line.append(s)
        burst_go = line[-1]
        reading = Signal(name="dram_reading")
        m.d.comb += reading.eq((burst_go | (burst_left != 0)) & (words_left != 0))
        with m.If(burst_go):
            m.d.sync += burst_left.eq(c_words - 1)
        with m.Elif(burst_left != 0):
            m.d.sync += burst_left.eq(burst_left - 1)
        m.d.comb += d_rd.addr.eq(rd_ptr)
        with m.If(reading & ~ld_start):
            m.d.sync += [rd_ptr.eq(rd_ptr + 1), words_left.eq(words_left - 1)]
        data_v = Signal(name="dram_data_valid")
        m.d.sync += data_v.eq(reading & ~ld_start)
        for xi, x in enumerate(inputs):
            lay = P.layouts[x]
            bits = 8 * lay.elem_bytes
            elems = [d_rd.data[i * bits:(i + 1) * bits] for i in range(lay.per_word)]
            en = [data_v & (target == xi) & (elems_left > i) for i in range(lay.per_word)]
            bufs[x].write_group(m, dst_pos, elems, en)
        for xi, x in enumerate(inputs):
            lay = P.layouts[x]
            with m.If(data_v & (target == xi)):
                m.d.sync += self.moved[f"{x}.read"].eq(self.moved[f"{x}.read"] + lay.elem_bytes * Mux(
                    elems_left >= lay.per_word, lay.per_word, elems_left))
        with m.If(data_v):
            m.d.sync += [dst_pos.eq(dst_pos + P.layouts[inputs[0]].per_word), elems_left.eq(elems_left - P.layouts[inputs[0]].per_word)]
            # (every input has the same element width in the supported designs; checked below)
            with m.If(elems_left < P.layouts[inputs[0]].per_word):
                m.d.sync += elems_left.eq(0)

        # ---- write-back data path: the accumulator half out, one word a cycle ------------------------
        olay = P.layouts[out_name]
        wb_pos = Signal(32, name="wb_pos")
        wb_left = Signal(32, name="wb_words_left")
        wb_ptr = Signal(32, name="wb_dram_ptr")
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
        wb_data = bufs[out_name].read_group(m, wb_pos, olay.per_word)
        with m.If(wb_read):
            m.d.sync += [wb_pos.eq(wb_pos + olay.per_word), wb_left.eq(wb_left - 1)]
        m.d.sync += wb_v.eq(wb_read)
        wb_addr = Signal(32, name="wb_dram_addr")
        with m.If(wb_v):
            m.d.sync += wb_ptr.eq(wb_ptr + 1)
        m.d.comb += [d_wr.en.eq(wb_v), d_wr.addr.eq(wb_ptr), d_wr.data.eq(Cat(*wb_data)), wb_addr.eq(wb_ptr)]

        # ---- compute: the array command and the ports' address generators ----------------------------
        cmdp = arr.cmd.payload
        m.d.comb += arr.cmd.valid.eq(seq.start_c)
        for f in comp.command.fields:
            if f.loop is None:
                m.d.comb += getattr(cmdp, f.name).eq(P.cmd.mapping.steps)
            else:
                m.d.comb += getattr(cmdp, f.name).eq(row_c[f"trips_{f.loop}"])
        for name, value in self.command_fields.items():
            m.d.comb += getattr(cmdp, name).eq(value)
        m.d.comb += c_done.eq(arr.done)

        wr_port = None
        for w in sorted(P.walks, key=lambda w: w.kind != "write"):
            p = getattr(arr, w.port)
            nl = len(w.levels)
            pos, nxt, cnt, tm1 = affine_walk_hw(
                m, w.port, nl, seq.start_c, row_c[f"{w.port}_base"],
                [row_c[f"{w.port}_stride{j}"] for j in range(nl)], [row_c[f"{w.port}_trips{j}"] for j in range(nl)],
                p.valid & p.ready)
            beats = Signal(32, name=f"{w.port}_beats_left")
            fire = p.valid & p.ready
            with m.If(seq.start_c):
                m.d.sync += beats.eq(row_c[f"{w.port}_beats"])
            with m.Elif(fire):
                m.d.sync += beats.eq(beats - 1)
            # lanes and rows in bounds for the current beat
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
            lay = P.layouts[w.operand]
            shape = p.payload[0].shape()
            if w.kind == "write":
                m.d.comb += p.ready.eq(1)
                bits = 8 * lay.elem_bytes
                data = [p.payload[l].as_unsigned()[:bits] if shape.width >= bits else p.payload[l]
                        for l in range(w.lanes)]
                ens = [fire & ok & row_ok for ok in lane_ok]
                wr_port = bufs[w.operand].write_lanes(m, pos, data, ens)
                continue
            m.d.comb += p.valid.eq(beats != 0)
            addr = Signal(32, name=f"{w.port}_read_pos")
            m.d.comb += addr.eq(Mux(seq.start_c, row_c[f"{w.port}_base"], Mux(fire, nxt, pos)))
            vals = bufs[w.operand].read_lanes(m, addr, w.lanes, transparent=(w.kind == "psum"))
            for l in range(w.lanes):
                m.d.comb += p.payload[l].eq(Mux(lane_ok[l] & row_ok, vals[l], 0))
        return m


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
