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

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import simpy

from archgen.dataflow.compile import CompiledArray, compile_array
from archgen.dataflow.control import (Flag, accumulator_drain_process, issuer_process, loader_process,
                                      stream_drain_process)
from archgen.dataflow.interconnect import reduction_runs_of
from archgen.dataflow.ir import PortRole, Role
from archgen.mappings.tiling import TileMapping, map_problem

__all__ = ["ArrayModelResult", "load_gaps", "simulate_array", "simulate_stt_array", "tile_traffic"]


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


def tile_traffic(compiled: CompiledArray, steps: int, first: bool, loads: bool = True) -> dict[str, int]:
    """Elements on each stream port for one tile (what the host program sends and receives); ``loads``: the
    tile loads its stationary inputs (``ArraySchedule.loads``; not when it keeps the previous tile's)."""
    sch, fg = compiled.schedule, compiled.fu_graph
    out = {}
    for port in compiled.stream_ports:
        if port.role is PortRole.INPUT:
            beats = (sch.rows if loads else 0) if fg.plan(port.operand).role == Role.STATIONARY else steps
        elif port.role is PortRole.PSUM:
            beats = 0 if first else (sch.drain_rows if sch.accumulate else steps)
        else:
            beats = sch.drain_rows if sch.accumulate else steps
        out[port.name] = port.lanes * beats
    return out


class _MemorySide:
    """The DRAM side of the model: a DMA process fills a ``buffers``-deep on-chip buffer tile by tile ahead
    of the array, results are written back on the same channel (one transfer at a time)."""

    def __init__(self, env, tile_bytes: list[dict], outgoing: set, bytes_per_cycle: float | None, buffers: int):
        self.env, self.tile_bytes, self.outgoing, self.bytes_per_cycle = env, tile_bytes, outgoing, bytes_per_cycle
        self.dram = simpy.Resource(env, capacity=1)
        self.slots = simpy.Container(env, capacity=buffers, init=buffers)
        self.fetched = [env.event() for _ in tile_bytes]     # the tile's operands are in the on-chip buffer
        self.written = [env.event() for _ in tile_bytes]     # the tile's results reached DRAM
        self.wait_cycles = 0                                 # cycles the issuer or loader waited on DRAM

    def _transfer(self, nbytes: float):
        if self.bytes_per_cycle is None or nbytes == 0:
            return
        with self.dram.request() as req:
            yield req
            yield self.env.timeout(math.ceil(nbytes / self.bytes_per_cycle))

    def dma(self):
        for k, nbytes in enumerate(self.tile_bytes):
            yield self.slots.get(1)
            yield from self._transfer(sum(v for p, v in nbytes.items() if p not in self.outgoing))
            self.fetched[k].succeed()

    def wait_fetched(self, k: int):
        if not self.fetched[k].triggered:
            t0 = self.env.now
            yield self.fetched[k]
            self.wait_cycles += self.env.now - t0

    def writeback(self, k: int):
        yield from self._transfer(sum(v for p, v in self.tile_bytes[k].items() if p in self.outgoing))
        self.written[k].succeed()


