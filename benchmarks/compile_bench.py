"""Compile time of square arrays (compile_array: interconnect, lowering, delay-matching LP, schedule).

    python benchmarks/compile_bench.py                    # 32x32, 64x64, 128x128 gemm_os, flow solver
    python benchmarks/compile_bench.py --sizes 32 64 --spec gemm_ws --cbc   # the LP with CBC instead

Prints one row per size: wall seconds of the whole compile (and its CPU seconds, which a loaded machine
inflates less than wall time) and wall seconds of its phases (interconnect derivation,
lowering to primitives, the LP including building its rows and reading the answer back, the solver
call alone, schedule), plus the LP's size and register bits, so a solver change can be checked for
identical results across runs.
"""
from __future__ import annotations

import argparse
import functools
import os
import time


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--spec", default="gemm_os")
    ap.add_argument("--cbc", action="store_true", help="solve the LP with CBC (the cross-check solver)")
    args = ap.parse_args(argv)
    from archgen.arch.spec import load_spec
    import archgen.dataflow.compile as C
    import archgen.dataflow.delay_lp as D
    import archgen.dataflow.flow_solver as F

    if args.cbc:
        D.LP_SOLVER = "cbc"
    phases: dict = {}

    def timed(mod, name, label):
        f = getattr(mod, name)

        @functools.wraps(f)
        def g(*a, **k):
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                phases[label] = phases.get(label, 0.0) + time.perf_counter() - t
        setattr(mod, name, g)

    timed(C, "derive_interconnect", "interconnect")
    timed(C, "lower_to_primitives", "lowering")
    timed(C, "insert_pipeline_registers", "LP total")
    timed(F, "solve_difference_lp", "solver")     # the min-cost-flow solver (array fast path and _solve_auto)
    timed(D, "_solve", "solver")                  # CBC
    timed(C, "array_schedule", "schedule")
    print(f"spec={args.spec} solver={'CBC' if args.cbc else 'auto (min-cost flow)'} "
          f"load={os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| array | compile (s) | compile CPU (s) | interconnect (s) | lowering (s) | LP total (s) | solver (s) | schedule (s) | "
          "LP vars | LP rows | register bits | latency (cycles) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        phases.clear()
        C.clear_compile_cache()
        design = load_spec(args.spec, [f"array.shape=[{n},{n}]"])
        t0, c0 = time.perf_counter(), time.process_time()
        c = C.compile_array(design)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        r = c.retimed
        print(f"| {n}x{n} | {total:.2f} | {cpu:.2f} | {phases['interconnect']:.2f} | {phases['lowering']:.2f} | "
              f"{phases['LP total']:.2f} | {phases.get('solver', 0.0):.2f} | {phases['schedule']:.2f} | {r.lp_variables} | "
              f"{r.lp_constraints} | {r.register_bits} | {r.latency_cycles} |", flush=True)


if __name__ == "__main__":
    main()
