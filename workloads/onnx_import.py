"""Import an ONNX model's compute graph as a `Workload` (optional extra ``onnx``).

Conv (groups 1 or depthwise), Gemm, MatMul, Softmax, LayerNormalization and a few element-wise ops
become `Layer`s; every other operator is reported by name in `OnnxImport.unsupported` instead of
failing, so a user sees what the workload leaves out. Shapes come from ONNX shape inference; symbolic
dimensions (e.g. ``batch``) are bound with ``dims``.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from archgen.arch.errors import SpecError, ToolMissingError, problem

from .library import GEMM
from .ops import Layer, Workload

__all__ = ["OnnxImport", "import_onnx"]

_ELEMENTWISE = {"Relu": "relu", "Add": "add", "Mul": "mul", "Gelu": "gelu", "Sigmoid": "silu",
                "MaxPool": "pool", "AveragePool": "pool", "GlobalAveragePool": "pool"}


class OnnxImport(NamedTuple):
    workload: Workload
    unsupported: dict[str, int]   # operator type (with the reason when relevant) -> node count


def _require_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ToolMissingError("ONNX import needs the onnx package; install it with `pip install archgen[onnx]`") \
            from exc
    return onnx


def _shapes(onnx, model, dims: dict[str, int]) -> dict[str, tuple[int, ...] | None]:
    # bind symbolic input dims first so inference can propagate numbers through Reshape and friends
    for vi in model.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in dims:
                d.dim_value = dims[d.dim_param]
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    out: dict[str, tuple[int, ...] | None] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            out[vi.name] = None
            continue
        shape = []
        for d in t.shape.dim:
            if d.HasField("dim_value"):
                shape.append(d.dim_value)
            elif d.dim_param in dims:
                shape.append(dims[d.dim_param])
            else:
                shape = None
                break
        out[vi.name] = tuple(shape) if shape is not None else None
    for init in g.initializer:
        out[init.name] = tuple(init.dims)
    return out


def _index(out: str, stride: int, win: str, dilation: int) -> str:
    a = f"{out}*{stride}" if stride != 1 else out
    b = f"{win}*{dilation}" if dilation != 1 else win
    return f"{a}+{b}"


def _attr(onnx, node, name, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def import_onnx(path: str | Path, *, name: str | None = None, dims: dict[str, int] | None = None) -> OnnxImport:
    """Read ``path`` and convert its supported nodes, in graph order, to layers."""
    onnx = _require_onnx()
    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError/OSError variants depending on the failure
        raise SpecError([problem("model", f"cannot read {path} as ONNX: {exc}", str(path))]) from exc
    shapes = _shapes(onnx, model, dims or {})
    weights = {init.name for init in model.graph.initializer}
    layers: list[Layer] = []
    unsupported: Counter = Counter()
    for idx, node in enumerate(model.graph.node):
        lname = node.name or f"{node.op_type.lower()}_{idx}"
        ins = [shapes.get(i) for i in node.input]
        out = shapes.get(node.output[0]) if node.output else None
        op = node.op_type
        if op in ("Conv", "Gemm", "MatMul", "Softmax", "LayerNormalization") or op in _ELEMENTWISE:
            if out is None or any(s is None for s in ins[:2]):
                unsupported[f"{op}(unknown shape)"] += 1
                continue
        if op == "Conv":
            n, c, _, _ = ins[0]
            k, cg, r, s = ins[1]
            _, _, p, q = out
            group = _attr(onnx, node, "group", 1)
            sh, sw = _attr(onnx, node, "strides", [1, 1])
            dh, dw = _attr(onnx, node, "dilations", [1, 1])
            pi, qi = _index("p", sh, "r", dh), _index("q", sw, "s", dw)
            bias = k if len(node.input) > 2 and node.input[2] else 0
            if group == 1:
                layers.append(Layer(lname, "conv", f"O[n,k,p,q] += I[n,c,{pi},{qi}] * W[k,c,r,s]",
                                    {"n": n, "k": k, "c": c, "p": p, "q": q, "r": r, "s": s},
                                    static=("W",), extra_params=bias))
            elif group == c == k and cg == 1:
                layers.append(Layer(lname, "dwconv", f"O[n,c,p,q] += I[n,c,{pi},{qi}] * W[c,r,s]",
                                    {"n": n, "c": c, "p": p, "q": q, "r": r, "s": s},
                                    static=("W",), extra_params=bias))
            else:
                unsupported[f"Conv(group={group})"] += 1
        elif op == "Gemm":
            a, b = ins[0], ins[1]
            m, kk = (a[1], a[0]) if _attr(onnx, node, "transA", 0) else a
            nn = b[0] if _attr(onnx, node, "transB", 0) else b[1]
            bias = nn if len(node.input) > 2 and node.input[2] in weights else 0
            layers.append(Layer(lname, "gemm", GEMM, {"i": m, "k": kk, "j": nn},
                                static=("B",) if node.input[1] in weights else (), extra_params=bias))
        elif op == "MatMul":
            a, b = ins[0], ins[1]
            if len(a) < 2 or len(b) < 2:
                unsupported["MatMul(vector operand)"] += 1
                continue
            m, kk, nn = a[-2], a[-1], b[-1]
            if node.input[1] in weights and len(b) == 2:
                layers.append(Layer(lname, "gemm", GEMM, {"i": math.prod(a[:-1]), "k": kk, "j": nn},
                                    static=("B",)))
            else:
                batch = math.prod(out[:-2])
                layers.append(Layer(lname, "bmm", "C[b,i,j] += A[b,i,k] * B[b,k,j]",
                                    {"b": batch, "i": m, "k": kk, "j": nn}))
        elif op == "Softmax":
            layers.append(Layer(lname, "softmax", elements=math.prod(out)))
        elif op == "LayerNormalization":
            params = sum(math.prod(s) for i, s in zip(node.input[1:], ins[1:]) if i in weights and s)
            layers.append(Layer(lname, "layernorm", elements=math.prod(out), extra_params=params))
        elif op in _ELEMENTWISE:
            layers.append(Layer(lname, _ELEMENTWISE[op], elements=math.prod(out)))
        else:
            unsupported[op] += 1
    wl = Workload(name or path.stem, tuple(layers))
    return OnnxImport(wl, dict(sorted(unsupported.items())))
