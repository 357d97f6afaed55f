"""Verilog and manifest for a spec: the files ``archgen build`` writes.

Output is deterministic: no source locations, no timestamps, no absolute paths; the same spec gives
the same bytes. Writing goes to a temporary directory first and replaces the previous outputs only
when everything succeeded, so a failed build leaves earlier results intact.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from amaranth.back import verilog

from archgen.arch.files import write_all_or_nothing
from archgen.arch.spec import Design
from archgen.dataflow.compile import CompiledArray, compile_array
from archgen.dataflow.ir import STEP_BITS, TRIP_BITS, PortRole

from .array import ArrayTop
from .manifest import manifest_core

__all__ = ["build_array", "array_verilog", "array_manifest", "fused_manifest", "write_outputs", "manifest_json",
           "CONTRACT_TEXT"]

CONTRACT_TEXT = ("loader, issuer and drain run concurrently (dataflow/schedule.py): one step issued per cycle, "
                 "tiles back to back; a tile's first step waits for its stationary data (rows cycles, started once "
                 "the previous shadow was swapped in at every FU, swap_skew + 1 after its first step); the last "
                 "step of tile n waits for tile n-1's drain (accumulated outputs); a partial-sum preload into "
                 "accumulators starts after the previous tile's drain; drain takes drain_rows cycles from "
                 "commit_skew + 1 after the last step; streamed outputs leave out_latency after their step; done "
                 "is high in the cycle after the last output (ideal DRAM side)")


def build_array(design: Design, dataflow: str | None = None, *, pipeline: bool = True,
                target: str = "asic") -> tuple[str, dict]:
    """(Verilog text, manifest dict) for one dataflow of an array spec."""
    return array_verilog(compile_array(design, dataflow, pipeline=pipeline, target=target))


def array_verilog(compiled: CompiledArray) -> tuple[str, dict]:
    """(Verilog text, manifest dict) of a compiled array."""
    top = ArrayTop(compiled)
    text = verilog.convert(top, name=compiled.design.name, emit_src=False)
    return text, array_manifest(compiled, top, text)


def array_manifest(compiled: CompiledArray, top: ArrayTop, text: str) -> dict:
    """The common manifest (rtlgen/manifest.py) plus the array's interfaces, operand plans and pipelining."""
    design, df, fg = compiled.design, compiled.dataflow, compiled.fu_graph
    rt = compiled.retimed
    interfaces = []
    for port in compiled.ports:
        if port.role is PortRole.COMMAND:
            interfaces.append({"name": port.name, "dir": str(port.direction), "kind": "stream", "bits": port.bits,
                               "fields": [{"name": f.name, "bits": f.bits, "offset": f.offset}
                                          for f in compiled.command.fields]})
        elif port.stream:
            interfaces.append({"name": port.name, "dir": str(port.direction), "kind": "stream", "operand": port.operand,
                               "lanes": port.lanes, "lane_bits": port.width, "bits": port.bits,
                               "signed": port.signed})
        else:
            interfaces.append({"name": port.name, "dir": str(port.direction), "kind": "signal", "bits": port.bits})
    plans = [{"operand": p.name, "role": str(p.role), "lanes": p.n_lanes, "bits": p.width,
              "lane_skews": [l.skew for l in p.lanes], "reuse_axes": [list(r) for r in p.reuse_axes],
              "tree_axes": list(p.tree_axes), "psum_in": p.psum_in} for p in fg.plans]
    parameters = {
        "array_shape": list(design.shape),
        "dataflow": df.name,
        "spatial": {str(a): d for a, d in (df.spatial or ())},
        "order": list(df.order),
        "inner": list(df.inner_dims()),
        "control": list(df.control),
        "types": {n: str(t) for n, t in design.types},
        "clock_mhz": design.clock_mhz,
        "overflow": "wrap (two's complement at the output type's width)",
        "step_bits": STEP_BITS, "trip_bits": TRIP_BITS,
    }
    manifest = manifest_core("array", design.name, design.source_hash, text, top, parameters,
                             {"schedule": asdict(compiled.schedule), "formula": CONTRACT_TEXT})
    manifest.update({
        "interfaces": interfaces,
        "operands": plans,
        "pipelining": {
            "clock_target_ns": compiled.clock_period_ns, "delay_table": compiled.target,
            "register_bits": rt.register_bits, "registers_added": sum(rt.extra.values()),
            "naive_register_bits": rt.naive_register_bits, "lp_variables": rt.lp_variables,
            "lp_constraints": rt.lp_constraints,
        },
    })
    return manifest


def write_outputs(out_dir: Path, files: dict[str, str | bytes]) -> dict[str, Path]:
    """Write all files or none (archgen.arch.files.write_all_or_nothing, shared with sim and sweep)."""
    return write_all_or_nothing(out_dir, files)


def manifest_json(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def fused_manifest(fused, top, text: str) -> dict:
    """The manifest of a fused design (rtlgen/fused_array.py): the common core, the interfaces, and per
    dataflow its select value, schedule and operand plans."""
    design = fused.design
    interfaces = []
    for port in fused.ports:
        if port.role is PortRole.COMMAND:
            interfaces.append({"name": port.name, "dir": str(port.direction), "kind": "stream", "bits": port.bits,
                               "fields": [{"name": f.name, "bits": f.bits, "offset": f.offset}
                                          for f in fused.command.fields]})
        elif port.stream:
            interfaces.append({"name": port.name, "dir": str(port.direction), "kind": "stream", "operand": port.operand,
                               "lanes": port.lanes, "lane_bits": port.width, "bits": port.bits,
                               "signed": port.signed})
        else:
            interfaces.append({"name": port.name, "dir": str(port.direction), "kind": "signal", "bits": port.bits})
    per = {}
    for k, view in enumerate(fused.views):
        df = view.dataflow
        per[df.name] = {"select": k, "spatial": {str(a): d for a, d in (df.spatial or ())}, "order": list(df.order),
                        "control": list(df.control), "schedule": asdict(view.schedule),
                        "operands": [{"operand": p.name, "role": str(p.role), "lanes": p.n_lanes}
                                     for p in view.fu_graph.plans]}
    parameters = {"array_shape": list(design.shape), "fused": list(fused.names), "select_field": "dataflow",
                  "types": {n: str(t) for n, t in design.types}, "clock_mhz": design.clock_mhz,
                  "overflow": "wrap (two's complement at the output type's width)",
                  "step_bits": STEP_BITS, "trip_bits": TRIP_BITS, "dataflows": per}
    manifest = manifest_core("array", design.name, design.source_hash, text, top, parameters,
                             {"formula": CONTRACT_TEXT + "; per dataflow with that dataflow's schedule "
                              "(parameters.dataflows.*.schedule), selected by the command's dataflow field"})
    rt = fused.plan.retiming
    manifest.update({"interfaces": interfaces, "fusion": {
        "select_muxes": top.mux_count, "mux_points": len(fused.plan.muxes),
        "register_bits": rt.register_bits, "separate_register_bits": rt.separate_register_bits,
        "lp_variables": rt.lp_variables, "lp_constraints": rt.lp_constraints, "lp_rounds": fused.plan.rounds}})
    return manifest
