"""A skewed stt array behind its memory system (dataflow/stt_layer.py states the plan and the cycle contract).

``SttLayerTop`` is a simulation top with the ports of the tiled layer top (``go``, ``finished``, ``cycles``,
``rb_addr``/``rb_data``, ``moved_*``), so verif/layer_binary.py runs it as a stand-alone Verilator binary:

* a DRAM preloaded at elaboration (fixed latency, one word a cycle, as rtlgen/layer_top.py ``LayerTop``);
* the DMA: the burst timer of the tiled core (``transfer_timer_hw``), one burst request per timer issue,
  response words written into the loading tensor's banked buffer (dataflow/stt_bank.py: one buffer per
  tensor, a DRAM word into one group of banks; a tensor without a conflict-free banking: one copy per lane);
* the array (rtlgen/stt_array.py ``SttArrayTop``, unchanged) and one stream sequencer per port
  (rtlgen/stt_stream.py). The partial-sum, ring (``clear_<X>``) and tag sequencers run one slot ahead of the
  array: bank reads are registered (one cycle), the address of slot n is issued in the cycle before slot n
  fires (the command's handshake cycle for slot 0). Plain input lanes run two slots ahead: a prime cycle
  before the handshake issues slot 0, and the lane's element is registered behind the lane select, so no
  path runs from a bank through the lane select into the multipliers (one cycle per array command in the
  contract, dataflow/stt_layer.py ``COMMAND_OVERHEAD``);
* one banked output store (written by the output lanes through a register, one cycle after their slot, so no
  path runs from the array's adders into a bank; read by the partial-sum lanes one slot ahead, transparent
  for the bank's write port, the pending registered write forwarded to the read it would have reached),
  which the write-back streams to DRAM one word a cycle (read in the cycle before; a map without banking:
  one store per output lane, summed by the write-back).

Blocks (``plan.grid``): block counters (an odometer, reduction loops innermost) after each command or
write-back; a region-base register per tensor adds the advancing level's change at every block step; the
partial-sum sequencer's ``carry`` is high on a reduction block after the first; the write-back only after the
last reduction block, clearing the store words it reads.

Every bank has one registered read port and one write port (block RAM). Two builds of the same code: with a
``build`` (dataflow/stt_command.py; ``archgen build --memory``), ONE core for every layer: trip counts,
extents, strides, region bases and the phase tables' layer-dependent entries are fields of a command register
the host writes while ``go`` is low, bank depths come from the buffers' bytes; without one (``plan`` only), a
top specialised to one layer, every command value a constant of the elaboration (``verify_stt_layer(...,
per_layer=True)``).
"""
from __future__ import annotations

from types import SimpleNamespace

from amaranth import Array, Cat, Const, Elaboratable, Module, Mux, Signal, hdl, unsigned
from amaranth.lib.memory import Memory

from archgen.dataflow.ir import PortRole, port_name
from archgen.dataflow.memctl import transfer_timer_hw
from archgen.dataflow.stt_array import tag_port
from archgen.dataflow.stt_command import (CMD_WORD_BITS, COORD_BITS, LIN_BITS, TRIP_BITS, command_bits, command_fields,
                                          controller_values)
from archgen.dataflow.stt_layer import SttLayerPlan

from .datapath import delay_line, shape_of
from .layer_top import simulated_dram
from .stt_array import SttArrayTop
from .stt_stream import SttLaneSequencer

__all__ = ["SttLayerTop", "SttLayerProgramTop", "stt_layer_verilog"]

CYCLE_BITS = 40


