"""Host-side checks of the SpAtten engine: the core on Verilator against numpy and the cycle model.

:func:`verify_core` is what ``archgen verify SPEC --unit core`` calls. Three comparisons per run:
1. RTL outputs == the bit-exact fixed-point model (archgen.sim.spatten_model.core_reference), exactly;
2. RTL outputs vs float64 numpy attention on the same inputs (the keys/values the hardware actually used
   after its progressive-quantization decision, and its local-V keep set): ``max_error`` in units of
   max|V|, which must stay within ``OUTPUT_TOLERANCE`` (docs/spatten.md);
3. RTL cycles (command handshake to done) == model cycles (core_cycles), exactly.
"""
from __future__ import annotations

import dataclasses

import functools
import math

import numpy as np

from archgen.arch.spatten_spec import SpattenSpec, spatten_formats
from archgen.sim.spatten_model import (core_cycles, fallen_back, mask_lsbs, pq_need_lsb, softmax_cycles, softmax_fixed,
                                       threshold_fx)

__all__ = ["verify_core", "verify_spatten_unit", "SPATTEN_UNITS", "check_softmax_unit", "check_pq_unit", "float_attention", "float_softmax",
           "default_shift", "OUTPUT_TOLERANCE", "SOFTMAX_TOLERANCE", "core_verilog"]

# Largest allowed |fixed-point probability - float softmax| (measured worst case 3.5e-4, docs/spatten.md).
SOFTMAX_TOLERANCE = 5e-4

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


