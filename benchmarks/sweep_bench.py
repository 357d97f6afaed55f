"""Start-up time of the CLI and sweep rates; prints the table in docs/dse.md.

    python benchmarks/sweep_bench.py            # all rows
    python benchmarks/sweep_bench.py --quick    # start-up rows only

Each figure is measured in fresh processes (the CLI as a user runs it), wall time, median of
``--repeat`` runs for start-up, with the CPU seconds (user + system) of the process next to it: on a
loaded machine wall time mostly measures the wait for a core, CPU time much less so. Sweep rates: points computed per second of wall time, in a fresh
results directory, for the shared-shape example (500 points: one 4x4 array, DRAM bandwidth x clock x
four small GEMMs) with 1 and 2 local processes, on Dask local:2, and for a sweep whose every point is
a new array shape (2x2 ... 32x32, gemm:64,64,64). Numbers are printed, never asserted; on a shared
machine they move with the load (``uptime`` is printed with them).
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHGEN = [sys.executable, "-m", "archgen"]
_last_cpu = 0.0          # CPU seconds (user + system) of the last _wall's process tree


def _cpu_children() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _wall(argv, cwd=None) -> tuple[float, str]:
    global _last_cpu
    t, c = time.perf_counter(), _cpu_children()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    _last_cpu = _cpu_children() - c
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr}")
    return dt, proc.stdout


def startup(repeat: int) -> list[tuple[str, str]]:
    rows = []
    for label, argv in (("archgen --help", ["--help"]),
                        ("archgen sim gemm_os.yaml --workload gemm:1,1,1", ["sim", "gemm_os.yaml", "--workload",
                                                                             "gemm:1,1,1"])):
        times, cpus = [], []
        for _ in range(repeat):
            times.append(_wall(ARCHGEN + argv)[0])
            cpus.append(_last_cpu)
        rows.append((label, f"{statistics.median(times):.2f} s (median of {repeat}; CPU {statistics.median(cpus):.2f} s)"))
    return rows


def _sweep_rate(argv) -> str:
    with tempfile.TemporaryDirectory() as d:
        dt, out = _wall(ARCHGEN + ["sweep", *argv, "--out", str(Path(d) / "sw"), "--no-plots"])
    m = re.search(r"(\d+) point\(s\) computed in ([\d.]+) s", out)
    n, inner = int(m.group(1)), float(m.group(2))
    return (f"{n / inner:.1f} points/s ({n} points in {inner:.1f} s; {dt:.1f} s with start-up and outputs, "
            f"CPU {_last_cpu:.1f} s)")


def sweeps() -> list[tuple[str, str]]:
    shared = str(ROOT / "examples" / "shared_shape_sweep.yaml")
    shapes = ",".join(f"{n}x{n}" for n in (2, 4, 6, 8, 12, 16, 24, 32))
    rows = [("shared shape, 500 points, 1 process", _sweep_rate([shared])),
            ("shared shape, 500 points, --workers 2", _sweep_rate([shared, "--workers", "2"]))]
    try:
        import dask.distributed  # noqa: F401
        rows.append(("shared shape, 500 points, --dask local:2", _sweep_rate([shared, "--dask", "local:2"])))
    except ImportError:
        rows.append(("shared shape, 500 points, --dask local:2", "dask not installed"))
    rows.append(("a new array per point (2x2 ... 32x32), 1 process",
                 _sweep_rate(["gemm_os.yaml", "--workload", "gemm:64,64,64", "--vary", f"array.shape={shapes}"])))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="start-up rows only")
    args = ap.parse_args()
    os.chdir(tempfile.gettempdir())
    rows = startup(args.repeat) + ([] if args.quick else sweeps())
    print(f"load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    print("| measurement | result |\n|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
