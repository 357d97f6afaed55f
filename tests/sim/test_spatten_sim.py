import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spatten_spec import builtin_spec_path, load_spatten_spec
from archgen.dataflow.spatten_stages import TOPK_ENGINES
from archgen.sim.spatten_algo import SpattenAlgoConfig
from archgen.sim.spatten_model import query_cycles, stage_pace
from archgen.sim.spatten_sim import (simulate_spatten, spatten_area_mm2, spatten_bytes_per_cycle,
                                     spatten_peak_macs_per_cycle)
from archgen.workloads.library import get_workload
from archgen.workloads.trace import synthetic_trace


@pytest.fixture(scope="module")
def full():
    return load_spatten_spec(builtin_spec_path("spatten"))


@pytest.fixture(scope="module")
def small():
    return load_spatten_spec(builtin_spec_path("spatten_small"))


def test_dense_run_matches_its_baseline(full):
    wl = get_workload("bert-base", seq=512)
    cfg = SpattenAlgoConfig(progressive=False)
    rs = simulate_spatten(full, wl, algo_config=cfg, seed=1)
    assert len(rs) == 12 and rs[0].name == "layer0.attention"
    for r in rs:
        assert r.cycles == r.extra["dense_cycles"]
        assert r.dram_total_bytes == r.extra["dense_dram_bytes"]
        assert r.cycles >= r.roofline_cycles
    # 12 heads (commands) x 64 identical queries streamed through the core (PQ off): the PxV stage (its
    # sweep and output cycle) is the slowest stage (the exponential sweeps follow each other through
    # their pipeline, G + 1 cycles a row), so after the first row reaches the PxV stage (QxK, sweep,
    # division, hold and top-k stage cycles) the stream costs one PxV stage per row
    qc = query_cycles(full, 512)
    pace = stage_pace(qc)
    assert pace["pv"] == qc.back > max(pace["qk"], pace["sweep"], pace["divider"])
    rows = 12 * 512
    assert rs[0].extra["compute_cycles"] == 1 + qc.qk + qc.exp + qc.div + qc.decide + 2 + 1 + rows * qc.back
    assert rs[0].macs == 2 * 12 * 512 * 512 * 64
    # dense BERT-base at 512 tokens: one PxV stage (G + pv_pipe + 1 cycles) per query against G cycles
    # of multiplier work: above 75% of the multipliers' peak (the paper: about 79%)
    assert rs[0].utilisation > 0.75
    # each stage's busy cycles, summed over the 12 x 64 rows (dense: no top-k)
    x = rs[0].extra
    assert (x["front_stage_cycles"], x["topk_stage_cycles"], x["pv_stage_cycles"]) == \
        (rows * qc.front_busy, 0, rows * (qc.pv + qc.output))


def test_stage_cycles_with_local_v_pruning(small):
    from archgen.sim.report import render_spatten_table
    tr = synthetic_trace(2, 2, 32, seed=4)
    rs = simulate_spatten(small, trace=tr, algo_config=SpattenAlgoConfig(value_prune=0.5, progressive=False))
    for r in rs:
        x = r.extra
        assert x["topk_stage_cycles"] > 0
        # the top-k and the PxV are stages of their own: the stream takes at least the slowest stage's
        # work (the top-k's split over its TOPK_ENGINES engines; the front's figure sums its own
        # overlapping sub-stages, so it is no bound), and less than the stages one after the other (below)
        assert max(x["topk_stage_cycles"] / TOPK_ENGINES, x["pv_stage_cycles"]) < x["compute_cycles"]
        assert x["compute_cycles"] \
            < x["front_stage_cycles"] + x["topk_stage_cycles"] + x["pv_stage_cycles"] + 2 * x["rows"]
    from rich.console import Console
    con = Console(width=400, record=True)
    con.print(render_spatten_table(rs))
    text = con.export_text()
    header = text.split("─")[0].split()
    assert {"front", "top-k", "PxV", "(cycles)"} <= set(header)
    assert f"{rs[0].extra['topk_stage_cycles']:,}" in text


