"""Mapping validity: the analytic coverage check agrees with brute force (and with an independent
enumeration written here) on random separable and non-separable maps; stt_conflict agrees with an
enumeration of collisions."""
from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from archgen.arch.affine import AffineExpr, AffineMap, parse_affine
from archgen.arch.mapping_check import brute_force_coverage, check_coverage, is_separable, stt_conflict

LOOPS = ("i", "j", "k")


def make_map(exprs: dict[str, AffineExpr], rank: int) -> AffineMap:
    dims = tuple(exprs)
    inputs = tuple(f"t_{d}" for d in dims) + tuple(f"s{a}" for a in range(rank))
    return AffineMap(inputs, tuple(exprs[d] for d in dims), dims)


def hit_counts(ts_map: AffineMap, shape, bounds, t_extent) -> Counter:
    """How often each in-bounds iteration runs, enumerating every (t, s) with t in range(t_extent(var))
    (a temporal variable that no loop uses runs once). Independent of the module's trip counts."""
    used = {v for e in ts_map.exprs for v in e.variables}
    ranges = []
    for v in ts_map.inputs:
        if v.startswith("s"):
            ranges.append(range(shape[int(v[1:])]))
        else:
            ranges.append(range(t_extent(v)) if v in used else range(1))
    counts = Counter()
    for point in itertools.product(*ranges):
        env = dict(zip(ts_map.inputs, point))
        x = tuple(int(e.evaluate(env)) for e in ts_map.exprs)
        if all(0 <= v < bounds[d] for v, d in zip(x, ts_map.names)):
            counts[x] += 1
    return counts


def exactly_once(counts: Counter, ts_map: AffineMap, bounds) -> bool:
    every = itertools.product(*[range(bounds[d]) for d in ts_map.names])
    return all(counts[x] == 1 for x in every)


@st.composite
def problems(draw, max_loops=3, max_rank=3, max_bound=8):
    n_loops = draw(st.integers(1, max_loops))
    rank = draw(st.integers(1, max_rank))
    shape = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    bounds = {d: draw(st.integers(1, max_bound)) for d in LOOPS[:n_loops]}
    return rank, shape, bounds


@st.composite
def separable_cases(draw, signed=False):
    """Each loop = a*t_loop + sum of distinct spatial variables (each used by at most one loop)."""
    rank, shape, bounds = draw(problems(max_loops=2 if signed else 3, max_rank=2 if signed else 3))
    dims = tuple(bounds)
    coeffs = {d: {f"t_{d}": draw(st.integers(1, 4))} for d in dims}
    for a in range(rank):
        owner = draw(st.sampled_from((None,) + dims))
        if owner is not None:
            c = draw(st.integers(1, 4))
            coeffs[owner][f"s{a}"] = -c if signed and draw(st.booleans()) else c
    consts = {d: draw(st.integers(-3, 3)) if signed else 0 for d in dims}
    ts_map = make_map({d: AffineExpr.of(coeffs[d], consts[d]) for d in dims}, rank)
    return ts_map, shape, bounds


@st.composite
def non_separable_cases(draw):
    """Random maps whose variables may appear in several loops (coefficients 0..3)."""
    rank, shape, bounds = draw(problems(max_bound=5))
    dims = tuple(bounds)
    variables = [f"t_{d}" for d in dims] + [f"s{a}" for a in range(rank)]
    exprs = {}
    for d in dims:
        co = {v: draw(st.integers(0, 3)) for v in variables}
        co[f"t_{d}"] = max(co[f"t_{d}"], 1)         # every loop advances in time
        exprs[d] = AffineExpr.of(co)
    return make_map(exprs, rank), shape, bounds


@settings(max_examples=150, deadline=None)
@given(separable_cases())
def test_analytic_check_agrees_with_brute_force_on_separable_maps(case):
    ts_map, shape, bounds = case
    assert is_separable(ts_map)
    fast = check_coverage(ts_map, shape, bounds)
    slow = brute_force_coverage(ts_map, shape, bounds)
    assert fast.method == "analytic"
    assert fast.ok == slow.ok, (ts_map, shape, bounds, fast, slow)
    # positive coefficients: t beyond the loop bound never lands inside it, so t in range(N) is complete
    counts = hit_counts(ts_map, shape, bounds, lambda v: bounds[v[2:]])
    assert slow.ok == exactly_once(counts, ts_map, bounds)


@settings(max_examples=150, deadline=None)
@given(separable_cases(signed=True))
def test_analytic_check_agrees_with_brute_force_with_negative_steps_and_offsets(case):
    ts_map, shape, bounds = case
    fast = check_coverage(ts_map, shape, bounds)
    slow = brute_force_coverage(ts_map, shape, bounds)
    assert fast.ok == slow.ok, (ts_map, shape, bounds, fast, slow)
    # a generous t range: offsets >= -3 and spatial parts >= -12 cannot push a larger t back in bounds
    counts = hit_counts(ts_map, shape, bounds, lambda v: bounds[v[2:]] + 16)
    assert slow.ok == exactly_once(counts, ts_map, bounds)


# i = t_i + 1 never runs i = 0; s0 is unused, so the map also repeats what it runs
WITNESS_UNUSED_AXIS = (make_map({"i": parse_affine("t_i + 1")}, 1), (2,), {"i": 1})
# i = t_i + s0 repeats i = 1, but j = t_j + 1 never runs j = 0, so (1, 0) never runs at all
WITNESS_OTHER_LOOP_MISSES = (make_map({"i": parse_affine("t_i + s0"), "j": parse_affine("t_j + 1")}, 1), (2,),
                             {"i": 3, "j": 2})


