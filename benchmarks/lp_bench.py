"""LP delay-matching cost and benefit vs array size, on derive_interconnect's real FU graphs.

    python benchmarks/lp_bench.py                 # 4x4 .. 32x32, ASIC table, 1.0 ns and 0.8 ns clocks
    python benchmarks/lp_bench.py --sizes 4 8     # smaller
    python benchmarks/lp_bench.py measure-ecp5    # re-measure the ECP5 delay table (nextpnr, ~15 s/design)
    python benchmarks/lp_bench.py fmax --sizes 4 --target ecp5 --periods 1000 8 \\
        --specs gemm_os_bcast "gemm_ws@dataflows.ws.control=[0,1]"   # before/after: Yosys depth, ECP5 Fmax

Times are wall-clock on this machine: `compile` = compile_array (analysis, lowering, building and solving
the LP with CBC: PuLP writes an MPS file and runs the bundled cbc), `dual` = networkx min_cost_flow of the
dual.
"""
from __future__ import annotations

import argparse
import sys
import time

import networkx as nx


def _compiled(spec: str, n: int, period: float, target: str):
    """The design as archgen builds it, pipelined for ``period`` (the spec's clock set to match)."""
    from archgen.arch.spec import load_spec
    from archgen.dataflow.compile import compile_array
    name, _, extra = spec.partition("@")     # "gemm_ws@dataflows.ws.control=[0,1]": one override
    design = load_spec(name, [f"array.shape=[{n},{n}]", f"clock_mhz={1e3 / period!r}"] + ([extra] if extra else []))
    return compile_array(design, target=target)