def test_pruning_reduces_dram_and_time(full):
    wl = get_workload("gpt2-small", phase="decode", kv_len=511)
    cfg = SpattenAlgoConfig(token_prune=0.3, head_prune=0.1, threshold=0.1)
    rs = simulate_spatten(full, wl, algo_config=cfg, concentration=4.0)
    dense = sum(r.extra["dense_dram_bytes"] for r in rs)
    ours = sum(r.dram_total_bytes for r in rs)
    assert ours < dense
    # a layer streams its commands, each waiting for its K/V load (double-buffered banks): at least the
    # longer of the core's compute and the DRAM transfer, less than the two one after the other
    assert all(max(r.extra["dram_cycles"], r.extra["compute_cycles"]) <= r.cycles
               < r.extra["dram_cycles"] + r.extra["compute_cycles"] for r in rs)
    # decode (one query per command): a command's load waits for the command two before it (its K/V
    # bank), so with a single query the latency of each command shows, not only the slower of the two
    assert all(r.cycles > max(r.extra["dram_cycles"], r.extra["compute_cycles"]) for r in rs)
    assert sum(r.extra["dense_cycles"] for r in rs) > sum(r.cycles for r in rs)
    assert rs[-1].extra["tokens_kept"] < rs[0].extra["tokens_kept"]
    assert set(rs[0].dram_bytes) == {"key_msb.read", "key_lsb.read", "value_msb.read", "value_lsb.read",
                                      "query.read", "output.write"}
    assert set(rs[0].energy_pj) == {"qk_unit", "pv_unit", "softmax", "key_sram", "value_sram", "dram"}


def test_dram_time_uses_the_spec_bandwidth(full, small):
    assert spatten_bytes_per_cycle(full) == pytest.approx(512.0)       # 512 GB/s at 1 GHz
    assert spatten_bytes_per_cycle(small) == pytest.approx(64.0)
    assert spatten_peak_macs_per_cycle(full) == 1024
    tr = synthetic_trace(2, 2, 48, queries=1, seed=0)
    r = simulate_spatten(small, trace=tr, algo_config=SpattenAlgoConfig(progressive=False))[0]
    assert r.extra["dram_cycles"] == pytest.approx(r.dram_total_bytes / 64.0)


def test_trace_must_match_workload(full):
    wl = get_workload("bert-base", seq=64)
    with pytest.raises(SpecError, match="header.seq_len"):
        simulate_spatten(full, wl, trace=synthetic_trace(12, 12, 32, seed=0, head_dim=8))


def test_sequence_longer_than_the_buffers(small):
    with pytest.raises(SpecError, match="max_tokens=64"):
        simulate_spatten(small, get_workload("bert-base", seq=128))


def test_cnn_is_rejected(full):
    with pytest.raises(SpecError, match="no attention"):
        simulate_spatten(full, get_workload("resnet50"))


def test_area_estimate(full):
    a = spatten_area_mm2(full)
    assert set(a) == {"qk_unit", "pv_unit", "softmax", "key_sram", "value_sram", "topk"}
    assert 0 < a["topk"] < a["key_sram"]      # two engines' buffers and FIFOs: less than one K SRAM
    assert a["key_sram"] == pytest.approx(a["value_sram"])
    assert 0 < sum(a.values()) < 18.71      # a datapath + buffer lower bound of the paper's total


def test_topk_exact_and_estimate(small):
    from archgen.sim.topk_model import simulate_topk
    from archgen.sim.spatten_sim import topk_estimate_cycles
    tr = synthetic_trace(2, 2, 48, seed=0)
    cfg = SpattenAlgoConfig(value_prune=0.5, progressive=False)
    exact = simulate_spatten(small, trace=tr, algo_config=cfg, head_dim=16)
    est = simulate_spatten(small, trace=tr, algo_config=cfg, head_dim=16, topk_cycles="estimate")
    assert exact[0].extra["topk_cycles"] == "exact" and est[0].extra["topk_cycles"] == "estimate"
    # the estimate lands near the exact engine model on these rows
    ratio = sum(r.extra["compute_cycles"] for r in est) / sum(r.extra["compute_cycles"] for r in exact)
    assert 0.7 < ratio < 1.4
    # k >= n: ingest only (the core's engine has no replay), as the engine's contract says
    run = simulate_topk(list(range(48)), 48, parallelism=4, fifo_depth=16, replay=False)
    assert topk_estimate_cycles(48, 48, 4) == pytest.approx(run.cycles, abs=2)
    with pytest.raises(SpecError, match="topk_cycles"):
        simulate_spatten(small, trace=tr, topk_cycles="fast")


