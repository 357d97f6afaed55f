"""The ``archgen`` command: build, sim, verify, sweep, list, doctor.

The composition root: it may import every layer. Library code raises; this module turns ArchgenError
into a message on stderr and an exit status (2: bad input or a check that failed, 3: a tool is missing),
never a traceback for a user's mistake.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from archgen import __version__
from archgen.arch.errors import ArchgenError, SpecError, ToolMissingError, problem
from archgen.limits import (guard_array_workload, guard_design_size, guard_int, guard_spatten_workload,
                            guard_verify_problem, running_mapping)

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_TOOL = 0, 1, 2, 3


class UsageError(ArchgenError):
    """A command line argparse cannot read (unknown option, missing value, not a number)."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and calling sys.exit from inside."""

    def error(self, message):
        raise UsageError(f"{message}; see '{self.prog} --help'")


def _console():
    from rich.console import Console
    # piped output (logs, CI) gets a wide fixed width so tables do not wrap into unreadable columns
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


# ------------------------------------------------------------------------------------------------
# spec loading shared by every command

def _raw_spec(name: str, overrides):
    from archgen.arch.spec import apply_overrides, find_spec, read_spec_file
    path = find_spec(name)
    data = read_spec_file(path)
    if overrides:
        data = apply_overrides(data, overrides)
    return path, data


def _raw_spec_dram(args):
    """The spec with ``--set`` and ``--dram-bw``/``--dram-latency`` applied; a SpAtten spec has no ``memory``
    section, so those two are refused naming the option, not as an unknown ``memory`` key."""
    path, data = _raw_spec(args.spec, list(args.set))
    if _is_spatten(data):
        _refuse_array_options(args, ("dram_bw", "dram_latency"), "a SpAtten spec (its DRAM is the spec's dram: "
                              "section; use --set dram.FIELD=VALUE)")
        return path, data
    extra = _dram_sets(args)
    if extra:
        from archgen.arch.spec import apply_overrides
        data = apply_overrides(data, extra)
    return path, data


def _is_spatten(data) -> bool:
    return isinstance(data, dict) and data.get("kind") == "spatten"


def _load_array(path, data):
    from archgen.arch.spec import load_spec_data
    return load_spec_data(data, source=str(path))


def _check_dataflow_option(design, name: str | None) -> None:
    """``--dataflow NAME`` names a dataflow of the spec; refused naming the option (not the spec field)."""
    if name is not None and name not in [d.name for d in design.dataflows]:
        known = ", ".join(d.name for d in design.dataflows)
        raise SpecError([problem("--dataflow", f"no dataflow named {name!r} in spec {design.name!r}; choose one of: "
                                 f"{known}", name)])


def _load_spatten(path, data):
    from archgen.arch.spatten_spec import load_spatten_spec
    return load_spatten_spec(data)


def _parse_dims(text: str, what: str, count: int | None = None, example: str = "13,29,7") -> list[int]:
    """Comma-separated positive integers, exactly ``count`` of them when given."""
    want = f"{count} comma-separated positive integers, e.g. {example}" if count else \
        f"comma-separated positive integers, e.g. {example}"
    try:
        vals = [int(v) for v in text.split(",")]
    except ValueError:
        raise SpecError([problem(what, want, text)]) from None
    if count is not None and len(vals) != count:
        raise SpecError([problem(what, want, text)])
    if any(v < 1 for v in vals):
        raise SpecError([problem(what, "sizes must be at least 1", text)])
    if any(v > 1_000_000 for v in vals):
        raise SpecError([problem(what, "sizes must be at most 1,000,000 (the spec's bounds limit)", text)])
    return vals


def _working(con, what: str):
    """A spinner on a terminal while long work runs; nothing in logs and pipes."""
    import contextlib
    return con.status(what) if sys.stdout.isatty() else contextlib.nullcontext()


def _check_out(path, flag: str):
    from archgen.arch.files import check_output_dir
    return check_output_dir(path, flag)


# ------------------------------------------------------------------------------------------------
# build

def cmd_build(args) -> int:
    con = _console()
    path, data = _raw_spec(args.spec, args.set)
    if args.out is not None:
        _check_out(args.out, "--out")
    if _is_spatten(data):
        _refuse_array_options(args, ("dataflow", "explain", "no_pipeline", "fuse", "memory"), "a SpAtten spec")
        return _build_spatten(args, path, data, con)
    design = _load_array(path, data)
    guard_design_size(design, "build", args.force)
    _check_dataflow_option(design, args.dataflow)   # an unknown --dataflow is refused before any work
    if args.dataflow and not args.fuse:         # a folded map beside dataflows that fold otherwise: by itself
        design = design.alone(args.dataflow)
    from archgen.dataflow.delays import DelayTable
    DelayTable.load(args.target)
    from archgen.dataflow.compile import compile_array
    from archgen.dataflow.explain import explain
    from archgen.rtlgen.build import array_verilog, manifest_json, write_outputs
    if args.explain:
        dfs = [args.dataflow] if args.dataflow else [d.name for d in design.dataflows]
        for name in dfs:
            for line in explain(design.alone(name), name):
                con.print(line, markup=False)
        if args.out is None:
            return EXIT_OK
    from archgen.fusion_cli import build_fused, build_fused_memory, fused_dataflows
    design, fuse = fused_dataflows(design, args.fuse, args.dataflow, "build")
    if fuse and args.memory:                    # the fused array inside the memory system, one build per dataflow
        return build_fused_memory(args, design, fuse, con)
    if fuse:                                    # several dataflows in one design (docs/dataflows.md, Fusion)
        return build_fused(args, design, fuse, con)
    if len(design.dataflows) > 1 and not args.dataflow:
        raise SpecError([problem("--dataflow", "this spec has several dataflows; pick one of: "
                                 f"{', '.join(d.name for d in design.dataflows)}, or build them into one design "
                                 "with --fuse (or the spec's fuse: list)")])
    out = _check_out(args.out or Path("out") / design.name, "--out")
    if getattr(args, "memory", False):
        from archgen.rtlgen.build import write_layer_build
        return write_layer_build(design, args, out, con)
    t0 = time.perf_counter()
    compiled = compile_array(design, args.dataflow, pipeline=not args.no_pipeline, target=args.target)
    text, manifest = array_verilog(compiled)
    files = {f"{design.name}.v": text, "manifest.json": manifest_json(manifest)}
    report_lines = []
    if args.report:
        report = _array_report(compiled, text, manifest)
        files["report.json"] = json.dumps(report, indent=2, sort_keys=True) + "\n"
        report_lines = [f"  {k}: {v}" for k, v in report.items()]
    written = write_outputs(out, files)
    dt = time.perf_counter() - t0
    con.print(f"built {design.name} ({design.shape_label}, dataflow {manifest['parameters']['dataflow']}) "
              f"in {dt:.2f} s: {manifest['verilog_lines']} lines of Verilog", markup=False)
    for name, p in written.items():
        con.print(f"  wrote {p}", markup=False)
    pipe = manifest.get("pipelining", {})
    if pipe.get("timing_met") is False:          # skewed stt arrays: no stage count reaches the clock
        con.print(f"  note: estimated FU path {pipe['estimated_path_ns']} ns exceeds the {pipe['clock_target_ns']:.3f} ns "
                  f"clock ({pipe['delay_table']} delay table); the adders alone are longer", markup=False)
    if args.no_pipeline and "lp_variables" not in pipe:   # skewed stt arrays have no LP pipelining to turn off
        con.print("  note: a skewed stt map's array has only the registers its schedule needs (no LP pipelining), "
                  "so --no-pipeline changes nothing", markup=False)
    for line in report_lines:
        con.print(line, markup=False)
    return EXIT_OK


