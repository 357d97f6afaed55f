"""Affine algebra: parse/print round trips, compose and inverse round trips, apply against numpy,
and rejection of non-affine text with the character position of the problem."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archgen.arch.affine import AffineExpr, AffineMap, AffineParseError, int_inverse, parse_affine

NAMES = ["i", "j", "k", "t_i", "t_k", "s0", "s1", "x_2", "_a", "Bq"]

coeff = st.integers(-20, 20)


@st.composite
def exprs(draw, names=NAMES):
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
    return AffineExpr.of({v: draw(coeff) for v in chosen}, draw(st.integers(-50, 50)))


@st.composite
def unimodular(draw, n=None):
    """Products of elementary integer matrices (row add, row swap, row negation): |det| = 1 by construction."""
    n = n or draw(st.integers(1, 4))
    m = np.eye(n, dtype=np.int64)
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["add", "swap", "neg"]))
        e = np.eye(n, dtype=np.int64)
        if kind == "add" and n > 1:
            r, c = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
            e[r, c] = draw(st.integers(-3, 3))
        elif kind == "swap" and n > 1:
            r, c = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
            e[[r, c]] = e[[c, r]]
        elif kind == "neg":
            r = draw(st.integers(0, n - 1))
            e[r, r] = -1
        m = e @ m
    return m


def int_matrices(rows, cols, lo=-4, hi=4):
    return st.lists(st.lists(st.integers(lo, hi), min_size=cols, max_size=cols), min_size=rows, max_size=rows).map(
        lambda r: np.array(r, dtype=np.int64).reshape(rows, cols))


def identity_exprs(names):
    return tuple(AffineExpr.var(v) for v in names)


# ---------------------------------------------------------------------------------------------
# parse and print


@given(exprs())
def test_parse_of_str_round_trips(e):
    assert parse_affine(str(e)) == e


@given(exprs(), st.fixed_dictionaries({v: st.integers(-100, 100) for v in NAMES}))
def test_parsed_text_evaluates_like_the_expression(e, env):
    assert parse_affine(str(e)).evaluate(env) == e.evaluate(env)


@pytest.mark.parametrize("text, coeffs, const", [
    ("p*2 + r", {"p": 2, "r": 1}, 0),
    ("4*t_i + s0 - 1", {"t_i": 4, "s0": 1}, -1),
    ("2*3*i", {"i": 6}, 0),
    ("i*2", {"i": 2}, 0),
    ("- i + 3", {"i": -1}, 3),
    ("--i", {"i": 1}, 0),
    ("i - -j", {"i": 1, "j": 1}, 0),
    ("i - i", {}, 0),
    ("0*k + 7", {}, 7),
    ("  q*2+s", {"q": 2, "s": 1}, 0),
])
def test_parse_accepts_affine_text(text, coeffs, const):
    assert parse_affine(text) == AffineExpr.of(coeffs, const)


@pytest.mark.parametrize("text", ["i ", "i + j ", "2*p + r\t", " s0 "])
def test_parse_accepts_trailing_whitespace(text):
    # "A[i ,k]" in an einsum or "k: 't_k '" in a map is the same index with a stray blank
    assert parse_affine(text) == parse_affine(text.strip())


@pytest.mark.parametrize("text, pos, reason", [
    ("i*j", 2, "product of two indices (i*j) is not affine"),
    ("i*2*j", 4, "product of two indices (i*j) is not affine"),
    ("i/2", 1, "unexpected '/'"),
    ("i%4", 1, "unexpected '%'"),
    ("(i+1)", 0, "unexpected '('"),
    ("2*(i)", 2, "unexpected '('"),
    ("i+", 2, "expression ends after an operator"),
    ("i -", 3, "expression ends after an operator"),
    ("i*", 2, "expression ends after an operator"),
    ("*i", 0, "unexpected '*'"),
    ("i j", 2, "expected + or - but found 'j'"),
    ("", 0, "empty index expression"),
    ("i**2", 2, "unexpected '*'"),
])
def test_parse_rejects_non_affine_text_with_position(text, pos, reason):
    with pytest.raises(AffineParseError) as info:
        parse_affine(text)
    err = info.value
    assert err.pos == pos and err.text == text
    assert reason in err.reason
    assert f"at position {pos} of {text!r}" in str(err)


def test_parse_rejects_blank_text():
    with pytest.raises(AffineParseError):
        parse_affine("   ")


def test_parse_rejects_unknown_index_with_its_position():
    with pytest.raises(AffineParseError) as info:
        parse_affine("4*t_i + s2", allowed=["t_i", "s0", "s1"])
    assert info.value.pos == 8
    assert "unknown index 's2'" in info.value.reason and "s0, s1, t_i" in info.value.reason


# ---------------------------------------------------------------------------------------------
# maps: apply, compose, inverse


@st.composite
def maps_and_points(draw):
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    mat = draw(int_matrices(rows, cols))
    off = draw(int_matrices(1, rows, -10, 10))[0]
    pts = draw(int_matrices(draw(st.integers(1, 6)), cols, -50, 50))
    return mat, off, pts


@given(maps_and_points())
def test_apply_agrees_with_numpy(case):
    mat, off, pts = case
    m = AffineMap.from_matrix(mat, off)
    assert np.array_equal(m.matrix, mat) and np.array_equal(m.offset, off)
    assert np.array_equal(m.apply(pts), pts @ mat.T + off)
    assert np.array_equal(m.apply(pts[0]), mat @ pts[0] + off)
    # evaluating each expression by name gives the same numbers
    env = {v: pts[:, c] for c, v in enumerate(m.inputs)}
    for r, e in enumerate(m.exprs):
        assert np.array_equal(np.broadcast_to(e.evaluate(env), (len(pts),)), (pts @ mat.T + off)[:, r])


@given(st.data())
def test_compose_is_matrix_product_and_agrees_with_apply(data):
    a, b, c = (data.draw(st.integers(1, 4)) for _ in range(3))
    inner = AffineMap.from_matrix(data.draw(int_matrices(b, a)), data.draw(int_matrices(1, b, -9, 9))[0],
                                  inputs=[f"x{n}" for n in range(a)])
    outer = AffineMap.from_matrix(data.draw(int_matrices(c, b)), data.draw(int_matrices(1, c, -9, 9))[0],
                                  inputs=[f"y{n}" for n in range(b)])
    both = outer.compose(inner)
    assert both.inputs == inner.inputs
    assert np.array_equal(both.matrix, outer.matrix @ inner.matrix)
    assert np.array_equal(both.offset, outer.matrix @ inner.offset + outer.offset)
    pts = data.draw(int_matrices(5, a, -30, 30))
    assert np.array_equal(both.apply(pts), outer.apply(inner.apply(pts)))


@given(st.data())
def test_inverse_round_trips(data):
    u = data.draw(unimodular())
    n = u.shape[0]
    off = data.draw(int_matrices(1, n, -10, 10))[0]
    names = [f"x{c}" for c in range(n)]
    outs = [f"o{c}" for c in range(n)]
    m = AffineMap.from_matrix(u, off, inputs=names, names=outs)
    inv = m.inverse()
    assert inv.inputs == tuple(outs) and inv.names == tuple(names)
    # inverse(m) . m and m . inverse(m) are identities
    assert inv.compose(m).exprs == identity_exprs(names)
    assert m.compose(inv).exprs == identity_exprs(outs)
    pts = data.draw(int_matrices(6, n, -40, 40))
    assert np.array_equal(inv.apply(m.apply(pts)), pts)
    assert np.array_equal(m.apply(inv.apply(pts)), pts)
    assert np.array_equal(u @ int_inverse(u), np.eye(n, dtype=np.int64))


@given(st.data())
def test_int_inverse_exists_exactly_for_unit_determinant(data):
    n = data.draw(st.integers(1, 3))
    mat = data.draw(int_matrices(n, n, -3, 3))
    det = round(np.linalg.det(mat))
    inv = int_inverse(mat)
    if abs(det) == 1:
        assert inv is not None and np.array_equal(mat @ inv, np.eye(n, dtype=np.int64))
    else:
        assert inv is None


@given(st.data())
def test_inverse_rejects_non_unimodular_maps(data):
    u = data.draw(unimodular(n=3))
    scale = np.diag([data.draw(st.sampled_from([0, 2, -2, 3])), 1, 1])
    with pytest.raises(ValueError, match="not invertible over the integers"):
        AffineMap.from_matrix(scale @ u).inverse()


def test_inverse_rejects_non_square_maps():
    with pytest.raises(ValueError, match="not invertible"):
        AffineMap.from_matrix([[1, 0, 0], [0, 1, 0]]).inverse()


def test_tiling_map_round_trip_by_name():
    # i = 4*t_i + s0 with the pair (t_i, s0) -> i is not square; the skewed 2x2 map is
    m = AffineMap(("t", "s"), (parse_affine("t + s"), parse_affine("s")), ("x", "y"))
    inv = m.inverse()
    assert inv.exprs == (parse_affine("x - y"), parse_affine("y"))
    assert np.array_equal(inv.apply(m.apply([[3, 5], [0, -2]])), [[3, 5], [0, -2]])


def test_map_rejects_undeclared_variables_and_bad_compose():
    with pytest.raises(ValueError, match="not inputs"):
        AffineMap(("i",), (parse_affine("i + j"),))
    with pytest.raises(ValueError, match="cannot compose"):
        AffineMap.from_matrix(np.eye(2)).compose(AffineMap.from_matrix(np.eye(3)))
