"""Cascade-pruning importance accumulators of SpAtten (they run beside the attention chain).

- :class:`TokenImportance`: s_tok[n] += attention probability of key n, for every query of every head;
  the scores decide which tokens the token top-k keeps before the next layer. One beat carries ``lanes``
  consecutive tokens (a row ``group`` of the buffer), so the accumulator memory is read, added and
  written back one row per cycle (read in cycle t, write in t + 1). Two beats to the same row must be at
  least two cycles apart (the core's softmax emits each row once per query, so they always are).
- :class:`HeadImportance`: s_head += sum |out[d]| over the features of each attention output row.
Both have a synchronous ``clear``; accumulators saturate instead of wrapping.
"""
from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["TokenImportance", "HeadImportance"]


class TokenImportance(wiring.Component):
    """``max_tokens`` accumulators of ``acc_bits`` bits, updated ``lanes`` at a time; ``rd_*`` reads one row."""

    def __init__(self, max_tokens: int, lanes: int, prob_bits: int = 16, acc_bits: int = 32):
        self.max_tokens, self.lanes, self.prob_bits, self.acc_bits = max_tokens, lanes, prob_bits, acc_bits
        self.rows = max_tokens // lanes
        abits = max(1, (self.rows - 1).bit_length())
        super().__init__({
            "inp": In(stream.Signature(data.StructLayout({
                "group": unsigned(abits), "data": data.ArrayLayout(unsigned(prob_bits), lanes),
                "keep": unsigned(lanes)}), always_ready=True)),
            "clear": In(1),
            "rd_addr": In(abits),
            "rd_data": Out(data.ArrayLayout(unsigned(acc_bits), lanes)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        L, W = self.lanes, self.acc_bits
        m.submodules.acc = acc = memory.Memory(shape=unsigned(L * W), depth=self.rows, init=[])
        rp, wp, op = acc.read_port(), acc.write_port(), acc.read_port()
        upd_v, upd_group = Signal(), Signal(len(self.inp.payload.group))
        upd_data = Signal(data.ArrayLayout(unsigned(self.prob_bits), L))
        upd_keep = Signal(L)
        clr_ptr, clearing = Signal(len(upd_group) + 1), Signal()
        m.d.comb += [rp.addr.eq(self.inp.payload.group), rp.en.eq(1)]
        m.d.sync += [upd_v.eq(self.inp.valid), upd_group.eq(self.inp.payload.group),
                     upd_data.eq(self.inp.payload.data), upd_keep.eq(self.inp.payload.keep)]
        new = []
        for i in range(L):
            old = rp.data[i * W:(i + 1) * W]
            s = old + Mux(upd_keep[i], upd_data[i], 0)
            new.append(Mux(s[W], (1 << W) - 1, s[:W]))
        m.d.comb += [wp.addr.eq(upd_group), wp.en.eq(upd_v), wp.data.eq(Cat(*new))]
        with m.If(self.clear):
            m.d.sync += [clearing.eq(1), clr_ptr.eq(0)]
        with m.Elif(clearing):
            m.d.comb += [wp.addr.eq(clr_ptr), wp.en.eq(1), wp.data.eq(0)]
            m.d.sync += clr_ptr.eq(clr_ptr + 1)
            with m.If(clr_ptr == self.rows - 1):
                m.d.sync += clearing.eq(0)
        m.d.comb += [self.busy.eq(clearing), op.addr.eq(self.rd_addr), op.en.eq(1),
                     self.rd_data.as_value().eq(op.data)]
        return m


class HeadImportance(wiring.Component):
    """One accumulator: += sum over ``features`` of |x| for every beat of signed ``in_bits`` values."""

    def __init__(self, features: int, in_bits: int, acc_bits: int = 48):
        self.features, self.in_bits, self.acc_bits = features, in_bits, acc_bits
        super().__init__({
            "inp": In(stream.Signature(data.ArrayLayout(signed(in_bits), features), always_ready=True)),
            "clear": In(1),
            "score": Out(acc_bits),
        })

    def elaborate(self, platform):
        m = Module()
        mags = [Mux(x < 0, -x, x).as_unsigned() for x in self.inp.payload]
        row = Signal(self.in_bits + max(1, (self.features - 1).bit_length()) + 1)
        row_v = Signal()
        m.d.sync += [row.eq(sum(mags)), row_v.eq(self.inp.valid)]
        total = Signal(self.acc_bits + 1)
        m.d.comb += total.eq(self.score + row)
        with m.If(self.clear):
            m.d.sync += [self.score.eq(0), row_v.eq(0)]
        with m.Elif(row_v):
            m.d.sync += self.score.eq(Mux(total[self.acc_bits], (1 << self.acc_bits) - 1, total[:self.acc_bits]))
        return m
