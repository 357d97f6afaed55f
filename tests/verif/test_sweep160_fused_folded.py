"""Found by ``schedule-verify 14 2 1 4 --plain --dram-psums`` (H160): a folded map fused beside a spatial form, its
layers through the memory system. The sweep's ``run_fused_memory`` ran every fused dataflow on the one fused layer
core, but that core runs the tiled dataflows only (``tiled_fused_names``): the folded map has its own build around
the fused array, as ``archgen verify`` runs it. Its command selected a dataflow no part of the core answers, so the
simulation hung with no byte moved (or, at other bounds, its command did not fit the core's fields). Now the sweep
runs each dataflow where ``archgen verify`` does, and ``verify_fused_program`` refuses such a layer by field."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import dataflow_refusal_search as search  # noqa: E402

from archgen.arch.errors import SpecError  # noqa: E402
from archgen.arch.spec import load_spec_data  # noqa: E402
from archgen.verif.fused_program_check import verify_fused_program  # noqa: E402
from archgen.verif.schedule_verify import run_fused_memory  # noqa: E402

FOLDED = {"map": {"i": "t_i", "k": "4*t_k + 1*s0 + 2*s1"}, "order": ["k", "i"]}
SPATIAL = {"spatial": {"k": 0, "i": 1}, "order": ["i", "k"], "control": [1, 1]}


def _design():
    dfs = {"m": FOLDED, "o": SPATIAL}
    return load_spec_data(dict(search.base("mv", [2, 2], None), dataflows=dfs, fuse=list(dfs)))


@pytest.mark.parametrize("bounds, seed", [({"i": 2, "k": 1}, 414), ({"i": 2, "k": 4}, 1), ({"i": 3, "k": 5}, 1)])
def test_a_folded_map_fused_with_a_spatial_form_runs_on_its_own_build(bounds, seed):
    """The sweep's draw (i=2, k=1, operand seed 414; it hung), the bounds whose command did not fit the core's
    fields (i=2, k=4) and a ragged one: each dataflow on its own build (the one core needs two tiled dataflows),
    outputs exact, RTL cycles == model cycles, DRAM bytes == model."""
    runs = run_fused_memory(_design(), bounds, seed)
    assert [r.dataflow for r in runs] == ["m", "o"]
    assert all(r.ok for r in runs), [r.detail for r in runs if not r.ok]


def test_the_one_core_refuses_a_layer_of_a_dataflow_it_does_not_run():
    with pytest.raises(SpecError, match=r"layers\.layer0\.dataflow: dataflow 'm' does not run on the one fused"):
        verify_fused_program(_design(), [("m", {"i": 2, "k": 1})], simulator="amaranth")


def test_the_amaranth_array_check_refuses_a_skewed_stt_map_by_name():
    """H160 noticed: ``verify_array_amaranth`` on a skewed stt map stopped with AttributeError ``schedule``; it now
    says what it does not run and where that map is verified."""
    from archgen.arch.spec import load_spec
    from archgen.verif.array_amaranth import verify_array_amaranth
    with pytest.raises(ValueError, match="skewed stt map.*Verilator"):
        verify_array_amaranth(load_spec("gemm_hex"), {"i": 2, "j": 2, "k": 2})