def _array_report(compiled, text, manifest) -> dict:
    """Pipelining figures from the manifest plus Yosys statistics and, when installed, nextpnr Fmax."""
    design, pipe = compiled.design, manifest["pipelining"]
    report = {"verilog_lines": manifest["verilog_lines"], "fus": design.n_fus,
              "clock_target_ns": pipe["clock_target_ns"], "registers_added": pipe["registers_added"]}
    if "lp_variables" in pipe:                  # skewed stt arrays have no LP (dataflow/stt_array.py)
        report.update({"register_bits": pipe["register_bits"], "naive_register_bits": pipe["naive_register_bits"],
                       "lp_variables": pipe["lp_variables"], "lp_constraints": pipe["lp_constraints"],
                       "lp_solve_s": round(compiled.retimed.solve_time_s, 3)})
    try:
        from archgen.rtlgen.synth import ToolFailedError, nextpnr_ecp5, yosys_stats
        stats = yosys_stats(text, design.name)
        report["yosys_cells"] = stats.get("total_cells")
        report["yosys_cells_by_type"] = stats.get("cells")
        report["yosys_logic_depth"] = stats.get("logic_depth")
        try:
            pnr = nextpnr_ecp5(text, design.name, clock_mhz=design.clock_mhz)
            report["ecp5"] = {k: pnr.get(k) for k in ("min_fmax_mhz", "luts", "ffs", "dsps", "timing_met") if k in pnr}
        except ToolMissingError as err:
            report["ecp5"] = f"not run: {err}"
        except ToolFailedError as err:           # e.g. more stream pins than the package has
            errors = [ln for ln in str(err).splitlines() if ln.startswith("ERROR")]
            report["ecp5"] = f"failed: {(errors or [str(err).splitlines()[0]])[0]}"
    except ToolMissingError as err:
        report["yosys"] = f"not run: {err}"
    return report


def _topk_line(spec) -> str:
    """Which local-V top-k engine the spec builds (``units.topk``): the same line for build, sim and verify."""
    from archgen.dataflow.spatten_stages import TOPK_ENGINES
    tk = spec.topk
    kind = ("sample register (the engine alone: median 101 MHz on ECP5 at P = 4, other P not measured; a few "
            "% more top-k cycles; docs/spatten.md)"
            if tk.sample_register else "default (no sample register)")
    return (f"  top-k: {TOPK_ENGINES} engines of parallelism {tk.parallelism}, FIFO depth {tk.fifo_depth} rows, "
            f"{kind}")


def _build_spatten(args, path, data, con) -> int:
    from archgen.rtlgen.spatten_top import write_spatten_build
    spec = _load_spatten(path, data)
    out = _check_out(args.out or Path("out") / spec.name, "--out")
    t0 = time.perf_counter()
    written = write_spatten_build(spec, out, report=args.report)
    lines = written[f"{spec.name}.v"].read_text().count("\n")
    con.print(f"built {spec.name} (SpAtten engine) in {time.perf_counter() - t0:.2f} s: {lines} lines of Verilog",
              markup=False)
    for p in written.values():
        con.print(f"  wrote {p}", markup=False)
    arrays = json.loads(written["manifest.json"].read_text()).get("arrays", {})
    for unit, a in sorted(arrays.items(), key=lambda kv: kv[0] != "qk"):
        con.print(f"  {unit} array {a['operation']} on {a['array_shape'][0]}x{a['array_shape'][1]}: latency "
                  f"{a['latency_cycles']} cycles at {a['clock_period_ns']:g} ns, {a['register_bits']} register bits "
                  f"(naive {a['naive_register_bits']}), multiplier stages {a['multiplier_internal_stages'] + 1}",
                  markup=False)
    con.print(_topk_line(spec), markup=False)
    if args.report and "cells_by_unit.json" in written:
        cells = json.loads(written["cells_by_unit.json"].read_text())
        for unit, n in sorted(cells.get("units", {}).items()):
            con.print(f"  cells {unit}: {n}", markup=False)
        con.print(f"  cells total: {cells.get('total_cells')}", markup=False)
        if cells.get("logic_depth") is not None:
            con.print(f"  longest register-to-register path: {cells['logic_depth']} generic cells", markup=False)
    return EXIT_OK


