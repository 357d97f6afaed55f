"""benchmarks/dataflow_refusal_search.py ``schedule-verify``'s options (H158): ``--compressed`` (each map's default
build too), ``--blocks`` (a random multi-block command with partial sums through DRAM granted) and ``--shapes``. The
options draw from a generator of their own, so the default runs of a seed stay the same; the random commands are
valid commands that cover several blocks and partial sums through DRAM."""
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


def _calls(monkeypatch, **options):
    """The (class, bounds, operand seed) of every run ``ScheduleVerify`` makes on 3 draws of GEMM on [3] (every
    level reported built; the runs recorded, not made)."""
    calls = []
    monkeypatch.setattr(search.ScheduleVerify, "run",
                        lambda self, cls, design, bounds, seed, spec: calls.append((cls, bounds, seed)))

    def built(op, shape, df, fuse=None, built=None):
        built.extend(["spec", "array", "memory"])
        return "ok"
    monkeypatch.setattr(search, "probe_schedule", built)
    verify = search.ScheduleVerify(3, **options)
    search.schedule_search(random.Random(3), 3, 0, random.Random("fused 3"), verify, ["gemm"], [[3]])
    return calls


def test_the_options_leave_the_default_runs_of_a_seed_as_they_were(monkeypatch):
    plain = _calls(monkeypatch)
    wide = _calls(monkeypatch, blocks=True, compressed=True)
    assert [c for c in wide if c[0] in ("array", "memory")] == plain and len(plain) == 6
    assert sorted({c[0] for c in wide}) == ["array", "compressed array", "compressed memory",
                                            "compressed memory (blocks)", "memory", "memory (blocks)"]
    assert len(wide) == 18
    big = [b for name, b, _s in wide if name == "memory (blocks)"]
    assert all(2 <= n <= 6 for b in big for n in b.values())


def test_random_commands_cover_several_blocks_and_partial_sums_through_dram():
    """Random commands of a GEMM map on [3] with partial sums through DRAM granted: every one a checked command
    (make_command: tiles within the trips, the order a permutation of the tiled loops) or a SpecError (a block the
    memory system refuses at these bounds); among 40, commands in several blocks and commands whose output's partial
    sums go to DRAM and back."""
    design = load_spec_data({**search.base("gemm", [3], GEMM_MAP), "memory": {"partial_sums_through_dram": True}})
    c = compile_array(design)
    rng, blocks, spills = random.Random(0), 0, 0
    for _ in range(40):
        try:
            cmd = random_command(c, {"i": 5, "j": 4, "k": 6}, rng)
        except SpecError:
            continue
        assert sorted(cmd.order) == sorted(dict(cmd.tile))
        blocks += max(cmd.n_blocks().values()) > 1
        spills += "C.read" in dram_bytes(cmd)
    assert blocks >= 20 and spills >= 3, (blocks, spills)


@pytest.mark.slow
def test_widened_runs_on_arrays_with_an_axis_of_one_fu():
    """GEMM and a convolution on 1x3 and 3x1, two draws each: the map's own schedule, its compressed build and
    random multi-block commands of both, every run exact, RTL == model, DRAM bytes == model."""
    verify = search.ScheduleVerify(5, blocks=True, compressed=True)
    search.schedule_search(random.Random(5), 2, 0, random.Random("fused 5"), verify, ["gemm", "conv1"],
                           [[1, 3], [3, 1]])
    for cls in ("array", "compressed array", "compressed memory", "compressed memory (blocks)"):
        count = verify.counts[cls]
        assert count["runs"] >= 1, (cls, dict(count))
        assert count["exact"] == count["rtl == model"] == count["dram equal"] == count["runs"], (cls, dict(count))
    assert not verify.wrong, verify.wrong
