"""An operand buffer of the memory system (docs/memory.md) as Amaranth memories.

``bytes`` split into ``banks`` banks of ``port_bytes``-wide words, two halves when double-buffered
(the half is the address's top bit). Each bank has one write port (the DMA side) and one synchronous
read port (the array side), the shape Yosys infers as block RAM (DP16KD on ECP5, checked by
tests/rtlgen/test_buffer.py). The address generators and the DMA data path that drive these ports are
not built yet (docs/memory.md, "Status").
"""
from __future__ import annotations

from amaranth import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from archgen.arch.errors import SpecError, problem
from archgen.arch.spec import BufferSpec

__all__ = ["OperandBuffer", "bank_geometry"]


def bank_geometry(buf: BufferSpec, lanes: int) -> tuple[int, int, int]:
    """(banks, words per bank, bits per word) of ``buf`` fed on ``lanes`` lanes."""
    banks = buf.banks or lanes
    if lanes % banks:
        raise SpecError([problem(f"memory.{buf.operand}.banks", f"must divide the {lanes} memory-fed lanes", banks)])
    words = buf.bytes // (banks * buf.port_bytes)
    if words < 1:
        raise SpecError([problem(f"memory.{buf.operand}.bytes", f"holds less than one {buf.port_bytes}-byte word per "
                                 f"bank for {banks} banks", buf.bytes)])
    return banks, words, 8 * buf.port_bytes


class OperandBuffer(wiring.Component):
    """Banked buffer: per bank a write port (``w_en``, ``w_addr``, ``w_data``) and a read port
    (``r_addr``; ``r_data`` one cycle later)."""

    def __init__(self, buf: BufferSpec, lanes: int):
        self.banks, self.words, self.bits = bank_geometry(buf, lanes)
        abits = max(1, (self.words - 1).bit_length())
        super().__init__({
            "w_en": In(self.banks), "w_addr": In(unsigned(abits)).array(self.banks),
            "w_data": In(unsigned(self.bits)).array(self.banks),
            "r_addr": In(unsigned(abits)).array(self.banks), "r_data": Out(unsigned(self.bits)).array(self.banks),
        })

    def elaborate(self, platform):
        m = Module()
        for b in range(self.banks):
            mem = Memory(shape=unsigned(self.bits), depth=self.words, init=[])
            m.submodules[f"bank{b}"] = mem
            wp = mem.write_port()
            rp = mem.read_port()
            m.d.comb += [wp.en.eq(self.w_en[b]), wp.addr.eq(self.w_addr[b]), wp.data.eq(self.w_data[b]),
                         rp.addr.eq(self.r_addr[b]), self.r_data[b].eq(rp.data)]
        return m