# ------------------------------------------------------------------------------------------------
# verify

def cmd_verify(args) -> int:
    con = _console()
    _check_options(guard_int("--seed", args.seed, 0, 2**32 - 1, "a numpy seed"))
    path, data = _raw_spec_dram(args)
    if _is_spatten(data):
        _refuse_array_options(args, ("gemm", "bounds", "dataflow", "ideal_dram", "dram_bw", "dram_latency", "fuse",
                                     "tile", "order", "mapper", "objective"),
                              "a SpAtten spec (it is verified unit by unit)")
        return _verify_spatten(args, path, data, con)
    _refuse_array_options(args, ("unit", "n", "k", "queries"), "an array spec (they apply to SpAtten specs)")
    if args.dram_latency == 0 and not args.ideal_dram:   # refused by the generated port only after the header
        _check_options([problem("--dram-latency", "the generated DRAM port that verify runs needs a latency of at "
                                "least 1 cycle (archgen sim models 0)", 0)])
    design = _load_array(path, data)
    _check_dataflow_option(design, args.dataflow)
    _check_dram_bw_for_rtl(design, args)
    if not args.fuse and (args.dataflow or not design.fuse):    # a folded map beside dataflows that fold
        design = design.alone(args.dataflow)                    # otherwise: by itself
    if args.gemm is not None and args.bounds is not None:
        raise SpecError([problem("--gemm", "give --gemm or --bounds, not both", args.gemm)])
    if args.gemm is not None:
        m, k, n = _parse_dims(args.gemm, "--gemm", 3)
        names = design.operation.dims
        if tuple(sorted(names)) != ("i", "j", "k"):
            raise SpecError([problem("--gemm", f"this spec's loops are {', '.join(names)}; use --bounds", args.gemm)])
        bounds = {"i": m, "k": k, "j": n}
    elif args.bounds is not None:
        bounds = _parse_bounds(args.bounds, design)
    else:
        bounds = design.reference_bounds
    guard_design_size(design, "verify", args.force)
    skewed = design.dataflow(args.dataflow).skewed      # skewed stt maps run at the array level (stt_array.py)
    if not skewed:
        # through the memory system the layer's blocks bound the FIFO depth (plan_layer), not the whole problem
        guard_verify_problem(design, running_mapping(design, bounds, args.dataflow, fifo_check=bool(args.ideal_dram)),
                             "--gemm" if args.gemm is not None else "--bounds", args.force)
    from archgen.fusion_cli import fused_dataflows, verify_fused_cli
    design, fuse = fused_dataflows(design, args.fuse, args.dataflow, "verify")
    tile, order = _layer_command_options(args, design, skewed, fuse)
    planner = _mapper_options(args, skewed, fuse)
    if fuse:                                 # each dataflow of the fused design (docs/dataflows.md, Fusion)
        with _working(con, f"verifying fused {design.name} on Verilator (build, then run)"):
            return verify_fused_cli(args, design, fuse, bounds, con, planner)
    if not args.ideal_dram and not skewed:   # the whole layer through the memory system (docs/memory.md)
        from archgen.verif.layer_check import format_layer_verification, verify_layer
        with _working(con, f"verifying {design.name} with its memory system on Verilator (build, then run)"):
            lres = verify_layer(design, bounds, seed=args.seed, dataflow=args.dataflow, tile=tile, order=order,
                                **planner)
        for line in format_layer_verification(lres, args.seed):
            con.print(line, markup=False)
        return EXIT_OK if lres.ok else EXIT_FAIL
    if not args.ideal_dram:                  # a skewed stt map through its memory system (dataflow/stt_layer.py)
        from archgen.verif.layer_check import format_layer_verification
        from archgen.verif.stt_layer_check import verify_stt_layer
        with _working(con, f"verifying {design.name} with its memory system on Verilator (build, then run)"):
            lres = verify_stt_layer(design, bounds, seed=args.seed, dataflow=args.dataflow)
        for line in format_layer_verification(lres, args.seed):
            con.print(line, markup=False)
        return EXIT_OK if lres.ok else EXIT_FAIL
    from archgen.verif.array_check import verify_array
    with _working(con, f"verifying {design.name} on Verilator (build, then run)"):
        res = verify_array(design, bounds, seed=args.seed, dataflow=args.dataflow)
    con.print(f"{design.name} / {res.dataflow}  problem {res.bounds}  seed {args.seed}", markup=False)
    con.print(f"  outputs: {'exact' if res.outputs_exact else 'WRONG'}"
              + ("" if res.outputs_exact else f" ({res.detail.get('mismatches')} beats differ; first {res.detail.get('first_mismatch')})"),
              markup=False)
    if "box" in res.detail:
        con.print(f"  boxes of {res.detail['box']}: {res.detail['span']} slots each, one every {res.detail['period']} "
                  "slots (array level, --ideal-dram)", markup=False)
    con.print(f"  RTL cycles:   {res.rtl_cycles} cycles", markup=False)
    con.print(f"  model cycles: {res.model_cycles} cycles  ({'equal' if res.rtl_cycles == res.model_cycles else 'DIFFERENT'})",
              markup=False)
    refusal = None if skewed else _memory_system_refusal(design, args.dataflow)
    if refusal:                              # --ideal-dram passes what the whole accelerator refuses: say so
        con.print(f"  note: only the array is verified here; the memory system refuses this dataflow, so `build "
                  f"--memory` and `verify` without --ideal-dram refuse it: {refusal}", markup=False)
    return EXIT_OK if res.ok else EXIT_FAIL


def _check_dram_bw_for_rtl(design, args) -> None:
    """``verify --dram-bw W`` (through the memory system): the generated top moves whole elements per DRAM word,
    so W is a multiple of every operand's element size (dataflow/memctl.py refuses it later, naming
    memory.dram.width_bytes, after the run's header)."""
    if args.dram_bw is None or args.ideal_dram:
        return
    from archgen.mappings.memory_tiling import element_bytes
    sizes = {x.name: element_bytes(design, x.name) for x in design.operation.operands}
    bad = {n: b for n, b in sizes.items() if args.dram_bw % b}
    if bad:
        need = math.lcm(*sizes.values())
        _check_options([problem("--dram-bw", "the generated DRAM port that verify runs moves whole elements: a "
                                f"multiple of {', '.join(f'{n} {b} B' for n, b in bad.items())}, e.g. {need}",
                                args.dram_bw)])


