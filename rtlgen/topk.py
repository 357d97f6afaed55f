"""SpAtten's top-k engine (quick-select, P comparator lanes, FIFO_L/FIFO_R, zero eliminators).

Interface (every boundary a stream; payload layouts below, first field in the least significant bits):

- ``cmd``  In stream {n, k, seed}: one request. Accepted only when idle; its handshake is *start*.
- ``inp``  In stream {data: P x signed(width), keep: P bits}: ceil(n / P) beats; element
  ``beat * P + lane`` is a candidate when its keep bit is set and its index is below n. A zero or
  negative score is an ordinary score; only keep bits carry validity.
- ``out``  Out stream {data: P x signed(width), index: P x unsigned, keep: P bits}: the kept elements in
  original order, packed to the front of each beat by zero eliminators; every beat is full except the
  last, whose keep bits are a prefix. No beat is sent when nothing is kept.
- ``done`` high for one cycle when the request is complete; ``busy``; ``rounds`` = partitions whose
  decision was used in the last request (the ingest partition included; 0 for k = 0 or k >= count).
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


class _AppendPacker(Elaboratable):
    """Appends an already compacted vector (``in_count`` lanes first, other lanes zero) to a partial
    row; emits full rows of P lanes. The output side's packer: its input is compacted one pipeline
    stage earlier, so that only a shift by the partial row's count is on the loop through the
    partial-row registers. ``flush`` emits the partial row (keep bits a prefix) and empties it.
    """

    def __init__(self, lanes: int, lane_bits: int):
        self.lanes, self.lane_bits = lanes, lane_bits
        self.in_lanes = Signal(lanes * lane_bits)
        self.in_count = Signal(range(lanes + 1))
        self.in_en = Signal()
        self.flush = Signal()
        self.clear = Signal()
        self.row_valid = Signal()
        self.row_lanes = Signal(lanes * lane_bits)
        self.row_keep = Signal(lanes)
        self.acc_lanes = Signal(lanes * lane_bits)    # lanes at or above acc_count are zero
        self.acc_count = Signal(range(lanes + 1))

    def elaborate(self, platform):
        m = Module()
        p, lb = self.lanes, self.lane_bits
        # shift the new lanes up by acc_count (< P) lanes: log2(P) stages of constant shifts
        shifted = Signal(2 * p * lb)
        m.d.comb += shifted.eq(self.in_lanes)
        for j in range((p - 1).bit_length()):
            stage = Signal(2 * p * lb, name=f"append_shift{j}")
            m.d.comb += stage.eq(Mux(self.acc_count[j], shifted << ((1 << j) * lb), shifted))
            shifted = stage
        window = Signal(2 * p * lb)
        m.d.comb += window.eq(self.acc_lanes | shifted)
        total = Signal(range(2 * p + 1))
        m.d.comb += total.eq(self.acc_count + self.in_count)
        low, high = window[:p * lb], window[p * lb:]
        with m.If(self.clear):
            m.d.sync += [self.acc_count.eq(0), self.acc_lanes.eq(0)]
        with m.Elif(self.in_en):
            with m.If(total >= p):
                m.d.comb += [self.row_valid.eq(1), self.row_lanes.eq(low), self.row_keep.eq((1 << p) - 1)]
                m.d.sync += [self.acc_lanes.eq(high), self.acc_count.eq(total - p)]
            with m.Else():
                m.d.sync += [self.acc_lanes.eq(low), self.acc_count.eq(total)]
        with m.Elif(self.flush):
            m.d.comb += [self.row_valid.eq(self.acc_count != 0), self.row_lanes.eq(self.acc_lanes),
                         self.row_keep.eq(Cat(*[self.acc_count > i for i in range(p)]))]
            m.d.sync += [self.acc_count.eq(0), self.acc_lanes.eq(0)]
        return m


def _popcount(bits, n):
    """Number of set bits among bits[0..n-1], as a balanced adder tree (depth log2 n, not n)."""
    terms = [bits[i] for i in range(n)]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


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
        ext = signed(w + 1)                       # scores, pivot and bounds with room for +-infinity
        pos_inf, neg_inf = 1 << (w - 1), -(1 << (w - 1)) - 1

        buf = Memory(shape=unsigned(p * (w + 1)), depth=self.buffer_rows, init=[])
        fifo_l = Memory(shape=unsigned(row_bits + p), depth=d, init=[])
        fifo_r = Memory(shape=unsigned(row_bits + p), depth=d, init=[])
        m.submodules.buf, m.submodules.fifo_l, m.submodules.fifo_r = buf, fifo_l, fifo_r
        buf_wr, buf_rd = buf.write_port(), buf.read_port()
        fl_wr, fl_rd = fifo_l.write_port(), fifo_l.read_port()
        fr_wr, fr_rd = fifo_r.write_port(), fifo_r.read_port()
        m.submodules.pack_l = pack_l = _AppendPacker(p, lane_bits)
        m.submodules.pack_r = pack_r = _AppendPacker(p, lane_bits)
        m.submodules.compact_l = compact_l = ZeroEliminator(p, unsigned(lane_bits))
        m.submodules.compact_r = compact_r = ZeroEliminator(p, unsigned(lane_bits))
        m.submodules.pack_o = pack_o = _AppendPacker(p, lane_bits)
        m.submodules.compact_o = compact_o = ZeroEliminator(p, unsigned(lane_bits))

        # Request registers.
        n = Signal(cb)
        k = Signal(cb)
        rows_b = Signal(range(self.buffer_rows + 1))     # B = ceil(n / P)
        lfsr = Signal(16)
        rounds = Signal(16)
        m.d.comb += self.rounds.eq(rounds)
        # Quick-select state.
        target = Signal(cb)
        pivot = Signal(ext)
        lo, hi = Signal(ext), Signal(ext)                # working set: lo < x < hi
        src_fifo = Signal()          # 1: read the partition FIFO of side src_right; 0: the buffer
        src_right = Signal()
        rows_s = Signal(range(max(self.buffer_rows, d) + 1))
        cnt_g, cnt_e, cnt_l = Signal(cb), Signal(cb), Signal(cb)
        cnt_ge, cnt_all = Signal(cb), Signal(cb)          # g + e and g + e + l, kept as counters
        wr_l, wr_r = Signal(range(d + 1)), Signal(range(d + 1))
        piv_lane = Signal(range(max(p, 2)))
        first_lane = Signal(range(max(p, 2)))           # lane of the first beat that gives the pivot
        after_ingest = Signal()
        mode_all = Signal()
        kth = Signal(signed(w))
        eq_left = Signal(cb)         # elements equal to the k-th value still to keep (replay)
        cnt = Signal(range(max(self.buffer_rows, d) + 5))

        # Pipeline (see docs/topk.md "Pipeline"): address -> s1 (memory read) -> s2 (memory output
        # registers / registered input beat) -> s3 (compare registers) -> s3c (compacted sides) ->
        # partition packers, or -> s4 (replay keep registers) -> s5 (compacted kept row) -> output
        # packer -> output register.
        out_valid = Signal()
        adv = Signal()               # the pipeline may move (the output register is free or drains)
        m.d.comb += [adv.eq(~out_valid | self.out.ready), self.out.valid.eq(out_valid)]
        ingest_beat = Signal()
        s1_valid, s1_replay, s1_fifo = Signal(name="s1_valid"), Signal(name="s1_replay"), Signal(name="s1_fifo")
        s1_row = Signal(range(max(self.buffer_rows, d, 2)))
        s2_valid, s2_replay, s2_fifo = Signal(name="s2_valid"), Signal(name="s2_replay"), Signal(name="s2_fifo")
        s2_row = Signal.like(s1_row)
        # s2 registers: r_plain holds an input beat (ingest) or a buffer row, r_fifo a row of the FIFO of
        # side src_right; one 2:1 multiplexer sits between a block RAM and its register, none between
        # the registers and the comparators but the FIFO-or-plain choice.
        r_plain = Signal(p * (w + 1))
        r_fifo = Signal(row_bits + p)
        in_row = Signal(p * (w + 1))      # an input beat as stored: data, then keep (index < n included)
        full_index = [Signal(cb + lg + 1, name=f"in_index{i}") for i in range(p)]
        m.d.comb += [full_index[i].eq((cnt << lg) | i) for i in range(p)]
        m.d.comb += in_row.eq(Cat(self.inp.payload.data,
                                  *[self.inp.payload.keep[i] & (full_index[i] < n) for i in range(p)]))
        with m.If(adv):
            m.d.sync += [s1_valid.eq(0),
                         s2_valid.eq(s1_valid | ingest_beat), s2_replay.eq(s1_valid & s1_replay),
                         s2_fifo.eq(s1_fifo & ~ingest_beat), s2_row.eq(Mux(ingest_beat, cnt, s1_row)),
                         r_plain.eq(Mux(ingest_beat, in_row, buf_rd.data)),
                         r_fifo.eq(Mux(src_right, fr_rd.data, fl_rd.data))]

        # s2: the selected source's lanes (values, indices, keep bits) go to s3 as data.
        vals = [Signal(signed(w), name=f"s2_val{i}") for i in range(p)]
        idxs = [Signal(ib, name=f"s2_idx{i}") for i in range(p)]
        keeps = Signal(p)
        plain, fifo_row = r_plain, r_fifo
        for i in range(p):
            lane = fifo_row[i * lane_bits:(i + 1) * lane_bits]
            with m.If(s2_fifo):
                m.d.comb += [vals[i].eq(lane[:w]), idxs[i].eq(lane[w:]), keeps[i].eq(fifo_row[row_bits + i])]
            with m.Else():
                m.d.comb += [vals[i].eq(plain[i * w:(i + 1) * w]), idxs[i].eq((s2_row << lg) | i),
                             keeps[i].eq(plain[p * w + i])]
        # The comparators are duplicated per source (FIFO row, plain row) and only their one-bit
        # results are selected and registered; the AND with the keep bit and the bounds is done after
        # the register. A FIFO row needs no bounds: a FIFO holds exactly the working set.
        names = ("gt", "eq", "lt", "gtk", "eqk", "in_lo", "in_hi")
        raw = [Signal(p, name=f"s2_{x}") for x in names]
        sources = []
        for tag, lane_of in (("f", lambda i: fifo_row[i * lane_bits:i * lane_bits + w]),
                             ("p", lambda i: plain[i * w:(i + 1) * w])):
            bits = [Signal(p, name=f"{tag}_{x}") for x in names]
            for i in range(p):
                v = Signal(signed(w), name=f"{tag}_val{i}")
                m.d.comb += v.eq(lane_of(i))
                m.d.comb += [bits[0][i].eq(v > pivot), bits[1][i].eq(v == pivot), bits[2][i].eq(v < pivot),
                             bits[3][i].eq(v > kth), bits[4][i].eq(v == kth),
                             bits[5][i].eq(1 if tag == "f" else v > lo),
                             bits[6][i].eq(1 if tag == "f" else v < hi)]
            sources.append(bits)
        for dst, f_bits, p_bits in zip(raw, *sources):
            m.d.comb += dst.eq(Mux(s2_fifo, f_bits, p_bits))
        s3_valid, s3_replay = Signal(name="s3_valid"), Signal(name="s3_replay")
        s3_row = Signal.like(s1_row)
        s3_lanes = Signal(row_bits)
        s3_raw = [Signal(p, name=f"s3_{x}_raw") for x in names]
        s3_keep = Signal(p)
        with m.If(adv):
            m.d.sync += [s3_valid.eq(s2_valid), s3_replay.eq(s2_replay), s3_row.eq(s2_row),
                         s3_lanes.eq(Cat(*[Cat(vals[i], idxs[i]) for i in range(p)])),
                         s3_keep.eq(keeps), *[r.eq(x) for r, x in zip(s3_raw, raw)]]
        s3_gt, s3_eq, s3_lt, s3_gtk, s3_eqk = (Signal(p, name=f"s3_{x}") for x in names[:5])
        inside = Signal(p)
        m.d.comb += [inside.eq(s3_keep & s3_raw[5] & s3_raw[6]),
                     s3_gt.eq(inside & s3_raw[0]), s3_eq.eq(inside & s3_raw[1]), s3_lt.eq(inside & s3_raw[2]),
                     s3_gtk.eq(s3_keep & s3_raw[3]), s3_eqk.eq(s3_keep & s3_raw[4])]

        # s3 -> counts, and each side's lanes compacted into a register (s3c); s3c -> the partition
        # packers (FIFO_L / FIFO_R), which only shift the compacted row behind their partial row.
        part = Signal()
        m.d.comb += part.eq(s3_valid & ~s3_replay)
        s3c_part = Signal()
        side_rows = []
        for ze, sel in ((compact_l, s3_lt), (compact_r, s3_gt)):
            m.d.comb += [ze.i_data.as_value().eq(s3_lanes), ze.i_keep.eq(sel)]
            lanes, count = Signal(row_bits), Signal(range(p + 1))
            with m.If(adv):
                m.d.sync += [count.eq(ze.o_count),
                             lanes.eq(Cat(*[Mux(ze.o_keep[i], ze.o_data[i], 0) for i in range(p)]))]
            side_rows.append((lanes, count))
        with m.If(adv):
            m.d.sync += s3c_part.eq(part)
        for pk, (lanes, count) in zip((pack_l, pack_r), side_rows):
            m.d.comb += [pk.in_lanes.eq(lanes), pk.in_count.eq(count), pk.in_en.eq(s3c_part)]
        with m.If(part):
            m.d.sync += [cnt_g.eq(cnt_g + _popcount(s3_gt, p)), cnt_e.eq(cnt_e + _popcount(s3_eq, p)),
                         cnt_l.eq(cnt_l + _popcount(s3_lt, p)),
                         cnt_ge.eq(cnt_ge + _popcount(s3_gt | s3_eq, p)),
                         cnt_all.eq(cnt_all + _popcount(s3_gt | s3_eq | s3_lt, p))]
        for pk, wr, fw in ((pack_l, wr_l, fl_wr), (pack_r, wr_r, fr_wr)):
            m.d.comb += [fw.addr.eq(wr), fw.data.eq(Cat(pk.row_lanes, pk.row_keep)),
                         fw.en.eq(pk.row_valid & (wr < d))]
            with m.If(pk.row_valid & (wr < d)):
                m.d.sync += wr.eq(wr + 1)

        # s3 -> replay keep decision (s4): greater than the k-th value, or equal and among the first
        # eq_left equal ones in index order (a lane prefix count against a down-counter).
        keep = Signal(p)
        prefix = 0
        for i in range(p):
            m.d.comb += keep[i].eq(s3_keep[i] & (mode_all | s3_gtk[i] | (s3_eqk[i] & (prefix < eq_left))))
            prefix = prefix + s3_eqk[i]
        s4_valid = Signal()
        s4_row = Signal.like(s1_row)
        s4_lanes, s4_keep = Signal(row_bits), Signal(p)
        eq_here = Signal(range(p + 1))
        m.d.comb += eq_here.eq(_popcount(s3_eqk, p))
        with m.If(adv):
            m.d.sync += [s4_valid.eq(s3_valid & s3_replay), s4_row.eq(s3_row), s4_lanes.eq(s3_lanes),
                         s4_keep.eq(keep)]
            with m.If(s3_valid & s3_replay):
                m.d.sync += eq_left.eq(Mux(eq_left > eq_here, eq_left - eq_here, 0))

        # s4 -> output packer -> output register.
        m.d.comb += [self.mask_valid.eq(s4_valid & adv), self.mask_row.eq(s4_row), self.mask.eq(s4_keep)]

        # s4 -> s5: the kept lanes compacted to the front (other lanes zeroed) and their count.
        m.d.comb += [compact_o.i_data.as_value().eq(s4_lanes), compact_o.i_keep.eq(s4_keep)]
        s5_valid = Signal()
        s5_lanes = Signal(row_bits)
        s5_count = Signal(range(p + 1))
        with m.If(adv):
            m.d.sync += [s5_valid.eq(s4_valid), s5_count.eq(compact_o.o_count),
                         s5_lanes.eq(Cat(*[Mux(compact_o.o_keep[i], compact_o.o_data[i], 0)
                                           for i in range(p)]))]
        m.d.comb += [pack_o.in_lanes.eq(s5_lanes), pack_o.in_count.eq(s5_count),
                     pack_o.in_en.eq(s5_valid & adv)]
        with m.If(adv):
            m.d.sync += out_valid.eq(pack_o.row_valid)
            with m.If(pack_o.row_valid):
                m.d.sync += [self.out.payload.as_value().eq(
                    Cat(*[pack_o.row_lanes[i * lane_bits:i * lane_bits + w] for i in range(p)],
                        *[pack_o.row_lanes[i * lane_bits + w:(i + 1) * lane_bits] for i in range(p)],
                        pack_o.row_keep))]

        # Memory ports.
        rd_addr = Signal.like(cnt)
        m.d.comb += [buf_wr.addr.eq(cnt), buf_wr.data.eq(in_row), buf_wr.en.eq(ingest_beat),
                     buf_rd.en.eq(adv), fl_rd.en.eq(1), fr_rd.en.eq(1),
                     buf_rd.addr.eq(rd_addr), fl_rd.addr.eq(rd_addr), fr_rd.addr.eq(rd_addr)]

        # Pivot draw (docs/topk.md "Pivot rule"): position floor(lfsr * m / 2^16) among the m elements the
        # chosen side's FIFO holds; its row is read, its lane picked from the registered row.
        pick = Signal(signed(w))
        m.d.comb += pick.eq(r_fifo[:row_bits].word_select(piv_lane, lane_bits)[:w])
        # 16 LFSR shifts per draw, unrolled into an XOR network, so successive draws share no bits.
        state = lfsr
        for step in range(16):
            shifted = Signal(16, name=f"lfsr_shift{step}")
            m.d.comb += shifted.eq((state >> 1) ^ Mux(state[0], LFSR_TAPS, 0))
            state = shifted
        next_lfsr = state

        # Decision (docs/topk.md "Decision"); after the ingest partition the target is k itself.
        t = Signal(cb)
        m.d.comb += t.eq(Mux(after_ingest, k, target))
        ge, total = cnt_ge, cnt_all
        # both sides' FIFO fit and row count are computed before the decision picks one (short path)
        fits_g, fits_l = Signal(), Signal()
        rows_g, rows_l = Signal.like(rows_s), Signal.like(rows_s)
        for fit, rows, size in ((fits_g, rows_g, cnt_g), (fits_l, rows_l, cnt_l)):
            m.d.comb += [fit.eq(size <= d * p), rows.eq(Mux(fit, (size + p - 1) >> lg, rows_b))]
        # Both sides' draws are multiplied straight from the counters and registered every cycle (in
        # Decide they hold the final counts); a side that does not fit draws from its first D * P
        # elements (a constant multiply). Two registers rather than one multiplexed product keep the
        # side decision off the multiplier's inputs (Yosys would otherwise share one multiplier).
        # Pivot read: the chosen side's position selects the row; its low bits are the lane.
        pos_cap = Signal(range(max(d * p, 2)))
        m.d.sync += pos_cap.eq((lfsr * (d * p)) >> 16)
        pos_g, pos_l = Signal(range(max(d * p, 2))), Signal(range(max(d * p, 2)))
        m.d.sync += [pos_g.eq(Mux(fits_g, (lfsr * cnt_g) >> 16, pos_cap)),
                     pos_l.eq(Mux(fits_l, (lfsr * cnt_l) >> 16, pos_cap))]
        draw_pos = Signal(range(max(d * p, 2)))
        m.d.comb += draw_pos.eq(Mux(src_right, pos_g, pos_l))
        side_right = Signal()

        m.d.comb += self.busy.eq(1)
        with m.FSM(name="topk_fsm"):
            with m.State("IDLE"):
                m.d.comb += [self.cmd.ready.eq(1), self.busy.eq(0)]
                with m.If(self.cmd.valid):
                    c = self.cmd.payload
                    seed_state = Signal(16)
                    m.d.comb += seed_state.eq(Mux(c.seed == 0, LFSR_ZERO_SEED, c.seed))
                    m.d.sync += [n.eq(c.n), k.eq(c.k), rows_b.eq((c.n + p - 1) >> lg),
                                 lfsr.eq(seed_state), first_lane.eq(seed_state >> (16 - lg) if p > 1 else 0),
                                 rounds.eq(0), cnt.eq(0), cnt_g.eq(0), cnt_e.eq(0), cnt_l.eq(0),
                                 cnt_ge.eq(0), cnt_all.eq(0),
                                 wr_l.eq(0), wr_r.eq(0), after_ingest.eq(1), mode_all.eq(0),
                                 pivot.eq(pos_inf), lo.eq(neg_inf), hi.eq(pos_inf)]
                    m.d.comb += [pack_l.clear.eq(1), pack_r.clear.eq(1), pack_o.clear.eq(1)]
                    with m.If(c.n == 0):
                        m.next = "INGEST_DRAIN"
                    with m.Else():
                        m.next = "INGEST"
            with m.State("INGEST"):
                m.d.comb += [self.inp.ready.eq(1), ingest_beat.eq(self.inp.valid)]
                with m.If(self.inp.valid):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == 0):
                        # the first beat's lane first_lane is the pivot of the ingest partition; a
                        # hole there (or a lane >= n) leaves the pivot at +infinity (all to FIFO_L)
                        first = self.inp.payload.data[first_lane] if p > 1 else self.inp.payload.data[0]
                        first_keep = in_row[p * w:].bit_select(first_lane, 1) if p > 1 else in_row[p * w]
                        m.d.sync += [pivot.eq(Mux(first_keep, first, pos_inf)), lfsr.eq(next_lfsr)]
                    with m.If(cnt + 1 == rows_b):
                        m.next = "INGEST_DRAIN"
            with m.State("INGEST_DRAIN"):
                m.next = "INGEST_DRAIN2"
            with m.State("INGEST_DRAIN2"):
                m.next = "INGEST_DRAIN3"
            with m.State("INGEST_DRAIN3"):
                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.comb += [pack_l.flush.eq(1), pack_r.flush.eq(1)]
                go_scan = Signal()
                m.d.sync += after_ingest.eq(0)
                with m.If(after_ingest & (k == 0)):
                    m.next = "DONE"
                with m.Elif(after_ingest & (k >= total)):
                    m.d.sync += [mode_all.eq(1), cnt.eq(0)]
                    m.next = "REPLAY"
                with m.Else():
                    m.d.sync += rounds.eq(rounds + 1)
                    with m.If(t <= cnt_g):
                        m.d.comb += [side_right.eq(1), go_scan.eq(1)]
                        m.d.sync += [lo.eq(pivot), target.eq(t)]
                    with m.Elif(t <= ge):
                        m.d.sync += [kth.eq(pivot), eq_left.eq(t - cnt_g), cnt.eq(0)]
                        m.next = "REPLAY"
                    with m.Else():
                        m.d.comb += [side_right.eq(0), go_scan.eq(1)]
                        m.d.sync += [hi.eq(pivot), target.eq(t - ge)]
                with m.If(go_scan):
                    m.d.sync += [src_fifo.eq(Mux(side_right, fits_g, fits_l)), src_right.eq(side_right),
                                 rows_s.eq(Mux(side_right, rows_g, rows_l)),
                                 cnt.eq(0), cnt_g.eq(0), cnt_e.eq(0), cnt_l.eq(0), cnt_ge.eq(0), cnt_all.eq(0),
                                 wr_l.eq(0), wr_r.eq(0)]
                    m.next = "PIVOT_RD"
            with m.State("PIVOT_RD"):
                # the pivot's row is read now, registered during SCAN's cycle 0, picked in cycle 1
                m.d.comb += rd_addr.eq(draw_pos >> lg)
                m.d.sync += [piv_lane.eq(draw_pos & (p - 1)), lfsr.eq(next_lfsr)]
                m.next = "SCAN"
            with m.State("SCAN"):
                m.d.comb += rd_addr.eq(cnt)
                with m.If(cnt == 1):
                    m.d.sync += pivot.eq(pick)
                m.d.sync += [s1_valid.eq(cnt < rows_s), s1_replay.eq(0), s1_fifo.eq(src_fifo),
                             s1_row.eq(cnt), cnt.eq(cnt + 1)]
                with m.If(cnt == rows_s + 3):
                    m.next = "DECIDE"
            with m.State("REPLAY"):
                m.d.comb += rd_addr.eq(cnt)
                with m.If(adv):
                    m.d.sync += [s1_valid.eq(cnt < rows_b), s1_replay.eq(1), s1_fifo.eq(0),
                                 s1_row.eq(cnt), cnt.eq(cnt + 1)]
                    with m.If(cnt == rows_b + 4):
                        m.next = "RFLUSH"
            with m.State("RFLUSH"):
                m.d.comb += pack_o.flush.eq(adv)
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
