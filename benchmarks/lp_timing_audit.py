"""Audit the pipelining LP's registers against the RTL's segments (docs/pipelining.md "Limits").

For every built-in spec (each tiled dataflow alone, the spec's ``fuse:`` list fused, the SpAtten arrays) at its own
clock and at faster ones, compile as ``archgen build`` does, then walk the retimed primitive graph with the
segments the RTL has, not the LP's model of them:

* an edge's registers are the driver's chain (rtlgen/datapath.py ``RetimedNets.src``): the wire after the tap the
  sink reads (fan-out penalty, a long link's span, a fused design's select mux: ``Wire.wire_ns``) lies between the
  last register and the sink, so a segment starts at clock-to-Q + wire_ns at the sink;
* a delay connection's FIFO (rtlgen/array.py ``_fifo``, fused_array.py ``_fifo``) is one register or a buffer
  written synchronously: its input ends a segment, its output starts one at its ``out_ns`` (clock-to-Q, plus the
  buffer's read multiplexer);
* a hold edge (a stationary register's output, an accumulator's read-out) is a wire from a register like any other.

It reports, per design and clock, the worst segment of each kind the LP's rows did not cover ("reg-wire": after a
registered edge's wire; "fifo": from a FIFO's output; "hold": over a hold edge), the worst segment of all, and
every segment that misses the period. A miss means the built design is slower than its clock under these
semantics. ``--lp`` names the code under test (its import path is whatever archgen is installed).

    python benchmarks/lp_timing_audit.py                       # built-ins at their clocks and 2x, 2.5x, 3x faster
    python benchmarks/lp_timing_audit.py --speedups 1 --verbose
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import networkx as nx
import yaml

from archgen.arch.errors import ArchgenError
from archgen.arch.spec import apply_overrides, load_spec_data
from archgen.dataflow.compile import compile_array, compile_fused
from archgen.dataflow.ir import NodeKind

SPECS = Path(__file__).resolve().parent.parent / "arch" / "specs"
EPS = 1e-6


@dataclasses.dataclass
class Segment:
    kind: str           # "reg-wire", "fifo", "hold", "node" (a start the LP's walk covers)
    delay_ns: float     # clock-to-Q (or clock-to-output) .. setup included
    path: tuple         # nodes from the start to the end


def _boundary(prim, v) -> bool:
    """v's output comes from a register (or a synchronously written buffer) in the RTL."""
    return prim.primitive(v).latency >= 1 or v.kind is NodeKind.FIFO


def segments(prim, regs) -> list[Segment]:
    """Per segment end the slowest segment of each start kind reaching it (the RTL's semantics, module doc)."""
    g, cq, su = prim.graph, prim.clk_to_q_ns, prim.setup_ns
    order = list(nx.topological_sort(g))
    out = []
    for kind in ("reg-wire", "fifo", "hold", "node"):
        arr: dict = {}                           # node -> (arrival at its input, path)
        for v in order:
            best = arr.get(v)
            for u, e in prim.in_wires(v):
                k = 0 if e.hold else regs(u, v)
                if k >= 1:
                    if kind != "reg-wire" or e.wire_ns <= 0:
                        continue
                    cand = (cq + e.wire_ns, (u, v))
                else:
                    src = _output(prim, u, arr, kind, e.hold)
                    if src is None:
                        continue
                    cand = (src[0] + e.wire_ns, src[1] + (v,))
                if best is None or cand[0] > best[0]:
                    best = cand
            if best is None:
                continue
            arr[v] = best
            d = prim.primitive(v).delay_ns
            if _boundary(prim, v) or not any(True for _ in g.successors(v)):
                out.append(Segment(kind, best[0] + d + su, best[1]))
            for w, e in prim.out_wires(v):     # into the first register of an edge's chain (no wire before it)
                if not _boundary(prim, v) and not e.hold and regs(v, w) >= 1:
                    out.append(Segment(kind, best[0] + d + su, best[1] + ("reg",)))
    return out


def _output(prim, u, arr, kind, hold):
    """(time u's output is valid, path) for a segment of ``kind``, or None if no such segment passes u."""
    p = prim.primitive(u)
    if hold and kind != "hold":
        return None
    if _boundary(prim, u):
        if hold and kind == "hold":
            return p.out_ns if p.latency >= 1 else prim.clk_to_q_ns, (u,)
        if kind == "fifo" and u.kind is NodeKind.FIFO:
            return p.out_ns, (u,)
        if kind == "node" and u.kind is not NodeKind.FIFO:
            return p.out_ns, (u,)
        return None
    if u in arr:
        t, path = arr[u]
        return t + p.delay_ns, path
    if kind == "node":
        return prim.clk_to_q_ns + p.delay_ns, (u,)
    return None