def _memory_system_refusal(design, dataflow) -> str | None:
    """The first problem the generated memory system finds with this dataflow (its smallest layer, buffers
    sized to it), or None when it builds it."""
    from archgen.dataflow.compile import compile_array
    from archgen.dataflow.memctl import layer_program, probe_command
    compiled = compile_array(design, dataflow)
    try:
        layer_program(compiled, probe_command(design, compiled.dataflow), "probe", spec_size=False)
    except SpecError as err:
        return str(err.problems[0])
    return None


def _loop_pairs(text: str, flag: str, design, example: str, size_example: str) -> tuple[dict[str, int], list]:
    """``LOOP=N,...`` of option ``flag``: each loop of the spec at most once, each N a positive integer;
    returns the pairs and the problems found (field-named)."""
    pairs: dict[str, int] = {}
    problems = []
    for item in text.split(","):
        key, eq, val = item.partition("=")
        key = key.strip()
        if not eq or not key:
            problems.append(problem(flag, f"LOOP=N pairs separated by commas, e.g. {example}", item))
        elif key not in design.operation.dims:
            problems.append(problem(f"{flag} {key}", f"no loop of that name; loops are "
                                    f"{', '.join(design.operation.dims)}"))
        elif key in pairs:
            problems.append(problem(f"{flag} {key}", "given twice", item))
        else:
            try:
                pairs[key] = _parse_dims(val, f"{flag} {key}", 1, size_example)[0]
            except SpecError as err:
                problems += err.problems
    return pairs, problems


def _parse_bounds(text: str, design) -> dict[str, int]:
    """``n=1,k=6,...``: every loop of the spec exactly once, each a positive integer."""
    bounds, problems = _loop_pairs(text, "--bounds", design, "i=8,j=8,k=4", "8")
    missing = [d for d in design.operation.dims if d not in bounds]
    if missing and not problems:
        problems.append(problem("--bounds", f"give a size for every loop of the spec; missing {', '.join(missing)}",
                                text))
    if problems:
        raise SpecError(problems)
    return {d: bounds[d] for d in design.operation.dims}


def _layer_command_options(args, design, skewed: bool, fuse) -> tuple[dict | None, tuple | None]:
    """``--tile LOOP=N,...`` and ``--order LOOP,...``: the layer command's blocks and tile-loop order (checked by
    ``make_command`` against the dataflow, field-named); only through the tiled memory system."""
    if args.tile is None and args.order is None:
        return None, None
    why = ("--ideal-dram (one array command, no blocks)" if args.ideal_dram else
           "a skewed stt map (its blocks are planned by its own memory system)" if skewed else
           ("--fuse (each dataflow is planned)" if args.fuse is not None else
            f"a fused design (the spec's fuse: {', '.join(fuse)}; each dataflow is planned; for blocks by hand verify "
            "a copy of the spec without fuse:)") if fuse else None)
    if why:
        _check_options([problem(f, f"does not apply with {why}", v) for f, v in (("--tile", args.tile),
                                                                                ("--order", args.order)) if v is not None])
    if args.tile is None:
        _check_options([problem("--order", "give --tile too (the blocks the order walks)", args.order)])
    tile, problems = _loop_pairs(args.tile, "--tile", design, "k=2,j=1", "2")
    order = None
    if args.order is not None:
        order = tuple(x.strip() for x in args.order.split(","))
        bad = [x for x in order if x not in design.operation.dims]
        if bad:
            problems.append(problem("--order", f"no loop named {', '.join(bad)}; loops are "
                                    f"{', '.join(design.operation.dims)}", args.order))
    if problems:
        raise SpecError(problems)
    return tile, order


def _mapper_options(args, skewed: bool, fuse) -> dict:
    """``--mapper``/``--objective`` of verify as keyword arguments of ``verify_layer``: the layer is planned as
    ``archgen sim --mapper`` plans it (the search seeded by ``--seed``, as sim's is), so sim's searched command is
    verified as one command. Refused where no planner runs: a hand command, --ideal-dram, a skewed stt map."""
    if args.objective is not None and args.mapper != "search":
        _check_options([problem("--objective", "applies to --mapper search only (add --mapper search; verify "
                                "checks every dataflow of a fused design, so no objective picks one)", args.objective)])
    if args.mapper is None:
        return {}
    hand = [f for f, v in (("--tile", args.tile), ("--order", args.order)) if v is not None]
    why = (f"{'/'.join(hand)} (a hand command; give --mapper or {'/'.join(hand)}, not both)" if hand else
           "--ideal-dram (one array command, no blocks)" if args.ideal_dram and not fuse else
           "--ideal-dram (each dataflow is one array command, no blocks)" if args.ideal_dram else
           "a skewed stt map (its blocks are planned by its own memory system)" if skewed else None)
    if why:
        _check_options([problem("--mapper", f"does not apply with {why}", args.mapper)])
    return {"mapper": args.mapper, "mapper_objective": args.objective or "edp", "mapper_seed": args.seed}


def _refuse_array_options(args, names, what: str) -> None:
    """Options that do not apply to this kind of spec are refused, not silently ignored."""
    given = [n for n in names if getattr(args, n, None) not in (None, False)]
    if given:
        raise SpecError([problem("--" + n.replace("_", "-"), f"does not apply to {what}", getattr(args, n))
                         for n in given])


def _check_options(problems) -> None:
    if problems:
        raise SpecError(problems)