def simulate_array(compiled: CompiledArray, mapping: TileMapping, *, bytes_per_cycle: float | None = None,
                   buffers: int = 2, psum_skew: int = 0) -> ArrayModelResult:
    """Cycles of one tiled problem on the compiled array (its schedule carries the pipelining). ``psum_skew``: the
    beats a de-skewing layer core writes a partial sum after reading it (memctl ``psum_read_skew``; 0 at the array
    level, where the host feeds each lane its own element).

    The array's loader, issuer and drain are the model halves of dataflow/control.py; this function adds
    the memory side (a DMA process and write-backs on one DRAM channel) and wires them together."""
    if not isinstance(compiled, CompiledArray):        # a skewed stt map: ``mapping`` is its SttTiling
        return simulate_stt_array(compiled, mapping, bytes_per_cycle=bytes_per_cycle, buffers=buffers)
    sch = compiled.schedule
    steps = mapping.steps
    ports = {p.name: p for p in compiled.stream_ports}
    outgoing = {p.name for p in compiled.stream_ports if p.role is PortRole.OUTPUT}
    tiles = list(mapping.tiles())
    n = len(tiles)
    env = simpy.Environment()
    traffic = [tile_traffic(compiled, steps, t.first, sch.loads(t)) for t in tiles]
    mem = _MemorySide(env, [{p: v * ports[p].width / 8 for p, v in tr.items()} for tr in traffic], outgoing,
                      bytes_per_cycle, buffers)
    loaded = [env.event() for _ in tiles]         # shadow registers hold the tile's stationary data
    drained = [env.event() for _ in tiles]        # the tile's results have left the array
    shadow_free = Flag(env, True)
    stats = {"issue": 0, "firsts": []}
    elements = {p: 0 for p in ports}

    def free_shadow_after(delay):
        yield env.timeout(delay)
        shadow_free.set(True)

    def on_first(k, needs):
        stats["firsts"].append(env.now)
        if needs:
            env.process(free_shadow_after(sch.swap_skew + 1))

    def on_tile(k, last_issue):
        stats["issue"] += steps
        mem.slots.put(1)
        for p, v in traffic[k].items():
            elements[p] += v
        if sch.accumulate:
            env.process(accumulator_drain_process(env, sch, k, last_issue, drained,
                                                  lambda j: env.process(mem.writeback(j))))
        else:
            env.process(mem.writeback(k))

    def finish(issuer):
        last_issue = yield issuer
        if sch.accumulate:
            yield drained[n - 1]
        else:
            yield from stream_drain_process(env, sch, last_issue)
        stats["done"] = env.now
        # the layer ends when its last results are in DRAM (instantly on an ideal DRAM side)
        yield simpy.AllOf(env, mem.written)
        stats["done"] = max(stats["done"], env.now)

    env.process(mem.dma())
    if sch.has_loader:
        env.process(loader_process(env, sch, tiles, shadow_free, loaded, mem.wait_fetched,
                                   drained if sch.accumulate and sch.psum_in else None))
    env.process(finish(env.process(issuer_process(env, sch, steps, tiles, loaded, drained, mem.wait_fetched,
                                                  on_first, on_tile, mapping.psum_tile_distance(), psum_skew))))
    env.run()
    total = int(stats["done"])
    firsts = stats["firsts"] + [total]
    return ArrayModelResult(
        total_cycles=total, tile_cycles=tuple(b - a for a, b in zip(firsts, firsts[1:])), macs=mapping.macs,
        mac_slots=mapping.padded_macs, n_fus=compiled.design.n_fus, issue_cycles=stats["issue"], elements=elements,
        bytes_moved={p: elements[p] * ports[p].width // 8 for p in ports}, dram_wait_cycles=int(mem.wait_cycles))


class BoxGaps(Sequence):
    """Cycles between consecutive boxes' first slots of a skewed stt array with streams that never wait:
    ``period`` for every box but the last, ``span`` (its first slot to done) for the last. A closed form that keeps
    no per-box list, so a layer of millions of boxes costs nothing (a tuple of the same values compares equal)."""

    def __init__(self, n: int, period: int, last: int):
        self.n, self.period, self.last = int(n), int(period), int(last)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k):
        if isinstance(k, slice):
            return tuple(self[i] for i in range(*k.indices(self.n)))
        if k < 0:
            k += self.n
        if not 0 <= k < self.n:
            raise IndexError(k)
        return self.last if k == self.n - 1 else self.period

    def __eq__(self, other) -> bool:
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __hash__(self) -> int:
        return hash((self.n, self.period, self.last))

    def __repr__(self) -> str:
        return f"BoxGaps(n={self.n}, period={self.period}, last={self.last})"


def simulate_stt_array(compiled, tiling, *, bytes_per_cycle: float | None = None, buffers: int = 2) -> ArrayModelResult:
    """Cycles of one problem on a skewed stt array (dataflow/stt_array.py): the issuer fires one slot per
    cycle; box m's beats are the slots from m * period on (boxes overlap when the period is shorter than a
    box's span), and with a finite DRAM bandwidth the issuer enters them only once the box's operands are on
    chip; done follows the last slot by one cycle. Every lane carries a beat in every slot (zeros included),
    as the RTL's streams do."""
    ports = {p.name: p for p in compiled.stream_ports}
    outgoing = {p.name for p in compiled.stream_ports if p.role is PortRole.OUTPUT}
    n, period, span = tiling.n_tiles, tiling.period, tiling.span
    elements = {p: ports[p].lanes * tiling.slots for p in ports}
    if bytes_per_cycle is None:     # operands always on chip: the slots run back to back (closed form, no lists)
        return ArrayModelResult(
            total_cycles=tiling.slots + 1, tile_cycles=BoxGaps(n, period, span), macs=tiling.macs(),
            mac_slots=tiling.slots * compiled.design.n_fus, n_fus=compiled.design.n_fus, issue_cycles=tiling.slots,
            elements=elements, bytes_moved={p: elements[p] * ports[p].width // 8 for p in ports})
    env = simpy.Environment()
    firsts: list[int] = []
    mem = None
    if bytes_per_cycle is not None:
        # beats that belong to box m: its period's slots (the last box: the rest of its span)
        slots_of = [period] * (n - 1) + [span]
        mem = _MemorySide(env, [{p: ports[p].lanes * k * ports[p].width / 8 for p in ports} for k in slots_of],
                          outgoing, bytes_per_cycle, buffers)

    def issuer():
        if mem is None:                         # operands always on chip: the slots run back to back
            firsts.extend(1 + k * period for k in range(n))
            yield env.timeout(tiling.slots + 1)
            return env.now
        for k in range(n):
            yield from mem.wait_fetched(k)
            firsts.append(env.now + 1)
            yield env.timeout(slots_of[k])      # slots fire at now + 1 .. now + slots_of[k]
            mem.slots.put(1)
            env.process(mem.writeback(k))
        yield env.timeout(1)                    # done: the cycle after the last slot
        done = env.now
        yield simpy.AllOf(env, mem.written)
        return max(done, env.now)

    if mem is not None:
        env.process(mem.dma())
    proc = env.process(issuer())
    env.run()
    total = int(proc.value)
    marks = firsts + [total]
    return ArrayModelResult(
        total_cycles=total, tile_cycles=tuple(b - a for a, b in zip(marks, marks[1:])), macs=tiling.macs(),
        mac_slots=tiling.slots * compiled.design.n_fus, n_fus=compiled.design.n_fus, issue_cycles=tiling.slots,
        elements=elements, bytes_moved={p: elements[p] * ports[p].width // 8 for p in ports},
        dram_wait_cycles=0 if mem is None else int(mem.wait_cycles))


def load_gaps(design, bounds) -> tuple[int, int] | None:
    """(first, after): the cycles the run build (an output held per run of R, the tile [D, R] run as tiles of R
    with D outside) spends more than the tile's own schedule, before the problem's first step and after it.
    The tile's own schedule is modelled with the same loader, issuer and drain (``simulate_array``): the inputs
    that use no loop of D or R stationary over the tile (loaded at the first run of each tile of [D, R]), the
    inputs that use a loop of D and none of R streamed (no load), partial sums preloaded per run as in the run
    build. None when the dataflow holds no output per run. The run build itself keeps the first kind over a tile's
    runs (``ArraySchedule.keep_dims``) and streams the second one beat per step (``ReductionRuns.streamed``, the
    same stream ports as here), so the two differ only where the keep loops differ from [D, R]'s tiles: the keep
    spans every trailing outer loop no stationary input uses, which may be more than D (then the run build loads
    less often, fewer cycles). docs/dataflows.md "Inputs that use no loop of the run"."""
    c = compile_array(design)
    m = map_problem(design, bounds, c.dataflow)
    split = reduction_runs_of(design, design.dataflow())
    if split is None:
        return None
    op = design.operation
    whole = any(not any(x.uses(d) for d in split.dep + split.run) for x in op.inputs)
    dep = [d for d in split.dep if d in m.outer_dims]

    class First(int):                       # a tile's ``first`` that also says whether it starts a tile of [D, R]
        group_start = False

    class TileOwn(TileMapping):
        def tiles(self):
            for t in super().tiles():
                first = First(t.first)
                first.group_start = all(v == 0 for d, v in t.outer if d in dep)
                yield dataclasses.replace(t, first=first)

    sch = c.schedule

    @dataclasses.dataclass(frozen=True)
    class OwnSchedule(type(sch)):
        def needs_load(self, first, keeps=False) -> bool:
            return (whole and first.group_start) or (self.accumulate and self.psum_in and not first)

        @property
        def has_loader(self) -> bool:
            return whole or (self.accumulate and self.psum_in)

    own = dataclasses.replace(c, schedule=OwnSchedule(**{f.name: getattr(sch, f.name)
                                                          for f in dataclasses.fields(sch)}))
    res = [simulate_array(c, m), simulate_array(own, TileOwn(m.design, m.dataflow, m.bounds))]
    firsts = [r.total_cycles - sum(r.tile_cycles) for r in res]
    return firsts[0] - firsts[1], (res[0].total_cycles - firsts[0]) - (res[1].total_cycles - firsts[1])
