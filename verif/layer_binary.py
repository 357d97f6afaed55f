"""A whole layer as a stand-alone Verilator binary: the speed path for long layers.

The layer top (rtlgen/layer_top.py) needs nothing from a testbench but a clock, ``go`` and the read-back
of its DRAM, so a 20-line Verilog wrapper does it and Verilator compiles both into one executable
(``--binary --timing``): no VPI, no ``--public-flat-rw``, no Python while the layer runs. Builds are
cached like the cocotb ones (verif/runner.py: same cache root, environment, waivers; keyed by a hash
of the Verilog, the arguments and the Verilator version).
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import time
from pathlib import Path

from archgen.arch.errors import ArchgenError

from .runner import BUILD_ARGS, build_env, cache_root, opt_key, staged_build, verilator_version

__all__ = ["run_layer_binary", "strip_zero_memory_init"]

_TB = """`timescale 1ns/1ps
module archgen_layer_tb;
  reg clk = 0;
  reg rst = 1;
  reg go = 0;
  reg [{ab}:0] rb_addr = 0;
  wire finished;
  wire [39:0] cycles;
  wire [{wb}:0] rb_data;
{moved_decl}
  reg [63:0] edges = 0;
  integer i;
  {top} dut(.clk(clk), .rst(rst), .go(go), .finished(finished), .cycles(cycles), .rb_addr(rb_addr), .rb_data(rb_data){moved_conn});
  always #5 clk = ~clk;
  always @(posedge clk) begin
    edges <= edges + 1;
    if (edges > {limit}) begin $display("TIMEOUT %0d", cycles); $finish; end
  end
  initial begin
    #25 rst = 0;
    go = 1;
    wait (finished == 1'b1);
    $display("CYCLES %0d", cycles);
{moved_print}
    for (i = {lo}; i < {hi}; i = i + 1) begin
      rb_addr = i;
      #1 $display("W %h", rb_data);
    end
    $finish;
  end
endmodule
"""

_ZERO_INIT = re.compile(r"  initial begin\n(?:    buf_\w+\[\d+\] = \d+'h0+;\n)+  end\n")


EXE = "Varchgen_layer_tb"


def strip_zero_memory_init(text: str) -> str:
    """Drop the all-zero initial blocks Amaranth writes for the operand buffers (``buf_*``): every buffer
    position is written by the DMA or the array before a lane that is not masked reads it, so their
    initial content never reaches a result; tens of thousands of lines less to compile."""
    return _ZERO_INIT.sub("", text)


def run_layer_binary(verilog: str, top: str, *, dram_words: int, word_bits: int, read: tuple[int, int],
                     max_cycles: int, moved: tuple[str, ...] = (), cache_dir: Path | None = None,
                     timeout_s: float = 3600) -> dict:
    """Build (cached) and run; returns rtl_cycles, words (the DRAM read back over ``read``), wall_s and
    ``moved`` (the top's ``moved_*`` byte counters named in ``moved``)."""
    ab = max(1, (dram_words).bit_length()) - 1
    tb = _TB.format(ab=ab, wb=word_bits - 1, top=top, limit=max_cycles, lo=read[0], hi=read[1],
                    moved_decl="\n".join(f"  wire [39:0] {n};" for n in moved),
                    moved_conn="".join(f", .{n}({n})" for n in moved),
                    moved_print="\n".join(f'    $display("MOVED {n} %0d", {n});' for n in moved))
    # the wheel's verilated.mk leaves the coroutine flag empty (like the PCH flag, docs/TOOLCHAIN): give it
    args = ("--binary", "--timing", "-CFLAGS", "-fcoroutines", "-O3", "--x-assign", "fast", "--x-initial", "fast", *BUILD_ARGS,
            "--top-module", "archgen_layer_tb")
    env = {**__import__("os").environ, **build_env()}
    key = hashlib.sha256(b"\0".join([verilog.encode(), tb.encode(), " ".join(args).encode(),
                                     verilator_version().encode(), opt_key(env).encode()])).hexdigest()[:24]

    def build(bdir: Path, failed_log: Path) -> None:
        (bdir / "top.v").write_text(verilog)
        (bdir / "tb.v").write_text(tb)
        cmd = ["verilator", *args, "--Mdir", str(bdir), "-o", EXE, "tb.v", "top.v"]
        res = subprocess.run(cmd, cwd=bdir, env=env, capture_output=True, text=True, timeout=timeout_s)
        (bdir / "build.log").write_text(res.stdout + res.stderr)
        if res.returncode != 0 or not (bdir / EXE).is_file():
            raise ArchgenError(f"Verilator binary build of {top!r} failed (log kept as {failed_log}):\n"
                               f"{(res.stdout + res.stderr)[-3000:]}")

    bdir = staged_build(cache_root(cache_dir), f"{top}-bin-{key}", build, {"top": top, "args": list(args)})
    exe = bdir / EXE
    t0 = time.perf_counter()
    res = subprocess.run([str(exe)], cwd=bdir, env=env, capture_output=True, text=True, timeout=timeout_s)
    wall = time.perf_counter() - t0
    out = {"wall_s": wall, "words": []}
    for line in res.stdout.splitlines():
        if line.startswith("CYCLES "):
            out["rtl_cycles"] = int(line.split()[1])
        elif line.startswith("W "):
            out["words"].append(int(line.split()[1], 16))
        elif line.startswith("MOVED "):
            out.setdefault("moved", {})[line.split()[1]] = int(line.split()[2])
        elif line.startswith("TIMEOUT"):
            out["error"] = f"finished never rose within {max_cycles} cycles"
    if "rtl_cycles" not in out and "error" not in out:
        out["error"] = f"the binary printed no cycle count:\n{(res.stdout + res.stderr)[-2000:]}"
    return out
