"""Cycle model and bit-exact functional model of archgen's SpAtten attention core (rtlgen/spatten_core.py).

Two halves, no hardware library imported:

- Bit-exact numpy functions of the fixed-point arithmetic (``qk_scores``, ``softmax_fixed``, ...): the
  golden values the RTL is checked against value for value. They are also needed for timing: the
  progressive-quantization refetch and the top-k's data-dependent latency depend on the exact
  fixed-point exponentials and probabilities, so the model computes them the way the hardware does.
- The cycle model (``softmax_cycles``, ``query_cycles``, ``core_cycles``, ``core_process``): closed-form
  phase lengths from :func:`archgen.dataflow.spatten_arrays.spatten_latencies` (the same constants the RTL
  pipeline is built with) plus :func:`archgen.sim.topk_model.simulate_topk` run on the actual
  exponentials. docs/spatten.md ("Cycle contract") lists the phases.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from dataclasses import dataclass

import numpy as np

from archgen.arch.spatten_spec import SpattenFormats, SpattenSpec, spatten_formats
from archgen.dataflow.spatten_arrays import spatten_latencies
from archgen.dataflow.spatten_stages import EXP_BUFFER_BANKS, SCORE_BANKS, TOPK_ENGINES
from archgen.sim.topk_model import TopKRun, simulate_topk

__all__ = [
    "mask_lsbs", "qk_scores", "exp_fixed", "softmax_fixed", "SoftmaxTrace", "pq_need_lsb", "topk_keep_mask",
    "pv_accumulate", "PV_WINDOW_RULES", "pv_windows", "QueryResult", "core_reference", "threshold_fx",
    "softmax_cycles", "pass_cycles", "pv_cycles", "QueryCycles", "query_cycles", "CoreRun", "core_cycles",
    "core_process", "fallen_back", "overlapped_cycles", "command_stream_cycles", "dram_ready", "SplitLoads", "stage_pace",
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
    series of order len(taylor_coeffs) - 1 evaluated with Horner steps that each round to exp_frac bits,
    then a rounding right shift by n.
    """
    fb = fmt.exp_frac
    d = np.asarray(d, dtype=np.int64)
    y = (d * fmt.log2e_fx) >> shift
    n_int = y >> fb
    f = y & ((1 << fb) - 1)
    t = (f * fmt.ln2_fx) >> fb
    coeffs = fmt.taylor_coeffs
    acc = np.full_like(t, coeffs[-1])
    half = 1 << (fb - 1)
    for c in reversed(coeffs[:-1]):
        acc = c + ((acc * t + half) >> fb)
    acc = np.clip(acc, 0, 1 << fb)
    # Round (not floor) when scaling by 2**-n: a row of many small exponentials would otherwise lose up
    # to one LSB each, bias the sum low, and inflate the large probabilities (measured 1.9e-3 with floor).
    n_sat = np.minimum(n_int, fmt.exp_bits)
    return np.where(n_int >= fmt.exp_bits, 0, (acc + ((1 << n_sat) >> 1)) >> n_sat)


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
    """Progressive quantization: fetch the LSBs when the row's largest probability is below the threshold.

    The RTL forms that maximum as (largest exponential x reciprocal) >> shift; the floor is monotone, so it
    equals the largest of the row's probabilities."""
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


PV_WINDOW_RULES = ("groups", "window", "greedy", "banked", "ideal")


