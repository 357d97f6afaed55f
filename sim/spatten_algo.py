"""SpAtten's pruning and quantization algorithms applied to an attention trace (SPATTEN.md).

What is applied, layer by layer (and, for a decode trace, generation step by step):

- Cascade token pruning. ``s_tok[n] += sum over kept heads and processed queries of prob[h][q][n]``,
  accumulated across heads, layers and steps. Before layer ``l`` the top ``round(N * (1 - p_l))`` of the
  still-alive tokens are kept (``N`` = tokens existing so far); a pruned token is never fetched again
  and, in a prefill, its query row is no longer processed either (it left the sentence). In decode
  the token being generated is always kept. Ties are broken towards the earlier token.
- Cascade head pruning. ``s_head[h] += head_importance[l][h]`` (sum of ``|attention output|`` from the
  trace); the top ``round(H * (1 - ph_l))`` alive heads are kept; pruned heads never return.
- Schedules (the paper's rule): the first ``unpruned_frac`` of layers (15% tokens, 30% heads) are not
  pruned; the remaining layers' ratio ramps linearly from ``start`` to ``end`` with
  ``start + end = 2 * average``. The paper fixes only that sum; ``start = average / 2`` is our default.
- Local value pruning. Per processed query row, after softmax, the ``ratio`` of kept keys with the
  smallest probabilities have their V rows neither fetched nor multiplied. V rows are fetched once per
  (head, step): a one-query command (decode) fetches its kept rows once its keep mask is complete (the
  causal value fetch, sixteenth session); a command of several queries fetches every visible row (the
  union of its rows' kept rows is not known before its values are needed; before the sixteenth session
  it fetched that union, an oracle).
- Progressive quantization. K and V live in DRAM as MSB and LSB parts. MSBs are always fetched; a row
  whose maximum probability is below ``threshold`` re-fetches the LSBs of the keys (once per head and
  step if any row needs them) and of the values it uses, and recomputes its QxK scores once.

Our modelling choices, where the paper is silent or a trace cannot tell:
- Probabilities after pruning are the trace's probabilities renormalised over the kept keys (exactly
  the softmax of the same scores restricted to those keys). Later layers' activations would change
  when earlier tokens are pruned; a trace recorded on the dense model cannot show that.
- The quantization decision uses the full-precision (renormalised) row maximum; quantized scores
  differ slightly. Head importance is the trace's dense value.
- The dense baseline runs on the same engine: every token and head, K and V at ``msb + lsb`` bits,
  no recompute. Causal traces count only visible keys in both.
- Q is read at ``msb + lsb`` bits and the attention output written at the same width, per processed row
  and kept head, in both the pruned and the dense run.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from archgen.arch.errors import SpecError, problem
from archgen.arch.spatten_spec import TopKUnit

__all__ = ["LayerAttentionStats", "SpattenAlgoConfig", "SpattenAlgoResult", "prune_schedule", "run_spatten_algo"]


@dataclass(frozen=True)
class SpattenAlgoConfig:
    """Pruning and quantization settings. Ratios are fractions removed; 0 disables a technique."""

    token_prune: float = 0.0          # average token pruning ratio over the pruned layers
    token_prune_start: float | None = None  # ratio at the first pruned layer (default token_prune / 2)
    token_unpruned_frac: float = 0.15
    head_prune: float = 0.0
    head_prune_start: float | None = None
    head_unpruned_frac: float = 0.30
    value_prune: float = 0.0
    token_schedule: tuple[float, ...] | None = None   # explicit per-layer ratios (replace the ramp)
    head_schedule: tuple[float, ...] | None = None
    progressive: bool = True
    msb_bits: int = 8
    lsb_bits: int = 4
    threshold: float = 0.1

    def __post_init__(self):
        problems = []
        for name in ("token_prune", "head_prune", "value_prune"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v < 1):
                problems.append(problem(f"algo.{name}", "a pruning ratio must be in [0, 1)", v))
        for name in ("token_schedule", "head_schedule"):
            sched = getattr(self, name)
            if sched is not None and (not sched or not all(isinstance(v, (int, float)) and 0 <= v < 1 for v in sched)):
                problems.append(problem(f"algo.{name}", "per-layer pruning ratios must each be in [0, 1)", sched))
        for name in ("token_unpruned_frac", "head_unpruned_frac"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v <= 1):
                problems.append(problem(f"algo.{name}", "a fraction of layers must be in [0, 1]", v))
        if not (isinstance(self.threshold, (int, float)) and 0 <= self.threshold <= 1):
            problems.append(problem("algo.threshold", "a probability threshold must be in [0, 1]", self.threshold))
        if not isinstance(self.msb_bits, int) or self.msb_bits < 1:
            problems.append(problem("algo.msb_bits", "must be a positive integer", self.msb_bits))
        if not isinstance(self.lsb_bits, int) or self.lsb_bits < 0:
            problems.append(problem("algo.lsb_bits", "must be a non-negative integer", self.lsb_bits))
        for kind in ("token", "head"):
            avg, start = getattr(self, f"{kind}_prune"), getattr(self, f"{kind}_prune_start")
            if start is None or not isinstance(avg, (int, float)) or not 0 <= avg < 1:
                continue
            end = 2 * avg - start
            if not (0 <= start < 1 and 0 <= end < 1):
                problems.append(problem(f"algo.{kind}_prune_start", f"with average {avg} the ramp would end at "
                                                                     f"{end:.3g}; start and end must be in [0, 1)",
                                        start))
        if problems:
            raise SpecError(problems)
        for kind in ("token", "head"):
            avg = getattr(self, f"{kind}_prune")
            if getattr(self, f"{kind}_prune_start") is None and 2 * avg - avg / 2 >= 1:
                raise SpecError([problem(f"algo.{kind}_prune", "with the default start (average / 2) the ramp "
                                                                "would end at or above 1; lower it or set "
                                                                f"{kind}_prune_start", avg)])

    @property
    def full_bits(self) -> int:
        return self.msb_bits + self.lsb_bits


def prune_schedule(n_layers: int, average: float, unpruned_frac: float, start: float | None = None) -> np.ndarray:
    """Per-layer pruning ratio: ``round(unpruned_frac * n_layers)`` zeros, then a linear ramp from
    ``start`` to ``2 * average - start`` (``start`` defaults to ``average / 2``)."""
    ratios = np.zeros(n_layers)
    first = int(round(unpruned_frac * n_layers))
    m = n_layers - first
    if m <= 0 or average == 0:
        return ratios
    s = average / 2 if start is None else start
    e = 2 * average - s
    ratios[first:] = np.full(m, average) if m == 1 else np.linspace(s, e, m)
    return ratios


@dataclass(frozen=True)
class LayerAttentionStats:
    """One layer of one trace. Byte counts are DRAM reads unless named ``write``."""

    layer: int
    tokens: float                 # tokens existing (mean over steps for decode)
    tokens_kept: float            # keys kept after token pruning (mean over steps)
    heads_kept: float             # mean over steps
    heads: int
    rows: int                     # query rows processed (summed over kept heads and steps)
    key_msb_bytes: int
    key_lsb_bytes: int
    value_msb_bytes: int
    value_lsb_bytes: int
    query_bytes: int
    output_write_bytes: int
    lsb_row_fraction: float
    qk_macs: int
    av_macs: int
    dense_key_bytes: int
    dense_value_bytes: int
    dense_query_bytes: int
    dense_output_write_bytes: int
    dense_qk_macs: int
    dense_av_macs: int
    dense_rows: int
    # per processed row, for cycle models: keys scored, V rows multiplied, 1 if it recomputed with LSBs
    row_keys: np.ndarray = field(repr=False, compare=False, default=None)
    row_values: np.ndarray = field(repr=False, compare=False, default=None)
    row_lsb: np.ndarray = field(repr=False, compare=False, default=None)
    dense_row_keys: np.ndarray = field(repr=False, compare=False, default=None)
    # per processed row, cycles of the local-V top-k when a cycle function was given (else empty)
    row_topk_cycles: np.ndarray = field(repr=False, compare=False, default=None)
    # per processed row, the PxV windows over its kept tokens when a window function was given (else empty)
    row_pv_windows: np.ndarray = field(repr=False, compare=False, default=None)
    # rows per core command (one head of one step), in row order; the same for the dense baseline
    command_rows: np.ndarray = field(repr=False, compare=False, default=None)
    dense_command_rows: np.ndarray = field(repr=False, compare=False, default=None)
    # per command (as ``command_rows``, ``dense_command_rows``): the generation step it belongs to (0 for a
    # prefill); a decode step cannot start before the previous step's last layer is done, so each step's
    # commands are a stream of their own
    command_steps: np.ndarray = field(repr=False, compare=False, default=None)
    dense_command_steps: np.ndarray = field(repr=False, compare=False, default=None)
    # per command: its value load holds every value row its rows may read (MSBs; and LSBs for the rows
    # that refetch), so the core may sweep a row unpruned (the command's ``dense_ok`` bit, the fallback;
    # which commands: ``_dense_ok``, by the spec's ``units.topk.fallback``)
    command_dense_ok: np.ndarray = field(repr=False, compare=False, default=None)

    @property
    def dram_bytes(self) -> int:
        return (self.key_msb_bytes + self.key_lsb_bytes + self.value_msb_bytes + self.value_lsb_bytes
                + self.query_bytes + self.output_write_bytes)

    @property
    def dense_dram_bytes(self) -> int:
        return self.dense_key_bytes + self.dense_value_bytes + self.dense_query_bytes + self.dense_output_write_bytes

    @property
    def macs(self) -> int:
        return self.qk_macs + self.av_macs

    @property
    def dense_macs(self) -> int:
        return self.dense_qk_macs + self.dense_av_macs

    @property
    def dram_reduction(self) -> float:
        return self.dense_dram_bytes / self.dram_bytes if self.dram_bytes else float("inf")

    @property
    def compute_reduction(self) -> float:
        return self.dense_macs / self.macs if self.macs else float("inf")


@dataclass(frozen=True)
class SpattenAlgoResult:
    config: SpattenAlgoConfig
    head_dim: int
    layers: tuple[LayerAttentionStats, ...]
    token_schedule: tuple[float, ...]
    head_schedule: tuple[float, ...]

    @property
    def dram_bytes(self) -> int:
        return sum(s.dram_bytes for s in self.layers)

    @property
    def dense_dram_bytes(self) -> int:
        return sum(s.dense_dram_bytes for s in self.layers)

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.layers)

    @property
    def dense_macs(self) -> int:
        return sum(s.dense_macs for s in self.layers)

    @property
    def dram_reduction(self) -> float:
        return self.dense_dram_bytes / self.dram_bytes

    @property
    def compute_reduction(self) -> float:
        return self.dense_macs / self.macs

    @property
    def lsb_row_fraction(self) -> float:
        rows = sum(s.rows for s in self.layers)
        return sum(s.lsb_row_fraction * s.rows for s in self.layers) / rows if rows else 0.0


def _top(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Indices (ascending) of the k highest-scoring candidates; ties go to the lower index."""
    if k >= candidates.size:
        return candidates
    order = np.lexsort((candidates, -scores[candidates]))
    return np.sort(candidates[order[:k]])


