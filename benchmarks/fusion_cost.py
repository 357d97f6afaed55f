"""Cost of dataflow fusion: the fused gemm_fused design against its single-dataflow designs.

Usage: python benchmarks/fusion_cost.py [--spec gemm_fused] [--shapes 4x4] [--mhz 120] [--target ecp5]
Prints the markdown table of docs/dataflows.md ("Fusion"): Yosys generic cells, flip-flops and mux cells,
nextpnr-ecp5 post-route Fmax (inside rtlgen/timing_wrapper.py's pin wrapper), and the cycle model's count
on the spec's reference problem per dataflow (the Verilator regression holds RTL == model for both designs).
Each shape runs four syntheses and four place-and-route runs (minutes). Needs the synth extra.
"""
from __future__ import annotations

import argparse
import time

from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_fused
from archgen.fusion_cli import fusion_report
from archgen.rtlgen.fused_array import fused_verilog


def rows(spec: str, shape: str, mhz: float, target: str) -> list[str]:
    design = load_spec(spec, [f"array.shape={shape}", f"clock_mhz={mhz:g}"])
    t0 = time.perf_counter()
    fused = compile_fused(design, design.fuse, target=target)
    text, top = fused_verilog(fused)
    rep = fusion_report(fused, text, top, target=target)
    syn = rep["synthesis"]
    out = []

    def fmt(label, s, cyc):
        fmax = s.get("ecp5_fmax_mhz")
        return (f"| {shape} | {target} {mhz:g} MHz | {label} | {s.get('cells')} | {s.get('flip_flops')} | "
                f"{s.get('mux_cells')} | {'%.1f' % fmax if fmax else s.get('ecp5', '-')} | {cyc} |")

    out.append(fmt(f"fused {'+'.join(fused.names)} ({rep['select_muxes_rtl']} select muxes)", syn["fused"],
                   ", ".join(f"{n} {c['fused']}" for n, c in rep["cycles"].items())))
    for name, s in syn["single"].items():
        out.append(fmt(f"single {name}", s, rep["cycles"][name]["single"]))
    tot = syn.get("sum_of_singles", {})
    out.append(f"| {shape} | {target} {mhz:g} MHz | sum of singles | {tot.get('cells')} | {tot.get('flip_flops')} | "
               f"{tot.get('mux_cells')} | - | - |")
    out.append(f"<!-- {shape}: {time.perf_counter() - t0:.0f} s; reference problem {rep['reference_problem']} -->")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default="gemm_fused")
    ap.add_argument("--shapes", default="4x4")
    ap.add_argument("--mhz", type=float, default=120)
    ap.add_argument("--target", default="ecp5")
    args = ap.parse_args()
    print("| array | LP target | design | Yosys cells | flip-flops | mux cells | nextpnr-ecp5 Fmax (MHz) | "
          "cycles, reference GEMM |")
    print("|---|---|---|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        for line in rows(args.spec, shape, args.mhz, args.target):
            print(line, flush=True)


if __name__ == "__main__":
    main()
