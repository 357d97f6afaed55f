"""One array problem in Amaranth's simulator: ``verify_array``'s checks without building a Verilator binary.

The array top (rtlgen/array.py) is fed the host program's streams (dataflow/host.py) with every beat offered as
soon as the previous one was taken and the output always ready; the output beats are compared with the golden
partial sums, the result assembled from them with a numpy evaluation of the loop nest, partial sums are checked
to be read only after the beat that wrote them left (as verif/array_check.py does), and the cycles from the
command handshake to ``done`` with sim/array_model.py. It agrees with the Verilator bench (verif/tb_array.py)
on the cycle count (tests/rtlgen/test_array_amaranth.py). About a second per small problem, so a refusal search's
whole class of specs can be run (benchmarks/refusal_class_check.py).
"""
from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from archgen.arch.spec import Design
from archgen.dataflow.compile import compile_array
from archgen.dataflow.host import host_program, random_operands
from archgen.dataflow.ir import PortRole
from archgen.mappings.tiling import map_problem
from archgen.rtlgen.array import ArrayTop
from archgen.sim.array_model import simulate_array

from .array_check import ArrayVerification, _psum_causality
from .golden import beats_exact

__all__ = ["verify_array_amaranth"]


def verify_array_amaranth(design: Design, bounds: dict[str, int], *, seed: int = 0,
                          dataflow: str | None = None) -> ArrayVerification:
    compiled = compile_array(design, dataflow)
    if hasattr(compiled, "network"):        # it crashed on the missing tiled schedule before (H160)
        raise ValueError(f"verify_array_amaranth: dataflow {compiled.dataflow.name!r} is a skewed stt map, whose array "
                         "(dataflow/stt_array.py) this Amaranth check does not run; verify it on Verilator (archgen "
                         "verify)")
    fg = compiled.fu_graph
    mapping = map_problem(design, bounds, fg.dataflow)
    tensors = random_operands(fg, mapping, np.random.default_rng(seed))
    prog = host_program(fg, mapping, tensors, compiled.schedule)
    model = simulate_array(compiled, mapping).total_cycles
    trips = mapping.trips()
    cmd = {f.name: mapping.steps if f.loop is None else trips[f.loop] for f in compiled.command.fields}
    top = ArrayTop(compiled)
    ins = [p.name for p in compiled.stream_ports if p.role is not PortRole.OUTPUT and p.name in prog.streams]
    res = _run(top, compiled.output_port, cmd, {n: prog.streams[n] for n in ins}, 20 * model + 1000)
    got = np.array(res["got"], dtype=np.int64)
    exact = beats_exact(prog, got, design.operation, tensors, mapping.bound, fg.acc_width)
    causal = _psum_causality(prog, res, fg.output.name)
    detail = {"psum_reads_before_write": causal, "beats_expected": len(prog.expected), "beats_got": len(got)}
    return ArrayVerification(design.name, fg.dataflow.name, dict(mapping.bound), exact and causal == 0,
                             res.get("rtl_cycles"), model, detail)


def _run(top: ArrayTop, out_port, cmd: dict, streams: dict, limit: int) -> dict:
    """Play ``streams`` into ``top`` and collect its output beats; cycles counted from the command handshake."""
    res = {"got": [], "out_cycles": [], "in_cycles": {n: [] for n in streams}}

    async def bench(ctx):
        for name, value in cmd.items():
            ctx.set(getattr(top.cmd.payload, name), int(value))
        ctx.set(top.cmd.valid, 1)
        out = getattr(top, out_port.name)
        ctx.set(out.ready, 1)
        ptr = dict.fromkeys(streams, 0)
        accepted = None
        for cycle in range(limit):
            for name, beats in streams.items():
                port = getattr(top, name)
                ctx.set(port.valid, int(ptr[name] < len(beats)))
                if ptr[name] < len(beats):
                    for lane, v in enumerate(beats[ptr[name]]):
                        ctx.set(port.payload[lane], int(v))
            if accepted is None and ctx.get(top.cmd.ready):
                accepted = cycle
            taken = [n for n in streams if ctx.get(getattr(top, n).valid) and ctx.get(getattr(top, n).ready)]
            if ctx.get(out.valid):
                res["got"].append([ctx.get(out.payload[lane]) for lane in range(out_port.lanes)])
                res["out_cycles"].append(cycle)
            done = ctx.get(top.done)
            await ctx.tick()
            if accepted == cycle:
                ctx.set(top.cmd.valid, 0)
            for n in taken:
                ptr[n] += 1
                res["in_cycles"][n].append(cycle)
            if done:
                res["rtl_cycles"] = cycle - accepted
                return

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return res
