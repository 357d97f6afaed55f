"""NAAS-style search vs sizing-only search at the same number of evaluations (docs/dse.md table).

    python benchmarks/search_bench.py                         # eyeriss and edgetpu budgets, 6 designs each
    python benchmarks/search_bench.py --evaluations 12 --seed 1 --budgets eyeriss
    python benchmarks/search_bench.py --budgets eyeriss --evaluations 32 --cross-mapper   # + equal-mapping rows

Per budget: CMA-ES (sim/search.py) with the NAAS encoding (shape, dataflow from loop importances,
buffers, per-layer mapping search) and with sizing only (output-stationary, plan_layer mapping; shape
and buffers searched), each for --evaluations distinct designs, on the geometric-mean EDP over the
workloads. Prints the best EDP of each and their ratio. Results are stored under --out (resumable).
"""
from __future__ import annotations

import argparse
import time


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", nargs="+", default=["eyeriss", "edgetpu"])
    ap.add_argument("--workloads", nargs="+", default=["resnet50", "mobilenetv2", "bert-base"])
    ap.add_argument("--evaluations", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="out/search_bench")
    ap.add_argument("--cross-mapper", action="store_true",
                    help="also rerun each mode's best design with the other mode's mapper (equal-mapping comparison)")
    args = ap.parse_args(argv)
    from archgen.sim.search import BUDGETS, run_search
    wl = [(w, None) for w in args.workloads]
    print(f"workloads={','.join(args.workloads)} evaluations={args.evaluations} seed={args.seed}")
    print("| budget | mode | best design | geo-mean EDP (uJ*ms) | feasible designs | wall (s) |")
    print("|---|---|---|---|---|---|")
    for name in args.budgets:
        best, winners = {}, {}
        for mode in ("naas", "sizing"):
            t0 = time.perf_counter()
            r = run_search(wl, BUDGETS[name], f"{args.out}/{name}-{mode}", evaluations=args.evaluations,
                           seed=args.seed, mode=mode)
            b = r["best"]
            best[mode] = b["edp_pj_ns"] if b else float("inf")
            c = b["candidate"] if b else None
            winners[mode] = c
            desc = (f"{c.spec[:-5]} {c.shape[0]}x{c.shape[1]}, A/B/C {c.buffers[0]}/{c.buffers[1]}/{c.buffers[2]} B, "
                    f"{c.mapper}") if c else "none fits"
            print(f"| {name} | {mode} | {desc} | {best[mode] * 1e-9:.4g} | "
                  f"{sum(h['feasible'] for h in r['history'])}/{len(r['history'])} | {time.perf_counter() - t0:.0f} |",
                  flush=True)
        print(f"| {name} | sizing / naas EDP | | {best['sizing'] / best['naas']:.2f}x | | |", flush=True)
        if args.cross_mapper:
            _cross_mapper(name, winners, wl)


def _cross_mapper(name, winners, wl):
    """Each mode's best design evaluated with the other mode's mapper (the evaluation the search runs)."""
    import dataclasses
    import math
    from archgen.sim.search import BUDGETS, _points
    from archgen.sim.sweep_eval import evaluate_point
    for mode, c in winners.items():
        if c is None:
            continue
        other = dataclasses.replace(c, mapper="heuristic" if c.mapper == "search" else "search")
        edp = [evaluate_point(p)["edp_pj_ns"] for p in _points(other, BUDGETS[name], wl)]
        g = math.exp(sum(math.log(v) for v in edp) / len(edp))
        print(f"| {name} | {mode}'s best with mapper {other.mapper} | {other.spec[:-5]} {c.shape[0]}x{c.shape[1]} | "
              f"{g * 1e-9:.4g} | | |", flush=True)


if __name__ == "__main__":
    main()
