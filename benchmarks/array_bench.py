"""Array generator and model figures: Verilog size, Verilator build time, simulation speed, model speed.

Usage: python benchmarks/array_bench.py [--shapes 2x2,4x4,8x8] [--spec gemm_os.yaml] [--skip-rtl]
Prints a markdown table (the one in docs/results.md). Verilator builds go to a fresh temporary cache
so build times are real, not cache hits. Figures are wall-clock on this machine; note the load.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.mappings.tiling import map_problem
from archgen.rtlgen.build import build_array
from archgen.sim.array_model import simulate_array


def model_speed(spec: str, shape: str, bounds: dict) -> tuple[int, float]:
    design = load_spec(spec, [f"array.shape={shape}"])
    compiled = compile_array(design)
    mp = map_problem(design, bounds, compiled.dataflow)
    t = time.perf_counter()
    r = simulate_array(compiled, mp)
    return r.total_cycles, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="2x2,4x4,8x8")
    ap.add_argument("--spec", default="gemm_os.yaml")
    ap.add_argument("--skip-rtl", action="store_true")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores)")
    cycles, secs = model_speed(args.spec, "32x32", {"i": 512, "k": 768, "j": 768})
    print(f"model: 512x768x768 GEMM on a 32x32 {args.spec}: {cycles} cycles predicted in {secs * 1e3:.1f} ms")
    from archgen.sim.array_sim import simulate_workload_on_array
    from archgen.sim.results import totals
    from archgen.workloads.library import get_workload
    design = load_spec(args.spec, ["array.shape=32x32"])
    for name, seq in (("bert-base", 512), ("resnet50", None)):
        t = time.perf_counter()
        res, _ = simulate_workload_on_array(design, get_workload(name, seq=seq))
        tot = totals(res)
        print(f"whole network {name}{'' if seq is None else f' seq {seq}'} on 32x32 {args.spec} (16 GB/s, "
              f"{design.clock_mhz:g} MHz): {len(res)} layers, {tot['cycles']:.4g} cycles, {tot['time_ns'] / 1e6:.2f} ms "
              f"simulated, in {time.perf_counter() - t:.2f} s wall")
    print()
    print("| spec | array | Verilog lines | Amaranth -> Verilog (s) | Verilator build (s) | problem | RTL cycles | "
          "sim wall (s) | simulated cycles/s | RTL == model |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    from archgen.verif.array_check import verify_array
    for shape in args.shapes.split(","):
        design = load_spec(args.spec, [f"array.shape={shape}"])
        t = time.perf_counter()
        text, manifest = build_array(design)
        gen = time.perf_counter() - t
        if args.skip_rtl:
            print(f"| {args.spec} | {shape} | {manifest['verilog_lines']} | {gen:.2f} | - | - | - | - | - | - |")
            continue
        bounds = {"i": 64, "k": 64, "j": 64}
        with tempfile.TemporaryDirectory() as cache:
            t = time.perf_counter()
            first = verify_array(design, bounds, seed=1, cache_dir=Path(cache))
            total_first = time.perf_counter() - t
            t = time.perf_counter()
            again = verify_array(design, bounds, seed=2, cache_dir=Path(cache))
            sim_wall = time.perf_counter() - t
        build = total_first - sim_wall
        ok = first.ok and again.ok
        print(f"| {args.spec} | {shape} | {manifest['verilog_lines']} | {gen:.2f} | {build:.1f} | 64x64x64 | "
              f"{again.rtl_cycles} | {sim_wall:.1f} | {again.rtl_cycles / sim_wall:,.0f} | {'yes' if ok else 'NO'} |")


if __name__ == "__main__":
    main()
