"""Sweep outputs: a table of the Pareto front, CSV and JSON of every point and of the front, and PNG
plots (a Pareto scatter and per-axis sensitivity), all deterministic for the same records.

Files written into the sweep's directory (all or nothing, next to the results store):

- ``points.csv``, ``points.json``: every point of this sweep, in point order, with a ``pareto`` column;
- ``pareto.csv``, ``pareto.json``: the front on the sweep's objectives, among designs (a design's
  latency and energy summed over the sweep's workloads when there are several);
- ``pareto.png``: latency against energy of every design, the front highlighted;
- ``sensitivity.png``: for each axis that varies, the best and the median EDP at each of its values.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

from .sweep import OBJECTIVES

__all__ = ["point_label", "axis_values", "front_table", "write_sweep_outputs", "CSV_COLUMNS"]

CSV_COLUMNS = ("key", "spec", "overrides", "dataflow", "mapper", "workload", "seq", "fus", "clock_mhz", "cycles", "time_ns",
               "energy_pj", "edp_pj_ns", "area_mm2", "dram_bytes", "pareto")
_UNITS = {"time_ns": ("latency", 1e-3, "us"), "energy_pj": ("energy", 1e-6, "uJ"), "area_mm2": ("area", 1, "mm^2"),
          "edp_pj_ns": ("EDP", 1e-9, "uJ*ms"), "cycles": ("cycles", 1, "cycles"),
          "dram_bytes": ("DRAM", 1e-6, "MB"), "fus": ("FUs", 1, "FUs")}


def _workload_label(ref: str) -> str:
    kind, sep, path = ref.partition(":")
    return f"{kind}:{Path(path).name}" if sep and kind in ("scalesim", "onnx") else ref


def axis_values(rec: dict) -> dict[str, str]:
    """The record's coordinates: each override field, the dataflow and the workload."""
    out = {}
    for item in rec["overrides"]:
        field, _, value = item.partition("=")
        out[field] = value
    out["dataflow"] = rec["dataflow"]
    out["workload"] = _workload_label(rec["workload"]) + (f" seq {rec['seq']}" if rec.get("seq") else "")
    return out


def _varying(records: list[dict]) -> dict[str, list[str]]:
    """Axes whose value differs between records, with their values in first-seen order."""
    seen: dict[str, list[str]] = {}
    for r in records:
        for k, v in axis_values(r).items():
            seen.setdefault(k, [])
            if v not in seen[k]:
                seen[k].append(v)
    return {k: v for k, v in seen.items() if len(v) > 1}


def point_label(rec: dict, varying: Sequence[str] | None = None) -> str:
    vals = axis_values(rec)
    keys = varying if varying is not None else list(vals)
    return " ".join(f"{k}={vals[k]}" for k in keys if k in vals) or "(base)"


def front_table(front: list[dict], records: list[dict], objectives: Sequence[str], limit: int = 30):
    """A rich Table of the Pareto front (at most ``limit`` rows): the varying axes, then every
    objective with its unit."""
    from rich.table import Table
    varying = list(_varying(records))
    fields = [OBJECTIVES[o] for o in objectives]
    for extra in ("time_ns", "energy_pj", "edp_pj_ns", "area_mm2"):
        if extra not in fields:
            fields.append(extra)
    summed = " (latency and energy summed over each design's workloads)" if any("points" in r for r in records) else ""
    table = Table(title=f"Pareto front on {', '.join(objectives)}: {len(front)} of {len(records)} designs{summed}")
    table.add_column("point")
    for f in fields:
        name, _scale, unit = _UNITS[f]
        table.add_column(f"{name} ({unit})", justify="right")
    for r in front[:limit]:
        table.add_row(point_label(r, varying), *(f"{r[f] * _UNITS[f][1]:.4g}" for f in fields))
    if len(front) > limit:
        table.caption = f"{len(front) - limit} more rows in pareto.csv"
    return table


def _csv(records: list[dict], on_front: set[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in records:
        row = dict(r, overrides=" ".join(r["overrides"]), pareto=r["key"] in on_front,
                   workload=_workload_label(r["workload"]), seq="" if r.get("seq") is None else r["seq"],
                   mapper=r.get("mapper", "heuristic"))
        w.writerow([row[c] for c in CSV_COLUMNS])
    return buf.getvalue()


def _json(records: list[dict]) -> str:
    return json.dumps(records, indent=1, sort_keys=True) + "\n"


def _pareto_png(records, front, objectives, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = {r["key"] for r in front}
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    rest = [r for r in records if r["key"] not in keys]
    ax.scatter([r["time_ns"] * 1e-3 for r in rest], [r["energy_pj"] * 1e-6 for r in rest], s=10, c="0.7",
               label="dominated")
    ax.scatter([r["time_ns"] * 1e-3 for r in front], [r["energy_pj"] * 1e-6 for r in front], s=24, c="tab:red",
               label=f"Pareto front ({', '.join(objectives)})")
    ax.set_xlabel("latency (us)")
    ax.set_ylabel("energy (uJ)")
    for axis, values in (("x", [r["time_ns"] for r in records]), ("y", [r["energy_pj"] for r in records])):
        if min(values) > 0 and max(values) / min(values) > 30:
            getattr(ax, f"set_{axis}scale")("log")
    ax.legend(loc="best", fontsize="small")
    ax.set_title(f"{len(records)} designs")
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def _sensitivity_png(records, path: Path) -> None:
    import statistics

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    varying = _varying(records)
    n = max(1, len(varying))
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.6), dpi=100, squeeze=False)
    if not varying:
        axes[0][0].text(0.5, 0.5, "no axis varies", ha="center", va="center")
        axes[0][0].set_axis_off()
    for ax, (axis, values) in zip(axes[0], varying.items()):
        best, median = [], []
        for v in values:
            edps = [r["edp_pj_ns"] * 1e-9 for r in records if axis_values(r).get(axis) == v]
            best.append(min(edps))
            median.append(statistics.median(edps))
        xs = range(len(values))
        ax.plot(xs, best, "o-", label="best")
        ax.plot(xs, median, "s--", label="median")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(values, rotation=45 if len(values) > 4 else 0, ha="right" if len(values) > 4 else "center",
                           fontsize="small")
        ax.set_xlabel(axis)
        ax.set_ylabel("EDP (uJ*ms)")
        if min(best) > 0 and max(median) / min(best) > 30:
            ax.set_yscale("log")
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def write_sweep_outputs(out_dir: str | Path, records: list[dict], designs: list[dict], front: list[dict],
                        objectives: Sequence[str], *, plots: bool = True) -> dict[str, Path]:
    """Write the CSV, JSON and (with ``plots``) PNG outputs; returns name -> path.

    ``records`` are the points; ``designs`` the per-design totals over workloads (sweep.design_totals)
    and ``front`` the Pareto front among them. A point's ``pareto`` column says whether its design is
    on the front."""
    from archgen.arch.files import write_all_or_nothing
    on_front = {k for r in front for k in r.get("points", [r["key"]])}
    front_keys = {r["key"] for r in front}
    files = {"points.csv": _csv(records, on_front), "points.json": _json(records),
             "pareto.csv": _csv(front, front_keys), "pareto.json": _json(front)}
    if plots:
        files["pareto.png"] = lambda p: _pareto_png(designs, front, objectives, p)
        files["sensitivity.png"] = lambda p: _sensitivity_png(designs, p)
    return write_all_or_nothing(out_dir, files)
