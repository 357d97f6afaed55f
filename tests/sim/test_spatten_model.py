"""SpAtten cycle model and bit-exact functional model (no hardware simulator involved)."""
from dataclasses import replace

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from archgen.arch.spatten_spec import builtin_spec_path, load_spatten_spec, spatten_formats
from archgen.dataflow.spatten_arrays import spatten_latencies
from archgen.sim.spatten_model import (command_stream_cycles, core_cycles, core_process, core_reference,
                                       exp_fixed, mask_lsbs, pass_cycles, pv_cycles, qk_cycles, query_cycles,
                                       softmax_cycles, softmax_fixed, sweep_cycles, threshold_fx,
                                       stage_pace, topk_keep_mask)
from archgen.sim.topk_model import topk_reference

SMALL = load_spatten_spec(builtin_spec_path("spatten_small"))
FULL = load_spatten_spec(builtin_spec_path("spatten"))


def test_exp_fixed_tracks_exp():
    fmt = spatten_formats(FULL)
    d = np.arange(0, 1 << 20, 37)
    for shift in (0, 8, 16):
        err = np.abs(exp_fixed(d, shift, fmt) / 2 ** 16 - np.exp(-d / 2.0 ** shift))
        assert err.max() < 2e-4
    assert exp_fixed(np.array([0]), 5, fmt)[0] == 1 << 16  # exp(0) is exactly 1.0


@pytest.mark.parametrize("spec", [SMALL, FULL], ids=["small", "full"])
def test_softmax_fixed_error_bound_random_and_adversarial(spec):
    fmt = spatten_formats(spec)
    rng = np.random.default_rng(0)
    rows = [rng.integers(-2 ** 24, 2 ** 24, rng.integers(1, spec.max_tokens + 1)) for _ in range(50)]
    rows += [np.zeros(spec.max_tokens, dtype=np.int64), np.array([7]),
             np.array([-(2 ** 29), 2 ** 29 - 1] * 4), np.arange(spec.max_tokens) * 1000]
    for row in rows:
        p = softmax_fixed(row, 18, fmt).probs
        x = row / 2.0 ** 18
        ref = np.exp(x - x.max())
        ref /= ref.sum()
        assert np.max(np.abs(p / 2 ** 15 - ref)) < 5e-4
        assert p.max() <= 1 << 15


def test_mask_lsbs_is_floor_to_msb_grid():
    assert mask_lsbs(np.array([-1, 15, 16, -17]), 4).tolist() == [-16, 0, 16, -32]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=40), st.integers(0, 45))
def test_topk_keep_mask_agrees_with_topk_reference(values, k):
    mask = topk_keep_mask(np.array(values), k)
    assert np.flatnonzero(mask).tolist() == topk_reference(values, k)


def test_closed_form_phases():
    lat = spatten_latencies(SMALL)
    assert softmax_cycles(SMALL, 10) == 3 + lat.exp_pipe + lat.recip
    assert qk_cycles(SMALL, 10) == 1 + 3 + lat.qk_pipe
    assert sweep_cycles(SMALL, 10) == softmax_cycles(SMALL, 10) + lat.pq_decide
    assert pass_cycles(SMALL, 10) == qk_cycles(SMALL, 10) + sweep_cycles(SMALL, 10)
    assert pv_cycles(SMALL, 64) == 16 + lat.pv_pipe
    q = query_cycles(SMALL, 10)
    # the pass, a cycle in the hold slot, the top-k stage's take, the PxV stage's take, the PxV sweep
    # and the output
    assert q.total == pass_cycles(SMALL, 10) + 1 + 1 + 1 + pv_cycles(SMALL, 10) + 1
    q2 = query_cycles(SMALL, 10, lsb_pass=True, topk_cycles=40)
    # the refetch starts the cycle after the first decision; the top-k (command in the take cycle, the PxV
    # stage's take in its done cycle) replaces the unpruned row's one cycle in the top-k stage
    assert q2.total == q.total + 1 + pass_cycles(SMALL, 10) + (40 + lat.topk_handoff - 1)
    with pytest.raises(ValueError, match="n_keys must be in 1..64"):
        query_cycles(SMALL, 65)


