"""Sweep files: a base design, axes, workloads and objectives in one YAML file (docs/dse.md).

    version: 1
    kind: sweep
    base: gemm_os.yaml                 # a built-in spec name or a spec file (relative to this file)
    set: {clock_mhz: 500}              # optional fixed overrides
    axes:                              # each a list, {from, to, step} (inclusive) or {values: [...]}
      array.shape: [4x4, 8x8]
      dram.bandwidth_gbps: {from: 4, to: 64, step: 4}
    workloads: [gemm:64,64,64, resnet50, {scalesim: topo.csv}, {onnx: net.onnx}, {name: bert-base, seq: 128}]
    objectives: [latency, energy, area]

Read like a spec: the safe YAML reader (arch/reader.py), then a JSON Schema (field-named problems),
then semantics (axis names, ranges, files), every problem in one SpecError. Every design point is
then validated as a spec before any is simulated (``sweep_points``).
"""
from __future__ import annotations

import difflib
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from archgen.arch.errors import Problem, SpecError, problem

from .sweep import DEFAULT_OBJECTIVES, OBJECTIVES
from .sweep_eval import SweepPoint

__all__ = ["SweepFile", "read_sweep_file", "sweep_points", "is_sweep_file", "AXES", "MAX_POINTS"]

#: the axes a sweep may vary, with what each value is
AXES = {
    "array.shape": "an array shape such as 8x8 or [8, 8]",
    "dataflow": "the name of one of the base spec's dataflows",
    "dram.bandwidth_gbps": "DRAM bandwidth in GB/s",
    "dram.kind": "a DRAM kind of the energy table (ddr, lpddr, hbm2)",
    "clock_mhz": "the clock target in MHz",
    "types": "a mapping of operand data types, e.g. {A: int8, B: int8, C: int32}",
    "types.*": "one operand's data type, e.g. int16",
    "memory.*.bytes": "one operand's on-chip buffer size in bytes, e.g. memory.A.bytes",
    "memory.dram.width_bytes": "the DRAM port width in bytes per cycle",
    "memory.dram.latency": "the DRAM latency in cycles",
    "mapper": "the layer mapper: heuristic (plan_layer) or search (mappings/mapper.py, EDP, seed 0)",
}
MAPPERS = ("heuristic", "search")
MAX_AXIS_VALUES = 10_000
MAX_POINTS = 1_000_000

_NUMBER = {"type": "number"}
_AXIS = {"oneOf": [
    {"type": "array", "minItems": 1, "maxItems": MAX_AXIS_VALUES},
    {"type": "object", "additionalProperties": False, "required": ["values"],
     "properties": {"values": {"type": "array", "minItems": 1, "maxItems": MAX_AXIS_VALUES}}},
    {"type": "object", "additionalProperties": False, "required": ["from", "to", "step"],
     "properties": {"from": _NUMBER, "to": _NUMBER, "step": {"type": "number", "exclusiveMinimum": 0}}},
]}
_WORKLOAD = {"oneOf": [
    {"type": "string", "minLength": 1, "maxLength": 4096},
    {"type": "object", "additionalProperties": False, "required": ["name"],
     "properties": {"name": {"type": "string", "minLength": 1}, "seq": {"type": "integer", "minimum": 1}}},
    {"type": "object", "additionalProperties": False, "required": ["scalesim"],
     "properties": {"scalesim": {"type": "string", "minLength": 1}}},
    {"type": "object", "additionalProperties": False, "required": ["onnx"],
     "properties": {"onnx": {"type": "string", "minLength": 1}}},
]}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object", "additionalProperties": False,
    "required": ["version", "kind", "base", "workloads"],
    "properties": {
        "version": {"const": 1},
        "kind": {"const": "sweep"},
        "name": {"type": "string", "maxLength": 200},
        "description": {"type": "string", "maxLength": 4000},
        "base": {"type": "string", "minLength": 1, "maxLength": 4096},
        "set": {"type": "object", "maxProperties": 100},
        "axes": {"type": "object", "maxProperties": 32, "additionalProperties": _AXIS},
        "workloads": {"type": "array", "minItems": 1, "maxItems": 1000, "items": _WORKLOAD},
        "seq": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "objectives": {"type": "array", "minItems": 2, "uniqueItems": True,
                       "items": {"enum": list(OBJECTIVES)}},
    },
}
_HINTS = {
    "version": "only sweep file version 1 exists",
    "kind": "a sweep file has kind: sweep",
    "axes.*": "an axis is a list of values, {values: [...]}, or a range {from: A, to: B, step: S}",
    "workloads.*": "a workload is a name (resnet50, gemm:M,K,N), {name: N, seq: S}, {scalesim: FILE.csv} or "
                   "{onnx: FILE.onnx}",
}


