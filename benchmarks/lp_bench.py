"""LP delay-matching cost and benefit vs array size, on derive_interconnect's real FU graphs.

    python benchmarks/lp_bench.py                 # 4x4 .. 32x32, ASIC table, 1.0 ns and 0.8 ns clocks
    python benchmarks/lp_bench.py --sizes 4 8     # smaller
    python benchmarks/lp_bench.py measure-ecp5    # re-measure the ECP5 delay table (nextpnr, ~15 s/design)

Times are wall-clock on this machine: `lower` = primitive lowering, `lp` = building and solving with CBC
(PuLP writes an MPS file and runs the bundled cbc), `dual` = networkx min_cost_flow of the dual.
"""
from __future__ import annotations

import argparse
import sys
import time


def bench(sizes, specs, periods, target):
    from archgen.arch.spec import load_spec
    from archgen.dataflow.delay_lp import insert_pipeline_registers, min_cost_flow_dual
    from archgen.dataflow.delays import DelayTable
    from archgen.dataflow.interconnect import derive_interconnect
    from archgen.dataflow.primitives import lower_to_primitives

    table = DelayTable.load(target)
    print(f"target={target}  ({table.basis})")
    print("| spec | array | clock (ns) | nodes | edges | LP vars | LP rows | timing rows | lower (s) | "
          "LP build+solve (s) | CBC solve (s) | dual MCF (s) | registers (bits) | unshared (bits) | "
          "naive (bits) | latency (cycles) | dual == primal |")
    print("|" + "---|" * 17)
    for spec in specs:
        for n in sizes:
            design = load_spec(spec, [f"array.shape=[{n},{n}]"])
            fg = derive_interconnect(design)
            t0 = time.perf_counter()
            prim = lower_to_primitives(fg, table)
            t_lower = time.perf_counter() - t0
            for period in periods:
                t0 = time.perf_counter()
                r = insert_pipeline_registers(prim, period)
                t_lp = time.perf_counter() - t0
                t0 = time.perf_counter()
                primal, dual = min_cost_flow_dual(prim, period)
                t_dual = time.perf_counter() - t0    # includes a second CBC solve of the primal
                print(f"| {spec} | {n}x{n} | {period} | {prim.graph.number_of_nodes()} | "
                      f"{prim.graph.number_of_edges()} | {r.lp_variables} | {r.lp_constraints} | "
                      f"{r.timing_constraints} | {t_lower:.2f} | {t_lp:.2f} | {r.solve_time_s:.2f} | {t_dual:.2f} | "
                      f"{r.register_bits} | {r.unshared_register_bits} | {r.naive_register_bits} | "
                      f"{r.latency_cycles} | {primal == dual} |", flush=True)


# ---- ECP5 primitive delay measurement (the basis of dataflow/data/delays_ecp5.yaml) ----

def wrap(body: str, in_w: int, out_w: int, n_in: int = 2) -> str:
    ins = "".join(f"  input [{in_w-1}:0] i{k},\n" for k in range(n_in))
    regs = "".join(f"  reg [{in_w-1}:0] r{k}; always @(posedge clk) r{k} <= i{k};\n" for k in range(n_in))
    return (f"module top(\n  input clk,\n{ins}  output reg [{out_w-1}:0] q);\n{regs}"
            f"  wire [{out_w-1}:0] y;\n  {body}\n  always @(posedge clk) q <= y;\nendmodule\n")


