"""benchmarks/dataflow_refusal_search.py ``schedule-verify``'s options of H160: ``--dram-psums`` (random commands whose
split reduction loop sits outside an output loop's blocks, so partial sums go through DRAM), ``--tiny`` (every
bound 1 .. 2) and ``--plain`` (dataflows without ``schedule: map``). Each draws what it says, and the default draws
of a seed stay those of earlier sessions."""
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import dataflow_refusal_search as search  # noqa: E402

from archgen.arch.errors import SpecError  # noqa: E402
from archgen.arch.spec import load_spec_data  # noqa: E402
from archgen.dataflow.compile import compile_array  # noqa: E402
from archgen.mappings.memory_tiling import dram_bytes  # noqa: E402
from archgen.verif.schedule_verify import random_command  # noqa: E402

GEMM_MAP = {"map": {"i": "3*t_i + s0", "j": "t_j - s0", "k": "t_k"}, "order": ["i", "k", "j"], "schedule": "map"}
BOUNDS = {"i": 5, "j": 4, "k": 6}


def _gemm():
    return compile_array(load_spec_data({**search.base("gemm", [3], GEMM_MAP),
                                         "memory": {"partial_sums_through_dram": True}}))


def _draw(c, bounds, seed, **options):
    try:
        return random_command(c, bounds, random.Random(seed), **options)
    except SpecError:
        return None


def test_default_draws_are_those_of_earlier_sessions():
    """The commands main 436f0e3's ``random_command`` drew from seeds 0 .. 7 (GEMM map on [3]; ``j`` is the inner
    loop), drawn again: the keyword's default leaves every existing seed's runs as they were."""
    before = ["j:4 > k:4 > i:2 per block (array tiles; j: elements per chunk)", "i:1 > k:5 array tiles per block",
              "k:1 > j:2 > i:1 per block (array tiles; j: elements per chunk)", "k:5 > i:1 array tiles per block",
              "j:4 > i:1 > k:3 per block (array tiles; j: elements per chunk)", "i:2 > k:6 array tiles per block",
              "i:1 > k:4 array tiles per block", "i:2 > k:2 array tiles per block"]
    c = _gemm()
    assert [_draw(c, BOUNDS, s).describe() for s in range(8)] == before


def test_dram_psums_commands_send_partial_sums_through_dram():
    """40 draws with ``dram_psums``: every one a checked command or refused at these bounds (a chunk of the streamed
    ``j`` too short for the output's read-back: a SpecError, not a wrong run), and at least 60 % of the commands send the output's partial sums to DRAM and back (``C.read`` in the closed form), where the default
    draws of the same seeds do so far less often."""
    c = _gemm()
    spills = {}
    for option in (False, True):
        cmds = [cmd for cmd in (_draw(c, BOUNDS, s, dram_psums=option) for s in range(40)) if cmd is not None]
        assert len(cmds) >= 20
        assert all(sorted(cmd.order) == sorted(dict(cmd.tile)) for cmd in cmds)
        spills[option] = sum("C.read" in dram_bytes(cmd) for cmd in cmds) / len(cmds)
    assert spills[True] >= 0.6 and spills[True] > spills[False] + 0.2, spills


def test_dram_psums_draws_by_default_where_no_output_loop_can_be_cut():
    """At bounds where every output loop is one block (``i`` fills the 3 FUs once, ``j`` is 1), no command sends
    partial sums through DRAM: the draw is the default one, seed for seed."""
    c, bounds = _gemm(), {"i": 3, "j": 1, "k": 6}
    for s in range(10):
        a, b = _draw(c, bounds, s), _draw(c, bounds, s, dram_psums=True)
        assert (a and a.describe()) == (b and b.describe())
        assert b is None or "C.read" not in dram_bytes(b)