@dataclass(frozen=True)
class SweepFile:
    """A validated sweep file: the base spec (a path or built-in name), fixed overrides, axes in file
    order with their expanded values, workload references and objectives."""

    source: str
    base: str
    fixed: tuple[str, ...]
    axes: tuple[tuple[str, tuple], ...]
    workloads: tuple[tuple[str, int | None], ...]
    objectives: tuple[str, ...]

    @property
    def n_points(self) -> int:
        return math.prod(len(v) for _a, v in self.axes) * len(self.workloads)


def is_sweep_file(path: str | Path) -> bool:
    """A YAML file whose top-level ``kind`` is ``sweep`` (read with the safe reader)."""
    p = Path(path)
    if not p.is_file() or p.suffix.lower() not in (".yaml", ".yml"):
        return False
    from archgen.arch.reader import read_yaml_file
    try:
        data = read_yaml_file(p, what="sweep")
    except SpecError:
        return False
    return isinstance(data, dict) and data.get("kind") == "sweep"


def _hint(path: str) -> str | None:
    parts = path.split(".")
    return _HINTS.get(path) or (_HINTS.get(f"{parts[0]}.*") if len(parts) > 1 else None)


def _schema(data) -> list[Problem]:
    from archgen.arch.schema import schema_problems
    hints = {}
    for key in ("axes", "workloads"):
        if isinstance(data.get(key), (dict, list)):
            items = data[key].keys() if isinstance(data[key], dict) else range(len(data[key]))
            hints.update({f"{key}.{k}": _hint(f"{key}.x") for k in items})
    hints.update({"version": _HINTS["version"], "kind": _HINTS["kind"]})
    return schema_problems(SCHEMA, data, hints)


