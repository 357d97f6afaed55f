"""The stream sequencer of a skewed stt array's port (the hardware half of ``dataflow/stt_phase.py LaneProgram``).

Every slot, every lane of one stream port (an input, the partial sums in, or the outputs out) gets a buffer
address and a valid bit: the element that lane carries then, or nothing (the array then takes a zero, or an
output beat is dropped). Built from counters, adds, a shift register, table bits and compares only:

* a phase counter (0 .. period - 1) and a box walker: one counter per tile-loop level (innermost fastest)
  and the box's tensor origin (one signed register per tensor dimension, plus its row-major linear address),
  which adds the level's constant step when a level advances and subtracts ``(trips - 1)`` steps when it
  wraps; the box's edge mask and first-visit bit are compares on the counters;
* a shift register of the last ``depth`` boxes (exists, edge mask, first visit, origin, linear origin),
  shifted when the phase wraps: box ``n div period - delta`` is entry ``delta``;
* per lane, a case on the phase selecting the constant entry (delta, offset, edge-mask bits): the address is
  the entry's box's linear origin plus the constant linear offset; valid when that box exists, the entry's
  bit for its edge mask is set, the element lies inside the tensor (two compares per dimension) and, on a
  partial-sum port, the box is not its output block's first visit.

``start`` restarts at slot 0 (box 0); ``fire`` advances one slot (the array's lock-step enable). The outputs
describe the current slot (combinational from the registers); the layer top (rtlgen/stt_layer.py) holds it at
slot 0 until the array command and steps it with the array one slot ahead, so its registered bank reads meet
the slot. The program (trip counts, steps, tables) is a constant of this elaboration, i.e. one build per
problem; ``lane_walk`` (and, with a banked layout, dataflow/stt_bank.py ``layout_walk``) is the model this is
tested against (tests/rtlgen/test_stt_stream.py).
"""
from __future__ import annotations

import math

from amaranth import Array, Const, Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from archgen.dataflow.stt_phase import LaneProgram

__all__ = ["SttLaneSequencer"]


def _bits(v: int) -> int:
    return max(1, int(v).bit_length())


