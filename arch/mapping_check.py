"""Validity of an affine space-time map: every iteration runs exactly once, no FU runs two iterations
in one cycle.

Two checks that must agree: an analytic one for separable TS->I maps (every temporal and spatial
variable appears in one loop only; then a loop is covered exactly once iff its terms form a mixed-radix
number system, Krasner-Ranulac), and brute-force enumeration of the reference problem, used for
non-separable maps and by the property tests as the ground truth.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .affine import AffineMap
from .errors import problem
from .names import space_var, time_var

__all__ = ["Coverage", "time_var_ranges", "check_coverage", "brute_force_coverage", "is_separable",
           "stt_conflict", "integer_null_space", "stt_move_problems", "ResidueForm", "residue_form"]

BRUTE_FORCE_LIMIT = 2_000_000


@dataclass(frozen=True)
class Coverage:
    """Result of a check: ``ok`` or the first missed / duplicated iteration found."""

    ok: bool
    missed: tuple[int, ...] | None = None
    duplicated: tuple[int, ...] | None = None
    method: str = ""
    loop: str | None = None        # the loop whose expression is at fault, when known


def time_var_ranges(ts_map: AffineMap, shape: tuple[int, ...], bounds: dict[str, int]) -> dict[str, int]:
    """Trip count of each temporal variable: the smallest count from 0 that reaches past the loop bound.

    A temporal variable ``v`` with coefficient a > 0 in loop l (expression a*v + spatial part + m)
    runs 0 .. ceil((N_l - m - min spatial part) / a) - 1; a variable absent from every loop runs once.
    """
    space = {f"s{a}": e for a, e in enumerate(shape)}
    trips: dict[str, int] = {}
    for dim, expr in zip(ts_map.names, ts_map.exprs):
        tvars = [(v, c) for v, c in expr.terms if v not in space]
        smin = sum(c * (space[v] - 1) for v, c in expr.terms if v in space and c < 0)
        smax = sum(c * (space[v] - 1) for v, c in expr.terms if v in space and c > 0)
        for v, c in tvars:
            if c > 0:       # counts up from the constant: run until the bound is passed
                trip = max(1, -(-(bounds[dim] - expr.const - smin) // c))
            else:           # counts down from the constant: run until 0 is reached
                trip = max(1, (expr.const + smax) // -c + 1)
            trips[v] = max(trips.get(v, 1), trip)
    for v in ts_map.inputs:
        if v not in space:
            trips.setdefault(v, 1)
    return trips


def is_separable(ts_map: AffineMap) -> bool:
    seen: set[str] = set()
    for expr in ts_map.exprs:
        for v in expr.variables:
            if v in seen:
                return False
            seen.add(v)
    return True


def check_coverage(ts_map: AffineMap, shape: tuple[int, ...], bounds: dict[str, int]) -> Coverage:
    """Analytic check for separable maps; brute force otherwise."""
    if not is_separable(ts_map):
        return brute_force_coverage(ts_map, shape, bounds)
    space = {f"s{a}": e for a, e in enumerate(shape)}
    trips = time_var_ranges(ts_map, shape, bounds)
    for v in ts_map.inputs:
        if not any(v in e.variables for e in ts_map.exprs) and (space.get(v, trips.get(v, 1)) > 1):
            # an unused variable with extent > 1 repeats every iteration it reaches: not a valid map;
            # the concrete witness (missed or repeated) comes from enumeration when that is affordable
            try:
                cov = brute_force_coverage(ts_map, shape, bounds)
                return Coverage(False, cov.missed, cov.duplicated, "analytic")
            except ValueError:
                return Coverage(False, duplicated=tuple(0 for _ in ts_map.exprs), method="analytic")
    for dim, expr in zip(ts_map.names, ts_map.exprs):
        n = bounds[dim]
        terms = sorted(((abs(c), space[v] if v in space else trips[v], c) for v, c in expr.terms), key=lambda t: t[0])
        # reflect negative coefficients: the value set of c*x over [0,e) equals |c|*x shifted by c*(e-1)
        base = expr.const + sum(c * (e - 1) for _, e, c in terms if c < 0)
        radix = 1
        ok = True
        for mag, ext, _ in terms:
            if ext == 1:
                continue
            if mag != radix:
                ok = False
                break
            radix *= ext
        if ok and base <= 0 and base + radix >= n:
            continue
        # the fast test failed: enumerate this loop alone (separable, so loops are independent)
        kind, value = _witness(expr, space, trips, n)
        if kind == "exact":
            continue
        idx = ts_map.names.index(dim)
        point = tuple(value if i == idx else 0 for i in range(len(ts_map.exprs)))
        try:        # a joint witness is exact (another loop may miss the 0 used above)
            cov = brute_force_coverage(ts_map, shape, bounds)
            return Coverage(False, cov.missed, cov.duplicated, "analytic", dim)
        except ValueError:
            pass
        if kind == "missed":
            return Coverage(False, missed=point, method="analytic", loop=dim)
        return Coverage(False, duplicated=point, method="analytic", loop=dim)
    return Coverage(True, method="analytic")


def _witness(expr, space, trips, n):
    ranges = [range(space[v] if v in space else trips[v]) for v, _ in expr.terms]
    counts = np.zeros(n, dtype=np.int64)
    coeffs = [c for _, c in expr.terms]
    for combo in itertools.product(*ranges):
        val = expr.const + sum(c * x for c, x in zip(coeffs, combo))
        if 0 <= val < n:
            counts[val] += 1
    dup = np.nonzero(counts > 1)[0]
    if dup.size:
        return ("duplicated", int(dup[0]))
    miss = np.nonzero(counts == 0)[0]
    if miss.size:
        return ("missed", int(miss[0]))
    return ("exact", 0)


def brute_force_coverage(ts_map: AffineMap, shape: tuple[int, ...], bounds: dict[str, int]) -> Coverage:
    """Enumerate every (t, s) in its box, count hits of each in-bounds iteration."""
    space = {f"s{a}": e for a, e in enumerate(shape)}
    trips = time_var_ranges(ts_map, shape, bounds)
    extents = [space[v] if v in space else trips[v] for v in ts_map.inputs]
    total = math.prod(extents)
    if total > BRUTE_FORCE_LIMIT:
        raise ValueError(f"brute-force check would enumerate {total} points; use smaller reference bounds")
    grids = np.meshgrid(*[np.arange(e) for e in extents], indexing="ij")
    pts = np.stack([g.ravel() for g in grids], axis=-1) if extents else np.zeros((1, 0), dtype=np.int64)
    xs = ts_map.apply(pts)
    dims_n = [bounds[d] for d in ts_map.names]
    inside = np.all((xs >= 0) & (xs < np.array(dims_n)), axis=1)
    flat = np.ravel_multi_index(xs[inside].T, dims_n) if inside.any() else np.zeros(0, dtype=np.int64)
    counts = np.bincount(flat, minlength=math.prod(dims_n))
    dup = np.nonzero(counts > 1)[0]
    if dup.size:
        return Coverage(False, duplicated=tuple(int(v) for v in np.unravel_index(dup[0], dims_n)), method="brute force")
    miss = np.nonzero(counts == 0)[0]
    if miss.size:
        return Coverage(False, missed=tuple(int(v) for v in np.unravel_index(miss[0], dims_n)), method="brute force")
    return Coverage(True, method="brute force")


@dataclass(frozen=True)
class ResidueForm:
    """A map in which every loop d reads its own temporal variable only: ``d = c_d*t_d + sigma_d.s + m_d``.
    FU s runs the iterations x = o(s) + C t (C = diag(c), o(s) = sigma s + m, every t from 0).

    :meth:`valid_for_all_bounds` decides whether it runs every iteration exactly once on EVERY problem size,
    not just the reference bounds. It does iff every c_d > 0, the offsets o(s) of the FUs are one complete
    residue system modulo C (one FU per class of Z^n / C Z^n, so prod(c) FUs), and o(s)_d < c_d.
    If: an iteration x has exactly one FU s with o(s) = x (mod C), and t = (x - o(s)) / C >= 0 because
    o(s)_d is at most x's residue r_d in [0, c_d) (below c_d and congruent to it), so t is in range for any
    bounds (the trip counts reach past them). Only if: two FUs in one class meet on
    every x of the class at or above both offsets; a class no FU has misses its residue r; an offset
    o(s)_d >= c_d misses x = r(s); c_d < 0 counts down from m_d + sigma_d.s and misses every x_d above that.
    Each witness lies below max(o_d, 0) + |c_d| in every loop (:meth:`witness_bounds`)."""

    dims: tuple[str, ...]
    moduli: tuple[int, ...]                              # c_d per loop
    offsets: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]     # (s, o(s)) for every FU s, row-major

    def valid_for_all_bounds(self) -> bool:
        if any(c <= 0 for c in self.moduli):
            return False
        classes = {self.residue(o) for _, o in self.offsets}
        return (len(classes) == len(self.offsets) == math.prod(self.moduli)
                and all(v < c for _, o in self.offsets for v, c in zip(o, self.moduli)))

    def residue(self, o: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(v % c for v, c in zip(o, self.moduli))

    def lag(self, o: tuple[int, ...]) -> tuple[int, ...]:
        """(o(s) - r(s)) / C: the tiles FU s runs behind a tiled map's FU of the same residue (<= 0 when valid)."""
        return tuple((v - v % c) // c for v, c in zip(o, self.moduli))

    def folded_shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """For a valid form whose strides c_d > 1 are not the array's extents > 1 (a folded array, e.g.
        ``i: 4*t_i + s0 + 2*s1`` on 2x2): the logical shape it implies, the strides > 1 in loop order on the
        last axes, leading axes of extent 1 (1x4 here: prod(c) = the number of FUs); one axis per stride when
        there are more strides > 1 than array axes (``i: 2*t_i - s0 - s1 - 1``, ``j: 2*t_j - s0 - 1``,
        ``k: 3*t_k - s0 - s1`` on 2x6 is a 2x2x3 array). None when the form is invalid or not folded."""
        big = [c for c in self.moduli if c > 1]
        if not self.valid_for_all_bounds() or sorted(big) == sorted(e for e in shape if e > 1):
            return None
        return (1,) * (len(shape) - len(big)) + tuple(big)

    def logical_position(self, o: tuple[int, ...], rank: int) -> tuple[int, ...]:
        """The FU of :meth:`folded_shape` whose iterations are the residue class of offset o: its residue in the
        loops with stride > 1, one per axis in order."""
        r = [v for v, c in zip(self.residue(o), self.moduli) if c > 1]
        return (0,) * max(rank - len(r), 0) + tuple(r)

    def witness_bounds(self, reference: dict[str, int]) -> dict[str, int]:
        """Bounds on which an invalid map's failure shows (the reference bounds grown past every witness)."""
        top = [max(max(o[i] for _, o in self.offsets), 0) for i in range(len(self.dims))]
        return {d: max(reference[d], top[i] + abs(c) + 1) for i, (d, c) in enumerate(zip(self.dims, self.moduli))}


def residue_form(ts_map: AffineMap, shape: tuple[int, ...]) -> ResidueForm | None:
    """The :class:`ResidueForm` of a ``map`` whose loop d reads t_d (and no other temporal variable), else None."""
    moduli, sig, const = [], [], []
    for dim, e in zip(ts_map.names, ts_map.exprs):
        co = e.coeffs
        if [v for v in co if v.startswith("t_")] != [time_var(dim)]:
            return None
        moduli.append(co[time_var(dim)])
        sig.append([co.get(space_var(a), 0) for a in range(len(shape))])
        const.append(e.const)
    offsets = tuple((s, tuple(m + sum(c * v for c, v in zip(row, s)) for row, m in zip(sig, const)))
                    for s in itertools.product(*[range(e) for e in shape]))
    return ResidueForm(tuple(ts_map.names), tuple(moduli), offsets)


def stt_conflict(stt: np.ndarray, bounds: list[int]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Two iterations that an I->ST matrix puts on the same FU in the same cycle, or None.

    Square T with det != 0 is injective everywhere; otherwise search the reference box for a collision.
    """
    mat = np.asarray(stt, dtype=np.int64)
    if mat.shape[0] == mat.shape[1] and round(abs(np.linalg.det(mat))) != 0:
        return None
    total = math.prod(bounds)
    if total > BRUTE_FORCE_LIMIT:
        raise ValueError("reference bounds too large to search for a collision")
    grids = np.meshgrid(*[np.arange(b) for b in bounds], indexing="ij")
    pts = np.stack([g.ravel() for g in grids], axis=-1)
    img = pts @ mat.T
    _, first, inverse = np.unique(img, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    for idx in range(len(pts)):
        j = first[inverse[idx]]
        if j != idx:
            return tuple(int(v) for v in pts[j]), tuple(int(v) for v in pts[idx])
    return None


def integer_null_space(mat: np.ndarray) -> list[tuple[int, ...]]:
    """A basis of the integer vectors v with ``mat @ v = 0`` when that lattice has rank <= 1 (the primitive
    vector, first nonzero entry positive), else every basis vector of a rational basis scaled to integers.

    Exact for the small integer matrices of access functions: the null vector of a rank n-1 matrix is the
    vector of signed maximal minors of n-1 independent rows (the generalised cross product)."""
    a = np.asarray(mat, dtype=np.int64).reshape(-1, np.asarray(mat).shape[-1])
    n = a.shape[1]
    rank = int(np.linalg.matrix_rank(a)) if a.size else 0
    if rank == n:
        return []
    if rank == n - 1:
        rows: list[np.ndarray] = []
        for r in a:                                     # n-1 independent rows
            if np.linalg.matrix_rank(np.array(rows + [r])) == len(rows) + 1:
                rows.append(r)
            if len(rows) == n - 1:
                break
        m = np.array(rows, dtype=np.int64).reshape(n - 1, n)
        v = [(-1) ** c * int(round(np.linalg.det(np.delete(m, c, axis=1)))) if n > 1 else 1 for c in range(n)]
        g = math.gcd(*v)
        v = [x // g for x in v]
        first = next(x for x in v if x)
        return [tuple(x if first > 0 else -x for x in v)]
    # rank < n-1: a rational basis from the SVD, scaled to small integers (only used to report)
    _, _, vt = np.linalg.svd(a.astype(float)) if a.size else (None, None, np.eye(n))
    basis = []
    for v in vt[rank:]:
        scale = 1 / min(abs(x) for x in v if abs(x) > 1e-9)
        basis.append(tuple(int(round(x * scale)) for x in v))
    return basis


def stt_move_problems(stt: np.ndarray, op, path: str) -> list:
    """Why the lock-step network of a skewed ``stt`` map (dataflow/stt_array.py) cannot carry the operands, as
    field-named problems. Every operand is built: one reuse line (a chain, or a ring when the map keeps the
    line on one FU), several (re-fed once per line along one of them), none (a lane per FU). Where zero fill
    does not pin products to the box, the lines of one moving operand carry a validity tag; the one case
    left is when no input is used by a single iteration and no operand moves across the array at all.

    A singular T is left to the injectivity check, which names the colliding iterations."""
    mat = np.asarray(stt, dtype=np.int64)
    if mat.shape[0] != mat.shape[1] or round(abs(np.linalg.det(mat))) == 0:
        return []
    space = mat[:-1]
    n = len(op.dims)
    direct = any(int(np.linalg.matrix_rank(x.access_matrix(op.dims))) == n for x in op.inputs)
    moving = [x.name for x in op.operands
              if int(np.linalg.matrix_rank(np.vstack([x.access_matrix(op.dims), space]))) >
              int(np.linalg.matrix_rank(x.access_matrix(op.dims)))]
    if direct or moving:
        return []
    return [problem(path, "no operand moves across the array under this map (every reuse line stays on one FU) and "
                    "no input is used by one iteration only, so no chain can carry the validity of an iteration; "
                    "change the spatial rows so that some operand's reuse crosses FUs", mat.tolist())]
