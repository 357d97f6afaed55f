"""``archgen search``: parse the budget and workloads, run sim/search.py, print the best design."""
from __future__ import annotations

from archgen.arch.errors import SpecError, problem

__all__ = ["parse_budget", "run_search_cli"]


def parse_budget(text: str):
    from .search import BUDGETS, Budget
    if text in BUDGETS:
        return BUDGETS[text]
    parts = text.split(",")
    try:
        budget = Budget(*(int(p) for p in parts)) if len(parts) == 3 else None
    except ValueError:
        budget = None
    if budget is None:
        raise SpecError([problem("--budget", f"{', '.join(BUDGETS)} or PES,ONCHIP_BYTES,DRAM_BYTES_PER_CYCLE", text)])
    budget.check()
    return budget


def run_search_cli(args, con) -> int:
    from .search import run_search
    from .sweep_eval import load_workload
    if not isinstance(args.evaluations, int) or not 1 <= args.evaluations <= 10_000:
        raise SpecError([problem("--evaluations", "an integer from 1 to 10000", args.evaluations)])
    budget = parse_budget(args.budget)
    refs = [w.strip() for w in args.workload if w.strip()]
    if not refs:
        raise SpecError([problem("--workload", "at least one workload", args.workload)])
    for ref in refs:
        load_workload(ref)                         # unknown names are refused before anything runs
    res = run_search([(r, None) for r in refs], budget, args.out, evaluations=args.evaluations, seed=args.seed,
                     mode=args.mode)
    con.print(f"search ({args.mode}, seed {args.seed}): {len(res['history'])} designs, {res['computed']} point(s) "
              f"computed, {res['stored']} taken from the store in {args.out}", markup=False)
    best = res["best"]
    if best is None:
        con.print("no design within the budget fits every workload's layers in its buffers", markup=False)
        return 1
    c = best["candidate"]
    con.print(f"best: {c.spec} {c.shape[0]}x{c.shape[1]} ({c.pes} PEs), buffers A {c.buffers[0]} B, "
              f"B {c.buffers[1]} B, C {c.buffers[2]} B, DRAM {budget.dram_bytes_per_cycle} B/cycle, mapper {c.mapper}; "
              f"geometric-mean EDP {best['edp_pj_ns'] * 1e-9:.4g} uJ*ms", markup=False)
    return 0
