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
from archgen.dataflow.interconnect import as_written, psum_round_text
from archgen.dataflow.ir import STEP_BITS, TRIP_BITS, PortRole
from archgen.mappings.tiling import row_pads

from .array import ArrayTop
from .manifest import manifest_core

__all__ = ["build_array", "array_verilog", "array_manifest", "fused_manifest", "write_outputs", "manifest_json",
           "CONTRACT_TEXT", "layer_core_verilog", "layer_core_report", "write_layer_build", "fused_layer_builds",
           "fused_command_constants", "layer_limits", "fused_layer_core_verilog"]

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
    if not isinstance(compiled, CompiledArray):          # a skewed stt map (dataflow/stt_array.py)
        from .stt_array import stt_array_verilog
        return stt_array_verilog(compiled)
    top = ArrayTop(compiled)
    text = verilog.convert(top, name=compiled.design.name, emit_src=False)
    return text, array_manifest(compiled, top, text)


def port_interfaces(ports, command) -> list[dict]:
    """The manifest's ``interfaces``: the command stream with its fields, the operand streams, the signals."""
    interfaces = []
    for port in ports:
        if port.role is PortRole.COMMAND:
            interfaces.append({"name": port.name, "dir": str(port.direction), "kind": "stream", "bits": port.bits,
                               "fields": [{"name": f.name, "bits": f.bits, "offset": f.offset}
                                          for f in command.fields]})
        elif port.stream:
            interfaces.append({"name": port.name, "dir": str(port.direction), "kind": "stream", "operand": port.operand,
                               "lanes": port.lanes, "lane_bits": port.width, "bits": port.bits,
                               "signed": port.signed})
        else:
            interfaces.append({"name": port.name, "dir": str(port.direction), "kind": "signal", "bits": port.bits})
    return interfaces


def array_manifest(compiled: CompiledArray, top: ArrayTop, text: str) -> dict:
    """The common manifest (rtlgen/manifest.py) plus the array's interfaces, operand plans and pipelining."""
    design, df, fg = compiled.design, compiled.dataflow, compiled.fu_graph
    rt = compiled.retimed
    interfaces = port_interfaces(compiled.ports, compiled.command)
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
    if df.one_step_tile():
        parameters["tile"] = df.one_step_tile()
    written = as_written(design, df)            # the tile as the spec gives it, before psum_rounds moved loops out
    moved = psum_round_text(design, written) if written is not None else None
    if moved:
        parameters["tile"] = moved
    if design.placement:        # a folded map (arch/spec.py _fold): array_shape is the logical array
        parameters.update(physical_shape=list(design.physical_shape),
                          placement=[[list(lg), list(ph)] for lg, ph in design.placement])
    pads = row_pads(design, df)
    if pads:                    # the map's own schedule: rows of each loop padded by its span, FU s sigma_l.s late
        parameters.update(schedule="map", padded_loops=[{"loop": p.loop, "sigma": list(p.sigma),
                                                         "span": p.span(design.shape), "halo": p.halo} for p in pads])
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
    interfaces = port_interfaces(fused.ports, fused.command)
    per = {}
    for k, view in enumerate(fused.views):
        df = view.dataflow
        if hasattr(view, "network"):        # a skewed stt map (dataflow/fusion.py fused_stt_view)
            net = view.network
            per[df.name] = {"select": k, "stt": [list(r) for r in df.stt], "order": list(df.order),
                            "product_stages": net.product_stages, "validity_tag_carrier": net.carrier,
                            "operands": [{"operand": h.name, "hop": list(h.ds), "registers_per_hop": h.dt,
                                          "lanes": net.lanes(h.name)} for h in net.hops]}
            continue
        per[df.name] = {"select": k, "spatial": {str(a): d for a, d in (df.spatial or ())}, "order": list(df.order),
                        "control": list(df.control), "schedule": asdict(view.schedule),
                        "operands": [{"operand": p.name, "role": str(p.role), "lanes": p.n_lanes}
                                     for p in view.fu_graph.plans]}
        if view.design is not design and view.design.placement:     # a folded map on its own logical array
            per[df.name].update(array_shape=list(view.design.shape),
                                placement=[[list(lg), list(ph)] for lg, ph in view.design.placement])
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


