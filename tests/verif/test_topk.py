"""Top-k engine RTL on Verilator: exact set and order vs numpy, and RTL cycles == model cycles.

Each build runs many requests back to back. The default suite uses two small builds (P = 1 and P = 16,
tiny FIFOs so that both the FIFO path and the buffer-rescan path run); P = 1..32 at max_n = 2048 is
behind --runslow.
"""
import pytest

from archgen.rtlgen.topk import sample_shape, topk_verilog
from archgen.verif.runner import lint_verilog
from archgen.verif.topk_check import (TopKRequest, check_topk, random_requests, run_topk_rtl,
                                      verify_topk)

SMALL = [  # (parallelism, max_n, fifo_depth, requests); P = 1 ranks 8 sample lanes from 8 rows (w = D)
    (1, 48, 8, 30),
    (16, 160, 2, 40),
]


def _edge_requests(max_n):
    n = min(max_n, 37)
    ramp = tuple(range(-(n // 2), n - n // 2))
    return [
        TopKRequest(0, 1, ramp, (True,) * n),                      # k = 0: nothing out
        TopKRequest(n + 3, 2, ramp, (True,) * n),                  # k > n: everything out
        TopKRequest(n, 3, ramp, (True,) * n),                      # k = n
        TopKRequest(5, 4, (0,) * n, (True,) * n),                  # all equal: first 5 by index
        TopKRequest(3, 5, (-7,) * n, (False, True) * (n // 2) + (True,) * (n % 2)),  # holes
        TopKRequest(1, 0, (-1,), (True,)),                         # n = 1, seed 0
        TopKRequest(4, 6, ramp[::-1], (True,) * n),                # descending
        # whole-size rows whose order follows their values (the sample capture must spread over each side)
        TopKRequest(max_n // 2, 7, _sorted_row(max_n), (True,) * max_n),          # ascending
        TopKRequest(max_n // 8 + 1, 8, _sorted_row(max_n)[::-1], (True,) * max_n),  # descending
    ]


def _sorted_row(n):
    """n distinct int16 values in ascending order."""
    return tuple(sorted((i * 40503) % 65536 - 32768 for i in range(n)))


def _assert_all_good(rows, *, cycles=True):
    bad = [r for r in rows if not r["correct"] or (cycles and not r["cycles_match"])]
    assert not bad, f"{len(bad)} of {len(rows)} requests wrong; first: {bad[0]}"


@pytest.mark.verilator
@pytest.mark.parametrize("p,max_n,depth,count", SMALL)
def test_back_to_back_requests_exact(p, max_n, depth, count):
    reqs = _edge_requests(max_n) + random_requests(count, max_n=max_n, width=16, seed=p, hole_prob=0.1)
    rtl = run_topk_rtl(reqs, parallelism=p, max_n=max_n, fifo_depth=depth)
    assert rtl["passed"] and rtl["stray_beats"] == 0, rtl.get("log_tail")
    rows = check_topk(reqs, rtl, parallelism=p, fifo_depth=depth)
    _assert_all_good(rows)
    # the regression must have exercised both working-set sources and the select path
    from archgen.sim.topk_model import simulate_topk
    sources = {r.source for q in reqs for r in simulate_topk(q.scores, q.k, parallelism=p, seed=q.seed,
                                                             fifo_depth=depth, valid=q.keep).rounds}
    assert sources == {"ingest", "fifo", "buffer"}


def _exact_through_every_round_source(p, max_n, depth, lanes, replay, **engine):
    """Edge and random requests on the engine (``engine``: rank_pipeline / sample_register): exact, RTL cycles ==
    model cycles, and the model's rounds take their sample from the ingest, the FIFOs and the buffer."""
    reqs = _edge_requests(max_n) + random_requests(30, max_n=max_n, width=16, seed=8, hole_prob=0.1)
    rtl = run_topk_rtl(reqs, parallelism=p, max_n=max_n, fifo_depth=depth, sample_lanes=lanes, replay=replay,
                       **engine)
    assert rtl["passed"], rtl.get("log_tail")
    _assert_all_good(check_topk(reqs, rtl, parallelism=p, fifo_depth=depth, replay=replay, sample_lanes=lanes,
                                **engine))
    from archgen.sim.topk_model import simulate_topk
    runs = [simulate_topk(q.scores, q.k, parallelism=p, fifo_depth=depth, valid=q.keep, sample_lanes=lanes,
                          **engine) for q in reqs]
    assert {r.source for run in runs for r in run.rounds} == {"ingest", "fifo", "buffer"}
    return reqs


@pytest.mark.verilator
@pytest.mark.parametrize("p,max_n,depth,lanes,pipe", [(4, 64, 4, 2, True), (2, 40, 8, None, False)])
def test_sample_width_and_rank_pipeline_exact(p, max_n, depth, lanes, pipe):
    """S = 2 sample lanes at P = 4 (P > S: the capture's slots are single lanes, as at P = 32 by default,
    and a W of 3 elements is a *late* scanned round of the rank pipeline, its sample being the row flushed in
    Decide; the default here is 16 from 4 rows), and the engine without the rank pipeline (compare and
    count in one cycle) at P = 2 (w = 8, so many requests end their ingest on a sample beat): exact,
    RTL cycles == model cycles, through FIFO rounds and buffer rescans."""
    _exact_through_every_round_source(p, max_n, depth, lanes, False, rank_pipeline=pipe)
    with pytest.raises(ValueError, match="sample_lanes"):
        topk_verilog(p, max_n, sample_lanes=6)


@pytest.mark.verilator
@pytest.mark.parametrize("p,max_n,depth,lanes,replay", [
    (4, 64, 4, 2, False),
    pytest.param(2, 40, 8, None, True, marks=pytest.mark.slow),
    pytest.param(16, 256, 4, None, False, marks=pytest.mark.slow)])
def test_sample_register_exact(p, max_n, depth, lanes, replay):
    """The engine with its sample registered in local copies before the compare and its one-hot pick registered
    (``sample_register``): every round two cycles later, the ingest two more re-read beats (three cycles' wait
    when its last beat is a sample beat, two when it is the next, one when it is the one after), and the captures
    one register stage behind the packers, which flush in PREDECIDE (one more cycle before every decide but the
    exact finish's). S = 2 at P = 4 (late rounds: P > S); P = 2 with w = 8 (many requests end their ingest on a
    sample beat or the one after) with the replay; P = 16 (S = 32, two rows): exact, RTL cycles == model cycles,
    through FIFO rounds and buffer rescans."""
    reqs = _exact_through_every_round_source(p, max_n, depth, lanes, replay, sample_register=True)
    w = sample_shape(p, depth, lanes)[0]
    rows_b = {-(-q.n // p) for q in reqs}
    assert any(b <= w for b in rows_b) and {w + 1, w + 2} <= rows_b      # every re-read wait
    with pytest.raises(ValueError, match="sample_register"):
        topk_verilog(p, max_n, rank_pipeline=False, sample_register=True)


@pytest.mark.slow   # default-suite time (CI <= 20 min); run with --runslow
@pytest.mark.verilator
def test_without_replay_threshold_selects_exactly():
    """The engine the SpAtten core builds (no replay): ``done`` right after the decision, and the
    threshold outputs select the exact set (consumer keeps x > kth and the first keep_equal ties);
    RTL cycles == model cycles."""
    p, max_n, depth, count = SMALL[1]
    reqs = _edge_requests(max_n) + random_requests(count, max_n=max_n, width=16, seed=21, hole_prob=0.1)
    rtl = run_topk_rtl(reqs, parallelism=p, max_n=max_n, fifo_depth=depth, replay=False)
    assert rtl["passed"] and rtl["stray_beats"] == 0, rtl.get("log_tail")
    rows = check_topk(reqs, rtl, parallelism=p, fifo_depth=depth, replay=False)
    _assert_all_good(rows)
    from archgen.sim.topk_model import simulate_topk
    with_replay = [simulate_topk(q.scores, q.k, parallelism=p, seed=q.seed, fifo_depth=depth, valid=q.keep).cycles
                   for q in reqs]
    assert all(r["rtl_cycles"] < c for r, c in zip(rows, with_replay) if r["k"] > 0)


@pytest.mark.verilator
def test_backpressure_and_input_bubbles_keep_results_exact():
    p, max_n, depth, _ = SMALL[1]
    reqs = random_requests(20, max_n=max_n, width=16, seed=11, hole_prob=0.2)
    rtl = run_topk_rtl(reqs, parallelism=p, max_n=max_n, fifo_depth=depth, stall_prob=0.4,
                       idle_prob=0.3, seed=5)
    rows = check_topk(reqs, rtl, parallelism=p, fifo_depth=depth)
    _assert_all_good(rows, cycles=False)
    # stalls only ever add cycles to the back-to-back contract
    assert all(r["rtl_cycles"] >= r["model_cycles"] for r in rows)
    assert any(r["rtl_cycles"] > r["model_cycles"] for r in rows)


@pytest.mark.verilator
@pytest.mark.parametrize("p", [1, 8])
def test_lint_warnings_pinned(p):
    assert lint_verilog(topk_verilog(p, 100, fifo_depth=4), "topk") == []


def test_rtl_and_model_share_the_pivot_constants():
    from archgen.rtlgen import topk as rtl
    from archgen.sim import topk_model as model
    assert (rtl.SAMPLE_LANES, rtl.BRACKET_ABOVE) == (model.SAMPLE_LANES, model.BRACKET_ABOVE)
    assert all(rtl.bracket_below(s) == model.bracket_below(s) for s in range(1, 33))
    assert all(rtl.sample_shape(p, d) == model.sample_shape(p, d) for p in (1, 2, 4, 8, 16, 32, 64) for d in range(1, 70))


def test_wanted_rank_helpers_without_multipliers_or_adder_trees():
    """The wanted-rank stages' helpers: the constant multiples as shifts and adds (equal to j * x), and the
    count of a thermometer code in two LUT levels (equal to the number of set bits, on every code)."""
    from amaranth import Module, Signal
    from amaranth.sim import Simulator

    from archgen.rtlgen.topk import _const_mul, _thermometer_count
    assert all(_const_mul(x, c) == c * x for c in range(1, 64) for x in (0, 1, 5, 1023, 2048))
    for n in (1, 2, 3, 15, 31):
        m = Module()
        bits, out = Signal(n), Signal(8)
        m.d.comb += out.eq(_thermometer_count(bits, n))
        seen = []

        async def bench(ctx, bits=bits, out=out, n=n, seen=seen):
            for count in range(n + 1):
                ctx.set(bits, (1 << count) - 1)
                seen.append((count, ctx.get(out)))

        sim = Simulator(m)
        sim.add_testbench(bench)
        sim.run()
        assert seen == [(c, c) for c in range(n + 1)]


def test_verilog_is_deterministic():
    assert topk_verilog(4, 64, fifo_depth=4) == topk_verilog(4, 64, fifo_depth=4)


@pytest.mark.verilator
@pytest.mark.slow
@pytest.mark.parametrize("p", [1, 2, 4, 8, 16, 32])
def test_full_size_regression(p):
    reqs = _edge_requests(2048) + random_requests(24, max_n=2048, width=16, seed=100 + p, hole_prob=0.05)
    rtl = run_topk_rtl(reqs, parallelism=p, max_n=2048, fifo_depth=64)
    assert rtl["passed"] and rtl["stray_beats"] == 0, rtl.get("log_tail")
    _assert_all_good(check_topk(reqs, rtl, parallelism=p, fifo_depth=64))
    rtl = run_topk_rtl(reqs, parallelism=p, max_n=2048, fifo_depth=64, replay=False)
    assert rtl["passed"] and rtl["stray_beats"] == 0, rtl.get("log_tail")
    _assert_all_good(check_topk(reqs, rtl, parallelism=p, fifo_depth=64, replay=False))


@pytest.mark.verilator
@pytest.mark.slow
def test_verify_topk_cli_entry():
    res = verify_topk(1024, 512, 16, seed=3)
    assert res["correct"] and res["cycles_match"] and res["rtl_cycles"] == res["model_cycles"]
