"""Every dataflow of a fused design in Amaranth's simulator: verif/fused_check.py's checks without Verilator.

The fused array top (rtlgen/fused_array.py) runs one problem per dataflow, selected by the command's
``dataflow`` field: the view's host program (dataflow/host.py, or dataflow/stt_host.py for a skewed map) on lanes
0..n-1 of the fused streams, every beat offered as soon as the previous one was taken, the output always ready;
output beats and the assembled result against numpy, no partial sum read before its write, and the cycles from
the command handshake to ``done`` against the view's model (sim/array_model.py with the fused timing). About a
second per dataflow on small problems, so a refusal search's class of fused specs can be run
(benchmarks/refusal_class_check.py).
"""
from __future__ import annotations

import numpy as np

from archgen.arch.spec import Design
from archgen.dataflow.compile import compile_fused
from archgen.dataflow.fusion import is_stt_view
from archgen.dataflow.host import host_program, random_operands
from archgen.dataflow.ir import PortRole
from archgen.dataflow.stt_array import stt_tiling
from archgen.dataflow.stt_host import stt_host_program
from archgen.mappings.tiling import map_problem
from archgen.rtlgen.fused_array import FusedArrayTop
from archgen.sim.array_model import simulate_array

from .array_amaranth import _run
from .array_check import ArrayVerification, _psum_causality
from .golden import beats_exact

__all__ = ["verify_fused_amaranth"]


def verify_fused_amaranth(design: Design, fuse, bounds: dict[str, int], *, seed: int = 0) -> list[ArrayVerification]:
    """One problem of ``bounds`` per dataflow of the fused design of ``fuse``, each in its own simulation."""
    fused = compile_fused(design, fuse)
    out = []
    for name in fused.names:
        view = fused.view(name)
        rng = np.random.default_rng(seed)
        if is_stt_view(view):
            fg = view.network
            mapping = stt_tiling(fg, bounds)
            tensors = random_operands(fg, mapping, rng)
            prog = stt_host_program(mapping, tensors)
            cmd = fused.command_word(name, mapping.slots, {})
        else:
            fg = view.fu_graph
            mapping = map_problem(view.design, bounds, fg.dataflow)
            tensors = random_operands(fg, mapping, rng)
            prog = host_program(fg, mapping, tensors)
            cmd = fused.command_word(name, mapping.steps, mapping.trips())
        model = simulate_array(view, mapping).total_cycles
        ins = [p.name for p in view.stream_ports if p.role is not PortRole.OUTPUT and p.name in prog.streams]
        res = _run(FusedArrayTop(fused), view.output_port, cmd, {n: prog.streams[n] for n in ins}, 20 * model + 1000)
        got = np.array(res["got"], dtype=np.int64)
        exact = beats_exact(prog, got, design.operation, tensors, mapping.bound, fg.acc_width)
        causal = _psum_causality(prog, res, fg.output.name)
        detail = {"psum_reads_before_write": causal, "beats_expected": len(prog.expected), "beats_got": len(got),
                  "fused": list(fused.names)}
        out.append(ArrayVerification(design.name, name, dict(mapping.bound), exact and causal == 0,
                                     res.get("rtl_cycles"), model, detail))
    return out