def test_stream_of_equal_queries_runs_at_the_slowest_stage():
    """Query i+1's QxK overlaps query i's exponential sweep, and (PQ off) row i's division overlaps row
    i+1's sweep, so a long command costs one period of its slowest stage per query: QxK, the sweep and
    its hand-over cycle, the divider with its decision and hold cycles, or the back stage."""
    for spec, n in ((SMALL, 64), (SMALL, 8), (FULL, 1024), (FULL, 512), (FULL, 40)):
        q = query_cycles(spec, n)
        per_query = command_stream_cycles([[q] * 41])[0] - command_stream_cycles([[q] * 40])[0]
        # the sweep: G issue cycles and the go cycle, at least the exponential pipeline and one cycle
        # (a row's last beat waits until the previous row is at the divider)
        sweep = max(q.exp - q.exp_pipe, q.exp_pipe) + 1
        assert per_query == max(q.qk, sweep, q.div + q.decide + 2, q.back), (spec.name, n)
        assert per_query == max(stage_pace(q).values()), (spec.name, n)
        for topk in (30, 90, 400):     # pruned: the two top-k engines take rows in turn
            t = query_cycles(spec, n, topk_cycles=topk)
            per_two = command_stream_cycles([[t] * 42])[0] - command_stream_cycles([[t] * 40])[0]
            assert per_two == 2 * max(stage_pace(t).values()), (spec.name, n, topk)
        # PQ on, no refetch: a row keeps its score bank until its decision; with three score banks the
        # QxK of query i+3 waits for query i's decision: three queries per qk + exp + div + decide + 1
        # at the least, which is below three periods of the slowest stage except on rows so short that the
        p = query_cycles(spec, n, pq_enable=True)
        per_three = command_stream_cycles([[p] * 43])[0] - command_stream_cycles([[p] * 40])[0]
        assert per_three == max(3 * p.qk, 3 * sweep, 3 * (p.div + p.decide + 2), 3 * p.back,
                                p.qk + p.exp + p.div + p.decide + 1), (spec.name, n)
        # three banks' round trip is longer (FULL at 40 keys: 37 cycles against 3 x 12)
        round_trip = p.qk + p.exp + p.div + p.decide + 1
        assert per_three == max(3 * per_query, round_trip), (spec.name, n)
    # one query alone: accepted the cycle after the handshake, then its whole latency
    assert command_stream_cycles([[q]]) == [1 + q.total]


def test_stream_rules_pinned_on_two_refetching_queries():
    """The stream recurrences written out for two queries that both take the LSB pass."""
    q = query_cycles(SMALL, 40, lsb_pass=True, topk_cycles=30)
    qk, sw = q.qk, q.sweep
    a0 = 1
    a1 = a0 + qk                                   # the QxK stage is free; score bank 1 is free
    d0 = a0 + qk + sw                              # the sweep starts the cycle after the last score
    r0 = max(d0 + 1, a1 + qk)                      # refetch: after the decision and after query 1's QxK
    s0 = r0 + qk + q.exp                           # the LSB pass leaves the stage when the divider takes it
    b = q.topk_beats                               # the top-k engine's input beats, ceil(40 / P)
    # pruned LSB pass (cannot refetch): the top-k feed takes it the cycle after its sweep's go (r0 + qk);
    # its last beat is read two cycles after its last exponential is written (s0: the divider takes it then)
    t0 = r0 + qk + 1
    f0 = max(t0 + q.topk, s0 + 2 + q.topk - b)     # the fed engine's done
    e0 = s0 + q.div + q.decide                     # its decision (the reciprocal goes to the engine)
    g = q.exp - q.exp_pipe                         # the row's beats
    go1 = max(a1 + qk, r0 + qk + g + 1)            # query 1 sweeps once query 0's last beat is issued
    last1 = max(go1 + g, s0 + 1)                   # its last beat waits until query 0 is at the divider
    d1 = max(last1 + q.exp_pipe, e0 + 1) + q.div + q.decide   # its divider waits for query 0's decision
    r1 = max(d1 + 1, r0 + qk)
    s1 = r1 + qk + q.exp                           # the LSB pass reaches the divider
    p0 = max(f0, e0 + 1)                           # PxV takes row 0 at done, with its reciprocal
    b0 = p0 + 1 + q.pv_stage                       # the PxV stage is idle again
    # the second top-k engine (TOPK_ENGINES = 2) takes row 1's LSB pass from its go on, fed; row 0 is
    # already in an engine and at the divider (s0)
    t1 = max(r1 + qk + 1, s0 + 1, t0 + 1)
    f1 = max(t1 + q.topk, s1 + 2 + q.topk - b)
    p1 = max(f1, b0 - 1, s1 + q.div + q.decide + 1)   # in the PxV stage's output cycle at the earliest
    fed = []
    assert command_stream_cycles([[q, q]], fed=fed) == [p1 + 1 + q.pv_stage]
    assert [f[0] for f in fed] == [t0, t1]
    # without the feed (the core before H98): each engine takes its row when the divider has it
    p0 = max(s0 + 1 + q.topk, e0 + 1)
    b0 = p0 + 1 + q.pv_stage
    p1 = max(s1 + 1 + q.topk, b0 - 1, s1 + q.div + q.decide + 1)
    assert command_stream_cycles([[q, q]], feed=False) == [p1 + 1 + q.pv_stage]


def test_core_cycles_uses_pq_and_topk_on_actual_data():
    rng = np.random.default_rng(3)
    n, d = 48, SMALL.head_dim
    k, v, q = (rng.integers(-512, 512, (n, d)) for _ in range(3))
    flat = core_cycles(SMALL, q[:2], k, v, shift=21, keep_k=n)  # large shift: flat rows, LSBs fetched
    assert all(r.need_lsb for r in flat.results)
    assert all(qc.passes == 2 for qc in flat.queries)
    pruned = core_cycles(SMALL, q[:2], k, v, shift=21, keep_k=6)
    assert all(run is not None and len(run.indices) == 6 for run in pruned.topk_runs)
    assert pruned.cycles == command_stream_cycles([list(pruned.queries)])[0]
    for qc, run in zip(pruned.queries, pruned.topk_runs):
        assert qc.topk == run.cycles + spatten_latencies(SMALL).topk_handoff
    assert all(int(r.keep.sum()) == 6 for r in pruned.results)