def _verify_spatten(args, path, data, con) -> int:
    spec = _load_spatten(path, data)
    if args.unit is None:
        raise SpecError([problem("--unit", "a SpAtten spec is verified unit by unit: --unit topk, core, softmax or pq")])
    n_max = spec.max_tokens
    if args.unit != "core" and args.queries is not None:
        raise SpecError([problem("--queries", "applies to --unit core only", args.queries)])
    if args.unit in ("softmax", "pq") and args.k is not None:
        raise SpecError([problem("--k", f"does not apply to --unit {args.unit}", args.k)])
    _check_options(guard_int("--n", args.n, 1, n_max, f"keys per row; {spec.name} holds max_tokens = {n_max}")
                   + guard_int("--queries", args.queries, 1, 64, "queries per check")
                   + guard_int("--k", args.k, 0, args.n if args.n is not None else n_max,
                               "kept elements, at most --n" if args.n is not None else "kept elements"))
    if args.unit == "topk":
        from archgen.verif.topk_check import verify_topk
        if args.n is None or args.k is None:
            raise SpecError([problem("--n/--k", "the top-k check needs --n N and --k K")])
        res = verify_topk(args.n, args.k, spec.topk.parallelism, args.seed, max_n=n_max,
                          fifo_depth=spec.topk.fifo_depth, sample_register=spec.topk.sample_register)
    elif args.unit in ("core", "softmax", "pq"):
        from archgen.verif.spatten_check import verify_spatten_unit
        res = verify_spatten_unit(spec, args.unit, seed=args.seed, n_keys=args.n,
                                  n_queries=2 if args.queries is None else args.queries, local_v_keep=args.k)
    else:
        raise SpecError([problem("--unit", "a SpAtten spec is verified unit by unit: --unit topk, core, softmax or pq",
                                 args.unit)])
    ok = bool(res.get("correct")) and res.get("rtl_cycles") == res.get("model_cycles")
    con.print(f"{spec.name} unit {args.unit}: outputs {'correct' if res.get('correct') else 'WRONG'}", markup=False)
    if args.unit in ("topk", "core"):
        con.print(_topk_line(spec), markup=False)
    for key in ("max_error", "need_lsb"):
        if key in res:
            con.print(f"  {key}: {res[key]}", markup=False)
    con.print(f"  RTL cycles:   {res.get('rtl_cycles')} cycles", markup=False)
    con.print(f"  model cycles: {res.get('model_cycles')} cycles", markup=False)
    return EXIT_OK if ok else EXIT_FAIL


def _dram_sets(args) -> list[str]:
    """``--dram-bw``/``--dram-latency`` as ``--set`` overrides of ``memory.dram`` (sim and verify)."""
    _check_options(guard_int("--dram-bw", args.dram_bw, 1, 65536, "bytes per cycle of the DRAM port")
                   + guard_int("--dram-latency", args.dram_latency, 0, 100000, "cycles"))
    if args.ideal_dram:
        _check_options([problem(f, "does not apply with --ideal-dram (the memory system is bypassed)", v)
                        for f, v in (("--dram-bw", args.dram_bw), ("--dram-latency", args.dram_latency))
                        if v is not None])
    return ([f"memory.dram.width_bytes={args.dram_bw}"] if args.dram_bw is not None else []) + \
        ([f"memory.dram.latency={args.dram_latency}"] if args.dram_latency is not None else [])


# ------------------------------------------------------------------------------------------------
# sim

def cmd_sim(args) -> int:
    con = _console()
    _check_options(guard_int("--seq", args.seq, 1, 1_000_000, "tokens") + guard_int("--batch", args.batch, 1, 1_000_000)
                   + guard_int("--kv-len", args.kv_len, 0, 1_000_000, "cached tokens"))
    path, data = _raw_spec_dram(args)
    if args.out:
        _check_out(args.out, "--out")
    if args.workload is None and not (_is_spatten(data) and args.trace):
        raise SpecError([problem("--workload", "name a workload (archgen list) or gemm:M,K,N; only a SpAtten "
                                 "simulation with --trace can take the model's dimensions from the trace")])
    for flag, value in (("--seq", args.seq), ("--kv-len", args.kv_len)):
        if args.workload is None and value is not None:
            raise SpecError([problem(flag, "the trace fixes the sequence; give --workload to check it against one",
                                     value)])
    workload = _workload(args) if args.workload is not None else None
    from archgen.sim.report import render_spatten_table, render_table, spatten_summary, write_sim_report
    if _is_spatten(data):
        spec = _load_spatten(path, data)
        from archgen.sim.spatten_sim import simulate_spatten, spatten_bytes_per_cycle, spatten_peak_macs_per_cycle
        _refuse_array_options(args, ("dataflow", "ideal_dram", "no_pipeline", "dram_bw", "dram_latency"), "a SpAtten spec")
        if args.trace is None:
            guard_spatten_workload(workload, args.force)
        trace = None
        if args.trace:
            from archgen.workloads.trace import load_trace
            trace = load_trace(args.trace, workload=workload)
        with _working(con, f"simulating {spec.name} layer by layer"):
            results = simulate_spatten(spec, workload, trace)
        name, clock = spec.name, spec.clock_mhz
        peak, bpc = spatten_peak_macs_per_cycle(spec), spatten_bytes_per_cycle(spec)
        skipped = []
        con.print(render_spatten_table(results))
        con.print(spatten_summary(results, clock), markup=False)
        con.print(_topk_line(spec), markup=False)
    else:
        design = _load_array(path, data)
        _check_dataflow_option(design, args.dataflow)
        if args.trace:
            raise SpecError([problem("--trace", "attention traces drive SpAtten's pruning; an array design has none to apply")])
        if args.dataflow:                       # a folded map beside dataflows that fold otherwise: by itself
            design = design.alone(args.dataflow)
        guard_design_size(design, "sim", args.force)
        # a spec with `fuse:` is one fused design; --dataflow simulates that dataflow's single design instead
        fuse = tuple(design.fuse) if args.dataflow is None else ()
        for df_name in fuse or (args.dataflow,):       # a fused design runs every layer under each of its dataflows
            guard_array_workload(design, workload, df_name, args.force)
        from archgen.sim.array_sim import simulate_workload_on_array
        n = len(workload.layers)
        with _sim_progress(con) as prog:
            task = prog.add_task("simulating", total=n)
            results, skipped = simulate_workload_on_array(design, workload, dataflow=args.dataflow,
                                                          progress=lambda _n: prog.advance(task),
                                                          pipeline=not args.no_pipeline, ideal_dram=args.ideal_dram,
                                                          mapper=args.mapper, mapper_objective=args.objective,
                                                          mapper_seed=args.seed, fuse=fuse)
        name, clock = design.name, design.clock_mhz
        peak, bpc = design.n_fus, design.dram_bytes_per_cycle
        con.print(render_table(results, dataflow_column=bool(fuse)))
        if fuse:
            con.print(f"fused design ({', '.join(fuse)}): each layer runs under the dataflow best on --objective "
                      f"{args.objective} in the fused design's timing (docs/dataflows.md, Fusion)", markup=False)
        if not args.ideal_dram:
            from archgen.sim.memory_report import mapping_lines, render_memory_table
            con.print(render_memory_table(results))
            for line in mapping_lines(results):
                con.print(line, markup=False)
            con.print(f"memory system: {design.memory_system.describe()} (docs/memory.md)", markup=False)
        else:
            con.print("--ideal-dram: the memory system is bypassed; each layer is one array command with streams "
                      "that never wait", markup=False)
    if skipped:
        elems = sum(s.elements for s in skipped)
        con.print(f"{len(skipped)} element-wise layer(s) ({', '.join(sorted({s.kind for s in skipped}))}; {elems} elements) "
                  "run outside the array and are not timed", markup=False)
    if args.out:
        paths = write_sim_report(results, Path(args.out), design=name, clock_mhz=clock, peak_macs_per_cycle=peak,
                                 dram_bytes_per_cycle=bpc)
        for p in paths.values():
            con.print(f"  wrote {p}", markup=False)
    return EXIT_OK


