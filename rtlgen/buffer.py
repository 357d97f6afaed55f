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
