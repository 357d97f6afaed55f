"""Loading and validating accelerator specs (kind: array).

Two phases, every problem collected into one SpecError: the JSON Schema (types, ranges, unknown keys),
then semantics (operands and loops exist, shapes agree, each dataflow covers every iteration exactly
once and never runs two iterations on one FU in one cycle). The result is an immutable ``Design``.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .affine import AffineExpr, AffineMap, AffineParseError, parse_affine
from .einsum import EinsumError, Operation, parse_operation
from .errors import Problem, SpecError, problem
from .mapping_check import check_coverage, residue_form, stt_conflict, stt_move_problems
from .reader import parse_override_value, read_yaml_file
from .schema import schema_problems
from .names import Dim, space_var, time_var

__all__ = ["DataType", "Dataflow", "Design", "BufferSpec", "DramPort", "MemorySystem", "load_spec", "load_spec_data", "read_spec_file", "apply_overrides",
           "find_spec", "builtin_specs", "spec_schema", "parse_shape"]


@dataclass(frozen=True)
class DataType:
    """A fixed-point integer type such as int8 (signed) or uint12."""

    bits: int
    signed: bool = True

    @staticmethod
    def parse(text: str) -> "DataType":
        signed = not text.startswith("u")
        return DataType(int(text[3:] if signed else text[4:]), signed)

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def __str__(self) -> str:
        return f"{'' if self.signed else 'u'}int{self.bits}"


@dataclass(frozen=True)
class Dataflow:
    """An affine space-time map in TS->I form: ``x = ts_map(t, s)``, with a control vector.

    ``spatial`` (axis -> loop) is set when the map is in the tiled form the RTL generator executes:
    each array axis carries one loop as ``loop = extent * t_loop + s_axis`` and every other loop is
    ``loop = t_loop``. ``order`` lists the loops' temporal variables outer to inner.
    """

    name: str
    ts_map: AffineMap | None          # inputs: t_<dim>... then s0..; outputs named by loop dims (None: skewed stt)
    order: tuple[Dim, ...]
    control: tuple[int, ...]
    spatial: tuple[tuple[int, Dim], ...] | None
    form: str = "spatial"
    description: str = ""
    inner: tuple[Dim, ...] | None = None   # explicit tile-inner loops; None = trailing non-spatial loops
    stt: tuple[tuple[int, ...], ...] | None = None   # the I->ST matrix as written (form "stt"), rows [s; t]
    # a ``map`` that skews a loop inside the tile with loops after it: ``compressed`` runs the tiled map with control
    # c - sigma, ``map`` the map's own padded rows (docs/dataflows.md "Skewed maps"); out of repr so that the keys
    # and manifests of every dataflow written before the field stay as they were
    schedule: str = field(default="compressed", repr=False)

    @property
    def skewed(self) -> bool:
        """An ``stt`` map whose spatial rows mix loops (hexagonal/diagonal arrays, dataflow/stt_array.py): it
        has no TS->I form (T need not be unimodular) and runs on the array as a lock-step systolic network."""
        return self.form == "stt" and self.spatial is None

    @property
    def spatial_dims(self) -> dict[int, Dim]:
        return dict(self.spatial or ())

    @property
    def axis_of(self) -> dict[Dim, int]:
        return {d: a for a, d in (self.spatial or ())}

    def inner_dims(self) -> tuple[Dim, ...]:
        """The loops run inside one array tile: given in the spec, or the trailing non-spatial loops."""
        if self.inner is not None:
            return self.inner
        spatial = set(self.axis_of)
        inner: list[Dim] = []
        for d in reversed(self.order):
            if d in spatial:
                break
            inner.insert(0, d)
        return tuple(inner)

    def outer_dims(self) -> tuple[Dim, ...]:
        return self.order[: len(self.order) - len(self.inner_dims())]

    def one_step_tile(self) -> str | None:
        """Why every tile of this tiled map is one step, or None when a loop runs inside the tile: the last loop
        of ``order`` is spatial, so its tile counter is the innermost loop and no temporal loop is left inside
        (docs/dataflows.md "One-step tiles")."""
        if self.spatial is None or self.inner_dims():
            return None
        last = self.order[-1]
        return (f"one step per tile: the last loop of order, {last}, runs on array axis {self.axis_of[last]}, so no "
                "temporal loop runs inside a tile; the inputs are loaded for that one step and the output leaves "
                "after it (docs/dataflows.md \"One-step tiles\")")


@dataclass(frozen=True)
class BufferSpec:
    """One operand's on-chip buffer (docs/memory.md). ``banks == 0``: one bank per memory-fed lane."""

    operand: str
    bytes: int
    banks: int = 0
    read_ports: int = 1
    write_ports: int = 1
    port_bytes: int = 1
    double_buffer: bool = True

    @property
    def halves(self) -> int:
        return 2 if self.double_buffer else 1

    @property
    def half_bytes(self) -> int:
        """Bytes one block may occupy."""
        return self.bytes // self.halves


