"""Verify one dataflow of a fused design on Verilator: exact outputs and RTL cycles == model cycles.

The Verilog is the fused top (rtlgen/fused_array.py) whatever the dataflow: the dataflow is a field of
the command word, so every dataflow of a fused design runs on one Verilator build (cached by the
Verilog's hash). The DRAM side is the dataflow's own host program (dataflow/host.py) on lanes 0..n-1 of
the fused streams; the model is ``simulate_array`` on the dataflow's view, which carries the fused
design's timing.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from archgen.arch.spec import Design
from archgen.dataflow.compile import compile_fused
from archgen.dataflow.fusion import is_stt_view
from archgen.dataflow.host import host_program, random_operands
from archgen.dataflow.stt_array import stt_tiling
from archgen.dataflow.stt_host import stt_host_program
from archgen.mappings.tiling import map_problem
from archgen.rtlgen.fused_array import fused_verilog
from archgen.sim.array_model import simulate_array

from .array_check import ArrayVerification, _psum_causality, run_stream_program
from .golden import beats_exact
from .runner import run_testbench

__all__ = ["verify_fused", "verify_fused_sequence"]


def verify_fused(design: Design, fuse, bounds: dict[str, int], dataflow: str, *, seed: int = 0,
                 idle_prob: float = 0.0, stall_prob: float = 0.0, cache_dir: Path | None = None,
                 pipeline: bool = True) -> ArrayVerification:
    fused = compile_fused(design, fuse, pipeline=pipeline)
    view = fused.view(dataflow)
    if is_stt_view(view):
        return _verify_fused_stt(fused, view, bounds, seed=seed, idle_prob=idle_prob, stall_prob=stall_prob,
                                 cache_dir=cache_dir)
    fg = view.fu_graph
    mapping = map_problem(view.design, bounds, fg.dataflow)
    rng = np.random.default_rng(seed)
    tensors = random_operands(fg, mapping, rng)
    prog = host_program(fg, mapping, tensors)
    text, top = fused_verilog(fused)
    model = simulate_array(view, mapping)
    cmd = fused.command_word(dataflow, mapping.steps, mapping.trips())
    exact, causal, res, detail = run_stream_program(
        text, design, view.stream_ports, fused.command, cmd, prog, tensors, mapping, fg, model.total_cycles,
        seed=seed, idle_prob=idle_prob, stall_prob=stall_prob, cache_dir=cache_dir,
        prefix="archgen-verify-fused-")
    detail["psum_reads_before_write"] = causal
    detail["fused"] = list(fused.names)
    return ArrayVerification(design.name, dataflow, dict(mapping.bound), exact and causal == 0, res.get("rtl_cycles"),
                             model.total_cycles, detail)


def _verify_fused_stt(fused, view, bounds, *, seed, idle_prob, stall_prob, cache_dir) -> ArrayVerification:
    """A skewed stt map of a fused design: its own tiling and host program (dataflow/stt_host.py) on lanes
    0..n-1 of the fused streams; the model is ``simulate_stt_array`` on the fused view (whose product stages
    are the shared multipliers')."""
    design, net = fused.design, view.network
    tiling = stt_tiling(net, bounds)
    tensors = random_operands(net, tiling, np.random.default_rng(seed))
    prog = stt_host_program(tiling, tensors)
    text, _ = fused_verilog(fused)
    model = simulate_array(view, tiling)
    cmd = fused.command_word(view.dataflow.name, tiling.slots, {})
    exact, causal, res, detail = run_stream_program(
        text, design, view.stream_ports, fused.command, cmd, prog, tensors, tiling, net, model.total_cycles,
        seed=seed, idle_prob=idle_prob, stall_prob=stall_prob, cache_dir=cache_dir, prefix="archgen-verify-fused-")
    detail["psum_reads_before_write"] = causal
    detail["fused"] = list(fused.names)
    detail.update(box=dict(tiling.box), period=tiling.period, span=tiling.span, product_stages=net.product_stages)
    return ArrayVerification(design.name, view.dataflow.name, dict(tiling.bound), exact and causal == 0,
                             res.get("rtl_cycles"), model.total_cycles, detail)


def verify_fused_sequence(design: Design, fuse, runs, *, cache_dir: Path | None = None,
                          pipeline: bool = True) -> list[ArrayVerification]:
    """Several problems ``runs`` = [(dataflow, bounds, seed), ...] back to back in ONE simulation of the fused
    design (verif/tb_fused.py): the dataflow changes from command to command with no rebuild and no reset.
    Each run is checked like :func:`verify_fused` (exact beats and result, RTL cycles == model cycles)."""
    fused = compile_fused(design, fuse, pipeline=pipeline)
    text, _ = fused_verilog(fused)
    preps, params_runs = [], []
    with tempfile.TemporaryDirectory(prefix="archgen-verify-fused-") as tmp:
        for n, (dataflow, bounds, seed) in enumerate(runs):
            view = fused.view(dataflow)
            fg = view.fu_graph
            if is_stt_view(view):          # a skewed map: its box tiling and host program (dataflow/stt_host.py)
                mapping = stt_tiling(view.network, bounds)
                tensors = random_operands(fg, mapping, np.random.default_rng(seed))
                prog = stt_host_program(mapping, tensors)
                cmd = fused.command_word(dataflow, mapping.slots, {})
            else:
                mapping = map_problem(view.design, bounds, fg.dataflow)
                tensors = random_operands(fg, mapping, np.random.default_rng(seed))
                prog = host_program(fg, mapping, tensors)
                cmd = fused.command_word(dataflow, mapping.steps, mapping.trips())
            model = simulate_array(view, mapping)
            path = Path(tmp) / f"program{n}.npz"
            np.savez(path, expected=prog.expected, **prog.streams)
            ports = [{"name": p.name, "lanes": p.lanes, "lane_bits": p.width, "signed": p.signed}
                     for p in view.stream_ports]
            params_runs.append({
                "program": str(path), "cmd": cmd,
                "in_ports": [p for p in ports if p["name"] in prog.streams],
                "out_port": next(p for p in ports if p["name"] == view.output_port.name),
                "max_cycles": 20 * model.total_cycles + 1000})
            preps.append((dataflow, mapping, tensors, prog, model, fg))
        out_name = fused.views[0].output_port.name
        params = {"runs": params_runs, "out_name": out_name, "seed": 0,
                  "cmd_fields": [{"name": f.name, "offset": f.offset} for f in fused.command.fields]}
        res = run_testbench(text, design.name, "archgen.verif.tb_fused", params, cache_dir=cache_dir)
    out = []
    for (dataflow, mapping, tensors, prog, model, fg), r in zip(preps, res.get("runs", [{}] * len(preps))):
        got = np.array(r.get("got", []), dtype=np.int64)
        exact = beats_exact(prog, got, design.operation, tensors, mapping.bound, fg.acc_width)
        detail = {k: r.get(k) for k in ("beats_expected", "beats_got", "mismatches")}
        detail["fused"] = list(fused.names)
        out.append(ArrayVerification(design.name, dataflow, dict(mapping.bound), exact, r.get("rtl_cycles"),
                                     model.total_cycles, detail))
    return out
