"""The fused-design parts of ``archgen build`` and ``archgen verify`` (``--fuse`` or a spec's ``fuse:``).

Kept out of archgen/cli.py, which only calls :func:`fused_dataflows`, :func:`build_fused` and
:func:`verify_fused_cli`. Like the CLI, this module composes every layer (compile, RTL, model, synthesis).
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from archgen.arch.errors import SpecError, ToolMissingError, problem

__all__ = ["fused_dataflows", "build_fused", "build_fused_memory", "fusion_report", "verify_fused_cli", "format_fusion_report"]


def fused_dataflows(design, fuse_arg: str | None, dataflow: str | None, command: str):
    """(design, dataflow names to fuse) or (design, ()) for a single-dataflow run.

    ``--fuse a,b,c`` names dataflows of the spec, or ``SPEC:NAME`` for a dataflow of another spec (a built-in
    name or a file) that computes the same operation on the same array and types; it is added to the
    design under its own name (``SPEC_NAME`` if that clashes). Without ``--fuse`` the spec's ``fuse:`` list
    applies; for ``build``, ``--dataflow`` instead builds that one dataflow's single design, for ``verify`` it
    picks which fused dataflow runs."""
    if fuse_arg is None:
        if design.fuse and (dataflow is None or command == "verify"):
            return design, tuple(design.fuse)
        return design, ()
    if command == "build" and dataflow is not None:
        raise SpecError([problem("--fuse", "give --fuse (one fused design) or --dataflow (one single design), "
                                 "not both", fuse_arg)])
    names = [n.strip() for n in fuse_arg.split(",")]
    if any(not n for n in names):
        raise SpecError([problem("--fuse", "a comma-separated list of dataflow names, e.g. os,ws,is", fuse_arg)])
    out = []
    for entry in names:
        if ":" in entry:
            design, entry = _borrow(design, entry)
        out.append(entry)
    from archgen.dataflow.fusion import check_fusable
    check_fusable(design, out, path="--fuse")
    return design, tuple(out)


def _borrow(design, entry: str):
    """Add dataflow NAME of spec SPEC (``SPEC:NAME``) to ``design``: re-read on this spec's array, refused when
    it computes another operation (arch/spec.py ``borrow_dataflow``)."""
    from archgen.arch.spec import borrow_dataflow
    spec, _, name = entry.rpartition(":")
    names = [d.name for d in design.dataflows]
    new = name if name not in names else f"{spec.rsplit('/', 1)[-1].removesuffix('.yaml')}_{name}"
    if new in names:
        return design, new                     # the same borrowed dataflow named twice: check_fusable says so
    df = borrow_dataflow(design, spec, name, new)
    return dataclasses.replace(design, dataflows=design.dataflows + (df,)), new


# ------------------------------------------------------------------------------------------------
# build

def build_fused(args, design, names, con) -> int:
    from archgen.arch.files import check_output_dir
    from archgen.dataflow.compile import compile_fused
    from archgen.rtlgen.build import fused_manifest, manifest_json, write_outputs
    from archgen.rtlgen.fused_array import fused_verilog

    out = check_output_dir(Path(args.out) if args.out else Path("out") / design.name, "--out")
    t0 = time.perf_counter()
    fused = compile_fused(design, names, pipeline=not args.no_pipeline, target=args.target)
    text, top = fused_verilog(fused)
    manifest = fused_manifest(fused, top, text)
    files = {f"{design.name}.v": text, "manifest.json": manifest_json(manifest)}
    lines = []
    if args.report:
        report = fusion_report(fused, text, top, pipeline=not args.no_pipeline, target=args.target)
        files["report.json"] = json.dumps(report, indent=2, sort_keys=True) + "\n"
        lines = format_fusion_report(report)
    written = write_outputs(out, files)
    con.print(f"built {design.name} ({'x'.join(map(str, design.shape))}, fused dataflows {', '.join(names)}; "
              f"command field 'dataflow' selects {', '.join(f'{i} = {n}' for i, n in enumerate(names))}) in "
              f"{time.perf_counter() - t0:.2f} s: {manifest['verilog_lines']} lines of Verilog", markup=False)
    for p in written.values():
        con.print(f"  wrote {p}", markup=False)
    for line in lines:
        con.print(line, markup=False)
    return 0


def build_fused_memory(args, design, names, con) -> int:
    """``archgen build FUSED_SPEC --memory [--report]``: the fused array with its memory system (rtlgen/build.py
    ``fused_layer_builds``): one layer core for tiled dataflows, the select per layer command; with a skewed map,
    two memory-system builds around one fused array, said so on the console and in the manifest."""
    from archgen.arch.files import check_output_dir
    from archgen.rtlgen.build import (fused_layer_builds, layer_core_report, layer_report_lines, manifest_json,
                                      stt_layer_lines, write_outputs)
    out = check_output_dir(Path(args.out) if args.out else Path("out") / design.name, "--out")
    t0 = time.perf_counter()
    files, manifest = fused_layer_builds(design, names, pipeline=not args.no_pipeline, target=args.target)
    lines, reports = [], {}
    for name, b in manifest["builds"].items():
        bufs = ", ".join(f"{x} {v['banks']} banks x {v.get('words_per_bank', v.get('rows_per_bank'))} words x "
                         f"{v['bits']} bits" + (f" ({v['copies']} copies)" if v.get("copies", 1) > 1 else "")
                         for x, v in b["buffers"].items())
        sel = (f"select {b['select_value']} tied" if "select_value" in b else
               "select per layer: table B field dataflow, " + ", ".join(f"{v} = {k}" for k, v in
                                                                       b["select"]["encoding"].items()))
        lines.append(f"  {name}: {b['file']}, {b['verilog_lines']:,} lines of Verilog, {b['kind']}; {sel}; "
                     f"buffers {bufs}")
        if "command" in b:
            lines += ["  " + x for x in stt_layer_lines(b)]
        if args.report:
            reports[name] = layer_core_report(files[b["file"]], b["top"], design.clock_mhz)
            lines += ["  " + x for x in layer_report_lines(reports[name])]
    files["layer_manifest.json"] = manifest_json(manifest)
    if args.report:
        files["layer_report.json"] = manifest_json(reports)
    written = write_outputs(out, files)
    what = ("ONE layer core, the dataflow selected per layer command" if manifest["one_core"] else
            f"{manifest['memory_system_builds']} memory-system builds around one fused array, NOT one core: a "
            "layer runs on the build of its dataflow")
    con.print(f"built {design.name} ({design.shape_label}, fused dataflows {', '.join(names)}) with its memory system "
              f"in {time.perf_counter() - t0:.2f} s: {what}", markup=False)
    for line in lines:
        con.print(line, markup=False)
    for p in written.values():
        con.print(f"  wrote {p}", markup=False)
    return 0


def _synth(text: str, top: str, ports: list, clock_mhz: float, pnr: bool = True) -> dict:
    """Yosys generic cells, flip-flops and mux cells, and nextpnr-ecp5 Fmax (each 'not run' when missing).
    Place and route runs inside rtlgen/timing_wrapper.py's shift-register wrapper: the arrays have more
    stream pins than the ECP5 package."""
    from archgen.rtlgen.synth import ToolFailedError, nextpnr_ecp5, yosys_stats
    from archgen.rtlgen.timing_wrapper import io_wrapper
    out: dict = {}
    try:
        stats = yosys_stats(text, top)
    except ToolMissingError as err:
        return {"yosys": f"not run: {err}"}
    cells = stats["cells"]
    out["cells"] = stats["total_cells"]
    out["flip_flops"] = sum(n for t, n in cells.items() if "DFF" in t)
    out["mux_cells"] = sum(n for t, n in cells.items() if "MUX" in t)
    out["logic_depth"] = stats["logic_depth"]
    if not pnr:
        return out
    try:
        pnr = nextpnr_ecp5(text + io_wrapper(top, ports), "fmax_wrap", clock_mhz=clock_mhz)
        out["ecp5_fmax_mhz"] = pnr.get("min_fmax_mhz")
        out["ecp5_luts"], out["ecp5_ffs"] = pnr.get("luts"), pnr.get("ffs")
    except (ToolMissingError, ToolFailedError) as err:
        out["ecp5"] = f"not run: {str(err).splitlines()[0]}"
    return out


def _schedule_delta(fused_sch, single_sch) -> dict:
    return {f.name: [getattr(single_sch, f.name), getattr(fused_sch, f.name)]
            for f in dataclasses.fields(single_sch) if getattr(single_sch, f.name) != getattr(fused_sch, f.name)}


def fusion_report(fused, text: str, top, *, pipeline: bool = True, target: str = "asic",
                  bounds: dict | None = None, synth: bool = True, pnr: bool = True) -> dict:
    """Cost of fusion: the fused design's synthesis figures next to each single design's and their sum, and
    each dataflow's cycles on a reference problem in the fused and in the single design (the cycle model,
    which the Verilator regression holds equal to the RTL for both), with the schedule constants that differ."""
    from archgen.dataflow.compile import compile_array
    from archgen.mappings.tiling import map_problem
    from archgen.rtlgen.build import array_verilog
    from archgen.sim.array_model import simulate_array

    design = fused.design
    bounds = dict(bounds or design.reference_bounds)
    plan = fused.plan
    report = {"dataflows": list(fused.names), "reference_problem": bounds,
              "select_muxes_rtl": top.mux_count, "mux_points_lp": len(plan.muxes),
              "fu_inputs_with_several_sources": len(plan.fu_merge.mux_inputs),
              "fu_edges_shared": plan.fu_merge.shared_edges, "lp_rounds": plan.rounds,
              "register_bits": {"fused": plan.retiming.register_bits,
                                "sum_of_singles": plan.retiming.separate_register_bits},
              "lp_solve_s": round(plan.retiming.solve_time_s, 3), "integral_lp": plan.retiming.integral_lp,
              "skewed_maps": [v.dataflow.name for v in fused.views if hasattr(v, "network")]}
    singles = {}
    cycles = {}
    for name, view in zip(fused.names, fused.views):
        # a folded map beside dataflows that fold otherwise: its single design is on its own logical array
        single = compile_array(design.alone(name), name, pipeline=pipeline, target=target)
        if hasattr(view, "network"):        # a skewed stt map: box tilings; the shared stages may differ
            from archgen.dataflow.stt_array import stt_tiling
            f_cyc = simulate_array(view, stt_tiling(view.network, bounds)).total_cycles
            s_cyc = simulate_array(single, stt_tiling(single.network, bounds)).total_cycles
            a, n = single.network.product_stages, view.network.product_stages
            changes = {} if a == n else {"product_stages": [a, n]}
        else:
            mapping = map_problem(view.design, bounds, view.dataflow)
            f_cyc = simulate_array(view, mapping).total_cycles
            s_cyc = simulate_array(single, mapping).total_cycles
            changes = _schedule_delta(view.schedule, single.schedule)
        cycles[name] = {"fused": f_cyc, "single": s_cyc, "schedule_changes": changes}
        if synth:
            s_text, s_manifest = array_verilog(single)
            singles[name] = _synth(s_text, design.name, s_manifest["ports"], design.clock_mhz, pnr)
    report["cycles"] = cycles
    if synth:
        from archgen.rtlgen.manifest import signature_ports
        report["synthesis"] = {"fused": _synth(text, design.name, signature_ports(top), design.clock_mhz, pnr),
                               "single": singles}
        keys = ("cells", "flip_flops", "mux_cells")
        if all(k in s for s in singles.values() for k in keys):
            report["synthesis"]["sum_of_singles"] = {k: sum(s[k] for s in singles.values()) for k in keys}
    return report


def format_fusion_report(report: dict) -> list[str]:
    lines = [f"  fusion of {', '.join(report['dataflows'])}: {report['select_muxes_rtl']} select muxes in the RTL "
             f"({report['fu_inputs_with_several_sources']} FU inputs with several sources, "
             f"{report['fu_edges_shared']} FU-graph edges shared); LP register bits fused "
             f"{report['register_bits']['fused']} vs {report['register_bits']['sum_of_singles']} summed over the "
             f"single designs ({report['lp_rounds']} LP solve(s), {report['lp_solve_s']} s)"
             + (f"; skewed stt map(s) {', '.join(report['skewed_maps'])} share the multipliers through operand "
                "muxes on every FU (their chains are their own)" if report.get("skewed_maps") else "")]
    syn = report.get("synthesis")
    if syn:
        head = f"  {'design':<18}{'cells':>8}{'flip-flops':>12}{'mux cells':>11}{'ECP5 Fmax':>14}"
        lines += ["  Yosys generic synthesis (cells) and nextpnr-ecp5 (LFE5U-85F) post-route Fmax:", head]

        def row(label, s):
            if "cells" not in s:
                return f"  {label:<18}{s.get('yosys', 'not run'):>8}"
            fmax = s.get("ecp5_fmax_mhz")
            return (f"  {label:<18}{s['cells']:>8}{s['flip_flops']:>12}{s['mux_cells']:>11}"
                    f"{(f'{fmax:.1f} MHz' if fmax else 'not run'):>14}")

        lines.append(row("fused", syn["fused"]))
        for name, s in syn["single"].items():
            lines.append(row(f"single {name}", s))
        total = syn.get("sum_of_singles")
        if total:
            lines.append(f"  {'sum of singles':<18}{total['cells']:>8}{total['flip_flops']:>12}{total['mux_cells']:>11}")
            if "cells" in syn["fused"]:
                lines.append(f"  fused / sum of singles: {syn['fused']['cells'] / total['cells']:.2f} of the cells")
    b = report["reference_problem"]
    lines.append(f"  cycles on the reference problem {', '.join(f'{k}={v}' for k, v in b.items())} "
                 "(cycle model of the array alone, not run on Verilator here; `archgen verify SPEC --ideal-dram "
                 f"--bounds {','.join(f'{k}={v}' for k, v in b.items())}` checks the fused design's RTL against it):")
    for name, c in report["cycles"].items():
        diff = c["fused"] - c["single"]
        why = ""
        if diff:
            changes = ", ".join(f"{k} {a} -> {n}" for k, (a, n) in c["schedule_changes"].items())
            cause = ("the shared multipliers' stages delay the partial sums" if "product_stages" in c["schedule_changes"]
                     else "the mux stages move the schedule")
            why = f" ({diff:+d} cycles: {cause}: {changes})"
        elif c["schedule_changes"]:
            why = (" (equal; schedule constants that differ without costing cycles: "
                   + ", ".join(f"{k} {a} -> {n}" for k, (a, n) in c["schedule_changes"].items()) + ")")
        lines.append(f"    {name:<6} fused {c['fused']} cycles, single {c['single']} cycles"
                     + (" (equal)" if not diff and not why else why))
    return lines


# ------------------------------------------------------------------------------------------------
# verify

def verify_fused_cli(args, design, names, bounds, con, planner: dict | None = None) -> int:
    """Each fused dataflow (or ``--dataflow``) on the fused design: the array alone with ideal streams
    (``--ideal-dram``), or the whole layer through the memory system with the select from the layer.
    ``planner``: ``--mapper`` as keyword arguments of ``verify_layer`` (how each tiled layer is planned)."""
    planner = planner or {}
    from archgen.verif.fused_check import verify_fused
    from archgen.verif.layer_check import format_layer_verification, verify_layer
    if args.dataflow and args.dataflow not in names:
        raise SpecError([problem("--dataflow", f"dataflow {args.dataflow!r} is not fused in this design; fused: "
                                 f"{', '.join(names)}", args.dataflow)])
    which = [args.dataflow] if args.dataflow else list(names)
    # two or more tiled dataflows share the ONE layer core `build --memory` writes (rtlgen/fused_layer.py): that
    # core is what runs, their layers one after another in one simulation, each selected by its command; a
    # skewed map (or a lone tiled dataflow beside one) runs on its own memory-system build around the fused
    # array, as `build --memory` writes it too
    # (a folded map beside dataflows that fold otherwise runs on its own logical array: its own build too)
    tiled = [n for n in names if not design.dataflow(n).skewed and design.alone(n) is design]
    ok = True
    if not args.ideal_dram and len(tiled) >= 2 and any(n in tiled for n in which):
        from archgen.verif.fused_program_check import verify_fused_program
        shared = [n for n in which if n in tiled]
        how = ("one after another in ONE simulation of the one layer core of `build --memory` (no rebuild, no "
               "reset)" if len(shared) > 1 else "on the one layer core of `build --memory`")
        con.print(f"{design.name}: fused {'+'.join(names)}, running "
                  f"{', '.join(f'{n} (command field dataflow = {names.index(n)})' for n in shared)} {how}",
                  markup=False)
        for lres in verify_fused_program(design, [(n, bounds) for n in shared], seed=args.seed, fuse=names,
                                         **planner):
            for line in format_layer_verification(lres, args.seed):
                con.print(line, markup=False)
            ok = ok and lres.ok
        which = [n for n in which if n not in shared]
    for name in which:
        core = "" if args.ideal_dram else "; on its own memory-system build around the fused array"
        con.print(f"{design.name}: fused {'+'.join(names)}, running {name} (command field dataflow = "
                  f"{names.index(name)}){core}", markup=False)
        if not args.ideal_dram and design.dataflow(name).skewed:   # the stt layer core around the fused array
            from archgen.verif.stt_layer_check import verify_stt_layer
            lres = verify_stt_layer(design, bounds, seed=args.seed, dataflow=name, fuse=names)
        elif not args.ideal_dram:
            lres = verify_layer(design, bounds, seed=args.seed, dataflow=name, fuse=names, **planner)
        if not args.ideal_dram:
            for line in format_layer_verification(lres, args.seed):
                con.print(line, markup=False)
            ok = ok and lres.ok
            continue
        res = verify_fused(design, names, bounds, name, seed=args.seed)
        con.print(f"{design.name} / {name}  problem {res.bounds}  seed {args.seed}", markup=False)
        con.print(f"  outputs: {'exact' if res.outputs_exact else 'WRONG'}"
                  + ("" if res.outputs_exact else f" ({res.detail.get('mismatches')} beats differ; first "
                                                    f"{res.detail.get('first_mismatch')})"), markup=False)
        con.print(f"  RTL cycles:   {res.rtl_cycles} cycles", markup=False)
        con.print(f"  model cycles: {res.model_cycles} cycles  "
                  f"({'equal' if res.rtl_cycles == res.model_cycles else 'DIFFERENT'})", markup=False)
        ok = ok and res.ok
    return 0 if ok else 1
