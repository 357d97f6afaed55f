"""Attention traces: per layer and head, the attention probabilities SpAtten's pruning needs.

File format (version 1, documented in docs/trace_format.md): one ``.npz`` archive holding

- ``header``: UTF-8 JSON bytes (uint8 array) with the fields of `TraceHeader`;
- ``probs``: attention probabilities, shape ``[layers, heads, queries, seq_len]``, float16 or float32;
  row ``q`` is the softmax output of query ``query_offset + q`` over all ``seq_len`` keys;
- ``head_importance``: float32 ``[layers, heads]``, sum over queries and features of
  ``|attention output|`` of the head (the quantity SpAtten's cascade head pruning accumulates).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from archgen.arch.errors import SpecError, problem

__all__ = ["FORMAT", "FORMAT_VERSION", "AttentionTrace", "TraceHeader", "check_trace_workload", "load_trace", "save_trace",
           "synthetic_trace"]

FORMAT = "archgen-attention-trace"
FORMAT_VERSION = 1
_DTYPES = ("float16", "float32")
_ROW_SUM_TOL = {"float16": 2e-2, "float32": 1e-4}


@dataclass(frozen=True)
class TraceHeader:
    """What a trace holds. ``queries`` rows start at token position ``query_offset``: a prefill trace
    has ``queries == seq_len`` and offset 0; a decode trace of ``g`` generated tokens after a prompt
    of ``P`` tokens has ``queries = g``, ``seq_len = P + g``, ``query_offset = P``."""

    model: str
    layers: int
    heads: int
    seq_len: int
    queries: int
    query_offset: int = 0
    phase: str = "prefill"
    causal: bool = False
    dtype: str = "float16"
    tokens: tuple[str, ...] | None = None
    source: str = "synthetic"
    params: dict | None = None
    format: str = FORMAT
    version: int = FORMAT_VERSION

    def validate(self) -> None:
        problems = []
        if self.format != FORMAT:
            problems.append(problem("header.format", f"not an archgen trace; expected {FORMAT!r}", self.format))
        if self.version != FORMAT_VERSION:
            problems.append(problem("header.version", f"unsupported trace version; this archgen reads "
                                                      f"{FORMAT_VERSION}", self.version))
        for name in ("layers", "heads", "seq_len", "queries"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                problems.append(problem(f"header.{name}", "must be a positive integer", v))
        if not isinstance(self.query_offset, int) or self.query_offset < 0:
            problems.append(problem("header.query_offset", "must be a non-negative integer", self.query_offset))
        elif isinstance(self.queries, int) and isinstance(self.seq_len, int) \
                and self.query_offset + self.queries > self.seq_len:
            problems.append(problem("header.query_offset", f"query_offset + queries exceeds seq_len "
                                                           f"{self.seq_len}", self.query_offset))
        if self.phase not in ("prefill", "decode"):
            problems.append(problem("header.phase", "must be 'prefill' or 'decode'", self.phase))
        if self.dtype not in _DTYPES:
            problems.append(problem("header.dtype", f"must be one of {_DTYPES}", self.dtype))
        if self.tokens is not None and len(self.tokens) != self.seq_len:
            problems.append(problem("header.tokens", f"must list seq_len={self.seq_len} tokens",
                                    len(self.tokens)))
        if problems:
            raise SpecError(problems)


@dataclass(frozen=True, eq=False)
class AttentionTrace:
    header: TraceHeader
    probs: np.ndarray            # [layers, heads, queries, seq_len]
    head_importance: np.ndarray  # [layers, heads]

    def __post_init__(self):
        self.header.validate()
        _check_arrays(self.header, self.probs, self.head_importance)

    def query_positions(self) -> np.ndarray:
        return self.header.query_offset + np.arange(self.header.queries)


def _check_arrays(h: TraceHeader, probs: np.ndarray, head_imp: np.ndarray) -> None:
    problems = []
    want = (h.layers, h.heads, h.queries, h.seq_len)
    if probs.shape != want:
        names = ("layers", "heads", "queries", "seq_len")
        if probs.ndim == 4:
            bad = [f"{n} (header {w}, array {g})" for n, w, g in zip(names, want, probs.shape) if w != g]
        else:
            bad = [f"{probs.ndim} dimensions instead of 4"]
        problems.append(problem("probs.shape", f"does not match the header [layers, heads, queries, seq_len]"
                                               f" = {list(want)}: {'; '.join(bad)}", tuple(probs.shape)))
    elif probs.dtype.kind != "f" or str(probs.dtype) != h.dtype:
        problems.append(problem("probs.dtype", f"header says {h.dtype}", str(probs.dtype)))
    else:
        tol = _ROW_SUM_TOL[h.dtype]
        for layer in range(h.layers):
            p = probs[layer].astype(np.float32)
            if not np.isfinite(p).all() or (p < 0).any():
                problems.append(problem(f"probs[{layer}]", "probabilities must be finite and >= 0"))
                break
            worst = float(np.abs(p.sum(axis=-1) - 1.0).max())
            if worst > tol:
                problems.append(problem(f"probs[{layer}]", f"rows must sum to 1 (tolerance {tol})",
                                        round(1.0 + worst, 6)))
                break
    if head_imp.shape != (h.layers, h.heads):
        problems.append(problem("head_importance.shape", f"must be [layers, heads] = {[h.layers, h.heads]}",
                                tuple(head_imp.shape)))
    elif head_imp.dtype.kind not in "fiu":
        problems.append(problem("head_importance.dtype", "must be numeric", str(head_imp.dtype)))
    elif not np.isfinite(head_imp).all() or (head_imp < 0).any():
        problems.append(problem("head_importance", "must be finite and >= 0 (a sum of |P V|)",
                                float(head_imp[~np.isfinite(head_imp) | (head_imp < 0)].flat[0])))
    if problems:
        raise SpecError(problems)


def save_trace(trace: AttentionTrace, path: str | Path) -> Path:
    """Write ``trace`` as a version-1 ``.npz`` (uncompressed so it can be memory-mapped later)."""
    path = Path(path)
    header = asdict(trace.header)
    header["tokens"] = list(trace.header.tokens) if trace.header.tokens is not None else None
    blob = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    with path.open("wb") as fh:
        np.savez(fh, header=blob, probs=trace.probs, head_importance=trace.head_importance.astype(np.float32))
    return path


def _workload_problems(h: TraceHeader, workload) -> list:
    problems = []
    if workload.heads is None:
        return [problem("workload", f"{workload.name} has no attention heads; a trace does not apply",
                        workload.name)]
    if h.layers != workload.n_layers:
        problems.append(problem("header.layers", f"{workload.name} has {workload.n_layers} layers", h.layers))
    if h.heads != workload.heads:
        problems.append(problem("header.heads", f"{workload.name} has {workload.heads} heads", h.heads))
    if workload.phase == "decode":
        if h.phase != "decode":
            problems.append(problem("header.phase", "the workload is a decode step; the trace must be a "
                                                    "decode trace", h.phase))
        elif h.query_offset != workload.kv_len:
            problems.append(problem("header.query_offset", f"the decode workload has kv_len={workload.kv_len}"
                                                           " cached tokens before the first generated one",
                                    h.query_offset))
    else:
        if h.seq_len != workload.seq:
            problems.append(problem("header.seq_len", f"the workload has seq={workload.seq}", h.seq_len))
        if h.phase != "prefill":
            problems.append(problem("header.phase", "the workload is a prefill; the trace must be one", h.phase))
    return problems


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file; any numpy, zip or OS failure becomes one SpecError naming the file."""
    if path.is_dir():
        raise SpecError([problem("trace", "is a directory; give an .npz trace file", str(path))])
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise SpecError([problem("trace", f"{path} holds a single array, not an .npz archive of a trace")])
            return {k: data[k] for k in data.files}
    except SpecError:
        raise
    except OSError as exc:
        raise SpecError([problem("trace", f"cannot read {path}: {exc.strerror or exc}")]) from None
    except ValueError as exc:
        why = ("it is neither an .npz archive nor an .npy array (numpy could only read it by unpickling "
               "Python objects, which archgen never does)" if "pickle" in str(exc) else f"numpy cannot read it ({exc})")
        raise SpecError([problem("trace", f"{path} is not an .npz trace: {why}")]) from None
    except Exception as exc:          # EOFError, zipfile.BadZipFile, zlib.error, KeyError from a damaged archive
        raise SpecError([problem("trace", f"{path} is not a readable .npz trace (empty, truncated or damaged: "
                                 f"{type(exc).__name__}: {exc}); traces are written by archgen.workloads.trace.save_trace")]) from None