def test_results_feed_the_report(full, tmp_path):
    import json

    from archgen.sim.report import write_sim_report
    rs = simulate_spatten(full, get_workload("bert-base", seq=32), seed=0)
    paths = write_sim_report(rs, tmp_path, design=full.name, clock_mhz=full.clock_mhz,
                             peak_macs_per_cycle=spatten_peak_macs_per_cycle(full),
                             dram_bytes_per_cycle=spatten_bytes_per_cycle(full))
    doc = json.loads(paths["json"].read_text())
    assert len(doc["layers"]) == 12
    assert doc["layers"][0]["extra"]["compute_model"] == "spatten_model.query_cycles"
    assert doc["total"]["dram_bytes"] == sum(r.dram_total_bytes for r in rs)


def _fallback_spec(name: str, mode: str):
    import yaml
    raw = yaml.safe_load(builtin_spec_path(name).read_text())
    raw["units"]["topk"]["fallback"] = mode
    return load_spatten_spec(raw)


def test_fallback_tail_marks_each_layers_last_commands_and_is_never_slower():
    """``units.topk.fallback: tail`` (H107, the default): only each layer's last ``units.topk.fallback_tail``
    commands (2 by default since H120's follow-up: the K/V bank count) get ``dense_ok`` (their values loaded
    whole; the others load their kept value rows, as with ``none``), so only their rows may be swept unpruned. On a figure-3-like stream (token + head + PQ + local-V, BERT-shaped, the full
    engine) every layer with local-V is no slower than without it; ``all`` marks every command of several
    queries and loads their values whole; ``none`` marks none. Unlike ``all``, ``tail`` is no theorem: it
    relies on mid-stream top-k latency being hidden (H93); the same trace at 64 tokens loses 2 cycles in
    its layer 1, and random streams often end later (docs/spatten.md, "Fallback")."""
    from archgen.sim.spatten_algo import run_spatten_algo
    from archgen.sim.spatten_sim import _exact_topk_fn, _windows_fn

    tr = synthetic_trace(2, 4, 128, concentration=2.0, seed=3)     # 2 layers, 4 heads, 128 tokens
    cfg = SpattenAlgoConfig(token_prune=0.3, head_prune=0.2, value_prune=0.3, threshold=0.1)
    specs = {m: _fallback_spec("spatten", m) for m in ("tail", "all", "none")}
    full = specs["tail"]
    algo = {m: run_spatten_algo(tr, cfg, head_dim=64, topk_cycles=_exact_topk_fn(full), pv_windows=_windows_fn(full),
                                fallback=m) for m in specs}
    tail = full.topk.fallback_tail
    assert tail == 2
    for t, a, n in zip(algo["tail"].layers, algo["all"].layers, algo["none"].layers):
        rows = t.command_rows
        assert len(rows) > tail and (rows[-tail:] > 0).all()
        assert t.command_dense_ok.tolist() == [False] * (len(rows) - tail) + [True] * tail
        assert a.command_dense_ok.tolist() == (rows > 1).tolist() and not n.command_dense_ok.any()
        # the value loads: whole for every command of several queries, marked or not (since the causal value
        # fetch, H120: a one-query command alone loads its kept rows, after its keep mask)
        assert n.value_msb_bytes <= t.value_msb_bytes <= a.value_msb_bytes
        assert (t.key_msb_bytes, t.av_macs) == (n.key_msb_bytes, n.av_macs) == (a.key_msb_bytes, a.av_macs)
    no_v = simulate_spatten(full, trace=tr, algo_config=SpattenAlgoConfig(token_prune=0.3, head_prune=0.2,
                                                                           threshold=0.1), head_dim=64)
    res = {m: simulate_spatten(s, trace=tr, algo_config=cfg, head_dim=64) for m, s in specs.items()}
    last_rows = [int(s.command_rows[-tail:].sum()) for s in algo["tail"].layers]
    for lt, la, ln, lv, k in zip(res["tail"], res["all"], res["none"], no_v, last_rows):
        # (9,644 / 3,424 cycles with tail (last two; 9,644 / 3,427 with the last one only); 9,694 / 3,526
        # without local-V; 9,646 / 3,427 with none; 9,644 / 3,422 with all)
        assert lt.cycles <= lv.cycles and la.cycles <= lv.cycles and lt.cycles <= ln.cycles
        assert lt.extra["fallback_rows"] <= k and lt.extra["fallback_rows"] < la.extra["fallback_rows"]
        assert ln.extra["fallback_rows"] == 0
        # fewer rows swept unpruned than with ``all``: local-V's multiplications are kept
        assert ln.macs <= lt.macs < la.macs
    assert sum(r.extra["fallback_rows"] for r in res["tail"]) > 0          # 55 + 29 rows of the last two commands