@settings(max_examples=200, deadline=None)
@given(st.one_of(separable_cases(), separable_cases(signed=True)))
@example(WITNESS_UNUSED_AXIS)
@example(WITNESS_OTHER_LOOP_MISSES)
def test_analytic_witness_is_a_real_missed_or_repeated_iteration(case):
    # the witness goes into the SpecError message ("e.g. (i=0, j=2) is never executed"): it must be true
    ts_map, shape, bounds = case
    cov = check_coverage(ts_map, shape, bounds)
    if cov.ok:
        return
    counts = hit_counts(ts_map, shape, bounds, lambda v: bounds[v[2:]] + 16)
    if cov.missed is not None:
        assert counts[cov.missed] == 0, (ts_map, shape, bounds, cov)
    else:
        assert counts[cov.duplicated] > 1, (ts_map, shape, bounds, cov, counts[cov.duplicated])


@settings(max_examples=100, deadline=None)
@given(non_separable_cases())
def test_non_separable_maps_fall_back_to_brute_force_and_agree(case):
    ts_map, shape, bounds = case
    cov = check_coverage(ts_map, shape, bounds)
    slow = brute_force_coverage(ts_map, shape, bounds)
    if not is_separable(ts_map):
        assert cov.method == "brute force"
    assert cov.ok == slow.ok
    counts = hit_counts(ts_map, shape, bounds, lambda v: max(bounds.values()) + 1)
    assert slow.ok == exactly_once(counts, ts_map, bounds)
    if not slow.ok:
        witness = slow.missed if slow.missed is not None else slow.duplicated
        assert (counts[witness] == 0) if slow.missed is not None else (counts[witness] > 1)


def _gemm_map(i, j, k, rank=2):
    return make_map({"i": parse_affine(i), "j": parse_affine(j), "k": parse_affine(k)}, rank)


@pytest.mark.parametrize("i, j, k, ok, kind", [
    ("4*t_i + s0", "4*t_j + s1", "t_k", True, None),          # tiled output-stationary
    ("s0 + 4*t_i", "t_j", "4*t_k + s1", True, None),          # weight/input-stationary style
    ("4*t_i + s0", "4*t_j + s1", "2*t_k", False, "missed"),   # odd k never run
    ("4*t_i + s0", "2*t_j + s1", "t_k", False, "duplicated"),  # j tiles overlap
    ("4*t_i + s0", "t_j", "t_k", False, "duplicated"),       # axis 1 carries no loop
    ("8*t_i + s0", "4*t_j + s1", "t_k", False, "missed"),     # gaps between i tiles
])
def test_hand_written_gemm_maps(i, j, k, ok, kind):
    bounds = {"i": 9, "j": 9, "k": 3}
    m = _gemm_map(i, j, k)
    for check in (check_coverage, brute_force_coverage):
        cov = check(m, (4, 4), bounds)
        assert cov.ok == ok
        if kind == "missed":
            assert cov.missed is not None
        elif kind == "duplicated":
            assert cov.duplicated is not None


# ---------------------------------------------------------------------------------------------
# I->ST matrices


def collisions(stt: np.ndarray, bounds) -> bool:
    seen = {}
    for x in itertools.product(*[range(b) for b in bounds]):
        key = tuple(int(v) for v in stt @ np.array(x))
        if key in seen:
            return True
        seen[key] = x
    return False


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 3).flatmap(lambda rows: st.tuples(
    st.lists(st.lists(st.integers(-2, 2), min_size=3, max_size=3), min_size=rows, max_size=rows),
    st.lists(st.integers(1, 4), min_size=3, max_size=3))))
def test_stt_conflict_agrees_with_enumeration(case):
    rows, bounds = case
    stt = np.array(rows, dtype=np.int64)
    clash = stt_conflict(stt, bounds)
    assert (clash is not None) == collisions(stt, bounds), (stt.tolist(), bounds, clash)
    if clash is not None:
        x1, x2 = clash
        assert x1 != x2
        assert all(0 <= v < b for x in (x1, x2) for v, b in zip(x, bounds))
        assert np.array_equal(stt @ np.array(x1), stt @ np.array(x2))


def test_stt_time_row_ignoring_k_collides():
    stt = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    x1, x2 = stt_conflict(stt, [3, 3, 3])
    assert x1[:2] == x2[:2] and x1[2] != x2[2]
    assert stt_conflict(np.array([[1, 0, 0], [0, 1, 0], [1, 1, 1]]), [3, 3, 3]) is None


def test_time_running_backwards_is_judged_on_its_real_range():
    """k = 2 - t_k with k < 3: t_k = 0, 1, 2 run k = 2, 1, 0, each once (later t_k leave the loop).
    The checks must either accept the map or reject negative time steps outright; calling it
    'misses iterations' sends the user after the wrong problem."""
    m = _gemm_map("4*t_i + s0", "4*t_j + s1", "2 - t_k")
    bounds = {"i": 9, "j": 9, "k": 3}
    for check in (check_coverage, brute_force_coverage):
        try:
            cov = check(m, (4, 4), bounds)
        except ValueError:
            continue
        assert cov.ok, (check.__name__, cov)
