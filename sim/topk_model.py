"""Exact cycle model and functional reference of archgen's SpAtten top-k engine (rtlgen/topk.py).

The model does not time anything by measurement: it runs the same quick-select rounds as the hardware
(same pivot rule, same partitions, same FIFO-or-buffer choice) on the actual scores and adds up the
documented phase lengths of docs/topk.md ("Cycle contract"). The RTL implements the same schedule; the
verification compares the two cycle for cycle.

Schedule (P lanes, D = fifo_depth rows per partition FIFO, B = ceil(n / P) buffer rows, a pivot sample of
S lanes from w rows, ``sample_shape``):

========================  ==========================================================================
phase                     cycles
========================  ==========================================================================
command accepted          1   (the command handshake cycle; counting starts there)
ingest + first partition  B + min(w, B) + [B = 1] + 3  (B input beats back to back; the first w are the sample,
                          ranked as the last of them arrives, the pivots taken in the next cycle; the
                          beats after the sample are partitioned as they arrive, the min(w, B) sample
                          beats re-read from the buffer after the last beat, one cycle later when B = 1;
                          3 cycles for the last row to reach the FIFOs)
decide                    1   (flush partial rows, choose the side, update bounds and target; the ranker
                          reads the chosen side's captured sample, ``captured_sample``, in its registers)
each further round        R + 4 + 1  (R rows read from the cycle after the decide on; the sample is ranked
                          in that cycle and the pivots taken in the next, both while the first row is
                          read; 4 pipeline cycles: memory, memory output register, compare register,
                          compacted-row register; decide); R = ceil(|W| / P) when the working set W fits
                          a FIFO (|W| <= D * P), else R = B (the buffer is rescanned with the bounds
                          lo < x < hi); a W of at most S lanes: 2 (sampled whole: ranked, then found in
                          the pick cycle)
rank pipeline (default)   the ingest re-reads min(w + 1, B) + [B <= w] beats; a round compares its sample in
                          the decide cycle (popcounts in the next, pick in the one after: no extra cycle),
                          except a *late* round, whose sample needs the row flushed in the decide (a W
                          sampled whole, 3; with P > S a W of fewer than P elements, R + 6)
sample register (option)  ``sample_register=True`` (needs the rank pipeline): the sample registered in local
                          copies before its compare, and its one-hot pick registered before the pivots load
                          (H122), so every round costs two cycles more (R + 7, a late one R + 8, the exact
                          finish 5), and the ingest re-reads min(w + 3, B) beats, its first re-read waiting
                          min(3, w + 3 - B) cycles; and (H121, H133) the packers flush one cycle before
                          every decide (PREDECIDE; the captures sit one register stage behind the
                          packers): a scanned round R + 8 (late R + 9), the ingest's decide one cycle later
replay                    B + 5 + 1 + 1  (B rows read, 5 pipeline cycles: memory, output register,
                          compare register, keep register, compacted-row register; flush; drain)
========================  ==========================================================================

``cycles`` counts rising edges from the command handshake to the cycle in which ``done`` is high,
with the input stream back to back and the output stream always ready. k = 0 skips the rounds and the
replay; k >= (number of valid elements) skips the rounds.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

__all__ = [
    "TopKRound",
    "TopKRun",
    "topk_reference",
    "simulate_topk",
    "topk_process",
    "CMD_CYCLES",
    "DECIDE_CYCLES",
    "SCAN_LATENCY",
    "EXACT_FINISH",
    "REPLAY_LATENCY",
    "REPLAY_TAIL",
    "SAMPLE_LANES",
    "sample_shape",
    "captured_sample",
    "ingest_cycles",
    "sample_rank",
    "bracket_pivots",
    "bracket_below",
    "BRACKET_ABOVE",
]

CMD_CYCLES = 1       # the command handshake cycle
INGEST_DRAIN = 3     # the last input beat passes the input, compare and compacted-row registers
DECIDE_CYCLES = 1    # flush partial rows, update target and bounds, load the chosen side's sample
SAMPLE_LANES = 16    # sample lanes ranked to choose the pivots for P < 32 (32 for P >= 32): sample_shape
BRACKET_ABOVE = 2    # the upper pivot: this many sample ranks above the target's expected rank (none
                     # when that is above the top)


def bracket_below(lanes: int) -> int:
    """Sample ranks between the target's expected rank and the lower pivot: 3 for a 32-lane sample, 2 for a
    16-lane one, 1 for a smaller one (a narrower bracket pays off only with the spread of a larger sample; model study
    in docs/topk.md)."""
    return 3 if lanes >= 32 else 2 if lanes >= 16 else 1
EXACT_FINISH = 2     # a working set sampled whole: no scan read; rank the sample, then take the pivot and the
                     # count of the sample above it -> found


def sample_shape(parallelism: int, fifo_depth: int, sample_lanes: int | None = None) -> tuple[int, int]:
    """(rows w, lanes S) of the pivot sample: S = ``sample_lanes`` (the engine's parameter; default 16 sample
    lanes, 32 for P >= 8) taken from w = ceil(S / P)
    consecutive rows (at most the FIFO depth), so that a small P still ranks 16 elements; with P > S the
    first S lanes of one row. The ingest's sample is the first w input beats; a round's is S lanes captured
    from the rows its FIFO's packer emitted in the round before, spread over them (``captured_sample``)."""
    lanes = sample_lanes if sample_lanes else 2 * SAMPLE_LANES if parallelism >= 8 else SAMPLE_LANES
    rows = max(1, min(-(-lanes // parallelism), fifo_depth))
    return rows, min(lanes, rows * parallelism)
SCAN_LATENCY = 4     # memory read, memory output register, compare register, compacted-row register
REPLAY_LATENCY = 5   # the same three, then the keep-decision and the compacted-row registers
REPLAY_TAIL = 2      # flush the output packer, then drain the output register


def captured_sample(side: Sequence[int], parallelism: int, lanes: int, rows: int) -> list[int]:
    """The elements of ``side`` (in the order its packer emits them, P per row, the last row partial)
    that a FIFO's sample capture holds when the round ends: q slots of g lanes, q * g = S = ``lanes``.
    P < S: a slot is a whole row (g = P, q = w = ``rows``); P >= S: a slot is one lane (g = 1, q = S), and
    slot i only ever takes lane i of a row. Rows at positions 0, s, 2s, ... (s a power of two, 1 at first)
    go to slot 0, 1, 2, ... (with P >= S, row 0 fills every slot); when a kept row finds the q slots
    full, slot i <- slot 2i for i < q/2, s doubles, and the row goes to slot q/2. Slots q/2 + 1 .. q - 1
    keep their older rows until overwritten, so once q rows have arrived every slot holds an element
    of the side and the sample spreads over the whole side, whatever its count (a slot moved down also
    stays in its old slot until a later row overwrites it: such an element is ranked twice, which only
    weighs the sample). The partial row flushed
    at the round's end is taken only into an empty slot (s = 1 and a free slot; with P >= S only as row
    0), so that it never replaces full lanes with holes. A side of at most S elements is held whole (at
    most w rows; one row when P >= S)."""
    p = parallelism
    whole_row = p < lanes
    q = rows if whole_row else lanes
    slots: list[list[int]] = [[] for _ in range(q)]
    stride, ptr = 1, 0
    for j, start in enumerate(range(0, len(side), p)):
        row = side[start:start + p]
        if j % stride:
            continue
        if len(row) < p and not (ptr == 0 or whole_row and stride == 1 and ptr < q):
            continue        # the partial row flushed at the end goes only to an empty slot
        if ptr == q:
            for i in range(q // 2):
                slots[i] = slots[2 * i]
            stride, ptr = 2 * stride, q // 2
        if whole_row:
            slots[ptr] = list(row)
        elif ptr == 0:
            slots = [[row[i]] if i < len(row) else [] for i in range(q)]
        else:
            slots[ptr] = [row[ptr]] if ptr < len(row) else []
        ptr += 1
    return [i for slot in slots for i in slot]


def sample_rank(target: int, size: int, lanes: int) -> int:
    """Wanted rank (0 = largest) inside a sample of ``lanes`` elements of a working set of ``size``
    whose ``target``-th largest (1-based) is sought: floor(target * lanes / size), clipped to lanes - 1,
    computed as the number of r in 1..lanes-1 with r * size <= lanes * target (no divider).

    A working set of at most ``lanes`` elements is sampled whole (its FIFO's first rows): then the
    wanted rank is target - 1, so the pivot is the k-th value itself and the round ends the search
    (the *exact finish*; without it, such sets took up to four more one-row rounds)."""
    if size <= lanes:
        return target - 1
    return sum(1 for r in range(1, lanes) if r * size <= lanes * target)


def ingest_cycles(n: int, parallelism: int, fifo_depth: int, sample_lanes: int | None = None,
                  rank_pipeline: bool = True, sample_register: bool = False) -> int:
    """Command, ingest with its partition, the re-read of the sample beats, drain and first decide:
    1 + B + min(w, B) + [B = 1] + 3 + 1 cycles without the rank pipeline (docs/topk.md "Cycle contract"); with it (default)
    1 + B + min(w + 1, B) + [B <= w] + 3 + 1; with ``sample_register`` too 1 + B + min(w + 3, B)
    + max(0, min(3, w + 3 - B)) + 3 + 1 + 1 (PREDECIDE: the packers flush a cycle before the decide)."""
    rows = -(-n // parallelism)
    return (CMD_CYCLES + rows
            + _reread_rows(rows, parallelism, fifo_depth, sample_lanes, rank_pipeline, sample_register)
            + INGEST_DRAIN + DECIDE_CYCLES + int(bool(sample_register)))


def _reread_rows(rows: int, parallelism: int, fifo_depth: int, sample_lanes: int | None,
                 rank_pipeline: bool = True, sample_register: bool = False) -> int:
    """Input beats partitioned after the ingest (re-read from the buffer): the sample beats (the last one is
    ranked as it arrives and the pivots are taken in the next cycle, after it has passed the comparators),
    and with the rank pipeline (pivots one cycle later) the beat after them."""
    w = sample_shape(parallelism, fifo_depth, sample_lanes)[0]
    # the first re-read is issued in the last beat's cycle, or one cycle later when the pivots are not yet
    # taken two cycles after it (a one-beat request: the buffer's read port does not see the write of the
    # same cycle)
    # with the rank pipeline the pivots come x = 1 cycle later, with the sample register (and its second pick
    # stage) x = 3: the x beats after
    # the sample are re-read too, and the first re-read waits until it meets the pivots (x cycles when the last
    # beat is a sample beat, x - 1 when it is the one after)
    x = int(rank_pipeline) + _register_delay(sample_register)
    if x:
        return min(w + x, rows) + max(0, min(x, w + x - rows))
    return min(w, rows) + (rows == 1)


def _register_delay(sample_register: bool) -> int:
    """Cycles the ``sample_register`` option adds to every round and to the ingest's pivots: the sample registered
    before its compare, and (since H122) the one-hot pick registered before the pivots load."""
    return 2 if sample_register else 0


def bracket_pivots(sample: Sequence[int], target: int, size: int, lanes: int) -> tuple[int | None, int | None]:
    """The two pivots (upper, lower) of a round, from ``sample`` (the candidates among the ``lanes`` =
    S sample lanes of :func:`sample_shape`; their order does not matter) for the ``target``-th largest of a
    working set of ``size``: with r = :func:`sample_rank`, the lower pivot is the sample's element of rank
    r + :func:`bracket_below` from the top, the upper one of rank r - BRACKET_ABOVE (both clipped to the sample;
    None, i.e. +infinity, when r - BRACKET_ABOVE < 0 or when it equals the lower one). A working set of
    at most S elements is sampled whole: the lower pivot is then the k-th value itself. An empty
    sample gives (None, None): every candidate goes below (+infinity)."""
    if not sample:
        return None, None
    ranked = sorted(sample, reverse=True)
    if size <= lanes:
        return None, ranked[min(target - 1, len(ranked) - 1)]
    r = sample_rank(target, size, lanes)
    lower = ranked[min(r + bracket_below(lanes), len(ranked) - 1)]
    hi_rank = r - BRACKET_ABOVE
    upper = ranked[min(hi_rank, len(ranked) - 1)] if hi_rank >= 0 else None
    return (None if upper == lower else upper), lower


@dataclass(frozen=True)
class TopKRound:
    """One quick-select round: where it read from, the pivot, the partition sizes and the decision."""

    source: str          # "ingest" (partition while the input arrives), "fifo" (the side chosen last
                         # round) or "buffer" (rescan with bounds)
    rows: int            # rows read (S; B for the ingest partition)
    size: int            # |W|
    pivot: int | None     # None: +infinity (the first beat's pivot lane was a hole)
    greater: int         # above the lower pivot (the upper classes included)
    equal: int
    less: int
    decision: str        # "up" (above the upper pivot: a buffer rescan), "right" (between the pivots,
                         # FIFO_R), "left" (below the lower pivot, FIFO_L) or "found"
    cycles: int          # cycles the round adds (0 for the ingest partition: it rides on the ingest)
    upper: int | None = None   # the upper pivot (None: +infinity, no upper class)
    above: int = 0       # above the upper pivot (FIFO_U)
    equal_upper: int = 0  # equal to the upper pivot; greater - above - equal_upper are between (FIFO_R)


@dataclass(frozen=True)
class TopKRun:
    """Result of one request: kept indices/values in original order, cycles and the rounds taken."""

    indices: tuple[int, ...]
    values: tuple[int, ...]
    cycles: int
    rounds: tuple[TopKRound, ...]
    mode: str                    # "none" (k = 0), "all" (k >= valid count) or "select"
    kth: int | None = None
    keep_equal: int | None = None
    output_beats: int = 0        # beats on the output stream: kept elements packed P per beat


def _valid_mask(n: int, valid: Sequence[bool] | None) -> np.ndarray:
    if valid is None:
        return np.ones(n, dtype=bool)
    mask = np.asarray(valid, dtype=bool)
    if mask.shape != (n,):
        raise ValueError(f"valid mask must have one entry per score ({n}), not shape {mask.shape!r}")
    return mask


def topk_reference(scores: Sequence[int], k: int, valid: Sequence[bool] | None = None) -> list[int]:
    """Indices of the k largest valid scores, in original order; ties go to the lower index.

    Independent of the engine's algorithm: a stable sort by descending value.
    """
    x = np.asarray(scores, dtype=np.int64)
    mask = _valid_mask(len(x), valid)
    idx = np.flatnonzero(mask)
    if k <= 0 or len(idx) == 0:
        return []
    order = idx[np.argsort(-x[idx], kind="stable")]
    return sorted(int(i) for i in order[:k])


def simulate_topk(scores: Sequence[int], k: int, *, parallelism: int, seed: int = 0,
                  fifo_depth: int = 64, valid: Sequence[bool] | None = None, replay: bool = True,
                  sample_lanes: int | None = None, rank_pipeline: bool = True,
                  sample_register: bool = False) -> TopKRun:
    """Run the engine's quick-select on ``scores`` (n = len(scores)) and return result and cycles.

    ``seed`` is the command's seed field; it has no effect (the pivots come from samples, not a random draw).

    ``replay=False`` is the engine built without its replay (``TopK(..., replay=False)``, the SpAtten
    core's): ``done`` follows the decision that found the k-th value, and the result is the threshold
    (``kth``, ``keep_equal``) that the consumer applies in its own sweep; the kept set is the same.
    ``sample_lanes`` is the engine's S (``sample_shape``; None: its default for P); ``rank_pipeline`` the
    engine's registered sample compare bits (default since H88; one more re-read beat at the ingest, and one
    more cycle for a *late* round: a set sampled whole, or with P > S one of fewer than P elements; other
    rounds compare their sample in the decide cycle and cost the same as without it); ``sample_register`` the
    engine's sample registered (in local copies) before that compare and its one-hot pick registered (needs
    ``rank_pipeline``): every round two more cycles, and two more re-read beats at the ingest; and one more cycle
    before every decide (PREDECIDE: the ingest's and each scanned round's, not the exact finish's)."""
    if sample_register and not rank_pipeline:
        raise ValueError("sample_register needs rank_pipeline")
    if sample_lanes is not None and (sample_lanes < 2 or sample_lanes & (sample_lanes - 1)):
        raise ValueError(f"sample_lanes must be a power of two >= 2 or None, not {sample_lanes!r}")
    if parallelism < 1 or parallelism & (parallelism - 1):
        raise ValueError(f"parallelism must be a power of two >= 1, not {parallelism!r}")
    if k < 0:
        raise ValueError(f"k must be >= 0, not {k!r}")
    x = [int(v) for v in scores]
    n, p = len(x), parallelism
    mask = _valid_mask(n, valid)
    buffer_rows = -(-n // p)
    capacity = fifo_depth * p
    members = [i for i in range(n) if mask[i]]
    n_valid = len(members)

    # The ingest's pivots come from the first w beats (ranked as the last of them arrives), so the beats
    # before it are partitioned after the last beat, re-read from the buffer (the first re-read is issued
    # in the last beat's cycle).
    sample_rows, sample_lanes = sample_shape(p, fifo_depth, sample_lanes)
    cycles = ingest_cycles(n, p, fifo_depth, sample_lanes, rank_pipeline, sample_register)
    late, sreg = int(bool(rank_pipeline)), _register_delay(bool(sample_register))
    replay = buffer_rows + REPLAY_LATENCY + REPLAY_TAIL if replay else 0
    if k == 0:
        return _finish(TopKRun((), (), cycles, (), "none"), p)
    if k >= n_valid:
        kept = members
        return _finish(TopKRun(tuple(kept), tuple(x[i] for i in kept), cycles + replay, (), "all"), p)

    # The ingest partition's pivots: the bracket from the first S elements (the candidates among them),
    # ranked around the target's quantile of the whole request.
    upper, pivot = bracket_pivots([x[i] for i in range(min(sample_lanes, n)) if mask[i]], k, n, sample_lanes)
    # the working set in scan order (the order its FIFO holds it): the ingest partitions the beats after
    # the sample beats as they arrive, then the re-read sample beats
    split = min(sample_rows + late + sreg, buffer_rows) * p
    work = [i for i in members if i >= split] + [i for i in members if i < split]
    target = k                          # rank (1-based) of the wanted value inside work
    source, rows, step = "ingest", buffer_rows, 0
    rounds: list[TopKRound] = []
    while True:
        if source == "buffer":
            work = sorted(work)         # a buffer rescan reads in index order
        # classes: above the upper pivot (counted), equal to it (counted), strictly between the pivots
        # (FIFO_R), equal to the lower pivot (counted), below it (FIFO_L); no upper pivot: +infinity
        above = [] if upper is None else [i for i in work if x[i] > upper]
        equal_up = 0 if upper is None else sum(1 for i in work if x[i] == upper)
        if pivot is None:
            middle, equal, less = [], 0, work
        else:
            middle = [i for i in work if x[i] > pivot and (upper is None or x[i] < upper)]
            equal = sum(1 for i in work if x[i] == pivot)
            less = [i for i in work if x[i] < pivot]
        cycles += step
        a, ae, am = len(above), len(above) + equal_up, len(above) + equal_up + len(middle)
        if target <= a:
            decision, target, work, in_fifo = "up", target, above, True
        elif target <= ae:
            decision, found, keep_equal = "found", upper, target - a
        elif target <= am:
            decision, target, work, in_fifo = "right", target - ae, middle, True
        elif target <= am + equal:
            decision, found, keep_equal = "found", pivot, target - am
        else:
            decision, target, work, in_fifo = "left", target - am - equal, less, True
        rounds.append(TopKRound(source, rows, am + equal + len(less), pivot, am, equal,
                                len(less), decision, step, upper, len(above), equal_up))
        if decision == "found":
            break
        # the next round's sample: captured from the rows its packer emitted (decimating, so spread over
        # the whole side, beyond the FIFO's capacity too), in registers at the decide cycle: no sample read
        sample = [x[i] for i in captured_sample(work, p, sample_lanes, sample_rows)]
        upper, pivot = bracket_pivots(sample, target, len(work), sample_lanes)
        from_fifo = in_fifo and len(work) <= capacity
        source = "fifo" if from_fifo else "buffer"
        rows = -(-len(work) // p) if from_fifo else buffer_rows
        # the cycle after the decide ranks the sample, the next one takes the pivots; the scan reads its
        # first row from the ranking cycle on, so both hide under the read's latency. The rank pipeline
        # compares the sample in the decide cycle already (its popcounts then run in the cycle after), from
        # the capture as it is before the decide's flush; a *late* round, whose sample needs the row flushed
        # then (a set sampled whole, or with P > S one of fewer than P elements, which has no full row), is
        # compared one cycle later and costs one more cycle
        whole = from_fifo and len(work) <= sample_lanes
        # (the sample register ranks every round's sample one cycle later still, and its pick stage takes the
        # pivots one more cycle later)
        late_round = sreg + (late if whole or len(work) < p else 0)
        if whole:
            step = EXACT_FINISH + late_round           # sampled whole: found after ranking, no scan pipeline
        else:
            # (with the sample register the packers flush a cycle before the decide: PREDECIDE, one more cycle)
            step = rows + SCAN_LATENCY + DECIDE_CYCLES + late_round + int(bool(sample_register))

    kth = found
    kept, equal_seen = [], 0
    for i in members:
        if x[i] > kth:
            kept.append(i)
        elif x[i] == kth:
            if equal_seen < keep_equal:
                kept.append(i)
            equal_seen += 1
    return _finish(TopKRun(tuple(kept), tuple(x[i] for i in kept), cycles + replay, tuple(rounds),
                           "select", kth, keep_equal), p)


def _finish(run: TopKRun, p: int) -> TopKRun:
    return replace(run, output_beats=-(-len(run.indices) // p))


def topk_process(env, scores: Sequence[int], k: int, **kwargs):
    """SimPy process: occupies the engine for the request's exact cycles; returns the TopKRun."""
    run = simulate_topk(scores, k, **kwargs)
    yield env.timeout(run.cycles)
    return run
