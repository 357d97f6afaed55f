"""The memory system's control rules (docs/memory.md): the layer controller's job list, the DMA order
and gates, and DRAM burst timing, stated once as data and closed forms, with the model halves (SimPy
processes, given an environment by sim/) next to them.

Jobs per block b: ``L(b)`` loads every operand whose block changed (and the output's partial sums when
its block comes back), ``C(b)`` runs the block as one array command, ``W(b)`` writes the output block back
when the next block moves to another output block (or b is the last). With ``D`` halves per buffer:

* DMA order: ``L(0) .. L(D-1)``, then for b = 0, 1, ...: ``L(b+D)``, ``W(b)``; one job at a time;
* ``L(b)`` waits for ``C(b-D)``; ``W(b)`` waits for ``C(b)``;
* ``C(b)`` waits for ``L(b)``, ``C(b-1)`` and ``W(b-D)``; it takes the array's cycles plus one (the
  array is idle again in the cycle after ``done``);
* a transfer of B bytes is bursts issued every ``c`` cycles, at most ``outstanding`` in flight
  (:func:`transfer_cycles`); a job is its transfers back to back and takes at least one cycle;
* every unit's job occupies cycles [start, end): its ``done`` is high in cycle end - 1, and what waits on
  it may start at ``end`` (the hardware registers done into counters).

This module imports neither simpy nor amaranth: the model halves receive a SimPy environment.
"""
from __future__ import annotations

from dataclasses import dataclass

from archgen.arch.errors import SpecError, problem
from archgen.arch.spec import DramPort
from archgen.mappings.memory_tiling import Block, LayerCommand, element_bytes

from .interconnect import FUGraph

__all__ = ["check_memory_system", "check_command", "transfer_cycles", "BlockJobs", "layer_jobs", "dma_order", "dma_process", "compute_process",
           "TransferTimerHW", "transfer_timer_hw", "SequencerHW", "layer_sequencer_hw"]


def check_memory_system(fg: FUGraph, design=None) -> None:
    """The spec's buffers against the array under one dataflow: every bank count divides the lanes its
    operand is fed on (the banking of ``--explain``), so one bank port serves each lane every cycle.
    ``design``: the compiled design (``CompiledArray.design``), whose memory system counts."""
    mem = (fg.design if design is None else design).memory_system
    problems = []
    for plan in fg.plans:
        buf = mem.buffer(plan.name)
        if buf.banks and plan.n_lanes % buf.banks:
            problems.append(problem(f"memory.{plan.name}.banks", f"must divide the {plan.n_lanes} memory-fed lanes of "
                                    f"operand {plan.name} under dataflow {fg.dataflow.name!r} (0 = one bank per lane)",
                                    buf.banks))
    if problems:
        raise SpecError(problems)


def check_command(cmd: LayerCommand, fg: FUGraph, layer: str = "layer", design=None) -> None:
    """A command planned for another design or dataflow is refused before anything runs. ``design``: the
    design the array was compiled for (``CompiledArray.design``; the FU graph's own is the hardware-only
    view that compiles are shared under, without DRAM settings)."""
    design = fg.design if design is None else design
    if cmd.dataflow != fg.dataflow:
        raise SpecError([problem(f"layers.{layer}.dataflow", f"the command was planned for dataflow "
                                 f"{cmd.dataflow.name!r}; this design runs {fg.dataflow.name!r}", cmd.dataflow.name)])
    if cmd.design != design:
        raise SpecError([problem(f"layers.{layer}", f"the command was planned for design {cmd.design.name!r}, "
                                 f"not this {design.name!r}")])


def transfer_cycles(nbytes: int, port: DramPort) -> int:
    """The DRAM port's burst timing (``DramPort.transfer_cycles``, the one statement of the rule)."""
    return port.transfer_cycles(nbytes)


@dataclass(frozen=True)
class BlockJobs:
    """What the controller does for one block: bytes loaded per operand, bytes written back, the block."""

    block: Block
    load: tuple[tuple[str, int], ...]     # operand -> bytes (inputs whose block changed; output partial sums)
    write: int                            # output bytes written back after the block (0: it stays resident)

    def load_cycles(self, port: DramPort) -> int:
        return sum(transfer_cycles(b, port) for _, b in self.load)

    def write_cycles(self, port: DramPort) -> int:
        return transfer_cycles(self.write, port)


