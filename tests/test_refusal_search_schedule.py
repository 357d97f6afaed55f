"""benchmarks/dataflow_refusal_search.py ``schedule`` mode: its message classes group one refusal across operations
and shapes (and keep different refusals apart), and its specs are ``schedule: map`` maps that skew a temporal loop
and pass the spec checks (the lead constant makes a positive FU coefficient cover its loop)."""
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import dataflow_refusal_search as search  # noqa: E402

from archgen.arch.errors import SpecError  # noqa: E402
from archgen.arch.spec import load_spec_data  # noqa: E402

GEMM = (["i", "j", "k"], ["C", "A", "B"], [])
CONV = (["k", "p", "q", "c", "r"], ["O", "I", "W"], [])


def test_one_refusal_of_two_operations_is_one_class():
    a = search.message_class("dataflows.d.schedule: the skewed loop(s) k run outside the tile, each FU on its own "
                             "tiles of them; use schedule: compressed (got 'map')", GEMM)
    b = search.message_class("dataflows.d.schedule: the skewed loop(s) c, r run outside the tile, each FU on its own "
                             "tiles of them; use schedule: compressed (got 'map')", CONV)
    assert a == b == ("dataflows.X.schedule: the skewed loop(s) L run outside the tile, each FU on its own tiles of "
                      "them; use schedule: compressed")


def test_numbers_coordinates_and_tile_loops_are_stripped():
    got = search.message_class("dataflows.d.schedule: the output O depends on the skewed loop r and is reduced along "
                               "array axis 1, which the skew moves t_r by s0 - 2", CONV)
    assert got == ("dataflows.X.schedule: the output T depends on the skewed loop L and is reduced along array axis "
                   "N, which the skew moves t_L by sN - N")


def test_different_refusals_stay_apart():
    outside = search.message_class("dataflows.d.schedule: the skewed loop(s) k run outside the tile", GEMM)
    tile = search.message_class("dataflows.d.schedule: the skew is on the tile loop t_k, which the output C depends on",
                                GEMM)
    assert outside != tile


def test_fused_names_become_x():
    got = search.message_class("fuse: dataflow 'm' and dataflow 'o' differ", (["i"], ["C"], ["m", "o"]))
    assert got == "fuse: dataflow 'X' and dataflow 'X' differ"


@pytest.mark.parametrize("seed", [0, 1])
def test_schedule_forms_skew_a_temporal_loop_and_pass_the_spec_checks(seed):
    rng = random.Random(seed)
    seen = 0
    for op in search.OPS:
        dims = search.dims_of(op)
        for shape in search.SHAPES:
            df = search.schedule_form(rng, dims, shape)
            if len(dims) <= len(shape):      # every loop on the array: no temporal loop to skew
                assert df is None
                continue
            assert df["schedule"] == "map" and search.skewed_loops(df)
            try:
                load_spec_data(search.base(op, shape, df))
            except SpecError as e:           # a lead without its constant would miss iterations
                pytest.fail(f"{op} {shape} {df}: {e}")
            seen += 1
    assert seen >= 20


def test_a_schedule_json_counts_a_spec_as_refused_until_the_checked_level_builds_it():
    """refusal_class_check.py: a ``schedule`` json lists built specs too; a spec the array builds and the memory
    system refuses is still refused for a --memory check, not for an array one; other modes' entries all count."""
    import refusal_class_check as check
    spec = ["gemm", [3], {"map": {"i": "3*t_i + s0", "j": "t_j", "k": "t_k - s0"}, "order": ["j", "k", "i"]}]
    outer = spec[:2] + [{**spec[2], "order": ["k", "j", "i"]}]
    entries = [spec + ["spec: ok | array: ok | memory: ok"],
               outer + ["spec: ok | array: ok | memory: dataflows.d.schedule: the skewed loop(s) k run outside"],
               spec[:2] + [{"spatial": {"i": 0}}, "dataflows.d.order: ..."]]
    keys = [check.json.dumps(e[:3], sort_keys=True) for e in entries]
    assert check.still_refused(entries, memory=False) == {keys[2]}
    assert check.still_refused(entries, memory=True) == {keys[1], keys[2]}


