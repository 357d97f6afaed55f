import numpy as np
import pytest

from archgen.arch.errors import ToolMissingError

# onnx is in the test extra (pyproject.toml), which the README's test command installs: the import is
# tested in the default suite and fails loudly rather than skipping when the extra is missing
import onnx  # noqa: E402


def _model(tmp_path):
    from onnx import TensorProto, helper, numpy_helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])
    inits = [numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w"),
             numpy_helper.from_array(np.zeros((4,), np.float32), "wb"),
             numpy_helper.from_array(np.zeros((4, 1, 3, 3), np.float32), "dw"),
             numpy_helper.from_array(np.zeros((64, 10), np.float32), "fc"),
             numpy_helper.from_array(np.array([-1, 64], np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["x", "w", "wb"], ["c1"], name="conv", strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
             helper.make_node("Conv", ["r1", "dw"], ["c2"], name="dw", group=4, pads=[1, 1, 1, 1]),
             helper.make_node("Tanh", ["c2"], ["t"], name="tanh"),
             helper.make_node("Reshape", ["t", "shape"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "fc"], ["m"], name="fc"),
             helper.make_node("Softmax", ["m"], ["y"], name="softmax")]
    graph = helper.make_graph(nodes, "tiny", [x], [y], inits)
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_import_converts_supported_and_reports_the_rest(tmp_path):
    from archgen.workloads.onnx_import import import_onnx
    res = import_onnx(_model(tmp_path), dims={"batch": 2})
    layers = {l.name: l for l in res.workload.layers}
    assert layers["conv"].bounds == {"c": 3, "k": 4, "n": 2, "p": 4, "q": 4, "r": 3, "s": 3}
    assert layers["conv"].einsum == "O[n,k,p,q] += I[n,c,p*2+r,q*2+s] * W[k,c,r,s]"
    assert layers["conv"].params == 4 * 27 + 4
    assert layers["dw"].kind == "dwconv" and layers["dw"].macs == 2 * 4 * 4 * 4 * 9
    assert layers["fc"].kind == "gemm" and layers["fc"].bounds == {"i": 2, "j": 10, "k": 64}
    assert layers["softmax"].elements == 20
    assert res.unsupported == {"Reshape": 1, "Tanh": 1}


def test_missing_onnx_names_the_extra(monkeypatch):
    import builtins

    from archgen.workloads import onnx_import
    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "onnx":
            raise ImportError("no onnx")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ToolMissingError, match=r"pip install archgen\[onnx\]"):
        onnx_import.import_onnx("x.onnx")
