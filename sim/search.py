"""``archgen search``: NAAS-style accelerator search by CMA-ES (the PyPI ``cma`` package), docs/dse.md.

A candidate is a vector z in [0, 1]^8 (the NAAS encoding, for the GEMM-family built-in specs):

* z0: the PE count, log-uniform between 4 and the budget's PEs; z1: the array's aspect ratio (rows : cols
  from 1 : P to P : 1, so a 1-D array is the extreme);
* z2..z4: importances of the loops i, j, k; the two most important are the parallel (spatial) loops, which
  fixes the dataflow and its connectivity: {i, j} output-stationary (gemm_os), {j, k} weight-stationary
  (gemm_ws), {i, k} input-stationary (gemm_is);
* z5..z7: the split of the on-chip budget left after every buffer got what the workloads need at
  least (`buffer_floors`: a small block of every layer, two halves when double buffered) between
  the buffers of A, B and C (proportional, in 256 B units); a shape whose floors exceed the budget is
  infeasible without simulating anything;
* per-layer mapping: every layer is mapped by mappings/mapper.py's search (EDP objective, seed 0).

``mode="sizing"`` is the sizing-only baseline: dataflow fixed (``fixed_dataflow``, default output-
stationary), z2..z4 ignored, layers mapped by plan_layer; PE count, shape and buffers still searched.

The fitness is the geometric mean over the workloads of each one's EDP (pJ x ns); a design whose layers
do not fit its buffers scores ``INFEASIBLE`` (times 1 + its buffer floors over the on-chip budget, so
CMA-ES is steered back into the budget). The DRAM port is the budget's bandwidth. Every point is a
sweep point (sim/sweep_eval.py) kept in the sweep's SQLite store under ``out_dir``: a rerun with the same
seed asks CMA-ES the same questions and finds the answers stored, so it computes nothing twice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from archgen.arch.errors import SpecError, problem

__all__ = ["Budget", "Candidate", "decode", "buffer_floors", "run_search", "INFEASIBLE", "BUDGETS"]

INFEASIBLE = 1e40
MAX_SIDE = 1024          # arch/spec.schema.json: at most 1024 FUs along an array axis
DIM = 8
_DATAFLOWS = {frozenset("ij"): "gemm_os.yaml", frozenset("jk"): "gemm_ws.yaml", frozenset("ik"): "gemm_is.yaml"}


@dataclass(frozen=True)
class Budget:
    pes: int                 # at most this many PEs (FUs)
    onchip_bytes: int        # at most this many bytes of buffers, summed over A, B and C
    dram_bytes_per_cycle: int

    def check(self) -> None:
        bad = [problem(f"budget.{f}", "must be a positive integer", v) for f, v in
               (("pes", self.pes), ("onchip_bytes", self.onchip_bytes), ("dram_bytes_per_cycle", self.dram_bytes_per_cycle))
               if not isinstance(v, int) or v < 1]
        if not bad and self.pes < 4:
            bad.append(problem("budget.pes", "at least 4 PEs", self.pes))
        if not bad and self.onchip_bytes < 3 * 1024:
            bad.append(problem("budget.onchip_bytes", "at least 3 KiB (1 KiB per buffer)", self.onchip_bytes))
        if bad:
            raise SpecError(bad)


#: Eyeriss-like (168 PEs, 108 KB global buffer + scratchpads) and EdgeTPU-like (a 64x64 array, 4 MiB) budgets
BUDGETS = {"eyeriss": Budget(168, 108 * 1024, 16), "edgetpu": Budget(4096, 4 * 1024 * 1024, 32)}


@dataclass(frozen=True)
class Candidate:
    spec: str
    shape: tuple[int, int]
    buffers: tuple[int, int, int]        # bytes of A, B, C
    mapper: str

    def overrides(self, budget: Budget) -> tuple[str, ...]:
        return (f"array.shape=[{self.shape[0]},{self.shape[1]}]", f"memory.A.bytes={self.buffers[0]}",
                f"memory.B.bytes={self.buffers[1]}", f"memory.C.bytes={self.buffers[2]}",
                f"memory.dram.width_bytes={budget.dram_bytes_per_cycle}")

    @property
    def pes(self) -> int:
        return self.shape[0] * self.shape[1]


def decode(z, budget: Budget, mode: str = "naas", fixed_dataflow: str = "gemm_os.yaml",
           floors: tuple[int, int, int] | None = None) -> Candidate:
    """The design a vector names; always within the budget (PEs, on-chip bytes). ``floors``: the bytes each
    buffer needs at least (default 1 KiB each); the rest of the budget is split by z5..z7."""
    z = [min(1.0, max(0.0, float(v))) for v in z]
    p = int(round(math.exp(math.log(4) + z[0] * (math.log(budget.pes) - math.log(4)))))
    p = max(4, min(budget.pes, p))
    # each side at most MAX_SIDE (the spec's limit per array axis): the rows keep cols within it too
    rows = max(-(-p // MAX_SIDE), 1, min(p, MAX_SIDE, int(round(math.exp(z[1] * math.log(p))))))
    cols = max(1, min(MAX_SIDE, p // rows))
    if mode == "naas":
        imp = dict(zip("ijk", z[2:5]))
        top = frozenset(sorted("ijk", key=lambda d: (-imp[d], d))[:2])
        spec, mapper = _DATAFLOWS[top], "search"
    else:
        spec, mapper = fixed_dataflow, "heuristic"
    unit = 256
    floors = floors or (1024, 1024, 1024)
    spare = max(0, (budget.onchip_bytes - sum(floors)) // unit)
    w = [0.05 + v for v in z[5:8]]
    share = [int(spare * x / sum(w)) for x in w]
    buffers = tuple(f + unit * s for f, s in zip(floors, share))
    return Candidate(spec, (rows, cols), buffers, mapper)


def buffer_floors(spec: str, shape: tuple[int, int], workloads) -> tuple[int, int, int] | None:
    """Bytes the A, B and C buffers need so that every layer of every workload fits with one array tile
    per block along the outer loops and streamed (inner) loops cut into chunks of ``rows + cols`` elements
    (plan_layer may cut them shorter, but a chunk shorter than one array fill and drain spends more cycles
    on the array's overhead than on steps, and multiplies the blocks the model walks; two halves when
    double buffered), rounded up to 256 B and at least 1 KiB; None if a layer cannot run on the design."""
    from archgen.arch.spec import load_spec
    from archgen.mappings.memory_tiling import LayerCommand, _largest_block_bytes
    from archgen.mappings.tiling import map_problem
    from .array_sim import lower_layer
    from .sweep_eval import load_workload
    try:
        design = load_spec(spec, [f"array.shape=[{shape[0]},{shape[1]}]"])
    except SpecError:
        return None
    df = design.dataflow(None)
    outer = tuple(df.outer_dims())
    inner = tuple(df.inner_dims())
    chunk = sum(shape)              # a streamed chunk at least one array fill and drain long (plan_layer's estimate)
    need = {b.operand: 1024 for b in design.memory_system.buffers}
    halves = {b.operand: b.halves for b in design.memory_system.buffers}
    try:
        for ref, seq in workloads:
            seen = set()
            for layer in load_workload(ref, seq).layers:
                if not layer.einsum:
                    continue
                bounds = lower_layer(layer, design)[0]
                key = tuple(sorted(bounds.items()))
                if key in seen:
                    continue
                seen.add(key)
                cmd = LayerCommand(design, df, map_problem(design, bounds, df, fifo_check=False).bounds,
                                   tuple((d, 1) for d in outer) + tuple((d, chunk) for d in inner), outer + inner)
                for x, nbytes in _largest_block_bytes(cmd).items():
                    need[x] = max(need[x], -(-halves[x] * nbytes // 256) * 256)
    except SpecError:
        return None
    return tuple(need[x] for x in ("A", "B", "C"))


def _points(c: Candidate, budget: Budget, workloads):
    from .sweep_eval import SweepPoint
    return [SweepPoint(c.spec, c.overrides(budget), w, seq, None, c.mapper) for w, seq in workloads]


def run_search(workloads, budget: Budget, out_dir: str | Path, *, evaluations: int = 24, seed: int = 0,
               mode: str = "naas", popsize: int = 6, on_eval=None) -> dict:
    """CMA-ES over `decode`'s encoding; returns {"best": ..., "history": [...], "computed": n, "stored": n}.
    ``workloads``: [(ref, seq)]. Deterministic for a seed; resumable through ``out_dir``'s store."""
    import cma
    from .store import STORE_NAME, ResultStore
    from .sweep_eval import evaluate_point

    budget.check()
    if mode not in ("naas", "sizing"):
        raise SpecError([problem("mode", "naas or sizing", mode)])
    if not isinstance(evaluations, int) or evaluations < 1:
        raise SpecError([problem("evaluations", "a positive integer", evaluations)])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultStore.open(out / STORE_NAME)
    history, computed, reused = [], 0, 0
    cache: dict = {}
    floors: dict = {}
    try:
        es = cma.CMAEvolutionStrategy([0.5] * DIM, 0.3, {"seed": seed + 1, "popsize": popsize, "bounds": [0, 1],
                                                         "verbose": -9, "CMA_diagonal": False})
        for _ in range(50 * evaluations):          # generations; duplicates after decoding cost nothing
            if len(history) >= evaluations:
                break
            xs = es.ask()
            scores = []
            for x in xs:
                if len(history) >= evaluations:    # the budget is spent mid-generation: evaluate nothing more
                    break
                shape_only = decode(x, budget, mode)
                fkey = (shape_only.spec, shape_only.shape)
                if fkey not in floors:
                    floors[fkey] = buffer_floors(shape_only.spec, shape_only.shape, workloads)
                fl = floors[fkey]
                if fl is None or sum(fl) > budget.onchip_bytes:
                    cand = shape_only                   # cannot fit the budget: scored without simulating,
                    if cand not in cache:               # worse the further its floors are over the budget
                        cache[cand] = INFEASIBLE * (1.0 + (sum(fl) / budget.onchip_bytes if fl else 100.0))
                        if len(history) < evaluations:
                            history.append({"candidate": cand, "edp_pj_ns": INFEASIBLE, "feasible": False})
                            if on_eval:
                                on_eval(history[-1])
                    scores.append(cache[cand])
                    continue
                cand = decode(x, budget, mode, floors=fl)
                if cand not in cache:
                    recs, ok = [], True
                    for pt in _points(cand, budget, workloads):
                        key = pt.key()
                        if key in store.rows:
                            recs.append(store.rows[key])
                            reused += 1
                            continue
                        try:
                            rec = evaluate_point(pt)
                        except SpecError:          # the workload does not fit this design's buffers
                            ok = False
                            break
                        recs.append(store.put(rec))
                        computed += 1
                    edp = math.exp(sum(math.log(r["edp_pj_ns"]) for r in recs) / len(recs)) if ok else INFEASIBLE
                    cache[cand] = edp
                    if len(history) < evaluations:
                        history.append({"candidate": cand, "edp_pj_ns": edp, "feasible": ok})
                        if on_eval:
                            on_eval(history[-1])
                scores.append(cache[cand])
            if len(scores) == len(xs):             # a generation cut short by the budget ends the search
                es.tell(xs, scores)
    finally:
        store.close()
    feasible = [h for h in history if h["feasible"]]
    best = min(feasible, key=lambda h: h["edp_pj_ns"]) if feasible else None
    return {"best": best, "history": history, "computed": computed, "stored": reused}