def _sim_progress(con):
    """rich's progress bar on a terminal; off a terminal a no-op (rich.progress is not even imported)."""
    if sys.stderr.isatty():
        from rich.progress import Progress
        return Progress(console=con, transient=True)

    class _Quiet:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def add_task(self, *a, **k):
            return 0

        def advance(self, *a, **k):
            pass
    return _Quiet()


def _workload(args):
    """A library workload, or ``gemm:M,K,N`` for one GEMM layer (C[i,j] += A[i,k] * B[k,j])."""
    from archgen.workloads.library import get_workload
    return get_workload(args.workload, seq=args.seq, phase=args.phase, kv_len=args.kv_len, batch=args.batch)


# ------------------------------------------------------------------------------------------------
# list, doctor, sweep

def cmd_list(args) -> int:
    con = _console()
    import yaml
    from archgen.arch.spec import builtin_specs
    con.print("built-in specs:", markup=False)
    for name, path in builtin_specs().items():
        data = yaml.safe_load(path.read_text())
        con.print(f"  {name:22s} {data.get('description', '')}", markup=False)
        if not _is_spatten(data):
            from archgen.arch.spec import load_spec_data
            con.print(f"  {'':22s} memory: {load_spec_data(data, source=str(path)).memory.describe()}", markup=False)
        else:
            from archgen.arch.spatten_spec import load_spatten_spec
            s = load_spatten_spec(data)
            con.print(f"  {'':22s} engine: QxK {s.qk.multipliers} + PxV {s.pv.multipliers} multipliers of {s.bits} bits, "
                      f"top-k parallelism {s.topk.parallelism}, head dim {s.head_dim}, up to {s.max_tokens} tokens, "
                      f"{s.clock_mhz:g} MHz; key and value SRAM {s.key_sram.bytes:,} B + {s.value_sram.bytes:,} B; "
                      f"DRAM {s.dram.bandwidth_gb_s:g} GB/s", markup=False)
    from archgen.workloads.library import list_workloads
    con.print("workloads:", markup=False)
    for w in list_workloads():
        con.print(f"  {w.name:22s} {w.description}", markup=False)
    return EXIT_OK


def cmd_doctor(args) -> int:
    from archgen.doctor import run_doctor
    con = _console()
    ok = True
    for check in run_doctor():
        mark = "ok " if check.ok else ("-- " if check.optional else "ERR")
        con.print(f"[{mark}] {check.name}: {check.detail}", markup=False)
        if not check.ok and check.fix:
            con.print(f"      fix: {check.fix}", markup=False)
        ok = ok and (check.ok or check.optional)
    return EXIT_OK if ok else EXIT_TOOL


def cmd_sweep(args) -> int:
    _check_options(guard_int("--workers", args.workers, 1, 64, "local processes")
                   + guard_int("--seq", args.seq, 1, 1_000_000, "tokens"))
    _check_out(args.out, "--out")
    if args.dask and args.workers != 1:
        raise SpecError([problem("--workers", "local processes do not apply with --dask (the cluster has its own "
                                 "workers)", args.workers)])
    from archgen.sim.sweep import parse_dask
    parse_dask(args.dask)                                # a bad address is refused before any point is validated
    from archgen.sim.sweep_cli import run_sweep_cli
    return run_sweep_cli(args, _console())


def cmd_search(args) -> int:
    _check_out(args.out, "--out")
    from archgen.sim.search_cli import run_search_cli
    return run_search_cli(args, _console())


