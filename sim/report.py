"""Simulation reports: JSON and CSV (units in every column name), a roofline and an energy plot, a rich table.

Output is deterministic: no timestamps, sorted keys, fixed figure sizes, PNG metadata without the
software version, so the same results give the same bytes.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from archgen.arch.files import write_all_or_nothing

from .results import LayerResult, roofline_cycles, totals

__all__ = ["render_table", "render_spatten_table", "spatten_summary", "roofline_cycles", "write_sim_report"]

_PNG_META = {"Software": None}


def _layer_record(r: LayerResult) -> dict:
    return {
        "layer": r.name, "kind": r.kind, "macs": r.macs, "cycles": r.cycles, "time_ns": r.time_ns,
        "utilisation": r.utilisation, "roofline_cycles": r.roofline_cycles,
        "dram_bytes": dict(sorted(r.dram_bytes.items())), "dram_total_bytes": r.dram_total_bytes,
        "sram_accesses": dict(sorted(r.sram_accesses.items())),
        "energy_pj": dict(sorted(r.energy_pj.items())), "energy_total_pj": r.energy_total_pj,
        "extra": dict(sorted(r.extra.items())),
    }


def _csv_rows(results: list[LayerResult]) -> tuple[list[str], list[dict]]:
    dram_keys = sorted({k for r in results for k in r.dram_bytes})
    sram_keys = sorted({k for r in results for k in r.sram_accesses})
    energy_keys = sorted({k for r in results for k in r.energy_pj})
    extra_keys = sorted({k for r in results for k in r.extra})
    cols = ["layer", "kind", "macs", "cycles", "time_ns", "utilisation", "roofline_cycles", "bound",
            "dram_read_bytes", "dram_write_bytes", "dram_bytes"]
    cols += [f"dram_bytes.{k}" for k in dram_keys] + [f"sram_accesses.{k}" for k in sram_keys]
    cols += ["energy_pj"] + [f"energy_pj.{k}" for k in energy_keys] + [f"extra.{k}" for k in extra_keys]
    rows = []
    for r in results:
        row = {"layer": r.name, "kind": r.kind, "macs": r.macs, "cycles": r.cycles, "time_ns": r.time_ns,
               "utilisation": r.utilisation, "roofline_cycles": r.roofline_cycles, "bound": "",
               "dram_read_bytes": r.dram_read_bytes, "dram_write_bytes": r.dram_write_bytes,
               "dram_bytes": r.dram_total_bytes, "energy_pj": r.energy_total_pj}
        row.update({f"dram_bytes.{k}": r.dram_bytes.get(k, 0) for k in dram_keys})
        row.update({f"sram_accesses.{k}": r.sram_accesses.get(k, 0) for k in sram_keys})
        row.update({f"energy_pj.{k}": r.energy_pj.get(k, 0.0) for k in energy_keys})
        row.update({f"extra.{k}": r.extra.get(k, "") for k in extra_keys})
        rows.append(row)
    return cols, rows


def _bound(r: LayerResult, peak: float, bpc: float) -> str:
    return "compute" if r.macs / peak >= r.dram_total_bytes / bpc else "memory"


def _plot_roofline(results, path, design, peak, bpc):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(r.operational_intensity, r.macs / r.cycles, r.name) for r in results
           if r.macs > 0 and r.cycles > 0 and r.dram_total_bytes > 0]
    fig, ax = plt.subplots(figsize=(7.0, 4.5), dpi=100)
    lo = min([p[0] for p in pts] + [peak / bpc]) / 4
    hi = max([p[0] for p in pts] + [peak / bpc]) * 4
    xs = [lo * (hi / lo) ** (i / 199) for i in range(200)]
    ax.plot(xs, [min(peak, x * bpc) for x in xs], color="black", lw=1.5, label="roofline")
    ax.axvline(peak / bpc, color="grey", ls=":", lw=1)
    if pts:
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, color="tab:blue", zorder=3, label="layers")
        # names only while they stay legible; sim.csv has every layer's coordinates
        if len(pts) <= 8:
            for x, y, name in pts:
                ax.annotate(name, (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points")
        ax.set_ylim(min(p[1] for p in pts) / 2, peak * 2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("operational intensity (MACs / DRAM byte)")
    ax.set_ylabel("achieved MACs / cycle")
    ax.set_title(f"{design}: roofline (peak {peak:g} MACs/cycle, {bpc:g} B/cycle)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, metadata=_PNG_META)
    plt.close(fig)


def _plot_energy(results, path, design):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = sorted({k for r in results for k in r.energy_pj})
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(results) + 2), 4.5), dpi=100)
    bottom = [0.0] * len(results)
    xs = list(range(len(results)))
    cmap = plt.get_cmap("tab20")
    for i, comp in enumerate(comps):
        vals = [r.energy_pj.get(comp, 0.0) / 1e6 for r in results]
        ax.bar(xs, vals, bottom=bottom, label=comp, color=cmap(i % 20), width=0.8)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(xs, [r.name for r in results], rotation=90, fontsize=6)
    ax.set_ylabel("energy (uJ)")
    ax.set_title(f"{design}: energy by component", fontsize=9)
    if comps:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, metadata=_PNG_META)
    plt.close(fig)


def write_sim_report(results: list[LayerResult], out_dir: Path, *, design: str, clock_mhz: float,
                     peak_macs_per_cycle: int, dram_bytes_per_cycle: float) -> dict[str, Path]:
    """Write ``sim.json``, ``sim.csv``, ``roofline.png`` and ``energy.png`` into ``out_dir``."""
    if not results:
        raise ValueError("write_sim_report needs at least one LayerResult")
    peak, bpc = peak_macs_per_cycle, dram_bytes_per_cycle
    tot = totals(results)
    doc = {
        "design": design, "clock_mhz": clock_mhz, "peak_macs_per_cycle": peak, "dram_bytes_per_cycle": bpc,
        "units": {"cycles": "cycles", "time_ns": "ns", "dram_bytes": "bytes", "energy_pj": "pJ",
                  "utilisation": "fraction of peak MACs/cycle", "macs": "multiply-accumulates"},
        "layers": [dict(_layer_record(r), bound=_bound(r, peak, bpc)) for r in results],
        "total": dict(tot, utilisation=tot["macs"] / (peak * tot["cycles"]) if tot["cycles"] else 0.0),
    }
    cols, rows = _csv_rows(results)
    for r, row in zip(results, rows):
        row["bound"] = _bound(r, peak, bpc)

    def write_csv(path: Path) -> None:
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)

    files = {"sim.json": json.dumps(doc, indent=2, sort_keys=True) + "\n", "sim.csv": write_csv,
             "roofline.png": lambda p: _plot_roofline(results, p, design, peak, bpc),
             "energy.png": lambda p: _plot_energy(results, p, design)}
    written = write_all_or_nothing(out_dir, files)
    return {"json": written["sim.json"], "csv": written["sim.csv"], "roofline_png": written["roofline.png"],
            "energy_png": written["energy.png"]}


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    if isinstance(x, int) or (float(x).is_integer() and abs(x) < 1e15):
        return f"{int(x):,}"
    if abs(x) >= 1e12 or abs(x) < 1e-2:
        return f"{x:.3e}"
    return f"{x:,.1f}"


def render_table(results: list[LayerResult], *, dataflow_column: bool = False):
    """A rich `Table` with one row per layer and a total row; units in the headers. ``dataflow_column``
    adds the dataflow each layer ran under (a fused design picks one per layer command)."""
    from rich.table import Table

    from rich import box

    t = Table(title="per-layer results", show_footer=False, box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True)
    cols = ("layer", "kind") + (("dataflow",) if dataflow_column else ()) + (
        "MACs", "cycles", "time\n(ns)", "util\n(%)", "roofline\n(cycles)", "DRAM\n(bytes)", "energy\n(pJ)")
    for col in cols:
        # numbers never wrap or truncate (a folded number reads as two, an ellipsis hides digits); names fold
        text = col in ("layer", "kind", "dataflow")
        t.add_column(col, justify="left" if text else "right", overflow="fold", no_wrap=not text)
    for r in results:
        df = (str(r.extra.get("dataflow", "")),) if dataflow_column else ()
        t.add_row(r.name, r.kind, *df, _fmt(r.macs), _fmt(r.cycles), _fmt(r.time_ns), f"{100 * r.utilisation:.1f}",
                  _fmt(r.roofline_cycles), _fmt(r.dram_total_bytes), _fmt(r.energy_total_pj))
    tot = totals(results)
    peak_known = [r for r in results if r.utilisation > 0 and r.cycles > 0]
    util = ""
    if peak_known:
        # utilisation of the whole run = sum(MACs) / (peak x sum(cycles)); peak from any layer's ratio
        r0 = peak_known[0]
        peak = r0.macs / (r0.utilisation * r0.cycles)
        util = f"{100 * tot['macs'] / (peak * tot['cycles']):.1f}" if not math.isclose(tot["cycles"], 0) else ""
    t.add_row("total", "", *(("",) if dataflow_column else ()), _fmt(tot["macs"]), _fmt(tot["cycles"]),
              _fmt(tot["time_ns"]), util, _fmt(tot["roofline_cycles"]), _fmt(tot["dram_bytes"]),
              _fmt(tot["energy_pj"]), style="bold")
    return t


def render_spatten_table(results: list[LayerResult]):
    """SpAtten per-layer results: what pruning kept, what it cost, and the gain over the dense run of
    the same engine (``speedup``, DRAM and energy ratios are dense / pruned).

    ``front``, ``top-k`` and ``PxV`` are each stage's busy cycles summed over the layer's rows; the
    stages overlap across queries, so ``compute`` (the streamed total) is less than their sum; the layer
    (its commands each waiting for its K/V load) takes at least ``max(compute, DRAM)``. Cells never
    wrap: the headers carry the units on lines of their own."""
    from rich import box
    from rich.table import Table

    t = Table(title="SpAtten per layer (x: dense run of the same engine / this run)", box=box.SIMPLE_HEAD,
              padding=(0, 1), collapse_padding=True)
    cols = ("layer", "tokens\nkept", "heads\nkept", "LSB\nrefetch\n(% rows)", "front\n(cycles)",
            "top-k\n(cycles)", "PxV\n(cycles)", "compute\n(cycles)", "DRAM\n(cycles)", "layer\n(cycles)",
            "DRAM\n(bytes)", "energy\n(uJ)", "speedup\n(x)", "DRAM\nless (x)", "energy\nless (x)")
    for col in cols:
        t.add_column(col, justify="left" if col == "layer" else "right", no_wrap=True)
    for r in results:
        t.add_row(*_spatten_cells(r))
    return t


def _kept(kept: float, total: float) -> str:
    k = f"{kept:.0f}" if float(kept).is_integer() else f"{kept:.1f}"
    return f"{k}/{total:.0f}"


def _spatten_cells(r: LayerResult) -> tuple[str, ...]:
    x = r.extra
    return (r.name, _kept(x["tokens_kept"], x["tokens"]), _kept(x["heads_kept"], x["heads"]),
            f"{100 * x['lsb_row_fraction']:.1f}", _fmt(x["front_stage_cycles"]), _fmt(x["topk_stage_cycles"]),
            _fmt(x["pv_stage_cycles"]), _fmt(round(x["compute_cycles"])), _fmt(round(x["dram_cycles"])),
            _fmt(round(r.cycles)), _fmt(r.dram_total_bytes), f"{r.energy_total_pj / 1e6:.4g}",
            f"{x['speedup']:.2f}", f"{x['dram_reduction']:.2f}",
            f"{x['dense_energy_pj'] / r.energy_total_pj:.2f}" if r.energy_total_pj else "")


def spatten_summary(results: list[LayerResult], clock_mhz: float) -> str:
    """The whole model: time, rows that refetched LSBs, and speedup, DRAM and energy against the dense
    baselines (the dense run of the same engine: every token and head, 12-bit K/V, PQ off; and its
    traffic with fp32 K/V, queries and outputs, the paper's memory baseline)."""
    cycles = sum(r.cycles for r in results)
    dense = sum(r.extra["dense_cycles"] for r in results)
    dram = sum(r.dram_total_bytes for r in results)
    dense_dram = sum(r.extra["dense_dram_bytes"] for r in results)
    fp32 = sum(r.extra["dense_fp32_dram_bytes"] for r in results)
    energy = sum(r.energy_total_pj for r in results)
    dense_energy = sum(r.extra["dense_energy_pj"] for r in results)
    rows = sum(r.extra["rows"] for r in results)
    lsb = sum(r.extra["lsb_row_fraction"] * r.extra["rows"] for r in results) / rows if rows else 0.0
    # rows whose local-V top-k was late, swept unpruned (the fallback, docs/spatten.md): shown when any
    fell = sum(r.extra.get("fallback_rows", 0) for r in results)
    fell_text = f" ({_fmt(fell)} rows swept unpruned, their local-V top-k late)" if fell else ""
    return (f"whole model: {_fmt(round(cycles))} cycles ({cycles * 1e3 / clock_mhz / 1e6:.4g} ms at {clock_mhz:g} MHz); "
            f"speedup {dense / cycles:.2f}x over the dense run of the same engine ({_fmt(round(dense))} cycles); "
            f"LSB refetch on {100 * lsb:.1f}% of {_fmt(round(rows))} query rows{fell_text}; DRAM {_fmt(dram)} bytes: "
            f"{dense_dram / dram:.2f}x less than dense, {fp32 / dram:.2f}x less than dense fp32 K/V "
            f"({_fmt(round(fp32))} bytes); energy {energy / 1e6:.4g} uJ, {dense_energy / energy:.2f}x less than dense")
