"""Projections for issue 15's figure 3 (local-V never slower): what the core would give with changes
that are NOT built (docs/spatten_results.md, "Split K and V loads"). Scratch variants of the model,
applied by patching it for the run; the built core is what benchmarks/spatten_bench.py measures.

    python benchmarks/spatten_figure3_projections.py key-banks-3 gpt2-small     # a third key bank
    python benchmarks/spatten_figure3_projections.py engines-3 MiniLM           # a third top-k engine
    python benchmarks/spatten_figure3_projections.py pv-kept MiniLM             # PxV over kept rows only
    python benchmarks/spatten_figure3_projections.py key-banks-3+pv-kept gpt2   # variants combine
    python benchmarks/spatten_figure3_projections.py built gpt2                 # the built core's ratios, 6 places
    python benchmarks/spatten_figure3_projections.py oracle-v-fetch gpt2        # the value fetch before H120 (an oracle)
    python benchmarks/spatten_figure3_projections.py no-feed gpt2               # the core before the feed (H98)
    python benchmarks/spatten_figure3_projections.py no-fallback bert-base      # the core before the fallback (H103)
    python benchmarks/spatten_figure3_projections.py topk-feed bert-base        # top-k fed by the sweep (H93)
    python benchmarks/spatten_figure3_projections.py reorder-oldest gpt2        # a reordering fetcher (H94)
    python benchmarks/spatten_figure3_projections.py no-qk-preempt gpt2         # the core before QxK preemption (H117)
    python benchmarks/spatten_figure3_projections.py refetch-waits gpt2         # what binds c = 1 (H94)
    python benchmarks/spatten_figure3_projections.py check-reorder 500          # reorder's fixed point = causal
    python benchmarks/spatten_figure3_projections.py dense-ok-every gpt2        # the host marks every command dense_ok
    python benchmarks/spatten_figure3_projections.py dense-ok-layer gpt2        # one tail per layer, not per decode step
    python benchmarks/spatten_figure3_projections.py dense-ok-tail1 gpt2        # the last command of each step dense_ok
                                                                                # (units.topk.fallback_tail: 1, the default
                                                                                # before H120's follow-up; the default is 2)

With ``--table`` after the trace filter: the bench's table 2-4 (every speedup column) under the variant.

Prints, per trace whose name contains the second argument, the time ratio without / with local-V for
token pruning and for token + head + PQ (the bench's figure-3 column).
- key-banks-3: keys in three banks (command i's keys load once command i - 3 released them), values
  in two; +1 key bank of the K/V SRAM.
- engines-3: three local-V top-k engines and six exponential-buffer banks.
- pv-kept: a pruned row's PxV sweeps only its kept value rows, an ideal compacted stream of two
  value-buffer rows a cycle: ``max(ceil(kept / L), ceil(n / 2L)) + pv_pipe`` cycles.
- reorder-RULE (RULE oldest, values or keys; H94): the split K/V loads from a fetcher that reorders
  them: two queues in command order (keys, values), and whenever the DRAM is free the head that may
  start first (its bank free: keys the cycle after command i - 2's keys_free, values after its done)
  starts, so keys of later commands go ahead of a value load that waits for its bank; on a tie the
  older command's load (keys before values), or the values, or the keys. The paper's SRAM. A load's
  order depends on later commands' key releases, so the stream is resolved to its fixed point (the
  schedule from the previous resolution's done / keys_free cycles, until it repeats): the schedule
  that reproduces itself is the fetcher's, as each decision depends only on earlier events.
- refetch-waits (H94, a diagnostic, changes nothing): per run, how many cycles the LSB refetches waited
  for the QxK stage after their PQ decision, with the DRAM loads and with the K/V on chip.
- qk-preempt (H94's projection): BUILT since H117 (spec ``units.qk.preempt``, default true; an LSB refetch
  preempts a later query's QxK while its groups are being issued, H94's ``qk-preempt-issuing``;
  ``sim.spatten_model._Stream._preempt``). ``no-qk-preempt`` runs the model without it (the core before).
- pv-RULE (RULE one of sim.spatten_model.PV_WINDOW_RULES: window, greedy, banked, ideal; H87's design
  study): a pruned row's PxV issues ``pv_windows(keep, L, RULE)`` windows of its kept tokens (value
  buffer as L banks), and the token importance gets a sweep of its own over all G groups beside it
  (own exponential read port and L normalise multipliers): ``max(W + pv_pipe, G + 2)`` cycles, the
  keep mask known at the take (an upper bound: a mask sweep before the take is not counted).
- topk-feed (H93): the local-V engine ingests a row as the exponential sweep writes it (one row of P
  exponentials once its last L-group left the exponential pipeline) from the sweep's go, for a row that
  cannot need its LSBs; topk-feed-spec also for a first pass with PQ on (abort on a refetch not counted).
  BUILT since H98 (the core's default, ``sim.spatten_model._Stream._feed_take``): this projection now
  runs on the model without the built feed (``feed=False``), so it still gives H93's projected
  figures, to compare with the built ones (docs/spatten_results.md).
- oracle-v-fetch (sixteenth session): the fetcher before the causal value fetch (H120): a one-query
  command's kept value rows loaded from the cycle after command i - 2 is done, before its own top-k
  chose them (commands of several queries still load whole, as built). The other fetcher variants
  (key-banks-3, reorder-RULE, and the patched per-layer streams of pv-kept / engines-3 / topk-feed) still
  use that oracle fetch: they are projections measured before it was built.
- dense-ok-every, dense-ok-layer (fifteenth session): host rules for the commands' ``dense_ok`` bits that
  the spec's ``units.topk.fallback`` does not offer (no RTL change: the bits are the host's): every command
  with rows (its values loaded whole, so each late row falls back), or the ``tail`` rule with one tail per
  layer instead of one per decode step (the rule before the decode steps became streams of their own).
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
import spatten_bench as bench  # noqa: E402

from archgen.arch.spatten_spec import spatten_formats as ss_formats  # noqa: E402

from archgen.dataflow.spatten_arrays import spatten_latencies  # noqa: E402
from archgen.sim import spatten_model as sm  # noqa: E402
from archgen.sim import spatten_sim as ss  # noqa: E402


class _ThreeKeyBanks(sm.SplitLoads):
    def _pair(self, i, dones, releases):
        loads = []
        if self.value_cycles[i] is not None:
            loads.append(("v", i, dones[i - 2] + 1 if i >= 2 else 0, int(self.value_cycles[i])))
        if i + 1 < len(self.key_cycles):
            loads.append(("k", i + 1, releases[i - 2] + 1 if i >= 2 else 0, self.key_cycles[i + 1]))
        loads.sort(key=lambda x: max(x[2], self.free))
        for kind, ci, allowed, cycles in loads:
            self.free = max(self.free, allowed) + cycles
            self.ends[(kind, ci)] = self.free


class _OracleValueFetch(sm.SplitLoads):
    """oracle-v-fetch: the fetcher before the sixteenth session, which loaded a one-query command's kept
    value rows from the cycle after command i - 2 was done, before its top-k had chosen them."""

    def __init__(self, key_cycles, value_cycles, values_first=True, after_mask=None):
        super().__init__(key_cycles, value_cycles, values_first)


class _ReorderLoads:
    """reorder-RULE: the greedy order of the reordering fetcher, given the done / keys_free cycles."""

    def __init__(self, key_cycles, value_cycles, priority):
        self.key_cycles, self.value_cycles, self.priority = [int(k) for k in key_cycles], list(value_cycles), priority

    def schedule(self, dones, releases):
        n = len(self.key_cycles)
        kend, vend = [0] * n, [0] * n
        kh, vh, free = 1, 0, 0
        while True:
            while vh < n and self.value_cycles[vh] is None:
                vh += 1
            heads = []
            if kh < n:
                heads.append((max(free, releases[kh - 2] + 1 if kh >= 2 else 0), self._rank("k", kh), "k", kh))
            if vh < n:
                heads.append((max(free, dones[vh - 2] + 1 if vh >= 2 else 0), self._rank("v", vh), "v", vh))
            if not heads:
                return kend, vend
            start, _rank, kind, ci = min(heads)
            if kind == "k":
                free = kend[ci] = start + self.key_cycles[ci]
                kh += 1
            else:
                free = vend[ci] = start + int(self.value_cycles[ci])
                vh += 1

    def _rank(self, kind, ci):
        return (ci, kind == "v") if self.priority == "oldest" else (kind != self.priority[0],)


class _Placed:
    """Loads already placed; keeps the stream's done and keys_free lists (the stream passes them)."""

    def __init__(self, kend, vend):
        self.kend, self.vend, self.lists = kend, vend, None

    def key_ready(self, ci, dones, releases):
        self.lists = (dones, releases)
        return self.kend[ci]

    def values_ready(self, ci, dones, releases):
        self.lists = (dones, releases)
        return self.vend[ci]

    values_at = values_ready        # the oracle value fetch (no wait for the keep mask, see oracle-v-fetch)