def cmd_trace(args) -> int:
    """``trace extract``: a trace from a local Hugging Face BERT-style model; ``trace show``: a header."""
    con = _console()
    from archgen.workloads.trace import load_trace, save_trace
    if args.trace_command == "show":
        h = load_trace(args.file).header
        con.print(f"{args.file}: {h.model}, {h.layers} layers x {h.heads} heads, {h.queries} queries over "
                  f"{h.seq_len} tokens ({h.phase}{', causal' if h.causal else ''}), {h.dtype}, source {h.source}",
                  markup=False)
        return EXIT_OK
    _check_options(guard_int("--max-tokens", args.max_tokens, 2, 65536, "tokens after tokenisation"))
    model = Path(args.model_dir)
    if not model.is_dir():
        raise SpecError([problem("MODEL_DIR", "not a directory; give a local model directory with config.json, "
                                 "model.safetensors and tokenizer.json", str(model))])
    try:
        text = Path(args.text).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError([problem("--text", f"cannot read a UTF-8 text file: {err}", args.text)]) from None
    if not text.strip():
        raise SpecError([problem("--text", "the file holds no text", args.text)])
    out = Path(args.output)
    if out.is_dir():
        raise SpecError([problem("-o", "is a directory; give the .npz file to write", args.output)])
    _check_out(out.parent if str(out.parent) else Path("."), "-o")
    from archgen.workloads.hf_extract import extract_trace
    with _working(con, f"running {model.name} on {len(text):,} characters"):
        trace = extract_trace(model, text, max_tokens=args.max_tokens)
    from archgen.arch.files import write_all_or_nothing
    write_all_or_nothing(out.parent, {out.name: lambda p: save_trace(trace, p)})
    h = trace.header
    con.print(f"wrote {out}: {h.layers} layers x {h.heads} heads over {h.seq_len} tokens", markup=False)
    return EXIT_OK


def cmd_check(args) -> int:
    """Load and validate a spec (both phases) and print what it describes; nothing is built."""
    con = _console()
    path, data = _raw_spec(args.spec, args.set)
    if _is_spatten(data):
        spec = _load_spatten(path, data)
        con.print(f"{path}: valid SpAtten spec {spec.name!r}: head_dim {spec.head_dim}, max_tokens {spec.max_tokens}, "
                  f"{spec.qk.multipliers} + {spec.pv.multipliers} multipliers at {spec.clock_mhz:g} MHz", markup=False)
        return EXIT_OK
    design = _load_array(path, data)
    con.print(f"{path}: valid array spec {design.name!r}: {design.operation} on a {'x'.join(map(str, design.shape))} "
              f"array at {design.clock_mhz:g} MHz; dataflows {', '.join(d.name for d in design.dataflows)}"
              + (f"; fused into one design: {', '.join(design.fuse)} (selected per command)" if design.fuse else ""),
              markup=False)
    return EXIT_OK


