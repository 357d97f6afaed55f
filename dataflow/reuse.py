"""Integer reuse analysis: which (dt, ds) moves leave an operand's element unchanged.

FU s2 at time t2 reuses the element FU s1 used at t1 exactly when ``A_X M [dt; ds] = 0``. The
solutions are enumerated over the small box {-1, 0, 1} per temporal and spatial variable (adjacent
loops, neighbouring FUs) and classified as DESIGN.md section 2 says: stationary (ds = 0), direct
(same-cycle fan-out or spatial reduction) or delay (register chain / FIFO). The physical delay of a
move is ``sum_l dt_l * stride_l + c.ds`` with stride_l the product of the trip counts of the loops
inside l, so it depends on the problem size; it is reported for the reference bounds.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from archgen.arch.mapping_check import integer_null_space, time_var_ranges
from archgen.arch.names import time_var
from archgen.arch.spec import Dataflow, Design

__all__ = ["ReuseVector", "reuse_vectors", "unit_reuse", "delay_reuse", "temporal_strides", "SttHop", "stt_hops"]


@dataclass(frozen=True)
class ReuseVector:
    """One reuse move of an operand: temporal step ``dt`` (per loop in ``order``), spatial step ``ds``."""

    operand: str
    dt: tuple[int, ...]
    ds: tuple[int, ...]
    delay: int                     # physical cycles between the two uses (>= 0 after orientation)
    kind: str                      # "stationary" | "direct" | "delay"

    def held_over(self, order) -> tuple[str, ...]:
        """The loops of a temporal-only move (ds = 0): the element stays while they advance."""
        return () if any(self.ds) else tuple(d for v, d in zip(self.dt, order) if v)

    @property
    def spatial_axis(self) -> int | None:
        """The array axis of a spatial-only unit move (dt = 0), else None."""
        if any(self.dt) or sum(map(abs, self.ds)) != 1:
            return None
        return next(a for a, v in enumerate(self.ds) if v)

    def describe(self, order) -> str:
        moves = [f"{'+' if v > 0 else '-'}t_{d}" for v, d in zip(self.dt, order) if v]
        moves += [f"{'+' if v > 0 else '-'}s{a}" for a, v in enumerate(self.ds) if v]
        return " ".join(moves)


def temporal_strides(df: Dataflow, shape, bounds: dict[str, int]) -> dict[str, int]:
    """Cycles between consecutive values of each temporal variable in the linearised loop order."""
    trips = time_var_ranges(df.ts_map, tuple(shape), bounds)
    strides, acc = {}, 1
    for d in reversed(df.order):
        strides[d] = acc
        acc *= trips[time_var(d)]
    return strides


def reuse_vectors(design: Design, df: Dataflow, operand: str, bounds: dict[str, int] | None = None) -> list[ReuseVector]:
    """Every reuse move in the box {-1, 0, 1}^(loops + axes) at ``bounds`` (default: the reference bounds);
    moves along a loop that runs once at those bounds are left out."""
    n = len(design.operation.dims) + len(design.shape)
    box = (v for v in itertools.product((-1, 0, 1), repeat=n) if any(v))
    return _solutions(design, df, operand, box, bounds or design.reference_bounds, skip_single_trips=True)


def unit_reuse(design: Design, df: Dataflow, operand: str) -> list[ReuseVector]:
    """The unit moves (one loop step, or one step along one array axis) that keep ``operand``'s element:
    the zero columns of A_X M. Independent of the problem size (no trip count filters them out), so
    the interconnect derived from them holds for every problem; delays are at the reference bounds."""
    n = len(design.operation.dims) + len(design.shape)
    units = (tuple(int(i == j) for i in range(n)) for j in range(n))
    return _solutions(design, df, operand, units, design.reference_bounds, skip_single_trips=False)


def delay_reuse(design: Design, df: Dataflow, operand: str, loop: str) -> list[ReuseVector]:
    """The delay moves of ``operand`` that step one array axis and ``loop`` (one step) together: the
    solutions of ``A_X M [dt; ds] = 0`` with dt = +-1 on ``loop`` only and ds a unit step, oriented so that
    their physical delay (``dt * stride + c.ds`` cycles, the FIFO depth of the connection) is >= 0."""
    n_t, n_s = len(design.operation.dims), len(design.shape)
    k = list(df.order).index(loop)
    vecs = []
    for a in range(n_s):
        for dt in (1, -1):
            for ds in (1, -1):
                v = [0] * (n_t + n_s)
                v[k], v[n_t + a] = dt, ds
                vecs.append(tuple(v))
    return [r for r in _solutions(design, df, operand, vecs, design.reference_bounds, skip_single_trips=False)
            if r.kind != "stationary"]


def _solutions(design: Design, df: Dataflow, operand: str, vectors, bounds: dict[str, int],
               skip_single_trips: bool) -> list[ReuseVector]:
    op = design.operation
    x = op.operand(operand)
    access = x.access_matrix(op.dims)                      # tensor dims x loops
    mmat = df.ts_map.matrix                                # loops x (t vars in op.dims order, then s vars)
    n_t, n_s = len(op.dims), len(design.shape)
    tpos = [op.dims.index(d) for d in df.order]            # column of each ordered loop's t var
    strides = temporal_strides(df, design.shape, bounds)
    trips = time_var_ranges(df.ts_map, tuple(design.shape), bounds)
    once = [skip_single_trips and trips[time_var(d)] == 1 for d in df.order]
    am = access @ mmat
    found: dict[tuple, ReuseVector] = {}
    for vec in vectors:
        dt_ordered = tuple(vec[:n_t])                      # indexed by position in df.order
        ds = tuple(vec[n_t:])
        full = np.zeros(n_t + n_s, dtype=np.int64)
        for k, pos in enumerate(tpos):
            full[pos] = dt_ordered[k]
        full[n_t:] = ds
        if np.any(am @ full):
            continue
        # a spatial step is only meaningful inside the array, a temporal one along a loop that repeats
        if any(v and design.shape[a] == 1 for a, v in enumerate(ds)):
            continue
        if any(v and o for v, o in zip(dt_ordered, once)):
            continue
        delay = sum(v * strides[d] for v, d in zip(dt_ordered, df.order)) + sum(c * v for c, v in zip(df.control, ds))
        if delay < 0 or (delay == 0 and next(v for v in vec if v) < 0):
            dt_ordered, ds, delay = tuple(-v for v in dt_ordered), tuple(-v for v in ds), -delay
        if not any(ds):
            kind = "stationary"
        elif delay == 0:
            kind = "direct"
        else:
            kind = "delay"
        key = (dt_ordered, ds)
        found.setdefault(key, ReuseVector(operand, dt_ordered, ds, int(delay), kind))
    # keep the elementary moves: a vector that is the sum of two found ones adds no new connection
    return sorted(found.values(), key=lambda r: (r.kind != "stationary", r.delay, sum(map(abs, r.dt + r.ds)), r.ds, r.dt))


@dataclass(frozen=True)
class SttHop:
    """How one operand travels under a skewed I->ST map ``[s; t] = T x`` (dataflow/stt_array.py).

    The operand's elements are reused along the line of iterations ``x + m dx`` (``A_X dx = 0``); the map
    turns one step along it into ``ds`` FUs across the array and ``dt`` cycles, oriented so that dt >= 0
    (for dt = 0, so that the first nonzero ds entry is positive). An input element therefore rides a chain
    of FUs s, s + ds, ... through dt registers per hop (dt = 0: a broadcast wire); the output's partial
    sum rides the same kind of chain, each FU adding its product onto the sum from its predecessor.
    """

    name: str
    dx: tuple[int, ...]
    ds: tuple[int, ...]
    dt: int
    is_output: bool = False

    @property
    def stationary(self) -> bool:
        """The element stays on one FU (ds = 0): a ring of dt registers there, loaded through its own lane."""
        return not any(self.ds)

    def describe(self, dims) -> str:
        step = " ".join(f"{'+' if v > 0 else '-'}{'' if abs(v) == 1 else abs(v)}{d}" for v, d in zip(self.dx, dims) if v)
        if self.stationary:
            what = "accumulated in a ring" if self.is_output else "held in a ring"
            return f"{self.name}: reused along {step}: stationary, {what} of {self.dt} register(s) at each FU"
        move = ", ".join(f"{v:+d}" for v in self.ds)
        regs = "a broadcast wire (0 registers)" if self.dt == 0 else f"{self.dt} register(s) per hop"
        what = "partial-sum chain" if self.is_output else "chain"
        return f"{self.name}: reused along {step}: {what} moving ({move}) FUs in {self.dt} cycle(s), {regs}"


def stt_hops(design: Design, df: Dataflow) -> tuple[SttHop, ...]:
    """The hop of every operand of a skewed stt dataflow (inputs in operation order, then the output).

    ``A_X M [dt; ds] = 0`` in I->ST form: the moves that keep X's element are ``(ds, dt) = T dx`` for dx in
    the integer null space of A_X; the spec check (arch/mapping_check.stt_move_problems) has made sure it
    is one line (which a map may also keep on one FU: a stationary operand, ds = 0, dt != 0)."""
    op = design.operation
    mat = np.array(df.stt, dtype=np.int64)
    space, time = mat[:-1], mat[-1]
    hops = []
    for x in op.inputs + (op.output,):
        (dx,) = integer_null_space(x.access_matrix(op.dims))
        dx = np.array(dx, dtype=np.int64)
        ds, dt = space @ dx, int(time @ dx)
        if dt < 0 or (dt == 0 and next(v for v in ds if v) < 0):
            dx, ds, dt = -dx, -ds, -dt
        hops.append(SttHop(x.name, tuple(int(v) for v in dx), tuple(int(v) for v in ds), dt, x is op.output))
    return tuple(hops)
