"""Per-register setup slack from nextpnr's post-route SDF (what nextpnr's log does not list).

Usage: python benchmarks/sdf_slack.py DIR/topk_p4.sdf [--period-ns 10] [--top 40]

nextpnr's log reports one critical path and a slack histogram. This script reads the SDF that
``benchmarks/topk_fmax.py --log-dir DIR`` keeps (nextpnr's own post-route cell and net delays, the
maximum of each min:typ:max triple) and computes the latest arrival at every register input with a
setup check: paths start at a clocked output (flip-flop Q, block-RAM data out: the CLK -> pin IOPATH)
and end at a pin with a SETUPHOLD check. Input pins (asynchronous) start nothing. Endpoints are grouped
by register name (the bits of one Amaranth signal: the ``_TRELLIS_FF_Q...`` suffix is dropped), and
each failing group is printed with its bit count, worst slack and the start register of its worst path.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

_TRIPLE = r"\(([-0-9.]*):([-0-9.]*):([-0-9.]*)\)"


def _unescape(name: str) -> str:
    return name.replace("\\", "")


def parse_sdf(text: str):
    """(edges: {(inst, pin): [((inst, pin), delay_ps)]}, starts: {(inst, pin): clock-to-out ps},
    checks: {(inst, pin): setup ps})."""
    edges: dict = defaultdict(list)
    starts: dict = {}
    checks: dict = {}
    inter = re.compile(r"\(INTERCONNECT (\S+) (\S+) " + _TRIPLE)
    for mt in inter.finditer(text):
        src, dst = _unescape(mt.group(1)), _unescape(mt.group(2))
        s_inst, s_pin = src.rsplit("/", 1)
        d_inst, d_pin = dst.rsplit("/", 1)
        edges[(s_inst, s_pin)].append(((d_inst, d_pin), float(mt.group(5) or 0)))
    iopath = re.compile(r"\(IOPATH (\S+) (\S+) " + _TRIPLE)
    setup = re.compile(r"\(SETUPHOLD \((?:posedge|negedge) (\S+)\) \(posedge \S+\) " + _TRIPLE)
    for cell in text.split("(CELL")[1:]:
        mi = re.search(r"\(INSTANCE ([^)]*)\)", cell)
        if not mi or not mi.group(1).strip():
            continue
        inst = _unescape(mi.group(1).strip())
        for mt in iopath.finditer(cell):
            a, b, d = mt.group(1), mt.group(2), float(mt.group(5) or 0)
            if a.startswith("(posedge") or a.upper().startswith("CLK"):
                starts[(inst, b)] = max(starts.get((inst, b), 0.0), d)
            else:
                edges[(inst, a)].append(((inst, b), d))
        for mt in setup.finditer(cell):
            pin = mt.group(1)
            checks[(inst, pin)] = max(checks.get((inst, pin), 0.0), float(mt.group(4) or 0))
    return edges, starts, checks


def arrivals(edges, starts):
    """Latest arrival (ps) at every node reachable from a start, and the predecessor on that path."""
    # topological order over the reachable graph (iterative DFS)
    order, state = [], {}
    for s in starts:
        if s in state:
            continue
        stack = [(s, iter(edges.get(s, ())))]
        state[s] = 1
        while stack:
            node, it = stack[-1]
            for nxt, _ in it:
                if nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, iter(edges.get(nxt, ()))))
                    break
            else:
                stack.pop()
                order.append(node)
    arr, pred = {}, {}
    for node in reversed(order):
        if node in starts and starts[node] > arr.get(node, -1.0):
            arr[node], pred[node] = starts[node], None
        base = arr.get(node)
        if base is None:
            continue
        for nxt, d in edges.get(node, ()):
            if base + d > arr.get(nxt, -1.0):
                arr[nxt], pred[nxt] = base + d, node
    return arr, pred


def group_name(inst: str) -> str:
    name = re.sub(r"_TRELLIS_FF_Q.*$", "", inst)
    return re.sub(r"_DP16KD.*$", "", name)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sdf", type=Path)
    ap.add_argument("--period-ns", type=float, default=10.0)
    ap.add_argument("--top", type=int, default=40, help="failing register groups to print")
    ap.add_argument("--path", action="append", default=[], help="print the worst path into this register group")
    args = ap.parse_args(argv)
    edges, starts, checks = parse_sdf(args.sdf.read_text())
    arr, pred = arrivals(edges, starts)
    period = args.period_ns * 1000
    groups: dict = defaultdict(list)
    for node, su in checks.items():
        if node in arr:
            groups[group_name(node[0])].append((period - arr[node] - su, node))
    failing = sorted(((min(v)[0], k, v) for k, v in groups.items() if min(v)[0] < 0), key=lambda x: x[0])
    worst = failing[0][0] if failing else min(min(v)[0] for v in groups.values())
    print(f"{sum(len(v) for v in groups.values())} endpoints with a setup check; "
          f"{sum(1 for v in groups.values() for s, _ in v if s < 0)} fail {args.period_ns:g} ns in "
          f"{len(failing)} registers; worst slack {worst / 1000:.2f} ns "
          f"(Fmax {1e6 / (period - worst):.1f} MHz)")
    for slack, name, v in failing[:args.top]:
        node = min(v)[1]
        start = node
        while pred.get(start) is not None:
            start = pred[start]
        bad = sum(1 for s, _ in v if s < 0)
        print(f"{slack / 1000:7.2f} ns  {bad:4d}/{len(v):<4d} {name}  <- {group_name(start[0])}")
    for name in args.path:
        slack, node = min(groups[name])
        hops = []
        while node is not None:
            hops.append(node)
            node = pred.get(node)
        print(f"worst path into {name} (slack {slack / 1000:.2f} ns):")
        for node in reversed(hops):
            print(f"  {arr[node] / 1000:6.2f} ns  {node[0][:110]}/{node[1]}")


if __name__ == "__main__":
    sys.exit(main())