def verify_core(spec: SpattenSpec, n_keys, n_queries, seed: int, local_v_keep=None, *,
                pq_enable: bool = True, shift: int | None = None, value_bits: int = 10, bank: int = 1,
                commands: int = 1, dram_row_cycles: int = 0, cache_dir=None,
                timeout_s: float | None = 600.0, dense_ok=False) -> dict:
    """Random K, V, Q on the core RTL (Verilator) vs the fixed-point model, float numpy and the cycle model.

    With ``commands`` > 1 the testbench offers that many commands back to back, each on its own K/V bank
    (``bank``, ``bank + 1``, ... modulo the buffers) with its own random data; ``n_keys``, ``n_queries``,
    ``local_v_keep``, ``pq_enable`` and ``shift`` may then be one value per command. Returns ``{"correct", "bit_exact",
    "max_error", "tolerance", "rtl_cycles", "model_cycles", "rtl_done_cycles", "model_done_cycles",
    "cycles_match", "importance_match", "need_lsb", "stages", "kept", "passed", ...}``; ``correct``
    means bit-exact, within tolerance, cycle-exact (every command's done), and the importance
    accumulators equal the model's sums. Raises ValueError for arguments the engine cannot run.

    ``dram_row_cycles`` = r > 0: the testbench plays the core's fetcher: it loads each command's keys
    and its values through the ``kv`` port as separate loads of one row per r cycles while the core
    works on the earlier commands (banks alternating, any number of commands), offers the command when
    its keys are in and pulses ``v_loaded`` when its values are; the model is
    ``command_stream_cycles(..., fetcher=SplitLoads(...))`` with the same loads (a DRAM-bound stream when
    the loads are longer than the commands' compute).

    ``dense_ok`` (one value or one per command): the command's bit of that name (the testbench loads all
    its values), so with the spec's ``units.topk.fallback`` a pruned row whose top-k is late is swept
    unpruned; which rows did is ``fell`` (the model's, ``command_stream_cycles(..., fell=)``), and their
    expected outputs are those without local-V.
    """
    from archgen.sim.spatten_model import SplitLoads, command_stream_cycles
    from archgen.verif.runner import run_testbench

    def per_command(value, name):
        vals = list(value) if isinstance(value, (list, tuple)) else [value] * commands
        if len(vals) != commands:
            raise ValueError(f"{name} must be one value or {commands} values (one per command), not {value!r}")
        return vals

    if not isinstance(dram_row_cycles, int) or dram_row_cycles < 0:
        raise ValueError(f"dram_row_cycles must be an integer >= 0, not {dram_row_cycles!r}")
    if not 1 <= commands <= (1 << 16 if dram_row_cycles else spec.key_sram.buffers):
        raise ValueError(f"commands must be in 1..{spec.key_sram.buffers} (one K/V bank each) for {spec.name!r}, "
                         f"not {commands!r}")
    keys_n, queries_n = per_command(n_keys, "n_keys"), per_command(n_queries, "n_queries")
    keeps = per_command(local_v_keep, "local_v_keep")
    pqs = [bool(x) for x in per_command(pq_enable, "pq_enable")]
    dense = [bool(x) for x in per_command(dense_ok, "dense_ok")]
    for n, nq, keep in zip(keys_n, queries_n, keeps):
        if not 1 <= n <= spec.max_tokens:
            raise ValueError(f"n_keys must be in 1..{spec.max_tokens} for {spec.name!r}, not {n!r}")
        if not 0 <= nq < 1 << 16 or (commands == 1 and nq == 0):
            raise ValueError(f"n_queries must be in 1..65535 (0 allowed for some of several commands), not {nq!r}")
        if keep is not None and not 0 <= keep <= spec.max_tokens:
            raise ValueError(f"local_v_keep must be in 0..{spec.max_tokens}, not {keep!r}")
    fmt = spatten_formats(spec)
    rng = np.random.default_rng(seed)
    lim = 1 << (value_bits - 1)
    shifts = [default_shift(spec, value_bits) if x is None else x for x in per_command(shift, "shift")]
    thr = threshold_fx(spec.pq.threshold, fmt)
    cmds, runs = [], []
    for ci, (n, nq, keep, shift, pq_on) in enumerate(zip(keys_n, queries_n, keeps, shifts, pqs)):
        keys = rng.integers(-lim, lim, (n, spec.head_dim))
        values = rng.integers(-lim, lim, (n, spec.head_dim))
        queries = rng.integers(-lim, lim, (nq, spec.head_dim))
        keep_k = n if keep is None else min(keep, n)
        cmd_seed = (seed + ci) & 0xFFFF
        run = core_cycles(spec, queries, keys, values, shift=shift, keep_k=keep_k, pq_enable=pq_on,
                          thr_fx=thr, seed=cmd_seed)
        fb = dense[ci] and spec.topk.fallback != "none"
        runs.append(dataclasses.replace(run, queries=tuple(dataclasses.replace(qc, fallback=fb and bool(qc.topk))
                                                           for qc in run.queries)))
        cmds.append({"keys": keys, "values": values, "queries": queries, "keep_k": keep_k,
                     "bank": (bank + ci) % spec.key_sram.buffers, "seed": cmd_seed, "shift": shift, "pq": pq_on,
                     "dense_ok": int(dense[ci])})
    # the causal value fetch: a one-query command pruned by local-V without dense_ok loads its kept value rows
    # only, once its keep mask is complete (the core's v_fetch; SplitLoads after_mask)
    after_mask = [len(c["queries"]) == 1 and c["keep_k"] < len(c["keys"]) and not c["dense_ok"] for c in cmds]
    value_rows = [int(run.results[0].keep.sum()) if a else len(c["values"]) for c, run, a in zip(cmds, runs, after_mask)]

    def fetcher(local_v: bool = True):
        """The testbench's loads; ``local_v`` False: the same stream without local-V (every value row)."""
        if not dram_row_cycles:
            return None
        rows = value_rows if local_v else [len(c["values"]) for c in cmds]
        return SplitLoads([len(c["keys"]) * dram_row_cycles for c in cmds],
                          [v * dram_row_cycles if len(c["queries"]) else None for c, v in zip(cmds, rows)],
                          after_mask=after_mask if local_v else None)
    over_kept: list = []
    fed: list = []
    outs: list = []
    fell: list = []
    preempted: list = []
    model_done = command_stream_cycles([r.queries for r in runs], fetcher=fetcher(), over_kept=over_kept, fed=fed,
                                       outs=outs, fell=fell, preempted=preempted)
    # the rows the fallback swept unpruned: their outputs are those without local-V
    rows = iter(fell)
    runs = [dataclasses.replace(run, results=tuple(fallen_back(spec, r, c["values"], c["pq"]) if next(rows) else r
                                                   for r in run.results)) for c, run in zip(cmds, runs)]
    params = {
        "bits": spec.bits, "dim": spec.head_dim, "acc_bits": fmt.acc_bits, "shift_bits": fmt.shift_bits,
        "index_bits": max(1, (spec.max_tokens - 1).bit_length()), "count_bits": spec.max_tokens.bit_length(),
        "commands": [{"keys": c["keys"].tolist(), "values": c["values"].tolist(), "queries": c["queries"].tolist(),
                      "shift": c["shift"], "keep_k": c["keep_k"], "pq_enable": int(c["pq"]), "threshold": thr,
                      "bank": c["bank"], "seed": c["seed"], "dense_ok": c["dense_ok"]} for c in cmds],
        "max_cycles": 4 * model_done[-1] + 1000, "groups": spec.groups, "lanes": spec.lanes,
        "banks": spec.key_sram.buffers, "max_tokens": spec.max_tokens,
        "dram_row_cycles": dram_row_cycles,
    }
    res = run_testbench(core_verilog(spec), spec.name, "archgen.verif.tb_spatten", params,
                        cache_dir=cache_dir, timeout_s=timeout_s)
    got = np.array(res.get("outputs", []), dtype=np.int64).reshape(-1, spec.head_dim)
    want = np.concatenate([r.outputs.reshape(-1, spec.head_dim) for r in runs])
    bit_exact = got.shape == want.shape and bool(np.array_equal(got, want))
    errors = []
    results = [(c, r) for c, run in zip(cmds, runs) for r in run.results]
    for i, ((c, r), q) in enumerate(zip(results, np.concatenate([c["queries"] for c in cmds]))):
        k_used = c["keys"] if (r.need_lsb or not c["pq"]) else mask_lsbs(c["keys"], spec.pq.lsb_bits)
        v_used = c["values"] if (r.need_lsb or not c["pq"]) else mask_lsbs(c["values"], spec.pq.lsb_bits)
        ref = float_attention(q, k_used, v_used, c["shift"], r.keep)
        if i < len(got):
            errors.append(np.max(np.abs(got[i] / 2.0 ** fmt.prob_frac - ref)) / max(1, np.abs(v_used).max()))
    max_error = float(max(errors)) if errors else float("inf")
    cycles_match = res.get("done_cycles") == model_done
    # Importance accumulators: token = sum over queries of the final probabilities; head = sum of |out|.
    want_tok = np.zeros(spec.max_tokens, dtype=np.int64)
    for c, r in results:
        want_tok[:len(c["keys"])] += r.probs
    want_head = int(np.abs(want).sum()) if want.size else 0
    importance_match = (res.get("token_importance") == want_tok.tolist() and res.get("head_score") == want_head)
    # the value rows the testbench's fetcher loaded for each causal command (from the core's v_mask): its kept rows
    want_rows = {str(ci): np.flatnonzero(run.results[0].keep).tolist()
                 for ci, (run, a) in enumerate(zip(runs, after_mask)) if a and dram_row_cycles}
    value_rows_match = res.get("value_rows", {}) == want_rows
    correct = (bit_exact and max_error <= OUTPUT_TOLERANCE and cycles_match and importance_match
               and value_rows_match and bool(res.get("passed")))
    return {"correct": correct, "bit_exact": bit_exact, "max_error": max_error, "tolerance": OUTPUT_TOLERANCE,
            "rtl_cycles": res.get("cycles"), "model_cycles": model_done[-1], "cycles_match": cycles_match,
            "rtl_done_cycles": res.get("done_cycles"), "model_done_cycles": model_done,
            "undelayed_done_cycles": command_stream_cycles([r.queries for r in runs]),
            # the same stream were a row's sweep to wait until the divider took the previous row
            "unoverlapped_done_cycles": command_stream_cycles([r.queries for r in runs], fetcher=fetcher(),
                                                              overlap_sweeps=False),
            "importance_match": importance_match,
            # per causal command (one query, pruned, no dense_ok, from DRAM): the value rows fetched after its v_fetch
            "value_rows_match": value_rows_match, "after_mask": after_mask,
            "v_fetch_cycles": res.get("v_fetch_cycles"),
            # the same stream with the oracle fetch before (kept value rows loaded before the top-k chose them)
            "oracle_done_cycles": command_stream_cycles([r.queries for r in runs], fetcher=SplitLoads(
                [len(c["keys"]) * dram_row_cycles for c in cmds],
                [v * dram_row_cycles if len(c["queries"]) else None for c, v in zip(cmds, value_rows)]))
            if dram_row_cycles else None,
            # per row: its PxV visited the kept tokens only; and the stream were every PxV to sweep all groups
            "over_kept": over_kept,
            # per row: None, or (take, first beat, last beat) when the top-k feed took it while its sweep wrote
            # it; and the stream without the feed (each pruned row's engine takes it at the divider at the earliest)
            "fed": fed,
            "model_out_cycles": outs,
            # per row: the fallback swept it unpruned (its top-k late); and the stream without local-V
            "fell": fell,
            # per row: how many times an LSB refetch preempted its QxK; and the stream without QxK preemption
            "preempted": preempted,
            "unpreempted_done_cycles": command_stream_cycles(
                [[dataclasses.replace(qc, preempt=False) for qc in r.queries] for r in runs], fetcher=fetcher()),
            "unpruned_done_cycles": command_stream_cycles(
                [[dataclasses.replace(qc, topk=0, pv_kept=0, mask=0, fallback=False) for qc in r.queries]
                 for r in runs], fetcher=fetcher(local_v=False)),
            "unfed_done_cycles": command_stream_cycles([r.queries for r in runs], fetcher=fetcher(), feed=False),
            "full_sweep_done_cycles": command_stream_cycles(
                [[dataclasses.replace(qc, pv_kept=0) for qc in r.queries] for r in runs], fetcher=fetcher()),
            "need_lsb": [bool(r.need_lsb) for _, r in results], "rtl_need_lsb": res.get("need_lsb"),
            "stages": [(qc.front, qc.back) for run in runs for qc in run.queries],
            # per query: the QxK stage and the softmax stage per pass, the passes, the divider's pace
            # (division, decision and two hand-off cycles), the top-k stage, the PxV stage
            "stage_cycles": [(qc.qk, qc.sweep, qc.passes, qc.div + qc.decide + 2, qc.topk, qc.pv_stage)
                             for run in runs for qc in run.queries],
            "serial_cycles": sum(1 + sum(qc.total for qc in run.queries) for run in runs),
            "cmd_cycles": res.get("cmd_cycles"),
            "kept": [int(r.keep.sum()) for _, r in results], "passed": bool(res.get("passed")),
            "out_cycles": res.get("out_cycles"), "shift": shifts[0] if commands == 1 else shifts,
            **({"log_tail": res["log_tail"]} if "log_tail" in res else {})}