def fanout(n: int, w: int = 4) -> str:
    """One register drives n registered XOR sinks; the sinks are folded by a registered 4:1 XOR tree.

    The sinks' own inputs come from a shift register and the fold is pipelined, so the only long
    net is the fan-out under test; few I/O pins keep placement from spreading the sinks across the die.
    """
    lines = [f"module top(input clk, input [{w-1}:0] a, input [{w-1}:0] b, output reg [{w-1}:0] q);",
             f"  reg [{w-1}:0] ra; always @(posedge clk) ra <= a;",
             f"  reg [{w-1}:0] sh [0:{n-1}]; reg [{w-1}:0] s0 [0:{n-1}];",
             "  integer k;",
             "  always @(posedge clk) begin sh[0] <= b;",
             f"    for (k = 1; k < {n}; k = k + 1) sh[k] <= sh[k-1];",
             f"    for (k = 0; k < {n}; k = k + 1) s0[k] <= ra ^ sh[k]; end"]
    level, count = 0, n
    while count > 1:
        nxt = (count + 3) // 4
        lines.append(f"  reg [{w-1}:0] s{level+1} [0:{nxt-1}];")
        lines.append("  always @(posedge clk) begin")
        for j in range(nxt):
            terms = " ^ ".join(f"s{level}[{i}]" for i in range(4 * j, min(4 * j + 4, count)))
            lines.append(f"    s{level+1}[{j}] <= {terms};")
        lines.append("  end")
        level, count = level + 1, nxt
    lines.append(f"  always @(posedge clk) q <= s{level}[0];")
    lines.append("endmodule\n")
    return "\n".join(lines)


def memory_read(depth: int = 1024, w: int = 8) -> str:
    # synchronous EBR read; the EBR output feeds a LUT then a register, like a memory port feeding an FU
    return (f"module top(input clk, input we, input [{w-1}:0] d, input [9:0] wa, input [9:0] ra, "
            f"input [{w-1}:0] x, output reg [{w-1}:0] q);\n"
            f"  reg [{w-1}:0] mem [0:{depth-1}]; reg [{w-1}:0] rd; reg [9:0] rra; reg [{w-1}:0] rx;\n"
            f"  always @(posedge clk) begin if (we) mem[wa] <= d; rra <= ra; rx <= x; end\n"
            f"  always @(posedge clk) rd <= mem[rra];\n"
            f"  always @(posedge clk) q <= rd ^ rx;\nendmodule\n")


DESIGNS = {
    "reg_to_reg_w8": wrap("assign y = r0;", 8, 8, 1),
    **{f"adder_w{w}": wrap("assign y = r0 + r1;", w, w) for w in (4, 8, 16, 32)},
    **{f"multiplier_w{w}": wrap("assign y = r0 * r1;", w, 2 * w) for w in (4, 8, 16)},
    "mux2_w16": wrap("assign y = r2[0] ? r0 : r1;", 16, 16, 3),
    "xor_w8": wrap("assign y = r0 ^ r1;", 8, 8),
    **{f"fanout_{n}": fanout(n) for n in (1, 4, 16, 64, 256)},
    "memory_read_w8": memory_read(),
}


def measure_ecp5(names: list[str]) -> None:
    """Each design: in-registers -> one primitive -> out-register; nextpnr post-route Fmax gives the period;
    subtracting the bare reg -> reg period leaves the primitive's own delay (routing included)."""
    from archgen.rtlgen.synth import nextpnr_ecp5

    for name in names or DESIGNS:
        rep = nextpnr_ecp5(DESIGNS[name], "top", clock_mhz=100.0, seed=1)
        mhz = rep["min_fmax_mhz"]
        print(f"{name:16s} fmax={mhz:8.2f} MHz period={1000.0/mhz:6.3f} ns luts={rep['luts']} "
              f"ffs={rep['ffs']} dsps={rep['dsps']}", flush=True)



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="lp", choices=["lp", "measure-ecp5"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--specs", nargs="+", default=["gemm_os_bcast", "gemm_os", "gemm_ws"])
    ap.add_argument("--periods", type=float, nargs="+", default=[1.0, 0.8])
    ap.add_argument("--target", default="asic")
    ap.add_argument("--designs", nargs="*", default=[], help="measure-ecp5: only these test designs")
    args = ap.parse_args(argv)
    if args.mode == "measure-ecp5":
        measure_ecp5(args.designs)
    else:
        bench(args.sizes, args.specs, args.periods, args.target)


if __name__ == "__main__":
    main()
