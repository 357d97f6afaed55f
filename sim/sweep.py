"""Design-space sweeps with the cycle model: resumable, deterministic, local or on Dask.

A sweep is a list of `SweepPoint`s (a design after overrides, a dataflow, a workload), either the
cartesian product of ``--vary`` values or a sweep file (sim/sweep_file.py). Each point not already in
the results store (sim/store.py, an SQLite file keyed by a hash of design, workload, mapping and model
version) is evaluated with the array model (sim/sweep_eval.py) and stored in its own transaction as
it finishes, so an interrupted sweep resumes where it stopped and nothing stored is computed again.
Outputs (table, Pareto front, CSV, JSON, plots) are in sim/sweep_report.py.
"""
from __future__ import annotations

import itertools
import signal
import threading
from pathlib import Path
from typing import Callable, Sequence

from archgen.arch.errors import ArchgenError, SpecError, problem

from .store import STORE_NAME, ResultStore, model_version
from .sweep_eval import SweepPoint, evaluate_point

__all__ = ["SweepPoint", "expand_grid", "run_sweep", "pareto_front", "model_version", "OBJECTIVES",
           "DEFAULT_OBJECTIVES", "STORE_NAME", "evaluate_point", "parse_dask", "validate_points",
           "design_totals"]

#: objective name -> record field (all minimised); units are in the field names
OBJECTIVES = {"latency": "time_ns", "energy": "energy_pj", "area": "area_mm2", "edp": "edp_pj_ns",
              "cycles": "cycles", "dram": "dram_bytes", "fus": "fus"}
DEFAULT_OBJECTIVES = ("latency", "energy", "area")


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


def pareto_front(records: list[dict], objectives: Sequence[str] = DEFAULT_OBJECTIVES) -> list[dict]:
    """Records no other record beats on every objective (names of OBJECTIVES or record fields)."""
    fields = [OBJECTIVES.get(o, o) for o in objectives]
    values = [tuple(r[f] for f in fields) for r in records]
    front = []
    for r, v in zip(records, values):
        dominated = any(all(a <= b for a, b in zip(o, v)) and o != v for o in values)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: tuple(r[f] for f in fields))


def validate_points(points: list[SweepPoint]) -> None:
    """Load every distinct design and workload of the sweep before any point is simulated; one
    SpecError with every distinct problem, each prefixed with the point it was found in."""
    from archgen.arch.spec import find_spec, load_spec_data
    from .sweep_eval import load_workload
    problems, seen_designs, seen_workloads, seen_messages = [], {}, set(), set()

    def add(where, err):
        for p in err.problems:
            if (p.path, p.message) not in seen_messages:
                seen_messages.add((p.path, p.message))
                problems.append(problem(f"{where}: {p.path}" if where else p.path, p.message, *(
                    (p.got,) if p.has_got else ())))

    for pt in points:
        if pt.overrides not in seen_designs:
            try:
                seen_designs[pt.overrides] = load_spec_data(pt.design_data(), source=str(find_spec(pt.spec)))
            except SpecError as err:
                seen_designs[pt.overrides] = None
                add(" ".join(pt.overrides), err)
        design = seen_designs[pt.overrides]
        if design is not None and pt.dataflow is not None:
            try:
                design.dataflow(pt.dataflow)
            except SpecError as err:
                add("", err)
        if (pt.workload, pt.seq) not in seen_workloads:
            seen_workloads.add((pt.workload, pt.seq))
            try:
                load_workload(pt.workload, pt.seq)
            except SpecError as err:
                add("", err)
        if len(problems) >= 20:
            break
    if problems:
        raise SpecError(problems)


def design_totals(records: list[dict]) -> list[dict]:
    """One record per design (spec, overrides, dataflow), summed over its workloads: the time and
    energy to run each workload once, EDP of those totals. With one workload, the records themselves.
    A Pareto front compares designs, never one design's workload against another's."""
    import hashlib
    groups: dict[tuple, list[dict]] = {}
    records = list({r["key"]: r for r in records}.values())      # a point listed twice counts once
    for r in records:
        groups.setdefault((r["spec"], tuple(r["overrides"]), r["dataflow"], r.get("mapper", "heuristic")),
                          []).append(r)
    if all(len(g) == 1 for g in groups.values()):
        return list(records)
    out = []
    for rs in groups.values():
        first = rs[0]
        t, e = sum(r["time_ns"] for r in rs), sum(r["energy_pj"] for r in rs)
        out.append(dict(first, key=hashlib.sha256(" ".join(sorted(r["key"] for r in rs)).encode()).hexdigest()[:24],
                        workload=f"all {len(rs)} workloads", seq=None, points=[r["key"] for r in rs],
                        cycles=sum(r["cycles"] for r in rs), time_ns=t, energy_pj=e, edp_pj_ns=t * e,
                        dram_bytes=sum(r["dram_bytes"] for r in rs)))
    return out


