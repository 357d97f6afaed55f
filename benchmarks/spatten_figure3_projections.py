"""Projections for issue 15's figure 3 (local-V never slower): what the core would give with changes
that are NOT built (docs/spatten_results.md, "Split K and V loads"). Scratch variants of the model,
applied by patching it for the run; the built core is what benchmarks/spatten_bench.py measures.

    python benchmarks/spatten_figure3_projections.py key-banks-3 gpt2-small     # a third key bank
    python benchmarks/spatten_figure3_projections.py engines-3 MiniLM           # a third top-k engine
    python benchmarks/spatten_figure3_projections.py pv-kept MiniLM             # PxV over kept rows only
    python benchmarks/spatten_figure3_projections.py key-banks-3+pv-kept gpt2   # variants combine
    python benchmarks/spatten_figure3_projections.py topk-feed bert-base        # top-k fed by the sweep

Prints, per trace whose name contains the second argument, the time ratio without / with local-V for
token pruning and for token + head + PQ (the bench's figure-3 column).
- key-banks-3: keys in three banks (command i's keys load once command i - 3 released them), values
  in two; +1 key bank of the K/V SRAM.
- engines-3: three local-V top-k engines and six exponential-buffer banks.
- pv-kept: a pruned row's PxV sweeps only its kept value rows, an ideal compacted stream of two
  value-buffer rows a cycle: ``max(ceil(kept / L), ceil(n / 2L)) + pv_pipe`` cycles.
- pv-RULE (RULE one of sim.spatten_model.PV_WINDOW_RULES: window, greedy, banked, ideal; H87's design
  study): a pruned row's PxV issues ``pv_windows(keep, L, RULE)`` windows of its kept tokens (value
  buffer as L banks), and the token importance gets a sweep of its own over all G groups beside it
  (own exponential read port and L normalise multipliers): ``max(W + pv_pipe, G + 2)`` cycles, the
  keep mask known at the take (an upper bound: a mask sweep before the take is not counted).
- topk-feed (H93): the local-V engine ingests a row as the exponential sweep writes it (one row of P
  exponentials once its last L-group left the exponential pipeline) from the sweep's go, for a row that
  cannot need its LSBs; topk-feed-spec also for a first pass with PQ on (abort on a refetch not counted).
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


def _engines(n: int) -> None:
    sm.TOPK_ENGINES, sm.EXP_BUFFER_BANKS = n, 3 + n


def _pv_kept() -> None:
    current = {}
    layer_result, core_cycles = ss._layer_result, ss._core_cycles

    def remember(spec, s, *args, **kwargs):
        current["keys"], current["values"] = s.row_keys, s.row_values
        return layer_result(spec, s, *args, **kwargs)

    def core(spec, keys, lsb, topk, commands, pq=False, loads=None, windows=None):
        if topk is None or keys is not current.get("keys"):
            return core_cycles(spec, keys, lsb, topk, commands, pq, loads, windows)
        lanes, pipe = spec.lanes, spatten_latencies(spec).pv_pipe
        rows = []
        for n, lp, t, v in zip(keys.tolist(), lsb.tolist(), topk.tolist(), current["values"].tolist()):
            qc = sm.query_cycles(spec, n, lsb_pass=bool(lp), topk_cycles=None if t < 0 else t, pq_enable=pq)
            if t >= 0:
                qc = dataclasses.replace(qc, pv=max(math.ceil(v / lanes), math.ceil(n / (2 * lanes))) + pipe)
            rows.append(qc)
        return _stream_total(rows, commands, loads)

    ss._layer_result, ss._core_cycles = remember, core


def _stream_total(rows, commands, loads):
    """The patched per-layer core time: the rows streamed through the core's stages, with the split K/V
    loads when the layer has them (the stage columns are not projected)."""
    stream = ss.command_rows(rows, commands)
    fetch = sm.SplitLoads(*loads) if loads is not None else None
    first = loads[0][0] if loads is not None else 0
    return first + sm.command_stream_cycles(stream, fetcher=fetch)[-1], {"front": 0, "topk": 0, "pv": 0}


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

    def core(spec, keys, lsb, topk, commands, pq=False, loads=None, windows=None):
        if topk is None:
            return core_cycles(spec, keys, lsb, topk, commands, pq, loads, windows)
        lanes, pipe = spec.lanes, spatten_latencies(spec).pv_pipe
        rows = []
        for n, lp, t in zip(keys.tolist(), lsb.tolist(), topk.tolist()):
            cyc, w = (t, 0) if t < 0 else (t & ((1 << _WSHIFT) - 1), t >> _WSHIFT)
            qc = sm.query_cycles(spec, n, lsb_pass=bool(lp), topk_cycles=None if t < 0 else cyc, pq_enable=pq)
            if t >= 0:
                qc = dataclasses.replace(qc, pv=max(w + pipe, math.ceil(n / lanes) + 2))
            rows.append(qc)
        return _stream_total(rows, commands, loads)

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

    def _sweep(self, qc, go):
        out = super()._sweep(qc, go)
        self.sweep_go, self.sweep_last = go, out[0]
        return out

    def _engine_ready(self, qc, take):
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


def main() -> None:
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
        elif part.startswith("pv-") and part[3:] in sm.PV_WINDOW_RULES:
            _pv_rule(part[3:])
        else:
            raise SystemExit(f"variant must be key-banks-3, engines-3, pv-kept, pv-RULE, topk-feed or topk-feed-spec "
                             f"(joined by +), not {part!r}")
    spec = bench.load_spatten_spec(bench.builtin_spec_path("spatten"))
    for name, wl, tr, hd in [t for t in bench._traces() if only.lower() in t[0].lower()]:
        c = {k: bench._totals(ss.simulate_spatten(spec, wl, trace=tr, algo_config=cfg, head_dim=hd))["cycles"]
             for k, cfg in (("t", bench.TOKEN), ("tv", bench.TOKEN_V), ("thp", bench.TOKEN_HEAD_PQ),
                            ("thpv", bench.TOKEN_HEAD_PQ_V))}
        print(f"{variant}: {name}: local-V ratio {c['t'] / c['tv']:.6f}; {c['thp'] / c['thpv']:.6f}", flush=True)


if __name__ == "__main__":
    main()
