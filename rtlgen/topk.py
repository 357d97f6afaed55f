"""SpAtten's top-k engine (quick-select, P comparator lanes, FIFO_L/FIFO_R, zero eliminators).

Interface (every boundary a stream; payload layouts below, first field in the least significant bits):

- ``cmd``  In stream {n, k, seed}: one request. Accepted only when idle; its handshake is *start*.
- ``inp``  In stream {data: P x signed(width), keep: P bits}: ceil(n / P) beats; element
  ``beat * P + lane`` is a candidate when its keep bit is set and its index is below n. A zero or
  negative score is an ordinary score; only keep bits carry validity.
- ``out``  Out stream {data: P x signed(width), index: P x unsigned, keep: P bits}: the kept elements in
  original order, packed to the front of each beat by zero eliminators; every beat is full except the
  last, whose keep bits are a prefix. No beat is sent when nothing is kept.
- ``done`` high for one cycle when the request is complete; ``busy``; ``rounds`` = quick-select rounds
  of the last request.
- ``mask_valid``, ``mask_row``, ``mask``: during the replay, the keep decision of input row ``mask_row``
  (elements ``mask_row * P + lane``) before packing, one row per cycle in which the replay advances. A
  consumer that wants a keep bit per element writes these P-bit rows instead of decoding ``out``'s
  indices (P dynamic one-bit writes into an n-bit vector are an n-way decoder per lane).

The schedule, the pivot rule and the memory organisation are ours where the paper is silent; they are
described in docs/topk.md, and archgen.sim.topk_model follows the same schedule cycle for cycle.
"""
from __future__ import annotations

from amaranth import Cat, Elaboratable, Module, Mux, Signal, signed, unsigned
from amaranth.back import verilog
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from archgen.rtlgen.zero_elim import ZeroEliminator

__all__ = ["TopK", "topk_verilog", "field_bits", "LFSR_TAPS", "LFSR_ZERO_SEED"]

LFSR_TAPS = 0xB400        # x^16 + x^14 + x^13 + x^11 + 1, same as archgen.sim.topk_model
LFSR_ZERO_SEED = 0xACE1   # an all-zero LFSR would stay zero


def field_bits(max_n: int) -> tuple[int, int]:
    """(bits of the n and k command fields, bits of an element index) for ``max_n``."""
    return max_n.bit_length(), max(1, (max_n - 1).bit_length())


class _Packer(Elaboratable):
    """Appends the kept lanes of each input vector to a partial row; emits full rows of P lanes.

    A zero eliminator over 2P lanes (the P-lane partial row, already compact, followed by the new
    vector) does the packing, so a row is written only when it is full and the FIFOs hold dense rows.
    ``flush`` emits the partial row (keep bits a prefix) and empties the packer.
    """

    def __init__(self, lanes: int, lane_bits: int):
        self.lanes, self.lane_bits = lanes, lane_bits
        self.in_lanes = Signal(lanes * lane_bits)
        self.in_keep = Signal(lanes)
        self.in_en = Signal()
        self.flush = Signal()
        self.clear = Signal()
        self.row_valid = Signal()
        self.row_lanes = Signal(lanes * lane_bits)
        self.row_keep = Signal(lanes)
        self.acc_lanes = Signal(lanes * lane_bits)
        self.acc_count = Signal(range(lanes + 1))
        self.acc_keep = Signal(lanes)

    def elaborate(self, platform):
        m = Module()
        p, lb = self.lanes, self.lane_bits
        m.submodules.ze = ze = ZeroEliminator(2 * p, unsigned(lb))
        m.d.comb += [self.acc_keep[i].eq(self.acc_count > i) for i in range(p)]
        m.d.comb += [
            ze.i_data.as_value().eq(Cat(self.acc_lanes, self.in_lanes)),
            ze.i_keep.eq(Cat(self.acc_keep, Mux(self.in_en, self.in_keep, 0))),
        ]
        packed = ze.o_data.as_value()
        low, high = packed[:p * lb], packed[p * lb:]
        with m.If(self.clear):
            m.d.sync += self.acc_count.eq(0)
        with m.Elif(self.in_en):
            with m.If(ze.o_count >= p):
                m.d.comb += [self.row_valid.eq(1), self.row_lanes.eq(low), self.row_keep.eq((1 << p) - 1)]
                m.d.sync += [self.acc_lanes.eq(high), self.acc_count.eq(ze.o_count - p)]
            with m.Else():
                m.d.sync += [self.acc_lanes.eq(low), self.acc_count.eq(ze.o_count)]
        with m.Elif(self.flush):
            m.d.comb += [self.row_valid.eq(self.acc_count != 0), self.row_lanes.eq(self.acc_lanes),
                         self.row_keep.eq(self.acc_keep)]
            m.d.sync += self.acc_count.eq(0)
        return m


