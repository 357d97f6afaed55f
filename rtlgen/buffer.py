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
    through one port per bank. Built inside the caller's module (rtlgen/layer_top.py); each bank is an
    Amaranth memory with one write port and synchronous read ports."""

    def __init__(self, m: Module, name: str, banks: int, depth: int, bits: int):
        assert banks >= 2 and banks & (banks - 1) == 0
        self.banks, self.depth, self.bits, self.name = banks, depth, bits, name
        self.k = banks.bit_length() - 1
        self.mems = []
        for b in range(banks):
            mem = Memory(shape=unsigned(bits), depth=depth, init=[])
            m.submodules[f"{name}_bank{b}"] = mem
            self.mems.append(mem)
        self.wports = None

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
        from amaranth import Array
        assert self.wports is None, "one writer per buffer"
        self.wports = []
        n = len(data)
        for b, mem in enumerate(self.mems):
            wp = mem.write_port()
            self.wports.append(wp)
            lane = self._lane_of(pos, b)
            dsel = Array(list(data) + [0] * (self.banks - n))[lane]
            esel = Array(list(en) + [0] * (self.banks - n))[lane]
            m.d.comb += [wp.addr.eq(self._bank_addr(pos, b)), wp.data.eq(dsel), wp.en.eq(esel)]

    write_group = _write
    write_lanes = _write

    def _read(self, m: Module, pos, n: int, transparent: bool = False):
        """Elements pos .. pos+n-1 (n <= banks), one cycle after ``pos`` is presented."""
        from amaranth import Array, Signal
        datas = []
        for b, mem in enumerate(self.mems):
            tf = (self.wports[b],) if transparent and self.wports else ()
            rp = mem.read_port(transparent_for=tf)
            m.d.comb += rp.addr.eq(self._bank_addr(pos, b))
            datas.append(rp.data)
        lo = Signal(self.k, name=f"{self.name}_rd_lo")
        m.d.sync += lo.eq(pos[:self.k])
        arr = Array(datas)
        return [arr[(lo + l)[:self.k]] for l in range(n)]

    read_group = _read
    read_lanes = _read