class _Capture(_Placed):
    """The pairs fetcher (SplitLoads), keeping the stream's lists: the fixed point's start."""

    def __init__(self, inner):
        super().__init__(None, None)
        self.inner = inner

    def key_ready(self, ci, dones, releases):
        self.lists = (dones, releases)
        return self.inner.key_ready(ci, dones, releases)

    def values_ready(self, ci, dones, releases):
        self.lists = (dones, releases)
        return self.inner.values_ready(ci, dones, releases)

    values_at = values_ready


REORDER_RESOLUTIONS = []        # resolutions each reordered stream took to its fixed point


def _reorder(priority: str) -> None:
    split_loads, stream_cycles = sm.SplitLoads, sm.command_stream_cycles

    def fixed_point(commands, fetcher, over_kept=None, **kwargs):
        cap = _Capture(split_loads(fetcher.key_cycles, fetcher.value_cycles))
        dones = stream_cycles(commands, fetcher=cap, **kwargs)
        seen = None
        for it in range(1, 10_001):
            sched = fetcher.schedule(*cap.lists)
            if sched == seen:
                REORDER_RESOLUTIONS.append(it)
                if over_kept is not None:
                    stream_cycles(commands, fetcher=_Placed(*sched), over_kept=over_kept, **kwargs)
                return dones
            seen, cap = sched, _Placed(*sched)
            dones = stream_cycles(commands, fetcher=cap, **kwargs)
        raise RuntimeError("reorder: no fixed point in 10,000 resolutions")

    def command_stream_cycles(commands, ready=None, *, fetcher=None, over_kept=None, **kwargs):
        if isinstance(fetcher, _ReorderLoads):
            return fixed_point(commands, fetcher, over_kept, **kwargs)
        return stream_cycles(commands, ready, fetcher=fetcher, over_kept=over_kept, **kwargs)

    sm.SplitLoads = lambda key_cycles, value_cycles, **_: _ReorderLoads(key_cycles, value_cycles, priority)
    sm.command_stream_cycles = command_stream_cycles


