"""Memory banking and address generators for the lanes fed from memory (DESIGN.md section 3).

For each operand and tensor dimension d, the indices the lanes access in the same cycle fix the
banking: g_d = gcd of their differences, banks_d = (max - min) / g_d + 1, bank = (idx / g_d) mod banks_d.
The in-bank address is affine in the temporal variables only, so an address generator is a set of
nested counters with one stride per temporal loop and no division at run time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from archgen.arch.names import time_var

from .interconnect import FUGraph
from .ir import Role

__all__ = ["Banking", "derive_banking"]


@dataclass(frozen=True)
class Banking:
    operand: str
    lanes: int
    gcd: tuple[int, ...]              # per tensor dimension
    banks: tuple[int, ...]            # per tensor dimension
    strides: tuple[tuple[str, tuple[int, ...]], ...]   # temporal loop -> index step per tensor dimension

    @property
    def total_banks(self) -> int:
        return math.prod(self.banks)


def derive_banking(fg: FUGraph) -> list[Banking]:
    design, df = fg.design, fg.dataflow
    op = design.operation
    out = []
    for plan in fg.plans:
        x = op.operand(plan.name)
        amat = x.access_matrix(op.dims)
        if plan.role in (Role.STATIONARY, Role.ACCUMULATE):
            lanes_fus = [l.fus[0] for l in plan.lanes]         # one row: FUs (0.., lane)
        elif plan.role is Role.STREAM_OUT:
            lanes_fus = [l.fus[-1] for l in plan.lanes]
        else:
            lanes_fus = [l.fus[0] for l in plan.lanes]
        gcds, banks = [], []
        for row in amat:
            vals = []
            for s in lanes_fus:
                v = 0
                for a, d in df.spatial_dims.items():
                    v += int(row[op.dims.index(d)]) * s[a]
                vals.append(v)
            lo, hi = min(vals), max(vals)
            g = 0
            for v in vals:
                g = math.gcd(g, v - lo)
            g = g or 1
            gcds.append(g)
            banks.append((hi - lo) // g + 1)
        strides = []
        for d in df.order:
            col = op.dims.index(d)
            scale = design.shape[df.axis_of[d]] if d in df.axis_of else 1
            step = tuple(int(amat[r, col]) * scale for r in range(amat.shape[0]))
            if any(step):
                strides.append((time_var(d), step))
        out.append(Banking(plan.name, plan.n_lanes, tuple(gcds), tuple(banks), tuple(strides)))
    return out