# ------------------------------------------------------------------------------------------------
# the whole accelerator (array + memory system): the synthesizable layer top (rtlgen/layer_top.py)

_ZERO_MEM_INIT = None


def strip_zero_memory_init(text: str) -> str:
    """Drop the all-zero ``initial`` blocks Amaranth writes for memories without an init: the buffers are
    written (by the DMA or the array) before any unmasked read, and the descriptor tables by the host
    before ``go``, so their power-on content never matters; left in, they are tens of thousands of lines."""
    import re
    global _ZERO_MEM_INIT
    if _ZERO_MEM_INIT is None:
        _ZERO_MEM_INIT = re.compile(r"  initial begin\n(?:    [\w$\\]+\[\d+\] = \d+'[hd]0+;\n)+  end\n")
    return _ZERO_MEM_INIT.sub("", text)


def fused_command_constants(fused, name: str) -> dict:
    """The fused array's command fields that a memory-system build of its dataflow ``name`` ties to constants:
    the select (``dataflow`` = the index of ``name`` in the fuse list) and a trip count of 1 for every loop
    the dataflow's own layer controller does not fill (a skewed map's core fills none of them)."""
    from archgen.dataflow.fusion import SELECT_FIELD
    view = fused.view(name)
    own = set() if hasattr(view, "network") else {f.loop for f in view.command.fields}
    fields = {f.name: 1 for f in fused.command.fields if f.loop is not None and f.loop not in own}
    fields[SELECT_FIELD] = fused.index(name)
    return fields


def _field_entry(fmt, name: str, bits: int) -> dict:
    """A command field for the manifest: a field in two's complement (``DescriptorFormat.signed``: walk strides
    and lane-group offsets that may be negative) says so, so a host reading only the manifest packs it right."""
    return {"name": name, "bits": bits, **({"signed": True} if name in fmt.signed else {})}


def _core_manifest(design: Design, core) -> dict:
    """A layer core's buffers (banks, words, copies), DRAM port and descriptor tables, for its manifest."""
    from archgen.rtlgen.layer_top import buffer_copies
    mem, fmt, copies = design.memory_system, core.fmt, buffer_copies(core.prog, core.alt_walks)
    return {
        "buffers": {x: {"banks": lay.banks, "words_per_bank": lay.depth, "bits": 8 * lay.elem_bytes,
                        "halves": lay.halves, "copies": copies[x]}
                    for x, lay in core.prog.layouts.items()},
        "dram": {"width_bytes": mem.dram.width_bytes, "latency": mem.dram.latency,
                 "burst_bytes": mem.dram.burst_bytes, "outstanding": mem.dram.outstanding},
        "descriptor_tables": {t: {"rows": fmt.depth(t), "bits": fmt.width(t),
                                  "fields": [_field_entry(fmt, n, w) for n, w in f]}
                              for t, f in fmt.tables.items()},
    }


