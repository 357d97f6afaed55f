"""Design-space sweeps with the cycle model: resumable, deterministic, local or on Dask.

A sweep varies spec fields over given values (cartesian product), simulates one workload on each
design point with the array model, and stores one JSON record per point as it finishes, keyed by a
hash of (spec, workload, model version). Running the same sweep again skips the points already stored,
so an interrupted sweep resumes. The Pareto front (latency vs energy vs FUs) is printed and stored.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from archgen.arch.errors import SpecError, problem

__all__ = ["SweepPoint", "expand_grid", "run_sweep", "pareto_front", "MODEL_VERSION", "run_sweep_cli"]

MODEL_VERSION = "array-model-1"


@dataclass(frozen=True)
class SweepPoint:
    spec: str
    overrides: tuple[str, ...]
    workload: str
    seq: int | None

    def key(self) -> str:
        from archgen.arch.spec import apply_overrides, find_spec, read_spec_file
        data = apply_overrides(read_spec_file(find_spec(self.spec)), self.overrides)
        blob = json.dumps({"spec": data, "workload": self.workload, "seq": self.seq, "model": MODEL_VERSION},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


def expand_grid(vary: list[str]) -> list[tuple[str, ...]]:
    """["array.shape=8x8,16x16", "clock_mhz=500,1000"] -> override tuples, cartesian product in order."""
    axes = []
    problems = []
    for item in vary:
        field, _, values = item.partition("=")
        vals = [v for v in values.split(",") if v.strip()]
        if not field or not vals:
            problems.append(problem("--vary", "FIELD=V1,V2,... with at least one value", item))
            continue
        axes.append([f"{field.strip()}={v.strip()}" for v in vals])
    if problems:
        raise SpecError(problems)
    return [tuple(c) for c in itertools.product(*axes)] if axes else [()]


def evaluate_point(point: SweepPoint) -> dict:
    """One design point: whole-workload cycles, time, DRAM bytes and energy from the array model."""
    from archgen.arch.spec import load_spec
    from archgen.sim.array_sim import simulate_workload_on_array
    from archgen.sim.results import totals
    from archgen.workloads.library import get_workload
    design = load_spec(point.spec, point.overrides)
    results, _ = simulate_workload_on_array(design, get_workload(point.workload, seq=point.seq))
    t = totals(results)
    return {"key": point.key(), "spec": point.spec, "overrides": list(point.overrides), "workload": point.workload,
            "seq": point.seq, "fus": design.n_fus, "clock_mhz": design.clock_mhz, "cycles": t["cycles"],
            "time_ns": t["time_ns"], "dram_bytes": t["dram_bytes"], "energy_pj": t["energy_pj"],
            "edp_pj_ns": t["energy_pj"] * t["time_ns"], "model": MODEL_VERSION}


def pareto_front(records: list[dict], objectives=("time_ns", "energy_pj", "fus")) -> list[dict]:
    front = []
    for r in records:
        dominated = any(all(o[k] <= r[k] for k in objectives) and any(o[k] < r[k] for k in objectives) for o in records)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: tuple(r[k] for k in objectives))


def run_sweep(points: list[SweepPoint], out_dir: Path, *, workers: int = 1, dask_address: str | None = None,
              on_result=None) -> list[dict]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = out_dir / "results.jsonl"
    done = {}
    if store.exists():
        for line in store.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[rec["key"]] = rec
    todo = [p for p in points if p.key() not in done]

    def save(rec):
        with store.open("a") as fh:
            fh.write(json.dumps(rec, sort_keys=True) + "\n")
        done[rec["key"]] = rec
        if on_result:
            on_result(rec)

    if dask_address:
        try:
            from dask.distributed import Client, as_completed as dask_completed
        except ImportError:
            from archgen.arch.errors import ToolMissingError
            raise ToolMissingError("Dask is not installed: pip install -e '.[dask]'") from None
        with Client(dask_address) as client:
            futures = client.map(evaluate_point, todo, pure=True)
            for fut in dask_completed(futures):
                save(fut.result())
    elif workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = [pool.submit(evaluate_point, p) for p in todo]
            for fut in as_completed(futs):
                save(fut.result())
    else:
        for p in todo:
            save(evaluate_point(p))
    records = [done[p.key()] for p in points]
    front = pareto_front(records)
    (out_dir / "pareto.json").write_text(json.dumps(front, indent=2, sort_keys=True) + "\n")
    return records


def run_sweep_cli(args, con) -> int:
    grid = expand_grid(args.vary)
    points = [SweepPoint(args.spec, tuple(args.set) + g, args.workload, args.seq) for g in grid]
    for p in points:      # validate every point before spending time on any
        from archgen.arch.spec import load_spec
        load_spec(p.spec, p.overrides)
    con.print(f"sweep: {len(points)} design point(s) on {args.workload}; results in {args.out}", markup=False)
    records = run_sweep(points, Path(args.out), workers=args.workers, dask_address=args.dask,
                        on_result=lambda r: con.print(f"  {' '.join(r['overrides']) or '(base)'}: {r['cycles']:.0f} cycles, "
                                                      f"{r['energy_pj'] / 1e6:.3f} uJ", markup=False))
    front = pareto_front(records)
    con.print("Pareto front (time ns, energy pJ, FUs):", markup=False)
    for r in front:
        con.print(f"  {' '.join(r['overrides']) or '(base)'}: {r['time_ns']:.0f} ns, {r['energy_pj']:.3g} pJ, {r['fus']} FUs",
                  markup=False)
    return 0