class CyclicBanks:
    """A buffer whose element position p lives in bank ``p mod banks`` at word ``p div banks`` (banks a
    power of two), one element per word: any run of up to ``banks`` consecutive positions (the lanes of
    one beat, the elements of one DRAM word) touches each bank at most once, so it moves in one cycle
    through one port per bank. Built inside the caller's module (rtlgen/layer_top.py).

    Each bank is ``copies`` Amaranth memories holding the same words: the one writer writes every copy,
    and each reader (named by ``port``) reads its own copy through one synchronous (registered) read
    port. So every memory has one write and one read port, the simple dual-port shape that Yosys maps
    to block RAM (DP16KD on ECP5, a true dual-port 18 Kbit RAM); the output buffer, read by the array's
    partial-sum port and by the write-back, is two copies instead of one memory with two read ports."""

    def __init__(self, m: Module, name: str, banks: int, depth: int, bits: int, copies: int = 1):
        assert banks >= 2 and banks & (banks - 1) == 0
        self.banks, self.depth, self.bits, self.name = banks, depth, bits, name
        self.k = banks.bit_length() - 1
        self.copies = [[] for _ in range(copies)]
        for c, mems in enumerate(self.copies):
            for b in range(banks):
                mem = Memory(shape=unsigned(bits), depth=depth, init=[])
                m.submodules[f"{name}_bank{b}" if copies == 1 else f"{name}_c{c}_bank{b}"] = mem
                mems.append(mem)
        self.wports = None
        self.readers: dict[str, int] = {}

    def _bank_addr(self, pos, b):
        """Word of bank b holding the first position >= pos that maps to b."""
        from amaranth import Mux
        lo = pos[:self.k]
        return (pos >> self.k) + Mux(lo > b, 1, 0)

    def _lane_of(self, pos, b):
        """Which element of a run starting at pos bank b holds: (b - pos) mod banks."""
        from amaranth import Const
        return (Const(b, self.k + 1) - pos[:self.k])[:self.k]

    def _write(self, m: Module, pos, data, en):
        from amaranth import Array, Signal
        assert self.wports is None, "one writer per buffer"
        self.wports = [[] for _ in self.copies]
        n = len(data)
        for b in range(self.banks):
            lane = self._lane_of(pos, b)
            addr = Signal(len(self._bank_addr(pos, b)), name=f"{self.name}_w{b}_addr")
            dsel = Signal(self.bits, name=f"{self.name}_w{b}_data")
            esel = Signal(name=f"{self.name}_w{b}_en")
            m.d.comb += [addr.eq(self._bank_addr(pos, b)), dsel.eq(Array(list(data) + [0] * (self.banks - n))[lane]),
                         esel.eq(Array(list(en) + [0] * (self.banks - n))[lane])]
            for c, mems in enumerate(self.copies):
                wp = mems[b].write_port()
                self.wports[c].append(wp)
                m.d.comb += [wp.addr.eq(addr), wp.data.eq(dsel), wp.en.eq(esel)]

    write_group = _write
    write_lanes = _write

    def _scattered(self, m: Module, name: str, pos, offs, live=None):
        """Per lane its position ``pos + offs[l]``, and per bank b the one live lane whose position falls in it (a
        hit per lane and bank; memctl proves at most one live lane per bank, ``_bank_clash``: ``live`` per lane, a
        lane never in bounds in the block taking no bank) and that lane's word."""
        from amaranth import Signal
        at = []
        for l, off in enumerate(offs):
            p = Signal(len(pos) + 1, name=f"{self.name}_{name}_pos{l}")
            m.d.comb += p.eq(pos + off)
            at.append(p)
        live = live or [1] * len(at)
        hits = [[(p[:self.k] == b) & ok for p, ok in zip(at, live)] for b in range(self.banks)]
        addrs = []
        for b in range(self.banks):
            a = Signal(len(at[0]) - self.k, name=f"{self.name}_{name}_b{b}_addr")
            m.d.comb += a.eq(_one_hot(hits[b], [p >> self.k for p in at]))
            addrs.append(a)
        return at, hits, addrs

    def write_scattered(self, m: Module, pos, offs, data, en, live=None):
        """Lane l's element at position ``pos + offs[l]``, each lane in its own bank (the lanes of a skewed output
        on a diagonal of the box, memctl ``PortWalk.scatter``): one write port per bank (every copy), a crossbar
        choosing the lane per bank (``live``: see :meth:`_scattered`)."""
        assert self.wports is None, "one writer per buffer"
        self.wports = [[] for _ in self.copies]
        _at, hits, addrs = self._scattered(m, "w", pos, offs, live)
        for b in range(self.banks):
            for c, mems in enumerate(self.copies):
                wp = mems[b].write_port()
                self.wports[c].append(wp)
                m.d.comb += [wp.addr.eq(addrs[b]), wp.data.eq(_one_hot(hits[b], data)),
                             wp.en.eq(_one_hot(hits[b], en))]

    def read_scattered(self, m: Module, pos, offs, transparent: bool = False, port: str = "read", live=None):
        """Lane l's element at position ``pos + offs[l]`` (each lane in its own bank), one cycle after ``pos``,
        through reader ``port``'s copy: per bank the address of the lane in it, per lane its bank's word."""
        from amaranth import Array, Signal
        assert port not in self.readers, f"reader {port!r} of {self.name} already built"
        c = self.readers[port] = len(self.readers)
        assert c < len(self.copies), f"{self.name}: more readers than copies ({len(self.copies)})"
        at, _hits, addrs = self._scattered(m, f"r{port}", pos, offs, live)
        datas = []
        for b, mem in enumerate(self.copies[c]):
            tf = (self.wports[c][b],) if transparent and self.wports else ()
            rp = mem.read_port(transparent_for=tf)
            m.d.comb += rp.addr.eq(addrs[b])
            datas.append(rp.data)
        out = []
        for l, p in enumerate(at):
            bank = Signal(self.k, name=f"{self.name}_{port}_lane{l}_bank")
            m.d.sync += bank.eq(p[:self.k])
            out.append(Array(datas)[bank])
        return out


    def _read(self, m: Module, pos, n: int, transparent: bool = False, port: str = "read"):
        """Elements pos .. pos+n-1 (n <= banks), one cycle after ``pos`` is presented, through the copy
        of reader ``port`` (each reader its own copy)."""
        from amaranth import Array, Signal
        assert port not in self.readers, f"reader {port!r} of {self.name} already built"
        c = self.readers[port] = len(self.readers)
        assert c < len(self.copies), f"{self.name}: more readers than copies ({len(self.copies)})"
        datas = []
        for b, mem in enumerate(self.copies[c]):
            tf = (self.wports[c][b],) if transparent and self.wports else ()
            rp = mem.read_port(transparent_for=tf)
            m.d.comb += rp.addr.eq(self._bank_addr(pos, b))
            datas.append(rp.data)
        lo = Signal(self.k, name=f"{self.name}_{port}_lo")
        m.d.sync += lo.eq(pos[:self.k])
        arr = Array(datas)
        return [arr[(lo + l)[:self.k]] for l in range(n)]

    read_group = _read
    read_lanes = _read


def _one_hot(sel, values):
    """The value whose select is high (at most one is), 0 if none: an OR of ANDs."""
    from amaranth import Mux
    out = 0
    for s, v in zip(sel, values):
        out = out | Mux(s, v, 0)
    return out
