"""What the top-k sample register (spec ``units.topk.sample_register``, H133) costs on SpAtten workloads.

    python benchmarks/spatten_topk_sample_register.py

BERT-base seq 512 on spatten.yaml, each case with the default top-k engines and with the sample-register
ones: whole-model cycles and the fraction of the multipliers' peak (QxK + PxV MACs per cycle). Dense
rows never run the local-V top-k, so only the pruned cases can differ. Prints, never asserts; the figures
are in docs/spatten.md ('Top-k sample register').
"""
from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from archgen.arch.spatten_spec import builtin_spec_path, load_spatten_spec  # noqa: E402
from archgen.sim.spatten_algo import SpattenAlgoConfig  # noqa: E402
from archgen.sim.spatten_sim import algo_config_from_spec, simulate_spatten, spatten_peak_macs_per_cycle  # noqa: E402
from archgen.workloads.library import get_workload  # noqa: E402


def _cases(spec):
    return (("dense, PQ off (no top-k)", SpattenAlgoConfig(progressive=False)),
            ("spec's pruning: token + head + PQ + local-V 0.3", algo_config_from_spec(spec)),
            ("token 0.3 + local-V 0.3, PQ off", SpattenAlgoConfig(token_prune=0.3, value_prune=0.3,
                                                                  progressive=False)),
            ("local-V 0.5 alone, PQ off", SpattenAlgoConfig(value_prune=0.5, progressive=False)))


def main() -> None:
    base = load_spatten_spec(builtin_spec_path("spatten"))
    sreg = dataclasses.replace(base, topk=dataclasses.replace(base.topk, sample_register=True))
    peak = spatten_peak_macs_per_cycle(base)
    work = get_workload("bert-base", seq=512)
    print("| case | engine | cycles | % of multiplier peak | top-k stage (cycles) | rows swept unpruned |")
    print("|---|---|---:|---:|---:|---:|")
    for label, cfg in _cases(base):
        for name, spec in (("default", base), ("sample register", sreg)):
            res = simulate_spatten(spec, work, algo_config=cfg, seed=0)
            cycles = sum(r.cycles for r in res)
            macs = sum(r.macs for r in res)
            topk = sum(r.extra["topk_stage_cycles"] for r in res)
            fell = sum(r.extra.get("fallback_rows", 0) for r in res)
            print(f"| {label} | {name} | {cycles:,.0f} | {100 * macs / (peak * cycles):.2f} | {topk:,.0f} | "
                  f"{fell:,} |", flush=True)


if __name__ == "__main__":
    main()
