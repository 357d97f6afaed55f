"""A transformer workload on the SpAtten engine, layer by layer, with the dense baseline alongside.

For every transformer layer: `run_spatten_algo` decides which tokens, heads and V rows are used and
which rows re-fetch LSBs; this module turns that into DRAM bytes, compute cycles and energy.

Timing:
- Compute: the attention core's exact per-query cycle function
  (`archgen.sim.spatten_model.query_cycles`, the RTL's cycle contract): a front stage (QxK +
  softmax + PQ-decision pass over the kept keys, twice when the row re-fetches LSBs), a top-k stage
  (the local-V top-k when value pruning is on) and a PxV stage (the prob x V sweep, the output) that
  overlap consecutive queries, the layer's commands (one per head and step) streamed through them
  (`command_stream_cycles`). The top-k's cycles come from the top-k engine model
  (`archgen.sim.topk_model.simulate_topk`) on what the engine ranks, the row's exponentials: the trace
  probabilities over the row maximum in the engine's UQ1.exp_frac format
  (``topk_cycles="exact"``), or from a closed form (``"estimate"``,
  `topk_estimate_cycles`) for speed. A head dimension below the spec's runs zero-padded (the core's
  lanes are fixed by the spec), so its cycles are those of ``spec.head_dim``.
- DRAM: bytes / (HBM bandwidth / clock), split over the layer's commands into a key load (keys and
  queries) and a value load (values and outputs) each (`_split_loads`). The K/V SRAMs are
  double-buffered and the core's fetcher loads keys and values separately (`spatten_model.SplitLoads`,
  the rule the RTL is verified against on Verilator): a command waits for its keys, its rows' PxV for
  its values; command i's keys load once command i - 2 released its keys (their last use), its values
  once command i - 2 is done, one load at a time, the values of i and the keys of i + 1 whichever may
  start first. The layer time is that stream plus the first key load, at least ``max(compute, DRAM)``
  (``compute_cycles``: the stream with the K/V on chip). The LSBs a command's rows refetch are charged
  to its loads (our model).

Energy: MACs at the units' widths, the softmax's Taylor multiply-adds, one SRAM access of ``D x bits``
per key (value) row read, in a bank of ``bytes / (buffers x lanes)`` (one bank per key lane), one SRAM
write per row filled from DRAM, and DRAM bytes at the table's pJ/bit for the spec's DRAM kind.
"""
from __future__ import annotations

import math
import re

import numpy as np

from archgen.arch.errors import SpecError, problem

from archgen.workloads.trace import check_trace_workload, synthetic_trace

from .energy import Action, EnergyModel
from .results import LayerResult, roofline_cycles
from .spatten_algo import SpattenAlgoConfig, run_spatten_algo

__all__ = ["COMPUTE_MODEL", "algo_config_from_spec", "simulate_spatten", "spatten_area_mm2", "spatten_bytes_per_cycle",
           "spatten_peak_macs_per_cycle", "topk_estimate_cycles"]

COMPUTE_MODEL = "spatten_model.query_cycles"
_TOPK_MODES = ("exact", "estimate")