def _number_text(v) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def _value_text(axis: str, v) -> str | None:
    """An axis value as override text (what ``--set`` would read), or None when it cannot be one."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if axis == "array.shape" and isinstance(v, list):
        return "x".join(str(x) for x in v) if all(isinstance(x, int) and not isinstance(x, bool) for x in v) else None
    if isinstance(v, (int, float)):
        return _number_text(v)
    if isinstance(v, str):
        return v
    return None


def _range(spec: dict, where: str, problems: list) -> list:
    start, stop, step = spec["from"], spec["to"], spec["step"]
    if stop < start:
        problems.append(problem(where, f"'to' ({stop}) is below 'from' ({start})"))
        return []
    n = math.floor((stop - start) / step + 1e-9) + 1
    if n > MAX_AXIS_VALUES:
        problems.append(problem(where, f"the range has {n:,} values; an axis has at most {MAX_AXIS_VALUES:,}"))
        return []
    out = []
    for i in range(n):
        v = round(start + i * step, 9)
        out.append(int(v) if float(v).is_integer() and all(isinstance(x, int) for x in (start, step)) else v)
    return out


def _axis_values(axis: str, raw, problems: list) -> tuple:
    where = f"axes.{axis}"
    if isinstance(raw, dict) and "from" in raw:
        values = _range(raw, where, problems)
    else:
        values = raw["values"] if isinstance(raw, dict) else raw
    if axis == "types":
        out = []
        for i, v in enumerate(values):
            if not isinstance(v, dict) or not v or not all(isinstance(t, str) for t in v.values()):
                problems.append(problem(f"{where}.{i}", AXES["types"], v))
            else:
                out.append(tuple(sorted(v.items())))
        return tuple(out)
    out = []
    what = AXES.get(axis) or (AXES["memory.*.bytes"] if axis.startswith("memory.") else AXES["types.*"])
    for i, v in enumerate(values):
        text = _value_text(axis, v)
        if text is None or (axis == "mapper" and text not in MAPPERS):
            problems.append(problem(f"{where}.{i}", f"must be {what}", v))
        elif text in out:
            problems.append(problem(f"{where}.{i}", "this value appears twice", v))
        else:
            out.append(text)
    return tuple(out)


def _check_axis_name(axis: str) -> Problem | None:
    if axis in AXES or (axis.startswith("types.") and len(axis) > len("types.")):
        return None
    parts = axis.split(".")
    if len(parts) == 3 and parts[0] == "memory" and parts[2] == "bytes" and parts[1] not in ("", "dram"):
        return None
    close = difflib.get_close_matches(axis, [a for a in AXES if a != "types.*"], n=1)
    later = " (buffer sizes are memory.<operand>.bytes)" if "buffer" in axis or "sram" in axis or "glb" in axis else ""
    fix = f"did you mean {close[0]!r}? " if close else ""
    return problem(f"axes.{axis}", f"not an axis a sweep can vary{later}; {fix}axes are "
                   f"{', '.join(AXES)} (types.<operand>)")


def _workload_ref(entry, base_dir: Path, where: str, problems: list, seq: int | None) -> tuple[str, int | None] | None:
    if isinstance(entry, dict) and "name" in entry:
        return entry["name"], entry.get("seq", seq)
    if isinstance(entry, dict):
        kind, file = next(iter(entry.items()))
    elif entry.lower().endswith(".csv"):
        kind, file = "scalesim", entry
    elif entry.lower().endswith(".onnx"):
        kind, file = "onnx", entry
    else:
        return entry, seq
    path = Path(file)
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        problems.append(problem(where, f"no such {'SCALE-Sim topology' if kind == 'scalesim' else 'ONNX'} file "
                                f"({path})", file))
        return None
    return f"{kind}:{path.resolve()}", None


def _split_gemms(workloads) -> list[Problem]:
    """``[gemm:4,4,4]`` in YAML flow style is three items ("gemm:4", 4, 4): say so, not 'bad workload'."""
    if not isinstance(workloads, list):
        return []
    out = []
    for i, w in enumerate(workloads[:-1]):
        if isinstance(w, str) and w.startswith("gemm:") and "," not in w and isinstance(workloads[i + 1], int):
            parts = [w]
            for v in workloads[i + 1:]:
                if not isinstance(v, int) or len(parts) == 3:
                    break
                parts.append(str(v))
            text = ",".join(parts)
            out.append(problem(f"workloads.{i}", f"YAML splits {text} at its commas inside [...]; quote it: "
                               f"\"{text}\"", w))
    return out


def read_sweep_file(path: str | Path) -> SweepFile:
    """Read and validate a sweep file (schema, then axis names, values, ranges and files)."""
    from archgen.arch.reader import read_yaml_file
    path = Path(path)
    data = read_yaml_file(path, what="sweep")
    if not isinstance(data, dict):
        raise SpecError([problem("", "a sweep file is a YAML mapping with keys version, kind, base, axes, workloads",
                                 type(data).__name__)], source=str(path))
    problems = _split_gemms(data.get("workloads")) or _schema(data)
    if problems:
        raise SpecError(problems, source=str(path))
    base_dir = path.parent
    base = data["base"]
    if not Path(base).is_absolute() and (base_dir / base).is_file():
        base = str(base_dir / base)
    fixed = []
    for key, v in (data.get("set") or {}).items():
        text = _value_text(key, v) if not isinstance(v, (dict, list)) or key == "array.shape" else None
        if text is None:
            problems.append(problem(f"set.{key}", "must be a number or text (one field per key, e.g. "
                                    "'dram.bandwidth_gbps: 32')", v))
        else:
            fixed.append(f"{key}={text}")
    axes = []
    for axis, raw in (data.get("axes") or {}).items():
        bad = _check_axis_name(axis)
        if bad:
            problems.append(bad)
            continue
        axes.append((axis, _axis_values(axis, raw, problems)))
    seq = data.get("seq")
    workloads = []
    for i, entry in enumerate(data["workloads"]):
        ref = _workload_ref(entry, base_dir, f"workloads.{i}", problems, seq)
        if ref is not None:
            if ref in workloads:
                problems.append(problem(f"workloads.{i}", "this workload appears twice", entry))
            else:
                workloads.append(ref)
    if problems:
        raise SpecError(problems, source=str(path))
    sf = SweepFile(str(path), base, tuple(fixed), tuple(axes), tuple(workloads),
                   tuple(data.get("objectives") or DEFAULT_OBJECTIVES))
    if sf.n_points > MAX_POINTS:
        raise SpecError([problem("axes", f"{sf.n_points:,} design points; a sweep has at most {MAX_POINTS:,}")],
                        source=str(path))
    return sf


def sweep_points(sf: SweepFile, extra: tuple[str, ...] = ()) -> list[SweepPoint]:
    """Every point of the sweep, in a fixed order: axes in file order (last fastest), then workloads."""
    names = [a for a, _v in sf.axes]
    points = []
    for combo in itertools.product(*(v for _a, v in sf.axes)):
        overrides, dataflow, mapper = list(sf.fixed) + list(extra), None, "heuristic"
        for axis, value in zip(names, combo):
            if axis == "dataflow":
                dataflow = value
            elif axis == "mapper":
                mapper = value
            elif axis == "types":
                overrides += [f"types.{op}={t}" for op, t in value]
            else:
                overrides.append(f"{axis}={value}")
        for workload, seq in sf.workloads:
            points.append(SweepPoint(sf.base, tuple(overrides), workload, seq, dataflow, mapper))
    return points
