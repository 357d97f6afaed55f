"""Top-k engine: cycles and elements per cycle vs parallelism, from the exact cycle model (checked on RTL).

Usage: python benchmarks/topk_bench.py [--n 1024] [--k 512 32] [--trials 20] [--rtl]

For n scores and each k, prints the mean model cycles over ``trials`` random inputs (uniform int16,
seeded) for P = 1..32 with the paper's FIFO depth (64 rows) and with FIFOs deep enough for the whole
input (n / P rows); the throughput in elements per cycle (n / cycles) and as a fraction of P (the
limit: every element read once, P per cycle); the same relative to P = 1 next to the paper's relative
throughput (168/299/485/653/776/771 GFLOPS); and a sort-based baseline: a bitonic sorting network with
P compare-exchange units, log2(n)(log2(n)+1)/2 stages of n/2 compare-exchanges, i.e. ceil(n / 2P) cycles
per stage (a lower bound: no stage-to-stage shuffle cost, no re-ordering of the selected elements by
index). ``--rtl`` also runs a few points on Verilator (one build per P) and prints RTL cycles next to
model cycles.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from archgen.sim.topk_model import simulate_topk

PAPER_GFLOPS = {1: 168, 2: 299, 4: 485, 8: 653, 16: 776, 32: 771}


def bitonic_cycles(n: int, p: int) -> int:
    stages = int(math.log2(n)) * (int(math.log2(n)) + 1) // 2
    return stages * math.ceil(n / (2 * p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--k", type=int, nargs="+", default=None, help="k values (default: n/2 and n/32)")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--rtl", action="store_true", help="also run a few points on Verilator")
    args = ap.parse_args()
    n = args.n
    ks = args.k or [n // 2, max(1, n // 32)]
    rng = np.random.default_rng(2021)
    inputs = [rng.integers(-(1 << 15), 1 << 15, n) for _ in range(args.trials)]

    for k in ks:
        print(f"top-k, n = {n}, k = {k}, mean over {args.trials} random int16 inputs (model cycles)")
        print(f"{'P':>3} {'cycles D=64':>12} {'elem/cycle':>10} {'/P':>5} {'cycles D=n/P':>13} {'elem/cycle':>10} "
              f"{'/P':>5} {'rel. D=n/P':>10} {'paper rel.':>10} {'bitonic cyc':>12} {'speed-up':>9}")
        base = None
        for p in (1, 2, 4, 8, 16, 32):
            c64 = float(np.mean([simulate_topk(x, k, parallelism=p, seed=s, fifo_depth=64).cycles
                                 for s, x in enumerate(inputs)]))
            cfull = float(np.mean([simulate_topk(x, k, parallelism=p, seed=s, fifo_depth=-(-n // p)).cycles
                                   for s, x in enumerate(inputs)]))
            base = base or n / cfull
            bit = bitonic_cycles(n, p)
            print(f"{p:>3} {c64:>12.1f} {n / c64:>10.2f} {n / c64 / p:>5.2f} {cfull:>13.1f} {n / cfull:>10.2f} "
                  f"{n / cfull / p:>5.2f} {(n / cfull) / base:>10.2f} {PAPER_GFLOPS[p] / PAPER_GFLOPS[1]:>10.2f} "
                  f"{bit:>12d} {bit / cfull:>8.2f}x")
        print("cycles are clock cycles from command to done; elem/cycle = n / cycles; /P = elem/cycle / P; "
              "speed-up = bitonic cycles / top-k cycles (D = n/P)\n")

    if args.rtl:
        from archgen.verif.topk_check import verify_topk

        print("RTL check (Verilator), n = %d, D = 64:" % n)
        print(f"{'P':>3} {'k':>5} {'seed':>5} {'RTL cycles':>11} {'model cycles':>13} {'match':>6} {'correct':>8} {'wall s':>7}")
        for p in (4, 16):
            for k in ks:
                for seed in (1, 2):
                    t0 = time.time()
                    res = verify_topk(n, k, p, seed, max_n=max(2048, n))
                    print(f"{p:>3} {k:>5} {seed:>5} {res['rtl_cycles']:>11} {res['model_cycles']:>13} "
                          f"{str(res['cycles_match']):>6} {str(res['correct']):>8} {time.time() - t0:>7.1f}")


if __name__ == "__main__":
    main()
