"""``archgen build`` for SpAtten specs: the engine's Verilog, its manifest, and synthesis reports.

:func:`build_spatten` is deterministic (no source locations, no timestamps): the same spec gives the
same bytes. The manifest records the spec and its hash, the derived parameters (lanes, fixed-point
formats, pipeline latencies), the module list, every top-level port with direction and width, and the
cycle contract the cycle model (archgen.sim.spatten_model) reproduces.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from amaranth.back import verilog

from archgen.arch.spatten_spec import SpattenSpec, spatten_formats, spec_hash
from archgen.dataflow.spatten_arrays import spatten_arrays, spatten_latencies
from archgen.dataflow.spatten_stages import TOPK_ENGINES
from archgen.rtlgen.spatten_core import SpattenCore

from .manifest import manifest_core

__all__ = ["build_spatten", "write_spatten_build", "spatten_manifest", "spatten_cells_by_unit", "CYCLE_CONTRACT",
           "UNIT_OF_MODULE"]

CYCLE_CONTRACT = {
    "measured": "rising edges from the cmd handshake to the cycle in which done is high; query stream "
                "offers each query at once, out always ready",
    "command": "stages QxK | softmax sweep | divider + PQ decision + hold slot | back (top-k, PxV, output) "
               "overlap consecutive queries; a row that cannot need its LSBs leaves the softmax stage when "
               "the divider takes it, one that may holds it until its decision; an LSB refetch reruns QxK "
               "into the same score bank; done in cycle b_free(last) (docs/spatten.md, "
               "archgen.sim.spatten_model.command_stream_cycles)",
    "qk": "1 + G + qk_pipe, G = ceil(n_keys / lanes)",
    "exp": "G + exp_pipe (go to the last exponential)",
    "div": "recip, then pq_decide",
    "back": "topk + pv + output",
    "topk": "0 when keep_k >= n_keys, else topk_handoff + the top-k engine's cycles from its command "
            "handshake (in the take cycle) to done, when the PxV stage may take the row "
            "(archgen.sim.topk_model.simulate_topk on the row's exponentials); two engines take rows in turn",
    "pv": "G + pv_pipe",
    "dram": "keys and values are separate loads: a command is offered once its keys are in, a row's PxV "
            "waits for its command's values (v_loaded); keys_free pulses at the last use of a command's "
            "keys; a one-query command pruned by local-V without dense_ok loads its kept value rows once "
            "v_fetch gives its keep mask on v_mask (archgen.sim.spatten_model.SplitLoads, after_mask)",
    "model": "archgen.sim.spatten_model.core_cycles / query_cycles",
}

# Which engine unit each generated Verilog module belongs to (Amaranth names submodules by path).
UNIT_OF_MODULE = (("qk", "qk_array"), ("pv", "pv_array"), ("softmax", "softmax"), ("norm", "normalize"),
                  ("pq", "pq_decision"), *((f"topk{e}", "topk") for e in range(TOPK_ENGINES)),
                  ("tok_imp", "token_importance"), ("head_imp", "head_importance"))


def spatten_manifest(spec: SpattenSpec, core: SpattenCore, text: str) -> dict:
    """The common manifest (rtlgen/manifest.py) plus the spec, the arrays' summary and notes."""
    parameters = {"lanes": spec.lanes, "groups": spec.groups, "formats": asdict(spatten_formats(spec)),
                  "latencies": asdict(spatten_latencies(spec))}
    manifest = manifest_core("spatten", spec.name, spec_hash(spec), text, core, parameters, CYCLE_CONTRACT)
    manifest.update({
        "spec": spec.to_dict(runtime=False),
        "arrays": spatten_array_summary(spec),
        "notes": ["QxK and PxV are generated from units.qk.operation / units.pv.operation by the dataflow "
                  "analysis and LP pipelining (archgen.dataflow.spatten_arrays)",
                  "interface and formats: docs/spatten.md"],
    })
    return manifest


def spatten_array_summary(spec: SpattenSpec) -> dict:
    """What the manifest records of the two multiplier arrays: einsum, mapping, plans and pipeline."""
    out = {}
    for unit, arr in spatten_arrays(spec).items():
        fg, tm = arr.fg, arr.timing
        out[unit] = {
            "operation": arr.design.operation.__str__(),
            "array_shape": list(fg.shape),
            "control": list(fg.control),
            "roles": dict(arr.roles),
            "plans": {p.name: {"role": p.role, "lanes": p.n_lanes, "tree_axes": list(p.tree_axes)}
                      for p in fg.plans},
            "latency_cycles": arr.latency,
            "clock_period_ns": tm.retimed.clock_period_ns,
            "register_bits": tm.retimed.register_bits,
            "naive_register_bits": tm.retimed.naive_register_bits,
            "lp_variables": tm.retimed.lp_variables, "lp_constraints": tm.retimed.lp_constraints,
            "multiplier_internal_stages": max((p.internal_stages for p in tm.prim.primitives.values()), default=0),
        }
    return out


def build_spatten(spec: SpattenSpec) -> tuple[str, dict]:
    """(Verilog text of the attention core, top module ``spec.name``; manifest dict)."""
    core = SpattenCore(spec)
    text = verilog.convert(core, name=spec.name, emit_src=False)
    return text, spatten_manifest(spec, core, text)


def spatten_cells_by_unit(verilog_text: str | Path, top: str) -> dict:
    """Generic Yosys ``synth`` cell counts per engine unit (``--report``); memories may stay $mem cells.

    Returns ``{"units": {unit: cells}, "modules": {module: cells}, "total_cells": n, "logic_depth": n}``
    (``logic_depth``: the longest register-to-register path in generic cells, Yosys ``ltp -noff``); cells of the
    top module itself (key/value/probability buffers, keep bits, accumulators, control) are reported as
    ``core``; the QxK and PxV arrays as ``qk_array`` and ``pv_array``.
    """
    from archgen.rtlgen.synth import yosys_stats

    stats = yosys_stats(verilog_text, top, target="generic")
    units: dict[str, int] = {}
    per_module = {}
    for name, mod in stats["modules"].items():
        per_module[name] = mod["total_cells"]
        # Amaranth names a submodule's Verilog module by its path: top.softmax, top.topk.pack_l.ze, ...
        # (Yosys may suffix a uniquified copy with "$<n>", e.g. top.tok_imp$362.)
        parts = name.split(".")
        sub = parts[1].split("$")[0] if len(parts) > 1 else ""
        unit = "core" if len(parts) == 1 else dict(UNIT_OF_MODULE).get(sub, sub)
        units[unit] = units.get(unit, 0) + mod["total_cells"]
    return {"units": dict(sorted(units.items())), "modules": dict(sorted(per_module.items())),
            "total_cells": stats["total_cells"], "logic_depth": stats.get("logic_depth")}


def write_spatten_build(spec: SpattenSpec, out_dir: str | Path, *, report: bool = False) -> dict[str, Path]:
    """Write ``<name>.v`` and ``manifest.json`` (and with ``report`` the cells by unit into the manifest and
    ``cells_by_unit.json``) into ``out_dir``, all or nothing. Returns the written paths by file name."""
    from archgen.rtlgen.build import write_outputs

    text, manifest = build_spatten(spec)
    files: dict[str, str] = {f"{spec.name}.v": text}
    if report:
        cells = spatten_cells_by_unit(text, spec.name)
        manifest = {**manifest, "cells_by_unit": cells}
        files["cells_by_unit.json"] = json.dumps(cells, indent=2, sort_keys=True) + "\n"
    files["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    return write_outputs(Path(out_dir), files)