@dataclass(frozen=True)
class DramPort:
    """The DRAM port the DMA engine drives: bytes per cycle, latency in cycles, burst bytes, bursts in flight."""

    width_bytes: int
    latency: int = 64
    burst_bytes: int = 64
    outstanding: int = 64

    def transfer_cycles(self, nbytes: int) -> int:
        """Cycles to move ``nbytes`` contiguous bytes (docs/memory.md): ``n`` bursts, burst i issued at
        ``floor(i / O) * P + (i mod O) * c`` with ``c = ceil(burst / width)`` and ``P = max(O c, latency + c)``;
        done ``latency + c'`` after the last issue (``c'``: the last, possibly short, burst's data cycles).
        Zero bytes take zero cycles."""
        if nbytes <= 0:
            return 0
        w, burst, o, lat = self.width_bytes, self.burst_bytes, self.outstanding, self.latency
        n = -(-nbytes // burst)
        c = -(-burst // w)
        c_last = -(-(nbytes - (n - 1) * burst) // w)
        period = max(o * c, lat + c)
        return ((n - 1) // o) * period + ((n - 1) % o) * c + lat + c_last


@dataclass(frozen=True)
class MemorySystem:
    """Buffers per operand (the output's is the accumulator buffer) and the DRAM port, defaults resolved."""

    buffers: tuple[BufferSpec, ...]
    dram: DramPort
    # spec field memory.partial_sums_through_dram: output partial sums may go to DRAM and back (a psum-load
    # copy of the accumulator buffer and the revisit logic in the generated top; the planner may choose it)
    partial_sums_through_dram: bool = False

    def buffer(self, operand: str) -> BufferSpec:
        for b in self.buffers:
            if b.operand == operand:
                return b
        raise KeyError(operand)

    @property
    def total_bytes(self) -> int:
        return sum(b.bytes for b in self.buffers)

    def describe(self) -> str:
        parts = [f"{b.operand} {b.bytes} B{' (2 halves)' if b.double_buffer else ''}" for b in self.buffers]
        d = self.dram
        return (", ".join(parts) + f"; DRAM {d.width_bytes} B/cycle, latency {d.latency} cycles, "
                f"burst {d.burst_bytes} B, {d.outstanding} outstanding"
                + ("; partial sums through DRAM" if self.partial_sums_through_dram else ""))


# array steps a delay connection's run-time-depth FIFO holds by default (spec field array.max_fifo_depth): a
# 64 x 8-bit buffer (512 bits) costs the arborescence half a memory lane; wider operands stay memory-fed
DEFAULT_MAX_FIFO_DEPTH = 64


@dataclass(frozen=True)
class Design:
    """A validated accelerator spec: one operation, one array, one or more dataflows."""

    name: str
    operation: Operation
    types: tuple[tuple[str, DataType], ...]
    shape: tuple[int, ...]
    dataflows: tuple[Dataflow, ...]
    bounds: tuple[tuple[str, int], ...]
    clock_mhz: float = 500.0
    description: str = ""
    version: int = 1
    dram_gbps: float = 16.0
    dram_kind: str = "ddr"
    source_hash: str = ""
    memory: MemorySystem | None = None     # resolved by the loader; None only for hand-built Designs
    fuse: tuple[str, ...] = ()             # dataflows built into one design (spec field ``fuse``), in select order
    max_fifo_depth: int = DEFAULT_MAX_FIFO_DEPTH   # array steps a run-time-depth delay-connection FIFO holds
    # a folded map (``i: 4*t_i + s0 + 2*s1`` on 2x2, see _fold): ``shape`` is the logical array it runs as (1x4),
    # ``physical_shape`` the spec's array.shape, ``placement`` (logical FU, physical FU) per FU; () otherwise
    physical_shape: tuple[int, ...] = ()
    placement: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = ()
    # a spec whose dataflows do not all fold alike (so ``shape`` is the spec's): per dataflow that is a folded
    # map by itself, the design of that dataflow alone on its logical array (what ``alone`` returns)
    folded_alone: tuple[tuple[str, "Design"], ...] = ()

    def alone(self, name: str | None) -> "Design":
        """The design to build, verify or simulate dataflow ``name`` on by itself: this one, or for a folded map
        beside dataflows that do not fold alike, that map alone on the logical array its strides imply (the
        same physical FUs; docs/dataflows.md "Maps that skew the FU assignment")."""
        return dict(self.folded_alone).get(self.dataflow(name).name, self)

    @property
    def memory_system(self) -> MemorySystem:
        """The spec's memory system, or the defaults for a Design built without one."""
        return self.memory if self.memory is not None else default_memory(self)

    @property
    def type_of(self) -> dict[str, DataType]:
        return dict(self.types)

    @property
    def reference_bounds(self) -> dict[str, int]:
        return dict(self.bounds)

    @property
    def shape_label(self) -> str:
        """``2x2``; for a folded map ``1x4 (logical; the 2x2 array folded)``."""
        text = "x".join(map(str, self.shape))
        if not self.placement:
            return text
        return text + f" (logical; the {'x'.join(map(str, self.physical_shape))} array folded)"

    @property
    def n_fus(self) -> int:
        return math.prod(self.shape)

    @property
    def dram_bytes_per_cycle(self) -> float:
        return self.dram_gbps * 1e3 / self.clock_mhz

    @property
    def acc_type(self) -> DataType:
        return self.type_of[self.operation.output.name]

    def dataflow(self, name: str | None = None) -> Dataflow:
        if name is None:
            return self.dataflows[0]
        for df in self.dataflows:
            if df.name == name:
                return df
        known = ", ".join(d.name for d in self.dataflows)
        raise SpecError([problem("dataflow", f"no dataflow named {name!r} in spec {self.name!r}; choose one of: {known}", name)])


# ----------------------------------------------------------------------------------------------
# files, built-ins, overrides

def spec_schema() -> dict:
    return json.loads(resources.files("archgen.arch").joinpath("spec.schema.json").read_text())


def builtin_specs() -> dict[str, Path]:
    root = resources.files("archgen.arch").joinpath("specs")
    return {p.name: Path(str(p)) for p in sorted(root.iterdir(), key=lambda p: p.name) if p.name.endswith(".yaml")}


def find_spec(name: str | Path) -> Path:
    """The file in the current directory first, then the built-in spec of that name."""
    path = Path(name)
    if path.exists():
        return path
    builtins = builtin_specs()
    for candidate in (path.name, path.name + ".yaml"):
        if candidate in builtins:
            return builtins[candidate]
    close = difflib.get_close_matches(path.name, list(builtins), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; built-in specs: {', '.join(builtins)}"
    raise SpecError([problem("spec", f"no such file, and no built-in spec of that name{hint}", str(name))])


def read_spec_file(path: Path) -> dict:
    """A spec file as a plain dict, read by the safe reader (arch/reader.py): encoding, size, depth,
    alias, duplicate-key and number checks, each failure one SpecError line with its position."""
    data = read_yaml_file(path)
    if data is None:
        raise SpecError([problem("spec", "the file is empty; a spec is a YAML mapping with keys version, name, "
                                 "operation, ... (see archgen list for examples)")], source=str(path))
    if not isinstance(data, dict):
        raise SpecError([problem("", "a spec is a YAML mapping with keys version, name, operation, ...",
                                 type(data).__name__)], source=str(path))
    return data


def parse_shape(value) -> Any:
    """'32x32' -> [32, 32]; 8 or '8' -> [8] (a 1-D array); other values pass through for the schema to judge."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if isinstance(value, str) and re.fullmatch(r"\d+(x\d+){0,2}", value.strip()):
        return [int(v) for v in value.strip().split("x")]
    return value


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """``["array.shape=32x32", "clock_mhz=500"]`` applied to a copy of the raw spec; values are YAML."""
    out = json.loads(json.dumps(data))
    problems: list[Problem] = []
    for item in overrides:
        if "=" not in item:
            problems.append(problem("--set", "overrides read FIELD=VALUE, e.g. array.shape=32x32", item))
            continue
        key, _, raw = item.partition("=")
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            problems.append(problem("--set", "empty field name", item))
            continue
        if re.fullmatch(r"\s*\d+(x\d+){1,2}\s*", raw):
            value = raw.strip()          # a shape such as 0x4 (YAML would read it as hex)
        else:
            try:
                value = parse_override_value(raw, key.strip())
            except SpecError as err:
                problems += err.problems
                continue
        node = out
        for depth, p in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                # a list entry by position: --set dataflows.os.control.0=2
                if not (p.isdigit() and int(p) < len(node)):
                    problems.append(problem(f"--set {key.strip()}", f"{'.'.join(parts[:depth]) or 'the spec'} is a list "
                                            f"of {len(node)}; address an entry by its position 0..{len(node) - 1}", p))
                    break
                p = int(p)
                if last:
                    node[p] = value
                else:
                    if not isinstance(node[p], (dict, list)):
                        node[p] = {}
                    node = node[p]
            elif last:
                node[p] = value
            else:
                if not isinstance(node.get(p), (dict, list)):
                    node[p] = {}
                node = node[p]
    if problems:
        raise SpecError(problems)
    return out


def load_spec(name: str | Path, overrides: Sequence[str] = ()) -> Design:
    path = find_spec(name)
    data = read_spec_file(path)
    if overrides:
        data = apply_overrides(data, overrides)
    return load_spec_data(data, source=str(path))


# ----------------------------------------------------------------------------------------------
# phase 1: schema

_SCHEMA_HINTS = {
    "array.shape": "a list of 1 to 3 positive integers, e.g. [4, 4], '4x4', or 8 for a 1-D array",
    "version": "only spec version 1 exists",
    "types.*": "data types are intN or uintN with N in 1..64, e.g. int8",
    "dataflows": "dataflow names start with a letter or '_' and hold letters, digits and '_'",
}
_FUSE_FIX = "give two or more of this spec's dataflow names, e.g. fuse: [os, ws]"


def _schema_problems(data: dict) -> list[Problem]:
    problems = []
    max_extent = spec_schema()["properties"]["array"]["properties"]["shape"]["oneOf"][0]["items"]["maximum"]
    for p in schema_problems(spec_schema(), data, _SCHEMA_HINTS):
        if p.path == "array.shape" and isinstance(p.got, list) and any(
                isinstance(v, int) and not isinstance(v, bool) and v < 1 for v in p.got):
            p = problem(p.path, "every array dimension must be at least 1", p.got)
        elif p.path == "array.shape" and isinstance(p.got, list) and any(
                isinstance(v, int) and not isinstance(v, bool) and v > max_extent for v in p.got):
            p = problem(p.path, f"every array dimension must be at most {max_extent}", p.got)
        elif p.path == "fuse" or p.path.startswith("fuse."):
            p = dataclasses.replace(p, message=f"{p.message}; {_FUSE_FIX}")
        problems.append(p)
    return problems


# ----------------------------------------------------------------------------------------------
# phase 2: semantics

def load_spec_data(data: Mapping, source: str | None = None) -> Design:
    data = dict(data)
    if "array" in data and isinstance(data["array"], dict) and "shape" in data["array"]:
        data["array"] = dict(data["array"], shape=parse_shape(data["array"]["shape"]))
    problems = _schema_problems(data)
    if problems:
        raise SpecError(problems, source=source)
    problems = []
    try:
        op = parse_operation(data["operation"])
    except EinsumError as err:
        raise SpecError([problem("operation", f"{err.reason} at position {err.pos}", data["operation"])], source=source) from None
    names = [o.name for o in op.operands]
    types = {}
    for key, text in data["types"].items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"operands are {', '.join(names)}"
            problems.append(problem(f"types.{key}", f"no operand of that name in the operation; {fix}"))
        else:
            types[key] = DataType.parse(text)
    for n in names:
        if n not in data["types"]:
            problems.append(problem(f"types.{n}", "every operand needs a data type, e.g. int8"))
    shape = tuple(int(v) for v in data["array"]["shape"])
    bounds = {d: int(data.get("bounds", {}).get(d, 0)) for d in op.dims}
    for key in data.get("bounds", {}):
        if key not in op.dims:
            problems.append(problem(f"bounds.{key}", f"no loop of that name; loops are {', '.join(op.dims)}"))
    dataflows = []
    for df_name, df_data in data["dataflows"].items():
        df, df_problems = _parse_dataflow(df_name, df_data, op, shape)
        problems += df_problems
        if df is not None:
            dataflows.append(df)
    # reference bounds default to two tiles plus a remainder on spatial loops, 3 on the others
    for d in op.dims:
        if bounds[d] == 0:
            exts = [shape[a] for df in dataflows for a, dd in (df.spatial or ()) if dd == d]
            bounds[d] = 2 * max(exts) + 1 if exts else 3
    for df in dataflows:
        problems += _check_dataflow(df, op, shape, bounds)
    problems += _fuse_problems(data.get("fuse", ()), [df.name for df in dataflows], data["dataflows"])
    if problems:
        raise SpecError(problems, source=source)
    physical, placement = (), ()
    folded = _fold(dataflows, op, shape)
    alone = []
    if folded is not None:
        physical, (shape, dataflows, placement) = shape, folded
    elif len(dataflows) > 1:        # each folded map by itself, on its own logical array (Design.alone)
        for df in dataflows:
            if _fold([df], op, shape) is not None:
                one = dict(data, dataflows={df.name: data["dataflows"][df.name]})
                one.pop("fuse", None)
                alone.append((df.name, load_spec_data(one, source)))
    memory, mem_problems = _parse_memory(data.get("memory", {}), op, types, shape, data)
    if mem_problems:
        raise SpecError(mem_problems, source=source)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    return Design(
        name=data["name"], operation=op, types=tuple((n, types[n]) for n in names), shape=shape,
        dataflows=tuple(dataflows), bounds=tuple(bounds.items()), clock_mhz=float(data.get("clock_mhz", 500)),
        description=data.get("description", ""), version=data["version"],
        dram_gbps=float(data.get("dram", {}).get("bandwidth_gbps", 16.0)), dram_kind=data.get("dram", {}).get("kind", "ddr"),
        source_hash=digest, memory=memory, fuse=tuple(data.get("fuse", ())),
        max_fifo_depth=int(data["array"].get("max_fifo_depth", DEFAULT_MAX_FIFO_DEPTH)),
        physical_shape=physical, placement=placement, folded_alone=tuple(alone))


def _fold(dataflows, op, shape):
    """A design whose every dataflow is a folded map, one valid for every problem size whose strides are not the
    array's extents (``i: 4*t_i + s0 + 2*s1`` on 2x2: a 1x4 array folded onto 2x2, mapping_check.py
    ``ResidueForm.folded_shape``), all with one logical shape and one placement: (logical shape, the dataflows
    as the tiled map on it, (logical FU, physical FU) pairs). None otherwise.

    Physical FU s runs x = o(s) + C t (every t from 0); the logical FU l(s) at its residue r(s) runs the tiled
    map's x = r(s) + C t. As o(s) = r(s) (mod C) and o(s) <= r(s), the in-box iterations of both are the same
    residue class in the same order of t: the same iterations in the same order per FU, the map's lags
    (o(s) - r(s)) / C tiles and any skew of a stride-1 loop by FU coordinates compressed to the spec's control
    vector on the logical array (axis by axis, 0 on axes the physical array lacks), as for the placed maps of
    dataflow/interconnect.py ``fu_placement``."""
    if not dataflows or any(df.form != "map" or df.spatial is not None for df in dataflows):
        return None
    forms = [residue_form(df.ts_map, shape) for df in dataflows]
    if any(f is None or f.folded_shape(shape) is None for f in forms):
        return None
    logical = {f.folded_shape(shape) for f in forms}
    rank = max(len(lg) for lg in logical)
    places = {tuple(sorted((f.logical_position(o, rank), s) for s, o in f.offsets)) for f in forms}
    if len(logical) != 1 or len(places) != 1:
        return None
    (lshape,), (placement,) = logical, places
    out = []
    for df, f in zip(dataflows, forms):
        big = [i for i, c in enumerate(f.moduli) if c > 1]
        axis = {i: rank - len(big) + k for k, i in enumerate(big)}
        exprs = tuple(AffineExpr.of({time_var(d): f.moduli[i], space_var(axis[i]): 1}) if i in axis
                      else AffineExpr.var(time_var(d)) for i, d in enumerate(op.dims))
        inputs = tuple(v for v in df.ts_map.inputs if v.startswith("t_")) + tuple(space_var(a) for a in range(rank))
        ts_map = AffineMap(inputs, exprs, df.ts_map.names)
        control = df.control + (0,) * (rank - len(df.control))      # the spec's, on the logical axes
        out.append(dataclasses.replace(df, ts_map=ts_map, control=control,
                                       spatial=_tiled_form(ts_map, op.dims, lshape)))
    return lshape, tuple(out), placement


def borrow_dataflow(design: Design, spec: str | Path, name: str, new_name: str, path: str = "--fuse") -> Dataflow:
    """Dataflow ``name`` of another spec, re-read and checked on ``design``'s operation, array and bounds (for
    fusing it into ``design``); a SpecError naming ``path`` when it does not exist or computes another
    operation."""
    try:
        other = read_spec_file(find_spec(spec))
    except SpecError as err:                   # name the option, not the command's spec argument
        raise SpecError([dataclasses.replace(q, path=path, message=f"spec {str(spec)!r}: {q.message}")
                         for q in err.problems]) from None
    label = other.get("name", str(spec)) if isinstance(other, dict) else str(spec)
    flows = other.get("dataflows") if isinstance(other, dict) else None
    if not isinstance(flows, dict) or not isinstance(flows.get(name), dict):
        known = ", ".join(flows) if isinstance(flows, dict) else "none"
        raise SpecError([problem(path, f"spec {label!r} has no dataflow named {name!r}; it has: {known}",
                                 f"{spec}:{name}")])
    try:
        op = parse_operation(str(other.get("operation", "")))
    except EinsumError:
        op = None
    if op is None or str(op) != str(design.operation):
        raise SpecError([problem(path, f"dataflow {name!r} of spec {label!r} computes '{other.get('operation')}', "
                                 f"this spec computes '{design.operation}'; only dataflows of one operation can "
                                 "share an array", f"{spec}:{name}")])
    df, problems = _parse_dataflow(new_name, flows[name], design.operation, design.shape)
    if df is not None:
        problems += _check_dataflow(df, design.operation, design.shape, design.reference_bounds)
    if problems:
        raise SpecError([problem(path, f"dataflow {name!r} of spec {label!r} on this array: {p.path}: {p.message}",
                                 f"{spec}:{name}") for p in problems])
    return df


def _fuse_problems(fuse, parsed: list[str], declared) -> list[Problem]:
    """``fuse`` names at least two distinct dataflows of the spec (the schema checked the list's shape)."""
    problems = []
    for i, name in enumerate(fuse):
        if name not in declared:
            close = difflib.get_close_matches(name, list(declared), n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"dataflows are {', '.join(declared)}"
            problems.append(problem(f"fuse.{i}", f"no dataflow of that name; {fix}", name))
        elif list(fuse).index(name) != i:
            problems.append(problem(f"fuse.{i}", "dataflow listed twice; name each dataflow once", name))
    return problems


# a default buffer holds, per half, one array tile whose whole inner loop runs up to this many steps on
# every lane of the array's widest axis (ResNet-50's 3x3x512 reduction is 4608, Llama-2-7B's FFN 11008)
DEFAULT_LANE_ELEMENTS = 16384


def _default_buffer_bytes(shape, bits: int) -> int:
    return 2 * DEFAULT_LANE_ELEMENTS * max(shape) * max(1, math.ceil(bits / 8))


def _default_dram_width(gbps: float, clock_mhz: float, element_bytes=(1,)) -> int:
    """Bytes per cycle of the default DRAM port: the bandwidth at the clock, rounded down to a whole number of
    elements of every tensor (a word of 10 B cannot carry int32 elements; 8 B can), and never below one
    element of the widest tensor."""
    word = math.lcm(*element_bytes)
    return max(word, int(gbps * 1e3 / clock_mhz) // word * word)


def default_memory(design: "Design") -> MemorySystem:
    """The memory system a spec without ``memory:`` gets (docs/memory.md)."""
    bufs = tuple(BufferSpec(o.name, _default_buffer_bytes(design.shape, design.type_of[o.name].bits),
                            port_bytes=max(1, math.ceil(design.type_of[o.name].bits / 8)))
                 for o in design.operation.operands)
    elems = [max(1, math.ceil(design.type_of[o.name].bits / 8)) for o in design.operation.operands]
    return MemorySystem(bufs, DramPort(_default_dram_width(design.dram_gbps, design.clock_mhz, elems)))


def _parse_memory(raw: Mapping, op: Operation, types: Mapping[str, DataType], shape, data: Mapping):
    """Resolve ``memory:`` with defaults; unknown operands are named (the schema checked the fields)."""
    problems: list[Problem] = []
    names = [o.name for o in op.operands]
    for key in raw:
        if key not in ("dram", "partial_sums_through_dram") and key not in names:
            close = difflib.get_close_matches(key, names + ["dram"], n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"buffers are named by operand ({', '.join(names)}) or 'dram'"
            problems.append(problem(f"memory.{key}", f"no operand of that name; {fix}"))
    bufs = []
    for n in names:
        b = dict(raw.get(n, {}))
        elem = max(1, math.ceil(types[n].bits / 8)) if n in types else 1
        default_bytes = _default_buffer_bytes(shape, types[n].bits if n in types else 8)
        bufs.append(BufferSpec(n, int(b.get("bytes", default_bytes)), int(b.get("banks", 0)),
                               int(b.get("read_ports", 1)), int(b.get("write_ports", 1)),
                               int(b.get("port_bytes", elem)), bool(b.get("double_buffer", True))))
    d = dict(raw.get("dram", {}))
    clock = float(data.get("clock_mhz", 500))
    elems = [max(1, math.ceil(types[n].bits / 8)) if n in types else 1 for n in names]
    width = d.get("width_bytes", _default_dram_width(float(data.get("dram", {}).get("bandwidth_gbps", 16.0)), clock,
                                                     elems))
    dram = DramPort(int(width), int(d.get("latency", 64)), int(d.get("burst_bytes", 64)), int(d.get("outstanding", 64)))
    return MemorySystem(tuple(bufs), dram, bool(raw.get("partial_sums_through_dram", False))), problems


def _parse_dataflow(name: str, d: Mapping, op: Operation, shape: tuple[int, ...]):
    path = f"dataflows.{name}"
    problems: list[Problem] = []
    forms = [f for f in ("spatial", "map", "stt") if f in d]
    if len(forms) != 1:
        problems.append(problem(path, "give the space-time map in exactly one form: spatial, map or stt",
                                forms or "none"))
        return None, problems
    form = forms[0]
    rank = len(shape)
    control = tuple(d.get("control", [0] * rank))
    if len(control) != rank:
        problems.append(problem(f"{path}.control", f"needs one entry per array axis ({rank})", list(control)))
    order = tuple(d.get("order", op.dims))
    bad_order = [x for x in order if x not in op.dims]
    for x in bad_order:
        close = difflib.get_close_matches(x, op.dims, n=1)
        problems.append(problem(f"{path}.order", f"unknown loop {x!r}" + (f"; did you mean {close[0]!r}?" if close else ""), x))
    if not bad_order and sorted(order) != sorted(op.dims):
        missing = [x for x in op.dims if x not in order]
        problems.append(problem(f"{path}.order", f"must list every loop once; missing {', '.join(missing)}", list(order)))
    tvars = tuple(time_var(x) for x in op.dims)
    svars = tuple(space_var(a) for a in range(rank))
    spatial = None
    if form == "spatial":
        assign = d["spatial"]
        used_axes: dict[int, str] = {}
        for dim, axis in assign.items():
            if dim not in op.dims:
                close = difflib.get_close_matches(dim, op.dims, n=1)
                problems.append(problem(f"{path}.spatial.{dim}", "no loop of that name" +
                                        (f"; did you mean {close[0]!r}?" if close else f"; loops are {', '.join(op.dims)}")))
            elif axis >= rank:
                problems.append(problem(f"{path}.spatial.{dim}", f"the array has {rank} axis(es), numbered from 0", axis))
            elif axis in used_axes:
                problems.append(problem(f"{path}.spatial.{dim}", f"axis {axis} already carries loop {used_axes[axis]!r}; one loop per axis", axis))
            else:
                used_axes[axis] = dim
        for axis in range(rank):
            if axis not in used_axes and shape[axis] > 1 and not problems:
                problems.append(problem(f"{path}.spatial", f"array axis {axis} (extent {shape[axis]}) carries no loop, so its "
                                        "FUs would repeat the same iterations; assign a loop to it or make its extent 1", dict(assign)))
        if problems:
            return None, problems
        exprs = []
        for dim in op.dims:
            axis = next((a for a, dd in used_axes.items() if dd == dim), None)
            if axis is None:
                exprs.append(AffineExpr.var(time_var(dim)))
            else:
                exprs.append(AffineExpr.of({time_var(dim): shape[axis], space_var(axis): 1}))
        ts_map = AffineMap(tvars + svars, tuple(exprs), op.dims)
        spatial = tuple(sorted((a, Dim(dd)) for a, dd in used_axes.items()))
    elif form == "map":
        given = d["map"]
        for dim in given:
            if dim not in op.dims:
                problems.append(problem(f"{path}.map.{dim}", f"no loop of that name; loops are {', '.join(op.dims)}"))
        exprs = []
        for dim in op.dims:
            if dim not in given:
                problems.append(problem(f"{path}.map.{dim}", "every loop needs an expression, e.g. 't_%s'" % dim))
                continue
            try:
                exprs.append(parse_affine(str(given[dim]), allowed=tvars + svars))
            except AffineParseError as err:
                problems.append(problem(f"{path}.map.{dim}", f"{err.reason} (variables: t_<loop> and s0..s{rank - 1})", given[dim]))
        if problems:
            return None, problems
        ts_map = AffineMap(tvars + svars, tuple(exprs), op.dims)
        spatial = _tiled_form(ts_map, op.dims, shape)
    else:
        mat = np.array(d["stt"], dtype=object)
        ok_shape = all(len(r) == len(op.dims) for r in d["stt"]) and len(d["stt"]) == rank + 1
        if not ok_shape:
            problems.append(problem(f"{path}.stt", f"needs {rank} spatial rows and one time row, each with {len(op.dims)} "
                                    f"entries (loops {', '.join(op.dims)}); for more loops than rank+1 use 'spatial' or 'map'",
                                    d["stt"]))
            return None, problems
        mat = np.array(d["stt"], dtype=np.int64)
        unit = [sorted(abs(mat[a])) == [0] * (len(op.dims) - 1) + [1] and mat[a].sum() == 1 for a in range(rank)]
        if all(unit):
            assign = {a: op.dims[int(np.argmax(mat[a]))] for a in range(rank)}
            if len(set(assign.values())) == rank:
                time_row = mat[rank]
                control = tuple(int(time_row[op.dims.index(assign[a])]) for a in range(rank))
                exprs = []
                for dim in op.dims:
                    axis = next((a for a, dd in assign.items() if dd == dim), None)
                    exprs.append(AffineExpr.var(time_var(dim)) if axis is None
                                 else AffineExpr.of({time_var(dim): shape[axis], space_var(axis): 1}))
                ts_map = AffineMap(tvars + svars, tuple(exprs), op.dims)
                spatial = tuple(sorted((a, Dim(dd)) for a, dd in assign.items()))
        if spatial is None:
            # spatial rows that mix loops: a skewed (hexagonal/diagonal) map, run by dataflow/stt_array.py
            problems += stt_move_problems(mat, op, f"{path}.stt")
            ts_map = None
            control = (0,) * rank
    inner = None
    if "inner" in d and not problems:
        inner = tuple(Dim(x) for x in d["inner"])
        if tuple(order[len(order) - len(inner):]) != inner or not inner:
            problems.append(problem(f"{path}.inner", "must be a non-empty suffix of order", list(inner)))
        elif spatial is not None and any(x in dict((dd, a) for a, dd in spatial) for x in inner):
            problems.append(problem(f"{path}.inner", "spatial loops are tiled across the array and cannot run inside a tile",
                                    list(inner)))
    stt = tuple(tuple(int(v) for v in row) for row in d["stt"]) if form == "stt" else None
    schedule = d.get("schedule", "compressed")
    if schedule != "compressed" and form != "map":
        problems.append(problem(f"{path}.schedule", f"only a 'map' dataflow has a schedule of its own to choose; "
                                f"a '{form}' dataflow runs its tiled form (remove the field)", schedule))
    df = Dataflow(name, ts_map, tuple(Dim(x) for x in order), tuple(int(c) for c in control), spatial, form,
                  d.get("description", ""), inner, stt, schedule)
    return df, problems


def _tiled_form(ts_map: AffineMap, dims, shape) -> tuple[tuple[int, Dim], ...] | None:
    """Recognise ``loop = extent * t_loop + s_axis`` / ``loop = t_loop``; None for other maps."""
    assign = {}
    for dim, e in zip(dims, ts_map.exprs):
        co = e.coeffs
        if e.const != 0 or co.get(time_var(dim)) is None:
            return None
        svars = [v for v in co if v.startswith("s")]
        others = [v for v in co if v not in svars and v != time_var(dim)]
        if others:
            return None
        if not svars:
            if co[time_var(dim)] != 1:
                return None
            continue
        if len(svars) != 1 or co[svars[0]] != 1:
            return None
        axis = int(svars[0][1:])
        if co[time_var(dim)] != shape[axis] or axis in assign:
            return None
        assign[axis] = Dim(dim)
    if sorted(assign) != [a for a in range(len(shape)) if shape[a] > 1 or a in assign]:
        return None
    return tuple(sorted(assign.items()))


def _check_dataflow(df: Dataflow, op: Operation, shape, bounds) -> list[Problem]:
    path = f"dataflows.{df.name}"
    stt = None if df.stt is None else np.array(df.stt, dtype=np.int64)
    if stt is not None:
        try:
            clash = stt_conflict(stt, [bounds[d] for d in op.dims])
        except ValueError as err:
            return [problem(f"{path}.stt", str(err))]
        if clash is not None:
            x1, x2 = clash
            s = tuple(int(v) for v in stt[:-1] @ np.array(x1))
            t = int(stt[-1] @ np.array(x1))
            fmt = lambda x: "(" + ", ".join(f"{d}={v}" for d, v in zip(op.dims, x)) + ")"
            return [problem(f"{path}.stt", f"not injective on the array in time: iterations {fmt(x1)} and {fmt(x2)} both "
                            f"run on FU {s} at cycle {t}; the time row must separate iterations that share an FU",
                            stt.tolist())]
    if df.skewed:       # tiled by boxes whose image fits the array (dataflow/stt_array.py): covered by construction
        return []
    try:
        cov = check_coverage(df.ts_map, shape, bounds)
    except ValueError as err:
        return [problem(path, str(err))]
    if cov.ok:
        return []
    fmt = lambda x: "(" + ", ".join(f"{d}={v}" for d, v in zip(op.dims, x)) + ")"
    field_name = {"spatial": "spatial", "map": "map", "stt": "stt"}[df.form]
    where, got = f"{path}.{field_name}", None
    if cov.loop is not None and df.form == "map":
        where = f"{path}.map.{cov.loop}"
        got = str(df.ts_map.exprs[df.ts_map.names.index(cov.loop)])
    extra = (got,) if got is not None else ()
    if cov.missed is not None:
        return [problem(where, f"misses iterations, e.g. {fmt(cov.missed)} is never executed "
                        f"(reference bounds {bounds}); every iteration must run exactly once", *extra)]
    return [problem(where, f"runs some iterations more than once, e.g. {fmt(cov.duplicated)} "
                    f"(reference bounds {bounds}); the map must be injective", *extra)]
