"""Whole-layer Verilator speed: a GEMM on an 8x8 gemm_os array run as one layer through the generated
memory system (rtlgen/layer_top.py), simulated cycles per wall-clock second, build excluded.

Usage: python benchmarks/layer_verilator_bench.py [M K N] [--cocotb]      (default 256 256 256)

Default: the stand-alone Verilator binary (verif/layer_binary.py); the wall time is the executable's
whole run (start-up and the DRAM read-back included, build excluded). ``--cocotb``: the same top under
cocotb (verif/tb_layer.py), timed inside the bench from raising ``go`` to ``finished``. Either way the
layer runs without Python in the loop: DRAM, DMA, buffers and controller are in the simulated top. The per-edge
figure beside it is today's array-only bench (verif/tb_array.py: a Python driver per stream beat), from
docs/results.md (1.3k to 8k simulated cycles/s).
"""
from __future__ import annotations

import sys
import time

from archgen.arch.spec import load_spec
from archgen.verif.layer_check import verify_layer


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    nums = [a for a in argv if not a.startswith('--')]
    m, k, n = (int(v) for v in nums[:3]) if len(nums) >= 3 else (256, 256, 256)
    design = load_spec("gemm_os", ["array.shape=8x8", "memory.dram.width_bytes=32"])
    t0 = time.perf_counter()
    r = verify_layer(design, {"i": m, "k": k, "j": n}, seed=1, binary="--cocotb" not in argv)
    total = time.perf_counter() - t0
    wall = r.detail["wall_s"]
    print(f"layer: GEMM {m}x{k}x{n} on 8x8 gemm_os, command {r.command}, {r.detail['blocks']} blocks")
    print(f"outputs exact: {r.outputs_exact}; RTL cycles {r.rtl_cycles:,} == model cycles {r.model_cycles:,}: "
          f"{r.rtl_cycles == r.model_cycles}")
    print(f"{'driver':<44}{'simulated cycles/s':>20}")
    print(f"{'whole layer in the top, ' + ('cocotb' if '--cocotb' in argv else 'binary') + '':<44}{r.rtl_cycles / wall:>20,.0f}")
    print(f"{'per-edge Python stream drivers (tb_array)':<44}{'1,300 - 8,000':>20}")
    print(f"(layer run {wall:.2f} s wall; whole script incl. build/cache lookup and read-back {total:.1f} s)")
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
