"""SpAtten's top-k engine (quick-select, P comparator lanes, FIFO_L/FIFO_R, zero eliminators).

Interface (every boundary a stream; payload layouts below, first field in the least significant bits):

- ``cmd``  In stream {n, k, seed}: one request. Accepted only when idle; its handshake is *start*. ``seed``
  is kept for the interface and has no effect (eighth session: the pivots come from samples, not an LFSR draw).
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

from types import SimpleNamespace

from amaranth import Cat, Const, Elaboratable, Module, Mux, Signal, signed, unsigned
from amaranth.back import verilog
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from archgen.rtlgen.zero_elim import ZeroEliminator

__all__ = ["TopK", "topk_verilog", "field_bits", "SAMPLE_LANES", "bracket_below",
           "BRACKET_ABOVE", "sample_shape"]

SAMPLE_LANES = 16         # sample lanes ranked for the pivots (32 for P >= 8), same as archgen.sim.topk_model
BRACKET_ABOVE = 2         # the upper pivot's sample rank above the target's, same as archgen.sim.topk_model
SAMPLE_COPY_GROUPS = 4    # with sample_register: each lane registered once per group of the lanes it is compared with


def bracket_below(lanes: int) -> int:
    """The lower pivot's sample rank below the target's (archgen.sim.topk_model.bracket_below)."""
    return 3 if lanes >= 32 else 2 if lanes >= 16 else 1


def sample_shape(parallelism: int, fifo_depth: int, sample_lanes: int | None = None) -> tuple[int, int]:
    """(rows w, lanes S) of the pivot sample (archgen.sim.topk_model.sample_shape): S = ``sample_lanes``
    (default 16, 32 for P >= 8) from w = ceil(S / P) consecutive rows, at most the FIFO depth."""
    lanes = sample_lanes if sample_lanes else 2 * SAMPLE_LANES if parallelism >= 8 else SAMPLE_LANES
    rows = max(1, min(-(-lanes // parallelism), fifo_depth))
    return rows, min(lanes, rows * parallelism)


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
        self.flushing = Signal()     # the row (if any) is the flushed partial one (its keep bits are not all set)

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
        # the clear is last (priority over the updates below) and only on the registers: nothing enters a cleared
        # packer (it clears while the engine is idle), so the row valid does not wait for it
        with m.If(self.in_en):
            with m.If(total >= p):
                m.d.comb += [self.row_valid.eq(1), self.row_lanes.eq(low), self.row_keep.eq((1 << p) - 1)]
                m.d.sync += [self.acc_lanes.eq(high), self.acc_count.eq(total - p)]
            with m.Else():
                m.d.sync += [self.acc_lanes.eq(low), self.acc_count.eq(total)]
        with m.Elif(self.flush):
            m.d.comb += [self.row_valid.eq(self.acc_count != 0), self.row_lanes.eq(self.acc_lanes), self.flushing.eq(1),
                         self.row_keep.eq(Cat(*[self.acc_count > i for i in range(p)]))]
            m.d.sync += [self.acc_count.eq(0), self.acc_lanes.eq(0)]
        with m.If(self.clear):
            m.d.sync += [self.acc_count.eq(0), self.acc_lanes.eq(0)]
        return m


def _copy_register(shape, g, name):
    """Copy ``g`` (0..3) of a register that is duplicated for placement: Yosys merges flip-flops with the same
    input, initial value and reset, bit by bit, so the copies differ in both (initial value all ones for odd g,
    no reset for g >= 2; neither matters: a copy is always loaded before it is read)."""
    ones = -1 if shape.signed else (1 << shape.width) - 1
    return Signal(shape, init=ones if g & 1 else 0, reset_less=bool(g & 2), name=name, attrs={"keep": "true"})


def _or_select(sel, words, count, width):
    """The ``width``-bit word of ``words`` whose one-hot ``sel`` bit is set (an AND-OR, no encoder)."""
    terms = [Mux(sel[i], words[i * width:(i + 1) * width], 0) for i in range(count)]
    while len(terms) > 1:
        terms = [terms[i] | terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def _const_mul(x, c):
    """x * c for a constant c >= 1 as shifts and adds of its canonical signed digits (at most two adders for
    c < 16), so that synthesis uses no multiplier block for it."""
    terms, bit = [], 0
    while c:
        if c & 1:
            digit = 2 - (c & 3)          # +1, or -1 when the next bit is set too (a run of ones)
            terms.append((digit, bit))
            c -= digit
        c >>= 1
        bit += 1
    plus = [x << b for digit, b in terms if digit > 0]
    value = plus[0]
    for term in plus[1:]:
        value = value + term
    for digit, b in terms:
        if digit < 0:
            value = value - (x << b)
    return value


def _thermometer_count(bits, n):
    """The number of set bits of a thermometer code (bits[0..n-1], bits[j] set implies bits[j - 1] set) in
    two LUT levels instead of an adder tree: bit b of the count is set iff the count lies in one of the
    intervals [m 2^(b+1) + 2^b, (m + 1) 2^(b+1) - 1], i.e. h(start) and not h(end + 1), with h(j) = bits[j - 1]."""
    def h(j):
        return bits[j - 1] if 1 <= j <= n else (1 if j <= 0 else 0)
    out = []
    for b in range(n.bit_length()):
        terms = []
        for start in range(1 << b, n + 1, 1 << (b + 1)):
            end = start + (1 << b) - 1
            terms.append(h(start) & ~h(end + 1) if end + 1 <= n else h(start))
        value = terms[0]
        for t in terms[1:]:
            value = value | t
        out.append(value)
    return Cat(*out)


def _equal(v, x):
    """v == x for a signed value v and a signed x one bit wider (a score against a pivot, bound or k-th value), as
    the NOR of an XOR: Yosys merges an ``==`` with a ``>`` of the same operands into one subtractor and derives
    the equality from its outputs in a chain of LUTs (an s2 -> s3 critical path); this is a LUT tree of its own."""
    wide = Cat(v, v[-1])
    return ~(wide ^ x.as_unsigned()).any()


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

    def __init__(self, parallelism: int, max_n: int, width: int = 16, fifo_depth: int = 64,
                 replay: bool = True, sample_lanes: int | None = None, rank_pipeline: bool = True,
                 sample_register: bool = False):
        bad = []
        if not isinstance(parallelism, int) or parallelism < 1 or parallelism & (parallelism - 1):
            bad.append(f"parallelism must be a power of two >= 1, not {parallelism!r}")
        if not isinstance(max_n, int) or max_n < 1:
            bad.append(f"max_n must be a positive integer, not {max_n!r}")
        if not isinstance(width, int) or width < 2:
            bad.append(f"width must be an integer >= 2, not {width!r}")
        if not isinstance(fifo_depth, int) or fifo_depth < 1:
            bad.append(f"fifo_depth must be a positive integer, not {fifo_depth!r}")
        if sample_lanes is not None and (not isinstance(sample_lanes, int) or sample_lanes < 2
                                         or sample_lanes & (sample_lanes - 1)):
            bad.append(f"sample_lanes must be a power of two >= 2 or None, not {sample_lanes!r}")
        if sample_register and not rank_pipeline:
            bad.append("sample_register needs rank_pipeline (the registered sample feeds the registered compare)")
        if bad:
            raise ValueError("; ".join(bad))
        self.parallelism, self.max_n, self.width, self.fifo_depth = parallelism, max_n, width, fifo_depth
        self.replay = bool(replay)
        # the sample's pairwise compare bits registered before the rank popcounts (default since H88, for
        # ECP5 timing): a round compares its side's capture in Decide, so only a late round (sampled whole,
        # or with P > S fewer than P elements) costs one more cycle, and the ingest one more re-read beat
        # (docs/topk.md "Cycle contract")
        self.rank_pipeline = bool(rank_pipeline)
        # the ranker's S lanes registered before the compare, in local copies (one per group of lanes they are
        # compared with: SAMPLE_COPY_GROUPS), so that the multiplexer's long nets get a cycle of their own and the
        # comparators read nearby registers; one more cycle per round and one more re-read beat at the ingest
        self.sample_register = bool(sample_register)
        # with sample_register also a second pick stage (H122): the one-hot pick registered, so that the pivots,
        # the exact finish's k-th value and its ties load one cycle later from a registered selection (the wanted
        # ranks' compares and the one-hot no longer sit in front of them); one more cycle per round and one more
        # re-read beat at the ingest
        self.pick_register = self.sample_register
        # cycles a round's sample or the ingest's pivots take beyond the default engine's (sample_register and
        # the pick stage), and from the ingest's ranking beat to its pivots beyond the one-cycle ranker's two
        self.round_delay = int(self.sample_register) + int(self.pick_register)
        self.rank_delay = int(self.rank_pipeline) + self.round_delay
        self.buffer_rows = -(-max_n // parallelism)
        self.sample_rows, self.sample_lanes = sample_shape(parallelism, fifo_depth, sample_lanes)
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
            "sel_kth": Out(signed(width + 1)),
            "sel_eq": Out(self.count_bits),
        })

    def elaborate(self, platform):
        m = Module()
        mem = _Memories(m, self)
        r = _Registers(self)
        m.d.comb += [self.rounds.eq(r.rounds), self.sel_kth.eq(r.kth), self.sel_eq.eq(r.sel_eq)]
        self._stage2(m, r, mem)
        s3 = self._compare(m, r)
        self._partition(m, r, mem, s3)
        s4 = self._replay_keep(m, r, s3)
        self._output(m, r, mem, s4)
        self._memory_ports(m, r, mem)
        self._decision_inputs(m, r)
        self._pivot_sample(m, r, mem)
        self._control(m, r, mem)
        return m

    def _cmd_taken(self, r):
        """A command is accepted in this cycle (with sample_register from the ``idle`` register, high exactly in
        IDLE where cmd.ready is, so that no FSM state decode sits in front of the enables it drives)."""
        return self.cmd.valid & (r.idle if self.sample_register else self.cmd.ready)

    def _stage2(self, m, r, mem):
        """s1 -> s2: the memory outputs (or the input beat during the ingest) into registers, then the
        selected source's lanes (values, indices, keep bits) as s2 data."""
        p, w, lg = self.parallelism, self.width, r.lg
        self._output_queue(m, r, mem)
        # the lanes of the next input beat whose index is below n, registered (no compare on the input path
        # into the buffer and the sample ranker): from the command, then for beat cnt + 1 as beat cnt arrives
        lane_ok = Signal(p, name="in_lane_ok")
        next_index = [Signal(self.count_bits + lg + 1, name=f"in_next_index{i}") for i in range(p)]
        m.d.comb += [next_index[i].eq(((r.cnt + 1) << lg) | i) for i in range(p)]
        with m.If(self._cmd_taken(r)):
            m.d.sync += lane_ok.eq(Cat(*[self.cmd.payload.n > i for i in range(p)]))
        with m.Elif(r.ingest_beat):
            m.d.sync += lane_ok.eq(Cat(*[next_index[i] < r.n for i in range(p)]))
        m.d.comb += r.in_row.eq(Cat(self.inp.payload.data, self.inp.payload.keep & lane_ok))
        with m.If(r.adv_s2):
            m.d.sync += [r.s1_valid.eq(0),
                         r.s2_valid.eq(r.s1_valid | (r.ingest_beat & r.live)), r.s2_replay.eq(r.s1_valid & r.s1_replay),
                         r.s2_fifo.eq(r.s1_fifo & ~r.ingest_beat), r.s2_row.eq(Mux(r.ingest_beat, r.cnt, r.s1_row)),
                         r.r_plain.eq(Mux(r.ingest_beat, r.in_row, mem.buf_rd.data)),
                         r.r_fifo.eq(Mux(r.src_side == 2, mem.fu_rd.data,
                                         Mux(r.src_side == 1, mem.fr_rd.data, mem.fl_rd.data)))]
        plain, fifo_row = r.r_plain, r.r_fifo
        for i in range(p):
            lane = fifo_row[i * r.lane_bits:(i + 1) * r.lane_bits]
            with m.If(r.s2_fifo):
                m.d.comb += [r.vals[i].eq(lane[:w]), r.idxs[i].eq(lane[w:]),
                             r.keeps[i].eq(fifo_row[r.row_bits + i])]
            with m.Else():
                m.d.comb += [r.vals[i].eq(plain[i * w:(i + 1) * w]), r.idxs[i].eq((r.s2_row << lg) | i),
                             r.keeps[i].eq(plain[p * w + i])]

    def _compare(self, m, r):
        """s2 -> s3: x against the pivot, the k-th value and the bounds. The comparators are duplicated
        per source (FIFO row, plain row) and only their one-bit results are selected and registered; the
        AND with the keep bit and the bounds is done after the register. A FIFO row needs no bounds: a
        FIFO holds exactly the working set."""
        p, w, lane_bits = self.parallelism, self.width, r.lane_bits
        names = ("gt", "eq", "lt", "gtk", "eqk", "in_lo", "in_hi", "gtu", "equ")
        raw = [Signal(p, name=f"s2_{x}") for x in names]
        sources = []
        for tag, lane_of in (("f", lambda i: r.r_fifo[i * lane_bits:i * lane_bits + w]),
                             ("p", lambda i: r.r_plain[i * w:(i + 1) * w])):
            bits = [Signal(p, name=f"{tag}_{x}") for x in names]
            for i in range(p):
                v = Signal(signed(w), name=f"{tag}_val{i}")
                m.d.comb += v.eq(lane_of(i))
                m.d.comb += [bits[0][i].eq(v > r.pivot), bits[1][i].eq(_equal(v, r.pivot)), bits[2][i].eq(v < r.pivot),
                             bits[3][i].eq(v > r.kth), bits[4][i].eq(_equal(v, r.kth)),
                             bits[5][i].eq(1 if tag == "f" else v > r.lo),
                             bits[6][i].eq(1 if tag == "f" else v < r.hi),
                             bits[7][i].eq(v > r.pivot_hi), bits[8][i].eq(_equal(v, r.pivot_hi))]
            sources.append(bits)
        for dst, f_bits, p_bits in zip(raw, *sources):
            m.d.comb += dst.eq(Mux(r.s2_fifo, f_bits, p_bits))
        s3 = _Stage3(r, names)
        with m.If(r.adv_s3):
            m.d.sync += [s3.valid.eq(r.s2_valid), s3.replay.eq(r.s2_replay), s3.row.eq(r.s2_row),
                         s3.lanes.eq(Cat(*[Cat(r.vals[i], r.idxs[i]) for i in range(p)])),
                         s3.keep.eq(r.keeps), *[x3.eq(x) for x3, x in zip(s3.raw, raw)]]
        m.d.comb += [s3.inside.eq(s3.keep & s3.raw[5] & s3.raw[6]),
                     s3.gt.eq(s3.inside & s3.raw[0]), s3.eq.eq(s3.inside & s3.raw[1]),
                     s3.lt.eq(s3.inside & s3.raw[2]),
                     s3.gtk.eq(s3.keep & s3.raw[3]), s3.eqk.eq(s3.keep & s3.raw[4]),
                     s3.above.eq(s3.inside & s3.raw[7]), s3.eq_up.eq(s3.inside & s3.raw[8]),
                     s3.mid.eq(s3.gt & ~s3.raw[7] & ~s3.raw[8])]
        return s3

    def _partition(self, m, r, mem, s3):
        """s3 -> counts, and each side's lanes compacted into a register (s3c); s3c -> the partition
        packers (FIFO_L / FIFO_R), which only shift the compacted row behind their partial row."""
        p, d, row_bits = self.parallelism, self.fifo_depth, r.row_bits
        part = Signal()
        m.d.comb += part.eq(s3.valid & ~s3.replay)
        s3c_part = Signal()
        side_rows = []
        for ze, sel in ((mem.compact_l, s3.lt), (mem.compact_r, s3.mid), (mem.compact_u, s3.above)):
            m.d.comb += [ze.i_data.as_value().eq(s3.lanes), ze.i_keep.eq(sel)]
            lanes, count = Signal(row_bits), Signal(range(p + 1))
            with m.If(r.adv_s4):
                m.d.sync += [count.eq(ze.o_count),
                             lanes.eq(Cat(*[Mux(ze.o_keep[i], ze.o_data[i], 0) for i in range(p)]))]
            side_rows.append((lanes, count))
        with m.If(r.adv_s4):
            m.d.sync += s3c_part.eq(part)
        for pk, (lanes, count) in zip((mem.pack_l, mem.pack_r, mem.pack_u), side_rows):
            m.d.comb += [pk.in_lanes.eq(lanes), pk.in_count.eq(count), pk.in_en.eq(s3c_part)]
        with m.If(part):
            m.d.sync += [r.cnt_g.eq(r.cnt_g + _popcount(s3.gt, p)), r.cnt_e.eq(r.cnt_e + _popcount(s3.eq, p)),
                         r.cnt_l.eq(r.cnt_l + _popcount(s3.lt, p)),
                         r.cnt_ge.eq(r.cnt_ge + _popcount(s3.gt | s3.eq, p)),
                         r.cnt_all.eq(r.cnt_all + _popcount(s3.gt | s3.eq | s3.lt, p)),
                         r.cnt_a.eq(r.cnt_a + _popcount(s3.above, p)),
                         r.cnt_ae.eq(r.cnt_ae + _popcount(s3.above | s3.eq_up, p)),
                         r.cnt_m.eq(r.cnt_m + _popcount(s3.mid, p))]
        for pk, wr, fw in ((mem.pack_l, r.wr_l, mem.fl_wr), (mem.pack_r, r.wr_r, mem.fr_wr),
                           (mem.pack_u, r.wr_u, mem.fu_wr)):
            m.d.comb += [fw.addr.eq(wr), fw.data.eq(Cat(pk.row_lanes, pk.row_keep)),
                         fw.en.eq(pk.row_valid & (wr < d))]
            with m.If(pk.row_valid & (wr < d)):
                m.d.sync += wr.eq(wr + 1)

    def _replay_keep(self, m, r, s3):
        """s3 -> s4: the replay's keep decision: greater than the k-th value, or equal and among the first
        eq_left equal ones in index order (a lane prefix count against a down-counter); s4 is also the
        ``mask`` port."""
        p = self.parallelism
        keep = Signal(p)
        for i in range(p):
            # equal lanes before lane i: a balanced adder tree per lane (depth log2 P), not a ripple of P
            # adders (that chain was the P = 16 critical path)
            before = Signal(range(p + 1), name=f"eq_before{i}")
            m.d.comb += before.eq(_popcount(s3.eqk, i) if i else 0)
            m.d.comb += keep[i].eq(s3.keep[i] & (r.mode_all | s3.gtk[i] | (s3.eqk[i] & (before < r.eq_left))))
        s4_valid = Signal()
        s4_row = Signal.like(r.s1_row, name="s4_row")
        s4_lanes, s4_keep = Signal(r.row_bits), Signal(p)
        eq_here = Signal(range(p + 1))
        m.d.comb += eq_here.eq(_popcount(s3.eqk, p))
        with m.If(r.adv_s4):
            m.d.sync += [s4_valid.eq(s3.valid & s3.replay), s4_row.eq(s3.row), s4_lanes.eq(s3.lanes),
                         s4_keep.eq(keep)]
            with m.If(s3.valid & s3.replay):
                # (>= rather than >: the same value, and the subtractor's carry alone, with no zero test of its result)
                m.d.sync += r.eq_left.eq(Mux(r.eq_left >= eq_here, r.eq_left - eq_here, 0))
        m.d.comb += [self.mask_valid.eq(s4_valid & r.adv_s4), self.mask_row.eq(s4_row), self.mask.eq(s4_keep)]
        return s4_valid, s4_lanes, s4_keep

    def _output(self, m, r, mem, s4):
        """s4 -> s5 (the kept lanes compacted to the front, other lanes zeroed, and their count) ->
        output packer -> output register."""
        p, w, lane_bits = self.parallelism, self.width, r.lane_bits
        s4_valid, s4_lanes, s4_keep = s4
        compact_o, pack_o = mem.compact_o, mem.pack_o
        m.d.comb += [compact_o.i_data.as_value().eq(s4_lanes), compact_o.i_keep.eq(s4_keep)]
        s5_valid = Signal()
        s5_lanes = Signal(r.row_bits)
        s5_count = Signal(range(p + 1))
        with m.If(r.adv_s5):
            m.d.sync += [s5_valid.eq(s4_valid), s5_count.eq(compact_o.o_count),
                         s5_lanes.eq(Cat(*[Mux(compact_o.o_keep[i], compact_o.o_data[i], 0)
                                           for i in range(p)]))]
        m.d.comb += [pack_o.in_lanes.eq(s5_lanes), pack_o.in_count.eq(s5_count),
                     pack_o.in_en.eq(s5_valid & r.adv_out)]
        m.d.comb += [r.push.eq(r.adv_out & pack_o.row_valid), r.push_word.eq(
            Cat(*[pack_o.row_lanes[i * lane_bits:i * lane_bits + w] for i in range(p)],
                *[pack_o.row_lanes[i * lane_bits + w:(i + 1) * lane_bits] for i in range(p)],
                pack_o.row_keep))]

    def _output_queue(self, m, r, mem):
        """The output register plus one skid register, so that the pipeline-advance signal ``adv`` is a
        register (no path from ``out.ready`` into the pipeline's clock enables): ``adv`` is set for the
        next cycle when at most one beat will be queued, so a beat pushed in a cycle whose ``adv`` was
        decided one cycle late still has a free entry. With ``out`` always ready the queue never holds
        more than one beat and ``adv`` stays high: the cycle contract is that of a plain output register.
        ``adv`` is one register per pipeline group (kept apart, so the fan-out is split)."""
        head_valid = r.out_valid
        skid_valid = r.skid_valid if self.sample_register else Signal(name="skid_valid")
        skid = Signal.like(r.push_word, name="skid_word")
        pop = Signal()
        m.d.comb += [self.out.valid.eq(head_valid), pop.eq(head_valid & self.out.ready)]
        sr = self.sample_register
        with m.If(~head_valid | pop):
            m.d.sync += [head_valid.eq(skid_valid | r.push),
                         self.out.payload.as_value().eq(Mux(skid_valid, skid, r.push_word)),
                         skid_valid.eq(skid_valid & r.push)]
            if not sr:
                with m.If(skid_valid & r.push):
                    m.d.sync += skid.eq(r.push_word)
        with m.Elif(r.push):
            m.d.sync += [skid_valid.eq(1)] + ([] if sr else [skid.eq(r.push_word)])
        if sr:
            # with sample_register the skid's enable is registers and out.ready only, not the push (the packer's
            # row count): it takes the pushed word whenever its own word is not needed (empty, or moved to the
            # head by this pop); a word taken without a push is never read (skid_valid stays low). Same function.
            with m.If(~skid_valid | self.out.ready):
                m.d.sync += skid.eq(r.push_word)
        occ = head_valid + skid_valid
        m.d.comb += r.queue_next.eq(occ + r.push - pop)
        for copy in r.adv_copies:
            m.d.sync += copy.eq(r.queue_next <= 1)

    def _memory_ports(self, m, r, mem):
        m.d.comb += [mem.buf_wr.addr.eq(r.cnt), mem.buf_wr.data.eq(r.in_row), mem.buf_wr.en.eq(r.ingest_beat),
                     mem.buf_rd.en.eq(r.adv_s2), mem.fl_rd.en.eq(1), mem.fr_rd.en.eq(1), mem.fu_rd.en.eq(1),
                     mem.buf_rd.addr.eq(r.rd_addr), mem.fl_rd.addr.eq(r.rd_addr),
                     mem.fr_rd.addr.eq(r.rd_addr), mem.fu_rd.addr.eq(r.rd_addr)]

    def _decision_inputs(self, m, r):
        """The decision's inputs that do not depend on the decision: its compares of the target with the
        counters, and both sides' FIFO fit and row count."""
        p, d, lg = self.parallelism, self.fifo_depth, r.lg
        # Decision (docs/topk.md "Decision"); after the ingest partition the target is k itself.
        # (the target register holds k from the command on: no multiplexer in front of the decision)
        m.d.comb += r.t.eq(r.target)
        # the decision's compares, registered every cycle: the counters are final one cycle before Decide,
        # so Decide starts from registered outcomes, not from carry chains
        le_a, le_g = Signal(name="decide_le_a_next"), Signal(name="decide_le_g_next")
        m.d.comb += [le_a.eq(r.t <= r.cnt_a), le_g.eq(r.t <= r.cnt_g)]
        m.d.sync += [r.dec_le_a.eq(le_a), r.dec_le_ae.eq(r.t <= r.cnt_ae), r.dec_le_g.eq(le_g),
                     r.dec_le_ge.eq(r.t <= r.cnt_ge), r.dec_k_zero.eq(r.k == 0), r.dec_k_all.eq(r.k >= r.cnt_all)]
        if self.sample_register:
            self._decide_go(m, r, le_a, le_g)
        # the ranker's source, registered every cycle (one 2-bit copy per sample lane, kept apart so that no
        # copy drives every lane's multiplexer): 3 the ingest's beats while the ingest's sample is still to be
        # ranked, else the side the decision's compares choose (2 FIFO_U, 1 FIFO_R, 0 FIFO_L): in Decide and
        # in the cycle after it, the side chosen
        # (with the rank pipeline the ingest's source is kept one cycle longer, until the registered ing_rank_d:
        # the compare of that cycle is not used, and no decide comes within four cycles of the ingest's ranking;
        # so no count compare of the ingest sits in front of the select's register)
        ing_next = Signal(name="sample_src_ingest_next")
        ranked = r.ing_rank_d if self.rank_pipeline else r.ing_rank
        m.d.comb += ing_next.eq(self._cmd_taken(r) | (r.samp_ing & ~ranked))
        m.d.sync += r.samp_ing.eq(ing_next)
        for copy in r.samp_sel:
            m.d.sync += copy.eq(Mux(ing_next, 3, Mux(le_a, 2, Mux(le_g, 1, 0))))
        # per side, registered every cycle from the counters (final one cycle before Decide, so these are valid
        # in Decide, which keeps the chosen side's): whether it fits its FIFO, the rows its scan reads (none
        # when it is sampled whole: at most S elements), the scan's last count (rows + 3, + 1 when late), and
        # *late* (rank pipeline: the sample needs the row flushed in Decide, so it is ranked a cycle later):
        # sampled whole or, with P > S, fewer than P elements (no full row)
        s = r.sample_lanes
        for i, size in enumerate((r.cnt_l, r.cnt_m, r.cnt_a)):
            fit, rows, whole, late = (Signal(name=f"side_{x}_{i}") for x in ("fit", "rows", "whole", "late"))
            rows = Signal.like(r.rows_left, name=f"side_rows_{i}")
            small = (size < p) if p > s else 0
            m.d.comb += [fit.eq(size <= d * p), rows.eq(Mux(fit, (size + p - 1) >> lg, r.rows_b)),
                         whole.eq(size <= s), late.eq((whole | small) if self.rank_pipeline else 0)]
            if self.sample_register:
                # the counters are final two cycles before Decide (PREDECIDE comes between): one more register
                # stage, so that the last count's adder does not follow the compares and the rows' adder
                fit, rows, whole, late = self._side_stage(m, fit, rows, whole, late)
            m.d.sync += [r.side_fit[i].eq(fit), r.side_rows[i].eq(Mux(whole, 0, rows)),
                         r.side_end[i].eq((rows + 3 + self.round_delay + late) if self.sample_register
                                          else (rows + 3 + late)), r.side_late[i].eq(late)]

    @staticmethod
    def _side_stage(m, *values):
        """The per-side decision inputs registered (``sample_register``'s extra stage)."""
        regs = [Signal.like(v, name=f"{v.name}_r") for v in values]
        m.d.sync += [x.eq(v) for x, v in zip(regs, values)]
        return regs

    @staticmethod
    def _decide_go(m, r, le_a, le_g):
        """With sample_register, whether Decide starts a round and on which side, as registers loaded every cycle
        from the decision's inputs (final one cycle before Decide, as the decide_* compares), so that neither
        after_ingest nor the decision's branch priority sits in front of the round's counter and FIFO address
        resets and the side's selects (H122 run F seed 1: after_ingest -> go_scan -> the FIFO write addresses).
        A round starts unless the ingest's decide ends the request (k = 0 or k >= candidates) or a pivot is the
        k-th value; its side is FIFO_U above the upper pivot, FIFO_R between the pivots, else FIFO_L."""
        le_ae, le_ge = Signal(name="decide_le_ae_next"), Signal(name="decide_le_ge_next")
        m.d.comb += [le_ae.eq(r.t <= r.cnt_ae), le_ge.eq(r.t <= r.cnt_ge)]
        ends = r.after_ingest & ((r.k == 0) | (r.k >= r.cnt_all))
        m.d.sync += [r.dec_go.eq(~ends & (le_a | (~le_ae & (le_g | ~le_ge)))),
                     r.dec_side.eq(Mux(le_a, 2, Mux(le_g, 1, 0)))]

    def _want_ranks(self, m, r):
        """The wanted sample ranks (docs/topk.md "Pivot rule"), two register stages behind the working set's
        size and target: with rk = the number of j in 1..S-1 with j |W| <= S t (no divider), the lower pivot
        has rank rk + bracket_below(S), the upper rk - BRACKET_ABOVE (none when negative); a set of at most S
        elements is sampled whole: rank t - 1, no upper pivot. Stage 1 holds the constant multiples j |W|
        (shifts and at most two adds each: no multiplier) and t: loaded from the command's n and k, and in
        Decide from the chosen side's, which are computed for all three sides in every cycle from the
        counters (final one cycle before Decide), so stage 2 (the ranks) is registered in the cycle after
        Decide and the pick stage reads it one cycle later."""
        s, cb = r.sample_lanes, self.count_bits
        lg_s = (s - 1).bit_length()
        multiples = [Signal(cb + lg_s, name=f"size_x{j}") for j in range(1, s)]
        t_reg, whole = Signal(cb, name="want_t"), Signal(name="want_whole")
        # the exact finish's rank t - 1 (clipped to S - 1), registered in stage 1 beside t, so that stage 2 is
        # the compares, a thermometer count and one multiplexer (no subtract, compare or adder after the count)
        rank_shape = len(r.want_lo)
        t_minus_1 = Signal(rank_shape, name="want_t_minus_1")

        def minus_1(t):
            return Mux(t <= s, t - 1, s - 1)
        sides = []
        for tag, size, tgt in (("l", r.cnt_l, r.t - r.cnt_ge), ("g", r.cnt_m, r.t - r.cnt_ae), ("u", r.cnt_a, r.t)):
            mul = [Signal(cb + lg_s, name=f"size_{tag}_x{j}") for j in range(1, s)]
            t_side, whole_side = Signal(cb, name=f"want_t_{tag}"), Signal(name=f"want_whole_{tag}")
            m.d.sync += [x.eq(_const_mul(size, j)) for j, x in enumerate(mul, start=1)]
            m.d.sync += [t_side.eq(tgt), whole_side.eq(size <= s)]
            sides.append((mul, t_side, whole_side))
        with m.If(self._cmd_taken(r)):
            m.d.sync += [x.eq(_const_mul(self.cmd.payload.n, j)) for j, x in enumerate(multiples, start=1)]
            m.d.sync += [t_reg.eq(self.cmd.payload.k), whole.eq(self.cmd.payload.n <= s),
                         t_minus_1.eq(minus_1(self.cmd.payload.k))]
        with m.Elif(r.go_scan):
            for i, x in enumerate(multiples):
                m.d.sync += x.eq(Mux(r.side == 2, sides[2][0][i], Mux(r.side == 1, sides[1][0][i], sides[0][0][i])))
            t_next = Mux(r.side == 2, sides[2][1], Mux(r.side == 1, sides[1][1], sides[0][1]))
            m.d.sync += [t_reg.eq(t_next), t_minus_1.eq(minus_1(t_next)),
                         whole.eq(Mux(r.side == 2, sides[2][2], Mux(r.side == 1, sides[1][2], sides[0][2])))]
        # stage 2: rk = the count of the thermometer code hits; the lower rank rk + below is the count of the code
        # with below ones in front (no adder), the upper rk - BRACKET_ABOVE the count of its bits from
        # BRACKET_ABOVE on (its value does not matter when rk < BRACKET_ABOVE: no upper pivot)
        scaled = Signal(cb + lg_s, name="want_scaled_t")
        m.d.comb += scaled.eq(t_reg << lg_s)
        hits = Signal(max(s - 1, 1), name="want_hits")
        below = bracket_below(s)
        if s > 1:
            m.d.comb += hits.eq(Cat(*[x <= scaled for x in multiples]))
        # the lower wanted rank lies inside a full S-lane sample (a round's sample holds S lanes unless it is
        # sampled whole, when rank t - 1 lies inside it): rk + below < S, i.e. hits[S - below - 1] clear
        m.d.sync += r.want_lo_in_s.eq(whole | ~hits[s - below - 1])
        if self.sample_register:
            # the pick comes a cycle later: the hits registered, the counts in the next cycle (stage 2b)
            hits_r = Signal.like(hits, name="want_hits_r")
            m.d.sync += hits_r.eq(hits)
            hits = hits_r
        lo_code = Cat(Const((1 << below) - 1, below), hits[:s - 1])
        hi_bits = s - 1 - BRACKET_ABOVE
        rk_hi = _thermometer_count(hits[BRACKET_ABOVE:s - 1], hi_bits) if hi_bits > 0 else Const(0, 1)
        hi_none = ~hits[BRACKET_ABOVE - 1] if hi_bits >= 0 else Const(1, 1)
        lo_next = Mux(whole, t_minus_1, _thermometer_count(lo_code, s - 1 + below))
        m.d.sync += [r.want_lo.eq(lo_next), r.want_hi.eq(rk_hi), r.want_hi_none.eq(whole | hi_none), r.whole.eq(whole)]
        # with sample_register, copies of the wanted ranks for the pick stage's lane groups (kept apart)
        groups = self._copy_groups() if self.sample_register else 1
        r.want_lo_c = [_copy_register(r.want_lo.shape(), g, f"want_lo_c{g}") for g in range(groups)]
        r.want_hi_c = [_copy_register(r.want_hi.shape(), g, f"want_hi_c{g}") for g in range(groups)]
        if self.sample_register:
            m.d.sync += [x.eq(lo_next) for x in r.want_lo_c] + [x.eq(rk_hi) for x in r.want_hi_c]
        else:
            r.want_lo_c, r.want_hi_c = [r.want_lo], [r.want_hi]

    def _pivot_sample(self, m, r, mem):
        """Bracketing pivots (docs/topk.md "Pivot rule"): among the sample's S lanes (w consecutive rows of
        P lanes, or the first S lanes of one row when P > S, at the ingest the first w input beats; in a
        round S lanes spread over the rows its FIFO's packer emitted, ``_sample_capture``), the elements of
        the wanted lower and upper ranks from the top. At the ingest the first w - 1 beats are shifted into sample registers and
        the last one is ranked as it is accepted; in a round the ranker reads the chosen side's capture registers (from Decide on). Two
        pipeline stages: the *rank* stage compares the S lanes pairwise and
        registers every lane's rank and count of sampled elements strictly above it, with the values; the
        *pick* stage, one cycle later, selects the lanes of the wanted ranks (one-hot AND-OR): the pivots
        and, for the exact finish, the count above the lower one."""
        w, lb, s, p, rows = self.width, r.lane_bits, r.sample_lanes, self.parallelism, r.sample_rows
        self._want_ranks(m, r)
        # the ingest's sample: the first w - 1 input beats in a shift register (values, keep bits), the last
        # one as it is accepted
        cur = min(p, s)
        in_vals = [r.in_row[i * w:(i + 1) * w] for i in range(cur)]
        in_keep = r.in_row[p * w:p * w + cur]
        with m.If(r.cap_plain):
            m.d.sync += [x.eq(y) for x, y in zip(r.slot_vals, list(r.slot_vals[1:]) + [Cat(*in_vals)])]
            m.d.sync += [x.eq(y) for x, y in zip(r.slot_keep, list(r.slot_keep[1:]) + [in_keep])]
        # a round's sample: a decimating capture of the rows each FIFO's packer emits in the round before
        # (archgen.sim.topk_model.captured_sample), read by the ranker straight from the capture registers
        # of the side chosen (no sample register): in Decide (as final before the flush) and in the cycle
        # after it (with the row flushed in Decide); the captures restart empty at the end of that cycle
        sources = [self._sample_capture(m, r, tag, pk, cur)
                   for tag, pk in (("l", mem.pack_l), ("g", mem.pack_r), ("u", mem.pack_u))]
        sources.append((Cat(*r.slot_vals, *in_vals), Cat(*r.slot_keep, in_keep)))
        vals = [Signal(signed(w), name=f"sample_val{i}") for i in range(s)]
        keep = Signal(s, name="sample_keep")
        for i in range(s):
            choice = [(v[i * w:(i + 1) * w], k[i]) for v, k in sources]
            sel = r.samp_sel[i]
            m.d.comb += [vals[i].eq(Mux(sel[1], Mux(sel[0], choice[3][0], choice[2][0]),
                                        Mux(sel[0], choice[1][0], choice[0][0]))),
                         keep[i].eq(Mux(sel[1], Mux(sel[0], choice[3][1], choice[2][1]),
                                        Mux(sel[0], choice[1][1], choice[0][1])))]
        flat = Signal(s * w, name="sample_flat")
        m.d.comb += flat.eq(Cat(*vals))
        operand, keep, flat = self._sample_operands(m, vals, keep, flat)
        # rank stage (registered every cycle; the pick stage reads it in the cycle after the ranking one)
        gt = {(j, i): Signal(name=f"sample_gt{j}_{i}") for j in range(s) for i in range(s) if j != i}
        for j in range(s):
            for i in range(j + 1, s):
                # one comparator pair per two lanes: j > i, and j >= i (so i > j is its negation)
                ge = Signal(name=f"sample_ge{j}_{i}")
                a, b = operand(j, i), operand(i, j)
                m.d.comb += [gt[j, i].eq(a > b), ge.eq(a >= b), gt[i, j].eq(~ge)]
        if self.rank_pipeline:
            # the compare bits, the values and the keep bits registered; the popcounts in the next cycle
            gt_p = {key: Signal(name=f"sample_gtr{key[0]}_{key[1]}") for key in gt}
            keep_p, flat_p = Signal(s, name="sample_keep_p"), Signal(s * w, name="sample_flat_p")
            m.d.sync += [gt_p[key].eq(gt[key]) for key in gt]
            held_p = Signal(range(s + 1), name="sample_held_p")
            m.d.sync += [keep_p.eq(keep), flat_p.eq(flat), held_p.eq(_popcount(keep, s))]
            gt, keep, flat = gt_p, keep_p, flat_p
        rank_r = [Signal(range(max(s, 2)), name=f"sample_rank{i}") for i in range(s)]
        above_r = [Signal(range(s + 1), name=f"sample_above{i}") for i in range(s)]
        vals_r = Signal(s * w, name="sample_vals_r")
        keep_r = Signal(s, name="sample_keep_r")
        held_r = Signal(range(s + 1), name="sample_held_r")
        last_r = Signal(s, name="sample_last_r")     # the kept lane of the lowest rank (held - 1)
        m.d.sync += [vals_r.eq(flat), keep_r.eq(keep)]
        lo_in, hi_in = Signal(name="sample_lo_in"), Signal(name="sample_hi_in")
        groups = self._copy_groups() if self.sample_register else 1
        lo_in_c, hi_in_c = [lo_in] * groups, [hi_in] * groups
        if self.sample_register:
            # the pick comes at least two cycles after the want ranks (a round's: cycle 2 after Decide), so whether
            # the wanted ranks lie inside the sample is registered in the popcount cycle, once per lane group: for
            # the ingest's pick (ing_rank_d2 high in its popcount cycle) from the count held, else want_lo_in_s
            lo_in_c = [_copy_register(unsigned(1), g, f"sample_lo_in_c{g}") for g in range(groups)]
            hi_in_c = [_copy_register(unsigned(1), g, f"sample_hi_in_c{g}") for g in range(groups)]
            m.d.sync += held_r.eq(held_p)
            m.d.sync += [x.eq(Mux(r.ing_rank_d2, r.want_lo < held_p, r.want_lo_in_s)) for x in lo_in_c]
            m.d.sync += [x.eq(~r.ing_rank_d2 | (r.want_hi < held_p)) for x in hi_in_c]
        elif self.rank_pipeline:
            # the count held and whether the wanted ranks lie inside it, registered beside the ranks (the wanted
            # ranks are final in the rank cycle), so the pick stage starts from registers
            # in the ingest's pick (its wanted ranks are final long before); a round's pick may follow its rank
            # stage by one cycle only, so it uses want_lo_in_s (a round's sample holds S lanes, or the whole set)
            # and takes the upper wanted rank (at most S - 1 - BRACKET_ABOVE) as inside
            lo_ing, hi_ing = Signal(name="sample_lo_in_ingest"), Signal(name="sample_hi_in_ingest")
            m.d.sync += [held_r.eq(held_p), lo_ing.eq(r.want_lo < held_p), hi_ing.eq(r.want_hi < held_p)]
            m.d.comb += [lo_in.eq(Mux(r.ing_pick, lo_ing, r.want_lo_in_s)), hi_in.eq(~r.ing_pick | hi_ing)]
        else:
            m.d.sync += held_r.eq(_popcount(keep, s))
            m.d.comb += [lo_in.eq(r.want_lo < held_r), hi_in.eq(r.want_hi < held_r)]
        for i in range(s):
            # rank: sampled lanes above lane i (ties: the lower lane first); and those strictly above it
            above = [keep[j] & (gt[j, i] if j > i else ~gt[i, j]) for j in range(s) if j != i]
            strict = [keep[j] & gt[j, i] for j in range(s) if j != i]
            # lane i has rank held - 1 iff every other kept lane is above it (an AND, beside the popcount)
            below_none = [~keep[j] | (gt[j, i] if j > i else ~gt[i, j]) for j in range(s) if j != i]
            last_i = keep[i]
            for x in below_none:
                last_i = last_i & x
            m.d.sync += last_r[i].eq(last_i)
            if above:
                # the bits as signals of their own, so that the adder tree does not repeat their logic
                above_bits, strict_bits = Signal(s - 1, name=f"sample_ab{i}"), Signal(s - 1, name=f"sample_st{i}")
                m.d.comb += [above_bits.eq(Cat(*above)), strict_bits.eq(Cat(*strict))]
                m.d.sync += [rank_r[i].eq(_popcount(above_bits, s - 1)), above_r[i].eq(_popcount(strict_bits, s - 1))]
            else:
                m.d.sync += [rank_r[i].eq(0), above_r[i].eq(0)]
        # pick stage: the lanes of the wanted ranks one-hot; a wanted rank beyond the lanes held is clipped
        # to the last kept lane (last_r), chosen by a compare of two registers beside the per-lane compares
        sel, sel_hi = Signal(s, name="sample_sel"), Signal(s, name="sample_sel_hi")
        def grp(i):
            return i * groups // s
        m.d.comb += [sel.eq(Cat(*[keep_r[i] & Mux(lo_in_c[grp(i)], rank_r[i] == r.want_lo_c[grp(i)], last_r[i])
                                  for i in range(s)])),
                     sel_hi.eq(Cat(*[keep_r[i] & Mux(hi_in_c[grp(i)], rank_r[i] == r.want_hi_c[grp(i)], last_r[i])
                                     for i in range(s)]))]
        # per lane, in parallel with the selection: the upper pick has the lower one's value iff no more sampled
        # elements lie strictly above the lower one than the upper rank (always when the upper rank is
        # clipped too); and the exact finish's ties to keep, target - (sampled above)
        same = Signal(s, name="sample_hi_same")
        m.d.comb += same.eq(Cat(*[Mux(hi_in_c[grp(i)], above_r[i] <= r.want_hi_c[grp(i)], 1) for i in range(s)]))
        left = [Signal.like(r.target, name=f"sample_eq_left{i}") for i in range(s)]
        m.d.comb += [left[i].eq(r.target - above_r[i]) for i in range(s)]
        gw = len(above_r[0])
        sel_now, held, hi_same = sel, held_r != 0, sel & same
        if self.pick_register:
            sel, sel_hi, hi_same, vals_r, left, held = self._pick_register(m, sel, sel_hi, hi_same, vals_r, left, held)
        m.d.comb += [r.pick.eq(_or_select(sel, vals_r, s, w)), r.pick_hi.eq(_or_select(sel_hi, vals_r, s, w)),
                     r.whole_above.eq(_or_select(sel_now, Cat(*above_r), s, gw)), r.sample_held.eq(held),
                     r.pick_hi_same.eq(hi_same.any()),
                     r.finish_eq.eq(_or_select(sel, Cat(*left), s, len(r.target)))]

    @staticmethod
    def _pick_register(m, sel, sel_hi, hi_same, vals, left, held):
        """The second pick stage: the one-hot selections and, beside them, the operands they select from (the
        values, the exact finish's ties per lane, whether any lane was held, which lanes have the upper pick equal
        to the lower one) registered, so that the pivots, the k-th value and its ties load one cycle later through
        an AND-OR from registers only (H114/H121: want_hi_c/want_lo_c -> one-hot -> pivot_hi, finish_eq, sel_eq)."""
        q = [Signal.like(x, name=f"{x.name}_q") for x in (sel, sel_hi, vals)]
        hi_same_q, held_q = Signal.like(sel, name="sample_hi_same_q"), Signal(name="sample_held_q")
        left_q = [Signal.like(x, name=f"{x.name}_q") for x in left]
        m.d.sync += [x.eq(y) for x, y in zip(q, (sel, sel_hi, vals))]
        m.d.sync += [hi_same_q.eq(hi_same), held_q.eq(held), *[x.eq(y) for x, y in zip(left_q, left)]]
        return q[0], q[1], hi_same_q, q[2], left_q, held_q

    def _copy_groups(self):
        """The lane groups that get registers of their own with ``sample_register``."""
        return min(SAMPLE_COPY_GROUPS, self.sample_lanes)

    def _sample_operands(self, m, vals, keep, flat):
        """The compare's operands: ``operand(j, i)`` is lane j's value as compared with lane i. Without
        ``sample_register`` the multiplexer's outputs; with it, registers loaded from them one cycle before the
        compare, one copy of lane j per group of SAMPLE_COPY_GROUPS lanes (lane i's group), so that each copy
        feeds only the comparators of one group pair (kept apart: distinct initial values and a keep attribute),
        and the keep bits and values for the pick stage registered beside them."""
        if not self.sample_register:
            return (lambda j, i: vals[j]), keep, flat
        s, w = len(vals), self.width
        groups = self._copy_groups()

        def grp(i):
            return i * groups // s
        copies = {(j, g): _copy_register(signed(w), g, f"sample_c{j}_{g}")
                  for j in range(s) for g in range(groups)}
        m.d.sync += [x.eq(vals[j]) for (j, g), x in copies.items()]
        keep_c, flat_c = Signal(s, name="sample_keep_c"), Signal(s * w, name="sample_flat_c")
        m.d.sync += [keep_c.eq(keep), flat_c.eq(flat)]
        return (lambda j, i: copies[j, grp(i)]), keep_c, flat_c

    def _capture_row(self, m, pk, tag, used):
        """The packer's row as a capture sees it (its first ``used`` lanes): with ``sample_register`` one register
        stage behind the packer (row valid, lanes, keep bits and flushing registered every cycle), so that no
        packer count, adder or input enable sits in front of the captures' take and clock enables; the packers
        then flush a cycle before Decide (PREDECIDE), so the captures are final in Decide as without the stage.
        Else the packer's own outputs."""
        if not self.sample_register:
            return pk
        lb = pk.lane_bits
        st = SimpleNamespace(row_valid=Signal(name=f"sample_row_valid_{tag}"),
                             flushing=Signal(name=f"sample_row_flush_{tag}"),
                             row_lanes=Signal(used * lb, name=f"sample_row_lanes_{tag}"),
                             row_keep=Signal(used, name=f"sample_row_keep_{tag}"))
        m.d.sync += [st.row_valid.eq(pk.row_valid), st.flushing.eq(pk.flushing),
                     st.row_lanes.eq(pk.row_lanes[:used * lb]), st.row_keep.eq(pk.row_keep[:used])]
        return st

    def _sample_capture(self, m, r, tag, pk, cur):
        """One FIFO's sample capture (archgen.sim.topk_model.captured_sample): q slots of g lanes (P < S: whole
        rows, q = w; P >= S: slot i holds lane i of a row, q = S). The packer's rows at positions 0, s, 2s, ...
        (j & (s - 1) == 0, s a power of two) go to slot ptr = 0, 1, ...; with P >= S row 0 fills every slot;
        a kept row that finds the slots full moves slot 2i to slot i (i < q/2), doubles s and goes to slot
        q/2; the partial row flushed in Decide goes only to an empty slot. Returns the capture registers (values,
        keep bits), which the ranker reads when this side is chosen."""
        w, lb, p, rows = self.width, r.lane_bits, self.parallelism, r.sample_rows
        whole_row = p < r.sample_lanes
        q, g = (rows, cur) if whole_row else (r.sample_lanes, 1)
        cap_vals = [Signal(g * w, name=f"sample_cap_{tag}{j}") for j in range(q)]
        cap_keep = [Signal(g, name=f"sample_cap_keep_{tag}{j}") for j in range(q)]
        nxt_vals = [Signal(g * w, name=f"sample_capn_{tag}{j}") for j in range(q)]
        nxt_keep = [Signal(g, name=f"sample_capn_keep_{tag}{j}") for j in range(q)]
        cb = (self.buffer_rows + 1).bit_length()
        pos, mask = Signal(cb, name=f"sample_cap_pos_{tag}"), Signal(cb, name=f"sample_cap_mask_{tag}")
        ptr = Signal(range(q + 1), name=f"sample_cap_ptr_{tag}")
        take, full = Signal(name=f"sample_cap_take_{tag}"), Signal(name=f"sample_cap_full_{tag}")
        # the partial row flushed in Decide only into an empty slot (stride 1 and a free slot; P >= S: row 0)
        partial, empty = Signal(name=f"sample_cap_partial_{tag}"), Signal(name=f"sample_cap_empty_{tag}")
        # pos_ok = ((pos & mask) == 0) as a register, updated with pos and mask from its candidates (computed from
        # registers beside the row's valid), so that no reduce of pos sits between the packer and the slots' enables
        pos_ok = Signal(init=1, name=f"sample_cap_pos_ok_{tag}")
        pk = self._capture_row(m, pk, tag, cur if whole_row else q)
        m.d.comb += [partial.eq(pk.flushing),
                     empty.eq((ptr == 0) if not whole_row else ((mask == 0) & (ptr < q))),
                     take.eq(pk.row_valid & pos_ok & (~partial | empty)), full.eq(ptr == q)]
        pos_1 = Signal.like(pos, name=f"sample_cap_pos1_{tag}")
        m.d.comb += pos_1.eq(pos + 1)
        ok_same, ok_shift = ((pos_1 & mask) == 0), ((pos_1 & Cat(1, mask[:-1])) == 0)
        if whole_row:
            src_vals = [Cat(*[pk.row_lanes[i * lb:i * lb + w] for i in range(cur)])] * q
            src_keep = [pk.row_keep[:cur]] * q
        else:
            src_vals = [pk.row_lanes[i * lb:i * lb + w] for i in range(q)]
            src_keep = [pk.row_keep[i] for i in range(q)]
        for i in range(q):
            load = ptr == i
            if not whole_row:
                load = load | (ptr == 0)          # row 0 fills every lane slot
            if i == q // 2:
                load = load | full
            shift = take & full if i < q // 2 else Const(0)
            with m.If(shift):
                m.d.comb += [nxt_vals[i].eq(cap_vals[min(2 * i, q - 1)]), nxt_keep[i].eq(cap_keep[min(2 * i, q - 1)])]
            with m.Elif(take & load):
                m.d.comb += [nxt_vals[i].eq(src_vals[i]), nxt_keep[i].eq(src_keep[i])]
            with m.Else():
                m.d.comb += [nxt_vals[i].eq(cap_vals[i]), nxt_keep[i].eq(cap_keep[i])]
        m.d.sync += [x.eq(y) for x, y in zip(cap_vals, nxt_vals)]
        with m.If(r.cap_clear):
            m.d.sync += [x.eq(0) for x in cap_keep] + [pos.eq(0), mask.eq(0), ptr.eq(0), pos_ok.eq(1)]
        with m.Else():
            m.d.sync += [x.eq(y) for x, y in zip(cap_keep, nxt_keep)]
            with m.If(pk.row_valid):
                m.d.sync += [pos.eq(pos_1), pos_ok.eq(Mux(take & full, ok_shift, ok_same))]
            with m.If(take):
                m.d.sync += ptr.eq(Mux(full, q // 2 + 1, ptr + 1))
                with m.If(full):
                    m.d.sync += mask.eq(Cat(1, mask[:-1]))
        return Cat(*cap_vals), Cat(*cap_keep)

    def _control(self, m, r, mem):
        """The request FSM: idle -> ingest (+ re-read, drain) -> decide <-> scan -> replay -> done."""
        x = self.rank_delay
        m.d.comb += self.busy.eq(1)
        # the re-read's end, min(w + x, B), registered from B (a register since the command) in every cycle, so
        # that REREAD's exit compares two short registers (rows_b -> two carry chains -> the FSM's enable was
        # the pipelined engine's critical path)
        m.d.sync += r.reread_end.eq(Mux(r.rows_b < r.sample_rows + x, r.rows_b, r.sample_rows + x))
        if self.sample_register:
            m.d.sync += r.replay_end.eq(r.rows_b + 4)
        if self.sample_register:
            m.d.sync += [r.ing_rank_d.eq(r.ing_rank), r.ing_rank_d2.eq(r.ing_rank_d), r.ing_pick.eq(r.ing_rank_d2),
                         r.ing_load.eq(r.ing_pick)]
        elif self.rank_pipeline:
            m.d.sync += [r.ing_rank_d.eq(r.ing_rank), r.ing_pick.eq(r.ing_rank_d)]
        else:
            m.d.sync += r.ing_pick.eq(r.ing_rank)
        if self.sample_register:
            self._pivot_take(m, r)
        else:
            with m.If(r.ing_pick):
                # the ingest's pivots, ranked from the first w beats as the last of them arrives and taken in the
                # next cycle (no candidate among them: +infinity)
                m.d.sync += [r.pivot.eq(Mux(r.sample_held, r.pick, r.pos_inf)),
                             r.pivot_hi.eq(Mux(~r.sample_held | r.want_hi_none | r.pick_hi_same, r.pos_inf,
                                               r.pick_hi))]
        # in_decide: high exactly in the DECIDE state (set on the two transitions into it; DECIDE always leaves)
        m.d.sync += r.in_decide.eq(0)
        # idle: high exactly in IDLE (set in DONE and in IDLE without a command); cap_clear: high exactly in IDLE and
        # in SCAN's cycle 0 (also set in a decide cycle that starts a round). Both registers, so that neither the FSM
        # state nor cmd.valid sits in front of the packers' row valid, the captures' take and their clock enables
        m.d.sync += [r.idle.eq(0), r.cap_clear.eq(0)]
        m.d.sync += [x.eq(0) for x in r.flush_regs]
        flush_l, flush_r, flush_u = r.flush_regs if self.sample_register else [r.in_decide] * 3
        m.d.comb += [mem.pack_l.flush.eq(flush_l), mem.pack_r.flush.eq(flush_r), mem.pack_u.flush.eq(flush_u)]
        # the packers restart empty in every idle cycle (nothing enters them there: the pipeline is empty)
        m.d.comb += [pk.clear.eq(r.idle) for pk in (mem.pack_l, mem.pack_r, mem.pack_u, mem.pack_o)]
        with m.FSM(name="topk_fsm"):
            with m.State("IDLE"):
                self._on_command(m, r, mem)
            with m.State("INGEST"):
                self._on_ingest(m, r)
            with m.State("REREAD"):
                # the beats that came before the ingest's pivots, re-read from the buffer
                m.d.comb += r.rd_addr.eq(r.rr)
                m.d.sync += [r.s1_valid.eq(1), r.s1_replay.eq(0), r.s1_fifo.eq(0), r.s1_row.eq(r.rr),
                             r.rr.eq(r.rr + 1)]
                with m.If(r.rr + 1 >= r.reread_end):
                    m.next = "INGEST_DRAIN0"
            for j in range(1, x):     # the ingest's pivots come up to x cycles after its last beat
                with m.State(f"REREAD_WAIT{j}"):
                    m.next = f"REREAD_WAIT{j - 1}" if j > 1 else "REREAD"
            with m.State("INGEST_DRAIN0"):
                m.next = "INGEST_DRAIN"
            with m.State("INGEST_DRAIN"):
                m.next = "INGEST_DRAIN2"
            with m.State("INGEST_DRAIN2"):
                m.next = "INGEST_DRAIN3"
            with m.State("INGEST_DRAIN3"):
                self._to_decide(m, r)
            if self.sample_register:
                with m.State("PREDECIDE"):      # the packers flush; the captures take their last rows
                    m.d.sync += r.in_decide.eq(1)
                    m.next = "DECIDE"
            with m.State("DECIDE"):
                self._on_decide(m, r)
            with m.State("SCAN"):
                # cycle 0 ranks the sample (the chosen side's capture, with the row flushed in Decide), cycle 1
                # takes the pivots; the scan reads row j in cycle j, so that its first row meets the
                # comparators in cycle 2 (the rank pipeline compares the capture in Decide already, as final
                # before the flush, so its popcounts run in cycle 0 and the pick in cycle 1 as well; only a
                # *late* round, whose sample needs the flushed row, is compared in cycle 0 and runs one cycle
                # later: its reads wait a cycle). Row, rows left, pick cycle and last count are registers
                # (set in Decide), so no adder or compare of the count sits before the read address or an enable.
                m.d.comb += r.rd_addr.eq(r.row_ctr)
                if not self.sample_register:     # (with it, _pivot_take)
                    with m.If(r.pick_sr[0]):
                        m.d.sync += [r.pivot.eq(r.pick),
                                     r.pivot_hi.eq(Mux(r.want_hi_none | r.pick_hi_same, r.pos_inf, r.pick_hi))]
                # a working set sampled whole is not scanned (no rows left: no row may still be in flight when
                # the request ends in the pick cycle and the next command starts)
                reading = Signal(name="scan_reading")
                m.d.comb += reading.eq(~(r.scan_wait[0] if self.sample_register else r.scan_wait) & (r.rows_left != 0))
                m.d.sync += [r.s1_valid.eq(reading), r.s1_replay.eq(0), r.s1_fifo.eq(r.src_fifo),
                             r.s1_row.eq(r.row_ctr), r.cnt.eq(r.cnt + 1), r.scan_wait.eq((r.scan_wait >> 1) if self.sample_register else 0),
                             r.pick_sr.eq(r.pick_sr >> 1)]
                with m.If(reading):
                    m.d.sync += [r.row_ctr.eq(r.row_ctr + 1), r.rows_left.eq(r.rows_left - 1)]
                with m.If(r.cnt == r.scan_end):
                    self._to_decide(m, r)
                with m.If(r.whole & r.pick_sr[0]):
                    # exact finish (the working set was sampled whole): the ranked element is the k-th
                    # value, found without the scan's pipeline
                    m.d.sync += [r.kth.eq(r.pick), r.eq_left.eq(r.finish_eq), r.in_decide.eq(0),
                                 *[x.eq(0) for x in r.flush_regs], r.sel_eq.eq(r.finish_eq), r.cnt.eq(0),
                                 r.rounds.eq(r.rounds + 1)]
                    m.next = "REPLAY" if self.replay else "DONE"
            with m.State("REPLAY"):
                m.d.comb += r.rd_addr.eq(r.cnt)
                with m.If(r.adv):
                    m.d.sync += [r.s1_valid.eq(r.cnt < r.rows_b), r.s1_replay.eq(1), r.s1_fifo.eq(0),
                                 r.s1_row.eq(r.cnt), r.cnt.eq(r.cnt + 1)]
                    with m.If(r.cnt == (r.replay_end if self.sample_register else r.rows_b + 4)):
                        m.next = "RFLUSH"
                        if self.sample_register:
                            m.d.sync += r.rflush.eq(1)
            with m.State("RFLUSH"):
                m.d.comb += mem.pack_o.flush.eq((r.rflush & r.adv) if self.sample_register else r.adv)
                with m.If(r.adv):
                    m.next = "RDRAIN"
                    if self.sample_register:
                        m.d.sync += r.rflush.eq(0)
            with m.State("RDRAIN"):          # done once the output queue is empty
                # (with sample_register from the queue's registers only: nothing is pushed in RDRAIN, the
                # pipeline and the output packer being empty since RFLUSH, so the queue empties next cycle when
                # the skid is empty and the head is empty or popped)
                with m.If(~r.skid_valid & (~r.out_valid | self.out.ready) if self.sample_register
                          else r.queue_next == 0):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.d.sync += [r.idle.eq(1), r.cap_clear.eq(1)]
                m.next = "IDLE"
        with m.If(r.in_decide):
            self._decide_registers(m, r)

    def _to_decide(self, m, r):
        """The transition into DECIDE, with ``sample_register`` through PREDECIDE (the packers flush there, one cycle
        before the decision, so that the captures, one register stage behind the packers, are final in Decide)."""
        if self.sample_register:
            m.d.sync += [x.eq(1) for x in r.flush_regs]
            m.next = "PREDECIDE"
        else:
            m.d.sync += r.in_decide.eq(1)
            m.next = "DECIDE"

    def _pivot_take(self, m, r):
        """With sample_register, the pivots' load from the pick stage: enabled by one register (``pivot_take``) set
        one cycle early, with no FSM state decode in front of the pivots' enables: the ingest's load follows
        ``ing_pick`` (the second pick stage's cycle; ``ing_rank_d2`` without it) and a round's follows
        ``pick_sr[1]`` (a one-hot shift that is only non-zero in SCAN and reaches bit 0 before SCAN can end: its
        last count is at least 6, the load at count 3 or 4). The ingest's pick takes +infinity when no candidate
        was held; the command's +infinity has its own enable (``idle`` is high exactly in IDLE)."""
        ing_take, ing_now = (r.ing_pick, r.ing_load) if self.pick_register else (r.ing_rank_d2, r.ing_pick)
        m.d.sync += r.pivot_take.eq(ing_take | r.pick_sr[1])
        none = ing_now & ~r.sample_held
        with m.If(r.pivot_take):
            m.d.sync += [r.pivot.eq(Mux(none, r.pos_inf, r.pick)),
                         r.pivot_hi.eq(Mux(none | r.want_hi_none | r.pick_hi_same, r.pos_inf, r.pick_hi))]
        with m.If(r.idle & self.cmd.valid):
            m.d.sync += [r.pivot.eq(r.pos_inf), r.pivot_hi.eq(r.pos_inf)]

    def _on_command(self, m, r, mem):
        p, lg = self.parallelism, r.lg
        m.d.comb += [self.cmd.ready.eq(1), self.busy.eq(0)]
        m.d.sync += [r.idle.eq(~self.cmd.valid), r.cap_clear.eq(~self.cmd.valid)]
        with m.If(self.cmd.valid):
            c = self.cmd.payload
            m.d.sync += [r.n.eq(c.n), r.k.eq(c.k), r.target.eq(c.k), r.rows_b.eq((c.n + p - 1) >> lg),
                         r.ing_last.eq((c.n != 0) & (c.n <= p)),
                         r.rounds.eq(0), r.cnt.eq(0), r.cnt_g.eq(0), r.cnt_e.eq(0), r.cnt_l.eq(0),
                         r.cnt_ge.eq(0), r.cnt_all.eq(0),
                         r.wr_l.eq(0), r.wr_r.eq(0), r.after_ingest.eq(1), r.mode_all.eq(0),
                         *([] if self.sample_register else [r.pivot.eq(r.pos_inf), r.pivot_hi.eq(r.pos_inf)]),
                         r.lo.eq(r.neg_inf), r.hi.eq(r.pos_inf),
                         r.cnt_a.eq(0), r.cnt_ae.eq(0), r.cnt_m.eq(0), r.wr_u.eq(0)]
            m.d.sync += [x.eq(0) for x in r.slot_keep]
            with m.If(c.n == 0):
                m.next = "INGEST_DRAIN"
            with m.Else():
                m.next = "INGEST"

    def _on_ingest(self, m, r):
        """Beats 0..w-1 fill the sample (ranked as the last of them is accepted); beats from w - 1 on are
        partitioned as they arrive; the first min(w, B) - 1 beats are re-read after the last beat (the
        first re-read issued in the last beat's cycle)."""
        rows, x = r.sample_rows, self.rank_delay
        last = Signal(name="ingest_last")
        # last = (cnt + 1 == B) as a register, set with cnt (no adder and compare of cnt before the FSM's enables)
        m.d.comb += [self.inp.ready.eq(1), r.ingest_beat.eq(self.inp.valid), last.eq(r.ing_last),
                     r.live.eq(r.cnt >= rows + x)]
        with m.If(self.inp.valid):
            m.d.sync += [r.cnt.eq(r.cnt + 1), r.ing_last.eq(r.cnt + 2 == r.rows_b)]
            early = (r.cnt < rows - 1) if rows > 1 else 0     # a beat before the last sample beat (none for w = 1)
            with m.If((r.cnt == rows - 1) | (last & early)):
                m.d.comb += r.ing_rank.eq(1)
            with m.Elif(early):
                m.d.comb += r.cap_plain.eq(1)
            with m.If(last):
                # re-read beats 0 .. min(w, B) - 1 (min(w + 1, B) - 1 with the rank pipeline): the first now, the
                # others in REREAD; a one-beat request re-reads its beat in the next cycle (the buffer's read
                # port does not see this cycle's write), and so does one whose pivots come one cycle late (the
                # rank pipeline when the last beat is a sample beat)
                # (with sample_register and its pick stage the pivots come three cycles after the last sample beat:
                # a last beat that is a sample beat waits three cycles, the beats after them two and one)
                late = (r.cnt == 0) if not x else (r.cnt < rows + x - 1)
                with m.If(~late):
                    m.d.comb += r.rd_addr.eq(0)
                    m.d.sync += [r.s1_valid.eq(1), r.s1_replay.eq(0), r.s1_fifo.eq(0), r.s1_row.eq(0), r.rr.eq(1)]
                    m.next = "REREAD" if rows + x > 1 else "INGEST_DRAIN0"
                with m.Else():
                    m.d.sync += r.rr.eq(0)
                    self._reread_wait(m, r, rows, x)

    @staticmethod
    def _reread_wait(m, r, rows, x):
        """The first re-read waits min(x, w + x - B) cycles after the last beat (it must meet the ingest's pivots):
        this cycle and x - 1 - i REREAD_WAIT states when the last beat is beat w - 1 + i (i >= 0), x - 1 before it."""
        if x < 2:
            m.next = "REREAD"
            return

        def wait_state(j):
            return f"REREAD_WAIT{j}" if j else "REREAD"
        with m.If(r.cnt < rows):
            m.next = wait_state(x - 1)
        for i in range(1, x - 1):
            with m.Elif(r.cnt == rows - 1 + i):
                m.next = wait_state(x - 1 - i)
        with m.Elif(r.cnt == rows + x - 2):
            m.next = "REREAD"

    def _on_decide(self, m, r):
        """DECIDE's next state (its register updates are ``_decide_registers``, enabled by the in_decide register)."""
        with m.If(r.go_scan):
            m.next = "SCAN"
        with m.Elif(r.after_ingest & r.dec_k_zero):
            m.next = "DONE"
        with m.Else():
            m.next = "REPLAY" if self.replay else "DONE"

    def _decide_registers(self, m, r):
        """The decide cycle (``r.in_decide``, a register high exactly in DECIDE, so that no FSM state decode sits in
        front of these enables; without sample_register the packers' flush is in_decide too): k = 0 ends the
        request, k >= candidates replays with everything kept, otherwise continue on the side holding the target
        rank, or replay when the pivot is the k-th."""
        go_scan = r.go_scan
        side = r.side
        if self.sample_register:      # registered (_decide_go)
            m.d.comb += [go_scan.eq(r.dec_go), side.eq(r.dec_side)]

        def steer(k):
            return [] if self.sample_register else [side.eq(k), go_scan.eq(1)]
        sr = self.round_delay     # the round is ranked (and picked) later: its reads and pick wait as many cycles more
        m.d.sync += r.after_ingest.eq(0)
        with m.If(r.after_ingest & r.dec_k_zero):
            m.d.sync += [r.kth.eq(r.pos_inf), r.sel_eq.eq(0)]      # nothing passes x > +inf
        with m.Elif(r.after_ingest & r.dec_k_all):
            m.d.sync += [r.mode_all.eq(1), r.cnt.eq(0), r.kth.eq(r.neg_inf), r.sel_eq.eq(0)]   # every one passes
        with m.Else():
            m.d.sync += r.rounds.eq(r.rounds + 1)
            with m.If(r.dec_le_a):                       # above the upper pivot: FIFO_U
                m.d.comb += steer(2)
                m.d.sync += [r.lo.eq(r.pivot_hi), r.target.eq(r.t)]
            with m.Elif(r.dec_le_ae):                    # the upper pivot is the k-th value
                m.d.sync += [r.kth.eq(r.pivot_hi), r.eq_left.eq(r.t - r.cnt_a), r.sel_eq.eq(r.t - r.cnt_a),
                             r.cnt.eq(0)]
            with m.Elif(r.dec_le_g):                     # between the pivots: FIFO_R
                m.d.comb += steer(1)
                m.d.sync += [r.lo.eq(r.pivot), r.target.eq(r.t - r.cnt_ae)]
                with m.If(r.pivot_hi != r.pos_inf):
                    m.d.sync += r.hi.eq(r.pivot_hi)
            with m.Elif(r.dec_le_ge):                    # the lower pivot is the k-th value
                m.d.sync += [r.kth.eq(r.pivot), r.eq_left.eq(r.t - r.cnt_g), r.sel_eq.eq(r.t - r.cnt_g),
                             r.cnt.eq(0)]
            with m.Else():                               # below the lower pivot: FIFO_L
                m.d.comb += steer(0)
                m.d.sync += [r.hi.eq(r.pivot), r.target.eq(r.t - r.cnt_ge)]
        with m.If(go_scan):
            m.d.sync += r.cap_clear.eq(1)        # the captures restart empty in SCAN's cycle 0
            def pick3(x):
                return Mux(side == 2, x[2], Mux(side == 1, x[1], x[0]))
            m.d.sync += [r.src_fifo.eq(pick3(r.side_fit)), r.src_side.eq(side),
                         r.row_ctr.eq(0), r.rows_left.eq(pick3(r.side_rows)), r.scan_end.eq(pick3(r.side_end)),
                         r.scan_wait.eq(Mux(pick3(r.side_late), (2 << sr) - 1, (1 << sr) - 1) if sr else pick3(r.side_late)),
                         r.pick_sr.eq(Mux(pick3(r.side_late), 0b100 << sr, 0b010 << sr)),
                         r.cnt.eq(0), r.cnt_g.eq(0), r.cnt_e.eq(0), r.cnt_l.eq(0), r.cnt_ge.eq(0),
                         r.cnt_all.eq(0), r.cnt_a.eq(0), r.cnt_ae.eq(0), r.cnt_m.eq(0),
                         r.wr_l.eq(0), r.wr_r.eq(0), r.wr_u.eq(0)]
            # the ranker compares the chosen side's capture now (_pivot_sample); SCAN's cycle 0 counts


class _Memories:
    """The engine's block RAMs (input buffer, FIFO_L, FIFO_R) with their ports, and its packers and
    zero eliminators, added to ``m``."""

    def __init__(self, m, tk: TopK):
        p, w, d = tk.parallelism, tk.width, tk.fifo_depth
        lane_bits = w + tk.index_bits
        row_bits = p * lane_bits
        buf = Memory(shape=unsigned(p * (w + 1)), depth=tk.buffer_rows, init=[])
        fifo_l = Memory(shape=unsigned(row_bits + p), depth=d, init=[])
        fifo_r = Memory(shape=unsigned(row_bits + p), depth=d, init=[])
        m.submodules.buf, m.submodules.fifo_l, m.submodules.fifo_r = buf, fifo_l, fifo_r
        buf_wr, buf_rd = buf.write_port(), buf.read_port()
        # plain (not transparent) FIFO read ports: a row is never read in the cycle in which it is written
        # (a packed row j is written after source row j was read, and the scan reads from the cycle after
        # the decide's flush on)
        fl_wr = fifo_l.write_port()
        fl_rd = fifo_l.read_port()
        fr_wr = fifo_r.write_port()
        fr_rd = fifo_r.read_port()
        fifo_u = Memory(shape=unsigned(row_bits + p), depth=d, init=[])
        m.submodules.fifo_u = fifo_u
        self.fu_wr = fifo_u.write_port()
        self.fu_rd = fifo_u.read_port()
        self.buf_wr, self.buf_rd, self.fl_wr, self.fl_rd, self.fr_wr, self.fr_rd = \
            buf_wr, buf_rd, fl_wr, fl_rd, fr_wr, fr_rd
        m.submodules.pack_l = self.pack_l = _AppendPacker(p, lane_bits)
        m.submodules.pack_r = self.pack_r = _AppendPacker(p, lane_bits)
        m.submodules.pack_u = self.pack_u = _AppendPacker(p, lane_bits)
        m.submodules.compact_u = self.compact_u = ZeroEliminator(p, unsigned(lane_bits))
        m.submodules.compact_l = self.compact_l = ZeroEliminator(p, unsigned(lane_bits))
        m.submodules.compact_r = self.compact_r = ZeroEliminator(p, unsigned(lane_bits))
        m.submodules.pack_o = self.pack_o = _AppendPacker(p, lane_bits)
        m.submodules.compact_o = self.compact_o = ZeroEliminator(p, unsigned(lane_bits))


class _Registers:
    """The request, quick-select and pipeline signals that several of the engine's blocks share.

    Pipeline (docs/topk.md "Pipeline"): address -> s1 (memory read) -> s2 (memory output registers /
    registered input beat) -> s3 (compare registers) -> s3c (compacted sides) -> partition packers, or
    -> s4 (replay keep registers) -> s5 (compacted kept row) -> output packer -> output register.
    """

    def __init__(self, tk: TopK):
        p, w, ib, d = tk.parallelism, tk.width, tk.index_bits, tk.fifo_depth
        self.lg = (p - 1).bit_length()
        self.lane_bits = w + ib
        self.row_bits = p * self.lane_bits
        cb = tk.count_bits
        ext = signed(w + 1)                       # scores, pivot and bounds with room for +-infinity
        self.pos_inf, self.neg_inf = 1 << (w - 1), -(1 << (w - 1)) - 1
        # Request registers.
        self.n = Signal(cb, name="n")
        self.k = Signal(cb, name="k")
        self.rows_b = Signal(range(tk.buffer_rows + 1), name="rows_b")     # B = ceil(n / P)
        self.rounds = Signal(16, name="rounds")
        # Quick-select state.
        self.target = Signal(cb, name="target")
        self.pivot = Signal(ext, name="pivot")
        lo, hi = Signal(ext), Signal(ext)                # working set: lo < x < hi
        self.lo, self.hi = lo, hi
        self.src_fifo = Signal(name="src_fifo")   # 1: read the partition FIFO of side src_side; 0: the buffer
        self.src_side = Signal(2, name="src_side")   # 0: FIFO_L (below), 1: FIFO_R (between), 2: FIFO_U (above)
        self.pivot_hi = Signal(ext, name="pivot_hi")   # the upper pivot (+infinity: none)
        # the scan (set in Decide): the next row, the rows left to read, the count at which it ends, a cycle's
        # wait before the first read (a late round), and the pick cycle as a one-hot shift (bit 0: now)
        self.row_ctr = Signal(range(max(tk.buffer_rows, d) + 1), name="scan_row")
        self.rows_left = Signal(range(max(tk.buffer_rows, d) + 1), name="scan_rows_left")
        sr, x = tk.round_delay, tk.rank_delay
        self.scan_end = Signal(range(max(tk.buffer_rows, d) + 5 + sr), name="scan_end")
        self.scan_wait = Signal(1 + sr, name="scan_wait")
        self.pick_sr = Signal(3 + sr, name="scan_pick")
        self.side_fit = [Signal(name=f"side_fit_{x}") for x in "lgu"]
        self.side_rows = [Signal.like(self.rows_left, name=f"side_rows_{x}") for x in "lgu"]
        self.side_end = [Signal.like(self.scan_end, name=f"side_end_{x}") for x in "lgu"]
        cnt_g, cnt_e, cnt_l = Signal(cb), Signal(cb), Signal(cb)
        cnt_ge, cnt_all = Signal(cb), Signal(cb)          # g + e and g + e + l, kept as counters
        wr_l, wr_r = Signal(range(d + 1)), Signal(range(d + 1))
        self.cnt_g, self.cnt_e, self.cnt_l, self.cnt_ge, self.cnt_all = cnt_g, cnt_e, cnt_l, cnt_ge, cnt_all
        self.wr_l, self.wr_r = wr_l, wr_r
        self.wr_u = Signal(range(d + 1), name="wr_u")
        # above the upper pivot, that or equal to it, and strictly between the pivots (FIFO_R); cnt_g counts
        # everything above the lower pivot
        self.cnt_a, self.cnt_ae, self.cnt_m = Signal(cb, name="cnt_a"), Signal(cb, name="cnt_ae"), Signal(cb, name="cnt_m")
        self.after_ingest = Signal(name="after_ingest")
        self.mode_all = Signal(name="mode_all")
        self.kth = Signal(ext, name="kth")          # the k-th value (+inf: keep none; -inf: keep all)
        self.eq_left = Signal(cb, name="eq_left")   # elements equal to the k-th value still to keep (replay)
        self.sel_eq = Signal(cb, name="sel_eq")     # elements equal to the k-th value to keep (the decision)
        self.cnt = Signal(range(max(tk.buffer_rows, d) + 5), name="cnt")
        # Pipeline control: the pipeline may move (adv) when the output queue (output register + skid
        # register) held at most one beat at the end of the last cycle (see _output_queue).
        self.out_valid = Signal(name="out_valid")
        # adv is registered (one copy per pipeline group, each kept, so no copy drives every enable);
        # reset high: the queue is empty
        self.adv_copies = [Signal(init=1, name=f"adv_{g}", attrs={"keep": "true"})
                           for g in ("s2", "s3", "s4", "s5", "out", "ctl")]
        self.adv_s2, self.adv_s3, self.adv_s4, self.adv_s5, self.adv_out, self.adv = self.adv_copies
        self.push = Signal(name="out_push")
        self.push_word = Signal(p * (w + ib) + p, name="out_push_word")
        self.queue_next = Signal(range(3), name="out_queue_next")
        self.skid_valid = Signal(name="skid_valid") if tk.sample_register else None
        # sample_register: REPLAY's last count rows_b + 4 as a register (B is set by the command, long before),
        # and a register high exactly in RFLUSH (the output packer's flush without an FSM state decode)
        self.replay_end = Signal(range(tk.buffer_rows + 5), name="replay_end")
        self.rflush = Signal(name="replay_flush")
        # sample_register: the pivots load from the pick stage in this cycle (a register set one cycle early)
        self.pivot_take = Signal(name="pivot_take")
        self.ingest_beat = Signal(name="ingest_beat")
        self.s1_valid, self.s1_replay, self.s1_fifo = (Signal(name=x) for x in ("s1_valid", "s1_replay", "s1_fifo"))
        self.s1_row = Signal(range(max(tk.buffer_rows, d, 2)), name="s1_row")
        self.s2_valid, self.s2_replay, self.s2_fifo = (Signal(name=x) for x in ("s2_valid", "s2_replay", "s2_fifo"))
        self.s2_row = Signal.like(self.s1_row, name="s2_row")
        # s2 registers: r_plain holds an input beat (ingest) or a buffer row, r_fifo a row of the FIFO of
        # side src_side; one 2:1 multiplexer sits between a block RAM and its register, none between
        # the registers and the comparators but the FIFO-or-plain choice.
        self.r_plain = Signal(p * (w + 1), name="r_plain")
        self.r_fifo = Signal(self.row_bits + p, name="r_fifo")
        self.in_row = Signal(p * (w + 1), name="in_row")  # an input beat as stored: data, then keep (index < n)
        self.vals = [Signal(signed(w), name=f"s2_val{i}") for i in range(p)]
        self.idxs = [Signal(ib, name=f"s2_idx{i}") for i in range(p)]
        self.keeps = Signal(p, name="keeps")
        # Memory read address, pivot draw and decision inputs.
        self.rd_addr = Signal.like(self.cnt, name="rd_addr")
        # Pivot sample: S lanes from w rows (sample_shape), ranked against the wanted ranks.
        self.sample_rows, self.sample_lanes = tk.sample_rows, tk.sample_lanes
        s, rows = self.sample_lanes, self.sample_rows
        rank_shape = range(s + 3)
        self.want_lo, self.want_hi = Signal(rank_shape, name="want_lo"), Signal(rank_shape, name="want_hi")
        self.want_hi_none = Signal(name="want_hi_none")
        self.pick_hi_same = Signal(name="pick_hi_same")
        self.finish_eq = Signal(cb, name="finish_eq")            # target - (sample above the lower pick)          # the upper pick has the lower one's value
        self.ing_pick = Signal(name="ingest_pick")              # the cycle after the ingest's ranking one
        self.sample_held = Signal(name="sample_held")
        self.whole = Signal(name="whole")                       # the round's working set is sampled whole
        self.side_late = [Signal(name=f"side_late_{x}") for x in "lgu"]   # the side's round would be late
        self.whole_above = Signal(range(s + 1), name="whole_above")
        self.pick_hi = Signal(signed(w), name="pick_hi")
        self.pick = Signal(signed(w), name="pick")
        # the sample's first w - 1 rows (values, keep bits), shifted in as they are registered
        self.slot_vals = [Signal(p * w, name=f"sample_slot{j}") for j in range(rows - 1)]
        self.slot_keep = [Signal(p, name=f"sample_slot_keep{j}") for j in range(rows - 1)]
        self.cap_plain = Signal(name="sample_cap_plain")    # the accepted beat is a sample beat to shift in
        self.ing_rank = Signal(name="ingest_rank")          # the accepted beat is the last sample beat: rank it
        self.ing_rank_d = Signal(name="ingest_rank_d")      # ing_rank one cycle later (rank pipeline)
        self.ing_rank_d2 = Signal(name="ingest_rank_d2")    # and two (sample_register)
        self.ing_load = Signal(name="ingest_load")          # the cycle after the ingest's pick (its pivots load)
        self.ing_last = Signal(name="ingest_last_beat")     # the ingest's next beat is its last (cnt + 1 == B)
        self.live = Signal(name="ingest_live")              # the accepted beat comes after the sample beats
        self.rr = Signal(range(rows + 1 + x), name="reread")    # the next sample beat to re-read
        self.reread_end = Signal(range(rows + 1 + x), name="reread_end")   # min(w + x, B): beats to re-read
        self.cap_clear = Signal(init=1, name="sample_cap_clear")   # the FIFO row captures restart empty (IDLE, SCAN's cycle 0)
        self.idle = Signal(init=1, name="topk_idle")   # the FSM is in IDLE (a register: the packers' clear)
        self.samp_ing = Signal(name="sample_src_ingest")   # the ingest's sample is still to be ranked
        # one copy per lane; Yosys merges registers with equal inputs despite ``keep``, so the copies get distinct
        # reset values (the select is loaded in every cycle, so the reset value only lasts the first cycle, idle):
        # Yosys merges bit by bit and a bit has two reset values, so each select bit is two flip-flops in the
        # netlist, each driving half the lanes' multiplexers (one flip-flop per bit drove all 16 lanes: 800 loads)
        self.samp_sel = [Signal(2, init=i % 4, name=f"sample_src{i}", attrs={"keep": "true"}) for i in range(s)]
        self.want_lo_in_s = Signal(name="want_lo_in_s")   # want_lo < S (a round's sample holds S lanes)
        self.t = Signal(cb, name="t")
        self.dec_le_a, self.dec_le_ae, self.dec_le_g, self.dec_le_ge, self.dec_k_zero, self.dec_k_all = (
            Signal(name=f"decide_{x}") for x in ("le_a", "le_ae", "le_g", "le_ge", "k_zero", "k_all"))
        self.go_scan = Signal(name="go_scan")         # the decide cycle starts a round
        self.dec_go, self.dec_side = Signal(name="decide_go"), Signal(2, name="decide_side")   # (sample_register)
        self.in_decide = Signal(name="in_decide")     # the FSM is in DECIDE (a register: the packers' flush)
        # sample_register: the packers' flushes (one copy per packer, kept apart; _copy_register's g = 2 and 3: no
        # reset, g = 3 starts high, a flush of an empty packer: nothing happens), high exactly in PREDECIDE, the
        # cycle before DECIDE (H121: the captures take the packers' rows one cycle late, from a register stage)
        self.flush_regs = ([_copy_register(unsigned(1), g, f"pre_decide_c{g}") for g in (0, 2, 3)]
                           if tk.sample_register else [])
        self.side = Signal(2, name="side")


class _Stage3:
    """s3: the registered row and comparison bits, and the per-lane classes derived from them."""

    def __init__(self, r: _Registers, names):
        p = len(r.keeps)
        self.valid, self.replay = Signal(name="s3_valid"), Signal(name="s3_replay")
        self.row = Signal.like(r.s1_row, name="s3_row")
        self.lanes = Signal(r.row_bits, name="s3_lanes")
        self.raw = [Signal(p, name=f"s3_{x}_raw") for x in names]
        self.keep = Signal(p, name="s3_keep")
        self.gt, self.eq, self.lt, self.gtk, self.eqk = (Signal(p, name=f"s3_{x}") for x in names[:5])
        self.above, self.eq_up, self.mid = (Signal(p, name=f"s3_{x}") for x in ("above", "eq_up", "mid"))
        self.inside = Signal(p, name="inside")


def topk_verilog(parallelism: int, max_n: int, width: int = 16, fifo_depth: int = 64,
                 name: str = "topk", replay: bool = True, sample_lanes: int | None = None,
                 rank_pipeline: bool = True, sample_register: bool = False) -> str:
    """Verilog of a TopK engine; deterministic (no source paths embedded)."""
    return verilog.convert(TopK(parallelism, max_n, width, fifo_depth, replay, sample_lanes, rank_pipeline,
                                sample_register),
                           name=name, emit_src=False)