def float_softmax(scores: np.ndarray, shift: int) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64) / 2.0 ** shift
    p = np.exp(x - x.max())
    return p / p.sum()


def _feed_rows(ctx, dut, lanes, row):
    """Beats of one row for the softmax input: lanes per beat, keep bits, last on the final beat."""
    n = len(row)
    beats = -(-n // lanes)
    for g in range(beats):
        idx = [g * lanes + i for i in range(lanes)]
        yield ([int(row[i]) if i < n else 0 for i in idx], sum(1 << j for j, i in enumerate(idx) if i < n),
               int(g == beats - 1))


def check_softmax_unit(spec: SpattenSpec, rows: list, shift: int) -> dict:
    """Rows of integer scores through rtlgen.softmax.Softmax and Normalize on Amaranth's simulator.

    Rows alternate between the two score banks, each loading while the previous one is swept. Compares
    every exponential and each row's reciprocal with softmax_fixed (exactly), the probabilities Normalize
    makes of them with softmax_fixed (exactly) and float softmax (``max_error``), and each row's cycles
    (rising edges from the ``go`` cycle to the ``recip_valid`` cycle) with
    sim.spatten_model.softmax_cycles.
    """
    from amaranth import Module
    from amaranth.sim import Simulator

    from archgen.rtlgen.softmax import Normalize, Softmax

    lanes = spec.lanes
    top = Module()
    top.submodules.sm = dut = Softmax(spec)
    top.submodules.norm = norm = Normalize(spec, lanes)
    top.d.comb += norm.recip.eq(dut.recip)
    got_exps: list[list[int]] = []
    got_recip: list[int] = []
    got_probs: list[list[int]] = []
    cycles: list[int] = []

    beats_of = [list(_feed_rows(None, dut, lanes, row)) for row in rows]

    async def bench(ctx):
        ctx.set(dut.shift, shift)
        ctx.set(dut.div_allow, 1)

        def drive(beat, bank):
            data, keep, last = beat if beat is not None else ([0] * lanes, 0, 0)
            for i, v in enumerate(data):
                ctx.set(dut.inp.payload.data[i], v)
            ctx.set(dut.inp.payload.keep, keep)
            ctx.set(dut.inp.payload.last, last)
            ctx.set(dut.inp.valid, int(beat is not None))
            ctx.set(dut.in_bank, bank)

        async def clear(bank):
            ctx.set(dut.clear, 1)
            ctx.set(dut.clear_bank, bank)
            await ctx.tick()
            ctx.set(dut.clear, 0)

        await clear(0)
        for beat in beats_of[0]:            # the first row alone; every later one loads during a sweep
            drive(beat, 0)
            await ctx.tick()
        drive(None, 0)
        for r, row in enumerate(rows):
            ctx.set(dut.go, 1)
            ctx.set(dut.go_bank, r % 2)
            await ctx.tick()
            ctx.set(dut.go, 0)
            pending = list(beats_of[r + 1]) if r + 1 < len(rows) else []
            if pending:
                ctx.set(dut.clear, 1)         # the next row's bank, emptied in the first sweep cycle
                ctx.set(dut.clear_bank, (r + 1) % 2)
            beats, cyc = [], 1  # one edge past the go cycle
            while not ctx.get(dut.recip_valid):
                if ctx.get(dut.out.valid):
                    beats.append([ctx.get(dut.out.payload.data[i]) for i in range(lanes)])
                drive(pending.pop(0) if pending and cyc > 1 else None, (r + 1) % 2)
                await ctx.tick()
                ctx.set(dut.clear, 0)
                cyc += 1
                if cyc > 100 * spec.max_tokens + 1000:
                    raise AssertionError("softmax produced no reciprocal")
            drive(None, 0)
            if pending:
                raise AssertionError("the next row did not load during this row's sweep (test too short)")
            got_recip.append(ctx.get(dut.recip))
            got_exps.append([e for b in beats for e in b][:len(row)])
            probs = []
            for b in beats:                   # Normalize: one beat per cycle, the result a cycle later
                for i, e in enumerate(b):
                    ctx.set(norm.exps[i], e)
                await ctx.tick()
                probs += [ctx.get(norm.probs[i]) for i in range(lanes)]
            got_probs.append(probs[:len(row)])
            cycles.append(cyc)

    sim = Simulator(top)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    fmt = spatten_formats(spec)
    exact, err = True, 0.0
    model = []
    for row, e, r, p in zip(rows, got_exps, got_recip, got_probs):
        ref = softmax_fixed(row, shift, fmt)
        exact &= (bool(np.array_equal(np.array(e, dtype=np.int64), ref.exps)) and r == ref.recip
                  and bool(np.array_equal(np.array(p, dtype=np.int64), ref.probs)))
        err = max(err, float(np.max(np.abs(np.array(p) / 2.0 ** fmt.prob_frac - float_softmax(row, shift)))))
        model.append(softmax_cycles(spec, len(row)))
    return {"correct": exact and err <= SOFTMAX_TOLERANCE and cycles == model, "bit_exact": exact,
            "max_error": err, "rtl_cycles": cycles, "model_cycles": model}


def check_pq_unit(spec: SpattenSpec, rows: list, shift: int, threshold: int, enable: bool = True) -> dict:
    """Score rows' exponentials and reciprocals (softmax_fixed) through rtlgen.pq_decision.PQDecision;
    decisions and row maxima vs sim.spatten_model.pq_need_lsb and the largest probability, and the cycles
    from ``recip_valid`` to ``decision`` vs the model's ``pq_decide``."""
    from archgen.dataflow.spatten_arrays import spatten_latencies
    from amaranth.sim import Simulator

    from archgen.rtlgen.pq_decision import PQDecision

    fmt = spatten_formats(spec)
    traces = [softmax_fixed(r, shift, fmt) for r in rows]
    dut = PQDecision(spec)
    got: list[tuple[bool, int]] = []
    cycles: list[int] = []

    async def bench(ctx):
        ctx.set(dut.threshold, threshold)
        ctx.set(dut.enable, int(enable))
        for tr in traces:
            for data, keep, last in _feed_rows(ctx, dut, spec.lanes, tr.exps):
                for i, v in enumerate(data):
                    ctx.set(dut.inp.payload.data[i], v)
                ctx.set(dut.inp.payload.keep, keep)
                ctx.set(dut.inp.payload.last, last)
                ctx.set(dut.inp.valid, 1)
                await ctx.tick()
            ctx.set(dut.inp.valid, 0)
            ctx.set(dut.recip, tr.recip)
            ctx.set(dut.recip_valid, 1)
            await ctx.tick()
            ctx.set(dut.recip_valid, 0)
            cyc = 1
            while not ctx.get(dut.decision):
                await ctx.tick()
                cyc += 1
                if cyc > 16:
                    raise AssertionError("the PQ decision never came")
            got.append((bool(ctx.get(dut.need_lsb)), ctx.get(dut.row_max)))
            cycles.append(cyc)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    want = [enable and pq_need_lsb(tr.probs, threshold) for tr in traces]
    maxes = [int(np.max(tr.probs)) for tr in traces]
    model = [spatten_latencies(spec).pq_decide] * len(traces)
    return {"correct": [g[0] for g in got] == want and [g[1] for g in got] == maxes and cycles == model,
            "need_lsb": [g[0] for g in got], "expected": want, "rtl_cycles": cycles, "model_cycles": model}


SPATTEN_UNITS = ("core", "softmax", "pq")


def verify_spatten_unit(spec: SpattenSpec, unit: str, *, seed: int = 0, n_keys: int | None = None,
                        n_queries: int = 2, local_v_keep: int | None = None, rows: int = 6) -> dict:
    """``archgen verify SPEC --unit UNIT``: one entry point for the CLI.

    ``core``: :func:`verify_core` (Verilator); ``softmax`` / ``pq``: random rows (plus an all-equal row)
    on Amaranth's simulator, ``rows`` of them. ``n_keys`` defaults to the spec's max_tokens.
    Raises ValueError for an unknown unit.
    """
    n = spec.max_tokens if n_keys is None else n_keys
    if unit == "core":
        return verify_core(spec, n, n_queries, seed, local_v_keep)
    rng = np.random.default_rng(seed)
    sizes = [int(x) for x in rng.integers(1, spec.max_tokens + 1, max(0, rows - 1))] + [n]
    if unit == "softmax":
        sw = spatten_formats(spec).score_bits
        data = [rng.integers(-(1 << (sw - 2)), 1 << (sw - 2), k) for k in sizes[:-1]]
        data.append(np.zeros(n, dtype=np.int64))
        return check_softmax_unit(spec, data, default_shift(spec))
    if unit == "pq":
        # score spreads from flat (LSB refetch) to peaked, so both decisions occur
        fmt = spatten_formats(spec)
        shift = default_shift(spec)
        data = [rng.integers(0, 1 << int(rng.integers(0, shift + 4)), k) for k in sizes]
        return check_pq_unit(spec, data, shift, threshold_fx(spec.pq.threshold, fmt))
    raise ValueError(f"unit must be one of {', '.join(SPATTEN_UNITS)}, not {unit!r}")
