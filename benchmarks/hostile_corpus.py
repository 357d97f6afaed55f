"""Hostile-input corpus: run the ``archgen`` CLI on malformed specs, options, files and stores, and
classify each outcome (clean field-named refusal with exit 2, traceback, wrongly accepted, hang).

    python benchmarks/hostile_corpus.py [--timeout 20] [--only SUBSTRING]

Each case runs in a fresh process in a scratch directory, so a case can neither see nor damage another's
files. A case passes when the CLI exits 2 (or 1 for a failed check) with a short message and no
traceback, writes nothing, and finishes within the timeout. Prints one line per failing case and a
summary table (cases, seconds).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cli"))
from hostile_cases import cases, more_cases  # noqa: E402


def run_case(name, argv, files, timeout):
    with tempfile.TemporaryDirectory(prefix="archgen-hostile-") as tmp:
        root = Path(tmp)
        for fname, content in files.items():
            p = root / fname
            p.parent.mkdir(parents=True, exist_ok=True)
            (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
        before = {p for p in root.rglob("*")}
        t0 = time.perf_counter()
        try:
            r = subprocess.run([sys.executable, "-m", "archgen", *argv], cwd=root, capture_output=True, timeout=timeout,
                               env={**os.environ, "COLUMNS": "160"})
        except subprocess.TimeoutExpired:
            return "hang", time.perf_counter() - t0, ""
        dt = time.perf_counter() - t0
        err = r.stderr.decode(errors="replace")
        created = {p for p in root.rglob("*")} - before
        if "Traceback" in err:
            return "traceback", dt, err.strip().splitlines()[-1][:200]
        if r.returncode == 0:
            return "accepted", dt, r.stdout.decode(errors="replace")[-200:]
        if created:
            return "wrote files", dt, ", ".join(sorted(str(p.relative_to(root)) for p in created))[:200]
        if len(err) > 2000:
            return "long message", dt, f"{len(err)} characters"
        return "clean", dt, err.strip().splitlines()[0][:200] if err.strip() else f"exit {r.returncode}, no message"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--only")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    counts: dict[str, int] = {}
    slow = 0
    for name, argv, files in cases() + more_cases():
        if a.only and a.only not in name:
            continue
        outcome, dt, detail = run_case(name, argv, files, a.timeout)
        counts[outcome] = counts.get(outcome, 0) + 1
        slow += dt > 2.0
        if outcome != "clean" or a.verbose or dt > 2.0:
            print(f"{outcome:12s} {dt:6.2f} s  {name}: {detail}")
    print("outcome      cases")
    for k, v in sorted(counts.items()):
        print(f"{k:12s} {v}")
    print(f"slower than 2 s: {slow}")
    return 0 if set(counts) <= {"clean"} else 1


if __name__ == "__main__":
    raise SystemExit(main())
