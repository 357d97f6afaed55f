"""The stream sequencer of a skewed stt array's port (the hardware half of ``dataflow/stt_phase.py LaneProgram``).

Every slot, every lane of one stream port (an input, the partial sums in, or the outputs out) gets a buffer
address and a valid bit: the element that lane carries then, or nothing (the array then takes a zero, or an
output beat is dropped). Built from counters, adds, a shift register, table bits and compares only:

* a phase counter (0 .. period - 1) and a box walker: one counter per tile-loop level (innermost fastest)
  and the box's tensor origin (one signed register per tensor dimension, plus its row-major linear address),
  which adds the level's constant step when a level advances and subtracts ``(trips - 1)`` steps when it
  wraps (box 0's origin is 0, or the program's ``start`` when the block's region holds a halo below its first
  index); the box's edge mask and first-visit bit are compares on the counters;
* a shift register of the last ``depth`` boxes (exists, edge mask, first visit, origin, linear origin),
  shifted when the phase wraps: box ``n div period - delta`` is entry ``delta``;
* per lane, a case on the phase selecting the constant entry (delta, offset, edge-mask bits): the address is
  the entry's box's linear origin plus the constant linear offset; valid when that box exists, the entry's
  bit for its edge mask is set, the element lies inside the tensor (two compares per dimension) and, on a
  partial-sum port, the box is not its output block's first visit.

``start`` restarts at slot 0 (box 0); ``fire`` advances one slot (the array's lock-step enable). The outputs
describe the current slot (combinational from the registers); the layer top (rtlgen/stt_layer.py) holds it at
slot 0 until the array command and steps it with the array one slot ahead, so its registered bank reads meet
the slot. What depends on the problem (trip counts, the origin's change per level, the extents, each phase
entry's index offset, edge-mask bits and tag values: dataflow/stt_command.py ``sequencer_values``) comes in
as ``fields``: constants of the elaboration (one build per problem, the default) or the signals of a layer
command register (one build for every layer, ``fields`` given); the entries' lanes, phases, box deltas,
coordinate offsets and banks are constants either way. ``lane_walk`` (and, with a banked layout,
dataflow/stt_bank.py ``layout_walk``) is the model this is tested against (tests/rtlgen/test_stt_stream.py).
"""
from __future__ import annotations

import math

from amaranth import Array, Const, Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from archgen.dataflow.stt_command import sequencer_values
from archgen.dataflow.stt_phase import LaneProgram

__all__ = ["SttLaneSequencer"]


def _bits(v: int) -> int:
    return max(1, int(v).bit_length())


