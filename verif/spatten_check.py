"""Host-side checks of the SpAtten engine: the core on Verilator against numpy and the cycle model.

:func:`verify_core` is what ``archgen verify SPEC --unit core`` calls. Three comparisons per run:
1. RTL outputs == the bit-exact fixed-point model (archgen.sim.spatten_model.core_reference), exactly;
2. RTL outputs vs float64 numpy attention on the same inputs (the keys/values the hardware actually used
   after its progressive-quantization decision, and its local-V keep set): ``max_error`` in units of
   max|V|, which must stay within ``OUTPUT_TOLERANCE`` (docs/spatten.md);
3. RTL cycles (command handshake to done) == model cycles (core_cycles), exactly.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from archgen.arch.spatten_spec import SpattenSpec, spatten_formats
from archgen.sim.spatten_model import core_cycles, mask_lsbs, threshold_fx

__all__ = ["verify_core", "float_attention", "default_shift", "OUTPUT_TOLERANCE", "core_verilog"]

# Largest allowed |RTL output - float attention| / max|V|: the probabilities carry 2**-15 LSBs plus the
# exp approximation error (about 1.5e-4 at worst, docs/spatten.md), and the output sums n of them.
OUTPUT_TOLERANCE = 2e-3


@functools.lru_cache(maxsize=4)
def core_verilog(spec: SpattenSpec) -> str:
    from archgen.rtlgen.spatten_top import build_spatten
    return build_spatten(spec)[0]


def default_shift(spec: SpattenSpec, value_bits_used: int = 10) -> int:
    """A score scale 2**-shift giving O(1) softmax logits for random inputs of ``value_bits_used`` bits.

    With q, k uniform in +-2**(v-1), a dot product has standard deviation about 2**(2v-2) * sqrt(D) / 3;
    the shift maps that to about 2 (the usual 1/sqrt(D) scaling folded into a power of two).
    """
    sigma = 2 ** (2 * value_bits_used - 2) * math.sqrt(spec.head_dim) / 3
    return max(0, round(math.log2(sigma / 2)))


def float_attention(q: np.ndarray, keys: np.ndarray, values: np.ndarray, shift: int,
                    keep: np.ndarray | None = None) -> np.ndarray:
    """softmax(q.K^T * 2**-shift) V in float64; rows not in ``keep`` contribute nothing (no renormalising)."""
    s = keys.astype(np.float64) @ q.astype(np.float64) / 2.0 ** shift
    p = np.exp(s - s.max())
    p /= p.sum()
    if keep is not None:
        p = np.where(keep, p, 0.0)
    return p @ values.astype(np.float64)


def verify_core(spec: SpattenSpec, n_keys: int, n_queries: int, seed: int, local_v_keep: int | None = None, *,
                pq_enable: bool = True, shift: int | None = None, value_bits: int = 10, bank: int = 1,
                cache_dir=None, timeout_s: float | None = 600.0) -> dict:
    """Random K, V, Q on the core RTL (Verilator) vs the fixed-point model, float numpy and the cycle model.

    Returns ``{"correct", "bit_exact", "max_error", "tolerance", "rtl_cycles", "model_cycles",
    "cycles_match", "need_lsb", "kept", "passed"}``; ``correct`` means bit-exact and within tolerance and
    cycle-exact. Raises ValueError for arguments the engine cannot run.
    """
    from archgen.verif.runner import run_testbench

    if not 1 <= n_keys <= spec.max_tokens:
        raise ValueError(f"n_keys must be in 1..{spec.max_tokens} for {spec.name!r}, not {n_keys!r}")
    if not 1 <= n_queries < 1 << 16:
        raise ValueError(f"n_queries must be in 1..65535, not {n_queries!r}")
    if local_v_keep is not None and not 0 <= local_v_keep <= spec.max_tokens:
        raise ValueError(f"local_v_keep must be in 0..{spec.max_tokens}, not {local_v_keep!r}")
    fmt = spatten_formats(spec)
    rng = np.random.default_rng(seed)
    lim = 1 << (value_bits - 1)
    keys = rng.integers(-lim, lim, (n_keys, spec.head_dim))
    values = rng.integers(-lim, lim, (n_keys, spec.head_dim))
    queries = rng.integers(-lim, lim, (n_queries, spec.head_dim))
    shift = default_shift(spec, value_bits) if shift is None else shift
    keep_k = n_keys if local_v_keep is None else min(local_v_keep, n_keys)
    thr = threshold_fx(spec.pq.threshold, fmt)
    model = core_cycles(spec, queries, keys, values, shift=shift, keep_k=keep_k, pq_enable=pq_enable,
                        thr_fx=thr, seed=seed & 0xFFFF)
    params = {
        "bits": spec.bits, "dim": spec.head_dim, "acc_bits": fmt.acc_bits, "shift_bits": fmt.shift_bits,
        "index_bits": max(1, (spec.max_tokens - 1).bit_length()), "count_bits": spec.max_tokens.bit_length(),
        "keys": keys.tolist(), "values": values.tolist(), "queries": queries.tolist(), "shift": shift,
        "keep_k": keep_k, "pq_enable": int(pq_enable), "threshold": thr, "bank": bank, "seed": seed & 0xFFFF,
        "max_cycles": 4 * model.cycles + 1000,
    }
    res = run_testbench(core_verilog(spec), spec.name, "archgen.verif.tb_spatten", params,
                        cache_dir=cache_dir, timeout_s=timeout_s)
    got = np.array(res.get("outputs", []), dtype=np.int64).reshape(-1, spec.head_dim)
    want = model.outputs
    bit_exact = got.shape == want.shape and bool(np.array_equal(got, want))
    errors = []
    for i, r in enumerate(model.results):
        k_used = keys if (r.need_lsb or not pq_enable) else mask_lsbs(keys, spec.pq.lsb_bits)
        v_used = values if (r.need_lsb or not pq_enable) else mask_lsbs(values, spec.pq.lsb_bits)
        ref = float_attention(queries[i], k_used, v_used, shift, r.keep)
        if i < len(got):
            errors.append(np.max(np.abs(got[i] / 2.0 ** fmt.prob_frac - ref)) / max(1, np.abs(v_used).max()))
    max_error = float(max(errors)) if errors else float("inf")
    cycles_match = res.get("cycles") == model.cycles
    correct = bit_exact and max_error <= OUTPUT_TOLERANCE and cycles_match and bool(res.get("passed"))
    return {"correct": correct, "bit_exact": bit_exact, "max_error": max_error, "tolerance": OUTPUT_TOLERANCE,
            "rtl_cycles": res.get("cycles"), "model_cycles": model.cycles, "cycles_match": cycles_match,
            "need_lsb": [bool(r.need_lsb) for r in model.results], "rtl_need_lsb": res.get("need_lsb"),
            "kept": [int(r.keep.sum()) for r in model.results], "passed": bool(res.get("passed")),
            "out_cycles": res.get("out_cycles"), "shift": shift,
            **({"log_tail": res["log_tail"]} if "log_tail" in res else {})}