def _runs(monkeypatch, ops, shapes, **options):
    """The (class, shape, bounds) of every run ``ScheduleVerify`` makes on 3 draws per operation and shape (every
    level reported built; the runs recorded, not made)."""
    calls = []
    monkeypatch.setattr(search.ScheduleVerify, "run", lambda self, cls, design, bounds, seed, spec:
                        calls.append((cls, tuple(spec[1]), bounds)))

    def built(op, shape, df, fuse=None, built=None):
        built.extend(["spec", "array", "memory"])
        return "ok"
    monkeypatch.setattr(search, "probe_schedule", built)
    verify = search.ScheduleVerify(3, **options)
    search.schedule_search(random.Random(3), 3, 0, random.Random("fused 3"), verify, ops, shapes)
    return calls


def test_dram_psums_leaves_the_default_runs_and_names_its_class(monkeypatch):
    plain = _runs(monkeypatch, ["gemm"], [[3]])
    psums = _runs(monkeypatch, ["gemm"], [[3]], dram_psums=True)
    assert [c for c in psums if c[0] in ("array", "memory")] == plain and len(plain) == 6
    assert [c[0] for c in psums if c not in plain] == ["memory (blocks, dram psums)"] * 3


def test_tiny_draws_every_bound_1_or_2_on_every_shape(monkeypatch):
    """``--tiny`` with ``--blocks`` on 1-D, 1xN, Nx1 and 3-D arrays: specs drawn on each shape (the 3-D ones for the
    five-loop convolution only: a schedule map needs a temporal loop), every bound of every run 1 or 2."""
    shapes = [[1, 3], [3, 1], [2, 1, 2], [3, 2], [4]]
    calls = _runs(monkeypatch, ["gemm", "conv2"], shapes, blocks=True, tiny=True)
    assert {c[1] for c in calls} == {tuple(s) for s in shapes}
    assert {c[0] for c in calls} == {"array", "memory", "memory (blocks)"}
    assert all(n in (1, 2) for _cls, _shape, bounds in calls for n in bounds.values())
    assert any(n == 1 for _c, _s, b in calls for n in b.values()) and any(n == 2 for _c, _s, b in calls
                                                                           for n in b.values())


def test_plain_form_draws_every_kind_without_a_schedule():
    rng, kinds = random.Random(0), set()
    for _ in range(60):
        df = search.plain_form(rng, ["i", "j", "k"], [2, 2])
        kinds.add(next(k for k in ("spatial", "map", "stt") if k in df))
        assert "schedule" not in df
    assert kinds == {"spatial", "map", "stt"}
    assert search.plain_form(rng, ["i", "k"], [2, 2, 2]) is None     # more array axes than loops


def test_a_skewed_stt_map_is_counted_built_not_run(monkeypatch):
    """A skewed stt map (mixed spatial rows) on its own: its array and layer run on Verilator only, so the Amaranth
    sweep counts them as built and runs nothing."""
    df = {"stt": [[-1, 0, 1], [0, 0, 1], [1, 1, 0]], "order": ["i", "j", "k"]}
    assert load_spec_data(search.base("gemm", [2, 2], df)).dataflows[0].skewed
    calls = []
    monkeypatch.setattr(search.ScheduleVerify, "run", lambda self, *a: calls.append(a))
    verify = search.ScheduleVerify(0, blocks=True)
    verify("gemm", [2, 2], df, None, ["spec", "array", "memory"])
    assert calls == [] and dict(verify.skipped) == {"array (skewed stt)": 1, "memory (skewed stt)": 1}


@pytest.mark.slow
def test_plain_and_dram_psums_runs_are_right():
    """Plain dataflows of GEMM and a convolution on [3] and 2x2, two draws each, through the array, the memory
    system and random commands with partial sums through DRAM: every run exact, RTL == model, DRAM bytes == model,
    and partial sums through DRAM met."""
    verify = search.ScheduleVerify(160, dram_psums=True)
    search.schedule_search(random.Random(160), 2, 0, random.Random("fused 160"), verify, ["gemm", "conv1"],
                           [[3], [2, 2]], search.plain_form)
    for cls in ("array", "memory", "memory (blocks, dram psums)"):
        count = verify.counts[cls]
        assert count["runs"] >= 3, (cls, dict(count))
        assert count["exact"] == count["rtl == model"] == count["dram equal"] == count["runs"], (cls, dict(count))
    assert verify.counts["memory (blocks, dram psums)"]["psums via DRAM"] >= 2
    assert not verify.wrong, verify.wrong
