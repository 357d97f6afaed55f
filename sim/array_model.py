"""SimPy cycle model of a generated array, built from the same FU graph and schedule as the RTL.

Events are tiles and transfers, not cycles. With an ideal DRAM side (``bytes_per_cycle=None``) the
array never waits and the model reproduces the RTL's cycle count exactly; that is the contract the
Verilator regression checks. With a finite DRAM bandwidth a DMA process fetches each tile's operands
into a double-buffered on-chip buffer ahead of the array and writes results back, sharing the DRAM
channel, so layers become memory-bound when their bytes per MAC are high. (The buffer is part of the
model's memory system; the generated RTL exposes the streams it would feed.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import simpy

from archgen.dataflow.host import stream_ports
from archgen.dataflow.interconnect import FUGraph
from archgen.dataflow.schedule import ArraySchedule, array_schedule
from archgen.mappings.tiling import TileMapping

__all__ = ["ArrayModelResult", "simulate_array", "tile_traffic"]


@dataclass(frozen=True)
class ArrayModelResult:
    total_cycles: int
    tile_cycles: tuple[int, ...]          # array cycles of each tile (TILE + LOAD + COMPUTE + DRAIN)
    compute_cycles: int                   # cycles the array spent in tiles (the rest is waiting on DRAM)
    macs: int                             # useful MACs of the problem
    mac_slots: int                        # MAC slots spent, padding included
    n_fus: int
    elements: dict = field(default_factory=dict)     # stream port -> elements moved
    bytes_moved: dict = field(default_factory=dict)  # stream port -> bytes moved
    stall_cycles: int = 0

    @property
    def utilisation(self) -> float:
        return self.macs / (self.total_cycles * self.n_fus) if self.total_cycles else 0.0


def tile_traffic(fg: FUGraph, sch: ArraySchedule, steps: int, first: bool) -> dict[str, int]:
    """Elements on each stream port for one tile (what the host program sends and receives)."""
    out = {}
    for port, (operand, lanes, bits) in stream_ports(fg).items():
        plan = fg.plan(operand)
        if port.startswith("in_"):
            out[port] = lanes * (sch.rows if plan.role == "stationary" else steps)
        elif port.startswith("psum_"):
            out[port] = 0 if first else lanes * (sch.rows if sch.accumulate else steps)
        else:
            out[port] = lanes * (sch.rows if sch.accumulate else steps)
    return out


def simulate_array(fg: FUGraph, mapping: TileMapping, *, bytes_per_cycle: float | None = None,
                   schedule: ArraySchedule | None = None, buffers: int = 2) -> ArrayModelResult:
    sch = schedule or array_schedule(fg)
    steps = mapping.steps
    ports = stream_ports(fg)
    tiles = list(mapping.tiles())
    env = simpy.Environment()
    ready = simpy.Store(env)                       # tiles whose operands are on chip
    slots = simpy.Container(env, capacity=buffers, init=buffers)
    dram = simpy.Resource(env, capacity=1)
    tile_cycles: list[int] = []
    elements = {p: 0 for p in ports}
    stats = {"busy": 0, "end": 0}

    def transfer(nbytes: float):
        if bytes_per_cycle is None or nbytes == 0:
            return
        with dram.request() as req:
            yield req
            yield env.timeout(math.ceil(nbytes / bytes_per_cycle))

    def dma():
        for tile in tiles:
            yield slots.get(1)
            traffic = tile_traffic(fg, sch, steps, tile.first)
            nbytes = sum(n * ports[p][2] / 8 for p, n in traffic.items() if not p.startswith("out_"))
            yield from transfer(nbytes)
            yield ready.put((tile, traffic))

    def writeback(nbytes: float):
        yield from transfer(nbytes)

    def array():
        # the command handshake cycle
        yield env.timeout(1)
        for _ in tiles:
            tile, traffic = yield ready.get()
            cycles = sch.tile_cycles(steps, tile.first)
            yield env.timeout(cycles)
            stats["busy"] += cycles
            tile_cycles.append(cycles)
            slots.put(1)
            for p, n in traffic.items():
                elements[p] += n
            out_bytes = sum(n * ports[p][2] / 8 for p, n in traffic.items() if p.startswith("out_"))
            env.process(writeback(out_bytes))
        stats["end"] = env.now

    env.process(dma())
    done = env.process(array())
    env.run()
    total = int(max(env.now, stats["end"]))
    # the array's done rises after its last tile; trailing write-back keeps the layer busy
    bytes_moved = {p: elements[p] * ports[p][2] // 8 for p in ports}
    return ArrayModelResult(
        total_cycles=total, tile_cycles=tuple(tile_cycles), compute_cycles=stats["busy"] + 1,
        macs=mapping.macs, mac_slots=mapping.padded_macs, n_fus=fg.design.n_fus, elements=elements,
        bytes_moved=bytes_moved, stall_cycles=total - stats["busy"] - 1)
