"""A skewed stt array behind its memory system (dataflow/stt_layer.py states the plan and the cycle contract).

``SttLayerTop`` is a simulation top with the ports of the tiled layer top (``go``, ``finished``, ``cycles``,
``rb_addr``/``rb_data``, ``moved_*``), so verif/layer_binary.py runs it as a stand-alone Verilator binary:

* a DRAM preloaded at elaboration (fixed latency, one word a cycle, as rtlgen/layer_top.py ``LayerTop``);
* the DMA: the burst timer of the tiled core (``transfer_timer_hw``), one burst request per timer issue,
  response words written into the loading tensor's buffer, one copy per lane of that input (word = one DRAM
  word of elements; a lane selects its element in the word);
* the array (rtlgen/stt_array.py ``SttArrayTop``, unchanged) and one stream sequencer per port
  (rtlgen/stt_stream.py), started with the array command, advanced by the array's slot enable;
* one output store per output lane (written by that lane, read back by the same partial-sum lane), summed
  over lanes by the write-back, which streams the output tensor to DRAM one word a cycle.

Blocks (``plan.grid``): block counters (an odometer, reduction loops innermost) after each command or
write-back; region bases are the block counters times constants; the partial-sum sequencer's ``carry`` is
high on a reduction block after the first; the write-back only after the last reduction block, clearing the
store words it reads.

Buffers and stores read combinationally (the simulation build; a block-RAM build would address one slot
ahead, as the tiled core does). Sizes follow the problem: one build per layer.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

from amaranth import Cat, Elaboratable, Module, Mux, Signal, hdl, unsigned
from amaranth.lib.memory import Memory

from archgen.dataflow.ir import PortRole, port_name
from archgen.dataflow.memctl import transfer_timer_hw
from archgen.dataflow.stt_array import tag_port
from archgen.dataflow.stt_layer import SttLayerPlan

from .datapath import delay_line, shape_of
from .layer_top import simulated_dram
from .stt_array import SttArrayTop
from .stt_stream import SttLaneSequencer

__all__ = ["SttLayerTop"]

CYCLE_BITS = 40


class SttLayerTop(Elaboratable):
    def __init__(self, plan: SttLayerPlan, compiled, dram_init: list[int]):
        self.plan = plan
        self.compiled = compiled
        self.dram_init = list(dram_init)
        self.dram_depth = max(1, plan.dram_words)
        op = plan.design.operation
        self.go = Signal()
        self.finished = Signal()
        self.cycles = Signal(CYCLE_BITS)
        self.rb_addr = Signal(range(self.dram_depth + 1))
        self.rb_data = Signal(8 * plan.word_bytes)
        self.moved = {f"{x.name}.read": Signal(CYCLE_BITS, name=f"moved_{x.name}_read") for x in op.inputs}
        self.moved[f"{op.output.name}.write"] = Signal(CYCLE_BITS, name=f"moved_{op.output.name}_write")

    def ports(self):
        return [self.go, self.finished, self.cycles, self.rb_addr, self.rb_data, *self.moved.values()]

    def elaborate(self, platform):
        m = Module()
        arr = SttArrayTop(self.compiled)
        m.submodules.array = arr
        c = self._controller(m, arr)
        bufs = self._dma(m, c)
        store_reads = self._streams(m, arr, c, bufs)
        self._write_back(m, c, store_reads)
        self._dram(m, c)
        return m

    def _controller(self, m, arr) -> SimpleNamespace:
        """Per block: loads (one per input), the array command, the write-back (after the last reduction block),
        one after another; the burst timer."""
        P = self.plan
        op = P.design.operation
        inputs = [x.name for x in op.inputs]
        y = op.output.name
        n_in = len(inputs)
        state = Signal(range(n_in + 4), name="state")      # 0..n_in-1 load X, n_in cmd, +1 run, +2 write, +3 end
        entered = Signal(init=1, name="state_entered")     # the state's first cycle
        running = Signal(name="layer_running")
        m.d.comb += running.eq(self.go & (state != n_in + 3))
        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        m.d.comb += self.finished.eq(state == n_in + 3)
        loading = Signal(name="loading")
        writing = Signal(name="writing")
        in_running = Signal(name="streams_on")
        m.d.comb += [loading.eq(self.go & (state < n_in)), writing.eq(self.go & (state == n_in + 2)),
                     in_running.eq(self.go & (state == n_in + 1))]
        t_start = Signal(name="dma_start")
        t_bytes = Signal(32, name="dma_bytes")
        m.d.comb += t_start.eq((loading | writing) & entered)
        with m.Switch(state):
            for xi, x in enumerate(inputs):
                with m.Case(xi):
                    m.d.comb += t_bytes.eq(P.tensor_bytes(x))
            with m.Case(n_in + 2):
                m.d.comb += t_bytes.eq(P.tensor_bytes(y))
        timer = transfer_timer_hw(m, hdl, P.design.memory_system.dram, t_start, t_bytes, name="dma")
        m.d.sync += entered.eq(0)
        blk, last_red, last_all, carry, next_block = self._block_grid(m)
        advance = Signal(name="state_advance")
        with m.If(self.go):
            with m.If(loading & timer.done):
                m.d.comb += advance.eq(1)
            with m.If(writing & timer.done):
                with m.If(last_all):
                    m.d.comb += advance.eq(1)
                with m.Else():
                    m.d.comb += next_block.eq(1)
                    m.d.sync += [state.eq(0), entered.eq(1)]
            with m.If(state == n_in):
                m.d.comb += [arr.cmd.valid.eq(1), arr.cmd.payload.steps.eq(P.tiling.slots)]
                m.d.comb += advance.eq(arr.cmd.ready)
            with m.If((state == n_in + 1) & arr.done):
                with m.If(last_red):
                    m.d.comb += advance.eq(1)
                with m.Else():                          # the next reduction block: no write-back
                    m.d.comb += next_block.eq(1)
                    m.d.sync += [state.eq(0), entered.eq(1)]
        with m.If(advance):
            m.d.sync += [state.eq(state + 1), entered.eq(1)]

        bases = {t: self._region_base(m, blk, t) for t in inputs + [y]}
        return SimpleNamespace(inputs=inputs, y=y, n_in=n_in, state=state, loading=loading, writing=writing,
                               bases=bases, carry=carry,
                               in_running=in_running, t_start=t_start, timer=timer,
                               rd_rsp_valid=Signal(name="rd_rsp_valid"),
                               rd_rsp_data=Signal(8 * P.word_bytes, name="rd_rsp_data"),
                               wr_valid=Signal(name="wr_valid"), wr_addr=Signal(32, name="wr_addr"),
                               wr_data=Signal(8 * P.word_bytes, name="wr_data"))

    def _block_grid(self, m):
        """One counter per split loop (an odometer, innermost fastest; reduction loops innermost), advanced by
        ``next_block``; whether this is the last reduction block, the last block, a carried reduction block."""
        P = self.plan
        red = P.design.operation.reduction_dims
        blk = {d: Signal(range(max(n, 2)), name=f"block_{d}") for d, n in P.grid}
        last_red = Signal(name="block_last_reduction")
        last_all = Signal(name="block_last")
        carry = Signal(name="block_carry")                 # a reduction block after the first: psums stay on chip
        e_red, e_all, e_carry = 1, 1, 0
        for d, n in P.grid:
            e_all = e_all & (blk[d] == n - 1)
            if d in red:
                e_red, e_carry = e_red & (blk[d] == n - 1), e_carry | (blk[d] != 0)
        m.d.comb += [last_red.eq(e_red), last_all.eq(e_all), carry.eq(e_carry)]
        next_block = Signal(name="block_next")
        with m.If(next_block):
            for k in reversed(range(len(P.grid))):    # odometer: loop k advances when every inner loop wraps
                d, n = P.grid[k]
                inner = 1
                for d2, n2 in P.grid[k + 1:]:
                    inner = inner & (blk[d2] == n2 - 1)
                with m.If(inner):
                    m.d.sync += blk[d].eq(Mux(blk[d] == n - 1, 0, blk[d] + 1))
        return blk, last_red, last_all, carry, next_block

    def _region_base(self, m, blk, t):
        """The DRAM word of the current block's region of ``t`` (block-major over the loops it uses)."""
        P = self.plan
        idx, mult = 0, 1
        for d, n in reversed(P.region_loops(t)):
            idx = idx + blk[d] * mult
            mult *= n
        sig = Signal(32, name=f"region_base_{t}")
        m.d.comb += sig.eq(P.bases[t] + idx * P.words(t))
        return sig

    def _dma(self, m, c) -> dict:
        """Burst requests (consecutive words from the tensor's base) and the response words into every lane copy
        of the loading input's buffer; returns input -> its lane copies."""
        P = self.plan
        Wb = P.word_bytes
        c_words = P.design.memory_system.dram.burst_bytes // Wb
        req_ptr = Signal(32, name="dma_req_word")
        req_left = Signal(32, name="dma_req_words_left")
        cur_ptr = Signal(32, name="dma_req_word_now")
        cur_left = Signal(32, name="dma_req_words_left_now")
        with m.Switch(c.state):
            for xi, x in enumerate(c.inputs + [None, None, c.y]):
                if x is None:
                    continue
                with m.Case(xi):
                    m.d.comb += [cur_ptr.eq(Mux(c.t_start, c.bases[x], req_ptr)),
                                 cur_left.eq(Mux(c.t_start, P.words(x), req_left))]
        words_now = Mux(cur_left < c_words, cur_left, c_words)
        with m.If(c.timer.issue):
            m.d.sync += [req_ptr.eq(cur_ptr + c_words), req_left.eq(cur_left - words_now)]
        rd_req_valid = Signal(name="rd_req_valid")
        m.d.comb += rd_req_valid.eq(c.timer.issue & c.loading)
        c.rd_req = (rd_req_valid, cur_ptr, words_now)
        dst = Signal(32, name="dma_dst_word")
        with m.If(c.t_start):
            m.d.sync += dst.eq(0)
        with m.Elif(c.rd_rsp_valid):
            m.d.sync += dst.eq(dst + 1)
        bufs = {}
        for xi, x in enumerate(c.inputs):
            copies = []
            for lane in range(P.program(port_name(PortRole.INPUT, x)).lanes):
                mem = Memory(shape=unsigned(8 * Wb), depth=max(1, P.words(x)), init=[])
                m.submodules[f"buf_{x}_lane{lane}"] = mem
                wp = mem.write_port()
                m.d.comb += [wp.en.eq(c.rd_rsp_valid & (c.state == xi)), wp.addr.eq(dst), wp.data.eq(c.rd_rsp_data)]
                copies.append(mem)
            bufs[x] = copies
            left = Signal(32, name=f"dma_{x}_bytes_left")
            with m.If(c.t_start & (c.state == xi)):
                m.d.sync += left.eq(P.tensor_bytes(x))
            with m.Elif(c.rd_rsp_valid & (c.state == xi)):
                take = Mux(left < Wb, left, Wb)
                m.d.sync += [left.eq(left - take), self.moved[f"{x}.read"].eq(self.moved[f"{x}.read"] + take)]
        return bufs

    def _streams(self, m, arr, c, bufs) -> list:
        """The array's streams: a sequencer per port, lane reads of the input copies, the tag port, the output
        lane stores (written by their lane, read back by the same partial-sum lane); returns, per output
        lane, the write-back's read data of the current word's elements."""
        P = self.plan
        y = c.y
        fire = Signal(name="slot_fire")
        cmd_start = Signal(name="array_cmd_start")
        m.d.comb += cmd_start.eq(arr.cmd.valid & arr.cmd.ready)
        out_port = getattr(arr, port_name(PortRole.OUTPUT, y))
        psum_port = getattr(arr, port_name(PortRole.PSUM, y))
        m.d.comb += [fire.eq(out_port.valid), out_port.ready.eq(1)]   # the array fires whenever its beats are valid

        def sequencer(port):
            seq = SttLaneSequencer(P.program(port))
            m.submodules[f"seq_{port}"] = seq
            m.d.comb += [seq.start.eq(cmd_start), seq.fire.eq(fire)]
            return seq

        net = self.compiled.network
        for x in c.inputs:
            port = getattr(arr, port_name(PortRole.INPUT, x))
            seq = sequencer(port_name(PortRole.INPUT, x))
            clear = sequencer(f"clear_{x}") if f"clear_{x}" in P.ports else None
            eb, pw = P.elem_bytes[x], P.per_word(x)
            shp = shape_of(self.compiled.design.type_of[x].bits, self.compiled.design.type_of[x].signed)
            m.d.comb += port.valid.eq(c.in_running)
            for lane, mem in enumerate(bufs[x]):
                rp = mem.read_port(domain="comb")
                m.d.comb += rp.addr.eq(seq.addr[lane] // pw)          # constant divisor (a shift for powers of two)
                elem = rp.data.word_select(seq.addr[lane] % pw, 8 * eb) if pw > 1 else rp.data[:8 * eb]
                if clear is None:
                    m.d.comb += port.payload[lane].eq(Mux(seq.valid[lane], elem, 0))
                    continue
                # a ring at the FU: a mirror of it gives what it holds; the lane sends new - held (load) or - held
                held = Signal(shp, name=f"{x}_mirror_out_{lane}")
                new = Signal(shp, name=f"{x}_mirror_in_{lane}")
                m.d.comb += held.eq(delay_line(m, new, net.hop(x).dt, fire, f"{x}_mirror_{lane}_", shp))
                m.d.comb += [new.eq(Mux(seq.valid[lane], elem.as_signed() if shp.signed else elem,
                                        Mux(clear.valid[lane], 0, held))),
                             port.payload[lane].eq(new - held)]
        carrier = self.compiled.network.carrier
        if carrier:                                  # validity tags: a sequencer whose entries are constants
            port = getattr(arr, tag_port(carrier))
            seq = sequencer(tag_port(carrier))
            m.d.comb += port.valid.eq(c.in_running)
            for lane in range(seq.program.lanes):
                m.d.comb += port.payload[lane].eq(Mux(seq.valid[lane], seq.value[lane], 0))
        oseq = sequencer(port_name(PortRole.OUTPUT, y))
        pseq = sequencer(port_name(PortRole.PSUM, y))
        m.d.comb += pseq.carry.eq(c.carry)
        ring = (sequencer(f"load_{y}"), sequencer(f"clear_{y}")) if f"load_{y}" in P.ports else None
        m.d.comb += psum_port.valid.eq(c.in_running)
        acc_shape = shape_of(self.compiled.design.acc_type.bits, self.compiled.design.acc_type.signed)
        n_out = math.prod(P.shapes[y])
        pw_out = P.per_word(y)
        c.wb_word = Signal(32, name="wb_word")
        c.word_now = Signal(32, name="wb_word_now")
        m.d.comb += c.word_now.eq(Mux(c.t_start, 0, c.wb_word))
        store_reads = []
        for lane in range(oseq.program.lanes):
            mem = Memory(shape=unsigned(self.compiled.design.acc_type.bits), depth=n_out, init=[0] * n_out)
            m.submodules[f"store_{y}_lane{lane}"] = mem
            wp = mem.write_port()
            m.d.comb += [wp.en.eq(fire & oseq.valid[lane]), wp.addr.eq(oseq.addr[lane]),
                         wp.data.eq(out_port.payload[lane])]
            rp = mem.read_port(domain="comb")
            start = Mux(pseq.valid[lane], rp.data, 0)
            m.d.comb += rp.addr.eq(pseq.addr[lane])
            if ring is None:
                m.d.comb += psum_port.payload[lane].eq(start)
            else:           # the output ring: its mirror holds the output beats; start - held loads, - held clears
                held = Signal(acc_shape, name=f"{y}_mirror_out_{lane}")
                m.d.comb += held.eq(delay_line(m, out_port.payload[lane], net.output.dt, fire, f"{y}_mirror_{lane}_",
                                               acc_shape))
                m.d.comb += psum_port.payload[lane].eq(Mux(ring[0].valid[lane], start.as_signed() - held,
                                                           Mux(ring[1].valid[lane], -held, 0)))
            reads = []
            for e in range(pw_out):
                r = mem.read_port(domain="comb")
                m.d.comb += r.addr.eq(c.word_now * pw_out + e)
                reads.append(r.data)
                if P.n_blocks > 1:         # the write-back clears what it read, for the next output block
                    clr = mem.write_port()
                    at = c.word_now * pw_out + e
                    m.d.comb += [clr.en.eq(c.wr_valid & (at < n_out)), clr.addr.eq(at), clr.data.eq(0)]
            store_reads.append(reads)
        return store_reads

    def _write_back(self, m, c, store_reads) -> None:
        """One word a cycle from the job's start, each element the sum over the lane stores."""
        P = self.plan
        y = c.y
        n_out = math.prod(P.shapes[y])
        pw_out = P.per_word(y)
        acc_bits = self.compiled.design.acc_type.bits
        wb_left = Signal(32, name="wb_words_left")
        wb_on = Signal(name="wb_on")
        m.d.comb += wb_on.eq(c.writing & (c.t_start | (wb_left != 0)))
        words_left_now = Mux(c.t_start, P.words(y), wb_left)
        elems = []
        for e in range(pw_out):
            total = 0
            for reads in store_reads:
                total = total + reads[e]
            elems.append(total[:acc_bits])
        m.d.comb += [c.wr_valid.eq(wb_on & (words_left_now != 0)), c.wr_addr.eq(c.bases[y] + c.word_now),
                     c.wr_data.eq(Cat(*elems))]
        with m.If(c.wr_valid):
            m.d.sync += [c.wb_word.eq(c.word_now + 1), wb_left.eq(words_left_now - 1)]
            last = (c.word_now + 1) * pw_out >= n_out
            take = Mux(last, n_out - c.word_now * pw_out, pw_out) * P.elem_bytes[y]
            m.d.sync += self.moved[f"{y}.write"].eq(self.moved[f"{y}.write"] + take)

    def _dram(self, m, c) -> None:
        """The DRAM: answers a read burst latency cycles after its request, one word a cycle; posted writes."""
        P = self.plan
        simulated_dram(m, word_bytes=P.word_bytes, depth=self.dram_depth, init=self.dram_init,
                       latency=P.design.memory_system.dram.latency, addr_bits=32, rd_req=c.rd_req,
                       rd_rsp=(c.rd_rsp_valid, c.rd_rsp_data), wr=(c.wr_valid, c.wr_addr, c.wr_data),
                       rb=(self.rb_addr, self.rb_data))
