import numpy as np
import pytest

from archgen.arch.errors import SpecError
from archgen.sim.spatten_algo import SpattenAlgoConfig, prune_schedule, run_spatten_algo
from archgen.workloads.trace import AttentionTrace, TraceHeader, synthetic_trace

NO_PQ = dict(progressive=False)


def _trace(probs, head_imp=None, **hdr):
    probs = np.asarray(probs, dtype=np.float32)
    L, H, Q, K = probs.shape
    head_imp = np.ones((L, H), np.float32) if head_imp is None else np.asarray(head_imp, np.float32)
    return AttentionTrace(TraceHeader("t", L, H, K, Q, dtype="float32", **hdr), probs, head_imp)


def test_schedule_follows_the_paper_rule():
    r = prune_schedule(12, 0.3, 0.15)
    assert list(r[:2]) == [0, 0]                      # round(0.15 * 12) = 2 unpruned layers
    assert r[2] == pytest.approx(0.15) and r[-1] == pytest.approx(0.45)
    assert r[2] + r[-1] == pytest.approx(2 * 0.3)
    assert r[2:].mean() == pytest.approx(0.3)
    assert np.all(np.diff(r[2:]) > 0)
    assert list(prune_schedule(12, 0.0, 0.15)) == [0] * 12


@pytest.mark.parametrize("kw, path", [
    (dict(threshold=1.5), "algo.threshold"), (dict(threshold=-0.1), "algo.threshold"),
    (dict(token_prune=1.0), "algo.token_prune"), (dict(value_prune=-0.2), "algo.value_prune"),
    (dict(head_prune=0.2, head_prune_start=0.9), "algo.head_prune_start"),
    (dict(token_prune=0.7), "algo.token_prune"), (dict(msb_bits=0), "algo.msb_bits"),
])
def test_config_validation(kw, path):
    with pytest.raises(SpecError) as e:
        SpattenAlgoConfig(**kw)
    assert path in str(e.value)


def test_no_pruning_equals_dense():
    tr = synthetic_trace(3, 4, 32, seed=0)
    r = run_spatten_algo(tr, SpattenAlgoConfig(**NO_PQ), head_dim=16)
    assert r.dram_bytes == r.dense_dram_bytes and r.macs == r.dense_macs
    s = r.layers[0]
    assert s.key_msb_bytes == 4 * 32 * 16 * 12 // 8          # heads x tokens x D x 12 bit
    assert s.qk_macs == 4 * 32 * 32 * 16 and s.rows == 4 * 32


def test_token_pruning_keeps_the_most_attended_tokens():
    # 2 layers, 1 head, 4 tokens; every query attends mostly to token 2, then 0; layer 1 prunes half
    row = [0.3, 0.1, 0.5, 0.1]
    probs = np.tile(np.array(row, np.float32), (2, 1, 4, 1))
    cfg = SpattenAlgoConfig(token_prune=0.5, token_prune_start=0.5, token_unpruned_frac=0.5, **NO_PQ)
    r = run_spatten_algo(_trace(probs), cfg, head_dim=8)
    l0, l1 = r.layers
    assert (l0.tokens_kept, l1.tokens_kept) == (4, 2)
    assert l1.rows == 2                                    # pruned tokens' queries leave the sentence too
    assert l1.key_msb_bytes == 2 * 8 * 12 // 8
    assert l1.qk_macs == 2 * 2 * 8
    assert l1.dense_qk_macs == 4 * 4 * 8


def test_cascade_never_grows_and_heads_follow_importance():
    tr = synthetic_trace(8, 6, 64, seed=3)
    imp = tr.head_importance.copy()
    imp[:] = np.arange(6)[None, :] + 1.0                  # head 5 most important, head 0 least
    tr = AttentionTrace(tr.header, tr.probs, imp)
    cfg = SpattenAlgoConfig(token_prune=0.4, head_prune=0.3, **NO_PQ)
    r = run_spatten_algo(tr, cfg, head_dim=16)
    kept = [s.tokens_kept for s in r.layers]
    heads = [s.heads_kept for s in r.layers]
    assert kept == sorted(kept, reverse=True) and kept[-1] < 64
    assert heads == sorted(heads, reverse=True) and heads[-1] < 6
    assert r.dram_reduction > 1 and r.compute_reduction > 1
    for s, p in zip(r.layers, r.token_schedule):
        assert s.tokens_kept <= round(64 * (1 - p))