# ------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="archgen", description="Spatial accelerator generator: Verilog and a cycle model that agree.")
    p.add_argument("--version", action="version", version=f"archgen {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def spec_args(sp):
        sp.add_argument("spec", help="spec file, or the name of a built-in spec (archgen list)")
        sp.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a spec field, e.g. --set array.shape=32x32 --set clock_mhz=700 (repeatable)")
        sp.add_argument("--dataflow", help="dataflow name (default: the spec's first)")

    b = sub.add_parser("build", help="write Verilog and a manifest for a spec")
    spec_args(b)
    b.add_argument("-o", "--out", help="output directory (default out/<name>)")
    b.add_argument("--explain", action="store_true", help="print the derived interconnect and memory banks")
    b.add_argument("--report", action="store_true", help="also synthesise with Yosys and report statistics")
    b.add_argument("--memory", action="store_true",
                   help="the whole accelerator: array + buffers, DMA (external DRAM port) and layer controller "
                        "(run-time command tables); with --report: ECP5 cells, DP16KD block RAMs, nextpnr Fmax")
    b.add_argument("--no-pipeline", action="store_true",
                   help="only the registers the schedule needs, no pipelining for the clock target (compare with --report)")
    b.add_argument("--target", default="asic", help="delay table for pipelining: asic (45 nm estimates), ecp5, or a file")
    b.add_argument("--force", action="store_true", help="skip the size limits (docs/limits.md)")
    b.add_argument("--fuse", metavar="DF,DF,...",
                   help="build these dataflows into one design, selected per command (e.g. os,ws,is; SPEC:NAME borrows "
                        "a dataflow of another spec with the same operation and array)")
    b.set_defaults(func=cmd_build)

    v = sub.add_parser("verify", help="run one random layer through the memory system on Verilator: outputs exact, RTL cycles == model cycles")
    spec_args(v)
    v.add_argument("--gemm", help="GEMM sizes M,K,N")
    v.add_argument("--bounds", help="loop sizes, e.g. n=1,k=6,p=3,q=3,c=5,r=3,s=3")
    v.add_argument("--seed", type=int, default=0, help="random operands (0..2^32-1); also the --mapper search seed, "
                   "as archgen sim's --seed")
    v.add_argument("--unit", choices=["topk", "core", "softmax", "pq"], help="SpAtten unit to verify")
    v.add_argument("--n", type=int, help="SpAtten: number of scores / keys")
    v.add_argument("--k", type=int, help="SpAtten: k of the top-k (or kept values for --unit core)")
    v.add_argument("--queries", type=int, help="SpAtten core: number of queries (default 2)")
    v.add_argument("--ideal-dram", action="store_true",
                   help="the array alone with ideal streams (no memory system; one array command)")
    v.add_argument("--tile", metavar="LOOP=N,...", help="the layer command's block sizes instead of the planner's: "
                   "array tiles per block of each outer loop, elements per chunk of a split inner loop (docs/memory.md)")
    v.add_argument("--order", metavar="LOOP,...", help="the layer command's tile-loop order, outer to inner (with "
                   "--tile; default the dataflow's outer loops, then the split inner loops)")
    v.add_argument("--mapper", choices=["heuristic", "search"],
                   help="plan the layer command as archgen sim --mapper does: the plan_layer heuristic (default), or "
                   "the seeded search judged by the cycle model (docs/dse.md, Mapper)")
    v.add_argument("--objective", choices=["latency", "energy", "edp"],
                   help="objective of --mapper search (default edp, as archgen sim)")
    v.add_argument("--dram-bw", type=int, metavar="BYTES", help="DRAM port width in bytes per cycle "
                   "(overrides memory.dram.width_bytes)")
    v.add_argument("--dram-latency", type=int, metavar="CYCLES", help="DRAM latency in cycles "
                   "(overrides memory.dram.latency)")
    v.add_argument("--force", action="store_true", help="skip the size limits (docs/limits.md)")
    v.add_argument("--fuse", metavar="DF,DF,...", help="verify the fused design of these dataflows (array level with --ideal-dram, else "
                   "through the memory system; "
                   "--dataflow picks one, default all)")
    v.set_defaults(func=cmd_verify)

    s = sub.add_parser("sim", help="simulate a workload on a design: per-layer cycles, DRAM traffic, energy")
    spec_args(s)
    s.add_argument("--workload", help="workload name (archgen list), or gemm:M,K,N for one GEMM; a SpAtten run "
                   "with --trace may omit it (dimensions from the trace header)")
    s.add_argument("--seq", type=int, help="sequence length for transformers")
    s.add_argument("--phase", default="prefill", choices=["prefill", "decode"])
    s.add_argument("--kv-len", type=int, help="KV-cache length for decode")
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--trace", help="attention trace file (.npz) for SpAtten")
    s.add_argument("--out", help="directory for sim.json, sim.csv and plots")
    s.add_argument("--ideal-dram", action="store_true",
                   help="streams never wait on DRAM (the Verilator testbench's condition; compare with archgen verify)")
    s.add_argument("--no-pipeline", action="store_true", help="simulate the design built with --no-pipeline")
    s.add_argument("--dram-bw", type=int, metavar="BYTES", help="DRAM port width in bytes per cycle "
                   "(overrides memory.dram.width_bytes)")
    s.add_argument("--dram-latency", type=int, metavar="CYCLES", help="DRAM latency in cycles "
                   "(overrides memory.dram.latency)")
    s.add_argument("--force", action="store_true", help="skip the size limits (docs/limits.md)")
    s.add_argument("--mapper", choices=["heuristic", "search"], default="heuristic",
                   help="layer mapping: the plan_layer heuristic, or a seeded search judged by the cycle model")
    s.add_argument("--objective", choices=["latency", "energy", "edp"], default="edp", help="objective of --mapper search and of a fused design's per-layer dataflow choice")
    s.add_argument("--seed", type=int, default=0, help="--mapper search seed")
    s.set_defaults(func=cmd_sim)

    w = sub.add_parser("sweep", help="explore a design space with the cycle model; resumable (docs/dse.md)")
    w.add_argument("spec", help="a sweep file (kind: sweep), or a base spec with --vary and --workload")
    w.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a spec field of every point (repeatable)")
    w.add_argument("--vary", action="append", default=[], metavar="FIELD=V1,V2,...",
                   help="a field and its values, e.g. --vary array.shape=8x8,16x16,32x32 (repeatable)")
    w.add_argument("--workload", help="workload name, or gemm:M,K,N (with a base spec)")
    w.add_argument("--seq", type=int, help="sequence length for transformers (with a base spec)")
    w.add_argument("--objectives", metavar="A,B,...",
                   help="Pareto objectives out of latency, energy, area, edp, cycles, dram, fus "
                        "(default latency,energy,area)")
    w.add_argument("--out", default="sweep", help="results directory (resumes if it exists)")
    w.add_argument("--workers", type=int, default=1, help="local processes")
    w.add_argument("--dask", metavar="ADDRESS",
                   help="run on Dask: a scheduler address (tcp://HOST:PORT) or local:N for a LocalCluster of N "
                        "workers (optional extra)")
    w.add_argument("--repair", action="store_true",
                   help="delete corrupt or edited rows from the results store and recompute them")
    w.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    w.set_defaults(func=cmd_sweep)
    se = sub.add_parser("search", help="NAAS-style CMA-ES search of shape, dataflow, buffers and mapping (docs/dse.md)")
    se.add_argument("--workload", action="append", required=True,
                    help="a workload (library name or gemm:M,K,N); repeat for several (geometric-mean EDP)")
    se.add_argument("--budget", default="eyeriss", help="eyeriss, edgetpu, or PES,ONCHIP_BYTES,DRAM_BYTES_PER_CYCLE")
    se.add_argument("--evaluations", type=int, default=24, help="distinct designs to evaluate")
    se.add_argument("--seed", type=int, default=0)
    se.add_argument("--mode", choices=["naas", "sizing"], default="naas",
                    help="naas: dataflow and per-layer mapping searched too; sizing: fixed dataflow, sizes only")
    se.add_argument("--out", required=True, help="directory of the results store (resumable)")
    se.set_defaults(func=cmd_search)

    t = sub.add_parser("trace", help="attention traces: extract from a local model, show a header")
    tsub = t.add_subparsers(dest="trace_command", required=True)
    te = tsub.add_parser("extract", help="a trace from a local Hugging Face BERT-style model directory (hf extra)")
    te.add_argument("model_dir", metavar="MODEL_DIR")
    te.add_argument("--text", required=True, help="UTF-8 text file to run through the model")
    te.add_argument("-o", "--output", required=True, help="the .npz trace to write")
    te.add_argument("--max-tokens", type=int, default=512, help="truncate after this many tokens (default 512)")
    ts = tsub.add_parser("show", help="print a trace's header")
    ts.add_argument("file")
    t.set_defaults(func=cmd_trace)

    c = sub.add_parser("check", help="validate a spec and print what it describes (nothing is built)")
    c.add_argument("spec", help="spec file, or the name of a built-in spec")
    c.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    c.set_defaults(func=cmd_check)

    ls = sub.add_parser("list", help="built-in specs and workloads")
    ls.set_defaults(func=cmd_list)
    d = sub.add_parser("doctor", help="check Python, amaranth, cocotb, Verilator, Yosys, nextpnr")
    d.set_defaults(func=cmd_doctor)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except ToolMissingError as err:
        print(f"archgen: {err}", file=sys.stderr)
        return EXIT_TOOL
    except ArchgenError as err:
        print(f"archgen: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("archgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
