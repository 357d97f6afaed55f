"""SimPy model of a whole layer through the memory system (docs/memory.md).

The layer controller, the DMA engine and the DRAM port are the model halves of dataflow/memctl.py;
each block's compute time is the array's own model (sim/array_model.py ``simulate_array`` with ideal
streams: the buffers serve one beat per lane per cycle), cached per block shape, so a layer is a few
events per block, never a loop over cycles or data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import simpy

from archgen.dataflow.compile import CompiledArray
from archgen.dataflow.ir import PortRole
from archgen.dataflow.memctl import (adds_onto_partial_sums, check_command, compute_process, dma_order, dma_process,
                                     layer_jobs, loads_partial_sums, output_lane_split, psum_read_skew)
from archgen.mappings.memory_tiling import LayerCommand, check_partial_sums, element_bytes

from .array_model import simulate_array

__all__ = ["LayerMemoryResult", "simulate_layer"]


@dataclass(frozen=True)
class LayerMemoryResult:
    cycles: int                                   # command to the last write-back
    blocks: int
    stall_cycles: dict                            # cause -> cycles: dram, buffer_ports, array
    dram_bytes: dict                              # "<X>.read" / "<Y>.write" -> bytes
    buffer_accesses: dict                         # "<X>.read" / "<X>.write" -> elements
    mac_slots: int                                # MAC slots the array spent (padding included)
    steps: int                                    # steps the array issued
    compute_cycles: int                           # sum of the blocks' array commands (+1 each)
    trace: tuple = field(default=(), repr=False)  # (job, block, start, end), when asked for


def simulate_layer(compiled: CompiledArray, cmd: LayerCommand, *, trace: bool = False,
                   layer: str = "layer") -> LayerMemoryResult:
    """One layer command on the compiled array through the memory system; refuses a command planned for
    another design or dataflow (SpecError). A block that continues a split reduction adds onto the partial
    sums in the output buffer at no cycle cost (the RTL's add-on write); a command whose output block comes
    back after another (partial sums through DRAM) is timed with that traffic: the controller
    loads the partial sums back before the block that revisits it (its L job, after W(b - D) in the DMA
    order) and adds onto them, as the generated RTL does (docs/memory.md "Partial sums through DRAM"); such a
    command is refused unless the spec grants it (``memory.partial_sums_through_dram``)."""
    check_command(cmd, compiled.fu_graph, layer, compiled.design)
    check_partial_sums(cmd, layer)          # partial sums through DRAM only when the spec grants them
    design = compiled.design
    mem = design.memory_system
    port = mem.dram
    depth = 2 if all(b.double_buffer for b in mem.buffers) else 1
    osplit = output_lane_split(compiled)  # an output whose lanes span several array axes moves padded blocks
    jobs = layer_jobs(cmd, osplit[1] if osplit else ())
    n = len(jobs)
    per_shape: dict = {}
    array_cycles, reads = [], {}
    slots = steps = 0
    ports = {p.name: p for p in compiled.stream_ports}
    for j in jobs:
        bm = cmd.block_mapping(j.block)
        if bm.bounds not in per_shape:
            per_shape[bm.bounds] = simulate_array(compiled, bm, psum_skew=psum_read_skew(compiled, dict(bm.bounds)))
        r = per_shape[bm.bounds]
        array_cycles.append(r.total_cycles)
        slots += r.mac_slots
        steps += r.issue_cycles
        for p, v in r.elements.items():
            role = ports[p].role
            key = f"{ports[p].operand}.{'write' if role is PortRole.OUTPUT else 'read'}"
            reads[key] = reads.get(key, 0) + v
    load_cycles = [j.load_cycles(port) for j in jobs]
    write_cycles = [j.write_cycles(port) for j in jobs]
    env = simpy.Environment()
    loaded, computed, written = ([env.event() for _ in jobs] for _ in range(3))
    waits = [0] * n
    tr: list | None = [] if trace else None
    order = dma_order(n, depth, loads_partial_sums(cmd, jobs))
    env.process(dma_process(env, order, depth, load_cycles, write_cycles, loaded, computed, written, tr))
    env.process(compute_process(env, depth, array_cycles, loaded, computed, written, waits, tr))
    env.run()
    total = int(env.now)
    dram: dict[str, int] = {}
    for j in jobs:
        for x, b in j.load:
            dram[f"{x}.read"] = dram.get(f"{x}.read", 0) + b
        if j.write:
            y = design.operation.output.name
            dram[f"{y}.write"] = dram.get(f"{y}.write", 0) + j.write
    compute = sum(array_cycles) + n
    # the array is busy for `compute` cycles; every other cycle of the layer it waits on the DMA
    # (first load, refills, the last write-back); inside its commands, cycles without a step are the
    # array's own fill, drain and load phases
    stalls = {"dram": total - compute, "buffer_ports": 0, "array": compute - steps}
    acc = dict(reads)
    y = design.operation.output.name
    for j, add in zip(jobs, adds_onto_partial_sums(cmd, jobs)):
        if add:          # the add onto partial sums reads the output block's old values once
            acc[f"{y}.read"] = acc.get(f"{y}.read", 0) + cmd.footprint_bytes(y, j.block) // element_bytes(design, y)
    for key, b in dram.items():          # DMA side of the buffers: fills (reads from DRAM) and drains
        x, kind = key.rsplit(".", 1)
        flip = "write" if kind == "read" else "read"
        acc[f"{x}.{flip}"] = acc.get(f"{x}.{flip}", 0) + b // element_bytes(design, x)
    return LayerMemoryResult(total, n, stalls, dram, acc, slots, steps, compute, tuple(tr or ()))