def pv_windows(keep: np.ndarray, lanes: int, rule: str = "window") -> int:
    """Issue cycles a PxV sweep over a row needs under a compaction ``rule`` (a design study for issue 15,
    docs/spatten.md "Local-V: PxV over kept rows"; NOT the built core's contract, whose PxV stage sweeps
    every group: rule ``groups``). ``keep``: the row's local-V keep mask (token t in value bank
    ``t mod lanes``, bank row ``t div lanes``: the value buffer's lanes as banks with their own addresses).

    - ``groups``: every group of ``lanes`` consecutive tokens, ``ceil(n / lanes)`` (today's sweep).
    - ``window``: each cycle the kept tokens of the ``lanes`` consecutive positions starting at the next
      kept one (distinct residues by construction; a zero eliminator skips the unkept run before it).
    - ``greedy``: from the next kept token, the following kept tokens in index order while their banks
      differ from those already taken and they lie within ``2 lanes`` positions of the first.
    - ``banked``: every bank walks its own kept tokens (out of index order; the sum over tokens does not
      depend on the order): the largest number of kept tokens in one bank.
    - ``ideal``: any ``lanes`` kept tokens a cycle, ``ceil(kept / lanes)`` (needs ``lanes`` arbitrary
      value rows a cycle).
    A row without kept tokens needs no cycle except under ``groups``."""
    keep = np.asarray(keep, dtype=bool)
    n = keep.size
    if rule == "groups":
        return -(-n // lanes)
    idx = np.flatnonzero(keep)
    if rule == "ideal":
        return -(-idx.size // lanes)
    if rule == "banked":
        return int(np.bincount(idx % lanes, minlength=lanes).max()) if idx.size else 0
    if rule not in PV_WINDOW_RULES:
        raise ValueError(f"rule must be one of {PV_WINDOW_RULES}, not {rule!r}")
    windows, i = 0, 0
    while i < idx.size:
        first = int(idx[i])
        windows += 1
        if rule == "window":
            i = int(np.searchsorted(idx, first + lanes))
            continue
        used = 0
        while i < idx.size and idx[i] < first + 2 * lanes and not used >> int(idx[i] % lanes) & 1:
            used |= 1 << int(idx[i] % lanes)
            i += 1
    return windows


def pv_accumulate(probs: np.ndarray, values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """sum over kept rows of prob_fx * v (exact integers); pruned rows contribute nothing (no renormalising)."""
    p = np.where(keep, np.asarray(probs, dtype=np.int64), 0)
    return p @ np.asarray(values, dtype=np.int64)


@dataclass(frozen=True)
class QueryResult:
    """What the core computes for one query, bit for bit."""

    out: np.ndarray
    probs: np.ndarray
    exps: np.ndarray
    keep: np.ndarray
    need_lsb: bool
    passes: int
    first_pass_probs: np.ndarray


def core_reference(spec: SpattenSpec, q: np.ndarray, keys: np.ndarray, values: np.ndarray, *, shift: int,
                   keep_k: int | None = None, pq_enable: bool = True, thr_fx: int | None = None) -> QueryResult:
    """One query through the core: MSB pass, PQ decision, optional full-precision pass, local-V top-k, PxV.

    The local-V top-k ranks the exponentials (the probabilities before the division's rounding: the same
    order, fewer ties); ties keep the earliest tokens."""
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
    keep = topk_keep_mask(sm.exps, k) if k < n else np.ones(n, dtype=bool)
    out = pv_accumulate(sm.probs, vals, keep)
    return QueryResult(out, sm.probs, sm.exps, keep, bool(need), 2 if need else 1, first.probs)


# ---------------------------------------------------------------------------------------------------
# Cycle model. Every count is in clock cycles of the core's clock (spec.clock_mhz).

# The PxV stage over kept tokens (rtlgen/spatten_core.py; docs/spatten.md, "Cycle contract"): the token
# importance's own sweep issues G groups from the cycle after the take and the output follows one cycle
# after its last issue at the earliest (PV_IMPORTANCE_TAIL); the engine's mask sweep reads one row of P
# exponentials a cycle from its done cycle and the mask is usable one cycle after the last read's data
# (PV_MASK_TAIL).
PV_IMPORTANCE_TAIL = 1
PV_MASK_TAIL = 1
# The top-k feed: a fed engine's input beat is valid no earlier than FEED_READ cycles after the softmax
# wrote the last exponential of that top-k row (the engine's read port takes the row's address in the
# cycle after the write, a synchronous read without write-through, and the data is there one cycle later).
FEED_READ = 2


def _groups(spec: SpattenSpec, n_keys: int) -> int:
    return -(-n_keys // spec.lanes)


def softmax_cycles(spec: SpattenSpec, n_keys: int) -> int:
    """Cycles from the softmax's ``go`` (a loaded score bank) to its ``recip_valid`` pulse: the
    exponential sweep over the row's G beats, its pipeline, the divider."""
    lat, g = spatten_latencies(spec), _groups(spec, n_keys)
    return g + lat.exp_pipe + lat.recip


def qk_cycles(spec: SpattenSpec, n_keys: int) -> int:
    """The QxK stage's occupancy for one pass: the cycle it takes the query (or the refetch), G issue
    cycles, the QxK pipeline up to the cycle the last score reaches the softmax."""
    lat = spatten_latencies(spec)
    return lat.query_accept + _groups(spec, n_keys) + lat.qk_pipe


def sweep_cycles(spec: SpattenSpec, n_keys: int) -> int:
    """A row alone in the softmax: from its ``go`` to the PQ decision (the exponential sweep, its
    pipeline, the divider, the decision register)."""
    return softmax_cycles(spec, n_keys) + spatten_latencies(spec).pq_decide


def pass_cycles(spec: SpattenSpec, n_keys: int) -> int:
    """One QxK + softmax + PQ-decision pass of a query alone: the QxK stage, then the softmax (which
    starts the cycle after the last score arrives)."""
    return qk_cycles(spec, n_keys) + sweep_cycles(spec, n_keys)


def pv_cycles(spec: SpattenSpec, n_keys: int) -> int:
    """The prob x V sweep over all G rows of the buffer (normalising as it reads) plus its pipeline."""
    return _groups(spec, n_keys) + spatten_latencies(spec).pv_pipe


@dataclass(frozen=True)
class QueryCycles:
    """Cycles of one query by stage (docs/spatten.md, "Cycle contract").

    ``qk``: the QxK stage per pass; ``exp``: the exponential sweep, ``go`` to the last exponential
    (G + exp_pipe); ``div``: the divider, start to ``recip_valid``; ``decide``: the PQ decision register;
    ``passes``: 2 when the PQ decision asked for the LSBs; ``pq``: the command has PQ on (so the first
    pass may need the LSBs, and the next sweep waits for its decision); ``topk``: the top-k stage
    (0 when the row is not pruned); ``pv``, ``output``: the PxV stage sweeping every group.
    ``pv_kept``: the PxV stage over the kept tokens only, ``max(W + pv_pipe, G + 1)`` with ``W`` the
    windows of :func:`pv_windows` (``banked``, at least 1) and ``G + 1`` the token importance's own sweep;
    0 when the row is not pruned. ``mask``: cycles from the top-k engine's done to the first PxV take
    that finds the row's keep mask written (the engine's mask sweep, ``ceil(n / P) + 1``); a row taken
    earlier sweeps every group (``pv``). ``tk_ratio``: softmax beats per top-k input beat (P / L).
    ``feed``: the spec's ``units.topk.feed`` (the core has the top-k feed, ``_Stream._feed_take``).
    ``fallback``: a pruned row whose top-k is not done when the PxV stage could take it unpruned is swept
    unpruned instead (the spec's ``units.topk.fallback`` and the command's ``dense_ok``: its value load holds
    every value row; ``_Stream._fallback_take``).
    ``preempt``: the spec's ``units.qk.preempt``: this row's LSB refetch preempts a later query whose QxK
    groups are still being issued in the cycle after its decision (``_Stream._preempt``).
    """

    qk: int
    exp: int
    div: int
    decide: int
    passes: int
    pq: bool
    topk: int
    pv: int
    output: int
    exp_pipe: int
    pv_kept: int = 0
    mask: int = 0
    tk_ratio: int = 1
    feed: bool = True
    fallback: bool = False
    preempt: bool = False

    @property
    def topk_beats(self) -> int:
        """The top-k engine's input beats, ``B = ceil(n / P)``: rows of ``tk_ratio`` (P / L) softmax beats."""
        return -(-(self.exp - self.exp_pipe) // self.tk_ratio)

    @property
    def sweep(self) -> int:
        """A row alone in the softmax, ``go`` to the PQ decision."""
        return self.exp + self.div + self.decide

    @property
    def front(self) -> int:
        """Cycles from the query's acceptance to the top-k stage taking it, alone in the core (an LSB
        refetch starts the cycle after the first decision; a decided row waits one cycle in the hold slot)."""
        return self.passes * (self.qk + self.sweep) + (self.passes - 1) + 1

    @property
    def front_busy(self) -> int:
        """Busy cycles of the front stages together (QxK, softmax, divider), over all passes."""
        return self.passes * (self.qk + self.sweep)

    @property
    def back(self) -> int:
        """Cycles in the stages after the PQ decision: top-k, prob x V, output handshake (alone; in a
        stream the top-k of one row overlaps the prob x V of the previous one)."""
        return self.topk + self.pv + self.output

    @property
    def pv_stage(self) -> int:
        """The PxV stage's occupancy per row sweeping every group: the sweep and the output handshake."""
        return self.pv + self.output

    def pv_stage_at(self, ready: int, take_p: int) -> int:
        """The PxV stage's occupancy for a row whose top-k engine was done in cycle ``ready`` and that the
        PxV stage takes in cycle ``take_p``: over the kept tokens when the engine's keep mask is written
        by then, else every group."""
        if self.pv_kept and take_p >= ready + self.mask:
            return self.pv_kept + self.output
        return self.pv_stage

    @property
    def total(self) -> int:
        """Latency of the query alone from its acceptance: front, the top-k stage's take cycle (its
        command handshake when pruned), the top-k up to its done cycle (the PxV stage takes the row then;
        one cycle in the top-k stage when not pruned), the PxV sweep and the output."""
        return self.front + 1 + max(self.topk, 1) + self.pv + self.output


def stage_pace(qc: QueryCycles, over_kept: bool = False) -> dict[str, float]:
    """Cycles per query each stage needs in a long stream of rows like ``qc`` (PQ off, no refetch): the
    QxK stage ``qk``; the exponential sweep ``max(G, exp_pipe) + 1`` (G beats and the go cycle; a row's
    last beat waits until the previous row is at the divider); the divider with its
    decision and the hold slot's cycle ``div + decide + 2`` (``+ 1`` for a pruned row taken early); the top-k stage ``(topk + 1) / TOPK_ENGINES``
    (its engines take rows in turn; an average when rows differ); the PxV stage ``pv + output`` (it takes the next row in the cycle it sends an output).
    The largest is the stream's period (``command_stream_cycles`` of equal queries; a diagnostic: which
    stage bounds a row). A row that refetches its LSBs counts its second QxK pass, the softmax stage's
    rerun ``1 + qk + exp`` and its second division (not the dropped part of the next row's speculative
    sweep, nor, with PQ on, the three score banks' round trip: a lower bound then). ``over_kept``: the
    row's PxV visits its kept tokens only (its keep mask was written by the take, ``QueryCycles.pv_stage_at``;
    a property of the row's place in its stream, ``command_stream_cycles(..., over_kept=)``): the PxV stage's
    pace is then ``pv_kept + output``."""
    # a pruned row that cannot need its LSBs leaves the hold slot for its engine while still at the divider
    early = qc.topk and not (qc.pq and qc.passes == 1)
    extra = qc.passes - 1        # an LSB refetch: one more QxK pass, and the softmax stage reruns 1 + qk + exp
    # the sweep: rows follow each other through the exponential pipeline (G issue cycles and the go
    # cycle; a row's last beat waits until the previous row is at the divider, exp_pipe + 1 cycles)
    sweep = max(qc.exp - qc.exp_pipe, qc.exp_pipe) + 1
    return {"qk": float(qc.passes * qc.qk), "sweep": float(sweep + extra * (1 + qc.qk + qc.exp)),
            "divider": float(qc.passes * (qc.div + qc.decide) + (1 if early else 2)),
            "topk": (qc.topk + 1) / TOPK_ENGINES if qc.topk else 0.0,
            "pv": float((qc.pv_kept if over_kept and qc.pv_kept else qc.pv) + qc.output)}


class _Stream:
    """The stages' state while a command stream runs (see :func:`command_stream_cycles`)."""

    def __init__(self, overlap_sweeps: bool = True, feed: bool = True):
        self.overlap_sweeps = overlap_sweeps   # False: the core before 2026-12-05 (for comparisons)
        self.feed = feed            # False: the core before the top-k feed (H98, for comparisons)
        self.sweep_go = self.sweep_last = 0    # the last pass's go and last beat issued (``_sweep``)
        self.qk_free = 0            # first cycle the QxK stage may take a job
        self.sm_free = 0            # first cycle the softmax stage may start a sweep
        self.div_free = 0           # first cycle the divider may take a row
        self.hold_free = 0          # first cycle the hold slot is empty (the divider may take a row)
        self.t_free = [0] * TOPK_ENGINES   # first cycle each top-k engine may take a row from the hold slot
        self.te = 0                 # the top-k engine that takes the next row (rows go to them in turn)
        self.eng_idle = [0] * TOPK_ENGINES  # first cycle each engine accepts a command (the cycle after done)
        self.b_free = 0             # cycle the PxV stage is idle again (done of its last row)
        self.bank_free = [0] * SCORE_BANKS     # first cycle each score bank may take a query
        self.pb_free = [0] * EXP_BUFFER_BANKS   # first cycle each exponential-buffer bank may take a sweep
        self.nb = 0                 # score bank of the next query
        self.wpb = 0                # exponential-buffer bank of the next row
        self.last_start = -1        # divider start of the softmax's previous row (its last beat waits for it)
        self.release = 0            # the resolved row's last use of its keys (the key bank's keys_free cycle)
        self.over_kept: list[bool] = []     # per resolved row: its PxV visited the kept tokens only
        # per resolved row: None, or for a row the feed took, (take, the cycles its first and its last input
        # beat are valid): more than B - 1 cycles apart when beats wait for the sweep (gaps)
        self.fed: list[tuple[int, int, int] | None] = []
        self.outs: list[int] = []           # per resolved row: the cycle its output row is offered (and taken)
        self.fell: list[bool] = []          # per resolved row: swept unpruned, its top-k late (the fallback)
        self.last_job: list | None = None   # the job that took the QxK stage last (``_preempt``)
        self.preempted: list[int] = []      # per resolved row: times its QxK was preempted by a refetch

    def accept(self, qc: QueryCycles, earliest: int) -> list:
        a = max(earliest, self.qk_free, self.bank_free[self.nb])
        self.qk_free = a + qc.qk
        # (cycles, accepted, last score in the softmax, bank, preemptions): a list, since a refetch may
        # preempt its QxK (``_preempt``), which moves its start and last score
        job = [qc, a, a + qc.qk - 1, self.nb, 0]
        self.nb = (self.nb + 1) % SCORE_BANKS
        self.last_job = job
        return job

    def _preempt(self, qc: QueryCycles, job, decision: int) -> int:
        """The QxK stage's cycle for an LSB refetch decided in cycle ``decision``: ``max(decision + 1,
        qk_free)``; with ``units.qk.preempt`` (``qc.preempt``), the cycle after the decision when the
        QxK stage is then still issuing the groups of a later query (accepted in cycle ``a <= decision``,
        its groups issued in cycles ``a + 1 .. a + G``, so ``a + G >= decision + 1``): that query's QxK is
        aborted (its beats in the QxK array's pipeline dropped, none of them its last) and rerun from its
        first group right after the refetch's QxK (taken again in cycle ``decision + 1 + qk``, its last
        score and so its bank's and keys' release later). Only while groups are issued: in the array's
        pipeline tail (``qk_pipe`` cycles) the refetch waits as before, so no preempted query ever had its
        last score on the way (no ``keys_free`` to take back). A preempted query's rerun may be preempted
        again by the next refetch."""
        r = max(decision + 1, self.qk_free)
        y = self.last_job
        if qc.preempt and y is not None and y is not job and y[1] <= decision \
                and y[1] + y[0].exp - y[0].exp_pipe >= decision + 1:
            r = decision + 1
            y[1] = r + qc.qk
            y[2] = y[1] + y[0].qk - 1
            y[4] += 1
            self.qk_free = y[1] + y[0].qk
            return r
        self.qk_free = r + qc.qk
        return r

    def _sweep(self, qc: QueryCycles, go: int) -> tuple[int, int, int]:
        """A pass from its go: (last beat issued, divider start, decision). The sweep issues the row's
        G beats from the cycle after ``go``; the last one waits until the previous row is at the divider,
        so that at most one swept row waits for the divider."""
        last = max(go + qc.exp - qc.exp_pipe, self.last_start + 1)
        start = max(last + qc.exp_pipe, self.div_free, self.hold_free)
        decision = start + qc.div + qc.decide
        self.div_free = decision + 1       # the decision cycle itself blocks the divider
        self.last_start = start
        self.sweep_go, self.sweep_last = go, last
        return last, start, decision

    def _engine_ready(self, qc: QueryCycles, take: int, fed: bool = False) -> int:
        """The done cycle of a pruned row's top-k engine (``te``), taken in cycle ``take``: its command
        is handshaked then, or the cycle after the engine's previous done, and it runs ``topk`` cycles.
        ``fed``: taken while its sweep writes it (``_feed_take``); the engine's input beat b is valid no
        earlier than two cycles after the softmax wrote that top-k row's last exponential (the read
        port's address is issued the cycle after the write, the data is there the cycle after), and its
        work after the last beat is the same as with back-to-back beats, ``topk - B``. The last row binds
        (the sweep writes a row of P at least every P / L cycles, the engine reads one a cycle), so
        ``done = max(cmd + topk, last + exp_pipe + 2 + topk - B)``, ``last + exp_pipe`` being the cycle
        the row's last exponential is written."""
        cmd = max(take, self.eng_idle[self.te])
        if not fed:
            return cmd + qc.topk
        return max(cmd + qc.topk, self.sweep_last + qc.exp_pipe + FEED_READ + qc.topk - qc.topk_beats)

    def _feed_take(self, qc: QueryCycles, start: int, prev_start: int, prev_hold_free: int) -> int | None:
        """The top-k feed (docs/spatten.md, "Cycle contract"): a pruned row that cannot need its LSBs
        (PQ off for its command, or its LSB pass) is offered to the next engine in turn from the cycle
        after its sweep's go while it is the oldest row of the softmax stage (the previous row was taken
        by the divider, ``prev_start + 1``) and every earlier row is in a top-k engine (the previous one
        left the hold slot, ``prev_hold_free``, or was taken early). Returns the take cycle, or None when
        the engine is not free by the divider's take (then the early take at ``start + 1`` applies)."""
        t = max(self.sweep_go + 1, prev_start + 1, prev_hold_free, self.t_free[self.te])
        return t if t <= start else None

    def _fallback_take(self, qc: QueryCycles, take: int, decision: int, values_at: int, take_p: int) -> int | None:
        """The fallback (docs/spatten.md, "Cycle contract"): the PxV stage takes a pruned row (of a
        command whose values are all on chip) no later than it would take it unpruned, ``max(decision + 2,
        take + 1, b_free - 1, values_at)`` (an unpruned row is ready the cycle after its engine took it,
        and its engine took it at ``max(decision + 1, t_free(e))``, no earlier than the pruned row's take);
        if its engine is not done by then, the row is swept unpruned (every kept token, as without
        local-V) and its engine is reset in that cycle. Returns that take cycle, or None (no fallback)."""
        if not (qc.topk and qc.fallback):
            return None
        y = max(decision + 2, take + 1, self.b_free - 1, values_at)
        return y if y < take_p else None

    def first_decision_of(self, job) -> int:
        """The cycle of the job's first PQ decision, were it resolved now (no state changes)."""
        qc, _a, last_score, _bank, _pre = job
        go = max(last_score + 1, self.sm_free, self.pb_free[self.wpb])
        last = max(go + qc.exp - qc.exp_pipe, self.last_start + 1)
        return max(last + qc.exp_pipe, self.div_free, self.hold_free) + qc.div + qc.decide

    def resolve(self, job, values_at=0) -> int:
        """Resolve the oldest accepted row; ``values_at``: the first cycle its command's values are in
        the value buffer (the PxV stage takes the row no earlier), or a function of the cycle its keep mask
        is complete giving that cycle (a value load that waits for the row's keep mask). Sets ``release``, the cycle of the
        row's last use of its keys (its last score reaches the softmax; with PQ on, its decision when
        it needs no LSBs)."""
        qc, _a, last_score, bank, pre = job
        self.preempted.append(pre)
        prev_start, prev_hold_free = self.last_start, self.hold_free
        go = max(last_score + 1, self.sm_free, self.pb_free[self.wpb])
        last, start, decision = self._sweep(qc, go)
        # the row leaves the softmax stage when the divider takes it; its score bank is free then, or
        # at its PQ decision when it may need its LSBs
        bank_free = decision + 1 if qc.pq else start + 1
        self.release = decision if qc.pq else last_score
        if qc.pq and qc.passes == 2:
            # refetch: QxK again into the same bank, priority over new queries; the next row's
            # speculative sweep (if any) is dropped at the decision and starts again after this one
            r = self._preempt(qc, job, decision)
            last, start, decision = self._sweep(qc, r + qc.qk)
            bank_free = start + 1       # the LSB pass cannot ask again
            self.release = r + qc.qk - 1
        # the next row's go: the cycle after the softmax issued this row's last beat (its beats enter the
        # exponential pipeline right behind this row's; behind a row that may need its LSBs they are
        # speculative and dropped with the refetch, above)
        self.sm_free = last + 1 if self.overlap_sweeps else start + 1
        self.bank_free[bank] = bank_free
        # the decided row waits in the hold slot; the next top-k engine in turn takes it when idle or in
        # the cycle it hands its previous row to the PxV stage; a pruned row's top-k command is handshaked
        # in the take cycle (the cycle after, when that is the engine's done cycle) and the row is ready
        # for PxV in the engine's done cycle, ``topk`` cycles after the command; a row that is not pruned
        # is ready the cycle after the take. It waits in the top-k stage until the PxV stage takes it
        # (idle, or in the cycle it sends its previous output row, b_free - 1) and, the row's reciprocal
        # known, from the cycle after its decision. A pruned row that cannot need its LSBs (PQ off, or
        # its LSB pass) may be taken while still at the divider, from the cycle after the divider took it
        early = qc.topk and not (qc.pq and qc.passes == 1)
        take = max(start + 1 if early else decision + 1, self.t_free[self.te])
        # ... and from the cycle after its sweep's go, fed by the sweep, when it is the oldest row in the
        # softmax stage and every earlier row is in an engine
        fed_take = (self._feed_take(qc, start, prev_start, prev_hold_free) if early and self.feed and qc.feed
                    else None)
        take = take if fed_take is None else fed_take
        self.hold_free = take + 1
        if fed_take is not None:
            r = qc.tk_ratio
            first = min(r, qc.exp - qc.exp_pipe) - 1        # the first top-k row's last softmax beat
            w0 = (self.sweep_go + 1 + first if first < qc.exp - qc.exp_pipe - 1 else self.sweep_last) + qc.exp_pipe
            v0 = max(max(take, self.eng_idle[self.te]) + 1, w0 + FEED_READ)
            self.fed.append((take, v0, max(v0 + qc.topk_beats - 1, self.sweep_last + qc.exp_pipe + FEED_READ)))
        else:
            self.fed.append(None)
        if qc.topk:
            ready = self._engine_ready(qc, take, fed_take is not None)
            self.eng_idle[self.te] = ready + 1
        else:
            ready = take + 1
        if callable(values_at):
            # a causal value load (``SplitLoads(after_mask=)``): the command's kept value rows are requested
            # once this row's keep mask is complete (the engine's mask sweep, ``ceil(n / P) + 1`` cycles after
            # its done: the core's ``v_fetch`` pulse)
            values_at = values_at(ready + qc.topk_beats + PV_MASK_TAIL if qc.topk else None, self.release)
        take_p = max(ready, self.b_free - 1, decision + 1, values_at)
        fell = self._fallback_take(qc, take, decision, values_at, take_p)
        if fell is not None:
            take_p = fell
            self.eng_idle[self.te] = take_p + 1     # the engine is reset in the take cycle
        self.fell.append(fell is not None)
        self.t_free[self.te] = take_p
        self.te = (self.te + 1) % TOPK_ENGINES
        self.b_free = take_p + 1 + (qc.pv_stage if fell is not None else qc.pv_stage_at(ready, take_p))
        self.over_kept.append(fell is None and bool(qc.pv_kept) and take_p >= ready + qc.mask)
        self.outs.append(self.b_free - 1)
        self.pb_free[self.wpb] = self.b_free
        self.wpb = (self.wpb + 1) % EXP_BUFFER_BANKS
        return self.b_free


def dram_ready(load_cycles: Sequence[int]):
    """Earliest handshake of each command when its keys and values come from DRAM (for the ``ready``
    argument of :func:`command_stream_cycles`): one transfer at a time, command ``ci``'s load taking
    ``load_cycles[ci]`` cycles; it starts when the previous load has ended and, since command ``ci`` uses
    the K/V bank of command ``ci - 2``, the cycle after that command's ``done``. The first command's
    load is ``load_cycles[0]`` cycles before cycle 0 (its handshake), so it never waits."""
    ends: dict[int, int] = {}

    def ready(ci: int, dones: Sequence[int | None]) -> int:
        if ci == 0:
            ends[0] = 0
            return 0
        start = ends[ci - 1]
        if ci >= 2:
            start = max(start, dones[ci - 2] + 1)     # type: ignore[operator]
        ends[ci] = start + int(load_cycles[ci])
        return ends[ci]
    return ready


class SplitLoads:
    """The fetcher of split K and V loads (docs/spatten.md, "DRAM"), for the ``fetcher`` argument of
    :func:`command_stream_cycles`: each command's keys (with its queries) and its values are separate
    transfers, one at a time. Command i's keys may start the cycle after command i - 2 released its
    keys (the core's ``keys_free`` for that bank: the last use of its keys), its values the cycle
    after command i - 2 is done. After command 0's keys (loaded before cycle 0, ``key_cycles[0]``
    cycles before its handshake) the loads go in pairs: the keys of command i + 1 and the values of
    command i, whichever may start first (the values on a tie), then the other, then the next pair; so
    neither load waits behind the other while its own bank is free. A command is handshaked once its
    keys are in (``key_ready``); its rows' PxV waits for its values (``values_ready``: the cycle the
    core's ``v_loaded`` pulse marks them in). ``value_cycles[i]`` None: a command without queries (its
    values are never read) has no value load and releases its keys at its ``done``.

    ``after_mask[i]`` (the causal value fetch, docs/spatten.md "DRAM"): command i is one query pruned by
    local-V whose value load holds its kept rows only; the fetcher learns them from the row's keep mask, so
    that load starts no earlier than the cycle after the mask is complete (the core's ``v_fetch`` pulse
    for its bank, ``mask`` below) and is deferred to the next pair: it goes right after the pair (values of
    i + 1, keys of i + 2), so those keys (which may start from command i's ``keys_free``, before its top-k)
    never wait behind it. None: no such command."""

    def __init__(self, key_cycles: Sequence[int], value_cycles: Sequence[int | None], values_first: bool = True,
                 after_mask: Sequence[bool] | None = None):
        self.key_cycles, self.value_cycles = [int(k) for k in key_cycles], list(value_cycles)
        self.ends: dict = {("k", 0): 0}
        self.free = 0               # the DRAM is free from this cycle, after the pairs resolved so far
        self.pairs = 0              # pairs (keys of i + 1, values of i) resolved
        self.values_first = values_first
        self.after_mask = [False] * len(self.key_cycles) if after_mask is None else [bool(x) for x in after_mask]
        if len(self.after_mask) != len(self.key_cycles):
            raise ValueError(f"after_mask needs one flag per command ({len(self.key_cycles)}), got {len(self.after_mask)}")
        if any(a and v is None for a, v in zip(self.after_mask, self.value_cycles)):
            raise ValueError("a command without a value load cannot wait for its keep mask (after_mask)")
        self.masks: dict[int, int] = {}     # command -> the cycle its keep mask is complete (after_mask)

    def _pair(self, i: int, dones, releases) -> None:
        """Resolve the pair (keys of command i + 1, values of command i), then the deferred kept value rows
        of command i - 1 (``after_mask``)."""
        loads = []
        if i < len(self.key_cycles) and self.value_cycles[i] is not None and not self.after_mask[i]:
            loads.append(("v", i, dones[i - 2] + 1 if i >= 2 else 0, int(self.value_cycles[i])))
        if i + 1 < len(self.key_cycles):
            loads.append(("k", i + 1, releases[i - 1] + 1 if i >= 1 else 0, self.key_cycles[i + 1]))
        loads.sort(key=lambda x: max(x[2], self.free) if self.values_first else (max(x[2], self.free), x[0] == "v"))
        if i >= 1 and self.after_mask[i - 1]:
            if i - 1 not in self.masks:
                raise RuntimeError(f"command {i - 1}'s kept value rows wait for its keep mask, not known yet")
            allowed = max(dones[i - 3] + 1 if i >= 3 else 0, self.masks[i - 1] + 1)
            loads.append(("v", i - 1, allowed, int(self.value_cycles[i - 1])))
        for kind, ci, allowed, cycles in loads:
            self.free = max(self.free, allowed) + cycles
            self.ends[(kind, ci)] = self.free

    def _end(self, item, dones, releases) -> int:
        while item not in self.ends:
            if self.pairs > len(self.key_cycles):
                raise RuntimeError(f"no load {item}")
            self._pair(self.pairs, dones, releases)
            self.pairs += 1
        return self.ends[item]

    def key_ready(self, ci: int, dones, releases) -> int:
        return self._end(("k", ci), dones, releases)

    def values_ready(self, ci: int, dones, releases) -> int:
        return self._end(("v", ci), dones, releases) if self.value_cycles[ci] is not None else 0

    def values_at(self, ci: int, dones, releases):
        """For ``_Stream.resolve``: the cycle command ci's values are in, or, for a value load that waits
        for the keep mask (``after_mask``), a function of the cycle the mask is complete and of the row's
        ``keys_free`` cycle (the next pair's keys may start after it) giving that cycle."""
        if not self.after_mask[ci]:
            return self.values_ready(ci, dones, releases)

        def after(mask: int | None, release: int) -> int:
            if mask is None:
                raise ValueError(f"command {ci} waits for a keep mask (after_mask) but its row is not pruned")
            self.masks[ci] = mask
            releases[ci] = release
            return self._end(("v", ci), dones, releases)
        return after


def command_stream_cycles(commands: Sequence[Sequence[QueryCycles]], ready=None, *,
                          overlap_sweeps: bool = True, fetcher: SplitLoads | None = None,
                          over_kept: list | None = None, feed: bool = True, fed: list | None = None,
                          outs: list | None = None, fell: list | None = None,
                          preempted: list | None = None) -> list[int]:
    """Cycle in which ``done`` is high for each command of a stream offered back to back (cycle 0 is the
    first command's handshake), through the core's stages (docs/spatten.md, "Cycle contract").

    QxK stage: takes query i in cycle ``a(i) = max(earliest, qk_free, bank_free(i mod 3))`` and is busy
    for ``qk`` cycles; ``earliest`` is the cycle after the previous query's acceptance, or after the
    command's handshake for its first query. Softmax, rows in query order: a sweep starts
    (``go``) when the row's last score has arrived, the softmax has issued the previous row's last beat
    (the cycle after; the rows' beats follow each other through the exponential pipeline) and its
    exponential-buffer bank (rows rotate over EXP_BUFFER_BANKS) is free; it issues its G beats from the
    cycle after, the last one no earlier than the cycle after the divider took the previous row; the
    divider takes the row ``exp_pipe`` cycles after that last beat, or once it is free, the hold slot is
    empty and no decision is being made; the decision comes ``div + decide`` cycles after that. A row
    leaves the softmax stage when the divider takes it and frees its score bank then, or, with PQ on, at its decision (the next rows' sweeps meanwhile are
    speculative); an LSB refetch drops those speculative sweeps, reruns QxK from the cycle after the
    decision (or when the QxK stage is free; a query not accepted by the decision waits for the
    refetch) and sweeps the row again, then the next one. The decided row waits in the hold slot until
    the next of the TOPK_ENGINES top-k engines in turn takes it (``take = max(decision + 1, t_free(e))``,
    ``t_free(e)`` the cycle the PxV stage took that engine's previous row; a pruned row that cannot need
    its LSBs from the cycle after the divider took it, ``start + 1``, or, fed by its sweep, from the cycle after its go, ``_Stream._feed_take``); a pruned row's top-k command
    is handshaked in the take cycle (the cycle after, when that is the engine's done cycle) and the row
    is ready in the engine's done cycle, ``topk`` cycles after the command (one not pruned: the cycle
    after the take); the PxV stage takes the rows in order at ``take_p = max(ready, b_free - 1)`` (idle,
    or in the cycle it sends its previous output row; from the cycle after the row's decision), idle
    again at ``b_free = take_p + 1 + pv + output``. A command is done at its last query's ``b_free``; the next command's handshake is the cycle after its last query's
    acceptance. A command without queries waits until the core is empty: done at ``hs + 1`` if the PxV
    stage is idle by its
    handshake ``hs``, else at ``b_free + 1`` (the next handshake then).

    ``ready``: when a command may be handshaked at the earliest (its K/V bank loaded), a list of cycles
    or a function ``ready(ci, dones)`` of the command index and the done cycles known so far (every
    command before ``ci - 1`` is done by then), e.g. :func:`dram_ready`; None: at once.
    ``fetcher``: split K and V loads instead (:class:`SplitLoads`): a command waits for its keys, its
    rows' PxV for its values (a one-query command's kept value rows, ``after_mask``, are loaded once its
    keep mask is complete). ``over_kept``: a list that receives, per row in order, whether its PxV
    visited the kept tokens only (the engine's keep mask was written by the take). ``feed``: False
    models the core before the top-k feed (a pruned row reaches its engine at the divider at the
    earliest), for comparisons. ``fed``: a list that receives, per row in order, None or, for a row
    the feed took, (take cycle, the cycles its first and its last input beat are valid). ``outs``: a
    list that receives, per row in order, the cycle its output row is offered (``out`` is always ready).
    ``fell``: a list that receives, per row in order, whether the fallback swept it unpruned
    (``_Stream._fallback_take``: its outputs are then those without local-V). ``preempted``: a list that
    receives, per row in order, how many times an LSB refetch preempted its QxK (``_Stream._preempt``).
    """
    st = _Stream(overlap_sweeps, feed)
    dones: list[int | None] = [None] * len(commands)
    releases: list[int | None] = [None] * len(commands)     # each command's keys_free cycle
    hs = 0
    inflight: list = []             # accepted, not yet resolved: (job, command, last)

    def resolve_oldest():
        job, ci, last = inflight.pop(0)
        free = st.resolve(job, fetcher.values_at(ci, dones, releases) if fetcher else 0)
        if last:
            dones[ci] = free
            releases[ci] = st.release

    for ci, queries in enumerate(commands):
        if fetcher is not None and fetcher.after_mask[ci] and len(queries) != 1:
            raise ValueError(f"command {ci}: only a one-query command's value load can wait for its keep mask "
                             f"(after_mask), it has {len(queries)} queries")
        if fetcher is not None:
            while inflight and inflight[0][1] <= ci - 2:
                resolve_oldest()
            hs = max(hs, fetcher.key_ready(ci, dones, releases))
        elif callable(ready):
            # the rule may need command ci - 2's done: it ends before command ci's handshake, so its
            # rows resolve first (their refetches, if any, come before any later query)
            while inflight and inflight[0][1] <= ci - 2:
                resolve_oldest()
            hs = max(hs, ready(ci, dones))
        elif ready is not None:
            hs = max(hs, int(ready[ci]))
        if not queries:
            while inflight:
                resolve_oldest()
            if st.b_free <= hs:
                dones[ci] = hs + 1
                hs += 1
            else:
                dones[ci] = st.b_free + 1
                hs = dones[ci]
            releases[ci] = dones[ci]
            continue
        earliest = hs + 1
        for qi, qc in enumerate(queries):
            _refetches_first(st, inflight, earliest, resolve_oldest)
            job = st.accept(qc, earliest)
            earliest = job[1] + 1
            inflight.append((job, ci, qi == len(queries) - 1))
            if len(inflight) == SCORE_BANKS:
                resolve_oldest()
        hs = earliest      # the cycle after the last query's acceptance
    while inflight:
        resolve_oldest()
    if over_kept is not None:
        over_kept.extend(st.over_kept)
    if fed is not None:
        fed.extend(st.fed)
    if outs is not None:
        outs.extend(st.outs)
    if fell is not None:
        fell.extend(st.fell)
    if preempted is not None:
        preempted.extend(st.preempted)
    return dones  # type: ignore[return-value]


def _refetches_first(st: _Stream, inflight: list, earliest: int, resolve_oldest) -> None:
    """Query i is accepted before the sweeps of queries i-1 .. i-SCORE_BANKS+1 (its bank was freed
    with query i-SCORE_BANKS) and before their refetches, unless it comes later than such a row's PQ
    decision (a command waiting for its K/V): the refetch then takes the QxK stage first. Rows ahead of
    a refetching one are resolved first (in order; a row without a refetch does not touch the QxK
    stage, so resolving it early changes nothing for the query)."""
    while any(job[0][0].passes == 2 for job in inflight):
        job = inflight[0][0]
        if job[0].passes == 2 and max(earliest, st.qk_free, st.bank_free[st.nb]) <= st.first_decision_of(job):
            return
        resolve_oldest()


def overlapped_cycles(queries: Sequence[QueryCycles]) -> int:
    """Cycles of one command (handshake to ``done``) through the core; see :func:`command_stream_cycles`."""
    return command_stream_cycles([queries])[0]


def query_cycles(spec: SpattenSpec, n_keys: int, *, lsb_pass: bool = False,
                 topk_cycles: int | None = None, pq_enable: bool = False,
                 pv_windows: int | None = None, dense_ok: bool = False) -> QueryCycles:
    """Closed-form stage cycles of one query against ``n_keys`` cached keys.

    ``lsb_pass``: the PQ decision asked for the LSBs, so the QxK and softmax stages run twice.
    ``pq_enable``: the command has progressive quantization on (implied by ``lsb_pass``): the softmax
    stage then holds the row until its PQ decision.
    ``topk_cycles``: the local-V top-k's cycles from its command handshake to ``done`` (from
    :func:`archgen.sim.topk_model.simulate_topk` on the row's exponentials), or None when the row is not
    pruned (keep_k >= n_keys). ``pv_windows``: the pruned row's PxV windows over its kept tokens
    (:func:`pv_windows`, rule ``banked``; None: the PxV stage sweeps every group, e.g. without the keep mask).
    ``dense_ok``: the command's value load holds every value row (its ``dense_ok`` bit): with the spec's
    ``units.topk.fallback``, a pruned row whose top-k is late is swept unpruned (``QueryCycles.fallback``).
    Assumes the query stream offers the query at once and ``out`` is ready.
    """
    if not 1 <= n_keys <= spec.max_tokens:
        raise ValueError(f"n_keys must be in 1..{spec.max_tokens} for {spec.name!r}, not {n_keys!r}")
    lat = spatten_latencies(spec)
    tk = 0 if topk_cycles is None else topk_cycles + lat.topk_handoff
    g = _groups(spec, n_keys)
    kept, mask = 0, 0
    if topk_cycles is not None and pv_windows is not None:
        # the compacted sweep (at least one issue cycle: it clears the accumulator and ends the row) beside
        # the token importance's own sweep over every group (G issues, then one cycle to the output)
        kept = max(max(1, pv_windows) + lat.pv_pipe, g + PV_IMPORTANCE_TAIL)
        mask = -(-n_keys // spec.topk.parallelism) + PV_MASK_TAIL
    return QueryCycles(qk_cycles(spec, n_keys), g + lat.exp_pipe, lat.recip, lat.pq_decide,
                       2 if lsb_pass else 1, bool(pq_enable or lsb_pass), tk, pv_cycles(spec, n_keys), lat.output,
                       lat.exp_pipe, kept, mask, spec.topk.parallelism // spec.lanes, spec.topk.feed,
                       bool(dense_ok and spec.topk.fallback != "none" and topk_cycles is not None),
                       spec.qk.preempt)


@dataclass(frozen=True)
class CoreRun:
    """One command on the core: outputs (bit-exact), per-query cycles and top-k runs, and the total.

    ``cycles`` counts rising edges from the command handshake to the cycle in which ``done`` is high.
    """

    results: tuple[QueryResult, ...]
    queries: tuple[QueryCycles, ...]
    topk_runs: tuple[TopKRun | None, ...]
    cycles: int

    @property
    def outputs(self) -> np.ndarray:
        return np.stack([r.out for r in self.results]) if self.results else np.zeros((0, 0), dtype=np.int64)


def fallen_back(spec: SpattenSpec, r: QueryResult, values: np.ndarray, pq_enable: bool) -> QueryResult:
    """``r`` as the core computes it when the fallback swept the row unpruned (``_Stream._fallback_take``):
    every token kept, the output over all of them (the values the row uses: full precision after an LSB
    pass or with PQ off, else their MSBs)."""
    vals = values if (r.need_lsb or not pq_enable) else mask_lsbs(values, spec.pq.lsb_bits)
    keep = np.ones(len(r.keep), dtype=bool)
    return dataclasses.replace(r, out=pv_accumulate(r.probs, vals, keep), keep=keep)


def core_cycles(spec: SpattenSpec, queries: np.ndarray, keys: np.ndarray, values: np.ndarray, *, shift: int,
                keep_k: int | None = None, pq_enable: bool = True, thr_fx: int | None = None,
                seed: int = 0, dense_ok: bool = False) -> CoreRun:
    """Run one command (all ``queries`` against ``keys``/``values``) through the model of the core.

    Returns the bit-exact outputs and the exact cycle count the RTL takes (see :class:`CoreRun`), the
    command alone on the core. ``dense_ok``: the command's bit of that name (all its values are loaded,
    so a row whose top-k is late may be swept unpruned, ``QueryCycles.fallback``); in a stream of several
    commands which rows fall back depends on the stream (``command_stream_cycles(..., fell=)``).
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.int64))
    n = len(keys)
    k = n if keep_k is None else keep_k
    results, qcs, runs = [], [], []
    for q in queries:
        r = core_reference(spec, q, keys, values, shift=shift, keep_k=k, pq_enable=pq_enable, thr_fx=thr_fx)
        run = None
        if k < n:
            run = simulate_topk([int(e) for e in r.exps], k, parallelism=spec.topk.parallelism, seed=seed,
                                fifo_depth=spec.topk.fifo_depth, replay=False,
                                sample_register=spec.topk.sample_register)
            if set(run.indices) != set(np.flatnonzero(r.keep).tolist()):
                raise AssertionError("top-k model and core reference disagree on the kept tokens")
        results.append(r)
        runs.append(run)
        qcs.append(query_cycles(spec, n, lsb_pass=r.need_lsb, topk_cycles=None if run is None else run.cycles,
                                pq_enable=pq_enable, dense_ok=dense_ok,
                                pv_windows=None if run is None else pv_windows(r.keep, spec.lanes, "banked")))
    fell: list = []
    total = command_stream_cycles([qcs], fell=fell)[0]
    results = [fallen_back(spec, r, values, pq_enable) if f else r for r, f in zip(results, fell)]
    return CoreRun(tuple(results), tuple(qcs), tuple(runs), total)


def core_process(env, spec: SpattenSpec, queries, keys, values, **kwargs):
    """SimPy process: occupies the core for the command's exact cycles; returns the CoreRun."""
    run = core_cycles(spec, queries, keys, values, **kwargs)
    yield env.timeout(run.cycles)
    return run
