"""Build a spec's array, run one problem on Verilator, and check numbers and cycles.

``verify_array`` is what ``archgen verify SPEC --gemm M,K,N`` runs: random operands over each type's
whole range, the RTL's output beats against the host program's golden partial sums, the final result
(assembled from the RTL's own output beats) against an independent numpy evaluation of the loop nest,
and the RTL's cycles from command to done against the cycle model.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from archgen.arch.spec import Design
from archgen.dataflow.compile import CompiledArray, compile_array
from archgen.dataflow.host import host_program, random_operands
from archgen.dataflow.ir import PortRole, port_name
from archgen.mappings.tiling import map_problem
from archgen.rtlgen.build import array_verilog
from archgen.sim.array_model import simulate_array

from .golden import beats_exact
from .runner import run_testbench

__all__ = ["ArrayVerification", "verify_array"]


def _psum_causality(prog, res, out_name: str) -> int:
    """Partial sums the array read before the output beat that produces them had left it.

    The testbench serves partial sums from the golden program, so it would hide a schedule that reads
    a partial sum before writing it; a real memory could not. Counted here from the cycles the bench
    recorded: a read must come at least one cycle after the write."""
    if prog.psum_source is None:
        return 0
    psum_cycles = (res.get("in_cycles") or {}).get(port_name(PortRole.PSUM, out_name))
    out_cycles = res.get("out_cycles")
    if not psum_cycles or out_cycles is None:
        return 0
    bad = 0
    for b, srcs in enumerate(prog.psum_source.tolist()):
        for s in srcs:
            if s >= 0 and (s >= len(out_cycles) or out_cycles[s] >= psum_cycles[b]):
                bad += 1
    return bad


@dataclass(frozen=True)
class ArrayVerification:
    design: str
    dataflow: str
    bounds: dict
    outputs_exact: bool
    rtl_cycles: int | None
    model_cycles: int
    detail: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outputs_exact and self.rtl_cycles == self.model_cycles


def run_stream_program(text: str, design: Design, stream_ports, command, cmd: dict, prog, tensors, mapping, fg,
                       model_cycles: int, *, seed: int, idle_prob: float, stall_prob: float,
                       cache_dir: Path | None, prefix: str):
    """Run a host program (dataflow/host.py) through verif/tb_array.py on ``text`` and check the beats and
    the assembled result against a tiling-independent evaluation. Returns (exact, psum reads before their
    write, the testbench's result, detail)."""
    in_ports, out_port = [], None
    for port in stream_ports:
        info = {"name": port.name, "lanes": port.lanes, "lane_bits": port.width, "signed": port.signed}
        if port.role is PortRole.OUTPUT:
            out_port = info
        elif port.name in prog.streams:
            in_ports.append(info)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        path = Path(tmp) / "program.npz"
        np.savez(path, expected=prog.expected, **prog.streams)
        params = {
            "program": str(path), "in_ports": in_ports, "out_port": out_port, "cmd": cmd,
            "cmd_fields": [{"name": f.name, "offset": f.offset} for f in command.fields], "seed": seed,
            "idle_prob": idle_prob, "stall_prob": stall_prob,
            "max_cycles": 20 * model_cycles + 1000,
        }
        res = run_testbench(text, design.name, "archgen.verif.tb_array", params, cache_dir=cache_dir)
    got = np.array(res.get("got", []), dtype=np.int64)
    exact = bool(res.get("passed")) and beats_exact(prog, got, design.operation, tensors, mapping.bound, fg.acc_width)
    causal = _psum_causality(prog, res, fg.output.name)
    detail = {k: res.get(k) for k in ("beats_expected", "beats_got", "mismatches", "first_mismatch", "log_tail")}
    return exact, causal, res, detail


def verify_array(design: Design, bounds: dict[str, int], *, seed: int = 0, dataflow: str | None = None,
                 idle_prob: float = 0.0, stall_prob: float = 0.0, cache_dir: Path | None = None,
                 pipeline: bool = True) -> ArrayVerification:
    compiled = compile_array(design, dataflow, pipeline=pipeline)
    if not isinstance(compiled, CompiledArray):        # a skewed stt map (dataflow/stt_array.py)
        return _verify_stt(compiled, bounds, seed=seed, idle_prob=idle_prob, stall_prob=stall_prob,
                           cache_dir=cache_dir)
    fg = compiled.fu_graph
    mapping = map_problem(design, bounds, fg.dataflow)
    rng = np.random.default_rng(seed)
    tensors = random_operands(fg, mapping, rng)
    prog = host_program(fg, mapping, tensors, compiled.schedule)
    text, manifest = array_verilog(compiled)
    model = simulate_array(compiled, mapping)
    trips = mapping.trips()
    cmd = {f.name: mapping.steps if f.loop is None else trips[f.loop] for f in compiled.command.fields}
    exact, causal, res, detail = run_stream_program(
        text, design, compiled.stream_ports, compiled.command, cmd, prog, tensors, mapping, fg, model.total_cycles,
        seed=seed, idle_prob=idle_prob, stall_prob=stall_prob, cache_dir=cache_dir, prefix="archgen-verify-")
    detail["psum_reads_before_write"] = causal
    exact = exact and causal == 0
    detail["verilog_lines"] = manifest["verilog_lines"]
    detail["registers_added"] = manifest["pipelining"]["registers_added"]
    return ArrayVerification(design.name, fg.dataflow.name, dict(mapping.bound), exact, res.get("rtl_cycles"),
                             model.total_cycles, detail)


def _verify_stt(compiled, bounds: dict[str, int], *, seed: int, idle_prob: float, stall_prob: float,
                cache_dir: Path | None, box: dict | None = None) -> ArrayVerification:
    """verify_array for a skewed stt array: its own tiling and host program (dataflow/stt_host.py), the same
    testbench, checks and cycle comparison."""
    from archgen.dataflow.stt_array import stt_tiling
    from archgen.dataflow.stt_host import stt_host_program
    design, net = compiled.design, compiled.network
    tiling = stt_tiling(net, bounds, box)
    rng = np.random.default_rng(seed)
    tensors = random_operands(net, tiling, rng)
    prog = stt_host_program(tiling, tensors)
    text, manifest = array_verilog(compiled)
    model = simulate_array(compiled, tiling)
    exact, causal, res, detail = run_stream_program(
        text, design, compiled.stream_ports, compiled.command, {"steps": tiling.slots}, prog, tensors, tiling, net,
        model.total_cycles, seed=seed, idle_prob=idle_prob, stall_prob=stall_prob, cache_dir=cache_dir,
        prefix="archgen-verify-stt-")
    detail["psum_reads_before_write"] = causal
    detail["verilog_lines"] = manifest["verilog_lines"]
    detail["registers_added"] = manifest["pipelining"]["registers_added"]
    detail["box"] = dict(tiling.box)
    detail["span"] = tiling.span
    detail["period"] = tiling.period
    return ArrayVerification(design.name, compiled.dataflow.name, dict(tiling.bound), exact and causal == 0,
                             res.get("rtl_cycles"), model.total_cycles, detail)
