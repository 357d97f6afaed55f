"""Layer library: CNNs, encoder and decoder transformers, addressed by name.

Shapes come from ``workloads/data/models.yaml``; this module only turns them into `Layer` loop nests.
Conventions (ours, stated so totals can be checked):

- Batch-norm is folded into the preceding conv at inference; its two affine parameters per channel
  are counted in that conv's ``extra_params`` so parameter totals match torchvision.
- Attention QxK and prob x V are full ``seq x seq`` batched matmuls even for causal (GPT) prefill,
  as a dense engine computes them; the masked half is not subtracted.
- Decoder prefill applies the LM head to the last token only (what generation needs); decode
  processes one new token per sequence against ``kv_len`` cached keys plus itself.
- The tied GPT-2 LM head reuses the embedding table, so its weight is not counted twice.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml

from archgen.arch.errors import SpecError, problem

from .ops import Layer, Workload, WorkloadInfo

__all__ = ["get_workload", "gemm_workload", "list_workloads", "GEMM", "QK_BMM", "AV_BMM"]

GEMM = "C[i,j] += A[i,k] * B[k,j]"
QK_BMM = "S[b,i,j] += Q[b,i,k] * K[b,j,k]"
AV_BMM = "O[b,i,k] += P[b,i,j] * V[b,j,k]"
PHASES = ("prefill", "decode")


@lru_cache(maxsize=1)
def _models() -> dict:
    text = resources.files("archgen.workloads").joinpath("data/models.yaml").read_text()
    data = yaml.safe_load(text)
    data.pop("version")
    return data


def list_workloads() -> list[WorkloadInfo]:
    """Every workload name `get_workload` accepts, with its family and accepted phases."""
    out = []
    for name, m in _models().items():
        family = m["family"]
        phases = PHASES if family == "decoder" else ("prefill",)
        max_seq = m.get("max_positions") if family in ("encoder", "decoder") else None
        out.append(WorkloadInfo(name, family, m["description"], m.get("default_seq"), max_seq, phases))
    return out


def _gemm(name, tokens, k_in, n_out, count=1, bias=True, static=True):
    return Layer(name, "gemm", GEMM, {"i": tokens, "k": k_in, "j": n_out}, count=count,
                 static=("B",) if static else (), extra_params=n_out if bias else 0)


def _conv(name, batch, c_in, c_out, h_in, kernel, stride, pad, *, depthwise=False, bn=True, bias=False):
    h_out = (h_in + 2 * pad - kernel) // stride + 1
    p = f"p*{stride}+r" if stride > 1 else "p+r"
    q = f"q*{stride}+s" if stride > 1 else "q+s"
    extra = (2 * c_out if bn else 0) + (c_out if bias else 0)
    if depthwise:
        einsum = f"O[n,c,p,q] += I[n,c,{p},{q}] * W[c,r,s]"
        bounds = {"n": batch, "c": c_out, "p": h_out, "q": h_out, "r": kernel, "s": kernel}
        return Layer(name, "dwconv", einsum, bounds, static=("W",), extra_params=extra), h_out
    einsum = f"O[n,k,p,q] += I[n,c,{p},{q}] * W[k,c,r,s]"
    bounds = {"n": batch, "k": c_out, "c": c_in, "p": h_out, "q": h_out, "r": kernel, "s": kernel}
    return Layer(name, "conv", einsum, bounds, static=("W",), extra_params=extra), h_out


def _resnet50(m, batch):
    layers = []
    st = m["stem"]
    conv, h = _conv("conv1", batch, m["in_channels"], st["out"], m["image"], st["kernel"], st["stride"], st["pad"])
    layers += [conv, Layer("conv1.relu", "relu", elements=batch * st["out"] * h * h)]
    sp = m["stem_pool"]
    h = (h + 2 * sp["pad"] - sp["kernel"]) // sp["stride"] + 1
    layers.append(Layer("maxpool", "pool", elements=batch * st["out"] * h * h))
    c_in = st["out"]
    for si, (blocks, width, stride) in enumerate(m["stages"], start=1):
        c_out = width * m["expansion"]
        for b in range(blocks):
            pre = f"layer{si}.{b}"
            s = stride if b == 0 else 1
            c1, h1 = _conv(f"{pre}.conv1", batch, c_in, width, h, 1, 1, 0)
            c2, h2 = _conv(f"{pre}.conv2", batch, width, width, h1, 3, s, 1)
            c3, h3 = _conv(f"{pre}.conv3", batch, width, c_out, h2, 1, 1, 0)
            layers += [c1, c2, c3]
            if b == 0:
                ds, _ = _conv(f"{pre}.downsample", batch, c_in, c_out, h, 1, s, 0)
                layers.append(ds)
            layers.append(Layer(f"{pre}.add_relu", "add", elements=batch * c_out * h3 * h3))
            c_in, h = c_out, h3
    layers.append(Layer("avgpool", "pool", elements=batch * c_in * h * h))
    layers.append(_gemm("fc", batch, c_in, m["classes"]))
    return layers


def _mobilenetv2(m, batch):
    st = m["stem"]
    conv, h = _conv("features.0", batch, m["in_channels"], st["out"], m["image"], st["kernel"], st["stride"], st["pad"])
    layers = [conv, Layer("features.0.relu6", "relu", elements=batch * st["out"] * h * h)]
    c_in, idx = st["out"], 1
    for t, c, n, s in m["blocks"]:
        for b in range(n):
            pre, stride, hidden = f"features.{idx}", (s if b == 0 else 1), c_in * t
            if t != 1:
                ex, _ = _conv(f"{pre}.expand", batch, c_in, hidden, h, 1, 1, 0)
                layers += [ex, Layer(f"{pre}.expand.relu6", "relu", elements=batch * hidden * h * h)]
            dw, h_out = _conv(f"{pre}.dw", batch, hidden, hidden, h, 3, stride, 1, depthwise=True)
            pw, _ = _conv(f"{pre}.project", batch, hidden, c, h_out, 1, 1, 0)
            layers += [dw, Layer(f"{pre}.dw.relu6", "relu", elements=batch * hidden * h_out * h_out), pw]
            if stride == 1 and c_in == c:
                layers.append(Layer(f"{pre}.add", "add", elements=batch * c * h_out * h_out))
            c_in, h, idx = c, h_out, idx + 1
    last, _ = _conv(f"features.{idx}", batch, c_in, m["last_channels"], h, 1, 1, 0)
    layers += [last, Layer(f"features.{idx}.relu6", "relu", elements=batch * m["last_channels"] * h * h),
               Layer("avgpool", "pool", elements=batch * m["last_channels"] * h * h),
               _gemm("classifier", batch, m["last_channels"], m["classes"])]
    return layers


def _attention_block(m, batch, q_len, kv_len, n, *, prefix="block", pre_norm=True):
    """One transformer block (repeated ``n`` times): projections, attention, FFN, norms, residuals."""
    d, heads, ffn = m["hidden"], m["heads"], m["ffn"]
    dh = d // heads
    tokens = batch * q_len
    bias = m.get("bias", True)
    norm = m.get("norm", "layernorm")
    norm_params = d if norm == "rmsnorm" else 2 * d
    act = m.get("activation", "gelu")

    def norm_layer(tag):
        return Layer(f"{prefix}.{tag}", norm, elements=tokens * d, count=n, extra_params=norm_params)

    attn = [_gemm(f"{prefix}.attn.{p}_proj", tokens, d, d, n, bias) for p in "qkv"]
    if m.get("rotary"):
        attn.append(Layer(f"{prefix}.attn.rotary", "mul", elements=2 * tokens * d, count=n))
    attn += [
        Layer(f"{prefix}.attn.qk", "bmm", QK_BMM, {"b": batch * heads, "i": q_len, "j": kv_len, "k": dh}, count=n),
        Layer(f"{prefix}.attn.softmax", "softmax", elements=batch * heads * q_len * kv_len, count=n),
        Layer(f"{prefix}.attn.av", "bmm", AV_BMM, {"b": batch * heads, "i": q_len, "j": kv_len, "k": dh}, count=n),
        _gemm(f"{prefix}.attn.o_proj", tokens, d, d, n, bias),
        Layer(f"{prefix}.attn.residual", "add", elements=tokens * d, count=n),
    ]
    if m.get("gated_ffn"):
        ffn_layers = [_gemm(f"{prefix}.ffn.gate_proj", tokens, d, ffn, n, bias),
                      _gemm(f"{prefix}.ffn.up_proj", tokens, d, ffn, n, bias),
                      Layer(f"{prefix}.ffn.{act}", act, elements=tokens * ffn, count=n),
                      Layer(f"{prefix}.ffn.gate_mul", "mul", elements=tokens * ffn, count=n),
                      _gemm(f"{prefix}.ffn.down_proj", tokens, ffn, d, n, bias)]
    else:
        ffn_layers = [_gemm(f"{prefix}.ffn.fc1", tokens, d, ffn, n, bias),
                      Layer(f"{prefix}.ffn.{act}", act, elements=tokens * ffn, count=n),
                      _gemm(f"{prefix}.ffn.fc2", tokens, ffn, d, n, bias)]
    ffn_layers.append(Layer(f"{prefix}.ffn.residual", "add", elements=tokens * d, count=n))
    if pre_norm:
        return [norm_layer("norm1"), *attn, norm_layer("norm2"), *ffn_layers]
    return [*attn, norm_layer("norm1"), *ffn_layers, norm_layer("norm2")]


def _encoder(m, batch, seq):
    d, tokens = m["hidden"], batch * seq
    emb = (m["vocab"] + m["max_positions"] + m["type_vocab"]) * d
    layers = [Layer("embeddings", "embedding", elements=tokens * d, extra_params=emb),
              Layer("embeddings.norm", "layernorm", elements=tokens * d, extra_params=2 * d)]
    layers += _attention_block(m, batch, seq, seq, m["layers"], pre_norm=False)
    layers.append(_gemm("pooler", batch, d, d))
    return layers


def _vit(m, batch):
    d, grid = m["hidden"], m["image"] // m["patch"]
    seq = grid * grid + 1
    patch = Layer("patch_embed", "conv", f"O[n,k,p,q] += I[n,c,p*{m['patch']}+r,q*{m['patch']}+s] * W[k,c,r,s]",
                  {"n": batch, "k": d, "c": m["in_channels"], "p": grid, "q": grid, "r": m["patch"], "s": m["patch"]},
                  static=("W",), extra_params=d + d + seq * d)  # bias, class token, position embedding
    layers = [patch, *_attention_block(m, batch, seq, seq, m["layers"]),
              Layer("norm", "layernorm", elements=batch * seq * d, extra_params=2 * d),
              _gemm("head", batch, d, m["classes"])]
    return layers, seq


def _decoder(m, batch, phase, q_len, kv_len):
    d = m["hidden"]
    tokens = batch * q_len
    emb = m["vocab"] * d + (0 if m.get("rotary") else m["max_positions"] * d)
    norm = m.get("norm", "layernorm")
    layers = [Layer("embeddings", "embedding", elements=tokens * d, extra_params=emb),
              *_attention_block(m, batch, q_len, kv_len, m["layers"]),
              Layer("final_norm", norm, elements=tokens * d, extra_params=d if norm == "rmsnorm" else 2 * d),
              _gemm("lm_head", batch, d, m["vocab"], bias=False, static=not m.get("tied_lm_head"))]
    return layers


def gemm_workload(name: str, *, seq=None, kv_len=None, batch: int = 1) -> Workload:
    """``gemm:M,K,N``: one GEMM layer C[i,j] += A[i,k] * B[k,j] with i < M, k < K, j < N."""
    text = name[len("gemm:"):]
    problems = []
    try:
        sizes = [int(v) for v in text.split(",")]
    except ValueError:
        sizes = []
    if len(sizes) != 3 or any(v < 1 for v in sizes):
        problems.append(problem("workload", "a single GEMM reads gemm:M,K,N with three positive integers, e.g. "
                                "gemm:64,128,32", name))
    for flag, v in (("seq", seq), ("kv_len", kv_len)):
        if v is not None:
            problems.append(problem(flag, "a gemm:M,K,N workload has no sequence; omit it", v))
    if batch != 1:
        problems.append(problem("batch", "a gemm:M,K,N workload is one GEMM; fold a batch into M", batch))
    if problems:
        raise SpecError(problems)
    m, k, n = sizes
    layer = Layer(name="gemm", kind="gemm", einsum="C[i,j] += A[i,k] * B[k,j]", bounds={"i": m, "k": k, "j": n})
    return Workload(name=name, layers=(layer,))


def get_workload(name: str, seq: int | None = None, phase: str = "prefill", kv_len: int | None = None,
                 batch: int = 1) -> Workload:
    """Build a named workload.

    ``seq`` is the prompt length (prefill) of a text model; ``phase="decode"`` builds one generation
    step of a decoder with ``kv_len`` cached tokens (default: the model's default sequence length).
    Vision models take neither. Raises `SpecError` listing known names or the bad argument.
    """
    if isinstance(name, str) and name.startswith("gemm:"):
        return gemm_workload(name, seq=seq, kv_len=kv_len, batch=batch)
    models = _models()
    if name not in models:
        raise SpecError([problem("workload", f"unknown workload; known: {', '.join(sorted(models))}", name)])
    m = models[name]
    fam = m["family"]
    problems = []
    if not isinstance(batch, int) or batch < 1:
        problems.append(problem("batch", "must be a positive integer", batch))
    if phase not in PHASES:
        problems.append(problem("phase", f"must be one of {PHASES}", phase))
    elif phase == "decode" and fam != "decoder":
        problems.append(problem("phase", f"{name} is not a decoder; only 'prefill' applies", phase))
    if fam in ("cnn", "vit"):
        if seq is not None:
            problems.append(problem("seq", f"{name} is a vision model with a fixed input; omit seq", seq))
        if kv_len is not None:
            problems.append(problem("kv_len", f"{name} has no KV cache; omit kv_len", kv_len))
    else:
        max_pos = m["max_positions"]
        if phase == "decode":
            if seq is not None:
                problems.append(problem("seq", "decode takes kv_len (cached tokens), not seq", seq))
            # beyond the trained positions the shapes extrapolate (long-context variants); architects
            # sweep sequence length, so any length is accepted
            kv = m["default_seq"] - 1 if kv_len is None else kv_len
            if not isinstance(kv, int) or isinstance(kv, bool) or kv < 0:
                problems.append(problem("kv_len", f"must be an integer >= 0 (cached tokens; {name} was trained "
                                                  f"with {max_pos} positions)", kv_len))
        else:
            if kv_len is not None:
                problems.append(problem("kv_len", "applies to phase='decode' only", kv_len))
            s = m["default_seq"] if seq is None else seq
            if not isinstance(s, int) or isinstance(s, bool) or s < 1:
                problems.append(problem("seq", f"must be an integer >= 1 ({name} was trained with {max_pos} "
                                               "positions; longer sequences extrapolate the shapes)", seq))
    if problems:
        raise SpecError(problems)

    info = dict(heads=m.get("heads"), n_layers=m.get("layers"),
                head_dim=m["hidden"] // m["heads"] if "heads" in m else None)
    if name == "resnet50":
        return Workload(name, tuple(_resnet50(m, batch)), batch=batch)
    if name == "mobilenetv2":
        return Workload(name, tuple(_mobilenetv2(m, batch)), batch=batch)
    if fam == "vit":
        layers, s = _vit(m, batch)
        return Workload(name, tuple(layers), seq=s, batch=batch, **info)
    if fam == "encoder":
        return Workload(name, tuple(_encoder(m, batch, s)), seq=s, batch=batch, **info)
    if phase == "decode":
        return Workload(name, tuple(_decoder(m, batch, "decode", 1, kv + 1)), seq=1, phase="decode",
                        kv_len=kv, batch=batch, **info)
    return Workload(name, tuple(_decoder(m, batch, "prefill", s, s)), seq=s, batch=batch, **info)