def layer_core_verilog(design: Design, dataflow: str | None = None, *, pipeline: bool = True,
                       target: str = "asic", fused=None) -> tuple[str, str, dict]:
    """(Verilog text, top name, manifest) of the synthesizable whole accelerator for one dataflow: the
    array, the spec's buffers at their full size, the DMA with an external DRAM port and the layer
    controller with its run-time command interface (one build runs every layer of the dataflow).
    ``fused`` (``compile_fused``): the array is that fused array, run as its dataflow ``dataflow`` (its
    view's timing; the select and the loops this controller does not fill tied, ``fused_command_constants``)."""
    from archgen.dataflow.memctl import layer_program, probe_command
    from archgen.rtlgen.layer_top import LayerCore
    if fused is not None:
        from archgen.rtlgen.fused_array import FusedArrayTop
        compiled = fused.view(dataflow)
        array, fields = FusedArrayTop(fused), fused_command_constants(fused, dataflow)
        name = f"{design.name}_{dataflow}_layer"
    else:
        compiled = compile_array(design, dataflow, pipeline=pipeline, target=target)
        array, fields, name = None, None, f"{design.name}_layer"
    prog = layer_program(compiled, probe_command(compiled.design, compiled.dataflow), "probe", spec_size=True)
    core = LayerCore(prog, array=array, command_fields=fields)
    text = strip_zero_memory_init(verilog.convert(core, name=name, ports=core.ports(), emit_src=False))
    manifest = {"top": name, "dataflow": compiled.dataflow.name, "array_shape": list(design.shape),
                **_core_manifest(design, core)}
    if fused is not None:
        manifest["array_command_tied"] = dict(sorted(fields.items()))
        manifest["layer_limits"] = layer_limits(prog, core.fmt)
    return text, name, manifest


def layer_limits(prog, fmt) -> dict:
    """What bounds the layers a layer core runs (each refused by name when a command exceeds it): the block
    counters, the command fields, one block per buffer half, DRAM word addresses."""
    from archgen.dataflow.memctl import BLOCK_COUNT_BITS, DRAM_WORD_BITS, WALK_COUNTER_BITS
    trips = {n: w for n, w in fmt.tables["S"] if n.startswith("trips_")}
    return {"blocks_per_level_max": (1 << WALK_COUNTER_BITS) - 1, "blocks_max": (1 << BLOCK_COUNT_BITS) - 1,
            "array_trips_max": {n[6:]: (1 << w) - 1 for n, w in trips.items()},
            "block_bytes_max": {x: lay.half_elems * lay.elem_bytes for x, lay in prog.layouts.items()},
            "dram_words_max": 1 << DRAM_WORD_BITS, "shape_table_rows": fmt.depth("S"),
            "rule": "any layer of the dataflow whose blocks fit these (the planner and make_command refuse "
                    "others by field: layers.<L>.tile, memory.<T>.bytes)"}


def layer_core_report(text: str, top: str, clock_mhz: float, *, pnr: bool = True) -> dict:
    """ECP5 synthesis of the layer top (one ``synth_ecp5`` run): Yosys cells (DP16KD = block RAM) and,
    when ``pnr`` and installed, nextpnr-ecp5 placement, routing and Fmax on the same netlist."""
    from archgen.arch.errors import ToolMissingError
    from archgen.rtlgen.synth import ecp5_synth_pnr, find_tool
    try:
        find_tool("yosys")
    except ToolMissingError as err:
        return {"yosys": f"not run: {err}"}
    note = None
    if pnr:
        try:
            find_tool("nextpnr-ecp5")
        except ToolMissingError as err:
            pnr, note = False, f"not run: {err}"
    res = ecp5_synth_pnr(text, top, clock_mhz=clock_mhz, pnr=pnr)
    cells = res["cells"]
    report = {"yosys_cells": res["total_cells"], "dp16kd": int(cells.get("DP16KD", 0)), "yosys_cells_by_type": cells}
    if res["pnr"] is not None:
        report["ecp5"] = {k: res["pnr"][k] for k in ("device", "min_fmax_mhz", "luts", "ffs", "dsps", "dp16kd_used",
                                                      "timing_met")}
    elif note:
        report["ecp5"] = note
    return report


def stt_layer_lines(manifest: dict) -> list[str]:
    """What ``build --memory`` prints for an stt layer core (rtlgen/stt_layer.py ``stt_layer_verilog``)."""
    cmd = manifest["command"]
    return [f"  one build for every layer: boxes of {manifest['box']}, one every {manifest['period_slots']} "
            f"slots; each layer is a command of {cmd['bits']:,} bits ({cmd['words']} words of "
            f"{cmd['word_bits']} bits: trip counts, extents, strides, region bases, phase-table entries) "
            f"the host writes before go; on chip "
            f"{sum(b['bytes'] for b in manifest['buffers'].values()):,} B in banked buffers "
            f"(memory.<T>.bytes, rounded down to whole bank rows); example layer {manifest['layer']}: "
            f"{manifest['example_command']['cycles']:,} cycles"]