def _nbytes(elements: int, bits: int) -> int:
    return math.ceil(elements * bits / 8)


class _LayerAccumulator:
    def __init__(self):
        self.tokens, self.kept, self.steps = 0.0, 0.0, 0
        self.c: dict[str, int] = {}
        self.lsb_rows = 0
        self.row_keys, self.row_values, self.row_lsb, self.dense_row_keys = [], [], [], []
        self.row_topk = []
        self.row_windows = []
        self.command_rows, self.dense_command_rows = [], []
        self.command_steps, self.dense_command_steps = [], []
        self.command_extra = []     # per command: the value bytes (MSB, LSB) a whole load adds to its kept rows'

    def add(self, **kw):
        for k, v in kw.items():
            self.c[k] = self.c.get(k, 0) + int(v)


FALLBACK_MODES = ("tail", "all", "none")


def _dense_ok(fallback: str, command_rows: list, extra: list, steps: list | None = None, tail: int = 1) -> np.ndarray:
    """Per command of a layer's stream (in order): whether it gets the core's ``dense_ok`` bit, so its value
    load holds every visible value row and the core may sweep a pruned row whose local-V top-k is late
    unpruned (the fallback, docs/spatten.md). ``tail``: the last command with rows of each stream (of the
    layer, or of each generation step of it when ``steps`` gives each command's step), the one nothing after
    it hides (mid-stream, waiting for a top-k costs no time, H93, so those rows stay pruned);
    ``all``: every command of more than one query, and any whose kept rows are already all its values (no
    extra bytes); ``none``: no command. ``tail`` (the spec's ``units.topk.fallback_tail``): with ``tail``, how
    many of the last commands with rows of each stream get it."""
    ok = np.zeros(len(command_rows), dtype=bool)
    if fallback == "all":
        ok[:] = [n > 1 or e == (0, 0) for n, e in zip(command_rows, extra)]
    elif fallback == "tail":
        step = np.zeros(len(command_rows), np.int64) if steps is None else np.asarray(steps, np.int64)
        rows = np.asarray(command_rows, dtype=np.int64)
        for t in np.unique(step):
            nonempty = np.flatnonzero((rows > 0) & (step == t))
            ok[nonempty[-tail:]] = True
    return ok


