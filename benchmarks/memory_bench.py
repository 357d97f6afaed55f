"""Whole-model figures through the memory system (docs/memory.md): utilisation and DRAM traffic next to
the compulsory minimum, for BERT-base seq 512 and ResNet-50 on a 32x32 gemm_os at 32 B/cycle.

Usage: python benchmarks/memory_bench.py
Buffer sizes (total 1 MiB on chip; the justification is in docs/results.md):
  A 384 KiB, B 384 KiB (two halves of 192 KiB each: one 32-wide array tile of the largest reduction,
  K = 3072 (BERT fc2) or 4608 (ResNet-50 3x3x512), is 96 or 144 KiB), C 256 KiB (two 128 KiB halves:
  4x8 output tiles of 32x32 int32).
Compulsory traffic: every operand of the layer *as the array runs it* (after im2col for convolutions)
moved exactly once, outputs at the accumulator width (int32).
"""
from __future__ import annotations

import math
import time

from archgen.arch.spec import load_spec
from archgen.mappings.memory_tiling import element_bytes
from archgen.sim.array_sim import lower_layer, simulate_workload_on_array
from archgen.sim.results import totals
from archgen.workloads.library import get_workload

SPEC = ["array.shape=32x32", "memory.A.bytes=393216", "memory.B.bytes=393216", "memory.C.bytes=262144",
        "memory.dram.width_bytes=32"]


def compulsory_bytes(design, workload) -> int:
    op = design.operation
    total = 0
    for layer in workload.layers:
        if not layer.einsum:
            continue
        bounds, repeat, _how = lower_layer(layer, design)
        for x in op.operands:
            total += math.prod(op.tensor_shape(x.name, bounds)) * element_bytes(design, x.name) * repeat
    return total


def main():
    design = load_spec("gemm_os", SPEC)
    print(f"design: 32x32 gemm_os, {design.memory_system.describe()}; on chip {design.memory_system.total_bytes} B")
    print("| workload | MACs | cycles | utilisation | DRAM bytes | compulsory bytes | ratio | model time (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, seq in (("bert-base", 512), ("resnet50", None)):
        wl = get_workload(name, seq=seq)
        t0 = time.perf_counter()
        res, _ = simulate_workload_on_array(design, wl)
        secs = time.perf_counter() - t0
        tot = totals(res)
        util = tot["macs"] / (tot["cycles"] * design.n_fus)
        comp = compulsory_bytes(design, wl)
        print(f"| {name}{'' if seq is None else f' seq {seq}'} | {tot['macs']:,} | {int(tot['cycles']):,} | "
              f"{100 * util:.1f}% | {int(tot['dram_bytes']):,} | {comp:,} | {tot['dram_bytes'] / comp:.2f}x | {secs:.1f} |")


if __name__ == "__main__":
    main()