@pytest.mark.parametrize("fused", [0, 3])
def test_the_single_specs_of_a_seed_do_not_depend_on_what_builds(monkeypatch, fused):
    """A before/after comparison is spec by spec: the fused draws take their own generator, so the single specs are
    the same whether the code builds every map or none (the probes are replaced by fixed outcomes here)."""
    runs = []
    for outcome in ("ok", "refused"):
        singles, pairs = [], []

        def fixed(op, shape, df, fuse=None):
            (singles if fuse is None else pairs).append((op, shape, df))
            return outcome
        monkeypatch.setattr(search, "probe", lambda *a, **k: "ok")
        monkeypatch.setattr(search, "probe_schedule", fixed)
        search.schedule_search(random.Random(5), 4, fused, random.Random("fused 5"))
        runs.append(singles)
        assert len(pairs) == (28 * min(fused, 4) if outcome == "ok" else 0)
    assert runs[0] == runs[1] and len(runs[0]) == 4 * 28


def _verified(seed, count, fused, ops, shapes):
    """``schedule-verify``'s run of a part of the seed's draws: the counts per class and the wrong cases."""
    verify = search.ScheduleVerify(seed)
    search.schedule_search(random.Random(seed), count, fused, random.Random(f"fused {seed}"), verify, ops, shapes)
    return verify


def _assert_all_right(verify, classes):
    for cls in classes:
        count = verify.counts[cls]
        assert count["runs"] >= 1, (cls, dict(count))
        assert count["exact"] == count["rtl == model"] == count["dram equal"] == count["runs"], (cls, dict(count))
    assert not verify.wrong, verify.wrong


def test_verify_mode_runs_the_built_specs_of_a_few_draws():
    """Two GEMM maps on a 1-D array and one fused with a spatial form: every level that built them run in Amaranth,
    all exact, RTL cycles == model cycles, DRAM bytes == model."""
    verify = _verified(2, 2, 1, ["gemm"], [[3]])
    _assert_all_right(verify, ["array", "memory", "fused array", "fused memory"])


def test_verify_mode_counts_a_wrong_run(monkeypatch):
    """The check can fail: a level whose run is not exact (or whose cycles differ) is counted wrong and written out
    with its spec, bounds and operand seed."""
    from archgen.verif import schedule_verify
    bad = schedule_verify.LevelRun("d", True, 10, 11)
    monkeypatch.setitem(schedule_verify.LEVELS, "array", (lambda d, b, s: [bad], False))
    verify = search.ScheduleVerify(0)
    verify("gemm", [3], {"map": {"i": "3*t_i + s0", "j": "t_j - s0", "k": "t_k"}, "order": ["i", "k", "j"],
                         "schedule": "map"}, None, ["spec", "array"])
    assert verify.counts["array"]["runs"] == verify.counts["array"]["wrong"] == verify.counts["array"]["exact"] == 1
    assert verify.counts["array"]["rtl == model"] == 0
    cls, op, shape, df, bounds, seed, runs = verify.wrong[0]
    assert (cls, op, shape, set(bounds)) == ("array", "gemm", [3], {"i", "j", "k"}) and runs[0]["model_cycles"] == 11


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_verify_mode_on_random_draws_of_every_shape(seed):
    """Two draws per operation and array shape of a convolution, a depthwise one, a strided one and the GEMM, one
    of each fused with a spatial form: every built level exact, RTL == model, DRAM bytes == model."""
    verify = _verified(seed, 2, 1, ["gemm", "conv1", "dw", "conv2s"], search.SHAPES)
    _assert_all_right(verify, ["array", "memory"])
