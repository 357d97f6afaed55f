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
import os
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


STORE_NAME = "results.jsonl"
_STORE_HEADER = {"archgen_sweep_store": 1}
_RECORD_FIELDS = {"key": str, "spec": str, "overrides": list, "workload": str, "fus": int, "clock_mhz": (int, float),
                  "cycles": (int, float), "time_ns": (int, float), "dram_bytes": (int, float),
                  "energy_pj": (int, float), "edp_pj_ns": (int, float), "model": str, "checksum": str}


def _checksum(rec: dict) -> str:
    body = {k: v for k, v in rec.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _store_line(rec: dict) -> str:
    return json.dumps(dict(rec, checksum=_checksum(rec)), sort_keys=True) + "\n"


def _record_problem(rec) -> str | None:
    """Why a parsed line is not a valid record of this store, or None."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    missing = [k for k in _RECORD_FIELDS if k not in rec]
    if missing:
        return f"lacks the fields {', '.join(missing)}"
    for k, kind in _RECORD_FIELDS.items():
        if not isinstance(rec[k], kind) or isinstance(rec[k], bool):
            return f"field {k!r} has the wrong type"
    if rec["checksum"] != _checksum(rec):
        return "checksum mismatch: the record was edited or corrupted after it was written"
    for k in ("cycles", "time_ns", "energy_pj", "dram_bytes", "edp_pj_ns"):
        if not (rec[k] >= 0 and rec[k] != float("inf")):
            return f"field {k!r} is not a finite non-negative number"
    return None


def read_store(store: Path, *, repair: bool = False) -> tuple[dict[str, dict], list[str]]:
    """Validated records by key, and notes about what was dropped.

    Every line but the header must be a record whose checksum matches; a record from another model
    version is skipped (it will be recomputed). Any other bad line raises SpecError naming the file and
    the line, unless
    ``repair`` is set: then bad lines are dropped (and so recomputed) and the file is rewritten."""
    if store.is_dir():
        raise SpecError([problem("--out", f"{store} is a directory, not a sweep results store; remove it or choose "
                                 "another --out", str(store))])
    try:
        raw = store.read_bytes()
    except OSError as err:
        raise SpecError([problem("--out", f"cannot read the results store {store}: {err.strerror}", str(store))]) from None
    lines = raw.split(b"\n")
    records: dict[str, dict] = {}
    notes, bad = [], []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            # each record is one fsync'd write() of a short line, so a partial line means the file was
            # damaged from outside (or the disk filled up): refused like any other bad line
            bad.append((n, "not a JSON record (truncated or garbled)"))
            continue
        if n == 1 and rec == _STORE_HEADER:
            continue
        if n == 1 and not (isinstance(rec, dict) and "checksum" in rec):
            bad.append((n, "this file is not an archgen sweep store (no store header)"))
            continue
        why = _record_problem(rec)
        if why is not None:
            bad.append((n, why))
        elif rec["model"] != MODEL_VERSION:
            notes.append(f"{store} line {n}: computed by model {rec['model']!r}, now {MODEL_VERSION!r}; recomputed")
        else:
            records[rec["key"]] = rec
    if bad and not repair:
        first = bad[0]
        more = f" (and {len(bad) - 1} more bad line(s))" if len(bad) > 1 else ""
        raise SpecError([problem("--out", f"{store} line {first[0]}: {first[1]}{more}; nothing from it was used. "
                                 "Rerun with --repair to drop the bad lines and recompute them, or delete the file")])
    if bad:
        notes += [f"{store} line {n}: dropped ({why}); recomputed" for n, why in bad]
        text = json.dumps(_STORE_HEADER) + "\n" + "".join(_store_line(r) for r in records.values())
        tmp = store.with_name(store.name + ".repair")
        tmp.write_text(text)
        os.replace(tmp, store)
    return records, notes


def run_sweep(points: list[SweepPoint], out_dir: Path, *, workers: int = 1, dask_address: str | None = None,
              on_result=None, repair: bool = False, notes: list | None = None) -> list[dict]:
    """Evaluate every point not already in ``out_dir``'s store; returns the records in point order.

    Records are appended as they finish (one line each, with a checksum), so an interrupted sweep
    resumes where it stopped. The store is validated on read (``read_store``); no tampered or
    corrupt record is ever returned or reported."""
    out_dir = Path(out_dir)
    store = out_dir / STORE_NAME
    created_dir = not out_dir.exists()
    done: dict[str, dict] = {}
    if store.exists() or store.is_symlink():
        done, read_notes = read_store(store, repair=repair)
        if notes is not None:
            notes += read_notes
    keys = {p: p.key() for p in points}
    todo = [p for p in points if keys[p] not in done]

    def save(rec):
        if not store.exists():
            out_dir.mkdir(parents=True, exist_ok=True)
            with store.open("a") as fh:
                fh.write(json.dumps(_STORE_HEADER) + "\n")
        with store.open("a") as fh:
            fh.write(_store_line(rec))
            fh.flush()
            os.fsync(fh.fileno())
        done[rec["key"]] = dict(rec, checksum=_checksum(rec))
        if on_result:
            on_result(rec)

    try:
        _evaluate_all(todo, save, workers, dask_address)
    except BaseException:
        if created_dir and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    records = [done[keys[p]] for p in points]
    front = pareto_front(records)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "pareto.json.tmp"
    tmp.write_text(json.dumps(front, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out_dir / "pareto.json")
    return records


def _evaluate_all(todo, save, workers, dask_address):
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
    elif workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = [pool.submit(evaluate_point, p) for p in todo]
            for fut in as_completed(futs):
                save(fut.result())
    else:
        for p in todo:
            save(evaluate_point(p))


def run_sweep_cli(args, con) -> int:
    grid = expand_grid(args.vary)
    points = [SweepPoint(args.spec, tuple(args.set) + g, args.workload, args.seq) for g in grid]
    for p in points:      # validate every point before spending time on any
        from archgen.arch.spec import load_spec
        load_spec(p.spec, p.overrides)
    con.print(f"sweep: {len(points)} design point(s) on {args.workload}; results in {args.out}", markup=False)
    notes: list[str] = []
    records = run_sweep(points, Path(args.out), workers=args.workers, dask_address=args.dask,
                        repair=getattr(args, "repair", False), notes=notes,
                        on_result=lambda r: con.print(f"  {' '.join(r['overrides']) or '(base)'}: {r['cycles']:.0f} cycles, "
                                                      f"{r['energy_pj'] / 1e6:.3f} uJ", markup=False))
    for note in notes:
        con.print(f"  note: {note}", markup=False)
    front = pareto_front(records)
    con.print("Pareto front (time ns, energy pJ, FUs):", markup=False)
    for r in front:
        con.print(f"  {' '.join(r['overrides']) or '(base)'}: {r['time_ns']:.0f} ns, {r['energy_pj']:.3g} pJ, {r['fus']} FUs",
                  markup=False)
    return 0
