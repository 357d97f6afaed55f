"""Einsum parsing: loop order, access matrices, reduction loops, tensor shapes; errors by position."""
from __future__ import annotations

import numpy as np
import pytest

from archgen.arch.einsum import EinsumError, parse_operation

GEMM = "C[i,j] += A[i,k] * B[k,j]"
CONV = "O[n,k,p,q] += I[n,c,p*2+r,q*2+s] * W[k,c,r,s]"


def test_gemm_dims_access_matrices_and_reduction():
    op = parse_operation(GEMM)
    assert op.dims == ("i", "j", "k")
    assert [o.name for o in op.inputs] == ["A", "B"] and op.output.name == "C"
    assert [o.name for o in op.operands] == ["A", "B", "C"]
    # DESIGN.md section 2
    assert op.operand("A").access_matrix(op.dims).tolist() == [[1, 0, 0], [0, 0, 1]]
    assert op.operand("B").access_matrix(op.dims).tolist() == [[0, 0, 1], [0, 1, 0]]
    assert op.operand("C").access_matrix(op.dims).tolist() == [[1, 0, 0], [0, 1, 0]]
    for x in op.operands:
        assert x.access_offset().tolist() == [0, 0]
    assert op.reduction_dims == ("k",)
    bounds = {"i": 3, "j": 5, "k": 7}
    assert op.tensor_shape("A", bounds) == (3, 7)
    assert op.tensor_shape("B", bounds) == (7, 5)
    assert op.tensor_shape("C", bounds) == (3, 5)
    assert op.operand("A").uses("k") and not op.operand("A").uses("j")


def test_conv_dims_access_matrices_and_shapes():
    op = parse_operation(CONV)
    assert op.dims == ("n", "k", "p", "q", "c", "r", "s")
    assert op.reduction_dims == ("c", "r", "s")
    assert op.operand("I").access_matrix(op.dims).tolist() == [
        [1, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 0, 0],
        [0, 0, 2, 0, 0, 1, 0],
        [0, 0, 0, 2, 0, 0, 1]]
    assert op.operand("W").access_matrix(op.dims).tolist() == [
        [0, 1, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 1]]
    bounds = {"n": 1, "k": 6, "p": 3, "q": 3, "c": 5, "r": 3, "s": 3}
    # input rows: stride 2 over 3 outputs plus a 3-tap filter: 2*(3-1) + (3-1) + 1 = 7
    assert op.tensor_shape("I", bounds) == (1, 5, 7, 7)
    assert op.tensor_shape("W", bounds) == (6, 5, 3, 3)
    assert op.tensor_shape("O", bounds) == (1, 6, 3, 3)


def test_offsets_three_inputs_and_spacing():
    op = parse_operation("D[i] += A[i,k] * B[k] * E[k+1]")
    assert op.dims == ("i", "k")
    assert [str(o) for o in op.inputs] == ["A[i,k]", "B[k]", "E[k+1]"]
    assert op.operand("E").access_offset().tolist() == [1]
    assert op.tensor_shape("E", {"i": 2, "k": 4}) == (5,)
    compact = parse_operation("C[i,j]+=A[i,k]*B[k,j]")
    spaced = parse_operation("C[i, j]   +=  A[i, k] *  B[k, j]")
    assert compact.dims == spaced.dims == ("i", "j", "k")
    for name in "ABC":
        assert np.array_equal(compact.operand(name).access_matrix(compact.dims),
                              spaced.operand(name).access_matrix(spaced.dims))
    assert str(spaced) == "C[i, j] += A[i, k] * B[k, j]"


def test_blank_before_a_comma_is_not_an_error():
    op = parse_operation("C[i ,j] += A[i ,k] * B[k ,j]")
    assert op.dims == ("i", "j", "k")


def test_unknown_operand_lookup_raises_key_error():
    with pytest.raises(KeyError):
        parse_operation(GEMM).operand("D")


@pytest.mark.parametrize("text, pos, reason", [
    ("C[i,j] = A[i,k] * B[k,j]", 0, "'+=' is missing"),
    ("C[i,j] += A[i,k] B[k,j]", 17, "expected '*' between operands, found 'B'"),
    ("C[i,j] += A[i,k] + B[k,j]", 17, "expected '*' between operands, found '+'"),
    ("C[i,j] += A[i*j,k] * B[k,j]", 14, "product of two indices (i*j) is not affine"),
    ("C[i,j] += A[i/2,k] * B[k,j]", 13, "unexpected '/'"),
    ("C[i,j] += A[i%4,k] * B[k,j]", 13, "unexpected '%'"),
    ("C[i,j] += A[(i),k] * B[k,j]", 12, "unexpected '('"),
    ("C[i,j] += A[i+,k] * B[k,j]", 14, "expression ends after an operator"),
    ("C[i,] += A[i,k] * B[k,i]", 4, "empty index"),
    ("C[i,j] += ", 9, "expected an operand"),
    ("C[i,j] += A[i,k] * ", 18, "expected an operand"),
    ("C[i,j] x += A[i,k]", 7, "unexpected text before '+='"),
    ("C[i,j+1] += A[i,k] * B[k,j]", 4, "output index j + 1 must be a plain loop index"),
    ("C[2*i,j] += A[i,k] * B[k,j]", 2, "output index 2*i must be a plain loop index"),
])
def test_errors_name_the_position(text, pos, reason):
    with pytest.raises(EinsumError) as info:
        parse_operation(text)
    assert reason in info.value.reason
    assert info.value.pos == pos, f"points at {text[info.value.pos:]!r}, expected {text[pos:]!r}"
    assert f"at position {pos} of {text!r}" in str(info.value)


def test_duplicate_operand_rejected_at_one_of_its_occurrences():
    text = "C[i,j] += A[i,k] * A[k,j]"
    with pytest.raises(EinsumError, match="operand 'A' appears twice") as info:
        parse_operation(text)
    assert text[info.value.pos:].startswith("A[")


def test_non_string_rejected():
    with pytest.raises(EinsumError):
        parse_operation(None)