def test_core_reference_matches_float_attention():
    rng = np.random.default_rng(5)
    n, d = 30, FULL.head_dim
    k, v = rng.integers(-512, 512, (n, d)), rng.integers(-512, 512, (n, d))
    q = rng.integers(-512, 512, d)
    r = core_reference(FULL, q, k, v, shift=17, pq_enable=False)
    s = k @ q / 2.0 ** 17
    p = np.exp(s - s.max())
    p /= p.sum()
    assert np.max(np.abs(r.out / 2 ** 15 - p @ v)) / 512 < 2e-3


def test_simpy_process_takes_the_model_cycles():
    rng = np.random.default_rng(1)
    k, v, q = (rng.integers(-512, 512, (12, SMALL.head_dim)) for _ in range(3))
    env = simpy.Environment()
    proc = env.process(core_process(env, SMALL, q[:1], k, v, shift=17))
    env.run()
    assert env.now == proc.value.cycles == core_cycles(SMALL, q[:1], k, v, shift=17).cycles


def test_threshold_fx():
    assert threshold_fx(0.1, spatten_formats(SMALL)) == 3277


def test_dram_ready_pins_the_load_rule():
    """Commands waiting for their K/V loads (spatten_model.dram_ready): one load at a time, command i's
    after command i - 2 (its bank) is done; DRAM-bound single-query commands then finish one alone-latency
    after their load ends."""
    from archgen.sim.spatten_model import dram_ready

    q = query_cycles(SMALL, 40, pq_enable=True)
    alone = command_stream_cycles([[q]])[0]
    # empty loads: two commands run as without DRAM; a third still waits for the first one's bank
    assert command_stream_cycles([[q]] * 2, ready=dram_ready([0, 0])) == command_stream_cycles([[q]] * 2)
    d = command_stream_cycles([[q]] * 3, ready=dram_ready([0, 0, 0]))
    assert d[2] == command_stream_cycles([[q]] * 3, ready=[0, 0, d[0] + 1])[2] > command_stream_cycles([[q]] * 3)[2]
    big = 1000
    d = command_stream_cycles([[q]] * 4, ready=dram_ready([big] * 4))
    e1 = big                                    # the first command's load is before cycle 0
    e2 = max(e1, d[0] + 1) + big
    e3 = max(e2, d[1] + 1) + big
    assert d == [alone, e1 + alone, e2 + alone, e3 + alone]
    # a load shorter than a command: the bank rule binds (load 3 waits for command 1's done)
    short = [5, 5, 5, 5]
    d = command_stream_cycles([[q, q]] * 4, ready=dram_ready(short))
    assert d[3] > d[1] and d == sorted(d)


def test_split_loads_pin_the_fetcher_rule():
    """Split K and V loads (spatten_model.SplitLoads): a command waits for its keys, its PxV for its
    values; command i's keys load once command i - 2 released its keys (the last score of its last
    query, PQ off), not once it is done."""
    from archgen.sim.spatten_model import SplitLoads, dram_ready

    q = query_cycles(SMALL, 40)
    # one command: its keys before cycle 0, its values from cycle 0 (DRAM-bound): the PxV takes the row
    # in the cycle the values are in
    big = 1000
    assert command_stream_cycles([[q]], fetcher=SplitLoads([big], [big])) == [big + 1 + q.pv_stage]
    # empty loads: two commands run as with the K/V on chip; the third's keys wait for the first's
    # release (accepted in cycle 1, last score qk cycles later), not for its done as whole loads do
    on_chip = command_stream_cycles([[q]] * 3)
    split = command_stream_cycles([[q]] * 3, fetcher=SplitLoads([0] * 3, [0] * 3))
    assert split[:2] == on_chip[:2]
    assert split[2] == command_stream_cycles([[q]] * 3, ready=[0, 0, q.qk + 1])[2]
    assert on_chip[2] <= split[2] < command_stream_cycles([[q]] * 3, ready=dram_ready([0, 0, 0]))[2]
    # a command without queries has no value load and releases its keys at its done
    d = command_stream_cycles([[q], [], [q]], fetcher=SplitLoads([0] * 3, [0, None, 0]))
    assert d == command_stream_cycles([[q], [], [q]], ready=[0, 0, q.qk + 1])


def test_pv_windows_pin_each_rule():
    """The PxV windows over a row's kept tokens (lanes as banks: token t in lane t mod L). Kept tokens 0, 3,
    4, 5, 13, 14, 15 of 16 with 4 lanes: lane counts 2, 2, 1, 2."""
    from archgen.sim.spatten_model import pv_windows

    keep = np.zeros(16, dtype=bool)
    keep[[0, 3, 4, 5, 13, 14, 15]] = True
    assert {r: pv_windows(keep, 4, r) for r in ("groups", "window", "greedy", "banked", "ideal")} == {
        "groups": 4, "window": 3, "greedy": 3, "banked": 2, "ideal": 2}
    # windows of 4 consecutive positions from the next kept one: [0, 4), [4, 8), [13, 17); greedy from 0
    # stops at 4 (lane 0 taken), from 4 at 13 (beyond 2 L)
    assert pv_windows(np.zeros(10, dtype=bool), 4, "banked") == 0
    assert pv_windows(np.zeros(10, dtype=bool), 4, "groups") == 3
    assert pv_windows(np.ones(9, dtype=bool), 4, "banked") == 3      # lane 0 holds tokens 0, 4, 8
    with pytest.raises(ValueError, match="rule must be one of"):
        pv_windows(keep, 4, "sorted")