class SttLaneSequencer(wiring.Component):
    """``layout`` (a banked ``BankLayout``, dataflow/stt_bank.py): ``addr`` is the element's index in its bank
    (the box's in-bank base, kept by the walker with constant steps, plus the entry's constant) and ``bank``
    the entry's bank (a constant per lane and phase)."""

    def __init__(self, program: LaneProgram, layout=None):
        self.program = program
        self.layout = layout if layout is not None and not layout.copies else None
        p = program
        total = 1
        for e in p.extent:
            total *= e
        self.addr_bits = _bits(max(total - 1, 1))
        reach = max([abs(c) for e in p.entries for c in e[1][1]] + [0]) + max(
            [abs(s) * t for st, t in zip(p.step, p.trips) for s in st] + [0]) + max(p.extent)
        self.coord_bits = _bits(reach) + 1           # signed
        self.lin_bits = _bits(max(reach * max(p.strides), total)) + 2
        lay = self.layout
        if lay is not None:
            cells = lay.cells_of(p.extent)
            span = sum((reach // m + 2) * int(math.prod(cells[j + 1:])) for j, m in enumerate(lay.mod)) * lay.size
            self.lin_bits = max(self.lin_bits, _bits(span) + 2)
            self.addr_bits = _bits(max(lay.rows(p.extent) * lay.width - 1, 1))
        members = {
            "start": In(1), "fire": In(1),
            "carry": In(1),                          # no box is a first visit (a later reduction block)
            "valid": Out(p.lanes),
            "addr": Out(data.ArrayLayout(unsigned(self.addr_bits), p.lanes)),
            "slot_box": Out(32),                     # box group of the current slot (n div period), for tests
        }
        if self.layout is not None:
            members["bank"] = Out(data.ArrayLayout(unsigned(_bits(max(self.layout.banks - 1, 1))), p.lanes))
        if p.is_tag:                                 # a validity-tag port: the entry's value for the box's edges
            self.value_bits = _bits(max(v for vals in p.values for v in vals))
            members["value"] = Out(data.ArrayLayout(unsigned(self.value_bits), p.lanes))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        p = self.program
        levels, ndim = len(p.trips), len(p.extent)
        cs, ls = signed(self.coord_bits), signed(self.lin_bits)
        phase = Signal(range(max(p.period, 2)), name="phase")
        group = Signal(32, name="group")
        counters = [Signal(range(max(t, 2)), name=f"level{lv}") for lv, t in enumerate(p.trips)]
        origin = [Signal(cs, name=f"origin{j}") for j in range(ndim)]
        lin = Signal(ls, name="origin_lin")
        exists = Signal(init=1, name="exists")
        m.d.comb += self.slot_box.eq(group)

        # the walker's box (entry 0 of the shift register): mask and first-visit bit from the counters
        mask0 = Signal(max(levels, 1), name="edge_mask")
        first0 = Signal(name="first_visit")
        m.d.comb += [mask0[levels - 1 - lv].eq(counters[lv] == p.trips[lv] - 1) for lv in range(levels)
                     if p.trips[lv] > 1]
        firsts = [counters[lv] == 0 for lv in range(levels) if p.revisit[lv]]
        f = 1
        for c in firsts:
            f = f & c
        m.d.comb += first0.eq(f & ~self.carry)
        entry = [(exists, mask0, first0, origin, lin)]
        for d in range(1, p.depth):
            entry.append((Signal(name=f"box{d}_exists"), Signal(max(levels, 1), name=f"box{d}_mask"),
                          Signal(name=f"box{d}_first"), [Signal(cs, name=f"box{d}_origin{j}") for j in range(ndim)],
                          Signal(ls, name=f"box{d}_lin")))

        with m.If(self.start):
            m.d.sync += [phase.eq(0), group.eq(0), exists.eq(1), lin.eq(0)]
            m.d.sync += [c.eq(0) for c in counters] + [o.eq(0) for o in origin]
            m.d.sync += [e[0].eq(0) for e in entry[1:]]
        with m.Elif(self.fire):
            with m.If(phase == p.period - 1):
                m.d.sync += [phase.eq(0), group.eq(group + 1)]
                for d in range(p.depth - 1, 0, -1):       # shift: box d takes box d - 1
                    src, dst = entry[d - 1], entry[d]
                    m.d.sync += [dst[0].eq(src[0]), dst[1].eq(src[1]), dst[2].eq(src[2]), dst[4].eq(src[4])]
                    m.d.sync += [a.eq(b) for a, b in zip(dst[3], src[3])]
                self._step_walker(m, counters, origin, lin, exists)
            with m.Else():
                m.d.sync += phase.eq(phase + 1)

        table = {}
        tag_values = dict(zip((k for k, _v in p.entries), p.values))
        for (lane, ph), val in p.entries:
            table.setdefault(lane, {})[ph] = val
        for lane in range(p.lanes):
            if lane not in table:       # a lane with no entries (this problem's boxes never reach it): never
                never = phase == p.period                   # valid; a compare, not a constant, for the lint
                m.d.comb += [self.valid[lane].eq(never), self.addr[lane].eq(lin)]
                if self.layout is not None:
                    m.d.comb += self.bank[lane].eq(never)
                if p.is_tag:
                    m.d.comb += self.value[lane].eq(never)
                continue
            with m.Switch(phase):
                for ph, (delta, off, masks) in sorted(table.get(lane, {}).items()):
                    with m.Case(ph):
                        ex, mask, first, org, base = entry[delta]
                        if p.is_tag:
                            vals = tag_values[(lane, ph)]
                            m.d.comb += [self.valid[lane].eq(ex & Const(masks, 1 << levels).bit_select(mask, 1)),
                                         self.value[lane].eq(Array(Const(v, self.value_bits) for v in vals)[mask])]
                            continue
                        coords = [org[j] + off[j] for j in range(ndim)]
                        every = masks == (1 << (1 << levels)) - 1     # real under every edge mask
                        ok = ex if every else ex & Const(masks, 1 << levels).bit_select(mask, 1)
                        if p.is_psum:
                            ok = ok & ~first
                        for j in range(ndim):
                            ok = ok & (coords[j] >= 0) & (coords[j] < p.extent[j])
                        if self.layout is None:
                            m.d.comb += [self.valid[lane].eq(ok), self.addr[lane].eq(base + p.linear(off))]
                            continue
                        bank, index = self.layout.entry(off, p.extent)
                        m.d.comb += [self.valid[lane].eq(ok), self.addr[lane].eq(base + index),
                                     self.bank[lane].eq(bank)]
        return m

    def _step_walker(self, m, counters, origin, lin, exists):
        """The next box: the innermost level advances; a level at its last box wraps and carries outward."""
        self._carry(m, len(self.program.trips) - 1, counters, origin, lin, exists, [0] * len(origin))

    def _carry(self, m, lv, counters, origin, lin, exists, acc):
        """Level ``lv`` advances after an inner wrap whose origin change is ``acc`` (per dimension)."""
        p = self.program
        if lv < 0:
            m.d.sync += exists.eq(0)
            return
        step, trips = p.step[lv], p.trips[lv]
        with m.If(counters[lv] == trips - 1):
            m.d.sync += counters[lv].eq(0)
            self._carry(m, lv - 1, counters, origin, lin, exists, [a - s * (trips - 1) for a, s in zip(acc, step)])
        with m.Else():
            total = [a + s for a, s in zip(acc, step)]
            m.d.sync += counters[lv].eq(counters[lv] + 1)
            m.d.sync += [o.eq(o + t) for o, t in zip(origin, total)]
            m.d.sync += lin.eq(lin + (p.linear(total) if self.layout is None
                                      else self.layout.index_step(total, p.extent)))