class SttLaneSequencer(wiring.Component):
    """``layout`` (a banked ``BankLayout``, dataflow/stt_bank.py): ``addr`` is the element's index in its bank
    (the box's in-bank base, kept by the walker with constant steps, plus the entry's constant) and ``bank``
    the entry's bank (a constant per lane and phase)."""

    def __init__(self, program: LaneProgram, layout=None, fields: dict | None = None, widths: dict | None = None):
        self.program = program
        self.layout = layout if layout is not None and not layout.copies else None
        self.fields = fields              # None: the program's values as constants
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
        if widths is not None:            # a run-time programmable build: the command fields' widths
            self.coord_bits, self.lin_bits, self.addr_bits = widths["coord"], widths["lin"], widths["addr"]
            self.trip_bits = widths["trip"]
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
            self.value_bits = _bits(max(v for vals in p.values for v in vals)) if widths is None else widths["value"]
            members["value"] = Out(data.ArrayLayout(unsigned(self.value_bits), p.lanes))
        super().__init__(members)

    def _values(self) -> dict:
        """The problem-dependent values (``fields``, or the program's as constants), by field name."""
        if self.fields is not None:
            return self.fields
        p = self.program
        v = sequencer_values(p, self.layout)
        out = {f"trips{lv}": Const(t) for lv, t in enumerate(v["trips"])}
        out["stretch"] = Const(p.stretch)
        for lv, (adv, lin) in enumerate(zip(v["adv"], v["advlin"])):
            out[f"advlin{lv}"] = Const(lin)
            out.update({f"adv{lv}_{j}": Const(a) for j, a in enumerate(adv)})
        out.update({f"ext{j}": Const(e) for j, e in enumerate(v["ext"])})
        if any(v["start"]):             # a block region with a halo: box 0's origin (else 0, as before)
            out.update({f"start{j}": Const(a) for j, a in enumerate(v["start"])})
            out["startlin"] = Const(v["startlin"])
        for k, (off, masks) in enumerate(zip(v["off"], v["masks"])):
            out[f"off{k}"], out[f"masks{k}"] = Const(off), Const(masks, 1 << len(p.trips))
            for mk, val in enumerate(v["vals"][k] if p.is_tag else ()):
                out[f"val{k}_{mk}"] = Const(val, self.value_bits)
        return out

    def elaborate(self, platform):
        m = Module()
        p = self.program
        F = self._values()
        const = self.fields is None
        levels, ndim = len(p.trips), len(p.extent)
        cs, ls = signed(self.coord_bits), signed(self.lin_bits)
        phase = Signal(range(max(p.period, 2)), name="phase")
        group = Signal(32, name="group")
        counters = [Signal(range(max(t, 2)) if const else self.trip_bits, name=f"level{lv}")
                    for lv, t in enumerate(p.trips)]
        last = [counters[lv] == F[f"trips{lv}"] - 1 for lv in range(levels)]
        origin = [Signal(cs, name=f"origin{j}") for j in range(ndim)]
        lin = Signal(ls, name="origin_lin")
        exists = Signal(init=1, name="exists")
        # a box every ``stretch`` box groups (the others empty); 1 in a per-layer build
        staggered = not const or p.stretch > 1
        rep_ = Signal(self.trip_bits if not const else range(p.stretch), name="stretch_count") if staggered else None
        real = rep_ == 0 if staggered else 1
        m.d.comb += self.slot_box.eq(group)

        # the walker's box (entry 0 of the shift register): mask and first-visit bit from the counters
        mask0 = Signal(max(levels, 1), name="edge_mask")
        first0 = Signal(name="first_visit")
        m.d.comb += [mask0[levels - 1 - lv].eq(last[lv] if const else last[lv] & (F[f"trips{lv}"] != 1))
                     for lv in range(levels) if not const or p.trips[lv] > 1]
        firsts = [counters[lv] == 0 for lv in range(levels) if p.revisit[lv]]
        f = 1
        for c in firsts:
            f = f & c
        m.d.comb += first0.eq(f & ~self.carry)
        entry = [(exists & real if staggered else exists, mask0, first0, origin, lin)]
        for d in range(1, p.depth):
            entry.append((Signal(name=f"box{d}_exists"), Signal(max(levels, 1), name=f"box{d}_mask"),
                          Signal(name=f"box{d}_first"), [Signal(cs, name=f"box{d}_origin{j}") for j in range(ndim)],
                          Signal(ls, name=f"box{d}_lin")))

        with m.If(self.start):
            m.d.sync += [phase.eq(0), group.eq(0), exists.eq(1), lin.eq(F.get("startlin", 0))]
            if staggered:
                m.d.sync += rep_.eq(0)
            m.d.sync += [c.eq(0) for c in counters] + [o.eq(F.get(f"start{j}", 0)) for j, o in enumerate(origin)]
            m.d.sync += [e[0].eq(0) for e in entry[1:]]
        with m.Elif(self.fire):
            with m.If(phase == p.period - 1):
                m.d.sync += [phase.eq(0), group.eq(group + 1)]
                for d in range(p.depth - 1, 0, -1):       # shift: box d takes box d - 1
                    src, dst = entry[d - 1], entry[d]
                    m.d.sync += [dst[0].eq(src[0]), dst[1].eq(src[1]), dst[2].eq(src[2]), dst[4].eq(src[4])]
                    m.d.sync += [a.eq(b) for a, b in zip(dst[3], src[3])]
                if not staggered:
                    self._step_walker(m, F, counters, last, origin, lin, exists)
                else:
                    stretch = F["stretch"]
                    with m.If(rep_ == stretch - 1):     # the next group holds a box: the walker steps
                        m.d.sync += rep_.eq(0)
                        self._step_walker(m, F, counters, last, origin, lin, exists)
                    with m.Else():
                        m.d.sync += rep_.eq(rep_ + 1)
            with m.Else():
                m.d.sync += phase.eq(phase + 1)

        self._lane_outputs(m, F, const, entry, phase, lin)
        return m

    def _lane_outputs(self, m, F, const, entry, phase, lin) -> None:
        """Per lane, a case on the phase: the entry's box (delta), its address, bank and valid bit."""
        p = self.program
        levels, ndim = len(p.trips), len(p.extent)
        table = {}
        for k, ((lane, ph), (delta, off, masks)) in enumerate(p.entries):
            table.setdefault(lane, {})[ph] = (k, delta, off, masks)
        banks = sequencer_values(p, self.layout)["bank"] if self.layout is not None else None
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
                for ph, (k, delta, off, masks) in sorted(table.get(lane, {}).items()):
                    with m.Case(ph):
                        ex, mask, first, org, base = entry[delta]
                        bits = F[f"masks{k}"]
                        if p.is_tag:
                            vals = [F[f"val{k}_{mk}"] for mk in range(1 << levels)]
                            m.d.comb += [self.valid[lane].eq(ex & bits.bit_select(mask, 1)),
                                         self.value[lane].eq(Array(vals)[mask])]
                            continue
                        coords = [org[j] + off[j] for j in range(ndim)]
                        every = const and masks == (1 << (1 << levels)) - 1     # real under every edge mask
                        ok = ex if every else ex & bits.bit_select(mask, 1)
                        if p.is_psum:
                            ok = ok & ~first
                        for j in range(ndim):
                            ok = ok & (coords[j] >= 0) & (coords[j] < F[f"ext{j}"])
                        m.d.comb += [self.valid[lane].eq(ok), self.addr[lane].eq(base + F[f"off{k}"])]
                        if self.layout is not None:
                            m.d.comb += self.bank[lane].eq(banks[k])

    def _step_walker(self, m, F, counters, last, origin, lin, exists):
        """The next box: the innermost level not at its last box advances (adding the level's origin change,
        every inner level wrapping to 0); past the last box nothing exists any more."""
        levels = len(self.program.trips)
        ndim = len(origin)
        for lv in reversed(range(levels)):
            with (m.If if lv == levels - 1 else m.Elif)(~last[lv]):
                m.d.sync += counters[lv].eq(counters[lv] + 1)
                m.d.sync += [c.eq(0) for c in counters[lv + 1:]]
                m.d.sync += [o.eq(o + F[f"adv{lv}_{j}"]) for j, o in zip(range(ndim), origin)]
                m.d.sync += lin.eq(lin + F[f"advlin{lv}"])
        with m.Else():
            m.d.sync += [c.eq(0) for c in counters] + [exists.eq(0)]