def layer_jobs(cmd: LayerCommand) -> list[BlockJobs]:
    """The job list of a layer command, block by block: residency decides what each L(b) moves."""
    op = cmd.design.operation
    out = op.output.name
    blocks = list(cmd.blocks())
    dep = {x.name: [i for i, d in enumerate(cmd.order) if x.uses(d)] for x in op.operands}

    def key(x: str, blk: Block):
        return tuple(blk.tiles[i][1] for i in dep[x])

    seen_out: set = set()
    jobs = []
    for k, blk in enumerate(blocks):
        load = []
        for x in op.inputs:
            if k == 0 or key(x.name, blocks[k - 1]) != key(x.name, blk):
                load.append((x.name, cmd.footprint_bytes(x.name, blk)))
        new_out = k == 0 or key(out, blocks[k - 1]) != key(out, blk)
        if new_out and key(out, blk) in seen_out:
            load.append((out, cmd.footprint_bytes(out, blk)))       # partial sums of an earlier visit
        leaving = k == len(blocks) - 1 or key(out, blocks[k + 1]) != key(out, blk)
        if leaving:
            seen_out.add(key(out, blk))
        jobs.append(BlockJobs(blk, tuple(load), cmd.footprint_bytes(out, blk) if leaving else 0))
    return jobs


def dma_order(n: int, depth: int) -> list[tuple[str, int]]:
    """The DMA's job order: ("L", b) and ("W", b) entries (docs/memory.md)."""
    order = [("L", b) for b in range(min(depth, n))]
    for b in range(n):
        if b + depth < n:
            order.append(("L", b + depth))
        order.append(("W", b))
    return order


# ------------------------------------------------------------------------------------------------
# model halves (SimPy): events ``loaded[b]``, ``computed[b]``, ``written[b]``

def dma_process(env, order, depth: int, load_cycles, write_cycles, loaded, computed, written, trace=None):
    """DMA (model half): one job at a time in ``order``; L(b) after C(b-depth), W(b) after C(b)."""
    for kind, b in order:
        gate = computed[b - depth] if kind == "L" and b >= depth else (computed[b] if kind == "W" else None)
        if gate is not None:
            yield gate
        t0 = env.now
        # an empty job still takes the sequencer's cycle (the hardware moves one job per cycle at most)
        yield env.timeout(max(1, load_cycles[b] if kind == "L" else write_cycles[b]))
        if trace is not None:
            trace.append((kind, b, t0, env.now))
        (loaded if kind == "L" else written)[b].succeed()


def compute_process(env, depth: int, array_cycles, loaded, computed, written, waits, trace=None):
    """LAYER CONTROLLER (model half): C(b) after L(b), C(b-1) and W(b-depth); ``waits[b]`` gets the
    cycles the array sat idle before C(b) (waiting on the DMA). Returns the cycle C(n-1) ended."""
    for b, cycles in enumerate(array_cycles):
        t0 = env.now
        yield loaded[b]
        if b >= depth:
            yield written[b - depth]
        waits[b] = env.now - t0
        start = env.now
        yield env.timeout(cycles + 1)
        if trace is not None:
            trace.append(("C", b, start, env.now))
        computed[b].succeed()
    return env.now


# ------------------------------------------------------------------------------------------------
# hardware halves (Amaranth: ``hdl`` namespace and a Module from rtlgen)

@dataclass(frozen=True)
class TransferTimerHW:
    busy: object            # a transfer is running (start cycle included)
    issue: object           # a burst request leaves this cycle
    data: object            # a cycle of the last burst's data
    done: object            # the transfer's last cycle (the next transfer may start in the next cycle)