def _causal_reorder(commands, key_cycles, value_cycles, priority):
    """The reordering fetcher's loads decided one at a time in time order, each from a stream resolved
    with the undecided loads at 'infinity': an event that comes out finite does not depend on them (so
    it is exact), one that comes out infinite comes after the decision. Slow (a resolution per load):
    the check of the fixed point (``check-reorder``)."""
    inf, n = 10 ** 12, len(key_cycles)
    kend = [0] + [inf] * (n - 1)
    vend = [inf if v is not None else 0 for v in value_cycles]
    order = _ReorderLoads(key_cycles, value_cycles, priority)
    kh, vh, free = 1, 0, 0
    while True:
        while vh < n and value_cycles[vh] is None:
            vh += 1
        if kh >= n and vh >= n:
            return kend, vend
        placed = _Placed(kend, vend)
        sm.command_stream_cycles(commands, fetcher=placed)
        dones, releases = placed.lists
        heads = []
        for kind, ci, event in (("k", kh, releases), ("v", vh, dones)):
            if ci < n and (ci < 2 or event[ci - 2] < inf // 2):
                heads.append((max(free, event[ci - 2] + 1 if ci >= 2 else 0), order._rank(kind, ci), kind, ci))
        start, _rank, kind, ci = min(heads)
        if kind == "k":
            free = kend[ci] = start + key_cycles[ci]
            kh += 1
        else:
            free = vend[ci] = start + int(value_cycles[ci])
            vh += 1


def _check_reorder(streams: int) -> None:
    """check-reorder: the fixed point against the causal resolution on random small streams."""
    import random

    spec = bench.load_spatten_spec(bench.builtin_spec_path("spatten_small"))
    split, stream_cycles = sm.SplitLoads, sm.command_stream_cycles
    rng, moved, differ = random.Random(7), 0, 0
    for _ in range(streams):
        priority = rng.choice(("oldest", "values", "keys"))
        commands, kc, vc = [], [], []
        for ci in range(rng.randint(2, 14)):
            pq = rng.random() < 0.7
            rows = rng.choice((0, 1, 1, 1, 2, 3)) if ci else rng.randint(1, 3)
            commands.append([sm.query_cycles(spec, rng.randint(4, 64), lsb_pass=pq and rng.random() < 0.7,
                                             topk_cycles=rng.choice((None, rng.randint(5, 80))), pq_enable=pq)
                             for _ in range(rows)])
            kc.append(rng.randint(0, 250))
            vc.append(rng.randint(0, 250) if rows else None)
        want = stream_cycles(commands, fetcher=_Placed(*_causal_reorder(commands, kc, vc, priority)))
        _reorder(priority)
        got = sm.command_stream_cycles(commands, fetcher=sm.SplitLoads(kc, vc))
        sm.SplitLoads, sm.command_stream_cycles = split, stream_cycles
        moved += stream_cycles(commands, fetcher=split(kc, vc)) != want
        differ += got != want
    print(f"check-reorder: {streams} random streams ({moved} where the reordering fetcher's dones differ from "
          f"the pairs'): the fixed point differs from the causal resolution on {differ}")
    if differ:
        raise SystemExit(1)


def _no_qk_preempt() -> None:
    """no-qk-preempt: the core before the built QxK preemption (H117, ``units.qk.preempt: false``): an LSB
    refetch waits for the QxK stage, ``max(decision + 1, qk_free)``."""
    def wait(self, qc, job, decision):
        r = max(decision + 1, self.qk_free)
        self.qk_free = r + qc.qk
        return r
    sm._Stream._preempt = wait


REFETCH_WAITS: dict = {}        # refetch-waits: (DRAM or on chip) -> [rows refetching, cycles waited for the QxK]


def _refetch_waits() -> None:
    """refetch-waits (a diagnostic, no change): per run, the cycles LSB refetches wait for the QxK stage
    after their PQ decision (``r - decision - 1``), in the layer streams with their DRAM loads and with
    the K/V on chip."""
    sweep, resolve, stream_cycles = sm._Stream._sweep, sm._Stream.resolve, sm.command_stream_cycles
    mode = ["chip"]

    def sweep_logged(self, qc, go):
        out = sweep(self, qc, go)
        self.passes_log.append((go, out))
        return out

    def resolve_logged(self, job, values_at=0):
        self.passes_log = []
        free = resolve(self, job, values_at)
        if len(self.passes_log) == 2:       # the LSB pass's go is its QxK start + qk
            acc = REFETCH_WAITS.setdefault(mode[0], [0, 0])
            acc[0] += 1
            acc[1] += self.passes_log[1][0] - job[0].qk - self.passes_log[0][1][2] - 1
        return free

    def command_stream_cycles(commands, ready=None, *, fetcher=None, **kwargs):
        mode[0] = "chip" if fetcher is None else "dram"
        return stream_cycles(commands, ready, fetcher=fetcher, **kwargs)

    sm._Stream._sweep, sm._Stream.resolve, sm.command_stream_cycles = sweep_logged, resolve_logged, command_stream_cycles


def _engines(n: int) -> None:
    sm.TOPK_ENGINES, sm.EXP_BUFFER_BANKS = n, 3 + n


def _pv_kept() -> None:
    current = {}
    layer_result, core_cycles = ss._layer_result, ss._core_cycles

    def remember(spec, s, *args, **kwargs):
        current["keys"], current["values"] = s.row_keys, s.row_values
        return layer_result(spec, s, *args, **kwargs)

    def core(spec, keys, lsb, topk, commands, pq=False, loads=None, windows=None, **_fallback):
        if topk is None or keys is not current.get("keys"):
            return core_cycles(spec, keys, lsb, topk, commands, pq, loads, windows, steps=_fallback.get("steps"))
        lanes, pipe = spec.lanes, spatten_latencies(spec).pv_pipe
        rows = []
        for n, lp, t, v in zip(keys.tolist(), lsb.tolist(), topk.tolist(), current["values"].tolist()):
            qc = sm.query_cycles(spec, n, lsb_pass=bool(lp), topk_cycles=None if t < 0 else t, pq_enable=pq)
            if t >= 0:
                qc = dataclasses.replace(qc, pv=max(math.ceil(v / lanes), math.ceil(n / (2 * lanes))) + pipe)
            rows.append(qc)
        return _stream_total(rows, commands, loads, _fallback.get("steps"))

    ss._layer_result, ss._core_cycles = remember, core


def _stream_total(rows, commands, loads, steps=None):
    """The patched per-layer core time: the rows streamed through the core's stages, one stream per
    generation step (``ss._step_segments``), with the split K/V loads when the layer has them (the stage
    columns are not projected)."""
    stream = ss.command_rows(rows, commands)
    total = 0
    for a, b in ss._step_segments(commands, steps):
        fetch = sm.SplitLoads(loads[0][a:b], loads[1][a:b]) if loads is not None else None
        first = loads[0][a] if loads is not None else 0
        total += first + sm.command_stream_cycles(stream[a:b], fetcher=fetch)[-1]
    return total, {"front": 0, "topk": 0, "pv": 0}


_WSHIFT = 24     # pv-RULE: the windows ride in the top-k cycles' high bits (this script only)


def _pv_rule(rule: str) -> None:
    exact = ss._exact_topk_fn
    core_cycles = ss._core_cycles

    def exact_with_windows(spec):
        cycles, one = exact(spec), 1 << ss_formats(spec).exp_frac

        def both(probs, k):
            c = cycles(probs, k)
            if c < 0:
                return c
            top = max(float(probs.max()), np.finfo(float).tiny)
            fx = np.minimum(np.floor(probs / top * one), one).astype(np.int64)
            return c + (sm.pv_windows(sm.topk_keep_mask(fx, k), spec.lanes, rule) << _WSHIFT)
        return both

    def core(spec, keys, lsb, topk, commands, pq=False, loads=None, windows=None, **_fallback):
        if topk is None:
            return core_cycles(spec, keys, lsb, topk, commands, pq, loads, windows, steps=_fallback.get("steps"))
        lanes, pipe = spec.lanes, spatten_latencies(spec).pv_pipe
        rows = []
        for n, lp, t in zip(keys.tolist(), lsb.tolist(), topk.tolist()):
            cyc, w = (t, 0) if t < 0 else (t & ((1 << _WSHIFT) - 1), t >> _WSHIFT)
            qc = sm.query_cycles(spec, n, lsb_pass=bool(lp), topk_cycles=None if t < 0 else cyc, pq_enable=pq)
            if t >= 0:
                qc = dataclasses.replace(qc, pv=max(w + pipe, math.ceil(n / lanes) + 2))
            rows.append(qc)
        return _stream_total(rows, commands, loads, _fallback.get("steps"))

    ss._exact_topk_fn, ss._core_cycles = exact_with_windows, core


class _FedStream(sm._Stream):
    """topk-feed: a pruned row that cannot need its LSBs (PQ off, or its LSB pass) is handed to its top-k
    engine at its sweep's go (the engine free by then), and the engine ingests each row of P exponentials
    the cycle after its last L-wide group left the exponential pipeline, instead of reading the whole row
    back to back from the divider's take on; the rounds after the ingest are the engine's own (its cycles
    less its B input beats). Optimistic: the rotation and hold slot are not re-checked. topk-feed-spec:
    a first pass with PQ on is fed the same way (speculatively; a refetch would abort it, whose cost is
    not counted)."""

    ratio = 2           # P / L (spatten.yaml: 16 / 8)
    speculative = False  # topk-feed-spec: a first pass with PQ on too (aborted when it asks for its LSBs)

    def __init__(self, overlap_sweeps: bool = True, feed: bool = True):
        super().__init__(overlap_sweeps, feed=False)     # H93's projection, on the model without the built feed

    def _sweep(self, qc, go):
        out = super()._sweep(qc, go)
        self.sweep_go, self.sweep_last = go, out[0]
        return out

    def _engine_ready(self, qc, take, fed=False):
        if qc.pq and qc.passes == 1 and not self.speculative:
            return super()._engine_ready(qc, take)
        g, r, pipe = qc.exp - qc.exp_pipe, self.ratio, qc.exp_pipe
        beats = -(-g // r)
        # the engine is free by the sweep's go unless it handed its previous row to the PxV stage later
        free = take == (self.last_start + 1 if not (qc.pq and qc.passes == 1) else self.last_start + 1 + qc.div
                                                                                        + qc.decide)
        cmd = max(self.sweep_go + 1 if free else take, self.eng_idle[self.te])
        c = cmd
        for b in range(beats):
            j = min(r * (b + 1), g) - 1          # the beat's last L-group
            issue = self.sweep_go + 1 + j if j < g - 1 else self.sweep_last
            c = max(c + 1, issue + pipe + 1)
        return min(c + qc.topk - beats, super()._engine_ready(qc, take))


class _NoFeedStream(sm._Stream):
    """no-feed: the core before the built top-k feed (H98): a pruned row reaches its engine at the
    divider's take at the earliest."""

    def __init__(self, overlap_sweeps: bool = True, feed: bool = True):
        super().__init__(overlap_sweeps, feed=False)


def _no_fallback() -> None:
    """no-fallback: the core before the built fallback (H103): a pruned row always waits for its top-k."""
    sm._Stream._fallback_take = lambda self, *args: None


def _dense_ok_rule(rule: str) -> None:
    """dense-ok-every / dense-ok-layer: the host's ``dense_ok`` bits by another rule (docstring above)."""
    import archgen.sim.spatten_algo as sa
    built = sa._dense_ok
    if rule == "every":
        sa._dense_ok = lambda fallback, rows, extra, steps=None, tail=1: np.asarray(rows, dtype=np.int64) > 0
    elif rule.startswith("tail") and rule[4:].isdigit():
        last = int(rule[4:])

        def tail_n(fallback, rows, extra, steps=None, tail=1):
            """The last ``last`` commands with rows of each step (of the layer when ``steps`` is None)."""
            ok = np.zeros(len(rows), dtype=bool)
            step = np.zeros(len(rows), np.int64) if steps is None else np.asarray(steps, np.int64)
            r = np.asarray(rows, dtype=np.int64)
            for t in np.unique(step):
                ok[np.flatnonzero((r > 0) & (step == t))[-last:]] = True
            return ok
        sa._dense_ok = tail_n
    else:
        sa._dense_ok = lambda fallback, rows, extra, steps=None, tail=1: built(fallback, rows, extra, None, tail)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return
    if sys.argv[1] != "check-reorder" and len(sys.argv) < 3:
        raise SystemExit("usage: spatten_figure3_projections.py VARIANT[+VARIANT...] TRACE-FILTER [--table] "
                         "(--help lists the variants)")
    if sys.argv[1] == "check-reorder":
        _check_reorder(int(sys.argv[2]) if len(sys.argv) > 2 else 500)
        return
    variant, only = sys.argv[1], sys.argv[2]
    for part in variant.split("+"):     # variants combine: key-banks-3+pv-kept
        if part == "key-banks-3":
            sm.SplitLoads = _ThreeKeyBanks
        elif part == "engines-3":
            _engines(3)
        elif part == "pv-kept":
            _pv_kept()
        elif part in ("topk-feed", "topk-feed-spec"):
            _FedStream.speculative = part == "topk-feed-spec"
            sm._Stream = _FedStream
        elif part == "no-feed":
            sm._Stream = _NoFeedStream
        elif part == "no-fallback":
            _no_fallback()
        elif part == "built":
            pass
        elif part == "oracle-v-fetch":
            sm.SplitLoads = _OracleValueFetch
        elif part.startswith("pv-") and part[3:] in sm.PV_WINDOW_RULES:
            _pv_rule(part[3:])
        elif part.startswith("reorder-") and part[8:] in ("oldest", "values", "keys"):
            _reorder(part[8:])
        elif part == "refetch-waits":
            _refetch_waits()
        elif part == "no-qk-preempt":
            _no_qk_preempt()
        elif part in ("dense-ok-every", "dense-ok-layer") or (part.startswith("dense-ok-tail") and part[13:].isdigit()):
            _dense_ok_rule(part[len("dense-ok-"):])
        else:
            raise SystemExit("variant must be built, oracle-v-fetch, no-feed, no-fallback, key-banks-3, engines-3, pv-kept, pv-RULE, topk-feed, "
                             "topk-feed-spec, "
                             "reorder-RULE, no-qk-preempt, dense-ok-every, dense-ok-layer or refetch-waits "
                             f"(joined by +), not {part!r}")
    spec = bench.load_spatten_spec(bench.builtin_spec_path("spatten"))
    if "--table" in sys.argv[3:]:       # the bench's table 2-4 (every speedup column) under the variant
        bench._table(spec, [t for t in bench._traces() if only.lower() in t[0].lower()])
        return
    for name, wl, tr, hd in [t for t in bench._traces() if only.lower() in t[0].lower()]:
        c, dram = {}, {}
        for k, cfg in (("t", bench.TOKEN), ("tv", bench.TOKEN_V), ("thp", bench.TOKEN_HEAD_PQ),
                       ("thpv", bench.TOKEN_HEAD_PQ_V)):
            REFETCH_WAITS.clear()
            res = ss.simulate_spatten(spec, wl, trace=tr, algo_config=cfg, head_dim=hd)
            c[k], dram[k] = bench._totals(res)["cycles"], bench._totals(res)["dram"]
            for where, (rows, waited) in sorted(REFETCH_WAITS.items()):
                print(f"  {name}, {k}: {where}: {rows:,} LSB refetches waited {waited:,} cycles for the QxK stage "
                      f"({waited / rows:.2f} a refetch); layer time {c[k]:,.0f} cycles, with the K/V on chip "
                      f"{sum(r.extra['compute_cycles'] for r in res):,.0f}", flush=True)
        print(f"{variant}: {name}: local-V ratio {c['t'] / c['tv']:.6f}; {c['thp'] / c['thpv']:.6f} (cycles: token "
              f"{c['t']:,.0f}, + V {c['tv']:,.0f}; token+head+PQ {c['thp']:,.0f}, + V {c['thpv']:,.0f}; DRAM with / without "
              f"local-V {dram['tv'] / dram['t']:.3f}; {dram['thpv'] / dram['thp']:.3f})"
              + (f"; fixed point in at most {max(REORDER_RESOLUTIONS)} resolutions" if REORDER_RESOLUTIONS else ""),
              flush=True)


if __name__ == "__main__":
    main()