def test_local_value_pruning_decode():
    tr = synthetic_trace(1, 2, 40, queries=1, seed=0, dtype="float32")
    r = run_spatten_algo(tr, SpattenAlgoConfig(value_prune=0.25, **NO_PQ), head_dim=8, fallback="none")
    s = r.layers[0]
    assert s.value_msb_bytes == 2 * 30 * 8 * 12 // 8      # ceil(40 * 0.75) = 30 V rows per head
    assert s.key_msb_bytes == 2 * 40 * 8 * 12 // 8
    assert s.av_macs == 2 * 30 * 8
    assert s.command_dense_ok.tolist() == [False, False]
    # units.topk.fallback: tail with fallback_tail 1: the layer's last command (head 1) gets dense_ok and loads
    # all 40 of its value rows, so a late top-k may sweep its row unpruned; head 0 loads its 30 kept rows
    t = run_spatten_algo(tr, SpattenAlgoConfig(value_prune=0.25, **NO_PQ), head_dim=8, fallback_tail=1).layers[0]
    assert t.command_dense_ok.tolist() == [False, True]
    assert t.value_msb_bytes == (30 + 40) * 8 * 12 // 8 and (t.key_msb_bytes, t.av_macs) == (s.key_msb_bytes, s.av_macs)
    # the default (tail, fallback_tail 2 = the K/V banks, H120): the last two commands, here both heads
    d = run_spatten_algo(tr, SpattenAlgoConfig(value_prune=0.25, **NO_PQ), head_dim=8).layers[0]
    assert d.command_dense_ok.tolist() == [True, True]
    assert d.value_msb_bytes == (40 + 40) * 8 * 12 // 8 and (d.key_msb_bytes, d.av_macs) == (s.key_msb_bytes, s.av_macs)
    # all (H103): a one-query command only when its kept rows are all its keys (none here)
    a = run_spatten_algo(tr, SpattenAlgoConfig(value_prune=0.25, **NO_PQ), head_dim=8, fallback="all").layers[0]
    assert a.command_dense_ok.tolist() == [False, False] and a.value_msb_bytes == s.value_msb_bytes
    with pytest.raises(SpecError, match=r"units.topk.fallback: must be one of tail, all, none \(got 'some'\)"):
        run_spatten_algo(tr, SpattenAlgoConfig(value_prune=0.25, **NO_PQ), head_dim=8, fallback="some")


def test_progressive_quantization_uses_renormalised_rows():
    # uniform rows over 8 keys: max 0.125 < 0.2 -> LSBs; after pruning to 4 keys: max 0.25 -> no LSBs
    probs = np.full((2, 1, 8, 8), 1 / 8, np.float32)
    base = dict(threshold=0.2, msb_bits=8, lsb_bits=4)
    dense = run_spatten_algo(_trace(probs), SpattenAlgoConfig(**base), head_dim=4)
    assert dense.layers[0].lsb_row_fraction == 1.0
    assert dense.layers[0].key_lsb_bytes == 8 * 4 * 4 // 8
    assert dense.layers[0].qk_macs == 2 * 8 * 8 * 4       # every row recomputes once
    pruned = run_spatten_algo(_trace(probs), SpattenAlgoConfig(token_prune=0.5, token_prune_start=0.5,
                                                               token_unpruned_frac=0.5, **base), head_dim=4)
    assert pruned.layers[0].lsb_row_fraction == 1.0 and pruned.layers[1].lsb_row_fraction == 0.0
    assert pruned.layers[1].key_lsb_bytes == 0
    assert pruned.layers[1].key_msb_bytes == 4 * 4 * 8 // 8


def test_threshold_zero_never_fetches_lsbs():
    tr = synthetic_trace(2, 2, 16, seed=1)
    r = run_spatten_algo(tr, SpattenAlgoConfig(threshold=0.0), head_dim=8)
    assert r.lsb_row_fraction == 0 and all(s.key_lsb_bytes == 0 for s in r.layers)
    # K and V at 8 of 12 bits: 2/3 of the dense K/V traffic
    s = r.layers[0]
    assert s.key_msb_bytes * 3 == s.dense_key_bytes * 2


def test_decode_keeps_the_current_token():
    tr = synthetic_trace(4, 2, 24, queries=4, seed=2, dtype="float32")
    r = run_spatten_algo(tr, SpattenAlgoConfig(token_prune=0.45, token_unpruned_frac=0.0, **NO_PQ), head_dim=8)
    assert all(s.rows == 2 * 4 for s in r.layers)          # one row per head and step
    assert r.layers[-1].tokens_kept < r.layers[-1].tokens
    assert r.dram_reduction > 1


def test_topk_cycle_hook_sees_each_row():
    tr = synthetic_trace(1, 2, 10, queries=1, seed=0, dtype="float32")
    seen = []

    def hook(p, k):
        seen.append((p.size, k, round(float(p.sum()), 5)))
        return 7
    r = run_spatten_algo(tr, SpattenAlgoConfig(value_prune=0.5, **NO_PQ), head_dim=4, topk_cycles=hook)
    assert seen == [(10, 5, 1.0), (10, 5, 1.0)]
    assert list(r.layers[0].row_topk_cycles) == [7, 7]