def parse_dask(text: str | None) -> tuple[str, object] | None:
    """``local:N`` -> ("local", N); ``tcp://HOST:PORT`` (or any scheduler address) -> ("address", text)."""
    if text is None:
        return None
    if text.startswith("local:"):
        n = text[len("local:"):]
        if not n.isdigit() or not 1 <= int(n) <= 64:
            raise SpecError([problem("--dask", "local:N starts a LocalCluster of N worker processes, N in 1..64",
                                     text)])
        return "local", int(n)
    if "://" not in text:
        raise SpecError([problem("--dask", "a scheduler address such as tcp://HOST:8786, or local:N", text)])
    return "address", text


def run_sweep(points: list[SweepPoint], out_dir: Path, *, workers: int = 1, dask: str | None = None,
              on_result: Callable[[dict], None] | None = None, repair: bool = False,
              notes: list | None = None, on_start: Callable[[int, int], None] | None = None) -> list[dict]:
    """Evaluate every point not already in ``out_dir``'s store; returns the records in point order.

    ``on_start(total, already_done)`` is called once the store has been read; ``on_result(record)``
    after each new point is stored. The store is checked on open (sim/store.py): no tampered or
    corrupt row is ever returned. A sweep that fails before storing anything leaves no directory."""
    dask_spec = parse_dask(dask)
    out_dir = Path(out_dir)
    created_dir = not out_dir.exists()
    keys = {p: p.key() for p in points}
    store = ResultStore.open(out_dir / STORE_NAME, repair=repair)
    try:
        if notes is not None:
            notes += store.notes
        todo, seen = [], set()
        for p in points:
            if keys[p] not in store.rows and keys[p] not in seen:
                seen.add(keys[p])
                todo.append(p)
        if on_start:
            on_start(len(points), len(points) - len(todo))

        expected = set(keys.values())

        def save(rec):
            if rec.get("key") not in expected:
                # a worker with other archgen code (a remote Dask worker), or a spec file edited mid-sweep
                raise ArchgenError(f"a point came back with key {str(rec.get('key'))[:24]!r}, which no point of this "
                                   f"sweep has: the worker runs model {rec.get('model')!r}, this process "
                                   f"{model_version()!r}, or a spec or workload file changed during the sweep; "
                                   "nothing was stored from it")
            stored = store.put(rec)
            if on_result:
                on_result(stored)

        try:
            with _interrupt_guard() as guard:
                _evaluate_all(todo, save, workers, dask_spec, guard)
        except BaseException:
            store.close()
            if created_dir and out_dir.is_dir() and not any(out_dir.iterdir()):
                out_dir.rmdir()
            raise
        return [store.rows[keys[p]] for p in points]
    finally:
        store.close()


class _interrupt_guard:
    """SIGINT is delivered between points, never inside a store write: a point is either stored
    whole or not at all, so an interrupted sweep never computes a stored point again."""

    def __init__(self):
        self.critical = False
        self.pending = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.critical:
            self.pending = True
        else:
            raise KeyboardInterrupt

    def store(self, save, rec):
        self.critical = True
        try:
            save(rec)
        finally:
            self.critical = False
        if self.pending:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _evaluate_all(todo, save, workers, dask_spec, guard):
    if not todo:
        return
    if dask_spec is not None:
        _evaluate_on_dask(todo, save, dask_spec, guard)
    elif workers > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor, as_completed
        # workers ignore SIGINT; the parent stops handing out points and stores what has finished
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_ignore_sigint)
        futs, saved = [], set()
        try:
            futs = [pool.submit(evaluate_point, p) for p in todo]
            for fut in as_completed(futs):
                saved.add(fut)
                guard.store(save, fut.result())
        except KeyboardInterrupt:
            # points already running finish (workers ignore SIGINT); store them rather than lose them
            pool.shutdown(wait=True, cancel_futures=True)
            for fut in futs:
                if fut not in saved and fut.done() and not fut.cancelled() and fut.exception() is None:
                    saved.add(fut)
                    save(fut.result())
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    else:
        for p in todo:
            guard.store(save, evaluate_point(p))


def _evaluate_on_dask(todo, save, dask_spec, guard):
    try:
        from dask.distributed import Client, LocalCluster, as_completed as dask_completed
    except ImportError:
        from archgen.arch.errors import ToolMissingError
        raise ToolMissingError("Dask is not installed: pip install -e '.[dask]'") from None
    kind, arg = dask_spec
    cluster = None
    try:
        if kind == "local":
            cluster = LocalCluster(n_workers=arg, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
        else:
            try:
                client = Client(arg, timeout=30)
            except (OSError, TimeoutError) as err:
                raise SpecError([problem("--dask", f"cannot reach the Dask scheduler: {err}", arg)]) from None
        with client:
            futures = client.map(evaluate_point, todo, pure=True)
            for fut in dask_completed(futures):
                guard.store(save, fut.result())
    finally:
        if cluster is not None:
            cluster.close()