def audit(name: str, timings, period: float) -> dict:
    """Worst segment per kind over the dataflows' timings (ArrayTiming), and the misses."""
    worst: dict = {}
    misses = []
    for df, tm in timings:
        for s in segments(tm.prim, tm.regs):
            if s.kind not in worst or s.delay_ns > worst[s.kind][0].delay_ns:
                worst[s.kind] = (s, df)
            if s.delay_ns > period + EPS:
                misses.append((s, df))
    return {"name": name, "period": period, "worst": worst, "misses": misses}


def _designs(path: Path, speedup: float):
    """(label, [(dataflow, ArrayTiming)], period) for one spec at clock x speedup."""
    raw = yaml.safe_load(path.read_text())
    if raw.get("kind") == "spatten":
        from archgen.arch.spatten_spec import load_spatten_spec
        from archgen.dataflow.spatten_arrays import spatten_arrays
        raw = dict(raw, clock_mhz=raw["clock_mhz"] * speedup)
        spec = load_spatten_spec(raw)
        arrays = spatten_arrays(spec)
        period = 1e3 / raw["clock_mhz"]
        yield path.stem, [(u, a.compiled.timing) for u, a in arrays.items()], period
        return
    data = apply_overrides(raw, [f"clock_mhz={raw['clock_mhz'] * speedup}"])
    design = load_spec_data(data, source=str(path))
    period = 1e3 / design.clock_mhz
    for df in design.dataflows:
        if df.skewed:
            continue                      # stt maps: lock-step chains, no LP (rtlgen/stt_array.py)
        c = compile_array(design, df.name, target="asic")
        yield f"{path.stem}/{df.name}", [(df.name, c.timing)], period
    if design.fuse:
        f = compile_fused(design, design.fuse, target="asic")
        views = [(v.dataflow.name, v.timing) for v in f.views if not v.dataflow.skewed]
        yield f"{path.stem}/fused[{','.join(design.fuse)}]", views, period


def _fmt(s: Segment) -> str:
    return " -> ".join(str(getattr(p, "path", p)) for p in s.path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--specs", nargs="*", default=None, help="spec stems (default: every arch/specs/*.yaml)")
    ap.add_argument("--speedups", nargs="*", type=float, default=[1.0, 2.0, 2.5, 3.0],
                    help="clock multipliers of each spec's clock_mhz")
    ap.add_argument("--verbose", action="store_true", help="print the three slowest missing segments' paths")
    args = ap.parse_args(argv)
    paths = sorted(SPECS.glob("*.yaml"))
    if args.specs:
        paths = [p for p in paths if p.stem in args.specs]
    print("| design | clock (MHz) | period (ns) | worst reg-wire (ns) | worst fifo (ns) | worst hold (ns) | "
          "worst of all (ns) | segments missing the period |")
    print("|---|---|---|---|---|---|---|---|")
    total = 0
    for path in paths:
        for x in args.speedups:
            try:
                found = list(_designs(path, x))
            except ArchgenError as err:
                print(f"| {path.stem} | x{x:g} | | refused: {type(err).__name__}: {str(err).splitlines()[0][:80]} "
                      "| | | | |")
                continue
            for label, timings, period in found:
                r = audit(label, timings, period)
                w = r["worst"]
                cells = [f"{w[k][0].delay_ns:.3f}" if k in w else "-" for k in ("reg-wire", "fifo", "hold")]
                allw = max(s.delay_ns for s, _ in w.values())
                miss = sorted({(s.kind, round(s.delay_ns, 4)) for s, _ in r["misses"]}, key=lambda m: -m[1])
                total += len(r["misses"])
                text = "; ".join(f"{k} {d:.3f}" for k, d in miss[:4]) + (f" (+{len(miss) - 4})" if len(miss) > 4 else "")
                print(f"| {label} | {1e3 / period:.1f} | {period:.4f} | {' | '.join(cells)} | {allw:.3f} | "
                      f"{len(r['misses'])}{': ' + text if text else ''} |")
                if args.verbose:
                    for s, df in sorted(r["misses"], key=lambda m: -m[0].delay_ns)[:3]:
                        print(f"    {df}: {s.kind} {s.delay_ns:.3f} ns: {_fmt(s)}")
    print(f"\nsegments missing their period: {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
