"""SCALE-Sim topology CSVs as workloads.

SCALE-Sim (v2, ``topologies/``) describes a network in one of two CSV forms, each with a header row
and a trailing comma on every row:

- convolution form: ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels,
  Num Filter, Strides,`` (optionally a ninth column: the stride along the width; otherwise the stride
  applies to both). The IFMAP sizes already include any padding. The output size is SCALE-Sim's
  ``ceil((IFMAP - Filter + Stride) / Stride)``, so MAC counts match SCALE-Sim's; when the stride does
  not divide ``IFMAP - Filter``, the last window reaches past the IFMAP (by less than one stride) and
  the einsum's input is that much larger than the IFMAP. A layer whose name contains ``DP`` is depthwise: SCALE-Sim runs
  it as ``Channels`` separate one-channel convolutions with ``Num Filter`` filters each, and so do we
  (one conv layer with ``c = 1``, repeated ``Channels`` times);
- GEMM form: ``Layer, M, N, K,``: C (M x N) += A (M x K) * B (K x N).

Each row becomes a `Layer` with the IR's einsum (``O[n,k,p,q] += I[n,c,p*S+r,q*S+s] * W[k,c,r,s]``, or
``C[i,j] += A[i,k] * B[k,j]``). A malformed file raises one SpecError whose lines name the row and
the column (``row 3, IFMAP Height: must be a positive integer (got 'x')``).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from archgen.arch.errors import SpecError, problem

from .library import GEMM
from .ops import Layer, Workload

__all__ = ["CONV_COLUMNS", "GEMM_COLUMNS", "read_scalesim_topology", "parse_scalesim_topology"]

CONV_COLUMNS = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width", "Channels",
                "Num Filter", "Strides")
GEMM_COLUMNS = ("Layer", "M", "N", "K")
MAX_BYTES = 1 << 20
MAX_ROWS = 10_000
MAX_SIZE = 1_000_000


def _norm(cell: str) -> str:
    return " ".join(cell.strip().lower().split())


def read_scalesim_topology(path: str | Path, *, name: str | None = None) -> Workload:
    """Read a SCALE-Sim topology file (either form, told apart by its header)."""
    path = Path(path)
    try:
        if path.is_dir():
            raise SpecError([problem("topology", f"{path} is a directory; give a SCALE-Sim topology CSV file")])
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as err:
        raise SpecError([problem("topology", f"cannot read the file: {err.strerror}", str(path))]) from None
    if len(data) > MAX_BYTES:
        raise SpecError([problem("topology", f"the file is larger than {MAX_BYTES:,} bytes")], source=str(path))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SpecError([problem("topology", f"not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start} "
                                 "cannot be decoded")], source=str(path)) from None
    return parse_scalesim_topology(text, name=name or path.stem, source=str(path))


def parse_scalesim_topology(text: str, *, name: str = "topology", source: str | None = None) -> Workload:
    if "\0" in text:
        raise SpecError([problem("topology", "the text contains NUL characters; a topology is a CSV file")],
                        source=source)
    rows = [r for r in csv.reader(io.StringIO(text))]
    rows = [(n, [c.strip() for c in r]) for n, r in enumerate(rows, start=1) if any(c.strip() for c in r)]
    if not rows:
        raise SpecError([problem("topology", "the file has no header row; SCALE-Sim topologies start with "
                                 f"'{', '.join(CONV_COLUMNS)},' or '{', '.join(GEMM_COLUMNS)},'")], source=source)
    (_, header), body = rows[0], rows[1:]
    while header and not header[-1]:
        header = header[:-1]
    cols = [_norm(c) for c in header]
    if cols[:8] == [_norm(c) for c in CONV_COLUMNS] and len(cols) in (8, 9):
        form, columns = "conv", list(CONV_COLUMNS) + (["Stride width"] if len(cols) == 9 else [])
    elif cols == [_norm(c) for c in GEMM_COLUMNS]:
        form, columns = "gemm", list(GEMM_COLUMNS)
    else:
        raise SpecError([problem("topology.header", "not a SCALE-Sim topology header; expected "
                                 f"'{', '.join(CONV_COLUMNS)}' or '{', '.join(GEMM_COLUMNS)}'", ", ".join(header))],
                        source=source)
    if len(body) > MAX_ROWS:
        raise SpecError([problem("topology", f"{len(body):,} layers; a topology has at most {MAX_ROWS:,}")],
                        source=source)
    if not body:
        raise SpecError([problem("topology", "the file has a header but no layers")], source=source)
    problems, layers, seen = [], [], set()
    for line, cells in body:
        while cells and not cells[-1]:
            cells = cells[:-1]      # SCALE-Sim writes a trailing comma on every row
        where = f"row {line}"
        if len(cells) != len(columns):
            problems.append(problem(where, f"{len(cells)} values; a {form} row has {len(columns)} "
                                    f"({', '.join(columns)})", ",".join(cells)))
            continue
        lname = cells[0]
        if not lname:
            problems.append(problem(f"{where}, {columns[0]}", "a layer needs a name"))
            continue
        if lname in seen:
            problems.append(problem(f"{where}, {columns[0]}", "this layer name appears twice", lname))
            continue
        seen.add(lname)
        values, ok = {}, True
        for col, cell in zip(columns[1:], cells[1:]):
            try:
                v = int(cell)
            except ValueError:
                v = None
            if v is None or v < 1 or v > MAX_SIZE:
                problems.append(problem(f"{where}, {col}", f"must be an integer in 1..{MAX_SIZE:,}", cell))
                ok = False
            values[col] = v
        if not ok:
            continue
        if form == "gemm":
            layers.append(Layer(lname, "gemm", GEMM, {"i": values["M"], "k": values["K"], "j": values["N"]},
                                static=("B",)))
            continue
        layer, why = _conv_layer(lname, values)
        if why:
            problems.append(problem(f"{where}, {why[0]}", why[1], why[2]))
        else:
            layers.append(layer)
    if problems:
        raise SpecError(problems, source=source)
    return Workload(name, tuple(layers))


def _conv_layer(lname: str, v: dict) -> tuple[Layer | None, tuple | None]:
    fh, fw, ih, iw = v["Filter Height"], v["Filter Width"], v["IFMAP Height"], v["IFMAP Width"]
    sh = v["Strides"]
    sw = v.get("Stride width", sh)
    if fh > ih:
        return None, ("Filter Height", f"larger than the IFMAP Height ({ih}); SCALE-Sim IFMAP sizes include padding", fh)
    if fw > iw:
        return None, ("Filter Width", f"larger than the IFMAP Width ({iw}); SCALE-Sim IFMAP sizes include padding", fw)
    p, q = -(-(ih - fh + sh) // sh), -(-(iw - fw + sw) // sw)       # SCALE-Sim's ceil, not floor
    pi = f"p*{sh}+r" if sh > 1 else "p+r"
    qi = f"q*{sw}+s" if sw > 1 else "q+s"
    einsum = f"O[n,k,p,q] += I[n,c,{pi},{qi}] * W[k,c,r,s]"
    if "DP" in lname:       # SCALE-Sim's depthwise convention: one 1-channel conv per channel
        bounds = {"n": 1, "k": v["Num Filter"], "c": 1, "p": p, "q": q, "r": fh, "s": fw}
        return Layer(lname, "conv", einsum, bounds, count=v["Channels"], static=("W",)), None
    bounds = {"n": 1, "k": v["Num Filter"], "c": v["Channels"], "p": p, "q": q, "r": fh, "s": fw}
    return Layer(lname, "conv", einsum, bounds, static=("W",)), None
