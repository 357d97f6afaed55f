import pytest

from archgen.arch.errors import SpecError
from archgen.workloads.library import GEMM
from archgen.workloads.ops import Layer


def test_gemm_derived_quantities():
    layer = Layer("fc", "gemm", GEMM, {"i": 4, "k": 8, "j": 16}, count=3, static=("B",), extra_params=16)
    assert layer.macs_once == 4 * 8 * 16
    assert layer.macs == 3 * 4 * 8 * 16
    assert layer.operand_elements == {"C": 64, "A": 32, "B": 128}
    assert layer.params == 3 * (128 + 16)


def test_layers_are_values():
    a = Layer("fc", "gemm", GEMM, {"i": 4, "k": 8, "j": 16})
    b = Layer("fc", "gemm", GEMM, {"j": 16, "k": 8, "i": 4})
    assert a == b and hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.count = 2


def test_elementwise_layer_has_no_macs():
    assert Layer("sm", "softmax", elements=100).macs == 0


def test_bad_layer_collects_problems():
    with pytest.raises(SpecError) as e:
        Layer("x", "matmul", "", {"i": 0}, count=0)
    msg = str(e.value)
    assert "layers.x.kind" in msg and "layers.x.count" in msg and "layers.x.bounds.i" in msg


def test_einsum_index_over_unknown_bound():
    with pytest.raises(SpecError, match="layers.x.einsum"):
        Layer("x", "gemm", "C[i,j] += A[i,z] * B[k,j]", {"i": 2, "j": 2, "k": 2})


def test_static_must_name_an_operand():
    with pytest.raises(SpecError, match="layers.x.static"):
        Layer("x", "gemm", GEMM, {"i": 2, "j": 2, "k": 2}, static=("W",))