def layer_report_lines(report: dict) -> list[str]:
    """What ``build --memory --report`` prints for one layer core's ``layer_core_report``."""
    ecp5 = report.get("ecp5")
    if "yosys" in report:
        lines = [f"  yosys: {report['yosys']}"]
    else:
        lines = [f"  yosys (synth_ecp5): {report['yosys_cells']} cells, {report['dp16kd']} DP16KD block RAMs"]
    if isinstance(ecp5, dict):
        lines.append(f"  nextpnr-ecp5 ({ecp5['device']}): Fmax {ecp5['min_fmax_mhz']} MHz, {ecp5['luts']} LUTs, "
                     f"{ecp5['ffs']} FFs, {ecp5['dp16kd_used']} DP16KD")
    elif ecp5 is not None:
        lines.append(f"  nextpnr-ecp5: {ecp5}")
    return lines


def write_layer_build(design: Design, args, out: Path, con) -> int:
    """``archgen build SPEC --memory [--report]``: the layer top's Verilog, its manifest (buffers, DRAM
    port, descriptor fields) and, with ``--report``, ECP5 synthesis figures."""
    import time
    t0 = time.perf_counter()
    lines = []
    if design.dataflow(args.dataflow).skewed:          # a skewed stt map: its own memory system (rtlgen/stt_layer.py)
        from .stt_layer import stt_layer_verilog
        text, top, manifest = stt_layer_verilog(design, args.dataflow)
        lines += stt_layer_lines(manifest)
        if args.no_pipeline or args.target != "asic":   # said, not silently dropped (docs/dataflows.md, Skewed maps)
            lines.append("  note: a skewed stt map's array is built with the registers its schedule needs and no LP "
                         "pipelining, so --no-pipeline and --target change nothing in this build")
    else:
        text, top, manifest = layer_core_verilog(design, args.dataflow, pipeline=not args.no_pipeline,
                                                 target=args.target)
    files = {f"{top}.v": text, "layer_manifest.json": manifest_json(manifest)}
    if args.report:
        report = layer_core_report(text, top, design.clock_mhz)
        files["layer_report.json"] = manifest_json(report)
        lines += layer_report_lines(report)
    written = write_outputs(out, files)
    con.print(f"built {top} (array {design.shape_label} with its memory system, dataflow "
              f"{manifest['dataflow']}) in {time.perf_counter() - t0:.2f} s: {text.count(chr(10))} lines of Verilog",
              markup=False)
    for p in written.values():
        con.print(f"  wrote {p}", markup=False)
    for line in lines:
        con.print(line, markup=False)
    return 0


def fused_layer_core_verilog(fused, *, names=None) -> tuple[str, str, dict]:
    """(Verilog text, top name, manifest) of ONE synthesizable layer core for the tiled dataflows of a fused
    design (rtlgen/fused_layer.py ``FusedLayerCore``): buffers at the spec's sizes, one DRAM port, the
    command tables of every dataflow with the select field ``dataflow`` in table B."""
    from archgen.dataflow.fusion import SELECT_FIELD
    from archgen.dataflow.memctl import descriptor_format
    from archgen.rtlgen.fused_layer import FusedLayerCore, fused_layer_programs
    design = fused.design
    progs = fused_layer_programs(fused, names)
    core = FusedLayerCore(fused, progs)
    name = f"{design.name}_layer"
    text = strip_zero_memory_init(verilog.convert(core, name=name, ports=core.ports(), emit_src=False))
    manifest = {
        "top": name, "dataflows": list(progs), "array_shape": list(design.shape),
        "select": {"table": "B", "field": SELECT_FIELD, "bits": dict(core.fmt.tables["B"])[SELECT_FIELD],
                   "encoding": {n: fused.index(n) for n in progs},
                   "rule": "a layer of dataflow D: D's walker command (layer_program of D's fused view) in these "
                           "tables, field dataflow = D's value; fields D does not use are 0"},
        **_core_manifest(design, core),
        "array_ports_walked": {n: [w.port for w in p.walks] for n, p in progs.items()},
        "layer_limits": {n: layer_limits(p, descriptor_format(p)) for n, p in progs.items()},
    }
    return text, name, manifest