def load_trace(path: str | Path, workload=None) -> AttentionTrace:
    """Read a trace and check it against its own header and, when given, a `Workload`."""
    arrays = _read_npz(Path(path))
    missing = [k for k in ("header", "probs", "head_importance") if k not in arrays]
    if missing:
        raise SpecError([problem("trace", f"{path} lacks the arrays {', '.join(missing)}; it is not an archgen trace")])
    try:
        raw = json.loads(arrays["header"].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise SpecError([problem("trace.header", f"not valid JSON text: {exc}")]) from None
    if not isinstance(raw, dict):
        raise SpecError([problem("trace.header", "must be a JSON object with model, layers, heads, seq_len, queries",
                                 type(raw).__name__)])
    known = {f.name for f in fields(TraceHeader)}
    unknown = sorted(set(raw) - known)
    required = {"model", "layers", "heads", "seq_len", "queries"} - set(raw)
    if unknown or required:
        raise SpecError([problem(f"header.{k}", "unknown field") for k in unknown]
                        + [problem(f"header.{k}", "required field missing") for k in sorted(required)])
    if raw.get("tokens") is not None:
        if not isinstance(raw["tokens"], list) or not all(isinstance(t, str) for t in raw["tokens"]):
            raise SpecError([problem("header.tokens", "must be a list of strings", raw["tokens"])])
        raw["tokens"] = tuple(raw["tokens"])
    header = TraceHeader(**raw)
    trace = AttentionTrace(header, arrays["probs"], arrays["head_importance"])
    if workload is not None:
        check_trace_workload(trace, workload, source=str(path))
    return trace


def check_trace_workload(trace: AttentionTrace, workload, *, source: str | None = None) -> None:
    """Raise `SpecError` naming every header field that does not fit ``workload``."""
    problems = _workload_problems(trace.header, workload)
    if problems:
        raise SpecError(problems, source=source)


def synthetic_trace(layers: int, heads: int, seq_len: int, *, queries: int | None = None,
                    concentration: float = 2.0, token_correlation: float = 0.7, head_dim: int = 64,
                    causal: bool = False, seed: int = 0, model: str = "synthetic",
                    dtype: str = "float16") -> AttentionTrace:
    """Seeded synthetic attention trace.

    Logits of query ``q`` for key ``n`` in (layer, head) are
    ``concentration * (a * z[n] + sqrt(1 - a^2) * e[l,h,q,n])`` with ``z`` a per-token salience shared
    by all heads and layers (``a = token_correlation``) and ``e`` i.i.d. standard normal noise. The
    concentration is an inverse temperature: 0 gives uniform rows, large values put most of each
    row's probability on a few tokens. The shared salience is what makes cumulative token importance
    meaningful, as SpAtten observes on real models. Head importance is ``sum |P V|`` with a seeded
    ``V`` whose scale differs per head (log-normal), so heads differ as in trained models.
    With ``queries < seq_len`` the trace is a decode trace: the last ``queries`` tokens are generated
    ones (always causal).
    """
    queries = seq_len if queries is None else queries
    problems = []
    for name, v in (("layers", layers), ("heads", heads), ("seq_len", seq_len), ("queries", queries),
                    ("head_dim", head_dim)):
        if not isinstance(v, int) or v < 1:
            problems.append(problem(name, "must be a positive integer", v))
    if isinstance(queries, int) and isinstance(seq_len, int) and queries > seq_len:
        problems.append(problem("queries", f"cannot exceed seq_len={seq_len}", queries))
    if not concentration >= 0:
        problems.append(problem("concentration", "must be >= 0", concentration))
    if not 0 <= token_correlation <= 1:
        problems.append(problem("token_correlation", "must be in [0, 1]", token_correlation))
    if dtype not in _DTYPES:
        problems.append(problem("dtype", f"must be one of {_DTYPES}", dtype))
    if problems:
        raise SpecError(problems)
    decode = queries < seq_len
    causal = causal or decode
    offset = seq_len - queries
    rng = np.random.default_rng(seed)
    salience = rng.standard_normal(seq_len).astype(np.float32)
    a = float(token_correlation)
    probs = np.empty((layers, heads, queries, seq_len), dtype=dtype)
    head_imp = np.empty((layers, heads), dtype=np.float32)
    pos = offset + np.arange(queries)
    mask = np.arange(seq_len)[None, :] > pos[:, None] if causal else None
    for layer in range(layers):
        noise = rng.standard_normal((heads, queries, seq_len), dtype=np.float32)
        logits = concentration * (a * salience + np.sqrt(1.0 - a * a) * noise)
        if mask is not None:
            logits[:, mask] = -np.inf
        logits -= logits.max(axis=-1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=-1, keepdims=True)
        probs[layer] = p
        scale = np.exp(0.5 * rng.standard_normal(heads)).astype(np.float32)
        v = rng.standard_normal((heads, seq_len, head_dim), dtype=np.float32) * scale[:, None, None]
        head_imp[layer] = np.abs(p @ v).sum(axis=(1, 2))
    header = TraceHeader(model=model, layers=layers, heads=heads, seq_len=seq_len, queries=queries,
                         query_offset=offset, phase="decode" if decode else "prefill", causal=causal,
                         dtype=dtype, source="synthetic",
                         params={"concentration": concentration, "token_correlation": token_correlation,
                                 "head_dim": head_dim, "seed": seed})
    return AttentionTrace(header, probs, head_imp)