def topk_estimate_cycles(n: np.ndarray, k: np.ndarray, parallelism: int) -> np.ndarray:
    """Expected cycles of the core's top-k engine without running it (docs/topk.md, "Cycle contract"; an
    estimate, not the exact model): command and ingest ``B + min(w + 1, B) + [B <= w] + 5`` (``B = n / P`` rows; the first
    bracketing partition rides on the ingest), then rounds whose working sets shrink by the bracket's
    share of its sample, f = (lower margin + upper margin + 1) / (S + 1) with S sample lanes from w rows
    (`topk_model.sample_shape`): about n f / (1 - f) elements scanned at P per cycle, 5 cycles per
    round over ceil(log(n / S) / log(1 / f)) rounds, and 3 cycles for the exact finish (f < 1/2; a smaller sample
    is counted as a random pivot: Knuth's expected scan less the ingest's n, over log2(n / S) rounds). Escapes (the target outside the bracket) are
    not counted. It is rough: against the exact model on random int16 rows (n = 64..1024, k = n/32..n/2,
    P = 1..32, seventh-session engine; not rechecked on the eighth's) it gives 0.5x-1.6x of the mean cycles (low at P = 1 and large n,
    high on short rows); reported figures use ``"exact"``. The core's engine has no replay (it hands the
    k-th value and the tie count to the core's PxV sweep). k >= n skips the rounds."""
    from .topk_model import BRACKET_ABOVE, bracket_below, sample_shape
    n = np.asarray(n, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    b = np.ceil(n / parallelism)
    # the eighth session's engine with its rank pipeline (H88, the default; docs/topk.md, Cycle contract): S
    # sample lanes from w rows (sample_shape, the paper's D = 64), the ingest re-reads min(w + 1, B) beats
    # (+1 when B <= w), a round costs rows + 5 (its sample captured in the round before), the exact finish 3
    w, s = sample_shape(parallelism, 64)
    b = b + np.minimum(w + 1, b) + (b <= w)
    f = (bracket_below(s) + BRACKET_ABOVE + 1) / (s + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if f < 0.5:
            rounds = np.ceil(np.log(np.maximum(n / s, 1.0)) / np.log(1 / f))
            select = np.where(n > s, np.ceil(n * f / (1 - f) / parallelism) + 5 * rounds + 3, 0)
        else:   # a sample of a few lanes barely narrows W: a random pivot's expected scan (Knuth,
            # TAOCP vol. 3, 5.2.2) less the ingest partition's n, with 6 cycles per round over log2(n / S)
            # rounds
            kk, rest = np.maximum(k, 1), np.maximum(n - k, 1)
            scanned = 2 * kk * np.log(n / kk) + 2 * rest * np.log(n / rest)
            select = np.ceil(scanned / parallelism) + 6 * np.ceil(np.log2(np.maximum(n / s, 2)))
    return np.where(k >= n, b + 5, b + 5 + select)


def _ranked_exps(spec, probs: np.ndarray) -> np.ndarray:
    """What the local-V top-k ranks: exp(s - max) = p / max(p), in UQ1.exp_frac as the softmax emits it."""
    from archgen.arch.spatten_spec import spatten_formats

    one = 1 << spatten_formats(spec).exp_frac
    top = max(float(probs.max()), np.finfo(float).tiny)   # callers pass k < size, so the row is not empty
    return np.minimum(np.floor(probs / top * one), one).astype(np.int64)


def _exact_topk_fn(spec):
    from .topk_model import simulate_topk

    def cycles(probs: np.ndarray, k: int) -> int:
        if k >= probs.size:
            return -1                   # the core skips the top-k when every V row is kept
        return simulate_topk(_ranked_exps(spec, probs), k, parallelism=spec.topk.parallelism,
                             fifo_depth=spec.topk.fifo_depth, replay=False,
                             sample_register=spec.topk.sample_register).cycles
    return cycles


def _windows_fn(spec):
    """The PxV stage's windows over a pruned row's kept tokens (``spatten_model.pv_windows``, banked)."""
    from .spatten_model import pv_windows, topk_keep_mask

    def windows(probs: np.ndarray, k: int) -> int:
        if k >= probs.size:
            return -1
        return pv_windows(topk_keep_mask(_ranked_exps(spec, probs), k), spec.lanes, "banked")
    return windows


def spatten_peak_macs_per_cycle(spec) -> int:
    return spec.qk.multipliers + spec.pv.multipliers


def spatten_bytes_per_cycle(spec) -> float:
    return spec.dram.bandwidth_gb_s * 1e9 / (spec.clock_mhz * 1e6)


def _node_nm(spec) -> float | None:
    m = re.search(r"(\d+(?:\.\d+)?)\s*(?:nm)?$", spec.technology or "")
    return float(m.group(1)) if m else None


def _is_decoder(workload) -> bool:
    from archgen.workloads.library import list_workloads
    return any(w.name == workload.name and w.family == "decoder" for w in list_workloads())


def _split_loads(keys: np.ndarray, commands: np.ndarray, key_bytes: float, value_bytes: float,
                 bytes_per_cycle: float) -> tuple[list[int], list[int]]:
    """Each issued command's key load (its keys and queries) and value load (its values and outputs) in
    cycles: ``key_bytes`` and ``value_bytes`` split over the commands in proportion to what each moves
    (the longest row's keys, or values, and one query, or output, per row), rounded up to whole cycles.
    Our model: the LSBs a command's rows refetch are charged to its own loads."""
    weights, start = [], 0
    for rows in commands.tolist():
        if rows:
            weights.append(int(keys[start:start + rows].max()) + rows)
        start += rows
    total = sum(weights)
    if not total:
        return [], []
    return ([math.ceil(key_bytes * w / total / bytes_per_cycle) for w in weights],
            [math.ceil(value_bytes * w / total / bytes_per_cycle) for w in weights])



def command_rows(per_row: list, commands) -> list[list]:
    """The layer's query rows split into its commands' streams (``commands``: rows per command, in order;
    commands with no rows are left out)."""
    stream, start = [], 0
    for rows in np.asarray(commands).tolist():
        if rows:
            stream.append(per_row[start:start + rows])
        start += rows
    if start != len(per_row):
        raise ValueError(f"command row counts cover {start} rows, the layer has {len(per_row)}")
    return stream

def _core_cycles(spec, keys: np.ndarray, lsb: np.ndarray, topk: np.ndarray | None,
                 commands: np.ndarray, pq: bool = False,
                 loads: tuple[list[int], list[int]] | None = None,
                 windows: np.ndarray | None = None, over_kept: list | None = None,
                 dense_ok: np.ndarray | None = None, fell: list | None = None,
                 steps: np.ndarray | None = None) -> tuple[int, dict[str, int]]:
    """Cycles of the core over a layer's commands (one per head and step), offered back to back: the
    core's front stage takes a command's first query while its back stage finishes the previous
    command (`command_stream_cycles`, the contract the RTL is verified against). A command without rows
    is not issued. ``steps``: per command (as ``commands``), its generation step; each step's commands are
    then a stream of their own, run after the previous step's (a decode step's queries depend on the
    previous step's output through every layer), each with its first key load in front, and the layer's
    cycles are their sum. None: one stream.

    ``commands`` holds the rows of each command in row order; ``topk`` each row's top-k cycles, or -1
    where the row keeps every V row (no top-k run); ``pq``: the commands have progressive quantization on
    (the softmax stage then waits for each first pass's PQ decision).

    Returns the layer's cycles and each stage's busy cycles summed over the rows: ``front`` (query
    accept, QxK + softmax + PQ passes), ``topk`` (local-V top-k and its hand-off, summed over the rows:
    the core's TOPK_ENGINES engines share it) and ``pv`` (prob x V
    sweep and output; over the kept tokens for the rows the stream swept so), each a stage of its own.

    ``loads``: each issued command's key and value loads in cycles (`_split_loads`); a command then
    waits for its keys and its rows' PxV for its values, loaded by the core's fetcher one at a time, the
    keys of command i + 1 before the values of command i (`spatten_model.SplitLoads`, the rule the RTL
    is verified against on Verilator); the first key load is added in front. None: the K/V are on chip.
    ``windows``: each pruned row's PxV windows over its kept tokens (-1 or None: the PxV stage sweeps
    every group of the row, e.g. with estimated top-k cycles). ``over_kept``: a list that receives, per
    row in row order, whether the stream swept it over its kept tokens only. ``dense_ok``: per command (as
    ``commands``), its value load holds every value row (the core's ``dense_ok`` bit: a pruned row whose
    top-k is late is swept unpruned, the spec's ``units.topk.fallback``); None: no command. ``fell``: a
    list that receives, per row in row order, whether the fallback swept it unpruned."""
    from .spatten_model import SplitLoads, command_stream_cycles, query_cycles

    cache: dict = {}
    tk = np.full(keys.shape, -1, dtype=np.int64) if topk is None else topk
    win = np.full(keys.shape, -1, dtype=np.int64) if windows is None or not len(windows) else windows
    per_row = []
    ok = (np.zeros(keys.shape, dtype=bool) if dense_ok is None
          else np.repeat(np.asarray(dense_ok, dtype=bool), np.asarray(commands, dtype=np.int64)))
    for n, l, t, w, o in zip(keys.tolist(), lsb.tolist(), tk.tolist(), win.tolist(), ok.tolist()):
        key = (n, bool(l), t, w, o)
        c = cache.get(key)
        if c is None:
            c = cache[key] = query_cycles(spec, n, lsb_pass=bool(l), topk_cycles=None if t < 0 else t, pq_enable=pq,
                                          pv_windows=None if (t < 0 or w < 0) else w, dense_ok=o)
        per_row.append(c)
    stream = command_rows(per_row, commands)
    # the causal value fetch: a one-query command pruned by local-V without dense_ok loads its kept value rows
    # once its keep mask is complete (spatten_model.SplitLoads after_mask); other commands load whole or early
    after_mask = [len(c) == 1 and bool(c[0].topk) and not o[0] for c, o in
                  zip(stream, command_rows(ok.tolist(), commands))]
    stages = {"front": sum(c.front_busy for c in per_row), "topk": sum(c.topk for c in per_row), "pv": 0}
    if not stream:
        return 0, stages
    kept: list = []             # per row: its PxV visited the kept tokens only (PxV over kept tokens)
    fell_rows: list = []        # per row: the fallback swept it unpruned
    total = 0
    for a, b in _step_segments(commands, steps):
        fetcher = None if loads is None else SplitLoads(loads[0][a:b], loads[1][a:b], after_mask=after_mask[a:b])
        done = command_stream_cycles(stream[a:b], fetcher=fetcher, over_kept=kept, fell=fell_rows)[-1]
        total += done + (0 if loads is None else loads[0][a])
    stages["pv"] = sum((c.pv_kept if k else c.pv) + c.output for c, k in zip(per_row, kept))
    if over_kept is not None:
        over_kept.extend(kept)
    if fell is not None:
        fell.extend(fell_rows)
    return total, stages


def _step_segments(commands, steps) -> list[tuple[int, int]]:
    """The issued commands (those with rows, in order) cut where the generation step changes: half-open
    ranges of issued-command positions, one per step that issues a command (one range when ``steps`` is
    None)."""
    rows = np.asarray(commands, dtype=np.int64)
    issued = (np.zeros(len(rows), np.int64) if steps is None else np.asarray(steps, np.int64))[rows > 0]
    if len(issued) and np.any(np.diff(issued) < 0):
        raise ValueError("the commands' generation steps must be in order")
    cuts = [0, *(np.flatnonzero(np.diff(issued)) + 1).tolist(), len(issued)]
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def _bank_bytes(spec, sram) -> int:
    """One SRAM bank: a buffer split into one bank per key lane (each lane reads its own key row)."""
    return max(sram.bytes // (sram.buffers * spec.lanes), 1)


def _energy(model: EnergyModel, spec, d: int, qk_macs: int, av_macs: int, key_reads: int, value_reads: int,
            softmax_elems: int, dram_read: int, dram_write: int, sram_fill_keys: int, sram_fill_values: int):
    bits = spec.qk.bits
    row_bits = d * bits
    taylor = getattr(spec.softmax, "exp_taylor_order", 5)
    kbank, vbank = _bank_bytes(spec, spec.key_sram), _bank_bytes(spec, spec.value_sram)
    return model.energy_of({
        "qk_unit": {Action("mac", spec.qk.bits): qk_macs},
        "pv_unit": {Action("mac", spec.pv.bits): av_macs},
        # exp by a Taylor series: one multiply and one add per order, at 16 bits (our sizing), + normalise
        "softmax": {Action("mult", 16): softmax_elems * (taylor + 1), Action("add", 16): softmax_elems * (taylor + 1)},
        "key_sram": {Action("sram_read", row_bits, capacity_bytes=kbank): key_reads,
                     Action("sram_write", row_bits, capacity_bytes=kbank): sram_fill_keys},
        "value_sram": {Action("sram_read", row_bits, capacity_bytes=vbank): value_reads,
                       Action("sram_write", row_bits, capacity_bytes=vbank): sram_fill_values},
        "dram": {Action("dram_read", 8, dram=spec.dram.kind): dram_read,
                 Action("dram_write", 8, dram=spec.dram.kind): dram_write},
    })


def algo_config_from_spec(spec) -> SpattenAlgoConfig:
    """The spec's ``pruning`` and ``progressive_quantization`` sections as algorithm settings: a ramp
    from ``start`` to ``end`` after the ``unpruned_layers`` (average = (start + end) / 2), or the
    explicit per-layer list."""
    p = spec.pruning

    def ramp(s):
        if s.per_layer is not None:
            return dict(prune=0.0, start=None, frac=s.unpruned_layers, schedule=s.per_layer)
        return dict(prune=(s.start + s.end) / 2, start=s.start if (s.start or s.end) else None, frac=s.unpruned_layers,
                    schedule=None)

    tok, head = ramp(p.token), ramp(p.head)
    return SpattenAlgoConfig(token_prune=tok["prune"], token_prune_start=tok["start"], token_unpruned_frac=tok["frac"],
                             token_schedule=tok["schedule"], head_prune=head["prune"], head_prune_start=head["start"],
                             head_unpruned_frac=head["frac"], head_schedule=head["schedule"], value_prune=p.local_v,
                             msb_bits=spec.pq.msb_bits, lsb_bits=spec.pq.lsb_bits, threshold=spec.pq.threshold)


def simulate_spatten(spec, workload=None, trace=None, algo_config: SpattenAlgoConfig | None = None, *,
                     head_dim: int | None = None, energy_model: EnergyModel | None = None,
                     concentration: float = 2.0, seed: int = 0, topk_cycles: str = "exact") -> list[LayerResult]:
    """Attention of every layer of ``workload`` (or of ``trace`` alone) on the SpAtten engine ``spec``.

    Without a trace a seeded synthetic one is generated to the workload's shape (``concentration``,
    ``seed``). ``topk_cycles`` is ``"exact"`` (the top-k engine's cycle model, per row) or
    ``"estimate"`` (closed form, faster). ``algo_config`` defaults to the spec's progressive-quantization setting with no pruning.
    Each result's ``extra`` carries the dense baseline (``dense_cycles``, ``dense_dram_bytes``, ...),
    the reductions and the tokens and heads kept.
    """
    _check_request(workload, trace, topk_cycles)
    d = head_dim or (workload.head_dim if workload is not None else spec.head_dim)
    if algo_config is None:
        algo_config = algo_config_from_spec(spec)
    trace = _trace_for(spec, workload, trace, d, concentration, seed)
    exact = topk_cycles == "exact" and algo_config.value_prune > 0
    algo = run_spatten_algo(trace, algo_config, head_dim=d, topk_cycles=_exact_topk_fn(spec) if exact else None,
                            pv_windows=_windows_fn(spec) if exact else None, fallback=spec.topk.fallback,
                                    fallback_tail=spec.topk.fallback_tail)
    energy_model = energy_model or EnergyModel.load(node_nm=_node_nm(spec))
    results = []
    for s in algo.layers:
        if algo_config.value_prune == 0:
            topk = None
        elif exact:
            topk = s.row_topk_cycles
        else:
            est = topk_estimate_cycles(s.row_keys, s.row_values, spec.topk.parallelism)
            topk = np.where(s.row_values >= s.row_keys, -1, np.round(est)).astype(np.int64)
        use_pq = algo_config.progressive and algo_config.lsb_bits > 0
        results.append(_layer_result(spec, s, d, topk, use_pq, energy_model,
                                     topk_cycles if topk is not None else "unused"))
    return results


def _check_request(workload, trace, topk_cycles) -> None:
    problems = []
    if workload is None and trace is None:
        problems.append(problem("workload", "give a workload, a trace, or both"))
    if workload is not None and workload.heads is None:
        problems.append(problem("workload", f"{workload.name} has no attention layers for SpAtten", workload.name))
    if topk_cycles not in _TOPK_MODES:
        problems.append(problem("topk_cycles", f"must be one of {_TOPK_MODES}", topk_cycles))
    if problems:
        raise SpecError(problems)


def _trace_for(spec, workload, trace, d: int, concentration: float, seed: int):
    """The given trace (checked against the workload and the engine), or a seeded synthetic one."""
    if trace is None:
        if workload.phase == "decode":
            trace = synthetic_trace(workload.n_layers, workload.heads, workload.kv_len + 1, queries=1,
                                    concentration=concentration, seed=seed, head_dim=d, model=workload.name)
        else:
            trace = synthetic_trace(workload.n_layers, workload.heads, workload.seq, concentration=concentration,
                                    seed=seed, head_dim=d, model=workload.name,
                                    causal=_is_decoder(workload))
    elif workload is not None:
        check_trace_workload(trace, workload, source="trace")
    h = trace.header
    if h.seq_len > spec.max_tokens:
        raise SpecError([problem("seq", f"the engine {spec.name} buffers at most max_tokens={spec.max_tokens} keys "
                                        "per head; use a shorter sequence or a larger spec", h.seq_len)])
    if d > spec.head_dim:
        raise SpecError([problem("head_dim", f"exceeds the engine's head_dim={spec.head_dim} "
                                             f"({spec.name}); use a spec built for it", d)])
    return trace


def layer_loads(spec, s) -> tuple[list[int], list[int]]:
    """The split K/V loads of a layer's commands (``_split_loads``) from its algorithm statistics ``s``:
    keys, their LSBs and the queries as key loads, the rest of the layer's DRAM bytes as value loads."""
    dram_bytes = (s.key_msb_bytes + s.key_lsb_bytes + s.value_msb_bytes + s.value_lsb_bytes + s.query_bytes
                  + s.output_write_bytes)
    key_bytes = s.key_msb_bytes + s.key_lsb_bytes + s.query_bytes
    return _split_loads(s.row_keys, s.command_rows, key_bytes, dram_bytes - key_bytes,
                        spatten_bytes_per_cycle(spec))


def _layer_result(spec, s, d: int, topk, use_pq: bool, energy_model: EnergyModel, topk_mode: str) -> LayerResult:
    """One layer's result from its algorithm statistics ``s``: cycles (compute, and with each command
    waiting for its K/V load, as the RTL), DRAM and SRAM traffic and energy, and the dense baseline."""
    peak = spatten_peak_macs_per_cycle(spec)
    bpc = spatten_bytes_per_cycle(spec)
    dram = {"key_msb.read": s.key_msb_bytes, "key_lsb.read": s.key_lsb_bytes,
            "value_msb.read": s.value_msb_bytes, "value_lsb.read": s.value_lsb_bytes,
            "query.read": s.query_bytes, "output.write": s.output_write_bytes}
    dram_bytes = sum(dram.values())
    windows = s.row_pv_windows if topk is not None and topk_mode == "exact" else None
    compute, stages = _core_cycles(spec, s.row_keys, s.row_lsb, topk, s.command_rows, pq=use_pq, windows=windows,
                                   dense_ok=s.command_dense_ok, steps=s.command_steps)
    compute = float(compute)
    dense_keys = s.dense_row_keys
    # the layer: its commands through the core, each waiting for its K/V load (per command, as the RTL)
    fell: list = []
    cycles = float(_core_cycles(spec, s.row_keys, s.row_lsb, topk, s.command_rows, pq=use_pq,
                                loads=layer_loads(spec, s), windows=windows, dense_ok=s.command_dense_ok,
                                fell=fell, steps=s.command_steps)[0])
    dense_key_bytes = s.dense_key_bytes + s.dense_query_bytes
    dense_cycles = float(_core_cycles(spec, dense_keys, np.zeros_like(dense_keys), None, s.dense_command_rows,
                                      loads=_split_loads(dense_keys, s.dense_command_rows, dense_key_bytes,
                                                         s.dense_dram_bytes - dense_key_bytes, bpc),
                                      steps=s.dense_command_steps)[0])
    key_reads = int(s.row_keys.sum() + (s.row_keys * s.row_lsb).sum())
    # a row the fallback swept unpruned multiplies and reads every one of its keys' values
    if len(fell) != len(s.row_keys):    # the stream model reports one entry per query row it ran
        raise AssertionError(f"the core model ran {len(fell)} rows of a layer with {len(s.row_keys)}")
    unpruned = int(((s.row_keys - s.row_values) * np.asarray(fell, dtype=bool)).sum())
    av_macs, macs = s.av_macs + unpruned * d, s.macs + unpruned * d
    value_reads = int(s.row_values.sum()) + unpruned
    bits = spec.qk.bits
    key_fill = math.ceil((s.key_msb_bytes + s.key_lsb_bytes) * 8 / (d * bits))
    value_fill = math.ceil((s.value_msb_bytes + s.value_lsb_bytes) * 8 / (d * bits))
    energy = _energy(energy_model, spec, d, s.qk_macs, av_macs, key_reads, value_reads,
                     int(s.row_keys.sum() + (s.row_keys * s.row_lsb).sum()),
                     dram_bytes - s.output_write_bytes, s.output_write_bytes, key_fill, value_fill)
    dense_energy = _energy(energy_model, spec, d, s.dense_qk_macs, s.dense_av_macs, int(dense_keys.sum()),
                           int(dense_keys.sum()), int(dense_keys.sum()),
                           s.dense_dram_bytes - s.dense_output_write_bytes, s.dense_output_write_bytes,
                           math.ceil(s.dense_key_bytes * 8 / (d * bits)),
                           math.ceil(s.dense_value_bytes * 8 / (d * bits)))
    extra = {
        "tokens": s.tokens, "tokens_kept": s.tokens_kept, "heads": s.heads, "heads_kept": s.heads_kept,
        "rows": s.rows, "lsb_row_fraction": s.lsb_row_fraction,
        # pruned rows the core swept unpruned because their local-V top-k was late (the fallback; their
        # PxV MACs and value reads are those of all their keys, counted in ``macs`` and the energy)
        "fallback_rows": int(sum(fell)),
        "compute_cycles": compute, "dram_cycles": dram_bytes / bpc,
        # each stage's busy cycles over the layer's rows (stages overlap, so they do not add up)
        "front_stage_cycles": stages["front"], "topk_stage_cycles": stages["topk"],
        "pv_stage_cycles": stages["pv"],
        "dense_cycles": dense_cycles, "dense_dram_bytes": s.dense_dram_bytes, "dense_macs": s.dense_macs,
        "dense_energy_pj": sum(dense_energy.values()),
        "speedup": dense_cycles / cycles, "dram_reduction": s.dense_dram_bytes / dram_bytes,
        # the paper's memory figures compare with full-precision (fp32) keys, values, queries and
        # outputs: the same dense traffic at 32 bits per element instead of the engine's qk.bits
        "dense_fp32_dram_bytes": s.dense_dram_bytes * 32 / spec.qk.bits,
        "dram_reduction_vs_fp32": s.dense_dram_bytes * 32 / spec.qk.bits / dram_bytes,
        "compute_reduction": s.dense_macs / macs if macs else float("inf"),
        "compute_model": COMPUTE_MODEL, "topk_cycles": topk_mode,
    }
    return LayerResult(
        name=f"layer{s.layer}.attention", kind="attention", macs=macs, cycles=cycles,
        time_ns=cycles * (1e3 / spec.clock_mhz), utilisation=macs / (peak * cycles) if cycles else 0.0,
        dram_bytes=dram, sram_accesses={"key_sram.read": key_reads, "value_sram.read": value_reads,
                                        "key_sram.write": key_fill, "value_sram.write": value_fill},
        energy_pj=energy, roofline_cycles=roofline_cycles(macs, dram_bytes, peak, bpc), extra=extra)


def spatten_area_mm2(spec, energy_model: EnergyModel | None = None) -> dict[str, float]:
    """Datapath and buffer area estimate from the energy table's area data (mm^2, at the spec's node).

    Covers the QxK and prob x V multiplier arrays with their adder trees (one add per multiplier), the
    key/value SRAMs, the softmax lanes (Taylor multiply-adds at 16 bits) and the core's local-V top-k
    engines (``topk``: TOPK_ENGINES of them, each its input buffer of the row's exponentials and three
    FIFOs of ``fifo_depth`` rows as SRAM, a comparator per lane and side and the pivot sample's pairwise
    ranker as adders of the exponential's width: the engine's memories and comparators in
    rtlgen/topk.py); not the fetcher, crossbars or control, so it is a lower bound to compare with the
    paper's 18.71 mm^2.
    """
    m = energy_model or EnergyModel.load(node_nm=_node_nm(spec))
    taylor = getattr(spec.softmax, "exp_taylor_order", 5)
    return {
        "topk": _topk_area_mm2(spec, m),
        "qk_unit": spec.qk.multipliers * m.op_area_mm2("mac", spec.qk.bits),
        "pv_unit": spec.pv.multipliers * m.op_area_mm2("mac", spec.pv.bits),
        "softmax": spec.softmax.parallelism * (taylor + 1) * (m.op_area_mm2("mult", 16) + m.op_area_mm2("add", 16)),
        "key_sram": m.sram_area_mm2(spec.key_sram.bytes),
        "value_sram": m.sram_area_mm2(spec.value_sram.bytes),
    }


def _topk_area_mm2(spec, m: EnergyModel) -> float:
    """The core's top-k engines (see :func:`spatten_area_mm2`)."""
    from archgen.arch.spatten_spec import spatten_formats
    from archgen.dataflow.spatten_stages import TOPK_ENGINES

    from .topk_model import sample_shape

    p, depth, n = spec.topk.parallelism, spec.topk.fifo_depth, spec.max_tokens
    width = spatten_formats(spec).exp_bits + 1          # as the core builds the engine
    index = max(1, (n - 1).bit_length())
    buffer_bits = -(-n // p) * p * (width + 1)           # the input buffer: the row's exponentials
    fifo_bits = 3 * depth * (p * (width + index) + p)   # FIFO_L, FIFO_R, FIFO_U: element, index, valid
    _rows, lanes = sample_shape(p, depth)
    comparators = 3 * p + lanes * (lanes - 1) // 2      # a comparator per lane and side; the sample's ranker
    per_engine = m.sram_area_mm2(-(-(buffer_bits + fifo_bits) // 8)) + comparators * m.op_area_mm2("add", width)
    return TOPK_ENGINES * per_engine