def _folded_note(fused) -> str:
    """The part of the note on a fused design's memory-system builds that a folded map beside others adds."""
    own = [n for n in fused.names if not hasattr(fused.view(n), "network") and fused.view(n).design is not fused.design]
    return "".join(f"; {n} is a folded map run on its own logical {'x'.join(map(str, fused.view(n).design.shape))} "
                   "array (its lanes and buffer layouts are that array's), so it has its own tiled layer core"
                   for n in own)


def fused_layer_builds(design: Design, names, *, pipeline: bool = True, target: str = "asic") -> tuple[dict, dict]:
    """``archgen build FUSED_SPEC --memory``: the fused array (``compile_fused``) with its memory system. The
    tiled dataflows (two or more) share ONE layer core, the dataflow selected per layer command
    (``fused_layer_core_verilog``); a skewed map gets its own stt layer core around the same fused array (its
    select tied); a lone tiled dataflow beside a map the tiled layer core with its select tied
    (``layer_core_verilog``). So the files are one core, or (with a skewed map) two memory-system builds
    around one fused array. Returns ({file name: Verilog text}, the layer manifest)."""
    from archgen.dataflow.compile import compile_fused
    from archgen.dataflow.fusion import SELECT_FIELD
    from .fused_layer import tiled_fused_names
    from .stt_layer import stt_layer_verilog
    fused = compile_fused(design, names, pipeline=pipeline, target=target)
    tiled = tiled_fused_names(fused)
    texts, builds = {}, {}
    if len(tiled) >= 2:
        text, top, man = fused_layer_core_verilog(fused, names=tiled)
        texts[f"{top}.v"] = text
        builds["+".join(tiled)] = {"file": f"{top}.v", "kind": "one tiled layer core for "
                                   f"{', '.join(tiled)} (rtlgen/fused_layer.py FusedLayerCore)",
                                   "verilog_lines": text.count("\n"), **man}
    for name in fused.names:
        if name in tiled and len(tiled) >= 2:
            continue
        if hasattr(fused.view(name), "network"):
            text, top, man = stt_layer_verilog(design, name, fused=fused)
            kind = f"stt layer core (rtlgen/stt_layer.py) for {name}"
        else:
            text, top, man = layer_core_verilog(design, name, pipeline=pipeline, target=target, fused=fused)
            kind = f"tiled layer core (rtlgen/layer_top.py LayerCore) for {name}"
        texts[f"{top}.v"] = text
        builds[name] = {"file": f"{top}.v", "kind": kind, "select_value": fused.index(name),
                        "verilog_lines": text.count("\n"), **man}
    one = len(builds) == 1
    manifest = {
        "design": design.name, "array_shape": list(design.shape), "fused": list(fused.names),
        "select_field": SELECT_FIELD, "select_encoding": {n: fused.index(n) for n in fused.names},
        "one_core": one, "memory_system_builds": len(builds),
        "note": ("one layer core: the fused array, one memory system, the dataflow selected per layer command "
                 "(table B field dataflow)" if one else
                 f"{len(builds)} memory-system builds around one fused array, not one core: a skewed map's stt "
                 "layer core and the tiled dataflows' layer core each drive their own copy of the fused array "
                 "(docs/memory.md 'Not built: one core for both dataflows, switching per layer'); the host runs "
                 "a layer on the build of its dataflow" if not _folded_note(fused) else
                 f"{len(builds)} memory-system builds around one fused array, not one core (each drives its own "
                 f"copy of the fused array; the host runs a layer on the build of its dataflow)" + _folded_note(fused)),
        "builds": builds}
    return texts, manifest