def transfer_timer_hw(m, hdl, port: DramPort, start, nbytes, name: str = "dma", width: int = 32) -> TransferTimerHW:
    """DRAM burst timing (hardware half of ``DramPort.transfer_cycles``): ``start`` for one cycle with
    ``nbytes`` (> 0) begins a transfer whose ``done`` is high in its last cycle, ``transfer_cycles`` - 1
    cycles after ``start``. Bursts issue on group counters (a group of ``outstanding`` bursts ``c`` cycles
    apart, groups ``P`` cycles apart); the tail counts the latency, then the last burst's data ``width``
    bytes a cycle. Comparisons and constant steps only: no division, no multiplication at run time."""
    o, lat = port.outstanding, port.latency
    c = -(-port.burst_bytes // port.width_bytes)
    period = max(o * c, lat + c)
    Signal, Mux = hdl.Signal, hdl.Mux
    issuing = Signal(name=f"{name}_issuing")
    in_tail = Signal(name=f"{name}_tail")
    in_data = Signal(name=f"{name}_data_phase")
    rem = Signal(width, name=f"{name}_bytes_left")
    gcyc = Signal(range(period + 1), name=f"{name}_group_cycle")
    gi = Signal(range(o + 1), name=f"{name}_group_issued")
    nxt = Signal(range(o * c + 1), name=f"{name}_next_issue")
    lat_cnt = Signal(range(lat + 1), name=f"{name}_latency_left")
    data_rem = Signal(width, name=f"{name}_data_left")
    done = Signal(name=f"{name}_done")
    issue = Signal(name=f"{name}_issue")
    data = Signal(name=f"{name}_data")
    # the issue phase as seen this cycle: the start cycle is a group's first cycle with every byte left
    cur_rem = Mux(start, nbytes, rem)
    cur_gcyc = Mux(start, 0, gcyc)
    cur_gi = Mux(start, 0, gi)
    cur_nxt = Mux(start, 0, nxt)
    m.d.comb += issue.eq((start | issuing) & (cur_gi < o) & (cur_gcyc == cur_nxt))
    last = issue & (cur_rem <= port.burst_bytes)

    def data_cycle(left):
        """One data cycle of the last burst with ``left`` bytes still to come."""
        m.d.comb += data.eq(1)
        with m.If(left <= port.width_bytes):
            m.d.comb += done.eq(1)
            m.d.sync += [in_tail.eq(0), in_data.eq(0)]
        with m.Else():
            m.d.sync += [data_rem.eq(left - port.width_bytes), in_tail.eq(1), in_data.eq(1)]

    with m.If(start | issuing):
        m.d.sync += issuing.eq(1)
        with m.If(issue):
            m.d.sync += [rem.eq(cur_rem - port.burst_bytes), nxt.eq(cur_nxt + c)]
        m.d.sync += [gcyc.eq(cur_gcyc + 1), gi.eq(Mux(issue, cur_gi + 1, cur_gi))]
        with m.If(cur_gcyc == period - 1):
            m.d.sync += [gcyc.eq(0), gi.eq(0), nxt.eq(0)]
        with m.If(last):
            m.d.sync += issuing.eq(0)
            if lat == 0:
                data_cycle(cur_rem)
            else:
                m.d.sync += [in_tail.eq(1), lat_cnt.eq(lat - 1), data_rem.eq(cur_rem)]
    with m.Elif(in_tail & ~in_data):
        with m.If(lat_cnt == 0):
            data_cycle(data_rem)
        with m.Else():
            m.d.sync += lat_cnt.eq(lat_cnt - 1)
    with m.Elif(in_data):
        data_cycle(data_rem)
    return TransferTimerHW(start | issuing | in_tail, issue, data, done)


@dataclass(frozen=True)
class SequencerHW:
    start_l: object         # L(l_block) starts this cycle
    start_w: object         # W(w_block) starts this cycle
    start_c: object         # C(c_block) starts this cycle
    l_block: object
    w_block: object
    c_block: object
    finished: object        # every job has ended (level)


def layer_sequencer_hw(m, hdl, depth: int, n_blocks, l_done, w_done, c_done, run, name: str = "layer",
                       width: int = 20) -> SequencerHW:
    """LAYER CONTROLLER (hardware half of ``dma_process`` + ``compute_process``): the DMA's job order and
    the gates of docs/memory.md on counters. ``n_blocks`` (registered, >= 1) and ``run`` (level: the
    layer command is running, cleared by the caller); ``*_done`` are the units' done pulses."""
    Signal = hdl.Signal
    nl, nw, nc = (Signal(width, name=f"{name}_next_{k}") for k in ("load", "write", "compute"))
    lf, wf, cf = (Signal(width, name=f"{name}_{k}_finished") for k in ("loads", "writes", "computes"))
    dma_busy = Signal(name=f"{name}_dma_busy")
    arr_busy = Signal(name=f"{name}_array_busy")
    start_l, start_w, start_c = (Signal(name=f"{name}_start_{k}") for k in "lwc")
    pick_l = (nl < n_blocks) & (nl <= nw + depth)
    pick_w = ~pick_l & (nw < n_blocks)
    m.d.comb += [start_l.eq(run & ~dma_busy & pick_l & (cf + depth > nl)),
                 start_w.eq(run & ~dma_busy & pick_w & (cf > nw)),
                 start_c.eq(run & ~arr_busy & (nc < n_blocks) & (lf > nc) & ((nc < depth) | (wf + depth > nc)))]
    with m.If(start_l):
        m.d.sync += [nl.eq(nl + 1), dma_busy.eq(1)]
    with m.If(start_w):
        m.d.sync += [nw.eq(nw + 1), dma_busy.eq(1)]
    with m.If(start_c):
        m.d.sync += [nc.eq(nc + 1), arr_busy.eq(1)]
    with m.If(l_done | w_done):
        m.d.sync += dma_busy.eq(0)
    with m.If(c_done):
        m.d.sync += arr_busy.eq(0)
    m.d.sync += [lf.eq(lf + l_done), wf.eq(wf + w_done), cf.eq(cf + c_done)]
    with m.If(~run):
        m.d.sync += [x.eq(0) for x in (nl, nw, nc, lf, wf, cf, dma_busy, arr_busy)]
    return SequencerHW(start_l, start_w, start_c, nl, nw, nc, run & (wf == n_blocks) & (cf == n_blocks))