def test_pv_over_kept_tokens_cycle_rule():
    """A pruned row's PxV stage over its kept tokens takes max(max(W, 1) + pv_pipe, G + 1) cycles (the
    token importance's own sweep over every group), but only when the PxV stage takes the row at least
    ceil(n / P) + 1 cycles after its engine's done (the keep-mask sweep); a row taken earlier sweeps all
    G groups."""
    lat = spatten_latencies(SMALL)
    q = query_cycles(SMALL, 64, topk_cycles=12, pv_windows=12)
    assert q.pv_kept == 12 + lat.pv_pipe and q.mask == 64 // SMALL.topk.parallelism + 1
    # at most G - pv_pipe + 1 windows, the token importance's sweep (G + 1) sets the pace
    assert query_cycles(SMALL, 64, topk_cycles=12, pv_windows=3).pv_kept == 16 + 1
    assert query_cycles(SMALL, 64, topk_cycles=12, pv_windows=0).pv_kept == 16 + 1
    assert query_cycles(SMALL, 4, topk_cycles=12, pv_windows=0).pv_kept == 1 + lat.pv_pipe
    assert query_cycles(SMALL, 64, pv_windows=9).pv_kept == 0                         # not pruned
    assert q.pv_stage_at(100, 100 + q.mask) == q.pv_kept + q.output
    assert q.pv_stage_at(100, 100 + q.mask - 1) == q.pv_stage
    # alone, the PxV stage takes the row in its engine's done cycle: every group
    kept: list = []
    assert command_stream_cycles([[q]], over_kept=kept) == command_stream_cycles([[replace(q, pv_kept=0)]])
    assert kept == [False]
    # a PxV-bound stream (values late): rows wait in the engines and later rows visit their kept tokens only
    from archgen.sim.spatten_model import SplitLoads
    kept = []
    done = command_stream_cycles([[q] * 6], fetcher=SplitLoads([64], [300]), over_kept=kept)
    full = command_stream_cycles([[replace(q, pv_kept=0)] * 6], fetcher=SplitLoads([64], [300]))
    assert kept[:2] == [True, True] and done[0] < full[0]