def _layer_schedule(n_layers: int, kind: str, explicit, average, unpruned_frac, start) -> np.ndarray:
    if explicit is None:
        return prune_schedule(n_layers, average, unpruned_frac, start)
    if len(explicit) != n_layers:
        raise SpecError([problem(f"pruning.{kind}.per_layer", f"has {len(explicit)} entries but the trace has "
                                 f"{n_layers} layers; give one ratio per layer", len(explicit))])
    return np.asarray(explicit, dtype=float)


def run_spatten_algo(trace, config: SpattenAlgoConfig = SpattenAlgoConfig(), *, head_dim: int = 64,
                     topk_cycles: Callable[[np.ndarray, int], int] | None = None,
                     pv_windows: Callable[[np.ndarray, int], int] | None = None,
                     fallback: str = "tail", fallback_tail: int = TopKUnit.fallback_tail) -> SpattenAlgoResult:
    """Apply the configured techniques to ``trace`` (`archgen.workloads.trace.AttentionTrace`).

    With local value pruning on and ``topk_cycles`` given, ``topk_cycles(probs, k)`` is called for every
    processed row with that row's renormalised probabilities over its visible kept keys and the number
    of V rows to keep; its results land in ``row_topk_cycles`` (a cycle model of the top-k engine).
    ``pv_windows(probs, k)`` likewise, into ``row_pv_windows`` (the PxV stage's windows over the kept rows).
    ``fallback`` (the spec's ``units.topk.fallback``): which commands get the core's ``dense_ok`` bit and
    load every visible value row (``_dense_ok``; ``fallback_tail``: the spec's ``units.topk.fallback_tail``),
    as every command of more than one query does; the others
    (one query) load their row's kept value rows only, after its keep mask (spatten_sim's ``after_mask``).
    """
    if fallback not in FALLBACK_MODES:
        raise SpecError([problem("units.topk.fallback", f"must be one of {', '.join(FALLBACK_MODES)}", fallback)])
    if isinstance(fallback_tail, bool) or not isinstance(fallback_tail, int) or fallback_tail < 1:
        raise SpecError([problem("units.topk.fallback_tail", "must be an integer >= 1", fallback_tail)])
    if not isinstance(head_dim, int) or head_dim < 1:
        raise SpecError([problem("head_dim", "must be a positive integer", head_dim)])
    h = trace.header
    L, H, K = h.layers, h.heads, h.seq_len
    tok_sched = _layer_schedule(L, "token", config.token_schedule, config.token_prune, config.token_unpruned_frac,
                                config.token_prune_start)
    head_sched = _layer_schedule(L, "head", config.head_schedule, config.head_prune, config.head_unpruned_frac,
                                 config.head_prune_start)
    positions = trace.query_positions()
    steps = [np.arange(h.queries)] if h.phase == "prefill" else [np.array([q]) for q in range(h.queries)]
    s_tok = np.zeros(K)
    s_head = np.zeros(H)
    alive_tok = np.ones(K, dtype=bool)
    alive_head = np.arange(H)
    acc = [_LayerAccumulator() for _ in range(L)]
    d, full, msb, lsb = head_dim, config.full_bits, config.msb_bits, config.lsb_bits
    use_pq = config.progressive and lsb > 0

    for step, rows in enumerate(steps):
        last_pos = int(positions[rows[-1]])
        existing = np.arange(last_pos + 1) if h.causal else np.arange(K)
        for l in range(L):
            a = acc[l]
            cand = existing[alive_tok[existing]]
            keep_n = int(round(existing.size * (1.0 - tok_sched[l])))
            if h.phase == "decode":
                keep_n = max(keep_n, 1)
                kept = _top(s_tok, cand[cand != last_pos], keep_n - 1)
                kept = np.union1d(kept, [last_pos])
            else:
                kept = _top(s_tok, cand, max(keep_n, 1))
            alive_tok[np.setdiff1d(cand, kept)] = False
            alive_head = _top(s_head, alive_head, max(int(round(H * (1.0 - head_sched[l]))), 1))
            a.tokens += existing.size
            a.kept += kept.size
            a.steps += 1
            q_rows = rows if h.phase == "decode" else rows[np.isin(positions[rows], kept)]
            q_pos = positions[q_rows]
            dense_pos = positions[rows]
            # visible keys per row (causal masks keys after the query's own position)
            vis = kept[None, :] <= q_pos[:, None] if h.causal else np.ones((q_rows.size, kept.size), bool)
            dense_vis_n = (np.minimum(dense_pos, K - 1) + 1) if h.causal else np.full(rows.size, K)
            n_keys = vis.sum(axis=1)
            n_dense_keys = existing.size
            for head in range(H):
                # dense baseline of this head: every head, every existing token, full width
                a.add(dense_key_bytes=_nbytes(n_dense_keys * d, full), dense_value_bytes=_nbytes(n_dense_keys * d, full),
                      dense_query_bytes=_nbytes(rows.size * d, full), dense_output_write_bytes=_nbytes(rows.size * d, full),
                      dense_qk_macs=int(dense_vis_n.sum()) * d, dense_av_macs=int(dense_vis_n.sum()) * d,
                      dense_rows=rows.size)
                a.dense_row_keys.append(dense_vis_n)
                a.dense_command_rows.append(rows.size)
                a.dense_command_steps.append(step)
            for head in alive_head:
                p = trace.probs[l, head][np.ix_(q_rows, kept)].astype(np.float64) * vis
                sums = p.sum(axis=1, keepdims=True)
                p = np.divide(p, sums, out=np.zeros_like(p), where=sums > 0)
                s_tok[kept] += p.sum(axis=0)
                n_v = np.minimum(np.ceil(n_keys * (1.0 - config.value_prune) - 1e-9).astype(int), n_keys)
                if config.value_prune > 0:
                    order = np.argsort(-p, axis=1, kind="stable")
                    rank = np.empty_like(order)
                    np.put_along_axis(rank, order, np.broadcast_to(np.arange(kept.size), order.shape), axis=1)
                    v_mask = (rank < n_v[:, None]) & vis
                else:
                    v_mask = vis
                lsb_rows = (p.max(axis=1) < config.threshold) if use_pq else np.zeros(q_rows.size, bool)
                # the value rows the command loads: its rows' kept ones (their union), or, if the command gets the
                # core's dense_ok bit (the fallback may sweep a row whose top-k is late unpruned), every visible
                # one: which commands get it is decided per layer below (``fallback``), so the extra bytes wait
                val_bits = msb if use_pq else full
                whole = (_nbytes(int(vis.any(axis=0).sum()) * d, val_bits),
                         _nbytes(int(vis[lsb_rows].any(axis=0).sum()) * d, lsb) if lsb_rows.any() else 0)
                part = (_nbytes(int(v_mask.any(axis=0).sum()) * d, val_bits),
                        _nbytes(int(v_mask[lsb_rows].any(axis=0).sum()) * d, lsb) if lsb_rows.any() else 0)
                a.add(key_msb_bytes=_nbytes(kept.size * d, val_bits), value_msb_bytes=part[0], value_lsb_bytes=part[1],
                      query_bytes=_nbytes(q_rows.size * d, full), output_write_bytes=_nbytes(q_rows.size * d, full),
                      qk_macs=int(n_keys.sum() + n_keys[lsb_rows].sum()) * d, av_macs=int(n_v.sum()) * d,
                      rows=q_rows.size)
                a.command_extra.append((whole[0] - part[0], whole[1] - part[1]))
                if lsb_rows.any():
                    a.add(key_lsb_bytes=_nbytes(kept.size * d, lsb))
                a.lsb_rows += int(lsb_rows.sum())
                a.row_keys.append(n_keys)
                a.command_rows.append(q_rows.size)
                a.command_steps.append(step)
                a.row_values.append(n_v)
                a.row_lsb.append(lsb_rows.astype(np.int8))
                if topk_cycles is not None and config.value_prune > 0:
                    a.row_topk.append(np.array([topk_cycles(p[r][vis[r]], int(n_v[r])) for r in range(q_rows.size)],
                                               dtype=np.int64))
                if pv_windows is not None and config.value_prune > 0:
                    a.row_windows.append(np.array([pv_windows(p[r][vis[r]], int(n_v[r]))
                                                   for r in range(q_rows.size)], dtype=np.int64))
            s_head[alive_head] += trace.head_importance[l, alive_head]

    out = []
    for l, a in enumerate(acc):
        dense_ok = _dense_ok(fallback, a.command_rows, a.command_extra, a.command_steps, fallback_tail)
        # a command loads every visible value row when it has dense_ok or more than one query: the causal value
        # fetch (docs/spatten.md, "DRAM") loads kept rows only for a one-query command, once its keep mask is
        # complete; a command of several queries cannot wait for its rows' masks (its rows hold the two top-k
        # engines until their values are in), so its union of kept rows is not known before its values are needed
        for ok, n, (m, b) in zip(dense_ok.tolist(), a.command_rows, a.command_extra):
            if ok or n > 1:
                a.add(value_msb_bytes=m, value_lsb_bytes=b)
        c = a.c
        rows = c.get("rows", 0)
        cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
        out.append(LayerAttentionStats(
            layer=l, tokens=a.tokens / a.steps, tokens_kept=a.kept / a.steps, heads_kept=len(a.row_keys) / a.steps,
            heads=H, rows=rows,
            key_msb_bytes=c.get("key_msb_bytes", 0), key_lsb_bytes=c.get("key_lsb_bytes", 0),
            value_msb_bytes=c.get("value_msb_bytes", 0), value_lsb_bytes=c.get("value_lsb_bytes", 0),
            query_bytes=c.get("query_bytes", 0), output_write_bytes=c.get("output_write_bytes", 0),
            lsb_row_fraction=a.lsb_rows / rows if rows else 0.0,
            qk_macs=c.get("qk_macs", 0), av_macs=c.get("av_macs", 0),
            dense_key_bytes=c["dense_key_bytes"], dense_value_bytes=c["dense_value_bytes"],
            dense_query_bytes=c["dense_query_bytes"], dense_output_write_bytes=c["dense_output_write_bytes"],
            dense_qk_macs=c["dense_qk_macs"], dense_av_macs=c["dense_av_macs"], dense_rows=c["dense_rows"],
            row_keys=cat(a.row_keys, np.int32), row_values=cat(a.row_values, np.int32),
            row_lsb=cat(a.row_lsb, np.int8), dense_row_keys=cat(a.dense_row_keys, np.int32),
            row_topk_cycles=cat(a.row_topk, np.int64), row_pv_windows=cat(a.row_windows, np.int64),
            command_rows=np.asarray(a.command_rows, np.int64), dense_command_rows=np.asarray(a.dense_command_rows, np.int64),
            command_steps=np.asarray(a.command_steps, np.int64),
            dense_command_steps=np.asarray(a.dense_command_steps, np.int64), command_dense_ok=dense_ok))
    return SpattenAlgoResult(config, head_dim, tuple(out), tuple(float(x) for x in tok_sched),
                             tuple(float(x) for x in head_sched))
