"""SimPy cycle model of a generated array, built from the same FU graph and schedule as the RTL.

Events are tiles and transfers, not cycles. The array's three processes (loader, issuer, drain; see
dataflow/schedule.py) are SimPy processes that wait on each other exactly as the RTL's handshakes do,
so with an ideal DRAM side (``bytes_per_cycle=None``) the model reproduces the RTL's cycle count; the
Verilator regression checks that. With a finite DRAM bandwidth a DMA process fetches each tile's
operands into a double-buffered on-chip buffer ahead of the array and writes results back on the same
channel, so layers become memory-bound when their bytes per MAC are high. (That buffer belongs to the
model's memory system; the generated RTL exposes the streams it would feed.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import simpy

from archgen.dataflow.compile import CompiledArray
from archgen.dataflow.ir import PortRole, Role
from archgen.mappings.tiling import TileMapping

__all__ = ["ArrayModelResult", "simulate_array", "tile_traffic"]


@dataclass(frozen=True)
class ArrayModelResult:
    total_cycles: int
    tile_cycles: tuple[int, ...]          # cycles between consecutive tiles' first steps (last: to done)
    macs: int                             # useful MACs of the problem
    mac_slots: int                        # MAC slots spent, padding included
    n_fus: int
    issue_cycles: int                     # cycles in which the issuer sent a step
    elements: dict = field(default_factory=dict)     # stream port -> elements moved
    bytes_moved: dict = field(default_factory=dict)  # stream port -> bytes moved
    dram_wait_cycles: int = 0             # cycles the issuer or loader waited on DRAM

    @property
    def utilisation(self) -> float:
        return self.macs / (self.total_cycles * self.n_fus) if self.total_cycles else 0.0

    @property
    def stall_cycles(self) -> int:
        return self.dram_wait_cycles


def tile_traffic(compiled: CompiledArray, steps: int, first: bool) -> dict[str, int]:
    """Elements on each stream port for one tile (what the host program sends and receives)."""
    sch, fg = compiled.schedule, compiled.fu_graph
    out = {}
    for port in compiled.stream_ports:
        if port.role is PortRole.INPUT:
            beats = sch.rows if fg.plan(port.operand).role == Role.STATIONARY else steps
        elif port.role is PortRole.PSUM:
            beats = 0 if first else (sch.rows if sch.accumulate else steps)
        else:
            beats = sch.rows if sch.accumulate else steps
        out[port.name] = port.lanes * beats
    return out


class _Flag:
    """A level that processes can wait on (SimPy events fire once; this re-arms)."""

    def __init__(self, env: simpy.Environment, value: bool):
        self.env, self.value, self._waiters = env, value, []

    def set(self, value: bool):
        self.value = value
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if w[0] == value:
                w[1].succeed()
            else:
                self._waiters.append(w)

    def wait(self, value: bool = True):
        ev = self.env.event()
        if self.value == value:
            ev.succeed()
        else:
            self._waiters.append((value, ev))
        return ev


def simulate_array(compiled: CompiledArray, mapping: TileMapping, *, bytes_per_cycle: float | None = None,
                   buffers: int = 2) -> ArrayModelResult:
    """Cycles of one tiled problem on the compiled array (its schedule carries the pipelining)."""
    sch = compiled.schedule
    steps = mapping.steps
    rows = sch.rows
    ports = {p.name: p for p in compiled.stream_ports}
    outgoing = {p.name for p in compiled.stream_ports if p.role is PortRole.OUTPUT}
    tiles = list(mapping.tiles())
    n = len(tiles)
    env = simpy.Environment()
    dram = simpy.Resource(env, capacity=1)
    slots = simpy.Container(env, capacity=buffers, init=buffers)
    fetched = [env.event() for _ in tiles]        # tile's operands are in the on-chip buffer
    loaded = [env.event() for _ in tiles]         # shadow registers hold the tile's stationary data
    drained = [env.event() for _ in tiles]        # the tile's results have left the array
    shadow_free = _Flag(env, True)
    issue_done = env.event()
    stats = {"issue": 0, "dram_wait": 0, "firsts": []}
    elements = {p: 0 for p in ports}
    traffic = [tile_traffic(compiled, steps, t.first) for t in tiles]

    def transfer(nbytes: float):
        if bytes_per_cycle is None or nbytes == 0:
            return
        with dram.request() as req:
            yield req
            yield env.timeout(math.ceil(nbytes / bytes_per_cycle))

    def dma():
        for k in range(n):
            yield slots.get(1)
            nbytes = sum(v * ports[p].width / 8 for p, v in traffic[k].items() if p not in outgoing)
            yield from transfer(nbytes)
            fetched[k].succeed()

    def wait_fetched(k):
        if not fetched[k].triggered:
            t0 = env.now
            yield fetched[k]
            stats["dram_wait"] += env.now - t0

    def loader():
        yield env.timeout(1)                                   # running from cycle 1
        for k, tile in enumerate(tiles):
            if not sch.needs_load(tile.first):
                yield env.timeout(1)                           # skipping a tile takes its cycle
                continue
            yield from wait_fetched(k)
            yield shadow_free.wait(True)
            shadow_free.set(False)
            yield env.timeout(rows)
            loaded[k].succeed()

    def issuer():
        yield env.timeout(1)
        for k, tile in enumerate(tiles):
            yield from wait_fetched(k)
            needs = sch.has_loader and sch.needs_load(tile.first)
            if needs:
                yield loaded[k]
            if sch.accumulate and steps == 1 and k > 0:
                yield drained[k - 1]
            stats["firsts"].append(env.now)
            if needs:
                env.process(free_shadow_after(sch.swap_skew + 1))
            if steps > 1:
                yield env.timeout(steps - 1)
                if sch.accumulate and k > 0 and not drained[k - 1].triggered:
                    yield drained[k - 1]
            last_issue = env.now
            yield env.timeout(1)
            stats["issue"] += steps
            slots.put(1)
            for p, v in traffic[k].items():
                elements[p] += v
            if sch.accumulate:
                env.process(commit_then_drain(k, last_issue + sch.commit_skew + 1))
            else:
                env.process(writeback(k))
        stats["last_issue"] = last_issue
        issue_done.succeed()

    def free_shadow_after(delay):
        yield env.timeout(delay)
        shadow_free.set(True)


    def commit_then_drain(k, commit_visible):
        yield env.timeout(commit_visible - env.now)
        if k > 0:
            yield drained[k - 1]
        yield env.timeout(rows)
        drained[k].succeed()
        env.process(writeback(k))

    written = [env.event() for _ in tiles]

    def writeback(k):
        nbytes = sum(v * ports[p].width / 8 for p, v in traffic[k].items() if p in outgoing)
        yield from transfer(nbytes)
        written[k].succeed()

    def finish():
        yield issue_done
        if sch.accumulate:
            yield drained[n - 1]
            stats["done"] = env.now
        else:
            yield env.timeout(stats["last_issue"] + sch.out_latency + 1 - env.now)
            stats["done"] = env.now
        # the layer ends when its last results are in DRAM (instantly on an ideal DRAM side)
        yield simpy.AllOf(env, written)
        stats["done"] = max(stats["done"], env.now)

    env.process(dma())
    if sch.has_loader:
        env.process(loader())
    env.process(issuer())
    env.process(finish())
    env.run()
    total = int(stats["done"])
    firsts = stats["firsts"] + [total]
    bytes_moved = {p: elements[p] * ports[p].width // 8 for p in ports}
    return ArrayModelResult(
        total_cycles=total, tile_cycles=tuple(b - a for a, b in zip(firsts, firsts[1:])), macs=mapping.macs,
        mac_slots=mapping.padded_macs, n_fus=compiled.design.n_fus, issue_cycles=stats["issue"], elements=elements,
        bytes_moved=bytes_moved, dram_wait_cycles=int(stats["dram_wait"]))
