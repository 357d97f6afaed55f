"""A pin-light wrapper for place-and-route timing runs.

An 8x8 array has hundreds of stream pins, more than an ECP5 package offers, so nextpnr cannot place
it as a top level. For Fmax measurements the design is wrapped: every input comes from one long shift
register fed by a single pin, every output is captured in a register bank that shifts out through a
single pin. Each wrapper path is one register to one LUT, so the design's own paths stay the critical
ones; the wrapper is for timing reports only, never for use.
"""
from __future__ import annotations

__all__ = ["io_wrapper"]


def io_wrapper(top: str, ports: list[dict], wrapper: str = "fmax_wrap") -> str:
    """Verilog for ``wrapper`` around ``top``; ``ports`` as in manifest.json (the top's Verilog ports)."""
    ins, outs = [], []
    for p in ports:
        if p["name"] not in ("clk", "rst"):
            (ins if p["dir"] == "in" else outs).append((p["name"], p["bits"]))
    n_in = sum(w for _, w in ins)
    n_out = sum(w for _, w in outs)
    lines = [f"module {wrapper}(input clk, input rst, input sin, input load, output sout);",
             f"  reg [{n_in - 1}:0] ish;",
             f"  always @(posedge clk) ish <= {{ish[{n_in - 2}:0], sin}};" if n_in > 1 else "  always @(posedge clk) ish <= sin;",
             f"  wire [{n_out - 1}:0] o;",
             f"  reg [{n_out - 1}:0] osh;",
             f"  always @(posedge clk) osh <= load ? o : {{1'b0, osh[{n_out - 1}:1]}};" if n_out > 1 else "  always @(posedge clk) osh <= o;",
             "  assign sout = osh[0];"]
    conns = [".clk(clk)", ".rst(rst)"]
    lo = 0
    for n, w in ins:
        conns.append(f".{n}(ish[{lo + w - 1}:{lo}])")
        lo += w
    lo = 0
    for n, w in outs:
        conns.append(f".{n}(o[{lo + w - 1}:{lo}])")
        lo += w
    lines.append(f"  {top} dut(" + ", ".join(conns) + ");")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"
