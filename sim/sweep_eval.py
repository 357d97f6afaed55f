"""One sweep point: what it is (`SweepPoint`, its key) and what it costs (`evaluate_point`).

This module is part of the model version (sim/store.py hashes it): changing how a point is evaluated
or which figures its record holds invalidates stored results. Orchestration (grids, stores, reports)
lives in sim/sweep.py and does not.

Workload references: a library name (``resnet50``, ``bert-base`` with ``seq``), ``gemm:M,K,N``, or a
file: ``scalesim:PATH`` (a SCALE-Sim topology CSV) or ``onnx:PATH``. A file's key is its content
hash, so editing the file invalidates its points and moving it does not.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from archgen.arch.errors import SpecError, problem

__all__ = ["SweepPoint", "evaluate_point", "load_workload", "workload_identity", "area_mm2", "MAPPING"]

#: the default mapping: plan_layer's heuristic (mappings/memory_tiling.py); a point with mapper="search"
#: is keyed "search-edp-seed0" instead (mappings/mapper.py)
MAPPING = "tiling-default"
_FILE_KINDS = ("scalesim", "onnx")


@dataclass(frozen=True)
class SweepPoint:
    """A design (spec plus overrides, one dataflow) and a workload: the unit a sweep evaluates."""

    spec: str
    overrides: tuple[str, ...]
    workload: str
    seq: int | None = None
    dataflow: str | None = None
    mapper: str = "heuristic"          # or "search": mappings/mapper.py, EDP objective, seed 0

    @property
    def mapping(self) -> str:
        return MAPPING if self.mapper == "heuristic" else "search-edp-seed0"

    def design_data(self) -> dict:
        """The base spec with the overrides applied (a fresh copy)."""
        from archgen.arch.spec import apply_overrides, find_spec
        path = find_spec(self.spec)
        st = path.stat()
        return apply_overrides(_read_spec(str(path), str(path.resolve()), st.st_mtime_ns, st.st_size), self.overrides)

    def key(self) -> str:
        from .store import model_version
        blob = json.dumps({"design": self.design_data(), "dataflow": self.dataflow,
                           "workload": workload_identity(self.workload, self.seq), "mapping": self.mapping,
                           "model": model_version()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


@lru_cache(maxsize=16)
def _read_spec(path: str, resolved: str, mtime_ns: int, size: int) -> dict:
    """A spec file parsed once per content version (the sweep reads it for every point); callers copy."""
    from archgen.arch.spec import read_spec_file
    return read_spec_file(Path(path))


def _split_file_ref(ref: str) -> tuple[str, str] | None:
    kind, sep, path = ref.partition(":")
    return (kind, path) if sep and kind in _FILE_KINDS else None


@lru_cache(maxsize=64)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def workload_identity(ref: str, seq: int | None) -> dict:
    """What a workload's results depend on: its name and sequence length, or a file's content."""
    split = _split_file_ref(ref)
    if split is None:
        return {"name": ref, "seq": seq}
    kind, path = split
    try:
        st = os.stat(path)
        digest = _file_digest(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
    except OSError as err:
        raise SpecError([problem("workload", f"cannot read {path}: {err.strerror}", ref)]) from None
    return {"kind": kind, "sha256": digest, "seq": seq}


def load_workload(ref: str, seq: int | None = None):
    """The `Workload` a reference names (see the module docstring); SpecError if it names nothing."""
    split = _split_file_ref(ref)
    if split is None:
        from archgen.workloads.library import get_workload
        return get_workload(ref, seq=seq)
    kind, path = split
    if seq is not None:
        raise SpecError([problem("seq", f"a {kind} file fixes its own shapes; omit seq", seq)])
    if kind == "scalesim":
        from archgen.workloads.scalesim import read_scalesim_topology
        return read_scalesim_topology(path)
    from archgen.workloads.onnx_import import import_onnx
    return import_onnx(path, dims={"batch": 1}).workload


def area_mm2(design, energy) -> float:
    """FU arithmetic area: one multiplier (widest input) and one accumulator adder per FU, from the
    energy table's area data. Buffers, pipeline registers and wires are not counted."""
    bits = max(design.type_of[o.name].bits for o in design.operation.inputs)
    return design.n_fus * (energy.op_area_mm2("mult", bits) + energy.op_area_mm2("add", design.acc_type.bits))


@lru_cache(maxsize=1)
def _energy_model():
    from archgen.sim.energy import EnergyModel
    return EnergyModel.load()


def _log_evaluation(key: str) -> None:
    """Tests of resumption count evaluations: with ARCHGEN_SWEEP_EVAL_LOG set, append each key."""
    log = os.environ.get("ARCHGEN_SWEEP_EVAL_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(key + "\n")


def evaluate_point(point: SweepPoint) -> dict:
    """One design point: whole-workload cycles, time, DRAM bytes, energy and FU area from the model."""
    from archgen.arch.spec import find_spec, load_spec_data
    from archgen.sim.array_sim import simulate_workload_on_array
    from archgen.sim.results import totals
    from .store import model_version
    design = load_spec_data(point.design_data(), source=str(find_spec(point.spec)))
    energy = _energy_model()
    dataflow = design.dataflow(point.dataflow).name
    results, _skipped = simulate_workload_on_array(design, load_workload(point.workload, point.seq),
                                                   dataflow=dataflow, energy=energy, mapper=point.mapper)
    t = totals(results)
    key = point.key()
    _log_evaluation(key)
    return {"key": key, "spec": point.spec, "overrides": list(point.overrides), "workload": point.workload,
            "seq": point.seq, "dataflow": dataflow, "mapper": point.mapper, "fus": design.n_fus, "clock_mhz": design.clock_mhz,
            "cycles": t["cycles"], "time_ns": t["time_ns"], "dram_bytes": t["dram_bytes"],
            "energy_pj": t["energy_pj"], "edp_pj_ns": t["energy_pj"] * t["time_ns"],
            "area_mm2": area_mm2(design, energy), "model": model_version()}