def test_core_cycles_count_the_banked_windows():
    from archgen.sim.spatten_model import pv_windows

    rng = np.random.default_rng(3)
    n, k = 50, 20
    keys, values = rng.integers(-200, 200, (n, SMALL.head_dim)), rng.integers(-200, 200, (n, SMALL.head_dim))
    run = core_cycles(SMALL, rng.integers(-200, 200, (3, SMALL.head_dim)), keys, values, shift=14, keep_k=k,
                      pq_enable=False)
    lat = spatten_latencies(SMALL)
    for r, qc in zip(run.results, run.queries):
        assert r.keep.sum() == k
        assert qc.pv_kept == max(max(1, pv_windows(r.keep, SMALL.lanes, "banked")) + lat.pv_pipe, -(-n // 4) + 1)


def test_stage_pace_over_kept_tokens_is_the_stream_period():
    """``stage_pace(q, over_kept=True)`` gives the PxV stage's pace over the kept tokens (``pv_kept +
    output``): in a PxV-bound stream the rows wait for the PxV stage long enough for their keep masks, so
    they go over their kept tokens and the stream runs at that pace, not at the full sweep's."""
    t = query_cycles(SMALL, 64, topk_cycles=12, pv_windows=12)
    q = replace(t, pv=40, pv_kept=30)        # a PxV array with a long pipeline (the systolic variant)
    assert stage_pace(q)["pv"] == 41 and stage_pace(q, over_kept=True)["pv"] == 31
    assert stage_pace(t, over_kept=True)["pv"] == t.pv_kept + t.output < stage_pace(t)["pv"]
    assert stage_pace(query_cycles(SMALL, 64), over_kept=True) == stage_pace(query_cycles(SMALL, 64))
    kept: list = []
    per_two = command_stream_cycles([[q] * 42], over_kept=kept)[0] - command_stream_cycles([[q] * 40])[0]
    assert all(kept[2:]) and per_two == 2 * max(stage_pace(q, over_kept=True).values()) == 62


def test_layer_loads_are_the_layers_split_loads():
    """``spatten_sim.layer_loads`` is the split the layer time uses, and ``_core_cycles(..., over_kept=)``
    reports per row, in row order, whether the stream swept it over its kept tokens (the pv column)."""
    from archgen.sim.spatten_algo import SpattenAlgoConfig, run_spatten_algo
    from archgen.sim.spatten_sim import _core_cycles, _exact_topk_fn, _windows_fn, layer_loads, simulate_spatten
    from archgen.workloads.trace import synthetic_trace

    tr = synthetic_trace(2, 2, 64, concentration=2.0, seed=1)
    cfg = SpattenAlgoConfig(token_prune=0.3, value_prune=0.3, progressive=False)
    algo = run_spatten_algo(tr, cfg, head_dim=SMALL.head_dim, topk_cycles=_exact_topk_fn(SMALL),
                            pv_windows=_windows_fn(SMALL))
    res = simulate_spatten(SMALL, trace=tr, algo_config=cfg, head_dim=SMALL.head_dim)
    over = []
    for s, r in zip(algo.layers, res):
        kept: list = []
        cycles, stages = _core_cycles(SMALL, s.row_keys, s.row_lsb, s.row_topk_cycles, s.command_rows,
                                      loads=layer_loads(SMALL, s), windows=s.row_pv_windows, over_kept=kept,
                                      dense_ok=s.command_dense_ok)
        assert cycles == r.cycles and len(kept) == s.rows
        rows = [query_cycles(SMALL, n, topk_cycles=None if t < 0 else t, pv_windows=None if t < 0 else w)
                for n, t, w in zip(s.row_keys.tolist(), s.row_topk_cycles.tolist(), s.row_pv_windows.tolist())]
        assert stages["pv"] == sum((c.pv_kept if k else c.pv) + c.output for c, k in zip(rows, kept))
        over += kept
    assert 0 < sum(over) < len(over)        # rows of both kinds (52 of 178 over their kept tokens)


def test_local_v_costs_a_refetching_stream_its_last_rows_topk():
    """The drain behind figure 3's BERT c = 1 token + head + PQ rows (docs/spatten.md, H93): in a stream of
    rows that refetch their LSBs (softmax-bound, the PxV stage idle when a row arrives) local-V changes
    only the last row, whose PxV take waits for its engine's done. With the top-k feed (H98) the engine
    takes the LSB pass (it cannot ask again) while it is swept and has its B = ceil(n / P) input beats
    by two cycles after the divider's take: ``topk - B - (div + decide)`` cycles later than unpruned, or
    one cycle earlier when the engine is done by the decision (the unpruned row's extra hold cycle).
    Without the feed (H93's measurement) the engine took the row at the divider's take:
    ``topk - (div + decide + 1)``."""
    for n, topk in ((384, 50), (384, 73), (211, 25), (211, 10), (211, 9), (211, 5)):
        u = query_cycles(FULL, n, lsb_pass=True, pq_enable=True)
        p = query_cycles(FULL, n, lsb_pass=True, pq_enable=True, topk_cycles=topk)
        for rows in (1, 6):
            late = command_stream_cycles([[p] * rows])[0] - command_stream_cycles([[u] * rows])[0]
            assert late == max(topk - p.topk_beats - (u.div + u.decide), -1), (n, topk, rows)
            late = (command_stream_cycles([[p] * rows], feed=False)[0]
                    - command_stream_cycles([[u] * rows], feed=False)[0])
            assert late == max(topk - (u.div + u.decide + 1), -1), (n, topk, rows)


def test_fed_row_is_done_topk_minus_b_after_its_last_exponential():
    """The top-k feed's latency (docs/spatten.md, "Cycle contract"), one pruned row alone with PQ off:
    its engine takes it the cycle after its sweep's go; its input beat of top-k row b is valid two cycles
    after the softmax wrote that row's last exponential (read address the cycle after the write, data the
    cycle after that); the engine is done ``topk - B`` cycles after its last beat. The last exponential
    is written in the divider's take cycle (``start``), so done = ``start + 2 + topk - B``, B - 1 cycles
    before the engine that takes the row at ``start + 1`` (before H98), on both specs (P = L and 2L)."""
    for spec, n, topk in ((SMALL, 40, 60), (SMALL, 9, 30), (FULL, 384, 80), (FULL, 100, 40)):
        p = query_cycles(spec, n, topk_cycles=topk)
        g, b = p.exp - p.exp_pipe, p.topk_beats
        assert b == -(-n // spec.topk.parallelism)
        go = 1 + p.qk                           # accepted the cycle after the handshake; go after the last score
        start = go + g + p.exp_pipe             # the last beat issued at go + G, written exp_pipe cycles later
        decision = start + p.div + p.decide
        first = min(p.tk_ratio, g) - 1          # the first top-k row's last softmax beat
        w0 = (go + 1 + first if first < g - 1 else go + g) + p.exp_pipe
        fed = []
        done = command_stream_cycles([[p]], fed=fed)[0]
        ready = start + 2 + topk - b
        assert fed == [(go + 1, max(go + 2, w0 + 2), start + 2)], (spec.name, n)
        assert done == max(ready, decision + 1) + 1 + p.pv_stage, (spec.name, n)
        unfed = command_stream_cycles([[p]], feed=False)[0]
        assert unfed == max(start + 1 + topk, decision + 1) + 1 + p.pv_stage
        assert unfed - done == min(b - 1, max(0, start + 1 + topk - decision - 1)), (spec.name, n)


def test_ranking_exponentials_keeps_a_top_k_of_the_probabilities():
    """The local-V top-k ranks the exponentials, not the probabilities (docs/spatten.md, semantics): the
    normalisation ``p = (e x recip) >> s`` is monotone (a floor of a product with one positive factor), so
    every kept token's probability is at least every pruned token's, and ties among probabilities that
    the floor creates (distinct exponentials, equal probabilities) are the only difference: the keep set
    is a top-k of the probabilities with those ties broken by the exponentials. Also the reason a top-k
    fed with the exponentials as the sweep writes them (H93's projection) ranks as the built one."""
    fmt = spatten_formats(FULL)
    rng = np.random.default_rng(93)
    merged = 0
    for _ in range(300):
        n = int(rng.integers(2, 300))
        tr = softmax_fixed(rng.integers(-(1 << 18), 1 << 18, n), int(rng.integers(0, 16)), fmt)
        k = int(rng.integers(1, n))
        keep = topk_keep_mask(tr.exps, k)
        assert keep.sum() == k
        if (~keep).any():
            assert tr.probs[keep].min() >= tr.probs[~keep].max()
            merged += int(tr.probs[keep].min() == tr.probs[~keep].max()
                          and tr.exps[keep].min() > tr.exps[~keep].max())
    assert merged > 0       # the floor does create such ties at the boundary (7 of these 300 rows)


def test_feed_never_delays_a_done_on_chip():
    """The top-k feed takes a row no later than the early take would and its engine is done no later
    (``done = max(cmd + topk, write of the last exponential + 2 + topk - B)`` against ``start + 1 + topk``,
    the last exponential written by ``start``), so with the K/V on chip no command of a random stream is
    done later with the feed (100 streams on both specs, PQ on and off, refetches, pruned and dense rows).
    With the split-load fetcher a done may still move later: an earlier done can flip the fetcher's pair
    order (docs/spatten.md, "Top-k feed"); ``units.topk.feed: false`` turns the feed off."""
    import random

    rng = random.Random(98)
    fed_rows = 0
    for _ in range(100):
        spec = rng.choice((SMALL, FULL))
        cmds = []
        for c in range(rng.randint(1, 5)):
            n, pq = rng.randint(1, spec.max_tokens), rng.random() < 0.5
            b = -(-n // spec.topk.parallelism)
            cmds.append([query_cycles(spec, n, lsb_pass=pq and rng.random() < 0.5, pq_enable=pq,
                                      topk_cycles=rng.randint(b + 5, 3 * b + 60) if rng.random() < 0.7 else None)
                         for _ in range(rng.randint(0 if c else 1, 5))])
        fed = []
        with_feed = command_stream_cycles(cmds, fed=fed)
        fed_rows += sum(f is not None for f in fed)
        assert all(a <= b for a, b in zip(with_feed, command_stream_cycles(cmds, feed=False))), cmds
    assert fed_rows > 50


def test_spec_without_the_feed_gives_rows_that_are_never_fed():
    """``units.topk.feed: false`` (the spec's hardware field): ``query_cycles`` carries it, and the stream
    is the one without the feed."""
    import yaml
    raw = yaml.safe_load(builtin_spec_path("spatten_small").read_text())
    raw["units"]["topk"]["feed"] = False
    off = load_spatten_spec(raw)
    p_on, p_off = (query_cycles(s, 40, topk_cycles=60) for s in (SMALL, off))
    assert p_on.feed and not p_off.feed
    fed = []
    assert command_stream_cycles([[p_off] * 3], fed=fed) == command_stream_cycles([[p_on] * 3], feed=False)
    assert fed == [None] * 3
    assert command_stream_cycles([[p_on] * 3])[0] < command_stream_cycles([[p_off] * 3])[0]


def _random_stream(rng, spec, dense_ok=True):
    """A random command stream (1-5 commands of 0-6 rows, PQ on or off, refetches, pruned and dense rows,
    top-k cycles from a few to well above the sweep, any PxV windows) for the never-slower property."""
    cmds = []
    for c in range(rng.randint(1, 5)):
        n, pq = rng.randint(1, spec.max_tokens), rng.random() < 0.5
        g = -(-n // spec.lanes)
        rows = []
        for _ in range(rng.randint(0 if c else 1, 6)):
            pruned = n > 1 and rng.random() < 0.7
            rows.append(query_cycles(spec, n, lsb_pass=pq and rng.random() < 0.5, pq_enable=pq,
                                     topk_cycles=rng.randint(3, 3 * g + 40) if pruned else None,
                                     pv_windows=rng.randint(0, g) if pruned else None, dense_ok=dense_ok))
        cmds.append(rows)
    return cmds


def _unpruned(cmds):
    return [[replace(q, topk=0, pv_kept=0, mask=0, fallback=False) for q in c] for c in cmds]


def test_fallback_makes_local_v_never_slower():
    """The fallback (``QueryCycles.fallback``, docs/spatten.md "Fallback"): the PxV stage takes a pruned row
    no later than it would take the row unpruned and sweeps it unpruned when its top-k is late, so every
    row's output and every command's done come no later than in the same stream without local-V (every
    row unpruned). 300 random streams on both specs, with the K/V on chip and with the split-load fetcher
    (the same loads); without the fallback most of them end later."""
    import random

    from archgen.sim.spatten_model import SplitLoads

    rng = random.Random(103)
    later_without, fell_rows = 0, 0
    for i in range(300):
        spec = (SMALL, FULL)[i % 2]
        cmds = _random_stream(rng, spec)
        k, v = [rng.randint(1, 900) for _ in cmds], [rng.randint(1, 900) for _ in cmds]
        for fetch in (lambda: None, lambda: SplitLoads(k, [x if c else None for x, c in zip(v, cmds)])):
            outs_u, outs, fell = [], [], []
            base = command_stream_cycles(_unpruned(cmds), fetcher=fetch(), outs=outs_u)
            got = command_stream_cycles(cmds, fetcher=fetch(), outs=outs, fell=fell)
            assert all(a <= b for a, b in zip(got, base)), (i, got, base)
            assert all(a <= b for a, b in zip(outs, outs_u)), (i, outs, outs_u)
            fell_rows += sum(fell)
            without = command_stream_cycles([[replace(q, fallback=False) for q in c] for c in cmds], fetcher=fetch())
            later_without += any(a > b for a, b in zip(without, base))
    assert fell_rows > 300 and later_without > 300, (fell_rows, later_without)


def test_fallback_takes_a_late_row_when_it_would_take_it_unpruned():
    """A query alone with a top-k far slower than its division: unpruned, the PxV stage takes it two cycles
    after its decision (the hold slot, the engine's cycle); with the fallback it takes the pruned row then,
    unpruned (``fell``), and the command is done in the same cycle as without local-V. A row whose engine
    is done by then stays pruned; without ``dense_ok`` (or with the spec's ``units.topk.fallback`` none) the
    row waits for its top-k."""
    import yaml

    n = 64
    slow = query_cycles(SMALL, n, topk_cycles=200, pv_windows=3, dense_ok=True)
    fast = query_cycles(SMALL, n, topk_cycles=2, pv_windows=3, dense_ok=True)
    plain = query_cycles(SMALL, n)
    fell = []
    assert command_stream_cycles([[slow]], fell=fell) == command_stream_cycles([[plain]])
    assert fell == [True]
    fell = []
    command_stream_cycles([[fast]], fell=fell)
    assert fell == [False]
    waits = command_stream_cycles([[replace(slow, fallback=False)]])[0]
    assert waits > command_stream_cycles([[plain]])[0]
    assert query_cycles(SMALL, n, topk_cycles=200, pv_windows=3).fallback is False      # no dense_ok
    raw = yaml.safe_load(builtin_spec_path("spatten_small").read_text())
    raw["units"]["topk"]["fallback"] = "none"
    off = load_spatten_spec(raw)
    assert query_cycles(off, n, topk_cycles=200, pv_windows=3, dense_ok=True).fallback is False


def test_refetch_preempts_a_later_query_while_its_groups_are_issued():
    """QxK preemption (H117, ``units.qk.preempt``): a short row refetching its LSBs decides while the next
    query (512 keys, accepted before the decision) still issues its groups; the refetch takes the QxK
    stage in the cycle after the decision and the query reruns from its first group right after the
    refetch's QxK. Without preemption the refetch waits for the query's QxK."""
    from archgen.sim.spatten_model import _Stream

    x = query_cycles(FULL, 16, lsb_pass=True, pq_enable=True)
    y = query_cycles(FULL, 512, pq_enable=True)
    assert x.preempt and y.preempt          # the spec's default
    for preempt in (True, False):
        st_ = _Stream()
        jx = st_.accept(replace(x, preempt=preempt), 1)
        jy = st_.accept(y, 2)
        decision = st_.first_decision_of(jx)
        a, g = jy[1], y.exp - y.exp_pipe
        assert a <= decision < a + g        # the query's groups are issued in cycle decision + 1
        st_.resolve(jx)
        if preempt:
            assert jy[1] == decision + 1 + x.qk and jy[2] == jy[1] + y.qk - 1 and jy[4] == 1
            assert st_.qk_free == jy[1] + y.qk
        else:
            assert jy[1] == a and jy[4] == 0 and st_.qk_free == a + y.qk + x.qk
        st_.resolve(jy)


def test_qk_preemption_on_random_streams():
    """Invariants of QxK preemption on random streams (both specs, PQ on and off, refetches, pruned and
    dense rows): without an LSB refetch nothing changes and no row is preempted; with the K/V on chip and
    every row of the same length no command is done later (measured: 4,000 streams, none); rows of
    different lengths can be done later (a long query preempted for a short row's refetch reruns its whole
    QxK), which is why it is a spec field (``units.qk.preempt``)."""
    import random

    rng = random.Random(117)
    preempted_rows = later_mixed = 0
    for it in range(400):
        spec, same = rng.choice((SMALL, FULL)), it % 2 == 0
        n0, cmds = rng.randint(1, spec.max_tokens), []
        for c in range(rng.randint(1, 6)):
            n, pq = (n0 if same else rng.randint(1, spec.max_tokens)), rng.random() < 0.7
            b = -(-n // spec.topk.parallelism)
            cmds.append([query_cycles(spec, n, lsb_pass=pq and rng.random() < 0.5, pq_enable=pq,
                                      topk_cycles=rng.randint(b + 5, 3 * b + 60) if rng.random() < 0.5 else None)
                         for _ in range(rng.randint(0 if c else 1, 4))])
        off = [[replace(q, preempt=False) for q in c] for c in cmds]
        pre: list = []
        on = command_stream_cycles(cmds, preempted=pre)
        without = command_stream_cycles(off)
        preempted_rows += sum(p > 0 for p in pre)
        if not any(q.passes == 2 for c in cmds for q in c):
            assert on == without and not any(pre)
        if same:
            assert all(a <= b for a, b in zip(on, without)), cmds
        else:
            later_mixed += any(a > b for a, b in zip(on, without))
    assert preempted_rows > 50 and later_mixed > 0, (preempted_rows, later_mixed)


def test_causal_value_fetch_waits_for_the_keep_mask():
    """The causal value fetch (SplitLoads ``after_mask``, sixteenth session): a one-query command pruned by
    local-V loads its kept value rows from the cycle after its keep mask is complete (``ceil(n / P) + 1``
    cycles after its engine's done: the core's ``v_fetch``), so its PxV always visits its kept tokens only;
    the load is deferred to right after the next pair, behind the keys of command i + 2."""
    from archgen.sim.spatten_model import SplitLoads

    q = query_cycles(SMALL, 64, topk_cycles=30, pv_windows=12)
    assert q.mask == q.topk_beats + 1
    ready = command_stream_cycles([[q]])[0] - 1 - q.pv_stage      # alone on chip: the PxV takes it at its done
    for v in (0, 50):
        kept: list = []
        f = SplitLoads([0], [v], after_mask=[True])
        assert command_stream_cycles([[q]], fetcher=f, over_kept=kept) == [
            ready + q.mask + 1 + v + 1 + q.pv_kept + q.output]
        assert kept == [True] and f.masks == {0: ready + q.mask}
        # the oracle fetch before: the kept rows loaded from cycle 0, before the top-k chose them
        oracle = command_stream_cycles([[q]], fetcher=SplitLoads([0], [v]))[0]
        assert oracle < ready + q.mask + 1 + v + 1 + q.pv_kept + q.output
    # three causal commands: each value load starts after its mask and after the keys two commands on
    kept = []
    f = SplitLoads([20] * 3, [15] * 3, after_mask=[True] * 3)
    command_stream_cycles([[q]] * 3, fetcher=f, over_kept=kept)
    assert kept == [True] * 3
    assert f.ends[("v", 0)] >= f.ends[("k", 2)] + 15 and f.ends[("v", 1)] >= f.ends[("v", 0)] + 15
    assert all(f.ends[("v", i)] >= f.masks[i] + 1 + 15 for i in range(3))
    # a mixed stream: the middle command loads whole (early) and keeps its place in its pair
    f = SplitLoads([20] * 3, [15, 40, 15], after_mask=[True, False, True])
    command_stream_cycles([[q]] * 3, fetcher=f)
    assert f.ends[("v", 0)] > f.ends[("v", 1)] >= 40 and f.ends[("v", 2)] >= f.masks[2] + 1 + 15
    # only a one-query command can wait for its keep mask; a command without values cannot
    with pytest.raises(ValueError, match="one-query"):
        command_stream_cycles([[q, q]], fetcher=SplitLoads([0], [5], after_mask=[True]))
    with pytest.raises(ValueError, match="without a value load"):
        SplitLoads([0, 0], [5, None], after_mask=[False, True])


def test_causal_value_fetch_on_random_streams():
    """200 random streams of one-query commands (pruned or not, PQ refetches, some without queries, some of
    several queries loading whole) with random load lengths: every causal command's values come in no
    earlier than ``mask + 1 + value_cycles`` and its row is swept over its kept tokens (and no stream leaves
    a deferred load unresolved)."""
    from archgen.sim.spatten_model import SplitLoads

    rng = np.random.default_rng(120)
    for _ in range(200):
        cmds, flags, kc, vc = [], [], [], []
        for _c in range(int(rng.integers(2, 9))):
            n = int(rng.integers(4, 65))
            nq = int(rng.choice([0, 1, 1, 1, 2]))
            pruned = bool(rng.integers(0, 2))
            rows = [query_cycles(SMALL, n, lsb_pass=bool(rng.integers(0, 2)), pq_enable=True,
                                 topk_cycles=int(rng.integers(5, 60)) if pruned else None,
                                 pv_windows=int(rng.integers(1, 5)) if pruned else None) for _q in range(nq)]
            cmds.append(rows)
            flags.append(nq == 1 and pruned)
            kc.append(int(rng.integers(0, 80)))
            vc.append(int(rng.integers(0, 80)) if nq else None)
        kept: list = []
        f = SplitLoads(kc, vc, after_mask=flags)
        command_stream_cycles(cmds, fetcher=f, over_kept=kept)
        row = 0
        for ci, rows in enumerate(cmds):
            if flags[ci]:
                assert f.ends[("v", ci)] >= f.masks[ci] + 1 + vc[ci]
                assert kept[row]
            row += len(rows)
