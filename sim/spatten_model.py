"""Bit-exact numpy models of the SpAtten engine's fixed-point arithmetic (no hardware library imported).

These are the golden functions the RTL is checked against value for value, and the functional half of the
cycle model: the top-k's data-dependent latency and the progressive-quantization refetch depend on the exact
fixed-point probabilities, so the model computes them the way the hardware does. Formats are
:class:`archgen.arch.spatten_spec.SpattenFormats`; docs/spatten.md derives them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from archgen.arch.spatten_spec import SpattenFormats, SpattenSpec, spatten_formats

__all__ = [
    "mask_lsbs", "qk_scores", "exp_fixed", "softmax_fixed", "SoftmaxTrace", "pq_need_lsb", "topk_keep_mask",
    "pv_accumulate", "QueryResult", "core_reference", "threshold_fx",
]


def mask_lsbs(x: np.ndarray, lsb_bits: int) -> np.ndarray:
    """The MSB part of two's-complement values: the low ``lsb_bits`` cleared (floor to a multiple of 2**lsb)."""
    return np.asarray(x, dtype=np.int64) & ~np.int64((1 << lsb_bits) - 1)


def qk_scores(q: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Exact integer dot products of one query (D,) with keys (n, D)."""
    return np.asarray(keys, dtype=np.int64) @ np.asarray(q, dtype=np.int64)


def exp_fixed(d: np.ndarray, shift: int, fmt: SpattenFormats) -> np.ndarray:
    """exp(-d * 2**-shift) in UQ1.exp_frac for integer d >= 0, as the RTL computes it.

    Range reduction to 2**-(n + f) with y = d * log2(e) in fixed point; 2**-f = exp(-f ln 2) by a Taylor
    series of order len(taylor_coeffs) - 1 evaluated with Horner steps that each floor to exp_frac bits.
    """
    fb = fmt.exp_frac
    d = np.asarray(d, dtype=np.int64)
    y = (d * fmt.log2e_fx) >> shift
    n_int = y >> fb
    f = y & ((1 << fb) - 1)
    t = (f * fmt.ln2_fx) >> fb
    coeffs = fmt.taylor_coeffs
    acc = np.full_like(t, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = c + ((acc * t) >> fb)
    acc = np.clip(acc, 0, 1 << fb)
    return np.where(n_int >= fmt.exp_bits, 0, acc >> np.minimum(n_int, fmt.exp_bits))


@dataclass(frozen=True)
class SoftmaxTrace:
    """Every intermediate of one fixed-point softmax row (all integers)."""

    max_score: int
    exps: np.ndarray
    total: int
    recip: int
    probs: np.ndarray


def softmax_fixed(scores: np.ndarray, shift: int, fmt: SpattenFormats) -> SoftmaxTrace:
    """Softmax of integer scores scaled by 2**-shift; probabilities in UQ1.prob_frac (1.0 = 2**prob_frac)."""
    s = np.asarray(scores, dtype=np.int64)
    if s.size == 0:
        raise ValueError("softmax of an empty row: n_keys must be at least 1")
    m = int(s.max())
    e = exp_fixed(m - s, shift, fmt)
    total = int(e.sum())
    recip = (1 << fmt.recip_num_bits) // total
    probs = (e * recip) >> (fmt.recip_num_bits - fmt.prob_frac)
    return SoftmaxTrace(m, e, total, recip, probs)


def threshold_fx(threshold: float, fmt: SpattenFormats) -> int:
    """The PQ threshold as the unsigned UQ1.prob_frac constant the hardware compares against."""
    return min(round(threshold * (1 << fmt.prob_frac)), (1 << fmt.prob_bits) - 1)


def pq_need_lsb(probs: np.ndarray, thr_fx: int) -> bool:
    """Progressive quantization: fetch the LSBs when the row's largest probability is below the threshold."""
    return int(np.max(probs)) < thr_fx


def topk_keep_mask(values: np.ndarray, k: int) -> np.ndarray:
    """Which of ``values`` the top-k keeps: all above the k-th largest, then the earliest equal ones."""
    v = np.asarray(values, dtype=np.int64)
    n = v.size
    if k <= 0:
        return np.zeros(n, dtype=bool)
    if k >= n:
        return np.ones(n, dtype=bool)
    kth = np.sort(v)[::-1][k - 1]
    keep = v > kth
    need = k - int(keep.sum())
    eq = np.flatnonzero(v == kth)[:need]
    keep[eq] = True
    return keep


def pv_accumulate(probs: np.ndarray, values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """sum over kept rows of prob_fx * v (exact integers); pruned rows contribute nothing (no renormalising)."""
    p = np.where(keep, np.asarray(probs, dtype=np.int64), 0)
    return p @ np.asarray(values, dtype=np.int64)


@dataclass(frozen=True)
class QueryResult:
    """What the core computes for one query, bit for bit."""

    out: np.ndarray
    probs: np.ndarray
    keep: np.ndarray
    need_lsb: bool
    passes: int
    first_pass_probs: np.ndarray


def core_reference(spec: SpattenSpec, q: np.ndarray, keys: np.ndarray, values: np.ndarray, *, shift: int,
                   keep_k: int | None = None, pq_enable: bool = True, thr_fx: int | None = None) -> QueryResult:
    """One query through the core: MSB pass, PQ decision, optional full-precision pass, local-V top-k, PxV."""
    fmt = spatten_formats(spec)
    n = len(keys)
    if thr_fx is None:
        thr_fx = threshold_fx(spec.pq.threshold, fmt)
    lsb = spec.pq.lsb_bits if pq_enable else 0
    first = softmax_fixed(qk_scores(q, mask_lsbs(keys, lsb)), shift, fmt)
    need = pq_enable and pq_need_lsb(first.probs, thr_fx)
    sm = softmax_fixed(qk_scores(q, keys), shift, fmt) if need else first
    vals = values if (need or not pq_enable) else mask_lsbs(values, spec.pq.lsb_bits)
    k = n if keep_k is None else keep_k
    keep = topk_keep_mask(sm.probs, k) if k < n else np.ones(n, dtype=bool)
    out = pv_accumulate(sm.probs, vals, keep)
    return QueryResult(out, sm.probs, keep, bool(need), 2 if need else 1, first.probs)