class SttLayerTop(Elaboratable):
    """``dram_init`` None: the synthesis build (``archgen build SPEC --memory``): no simulated DRAM, an external
    DRAM port instead (``dram_rd_req_*`` out, ``dram_rd_rsp_*`` in, answered ``memory.dram.latency`` cycles
    after the request, one word a cycle, as the contract assumes; posted writes ``dram_wr_*``)."""

    def __init__(self, plan: SttLayerPlan | None, compiled, dram_init: list[int] | None, build=None, array=None,
                 command_fields: dict | None = None):
        self.plan = plan
        # a fused array (rtlgen/fused_array.py: ``compiled`` is then its view of the map) runs the layer with extra
        # command fields (its dataflow select; the tiled loops' trip counts, which the map ignores)
        self.array, self.command_fields = array, dict(command_fields or {})
        self.build = build                # dataflow/stt_command.py SttBuild: one build, a command per layer
        self.S = build if build is not None else plan       # the structure: layouts, programs, element sizes
        self.compiled = compiled
        self.synth = dram_init is None or build is not None
        self.dram_init = list(dram_init or [])
        self.dram_depth = max(1, plan.dram_words if plan is not None else 1)
        op = self.S.design.operation
        plan = self.S
        self.go = Signal()
        self.finished = Signal()
        self.cycles = Signal(CYCLE_BITS)
        self.rb_addr = Signal(range(self.dram_depth + 1))
        self.rb_data = Signal(8 * plan.word_bytes)
        self.moved = {f"{x.name}.read": Signal(CYCLE_BITS, name=f"moved_{x.name}_read") for x in op.inputs}
        self.moved[f"{op.output.name}.write"] = Signal(CYCLE_BITS, name=f"moved_{op.output.name}_write")
        wbits = 8 * plan.word_bytes
        self.dram = SimpleNamespace(
            rd_req_valid=Signal(name="dram_rd_req_valid"), rd_req_addr=Signal(32, name="dram_rd_req_addr"),
            rd_req_words=Signal(16, name="dram_rd_req_words"), rd_rsp_valid=Signal(name="dram_rd_rsp_valid"),
            rd_rsp_data=Signal(wbits, name="dram_rd_rsp_data"), wr_valid=Signal(name="dram_wr_valid"),
            wr_addr=Signal(32, name="dram_wr_addr"), wr_data=Signal(wbits, name="dram_wr_data"))

        if build is not None:             # the host's command write port: one CMD_WORD_BITS-bit word a cycle, go low
            self.cmd_words = -(-command_bits(build) // CMD_WORD_BITS)
            self.cmd_we = Signal(name="cmd_we")
            self.cmd_addr = Signal(range(max(2, self.cmd_words)), name="cmd_addr")
            self.cmd_data = Signal(CMD_WORD_BITS, name="cmd_data")
            self.cmd = Signal(CMD_WORD_BITS * self.cmd_words, name="cmd")

    def ports(self):
        if self.synth:
            d = self.dram
            cmd = [self.cmd_we, self.cmd_addr, self.cmd_data] if self.build is not None else []
            return [self.go, self.finished, self.cycles, *self.moved.values(), *cmd, d.rd_req_valid, d.rd_req_addr,
                    d.rd_req_words, d.rd_rsp_valid, d.rd_rsp_data, d.wr_valid, d.wr_addr, d.wr_data]
        return [self.go, self.finished, self.cycles, self.rb_addr, self.rb_data, *self.moved.values()]

    def elaborate(self, platform):
        m = Module()
        arr = SttArrayTop(self.compiled) if self.array is None else self.array
        m.submodules.array = arr
        self.V, self.order = self._command(m)
        c = self._controller(m, arr)
        bufs = self._dma(m, c)
        store_reads = self._streams(m, arr, c, bufs)
        self._write_back(m, c, store_reads)
        self._dram(m, c)
        return m

    def _command(self, m):
        """The layer's values by command field name and the grid's loop order: the build's command register
        (written by the host while ``go`` is low), or the plan's values as constants (one build per layer)."""
        if self.build is None:
            order = tuple(d for d, _n in self.plan.grid)
            return controller_values(self.plan, order), order
        with m.If(self.cmd_we & ~self.go):
            m.d.sync += self.cmd.word_select(self.cmd_addr, CMD_WORD_BITS).eq(self.cmd_data)
        V, at = {}, 0
        for name, bits, sgn in command_fields(self.build):
            V[name] = self.cmd[at:at + bits].as_signed() if sgn else self.cmd[at:at + bits]
            at += bits
        return V, self.build.grid_order

    def _rows(self, t: str) -> int:
        """Rows of every bank of ``t`` (the build's, from the buffer's bytes; else the layer's region)."""
        if self.build is not None:
            return self.build.rows[t]
        return self.plan.layouts[t].rows(self.plan.shapes[t])

    def _controller(self, m, arr) -> SimpleNamespace:
        """Per block: loads (one per input), the array command, the write-back (after the last reduction block),
        one after another; the burst timer."""
        P, V = self.S, self.V
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
        with m.If(~self.go):                               # go low: ready for the next layer's command
            m.d.sync += [self.cycles.eq(0), state.eq(0), entered.eq(1)]
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
                    m.d.comb += t_bytes.eq(V[f"bytes_{x}"])
            with m.Case(n_in + 2):
                m.d.comb += t_bytes.eq(V[f"bytes_{y}"])
        timer = transfer_timer_hw(m, hdl, P.design.memory_system.dram, t_start, t_bytes, name="dma")
        with m.If(self.go):
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
            with m.If(state == n_in):          # its first cycle primes the input lanes; the handshake follows
                m.d.comb += [arr.cmd.valid.eq(~entered), arr.cmd.payload.steps.eq(V["slots"])]
                m.d.comb += [getattr(arr.cmd.payload, f).eq(v) for f, v in self.command_fields.items()]
                m.d.comb += advance.eq(arr.cmd.ready & ~entered)
            with m.If((state == n_in + 1) & arr.done):
                with m.If(last_red):
                    m.d.comb += advance.eq(1)
                with m.Else():                          # the next reduction block: no write-back
                    m.d.comb += next_block.eq(1)
                    m.d.sync += [state.eq(0), entered.eq(1)]
        with m.If(advance):
            m.d.sync += [state.eq(state + 1), entered.eq(1)]

        bases = {t: self._region_base(m, blk, next_block, t) for t in inputs + [y]}
        prime = Signal(name="streams_prime")
        m.d.comb += prime.eq(self.go & (state == n_in) & entered)
        return SimpleNamespace(inputs=inputs, y=y, n_in=n_in, state=state, loading=loading, writing=writing,
                               prime=prime, bases=bases, carry=carry,
                               in_running=in_running, t_start=t_start, timer=timer,
                               rd_rsp_valid=Signal(name="rd_rsp_valid"),
                               rd_rsp_data=Signal(8 * P.word_bytes, name="rd_rsp_data"),
                               wr_valid=Signal(name="wr_valid"), wr_addr=Signal(32, name="wr_addr"),
                               wr_data=Signal(8 * P.word_bytes, name="wr_data"))

    def _block_grid(self, m):
        """One counter per grid loop (an odometer, innermost fastest; reduction loops innermost), advanced by
        ``next_block``; whether this is the last reduction block, the last block, a carried reduction block.
        Returns the counters' wrap compares too (``blk["last"]``)."""
        red = self.S.design.operation.reduction_dims
        grid = [(d, self.V[f"grid_{d}"]) for d in self.order]
        blk = {d: Signal(range(max(n, 2)) if self.build is None else TRIP_BITS, name=f"block_{d}") for d, n in grid}
        at_last = {d: blk[d] == n - 1 for d, n in grid}
        last_red = Signal(name="block_last_reduction")
        last_all = Signal(name="block_last")
        carry = Signal(name="block_carry")                 # a reduction block after the first: psums stay on chip
        e_red, e_all, e_carry = 1, 1, 0
        for d, n in grid:
            e_all = e_all & at_last[d]
            if d in red:
                e_red, e_carry = e_red & at_last[d], e_carry | (blk[d] != 0)
        m.d.comb += [last_red.eq(e_red), last_all.eq(e_all), carry.eq(e_carry)]
        next_block = Signal(name="block_next")
        with m.If(~self.go):
            m.d.sync += [b.eq(0) for b in blk.values()]
        with m.Elif(next_block):
            self._grid_step(m, grid, at_last, lambda k: [blk[grid[k][0]].eq(blk[grid[k][0]] + 1)]
                            + [blk[d2].eq(0) for d2, _n in grid[k + 1:]])
        blk["last"] = at_last
        return blk, last_red, last_all, carry, next_block

    def _grid_step(self, m, grid, at_last, actions) -> None:
        """The odometer's step: the innermost grid level not at its last block advances (``actions(k)``)."""
        for k in reversed(range(len(grid))):
            with (m.If if k == len(grid) - 1 else m.Elif)(~at_last[grid[k][0]]):
                m.d.sync += actions(k)

    def _region_base(self, m, blk, next_block, t):
        """The DRAM word of the current block's region of ``t`` (block-major over the loops it uses): the
        command's base, plus the command's change of the advancing grid level at every block step (adds
        only)."""
        V = self.V
        base = V[f"base_{t}"]
        sig = Signal(32, name=f"region_base_{t}", init=base if isinstance(base, int) else 0)
        grid = [(d, V[f"grid_{d}"]) for d in self.order]
        with m.If(~self.go):
            m.d.sync += sig.eq(base)
        with m.Elif(next_block):
            self._grid_step(m, grid, blk["last"], lambda k: [sig.eq(sig + V[f"radv_{t}_{grid[k][0]}"])])
        return sig

    def _dma(self, m, c) -> dict:
        """Burst requests (consecutive words from the tensor's base) and the response words into the loading
        input's banks (word w: bank row w div words_per_row, the bank group w mod words_per_row; copies: every
        copy at row w); returns input -> its banks."""
        P, V = self.S, self.V
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
                                 cur_left.eq(Mux(c.t_start, V[f"words_{x}"], req_left))]
        words_now = Mux(cur_left < c_words, cur_left, c_words)
        with m.If(c.timer.issue):
            m.d.sync += [req_ptr.eq(cur_ptr + c_words), req_left.eq(cur_left - words_now)]
        rd_req_valid = Signal(name="rd_req_valid")
        m.d.comb += rd_req_valid.eq(c.timer.issue & c.loading)
        c.rd_req = (rd_req_valid, cur_ptr, words_now)
        k_max = max(P.layouts[x].words_per_row for x in c.inputs)
        dst_row = Signal(32, name="dma_dst_row")
        dst_wi = Signal(range(max(k_max, 2)), name="dma_dst_word_in_row")
        with m.If(c.t_start):
            m.d.sync += [dst_row.eq(0), dst_wi.eq(0)]
        with m.Elif(c.rd_rsp_valid):
            with m.Switch(c.state):
                for xi, x in enumerate(c.inputs):
                    with m.Case(xi):
                        k = P.layouts[x].words_per_row
                        with m.If(dst_wi == k - 1):
                            m.d.sync += [dst_row.eq(dst_row + 1), dst_wi.eq(0)]
                        with m.Else():
                            m.d.sync += dst_wi.eq(dst_wi + 1)
        bufs = {}
        for xi, x in enumerate(c.inputs):
            lay = P.layouts[x]
            eb = P.elem_bytes[x]
            group = 1 if lay.copies else P.per_word(x) // lay.width      # banks one DRAM word fills
            banks = []
            for b in range(lay.banks):
                mem = Memory(shape=unsigned(8 * eb * lay.width), depth=max(2, self._rows(x)), init=[])
                m.submodules[f"buf_{x}_bank{b}"] = mem
                wp = mem.write_port()
                hit = c.rd_rsp_valid & (c.state == xi)
                if not lay.copies:
                    hit = hit & (dst_wi == b // group)
                lo = 0 if lay.copies else (b % group) * lay.width * 8 * eb
                m.d.comb += [wp.en.eq(hit), wp.addr.eq(dst_row),
                             wp.data.eq(c.rd_rsp_data[lo:lo + 8 * eb * lay.width])]
                banks.append(mem)
            bufs[x] = banks
            left = Signal(32, name=f"dma_{x}_bytes_left")
            with m.If(c.t_start & (c.state == xi)):
                m.d.sync += left.eq(V[f"bytes_{x}"])
            with m.Elif(c.rd_rsp_valid & (c.state == xi)):
                take = Mux(left < Wb, left, Wb)
                m.d.sync += [left.eq(left - take), self.moved[f"{x}.read"].eq(self.moved[f"{x}.read"] + take)]
        return bufs

    def _streams(self, m, arr, c, bufs) -> list:
        """The array's streams. Every sequencer runs one slot ahead of the array (held at slot 0 until the
        command's handshake cycle, then advanced every cycle with it), so its addresses go to the banks' read
        ports (registered: one cycle) in the cycle before the slot, and its valid, bank and in-row selections
        are registered to meet the data. Input lanes read their banks; the tag port; the output's store: one
        banked buffer, written by the output lanes in their slot, read by the partial-sum lanes one slot ahead
        (transparent for the bank's write port, so a partial sum sees the write of the slot before it); the
        write-back reads it when the array is idle. Returns the output's banks' read data."""
        P = self.S
        y = c.y
        fire = Signal(name="slot_fire")
        cmd_start = Signal(name="array_cmd_start")
        m.d.comb += cmd_start.eq(arr.cmd.valid & arr.cmd.ready)
        out_port = getattr(arr, port_name(PortRole.OUTPUT, y))
        psum_port = getattr(arr, port_name(PortRole.PSUM, y))
        m.d.comb += [fire.eq(out_port.valid), out_port.ready.eq(1)]   # the array fires whenever its beats are valid
        seq_hold = Signal(name="seq_hold")
        seq_step = Signal(name="seq_step")
        lookahead = Signal(name="seq_lookahead")       # the sequencers' slot is read from the banks this cycle
        m.d.comb += [seq_hold.eq(~c.in_running & ~cmd_start), seq_step.eq(cmd_start | fire),
                     lookahead.eq((cmd_start | c.in_running) & ~arr.done)]
        # plain input lanes run two slots ahead (from the prime cycle before the handshake): bank read, then a
        # register behind the lane select, so no path runs from a bank through the lane select into the array
        in_hold = Signal(name="seq_in_hold")
        in_step = Signal(name="seq_in_step")
        m.d.comb += [in_hold.eq(seq_hold & ~c.prime), in_step.eq(seq_step | c.prime)]

        def sequencer(port, tensor=None, ahead=1):
            lay = P.layouts[tensor] if tensor is not None else None
            if self.build is None:
                seq = SttLaneSequencer(P.program(port), lay)
            else:
                pre = f"{port}."
                seq = SttLaneSequencer(P.program(port), lay, {n[len(pre):]: v for n, v in self.V.items()
                                                              if n.startswith(pre)},
                                       {"coord": COORD_BITS, "lin": LIN_BITS, "trip": TRIP_BITS,
                                        "addr": self.build.addr_bits(port),
                                        "value": 2 * self.compiled.network.tag_field_bits})
            m.submodules[f"seq_{port}"] = seq
            m.d.comb += ([seq.start.eq(seq_hold), seq.fire.eq(seq_step)] if ahead == 1 else
                         [seq.start.eq(in_hold), seq.fire.eq(in_step)])
            seq.valid_r = Signal(seq.program.lanes, name=f"{port}_valid_r")
            m.d.sync += seq.valid_r.eq(seq.valid)
            return seq

        def select(seq, lay, name):
            """Per lane: (bank row now, registered bank, registered element in the row); ``seq.row_r``: the
            registered rows (a write in the slot)."""
            rows, bank_r, sub_r = [], [], []
            seq.row_r = []
            for lane in range(seq.program.lanes):
                row, sub = seq.addr[lane] // lay.width, seq.addr[lane] % lay.width
                rows.append(row)
                r_r = Signal(32, name=f"{name}_row_r{lane}")
                m.d.sync += r_r.eq(row)
                seq.row_r.append(r_r)
                s_r = Signal(range(max(lay.width, 2)), name=f"{name}_sub_r{lane}")
                m.d.sync += s_r.eq(sub)
                sub_r.append(s_r)
                if lay.copies:
                    bank_r.append(lane)
                else:
                    b_r = Signal(range(max(lay.banks, 2)), name=f"{name}_bank_r{lane}")
                    m.d.sync += b_r.eq(seq.bank[lane])
                    bank_r.append(b_r)
            return rows, bank_r, sub_r

        def bank_addr(seq, lay, rows, b, default=0):
            """Bank b's read row: the lane that reads it this cycle (at most one, by the banking)."""
            addr = default
            if lay.copies:
                return rows[b]
            for lane in range(seq.program.lanes):
                addr = Mux(seq.valid[lane] & (seq.bank[lane] == b), rows[lane], addr)
            return addr

        def lane_data(datas, bank_r, sub_r, lane, bits, width):
            d = datas[bank_r] if isinstance(bank_r, int) else Array(datas)[bank_r]
            return d.word_select(sub_r, bits) if width > 1 else d[:bits]

        net = self.compiled.network
        for x in c.inputs:
            port = getattr(arr, port_name(PortRole.INPUT, x))
            lay = P.layouts[x]
            clear = sequencer(f"clear_{x}") if f"clear_{x}" in P.ports else None
            seq = sequencer(port_name(PortRole.INPUT, x), x, ahead=1 if clear is not None else 2)
            eb = P.elem_bytes[x]
            shp = shape_of(self.compiled.design.type_of[x].bits, self.compiled.design.type_of[x].signed)
            m.d.comb += port.valid.eq(c.in_running)
            rows, bank_r, sub_r = select(seq, lay, f"in_{x}")
            datas = []
            for b, mem in enumerate(bufs[x]):
                rp = mem.read_port()
                m.d.comb += rp.addr.eq(bank_addr(seq, lay, rows, b))
                datas.append(rp.data)
            for lane in range(seq.program.lanes):
                elem = lane_data(datas, bank_r[lane], sub_r[lane], lane, 8 * eb, lay.width if not lay.copies
                                 else P.per_word(x))
                if clear is None:
                    beat = Signal.like(port.payload[lane], name=f"in_{x}_beat_r{lane}")
                    m.d.sync += beat.eq(Mux(seq.valid_r[lane], elem, 0))
                    m.d.comb += port.payload[lane].eq(beat)
                    continue
                # a ring at the FU: a mirror of it gives what it holds; the lane sends new - held (load) or - held
                held = Signal(shp, name=f"{x}_mirror_out_{lane}")
                new = Signal(shp, name=f"{x}_mirror_in_{lane}")
                m.d.comb += held.eq(delay_line(m, new, net.hop(x).dt, fire, f"{x}_mirror_{lane}_", shp))
                m.d.comb += [new.eq(Mux(seq.valid_r[lane], elem.as_signed() if shp.signed else elem,
                                        Mux(clear.valid_r[lane], 0, held))),
                             port.payload[lane].eq(new - held)]
        carrier = self.compiled.network.carrier
        if carrier:                                  # validity tags: a sequencer whose entries are constants
            port = getattr(arr, tag_port(carrier))
            seq = sequencer(tag_port(carrier))
            m.d.comb += port.valid.eq(c.in_running)
            for lane in range(seq.program.lanes):
                v_r = Signal.like(seq.value[lane], name=f"tag_value_r{lane}")
                m.d.sync += v_r.eq(seq.value[lane])
                m.d.comb += port.payload[lane].eq(Mux(seq.valid_r[lane], v_r, 0))
        lay = P.layouts[y]
        oseq = sequencer(port_name(PortRole.OUTPUT, y), y)
        pseq = sequencer(port_name(PortRole.PSUM, y), y)
        m.d.comb += pseq.carry.eq(c.carry)
        ring = (sequencer(f"load_{y}"), sequencer(f"clear_{y}")) if f"load_{y}" in P.ports else None
        m.d.comb += psum_port.valid.eq(c.in_running)
        acc_bits = self.compiled.design.acc_type.bits
        acc_shape = shape_of(acc_bits, self.compiled.design.acc_type.signed)
        W = lay.width
        k = lay.words_per_row
        pw_out = P.per_word(y)
        group = lay.banks if lay.copies else pw_out // W        # banks one DRAM word spans
        # the write-back's word (now) and the row it reads for the next cycle's word
        c.wb_word = Signal(32, name="wb_word")
        c.word_now = Signal(32, name="wb_word_now")
        wb_row = Signal(32, name="wb_row")
        wb_wi = Signal(range(max(k, 2)), name="wb_word_in_row")
        row_now = Signal(32, name="wb_row_now")
        wi_now = Signal(range(max(k, 2)), name="wb_word_in_row_now")
        m.d.comb += [c.word_now.eq(Mux(c.t_start, 0, c.wb_word)), row_now.eq(Mux(c.t_start, 0, wb_row)),
                     wi_now.eq(Mux(c.t_start, 0, wb_wi))]
        last_wi = wi_now == k - 1
        nxt_row, nxt_wi = Mux(last_wi, row_now + 1, row_now), Mux(last_wi, 0, wi_now + 1)
        with m.If(c.wr_valid):
            m.d.sync += [wb_row.eq(nxt_row), wb_wi.eq(nxt_wi)]
        rd_row = Mux(c.writing, nxt_row, 0)
        rd_wi = Mux(c.writing, nxt_wi, 0)
        o_rows, o_bank_r, o_sub_r = select(oseq, lay, f"out_{y}")
        p_rows, p_bank_r, p_sub_r = select(pseq, lay, f"psum_{y}")
        store_datas = []
        for b in range(lay.banks):
            mem = Memory(shape=unsigned(acc_bits * W), depth=max(2, self._rows(y)), init=[])
            m.submodules[f"store_{y}_bank{b}"] = mem
            wp = mem.write_port(granularity=acc_bits if W > 1 else None)
            wsel = self._store_writer(m, oseq, lay, b, fire, o_bank_r, o_sub_r, out_port, acc_bits, y)
            wsel = self._registered_write(m, wsel, len(wp.addr), f"store_{y}_bank{b}")
            wclr = c.wr_valid & (wi_now == b // group) if self.build is not None or P.n_blocks > 1 else 0
            m.d.comb += [wp.addr.eq(Mux(wclr, row_now, wsel.row)),
                         wp.data.eq(Mux(wclr, 0, wsel.data)),
                         wp.en.eq(Mux(wclr, (1 << W) - 1 if W > 1 else 1, wsel.en))]
            rp = mem.read_port(transparent_for=(wp,))
            wb_hit = rd_wi == b // group if not lay.copies else 1
            m.d.comb += rp.addr.eq(Mux(lookahead, bank_addr(pseq, lay, p_rows, b), Mux(wb_hit, rd_row, 0)))
            store_datas.append(self._forwarded(m, rp, wsel, W, acc_bits, f"store_{y}_bank{b}"))
        for lane in range(pseq.program.lanes):
            got = lane_data(store_datas, p_bank_r[lane], p_sub_r[lane], lane, acc_bits, W)
            start = Mux(pseq.valid_r[lane], got, 0)
            if ring is None:
                m.d.comb += psum_port.payload[lane].eq(start)
            else:           # the output ring: its mirror holds the output beats; start - held loads, - held clears
                held = Signal(acc_shape, name=f"{y}_mirror_out_{lane}")
                m.d.comb += held.eq(delay_line(m, out_port.payload[lane], net.output.dt, fire, f"{y}_mirror_{lane}_",
                                               acc_shape))
                m.d.comb += psum_port.payload[lane].eq(Mux(ring[0].valid_r[lane], start.as_signed() - held,
                                                           Mux(ring[1].valid_r[lane], -held, 0)))
        # the write-back's word: its elements from the banks of its group (read in the cycle before)
        words = []
        for wi in range(k):
            elems = []
            for e in range(pw_out):
                if lay.copies:      # lane stores: every element is written by one lane, the others hold zero
                    total = 0
                    for d in store_datas:
                        total = total + d[e * acc_bits:(e + 1) * acc_bits]
                    elems.append(total[:acc_bits])
                    continue
                pos = wi * pw_out + e
                b, sub = pos // W, pos % W
                elems.append(store_datas[b][sub * acc_bits:(sub + 1) * acc_bits])
            words.append(Cat(*elems))
        c.wb_data = Array(words)[wi_now] if k > 1 else words[0]
        return store_datas

    @staticmethod
    def _registered_write(m, wsel, addr_bits: int, name: str) -> SimpleNamespace:
        """The output lanes' write of a slot, registered: the bank is written in the cycle after the slot, so no
        combinational path runs from the array's last adder into the bank's write data (the build's critical
        path before: bank read -> lane select -> multiplier -> adder -> store write, docs/memory.md)."""
        row = Signal(addr_bits, name=f"{name}_wrow_r")
        data = Signal.like(wsel.data, name=f"{name}_wdata_r")
        en = Signal.like(wsel.en, name=f"{name}_wen_r")
        m.d.sync += [row.eq(wsel.row), data.eq(wsel.data), en.eq(wsel.en)]
        return SimpleNamespace(row=row, data=data, en=en)

    @staticmethod
    def _forwarded(m, rp, wpend, W: int, acc_bits: int, name: str):
        """Bank read data as if the registered write were not late: the read issued in the slot of a write
        (one slot ahead, for the next slot) missed it, since the write lands one cycle later; the element
        is taken from the pending write when it hits the row read. Earlier writes reach the read through the
        port's transparency, as before, so the store's contents seen by the partial-sum lanes and the
        write-back are those of the unregistered store, cycle for cycle."""
        row_r = Signal.like(wpend.row, name=f"{name}_rrow_r")
        m.d.sync += row_r.eq(rp.addr)
        hit = Signal(name=f"{name}_fwd_hit")
        m.d.comb += hit.eq(row_r == wpend.row)
        out = Signal.like(rp.data, name=f"{name}_rdata_fwd")
        for w in range(W):
            sl = slice(w * acc_bits, (w + 1) * acc_bits)
            m.d.comb += out[sl].eq(Mux(hit & wpend.en[w], wpend.data[sl], rp.data[sl]))
        return out

    def _store_writer(self, m, oseq, lay, b, fire, bank_r, sub_r, out_port, acc_bits, y):
        """Bank b's write in this slot: the output lane whose registered bank is b (at most one)."""
        W = lay.width
        row = Signal(32, name=f"store_{y}_bank{b}_wrow")
        data = Signal(acc_bits * W, name=f"store_{y}_bank{b}_wdata")
        en = Signal(max(W, 1), name=f"store_{y}_bank{b}_wen")
        for lane in range(oseq.program.lanes):
            if lay.copies and lane != b:               # a lane store: written by its own lane only
                continue
            hit = fire & oseq.valid_r[lane] & (bank_r[lane] == b)
            with m.If(hit):
                m.d.comb += [row.eq(oseq.row_r[lane]), data.eq(out_port.payload[lane].as_unsigned().replicate(W)
                                                                if W > 1 else out_port.payload[lane]),
                             en.eq((1 << sub_r[lane]) if W > 1 else 1)]
        return SimpleNamespace(row=row, data=data, en=en)

    def _write_back(self, m, c, store_reads) -> None:
        """One word a cycle from the job's start (its elements read from the store's banks in the cycle
        before: the array's done cycle for the first word)."""
        P, V = self.S, self.V
        y = c.y
        n_out = V[f"positions_{y}"]
        pw_out = P.per_word(y)
        wb_left = Signal(32, name="wb_words_left")
        wb_on = Signal(name="wb_on")
        m.d.comb += wb_on.eq(c.writing & (c.t_start | (wb_left != 0)))
        words_left_now = Mux(c.t_start, V[f"words_{y}"], wb_left)
        m.d.comb += [c.wr_valid.eq(wb_on & (words_left_now != 0)), c.wr_addr.eq(c.bases[y] + c.word_now),
                     c.wr_data.eq(c.wb_data)]
        with m.If(c.wr_valid):
            m.d.sync += [c.wb_word.eq(c.word_now + 1), wb_left.eq(words_left_now - 1)]
            last = (c.word_now + 1) * pw_out >= n_out
            take = Mux(last, n_out - c.word_now * pw_out, pw_out) * P.elem_bytes[y]
            m.d.sync += self.moved[f"{y}.write"].eq(self.moved[f"{y}.write"] + take)

    def _dram(self, m, c) -> None:
        """The DRAM: answers a read burst latency cycles after its request, one word a cycle; posted writes
        (the synthesis build: the external port)."""
        P = self.S
        if self.synth:
            d = self.dram
            valid, addr, words = c.rd_req
            m.d.comb += [d.rd_req_valid.eq(valid), d.rd_req_addr.eq(addr), d.rd_req_words.eq(words),
                         c.rd_rsp_valid.eq(d.rd_rsp_valid), c.rd_rsp_data.eq(d.rd_rsp_data),
                         d.wr_valid.eq(c.wr_valid), d.wr_addr.eq(c.wr_addr), d.wr_data.eq(c.wr_data)]
            return
        simulated_dram(m, word_bytes=P.word_bytes, depth=self.dram_depth, init=self.dram_init,
                       latency=P.design.memory_system.dram.latency, addr_bits=32, rd_req=c.rd_req,
                       rd_rsp=(c.rd_rsp_valid, c.rd_rsp_data), wr=(c.wr_valid, c.wr_addr, c.wr_data),
                       rb=(self.rb_addr, self.rb_data))


def stt_layer_verilog(design, dataflow: str | None = None, bounds: dict | None = None,
                      box: dict | None = None, fused=None) -> tuple[str, str, dict]:
    """(Verilog text, top name, manifest) of the synthesizable stt layer core: ONE build for every layer
    (dataflow/stt_command.py ``build_stt``: the box and period fixed, the layer a command written by the host
    through ``cmd_we``/``cmd_addr``/``cmd_data`` while ``go`` is low), banked buffers and the output store as
    block RAM sized by ``memory.<T>.bytes`` (one registered read and one write port per bank), the sequencers,
    the DMA with an external DRAM port. The manifest names the command's fields and, as an example, the
    command of the spec's problem bounds (``bounds`` overrides them; the build does not depend on them).
    ``fused`` (``compile_fused``): the core drives that fused array, running its map ``dataflow`` with the view's
    timing (the select and the tiled loops' trips tied, rtlgen/build.py ``fused_command_constants``)."""
    from amaranth.back import verilog

    from archgen.dataflow.compile import compile_array
    from archgen.dataflow.stt_command import build_stt, command_values, command_words, plan_for_build

    from .build import fused_command_constants, strip_zero_memory_init
    array, tied, name = None, None, f"{design.name}_stt_layer"
    if fused is not None:
        from .fused_array import FusedArrayTop
        compiled = fused.view(dataflow)
        array, tied = FusedArrayTop(fused), fused_command_constants(fused, dataflow)
        name = f"{design.name}_{dataflow}_stt_layer"
    else:
        compiled = compile_array(design, dataflow)
    build = build_stt(compiled, box=box)
    top = SttLayerTop(None, compiled, None, build=build, array=array, command_fields=tied)
    text = strip_zero_memory_init(verilog.convert(top, name=name, ports=top.ports(), emit_src=False))
    mem = design.memory_system
    example = dict(bounds if bounds is not None else design.bounds)
    plan = plan_for_build(build, example, "example")
    words = command_words(build, command_values(build, plan, 0, "example"))
    fields = command_fields(build)
    manifest = {
        "top": name, "dataflow": compiled.dataflow.name, "array_shape": list(design.shape),
        "box": dict(build.box), "period_slots": build.period, "grid_order": list(build.grid_order),
        "command": {"bits": command_bits(build), "words": top.cmd_words, "word_bits": CMD_WORD_BITS,
                    "fields": [[n, b, "signed" if sg else "unsigned"] for n, b, sg in fields]},
        "layer": example, "example_command": {"grid": dict(plan.grid), "block": dict(plan.tiling.bound),
                                              "cycles": plan.cycles(), "words": words},
        "buffers": {t: {"banks": lay.banks, "copies": lay.copies, "rows_per_bank": build.rows[t],
                        "bits": 8 * build.elem[t] * lay.width,
                        "bytes": build.rows[t] * lay.banks * lay.width * build.elem[t],
                        "spec_bytes": mem.buffer(t).bytes}
                    for t, lay in build.layouts.items()},
        "dram": {"width_bytes": mem.dram.width_bytes, "latency": mem.dram.latency,
                 "burst_bytes": mem.dram.burst_bytes, "outstanding": mem.dram.outstanding},
    }
    if fused is not None:
        manifest["array_command_tied"] = dict(sorted(tied.items()))
    return text, name, manifest


class SttLayerProgramTop(Elaboratable):
    """A simulation top that runs a stream of layers back to back on ONE run-time programmable core
    (``SttLayerTop`` with a build): a DRAM preloaded at elaboration with every layer's operands (each layer's
    regions from its own base word), and a host that, per layer, writes the layer's command words into the
    core one a cycle while the core's ``go`` is low, raises ``go``, waits for ``finished``, records the core's
    cycle count in ``layer_cycles_<k>`` and drops ``go`` for one cycle (the core resets for the next command).
    ``finished`` rises after the last layer; the ports are those of ``SttLayerTop``'s simulation top, so
    verif/layer_binary.py runs it."""

    def __init__(self, build, compiled, commands: list[list[int]], dram_init: list[int], dram_words: int,
                 array=None, command_fields: dict | None = None):
        self.core = SttLayerTop(None, compiled, None, build=build, array=array, command_fields=command_fields)
        self.commands = [list(c) for c in commands]
        self.dram_init = list(dram_init)
        self.dram_depth = max(1, dram_words)
        self.go = Signal()
        self.finished = Signal()
        self.cycles = Signal(CYCLE_BITS)
        self.rb_addr = Signal(range(self.dram_depth + 1))
        self.rb_data = Signal(8 * build.word_bytes)
        self.moved = {k: Signal(CYCLE_BITS, name=v.name) for k, v in self.core.moved.items()}
        self.layer_cycles = [Signal(CYCLE_BITS, name=f"layer_cycles_{k}") for k in range(len(commands))]

    def ports(self):
        return [self.go, self.finished, self.cycles, self.rb_addr, self.rb_data, *self.moved.values(),
                *self.layer_cycles]

    def elaborate(self, platform):
        m = Module()
        core = self.core
        m.submodules.core = core
        n_layers, n_words = len(self.commands), core.cmd_words
        rom = Array(Const(w, CMD_WORD_BITS) for cmd in self.commands for w in cmd + [0] * (n_words - len(cmd)))
        layer = Signal(range(n_layers + 1), name="host_layer")
        word = Signal(range(n_words + 1), name="host_word")
        running = Signal(name="host_running")        # the layer's command is written; the core's go is high
        done = Signal(name="host_done")
        m.d.comb += [done.eq(layer == n_layers), self.finished.eq(done),
                     core.go.eq(running), *[self.moved[k].eq(v) for k, v in core.moved.items()]]
        with m.If(self.go & ~done):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(~running):            # words 0 .. n-1, then one cycle for the registers that load from it
                with m.If(word == n_words):
                    m.d.sync += [word.eq(0), running.eq(1)]
                with m.Else():
                    m.d.comb += [core.cmd_we.eq(1), core.cmd_addr.eq(word),
                                 core.cmd_data.eq(rom[layer * n_words + word])]
                    m.d.sync += word.eq(word + 1)
            with m.Elif(core.finished):
                m.d.sync += [running.eq(0), layer.eq(layer + 1)]
                with m.Switch(layer):
                    for k, sig in enumerate(self.layer_cycles):
                        with m.Case(k):
                            m.d.sync += sig.eq(core.cycles)
        d = core.dram
        simulated_dram(m, word_bytes=core.S.word_bytes, depth=self.dram_depth, init=self.dram_init,
                       latency=core.S.design.memory_system.dram.latency, addr_bits=32,
                       rd_req=(d.rd_req_valid, d.rd_req_addr, d.rd_req_words), rd_rsp=(d.rd_rsp_valid, d.rd_rsp_data),
                       wr=(d.wr_valid, d.wr_addr, d.wr_data), rb=(self.rb_addr, self.rb_data))
        return m