def bench(sizes, specs, periods, target):
    from archgen.dataflow.delay_lp import min_cost_flow_dual
    from archgen.dataflow.delays import DelayTable

    table = DelayTable.load(target)
    print(f"target={target}  ({table.basis})")
    print("| spec | array | clock (ns) | nodes | edges | LP vars | LP rows | timing rows | compile (s) | "
          "CBC solve (s) | dual MCF (s) | registers (bits) | unshared (bits) | "
          "naive (bits) | latency (cycles) | dual == primal |")
    print("|" + "---|" * 16)
    for spec in specs:
        for n in sizes:
            for period in periods:
                t0 = time.perf_counter()
                compiled = _compiled(spec, n, period, target)
                t_compile = time.perf_counter() - t0
                prim, r = compiled.prim, compiled.retimed
                t0 = time.perf_counter()
                primal, dual = min_cost_flow_dual(prim, period)
                t_dual = time.perf_counter() - t0    # includes a second CBC solve of the primal
                print(f"| {spec} | {n}x{n} | {period} | {prim.graph.number_of_nodes()} | "
                      f"{prim.graph.number_of_edges()} | {r.lp_variables} | {r.lp_constraints} | "
                      f"{r.timing_constraints} | {t_compile:.2f} | {r.solve_time_s:.2f} | {t_dual:.2f} | "
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


def measure_ecp5(names: list[str], seeds=(1,)) -> None:
    """Each design: in-registers -> one primitive -> out-register; nextpnr post-route Fmax gives the period;
    subtracting the bare reg -> reg period leaves the primitive's own delay (routing included)."""
    from archgen.rtlgen.synth import nextpnr_ecp5

    for name in names or DESIGNS:
        for seed in seeds:
            rep = nextpnr_ecp5(DESIGNS[name], "top", clock_mhz=100.0, seed=seed)
            mhz = rep["min_fmax_mhz"]
            print(f"{name:16s} seed={seed} fmax={mhz:8.2f} MHz period={1000.0/mhz:6.3f} ns luts={rep['luts']} "
                  f"ffs={rep['ffs']} dsps={rep['dsps']}", flush=True)


# ---- before/after: structural Verilog of a retimed primitive graph, Yosys depth and nextpnr Fmax ----

def emit_verilog(r) -> str:
    """A benchmark-only netlist of a RetimedGraph: memory ports become input registers, drains output
    registers (muxed by `sel` when several FUs share one), every edge gets the LP's register count
    (one chain per net when fan-out is shared). Not the product RTL generator (rtlgen/array.py)."""
    g = r.prim.graph
    name = {v: f"n{i}" for i, v in enumerate(sorted(g.nodes, key=repr))}
    ports, body = ["input clk", "input load", "input clr", "input [7:0] sel"], []
    chains = {}

    def chain(key, src, width, depth):
        regs = [f"{key}_{k}" for k in range(depth)]
        for k, reg in enumerate(regs):
            body.append(f"  reg [{width-1}:0] {reg}; always @(posedge clk) {reg} <= {regs[k-1] if k else src};")
        return regs

    def expr(u, v):
        e, s = r.prim.wire(u, v), r.stages[(u, v)]
        if s == 0:
            return name[u]
        if u in r.chain_depth:
            if u not in chains:
                w = max(x.width for _, x in r.prim.out_wires(u))
                chains[u] = chain(f"{name[u]}_c", name[u], w, r.chain_depth[u])
            return chains[u][s - 1]
        return chain(f"{name[u]}_{name[v]}", name[u], e.width, s)[-1]

    for v in nx.topological_sort(g):
        w, sig = r.prim.primitive(v).width, name[v]
        ins = sorted(r.prim.in_wires(v), key=lambda ue: repr(ue[0]))
        live = [expr(u, v) for u, e in ins if not e.hold]
        held = [expr(u, v) for u, e in ins if e.hold]
        kind = v.kind
        if kind == "mem_port":
            ports.append(f"input [{w-1}:0] i_{sig}")
            body.append(f"  reg [{w-1}:0] {sig}; always @(posedge clk) {sig} <= i_{sig};")
        elif kind == "port":
            body.append(f"  wire [{w-1}:0] {sig} = {live[0]};")
        elif kind == "stationary_reg":
            body.append(f"  reg [{w-1}:0] {sig}; always @(posedge clk) if (load) {sig} <= {live[0]};")
        elif kind == "mul":
            body.append(f"  wire [{w-1}:0] {sig} = {' * '.join(live + held)};")
        elif kind in ("add", "tree_add"):
            body.append(f"  wire [{w-1}:0] {sig} = {' + '.join(live)};")
        elif kind == "acc":
            init = held[0] if held else f"{w}'d0"
            body.append(f"  reg [{w-1}:0] {sig}; always @(posedge clk) {sig} <= clr ? {init} : {sig} + {' + '.join(live)};")
        elif kind == "drain":
            srcs = live + held
            ports.append(f"output reg [{w-1}:0] o_{sig}")
            if len(srcs) == 1:
                body.append(f"  always @(posedge clk) o_{sig} <= {srcs[0]};")
            else:
                cases = " ".join(f"{k}: o_{sig} <= {x};" for k, x in enumerate(srcs))
                body.append(f"  always @(posedge clk) case (sel) {cases} default: o_{sig} <= {srcs[0]}; endcase")
        else:
            raise ValueError(f"no netlist template for primitive kind {kind!r}")
    return "module top(\n  " + ",\n  ".join(ports) + ");\n" + "\n".join(body) + "\nendmodule\n"


def fmax_before_after(specs, n, target, periods):
    from archgen.rtlgen.synth import nextpnr_ecp5, yosys_stats

    print("| spec | array | LP clock target (ns) | register bits | latency (cycles) | Yosys depth (gates) | "
          "ECP5 LUTs | FFs | DSPs | nextpnr Fmax (MHz) | met |")
    print("|" + "---|" * 11)
    for spec in specs:
        for period in periods:
            r = _compiled(spec, n, period, target).retimed
            verilog = emit_verilog(r)
            depth = yosys_stats(verilog, "top")["logic_depth"]
            pnr = nextpnr_ecp5(verilog, "top", clock_mhz=1000.0 / period)
            print(f"| {spec} | {n}x{n} | {period:g} | {r.register_bits} | {r.latency_cycles} | {depth} | "
                  f"{pnr['luts']} | {pnr['ffs']} | {pnr['dsps']} | {pnr['min_fmax_mhz']:.1f} | {pnr['timing_met']} |", flush=True)



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="lp", choices=["lp", "measure-ecp5", "fmax"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--specs", nargs="+", default=["gemm_os_bcast", "gemm_os", "gemm_ws",
                                                         "gemm_ws@dataflows.ws.control=[0,1]"])
    ap.add_argument("--periods", type=float, nargs="+", default=[1.0, 0.8])
    ap.add_argument("--target", default="asic")
    ap.add_argument("--designs", nargs="*", default=[], help="measure-ecp5: only these test designs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1], help="measure-ecp5: placement seeds")
    args = ap.parse_args(argv)
    if args.mode == "fmax":
        fmax_before_after(args.specs, args.sizes[0], args.target, args.periods)
    elif args.mode == "measure-ecp5":
        measure_ecp5(args.designs, args.seeds)
    else:
        bench(args.sizes, args.specs, args.periods, args.target)


if __name__ == "__main__":
    main()