def _popcount(bits, n):
    return sum(bits[i] for i in range(n)) if n > 1 else bits[0]


class TopK(wiring.Component):
    """Quick-select top-k over up to ``max_n`` signed ``width``-bit scores with P = ``parallelism`` lanes.

    ``fifo_depth`` is the depth of FIFO_L and FIFO_R in rows of P elements. A working set larger than
    ``fifo_depth * P`` is not captured by the FIFOs and is re-read from the input buffer with bounds.
    """

    def __init__(self, parallelism: int, max_n: int, width: int = 16, fifo_depth: int = 64):
        bad = []
        if not isinstance(parallelism, int) or parallelism < 1 or parallelism & (parallelism - 1):
            bad.append(f"parallelism must be a power of two >= 1, not {parallelism!r}")
        if not isinstance(max_n, int) or max_n < 1:
            bad.append(f"max_n must be a positive integer, not {max_n!r}")
        if not isinstance(width, int) or width < 2:
            bad.append(f"width must be an integer >= 2, not {width!r}")
        if not isinstance(fifo_depth, int) or fifo_depth < 1:
            bad.append(f"fifo_depth must be a positive integer, not {fifo_depth!r}")
        if bad:
            raise ValueError("; ".join(bad))
        self.parallelism, self.max_n, self.width, self.fifo_depth = parallelism, max_n, width, fifo_depth
        self.buffer_rows = -(-max_n // parallelism)
        self.count_bits, self.index_bits = field_bits(max_n)
        p = parallelism
        super().__init__({
            "cmd": In(stream.Signature(data.StructLayout({
                "n": unsigned(self.count_bits), "k": unsigned(self.count_bits), "seed": unsigned(16)}))),
            "inp": In(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(width), p), "keep": unsigned(p)}))),
            "out": Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(width), p),
                "index": data.ArrayLayout(unsigned(self.index_bits), p),
                "keep": unsigned(p)}))),
            "done": Out(1),
            "busy": Out(1),
            "rounds": Out(16),
            "mask_valid": Out(1),
            "mask_row": Out(range(max(self.buffer_rows, 2))),
            "mask": Out(p),
        })

    def elaborate(self, platform):
        m = Module()
        p, w, ib, d = self.parallelism, self.width, self.index_bits, self.fifo_depth
        lg = (p - 1).bit_length()
        lane_bits = w + ib
        row_bits = p * lane_bits
        cb = self.count_bits

        buf = Memory(shape=unsigned(p * (w + 1)), depth=self.buffer_rows, init=[])
        fifo_l = Memory(shape=unsigned(row_bits + p), depth=d, init=[])
        fifo_r = Memory(shape=unsigned(row_bits + p), depth=d, init=[])
        m.submodules.buf, m.submodules.fifo_l, m.submodules.fifo_r = buf, fifo_l, fifo_r
        buf_wr, buf_rd = buf.write_port(), buf.read_port()
        fl_wr, fl_rd = fifo_l.write_port(), fifo_l.read_port()
        fr_wr, fr_rd = fifo_r.write_port(), fifo_r.read_port()
        m.submodules.pack_l = pack_l = _Packer(p, lane_bits)
        m.submodules.pack_r = pack_r = _Packer(p, lane_bits)
        m.submodules.pack_o = pack_o = _Packer(p, lane_bits)

        # Request registers.
        n = Signal(cb)
        k = Signal(cb)
        rows_b = Signal(range(self.buffer_rows + 1))     # B = ceil(n / P)
        lfsr = Signal(16)
        rounds = Signal(16)
        m.d.comb += self.rounds.eq(rounds)
        # Quick-select state.
        target = Signal(cb)
        pivot = Signal(signed(w))
        lo, hi = Signal(signed(w)), Signal(signed(w))
        lo_inf, hi_inf = Signal(), Signal()
        src_fifo = Signal()          # 1: read the partition FIFO of side src_right; 0: the buffer
        src_right = Signal()
        rows_s = Signal(range(max(self.buffer_rows, d) + 1))
        cnt_g, cnt_e, cnt_l = Signal(cb), Signal(cb), Signal(cb)
        wr_l, wr_r = Signal(range(d + 1)), Signal(range(d + 1))
        ws_size = Signal(cb)          # |W| of the round being set up
        piv_row = Signal(range(d))
        piv_lanes = Signal(range(p + 1))
        after_ingest = Signal()
        mode_all = Signal()
        kth = Signal(signed(w))
        keep_eq = Signal(cb)
        eq_seen = Signal(cb)
        cnt = Signal(range(max(self.buffer_rows, d) + 3))

        # Pipeline: stage A = source lanes (input beat or memory read data), stage B = packers.
        out_valid = Signal()
        adv = Signal()               # the replay pipeline may move (output register free)
        m.d.comb += [adv.eq(~out_valid | self.out.ready), self.out.valid.eq(out_valid)]
        a_valid, a_replay = Signal(), Signal()
        a_row = Signal(range(max(self.buffer_rows, 1)))
        a_from_fifo, a_right = Signal(), Signal()
        ingest_beat = Signal()
        a_vals = [Signal(signed(w), name=f"a_val{i}") for i in range(p)]
        a_idx = [Signal(ib, name=f"a_idx{i}") for i in range(p)]
        a_keep = Signal(p)
        b_valid, b_replay = Signal(), Signal()
        b_lanes = Signal(row_bits)
        b_gt, b_eq, b_lt, b_keep = Signal(p), Signal(p), Signal(p), Signal(p)
        b_row = Signal.like(a_row)

        # Stage A sources.
        with m.If(ingest_beat):
            beat = cnt
            for i in range(p):
                full_index = Signal(cb + lg + 1, name=f"in_index{i}")
                m.d.comb += [full_index.eq((beat << lg) | i),
                             a_vals[i].eq(self.inp.payload.data[i]),
                             a_idx[i].eq(full_index),
                             a_keep[i].eq(self.inp.payload.keep[i] & (full_index < n))]
        with m.Elif(a_from_fifo):
            row = Mux(a_right, fr_rd.data, fl_rd.data)
            for i in range(p):
                lane = row[i * lane_bits:(i + 1) * lane_bits]
                m.d.comb += [a_vals[i].eq(lane[:w]), a_idx[i].eq(lane[w:]),
                             a_keep[i].eq(row[row_bits + i])]
        with m.Else():
            for i in range(p):
                m.d.comb += [a_vals[i].eq(buf_rd.data[i * w:(i + 1) * w]),
                             a_idx[i].eq((a_row << lg) | i),
                             a_keep[i].eq(buf_rd.data[p * w + i])]
        a_live = Signal()
        m.d.comb += a_live.eq(ingest_beat | a_valid)

        # Stage A compare: quick-select partition, or the replay's keep decision.
        gt, eq, lt, keep = Signal(p), Signal(p), Signal(p), Signal(p)
        eq_k = Signal(p)
        for i in range(p):
            v = a_vals[i]
            inside = a_keep[i] & (lo_inf | (v > lo)) & (hi_inf | (v < hi))
            m.d.comb += [
                gt[i].eq(~ingest_beat & inside & (v > pivot)),
                eq[i].eq(~ingest_beat & inside & (v == pivot)),
                lt[i].eq(Mux(ingest_beat, a_keep[i], inside & (v < pivot))),
                eq_k[i].eq(a_keep[i] & (v == kth)),
            ]
        # Equal elements are kept in original order until keep_eq of them have passed.
        prefix = eq_seen
        for i in range(p):
            before = Signal(cb + 1, name=f"eq_before{i}")
            m.d.comb += before.eq(prefix)
            m.d.comb += keep[i].eq(a_keep[i] & (mode_all | (a_vals[i] > kth) | (eq_k[i] & (before < keep_eq))))
            prefix = before + eq_k[i]
        with m.If(adv):
            m.d.sync += [b_valid.eq(a_live), b_replay.eq(a_replay & a_valid),
                         b_lanes.eq(Cat(*[Cat(a_vals[i], a_idx[i]) for i in range(p)])),
                         b_gt.eq(gt), b_eq.eq(eq), b_lt.eq(lt), b_keep.eq(keep), b_row.eq(a_row)]
            with m.If(a_valid & a_replay):
                m.d.sync += eq_seen.eq(eq_seen + _popcount(eq_k, p))

        # Stage B: partition packers write FIFO_L / FIFO_R; the output packer fills the output register.
        part = Signal()
        m.d.comb += part.eq(b_valid & ~b_replay)
        m.d.comb += [pack_l.in_lanes.eq(b_lanes), pack_l.in_keep.eq(b_lt), pack_l.in_en.eq(part),
                     pack_r.in_lanes.eq(b_lanes), pack_r.in_keep.eq(b_gt), pack_r.in_en.eq(part),
                     pack_o.in_lanes.eq(b_lanes), pack_o.in_keep.eq(b_keep),
                     pack_o.in_en.eq(b_valid & b_replay & adv)]
        m.d.comb += [self.mask_valid.eq(b_valid & b_replay & adv), self.mask_row.eq(b_row), self.mask.eq(b_keep)]
        with m.If(part):
            m.d.sync += [cnt_g.eq(cnt_g + _popcount(b_gt, p)), cnt_e.eq(cnt_e + _popcount(b_eq, p)),
                         cnt_l.eq(cnt_l + _popcount(b_lt, p))]
        for pk, wr, fw in ((pack_l, wr_l, fl_wr), (pack_r, wr_r, fr_wr)):
            m.d.comb += [fw.addr.eq(wr), fw.data.eq(Cat(pk.row_lanes, pk.row_keep)),
                         fw.en.eq(pk.row_valid & (wr < d))]
            with m.If(pk.row_valid & (wr < d)):
                m.d.sync += wr.eq(wr + 1)
        with m.If(adv):
            m.d.sync += out_valid.eq(pack_o.row_valid)
            with m.If(pack_o.row_valid):
                m.d.sync += [self.out.payload.as_value().eq(
                    Cat(*[pack_o.row_lanes[i * lane_bits:i * lane_bits + w] for i in range(p)],
                        *[pack_o.row_lanes[i * lane_bits + w:(i + 1) * lane_bits] for i in range(p)],
                        pack_o.row_keep))]

        # Memory ports.
        m.d.comb += [buf_wr.addr.eq(cnt), buf_wr.data.eq(Cat(self.inp.payload.data, a_keep)),
                     buf_wr.en.eq(ingest_beat), buf_rd.en.eq(adv), fl_rd.en.eq(1), fr_rd.en.eq(1)]
        rd_addr = Signal.like(cnt)
        m.d.comb += [buf_rd.addr.eq(rd_addr), fl_rd.addr.eq(rd_addr), fr_rd.addr.eq(rd_addr)]

        # Pivot: a row floor(lfsr * rows / 2^16) of the chosen side's FIFO (rows = the rows it holds),
        # then a lane floor(lfsr' * lanes_in_that_row / 2^16); see docs/topk.md "Pivot rule".
        side_right = Signal()
        side_size = Signal(cb)
        side_rows = Signal(range(max(self.buffer_rows, d) + 1))
        m.d.comb += side_rows.eq(Mux(side_size <= d * p, (side_size + p - 1) >> lg, d))
        row_sel = Signal(range(d))
        m.d.comb += row_sel.eq((lfsr * side_rows) >> 16)
        lane_sel = Signal(range(max(p, 2)))
        m.d.comb += lane_sel.eq((lfsr * piv_lanes) >> 16)
        pivot_row = Signal(row_bits + p)
        m.d.comb += pivot_row.eq(Mux(src_right, fr_rd.data, fl_rd.data))
        pick = Signal(signed(w))
        m.d.comb += pick.eq(pivot_row[:row_bits].word_select(lane_sel, lane_bits)[:w])
        rest = Signal(cb + 1)
        m.d.comb += rest.eq(ws_size - (piv_row << lg))
        # 16 LFSR shifts per draw, unrolled into an XOR network, so successive draws share no bits.
        state = lfsr
        for step in range(16):
            shifted = Signal(16, name=f"lfsr_shift{step}")
            m.d.comb += shifted.eq((state >> 1) ^ Mux(state[0], LFSR_TAPS, 0))
            state = shifted
        next_lfsr = state

        m.d.comb += self.busy.eq(1)
        with m.FSM(name="topk_fsm"):
            with m.State("IDLE"):
                m.d.comb += [self.cmd.ready.eq(1), self.busy.eq(0)]
                with m.If(self.cmd.valid):
                    c = self.cmd.payload
                    m.d.sync += [n.eq(c.n), k.eq(c.k), rows_b.eq((c.n + p - 1) >> lg),
                                 lfsr.eq(Mux(c.seed == 0, LFSR_ZERO_SEED, c.seed)), rounds.eq(0),
                                 cnt.eq(0), cnt_g.eq(0), cnt_e.eq(0), cnt_l.eq(0), wr_l.eq(0), wr_r.eq(0),
                                 after_ingest.eq(1), lo_inf.eq(1), hi_inf.eq(1), mode_all.eq(0),
                                 eq_seen.eq(0)]
                    m.d.comb += [pack_l.clear.eq(1), pack_r.clear.eq(1), pack_o.clear.eq(1)]
                    with m.If(c.n == 0):
                        m.next = "INGEST_DRAIN"
                    with m.Else():
                        m.next = "INGEST"
            with m.State("INGEST"):
                m.d.comb += [self.inp.ready.eq(1), ingest_beat.eq(self.inp.valid)]
                with m.If(self.inp.valid):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt + 1 == rows_b):
                        m.next = "INGEST_DRAIN"
            with m.State("INGEST_DRAIN"):
                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.comb += [pack_l.flush.eq(1), pack_r.flush.eq(1)]
                go_scan = Signal()
                with m.If(after_ingest):
                    m.d.comb += [side_right.eq(0), side_size.eq(cnt_l)]
                    m.d.sync += [after_ingest.eq(0), target.eq(k)]
                    with m.If(k == 0):
                        m.next = "DONE"
                    with m.Elif(k >= cnt_l):
                        m.d.sync += [mode_all.eq(1), cnt.eq(0)]
                        m.next = "REPLAY"
                    with m.Else():
                        m.d.comb += go_scan.eq(1)
                with m.Elif(target <= cnt_g):
                    m.d.comb += [side_right.eq(1), side_size.eq(cnt_g), go_scan.eq(1)]
                    m.d.sync += [lo.eq(pivot), lo_inf.eq(0)]
                with m.Elif(target <= cnt_g + cnt_e):
                    m.d.sync += [kth.eq(pivot), keep_eq.eq(target - cnt_g), cnt.eq(0)]
                    m.next = "REPLAY"
                with m.Else():
                    m.d.comb += [side_right.eq(0), side_size.eq(cnt_l), go_scan.eq(1)]
                    m.d.sync += [hi.eq(pivot), hi_inf.eq(0), target.eq(target - cnt_g - cnt_e)]
                with m.If(go_scan):
                    fits = side_size <= d * p
                    m.d.sync += [piv_row.eq(row_sel), ws_size.eq(side_size), lfsr.eq(next_lfsr),
                                 rounds.eq(rounds + 1), src_fifo.eq(fits), src_right.eq(side_right),
                                 rows_s.eq(Mux(fits, (side_size + p - 1) >> lg, rows_b)),
                                 cnt.eq(0), cnt_g.eq(0), cnt_e.eq(0), cnt_l.eq(0), wr_l.eq(0), wr_r.eq(0)]
                    m.next = "PIVOT_RD"
            with m.State("PIVOT_RD"):
                # The FIFO row read here arrives during SCAN's first cycle, when no lane is compared yet.
                m.d.comb += rd_addr.eq(piv_row)
                m.d.sync += piv_lanes.eq(Mux(rest >= p, p, rest))
                m.next = "SCAN"
            with m.State("SCAN"):
                m.d.comb += rd_addr.eq(cnt)
                with m.If(cnt == 0):
                    m.d.sync += [pivot.eq(pick), lfsr.eq(next_lfsr)]
                m.d.sync += [a_valid.eq(cnt < rows_s), a_replay.eq(0), a_from_fifo.eq(src_fifo),
                             a_right.eq(src_right), a_row.eq(cnt), cnt.eq(cnt + 1)]
                with m.If(cnt == rows_s + 1):
                    m.next = "DECIDE"
            with m.State("REPLAY"):
                m.d.comb += rd_addr.eq(cnt)
                with m.If(adv):
                    m.d.sync += [a_valid.eq(cnt < rows_b), a_replay.eq(1), a_from_fifo.eq(0),
                                 a_row.eq(cnt), cnt.eq(cnt + 1)]
                    with m.If(cnt == rows_b + 1):
                        m.next = "RFLUSH"
            with m.State("RFLUSH"):
                m.d.comb += pack_o.flush.eq(adv)
                m.d.sync += a_valid.eq(0)
                with m.If(adv):
                    m.next = "RDRAIN"
            with m.State("RDRAIN"):
                with m.If(adv):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m


def topk_verilog(parallelism: int, max_n: int, width: int = 16, fifo_depth: int = 64,
                 name: str = "topk") -> str:
    """Verilog of a TopK engine; deterministic (no source paths embedded)."""
    return verilog.convert(TopK(parallelism, max_n, width, fifo_depth), name=name, emit_src=False)
