"""SpAtten's zero eliminator: compacts the kept lanes of a vector to the front, in order.

Structure (SPATTEN.md, "Zero eliminator"): a prefix sum gives every lane the number of dropped lanes
before it (its *shift*); then log2(N) stages move a lane left by 2^j at stage j when bit j of its shift
is set. Stages go from the least significant bit up, which is what makes the network collision-free:
after stage j, kept lane i sits at ``i - (shift_i mod 2^(j+1))`` and for kept lanes i < j these
positions stay strictly increasing (j - i >= 1 + shift_j - shift_i). Purely combinational.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ZeroEliminator", "compact_reference", "shifter_stages"]


def shifter_stages(lanes: int) -> int:
    """Stages of the log shifter for ``lanes`` lanes: ceil(log2(lanes))."""
    return max(0, (lanes - 1).bit_length())


def compact_reference(values, keep):
    """What the eliminator computes: kept values in order, then the count (for tests and models)."""
    kept = [v for v, k in zip(values, keep) if k]
    return kept, len(kept)


def _inclusive_prefix_counts(m, bits, name):
    """Signals c[i] = bits[0] + ... + bits[i], built as a Kogge-Stone prefix network (log2 levels)."""
    n = len(bits)
    level = []
    for i, b in enumerate(bits):
        s = Signal(range(n + 1), name=f"{name}_l0_{i}")
        m.d.comb += s.eq(b)
        level.append(s)
    dist, j = 1, 0
    while dist < n:
        j += 1
        nxt = []
        for i in range(n):
            s = Signal(range(n + 1), name=f"{name}_l{j}_{i}")
            m.d.comb += s.eq(level[i] + level[i - dist] if i >= dist else level[i])
            nxt.append(s)
        level, dist = nxt, dist * 2
    return level


class ZeroEliminator(wiring.Component):
    """Combinational compaction of ``lanes`` lanes of ``shape``.

    Ports: ``i_data`` (array of lanes), ``i_keep`` (one bit per lane) -> ``o_data`` (kept lanes moved to
    lanes 0..count-1, in order; other lanes are don't-care), ``o_keep`` (the first ``o_count`` bits set),
    ``o_count``.
    """

    def __init__(self, lanes: int, shape):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"ZeroEliminator lane count must be a positive integer, not {lanes!r}")
        self.lanes = lanes
        self.shape = shape
        super().__init__({
            "i_data": In(data.ArrayLayout(shape, lanes)),
            "i_keep": In(lanes),
            "o_data": Out(data.ArrayLayout(shape, lanes)),
            "o_keep": Out(lanes),
            "o_count": Out(range(lanes + 1)),
        })

    @property
    def stages(self) -> int:
        return shifter_stages(self.lanes)

    def elaborate(self, platform):
        m = Module()
        n = self.lanes
        shift_bits = max(1, self.stages)
        # Prefix sum of dropped lanes: shift[i] = number of lanes < i whose keep bit is 0. A parallel
        # prefix (Kogge-Stone: log2(n) levels of adders) rather than a ripple of n - 1 adders, which
        # was the critical path of the top-k packers on ECP5.
        shift = [Signal(range(n + 1), name=f"shift{i}") for i in range(n)]
        incl = _inclusive_prefix_counts(m, [~self.i_keep[i] for i in range(n)], "drop")
        m.d.comb += shift[0].eq(0)
        for i in range(1, n):
            m.d.comb += shift[i].eq(incl[i - 1])
        valid = [self.i_keep[i] for i in range(n)]
        value = [self.i_data[i] for i in range(n)]
        amount = [shift[i][:shift_bits] for i in range(n)]
        for j in range(self.stages):
            step = 1 << j
            nv, nd, na = [], [], []
            for p in range(n):
                stay = Signal(name=f"s{j}_stay{p}")
                m.d.comb += stay.eq(valid[p] & ~amount[p][j])
                if p + step < n:
                    arrive = Signal(name=f"s{j}_arrive{p}")
                    m.d.comb += arrive.eq(valid[p + step] & amount[p + step][j])
                else:
                    arrive = None
                v = Signal(name=f"s{j}_v{p}")
                d = Signal(self.shape, name=f"s{j}_d{p}")
                a = Signal(shift_bits, name=f"s{j}_a{p}")
                if arrive is None:
                    m.d.comb += [v.eq(stay), d.eq(value[p]), a.eq(amount[p])]
                else:
                    m.d.comb += [
                        v.eq(stay | arrive),
                        d.eq(Mux(arrive, value[p + step], value[p])),
                        a.eq(Mux(arrive, amount[p + step], amount[p])),
                    ]
                nv.append(v)
                nd.append(d)
                na.append(a)
            valid, value, amount = nv, nd, na
        count = Signal(range(n + 1))
        m.d.comb += count.eq(n - incl[n - 1])
        m.d.comb += self.o_count.eq(count)
        for p in range(n):
            m.d.comb += [self.o_data[p].eq(value[p]), self.o_keep[p].eq(valid[p])]
        return m