def test_decode_steps_are_streams_of_their_own(small):
    """A decode trace of several generated tokens: step t + 1's query depends on step t's output through
    every layer, so a layer's commands of one step cannot overlap the next step's. Each step's commands are
    a stream of their own with its first key load in front; the layer's cycles are their sum. Checked against
    the one-stream model run step by step on each step's commands (with the same per-command loads), and
    against the one stream over all steps (which overlaps the steps, so it is shorter)."""
    from archgen.sim.spatten_algo import run_spatten_algo
    from archgen.sim.spatten_sim import _core_cycles, _split_loads, layer_loads

    tr = synthetic_trace(2, 2, 40, queries=4, seed=5)       # 2 layers, 2 heads, 36-token prompt, 4 steps
    cfg = SpattenAlgoConfig(token_prune=0.2, threshold=0.1)
    algo = run_spatten_algo(tr, cfg, head_dim=small.head_dim)
    res = simulate_spatten(small, trace=tr, algo_config=cfg, head_dim=small.head_dim)
    pq = cfg.progressive and cfg.lsb_bits > 0
    for s, r in zip(algo.layers, res):
        steps = s.command_steps
        assert steps.tolist() == sorted(steps.tolist()) and set(steps.tolist()) == {0, 1, 2, 3}
        keys, values = layer_loads(small, s)
        total, start, first = 0, 0, 0
        for t in range(4):
            mine = steps == t
            rows = s.command_rows[mine]
            issued = int((rows > 0).sum())
            sl = slice(start, start + int(rows.sum()))
            got = _core_cycles(small, s.row_keys[sl], s.row_lsb[sl], None, rows, pq=pq,
                               loads=(keys[first:first + issued], values[first:first + issued]),
                               dense_ok=s.command_dense_ok[mine])[0]
            total += got
            start, first = start + int(rows.sum()), first + issued
        assert r.cycles == total
        one_stream = _core_cycles(small, s.row_keys, s.row_lsb, None, s.command_rows, pq=pq,
                                  loads=(keys, values), dense_ok=s.command_dense_ok)[0]
        assert one_stream < total
        # the dense baseline is cut the same way
        dk = s.dense_key_bytes + s.dense_query_bytes
        dense_loads = _split_loads(s.dense_row_keys, s.dense_command_rows, dk, s.dense_dram_bytes - dk,
                                   spatten_bytes_per_cycle(small))
        dense_one = _core_cycles(small, s.dense_row_keys, 0 * s.dense_row_keys, None, s.dense_command_rows,
                                 loads=dense_loads)[0]
        assert r.extra["dense_cycles"] > dense_one


def test_fallback_tail_marks_the_last_command_of_each_decode_step():
    """With steps as streams of their own, the command nothing after it hides is each step's last one."""
    from archgen.sim.spatten_algo import _dense_ok

    rows, extra = [1, 1, 0, 1, 1, 1], [(0, 0)] * 6
    assert _dense_ok("tail", rows, extra).tolist() == [False] * 5 + [True]
    assert _dense_ok("tail", rows, extra, [0, 0, 1, 1, 2, 2]).tolist() == [False, True, False, True, False, True]
    assert _dense_ok("tail", [1, 0], extra[:2], [0, 1]).tolist() == [True, False]
    # units.topk.fallback_tail: 2 (H120): the last two commands with rows of each step
    assert _dense_ok("tail", rows, extra, [0, 0, 1, 1, 1, 1], tail=2).tolist() == [True, True, False, False, True, True]
    assert _dense_ok("tail", rows, extra, None, tail=2).tolist() == [False] * 4 + [True, True]
