"""The run-time programmable stt build and its layer command (dataflow/stt_command.py): the command's shape
does not depend on the layer, the region-base adds walk the plan's block-major regions, the build's period is
kept exact by spreading the boxes of a too-soon revisit, and a layer the build cannot hold is refused by
name."""
import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.dataflow.stt_command import (build_stt, command_bits, command_fields, command_values, command_words,
                                          controller_values, plan_for_build)
from archgen.dataflow.stt_layer import _stretch

SMALL = ["array.shape=3x5", "memory.A.bytes=64", "memory.B.bytes=64", "memory.C.bytes=256"]


@pytest.fixture(scope="module")
def hex_build():
    return build_stt(compile_array(load_spec("gemm_hex", SMALL), None))


def test_the_command_has_the_same_fields_for_every_layer(hex_build):
    b = hex_build
    sizes = set()
    for bounds in [{"i": 7, "k": 5, "j": 6}, {"i": 11, "k": 9, "j": 9}, {"i": 1, "k": 1, "j": 1}]:
        plan = plan_for_build(b, bounds)
        assert plan.tiling.box == b.box and plan.tiling.period == b.period
        values = command_values(b, plan)
        assert set(values) == {n for n, _b, _s in command_fields(b)}
        sizes.add(len(command_words(b, values)))
    assert sizes == {-(-command_bits(b) // 32)}


def test_region_base_adds_walk_the_block_major_regions(hex_build):
    """The controller's region base per tensor: the command's base, plus the advancing grid level's change
    at every block step (the odometer of rtlgen/stt_layer.py) == base + region_index x words for every block."""
    b = hex_build
    for bounds in [{"i": 11, "k": 9, "j": 9}, {"i": 5, "k": 13, "j": 2}, {"i": 30, "k": 7, "j": 17}]:
        plan = plan_for_build(b, bounds)
        assert plan.n_blocks > 1
        order = b.grid_order
        v = controller_values(plan, order, base_word=100)
        counts = [v[f"grid_{d}"] for d in order]
        for t in plan.bases:
            base = v[f"base_{t}"]
            blocks = list(plan.blocks())
            for k, counters in enumerate(blocks):
                assert base == 100 + plan.bases[t] + plan.region_index(t, counters) * plan.words(t), (t, counters)
                if k + 1 < len(blocks):
                    full = [counters.get(d, 0) for d in order]
                    lv = max(i for i in range(len(order)) if full[i] != counts[i] - 1)
                    base += v[f"radv_{t}_{order[lv]}"]


def test_an_output_revisited_too_soon_spreads_its_boxes():
    """With the build's period (2 slots), an output block of a 2 x 3 layer comes back one box later along k,
    sooner than its partial sums leave (gap 2 slots): the plan spreads the boxes two box groups apart
    (``stretch``), the same tables, a tiling period of 4 slots for the contract."""
    b = build_stt(compile_array(load_spec("gemm_hex", ["array.shape=3x5"])))
    layer = {"i": 2, "k": 9, "j": 3}
    assert _stretch(b.network, b.box, layer, b.period) == 2
    plan = plan_for_build(b, layer)
    assert plan.grid == () and plan.tiling.period == 2 * b.period
    assert {p.stretch for p in plan.programs} == {2} and {p.period for p in plan.programs} == {b.period}
    assert command_values(b, plan)["in_A.stretch"] == 2
    assert _stretch(b.network, b.box, {"i": 7, "k": 9, "j": 3}, b.period) == 1     # 4 boxes along i apart


def test_a_layer_beyond_the_command_fields_is_refused_by_name(hex_build):
    with pytest.raises(SpecError) as err:
        command_values(hex_build, plan_for_build(hex_build, {"i": 1 << 22, "k": 2, "j": 2}, "big"), 0, "big")
    assert "layers.big.grid_i: the value does not fit the build's 16-bit command field" in str(err.value)


def test_a_buffer_below_one_bank_row_is_refused_by_field():
    with pytest.raises(SpecError) as err:
        build_stt(compile_array(load_spec("gemm_hex", ["array.shape=3x5", "memory.C.bytes=16"]), None))
    assert "memory.C.bytes: the build's buffer of C needs at least one row of 8 x 1 elements (32 B) (got 16)" \
        in str(err.value)
