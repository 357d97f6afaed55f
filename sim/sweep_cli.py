"""``archgen sweep``: build the points (``--vary`` or a sweep file), run them with a progress bar,
print the Pareto front and write the outputs. Called by archgen/cli.py; raises SpecError for bad input."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from archgen.arch.errors import SpecError, problem

from .sweep import (DEFAULT_OBJECTIVES, OBJECTIVES, design_totals, expand_grid, pareto_front, run_sweep,
                    validate_points)
from .sweep_eval import SweepPoint

__all__ = ["sweep_points_from_args", "run_sweep_cli"]


def sweep_points_from_args(args) -> tuple[list[SweepPoint], tuple[str, ...]]:
    """The points and objectives a command line names: a sweep file, or a spec with ``--vary``."""
    from .sweep_file import is_sweep_file, read_sweep_file, sweep_points
    if is_sweep_file(args.spec):
        given = [f for f, v in (("--vary", args.vary), ("--workload", args.workload), ("--seq", args.seq),
                                ("--objectives", args.objectives)) if v]
        if given:
            raise SpecError([problem(f, "the sweep file names its axes, workloads and objectives; edit the file "
                                     "instead") for f in given])
        sf = read_sweep_file(args.spec)
        return sweep_points(sf, tuple(args.set)), sf.objectives
    if not args.workload:
        raise SpecError([problem("--workload", "a sweep over a spec needs --workload (or give a sweep file: "
                                 "archgen sweep SWEEP.yaml, see docs/dse.md)")])
    objectives = DEFAULT_OBJECTIVES
    if args.objectives:
        objectives = tuple(o.strip() for o in args.objectives.split(",") if o.strip())
        bad = [o for o in objectives if o not in OBJECTIVES]
        if bad or len(objectives) < 2 or len(set(objectives)) != len(objectives):
            raise SpecError([problem("--objectives", f"two or more distinct names out of {', '.join(OBJECTIVES)}",
                                     args.objectives)])
    grid = expand_grid(args.vary)
    return [SweepPoint(args.spec, tuple(args.set) + g, args.workload, args.seq) for g in grid], objectives


class _Progress:
    """A rich progress bar on stderr (points done, rate, ETA); silent when stderr is not a terminal."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar, self.task = enabled, None, None

    def start(self, total: int, done: int):
        if not self.enabled or total == done:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        self.bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("points"),
                            TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=True)
        self.bar.start()
        self.task = self.bar.add_task("sweep", total=total, completed=done, rate="")
        self.t0, self.new = time.monotonic(), 0

    def advance(self, _rec):
        if self.bar is None:
            return
        self.new += 1
        rate = self.new / max(time.monotonic() - self.t0, 1e-9)
        self.bar.update(self.task, advance=1, rate=f"{rate:.1f} points/s")

    def stop(self):
        if self.bar is not None:
            self.bar.stop()


def run_sweep_cli(args, con) -> int:
    points, objectives = sweep_points_from_args(args)
    validate_points(points)                # every design and workload checked before any is simulated
    out = Path(args.out)
    con.print(f"sweep: {len(points)} design point(s); results in {out}", markup=False)
    notes: list[str] = []
    counts = {}
    progress = _Progress(sys.stderr.isatty())

    def on_start(total, done):
        counts.update(total=total, stored=done)
        progress.start(total, done)

    t0 = time.monotonic()
    try:
        records = run_sweep(points, out, workers=args.workers, dask=args.dask, repair=args.repair, notes=notes,
                            on_start=on_start, on_result=progress.advance)
    finally:
        progress.stop()
    elapsed = time.monotonic() - t0
    for note in notes:
        con.print(f"  note: {note}", markup=False)
    new = counts["total"] - counts["stored"]
    rate = f" ({new / elapsed:.1f} points/s)" if new and elapsed > 0 else ""
    con.print(f"  {new} point(s) computed in {elapsed:.1f} s{rate}, {counts['stored']} taken from the store",
              markup=False)
    designs = design_totals(records)
    front = pareto_front(designs, objectives)
    from .sweep_report import front_table, write_sweep_outputs
    con.print(front_table(front, designs, objectives))
    written = write_sweep_outputs(out, records, designs, front, objectives, plots=not args.no_plots)
    con.print(f"  wrote {', '.join(sorted(p.name for p in written.values()))} in {out}", markup=False)
    return 0
