"""Verilator: maps that skew a temporal loop by the FU coordinates (issue 14 item 3).

The array runs the tiled map with the control vector the skew implies (dataflow/interconnect.py
``tiled_equivalent``): exact on the tile's innermost loop; on a loop with loops after it (a middle or the
outermost tile loop, a middle inner loop) the map's delay of sigma.s x D steps is compressed to sigma.s cycles
(docs/dataflows.md "Skewed maps"). Each case: outputs exact, RTL cycles == model cycles, at the array level
and through the generated memory system.
"""
import pytest

from archgen.arch.spec import load_spec_data
from archgen.verif.array_check import verify_array

pytestmark = pytest.mark.verilator


def _design(shape, mp, order, inner=None):
    df = {"map": mp, "order": order} | ({"inner": inner} if inner else {})
    return load_spec_data({"version": 1, "name": "gemm_skew", "operation": "C[i,j] += A[i,k] * B[k,j]",
                           "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": list(shape)},
                           "dataflows": {"skew": df}})


CASES = [
    pytest.param((3, 2), {"i": "3*t_i + s0", "j": "2*t_j + s1", "k": "t_k - s0 - s1"}, ["i", "j", "k"],
                 {"i": 5, "j": 3, "k": 7}, 2, id="os-3x2"),
    pytest.param((2, 3), {"i": "t_i - s0 - s1", "j": "3*t_j + s1", "k": "2*t_k + s0"}, ["j", "k", "i"],
                 {"i": 6, "j": 5, "k": 3}, 9, id="ws-2x3"),
    pytest.param((1, 4), {"i": "t_i", "j": "4*t_j + s1", "k": "t_k - 2*s1"}, ["i", "j", "k"],
                 {"i": 3, "j": 6, "k": 4}, 4, id="os-1x4-skew2"),
]


@pytest.mark.parametrize("shape,mp,order,bounds,seed", CASES)
def test_skewed_map_on_verilator(shape, mp, order, bounds, seed):
    res = verify_array(_design(shape, mp, order), bounds, seed=seed)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles


SKEW_K = {"i": "3*t_i + s0", "j": "2*t_j + s1", "k": "t_k - s0 - s1"}      # 3x2, both axes
SKEW_I = {"i": "t_i - s1", "j": "4*t_j + s1", "k": "t_k"}                 # 1x4
CONV = {"n": "t_n", "k": "3*t_k + s0", "p": "2*t_p + s1", "q": "t_q", "c": "t_c", "r": "t_r - s0 - s1", "s": "t_s"}

# skews on a loop with loops after it: (shape, map, order, inner, bounds, seed)
OUTER_CASES = [
    pytest.param((3, 2), SKEW_K, ["i", "k", "j"], None, {"i": 5, "j": 3, "k": 4}, 2, id="3x2-k-middle-tile-loop"),
    pytest.param((3, 2), SKEW_K, ["i", "k", "j"], None, {"i": 7, "j": 5, "k": 3}, 8, id="3x2-k-middle-tile-loop-b",
                 marks=pytest.mark.slow),
    pytest.param((3, 2), SKEW_K, ["k", "i", "j"], None, {"i": 4, "j": 4, "k": 3}, 3, id="3x2-k-outermost-tile-loop",
                 marks=pytest.mark.slow),
    pytest.param((3, 2), SKEW_K, ["k", "i", "j"], None, {"i": 6, "j": 3, "k": 5}, 11, id="3x2-k-outermost-tile-loop-b",
                 marks=pytest.mark.slow),
    pytest.param((1, 4), SKEW_I, ["j", "i", "k"], ["k"], {"i": 3, "j": 6, "k": 4}, 4, id="1x4-i-middle-tile-loop",
                 marks=pytest.mark.slow),
    pytest.param((1, 4), SKEW_I, ["i", "j", "k"], None, {"i": 4, "j": 7, "k": 3}, 6, id="1x4-i-outermost-tile-loop",
                 marks=pytest.mark.slow),
    pytest.param((1, 4), {**SKEW_I, "i": "t_i - 2*s1"}, ["i", "j", "k"], None, {"i": 5, "j": 4, "k": 2}, 1,
                 id="1x4-i-outermost-tile-loop-skew2", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("shape,mp,order,inner,bounds,seed", OUTER_CASES)
def test_skew_on_an_outer_loop_on_verilator(shape, mp, order, inner, bounds, seed):
    res = verify_array(_design(shape, mp, order, inner), bounds, seed=seed)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles


def _conv(shape=(3, 2)):
    return load_spec_data({"version": 1, "name": "conv_skew", "operation": "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]",
                           "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": list(shape)},
                           "dataflows": {"skew": {"map": CONV, "order": ["n", "k", "p", "q", "c", "r", "s"],
                                                  "inner": ["c", "r", "s"]}}})


@pytest.mark.slow
def test_conv_skewed_on_a_middle_inner_loop_on_verilator():
    """The skew sits on r inside the tile (s runs after it): the map would delay FU s by sigma.s rows of s."""
    res = verify_array(_conv(), {"n": 1, "k": 4, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}, seed=5)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles


MEMORY_CASES = [
    pytest.param(lambda: _design((1, 4), SKEW_I, ["j", "i", "k"], ["k"]), {"i": 3, "j": 6, "k": 4}, 4,
                 id="1x4-i-middle-tile-loop"),
    pytest.param(lambda: _design((1, 4), SKEW_I, ["i", "j", "k"]), {"i": 5, "j": 6, "k": 3}, 7,
                 id="1x4-i-outermost-tile-loop"),
    pytest.param(_conv, {"n": 1, "k": 4, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}, 5, id="3x2-conv-r-middle-inner-loop"),
    pytest.param(_conv, {"n": 2, "k": 5, "p": 4, "q": 3, "c": 3, "r": 2, "s": 3}, 9, id="3x2-conv-r-middle-inner-loop-b"),
]


@pytest.mark.slow
@pytest.mark.parametrize("make,bounds,seed", MEMORY_CASES)
def test_skew_on_an_outer_loop_through_the_memory_system(make, bounds, seed):
    """``archgen verify SPEC --gemm/--bounds`` without ``--ideal-dram``: the layer through the generated memory
    system (verif/layer_check.py), DRAM bytes as the model counts them."""
    from archgen.verif.layer_check import verify_layer
    res = verify_layer(make(), bounds, seed=seed)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
    assert res.ok, res.detail


# maps that skew the FU assignment (a loop on several axes) and are dataflows for every problem size: run as the
# tiled map with the map's FU s at array position p(s) (dataflow/interconnect.py ``fu_placement``)
FU_SKEW_CASES = [
    pytest.param((2, 3), {"i": "2*t_i + s0", "j": "3*t_j + s1 - s0", "k": "t_k"}, ["i", "j", "k"],
                 {"i": 5, "j": 7, "k": 4}, 3, id="2x3-torus-skew"),
    pytest.param((3, 2), {"i": "3*t_i + s0 - s1", "j": "2*t_j + s1", "k": "t_k"}, ["j", "i", "k"],
                 {"i": 7, "j": 5, "k": 3}, 8, id="3x2-torus-skew-ws-order", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("shape,mp,order,bounds,seed", FU_SKEW_CASES)
def test_fu_skewed_map_on_verilator(shape, mp, order, bounds, seed):
    res = verify_array(_design(shape, mp, order), bounds, seed=seed)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
    print(f"{shape} {mp}: RTL {res.rtl_cycles} = model {res.model_cycles} cycles")


# folded maps: valid for every problem size, strides not the array's extents; built as the tiled map on the
# logical array the strides imply, each logical FU at the physical FU the map gives it (arch/spec.py ``_fold``)
FOLDED_CASES = [
    # 2x2 -> 1x4, control [0, 1]: B moves systolically along the logical chain, whose links span 1, 2, 1 pitches
    pytest.param((2, 2), {"i": "4*t_i + s0 + 2*s1", "j": "t_j", "k": "t_k"}, ["j", "i", "k"], [0, 1],
                 {"i": 7, "j": 3, "k": 4}, 5, (1, 4), id="2x2-as-1x4"),
    # 2x6 -> 2x2x3: three strided loops on a 2-D array
    pytest.param((2, 6), {"i": "2*t_i - s0 - s1 - 1", "j": "2*t_j - s0 - 1", "k": "3*t_k - s0 - s1"},
                 ["i", "j", "k"], [1, 1], {"i": 5, "j": 3, "k": 7}, 2, (2, 2, 3), id="2x6-as-2x2x3",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("shape,mp,order,control,bounds,seed,logical", FOLDED_CASES)
def test_folded_map_on_verilator(shape, mp, order, control, bounds, seed, logical):
    design = load_spec_data({"version": 1, "name": "gemm_folded", "operation": "C[i,j] += A[i,k] * B[k,j]",
                             "types": {"A": "int8", "B": "int8", "C": "int32"}, "array": {"shape": list(shape)},
                             "dataflows": {"m": {"map": mp, "order": order, "control": control}}})
    assert design.shape == logical and design.physical_shape == shape
    res = verify_array(design, bounds, seed=seed)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
    print(f"{shape} as {logical} {mp}: RTL {res.rtl_cycles} = model {res.model_cycles} cycles")


# ``schedule: map``: the map's own schedule of the skew on r inside the tile (rows of r padded by the span, per-FU
# masks, the map's wires and FIFOs; docs/dataflows.md "Skewed maps"), at the array level
CONV_OP = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]"


def _own(shape, mp, order, inner, op=CONV_OP, control=None):
    df = {"map": mp, "order": order, "inner": inner, "schedule": "map"} | ({"control": control} if control else {})
    names = {"I": "int8", "W": "int8", "O": "int32"}
    return load_spec_data({"version": 1, "name": "own_schedule", "operation": op, "types": names,
                           "array": {"shape": list(shape)}, "dataflows": {"skew": df}})


CONV_ORDER, CONV_INNER = ["n", "k", "p", "q", "c", "r", "s"], ["c", "r", "s"]
CONV_2X3 = {**CONV, "k": "2*t_k + s0", "p": "3*t_p + s1"}


def CONV_1XN(n):
    """The convolution's map on a 1xN array: p across it, r skewed by s1."""
    return {**CONV, "k": "t_k", "p": f"{n}*t_p + s1", "r": "t_r - s1"}


CONV_2X2 = {**CONV, "k": "2*t_k + s0", "p": "2*t_p + s1"}
# several skewed loops (H125): r along axis 0, s along axis 1, each row padded by its own span
SEVERAL = {"n": "t_n", "k": "t_k", "p": "3*t_p + s0", "q": "2*t_q + s1", "c": "t_c", "r": "t_r - s0", "s": "t_s - s1"}
SEVERAL_B = {"n": 1, "k": 3, "p": 4, "q": 3, "c": 2, "r": 3, "s": 2}
CONV1 = "O[p] += I[p+r] * W[r+c]"
TWO_LEADS = {**CONV, "r": "t_r - 2*s1", "s": "t_s - 2*s1"}
SMALL = {"n": 1, "k": 4, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}
OWN_CASES = [
    pytest.param(lambda: _own((3, 2), CONV, CONV_ORDER, CONV_INNER), SMALL, 5, 196, id="3x2"),
    pytest.param(lambda: _own((3, 2), SEVERAL, CONV_ORDER, CONV_INNER), SEVERAL_B, 3, 364, id="3x2-several-skews"),
    pytest.param(lambda: _own((3, 2), CONV, CONV_ORDER, CONV_INNER), {"n": 2, "k": 5, "p": 4, "q": 3, "c": 3, "r": 2,
                                                                     "s": 3}, 9, 1084, id="3x2-b", marks=pytest.mark.slow),
    pytest.param(lambda: _own((2, 3), CONV_2X3, CONV_ORDER, CONV_INNER), SMALL, 5, 99, id="2x3", marks=pytest.mark.slow),
    pytest.param(lambda: _own((1, 4), CONV_1XN(4), CONV_ORDER, CONV_INNER), SMALL, 5, 194, id="1x4",
                 marks=pytest.mark.slow),
    pytest.param(lambda: _own((1, 6), CONV_1XN(6), CONV_ORDER, CONV_INNER), {"n": 1, "k": 2, "p": 7, "q": 2, "c": 2,
                                                                            "r": 4, "s": 2}, 3, 290, id="1x6",
                 marks=pytest.mark.slow),
    pytest.param(lambda: _own((2, 2), CONV_2X2, CONV_ORDER, CONV_INNER, control=[1, 1]),
                 {"n": 1, "k": 3, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}, 4, 165, id="2x2-control-1-1",
                 marks=pytest.mark.slow),
    # r skewed by s0 only: I's axis-1 FIFO feeds an FU at the same row position, so the rows get a halo of 1
    pytest.param(lambda: _own((3, 2), {**CONV, "r": "t_r - s0"}, CONV_ORDER, CONV_INNER, control=[1, 0]),
                 {"n": 1, "k": 4, "p": 5, "q": 2, "c": 2, "r": 3, "s": 2}, 7, 294, id="3x2-halo", marks=pytest.mark.slow),
    # no input indexed by r alone: the per-FU flags zero the padded positions; control [0, 1]: no FIFO, masks only
    pytest.param(lambda: _own((1, 3), {"p": "3*t_p + s1", "r": "t_r - s1", "c": "t_c"}, ["p", "r", "c"], ["r", "c"],
                              CONV1, [0, 1]), {"p": 7, "r": 4, "c": 3}, 9, 58, id="conv1-1x3-masks-only",
                 marks=pytest.mark.slow),
    pytest.param(lambda: _own((1, 4), {"p": "4*t_p + s1", "r": "t_r - s1", "c": "t_c"}, ["p", "r", "c"], ["r", "c"],
                              CONV1), {"p": 5, "r": 3, "c": 2}, 3, 26, id="conv1-1x4", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("make,bounds,seed,cycles", OWN_CASES)
def test_maps_own_schedule_on_verilator(make, bounds, seed, cycles):
    """Outputs exact and RTL cycles == model cycles; ``cycles`` pins the figure docs/dataflows.md reports."""
    res = verify_array(make(), bounds, seed=seed)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
    print(f"RTL {res.rtl_cycles} = model {res.model_cycles} cycles")
    assert cycles is None or res.rtl_cycles == cycles


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 4])
def test_maps_own_schedule_with_bubbles_and_stalls_on_verilator(seed):
    """Random idle input beats and output back-pressure: the row position, the per-FU mask flags and the FIFOs move
    only with issued steps, so the outputs stay exact (cycles then depend on the bubbles and are not compared)."""
    res = verify_array(_own((3, 2), CONV, CONV_ORDER, CONV_INNER), SMALL, seed=seed, idle_prob=0.3, stall_prob=0.3)
    assert res.outputs_exact, res.detail


# ``schedule: map`` through the memory system (not --ideal-dram): each memory lane of an input that uses the padded
# loop walks from h + sigma.s of its root before the row (dataflow/memctl.py lane_lead); outputs exact, RTL cycles ==
# model cycles (sim/layer_model), DRAM bytes RTL == model. ``cycles`` pins the figures docs/dataflows.md reports.
OWN_MEMORY_CASES = [
    pytest.param(lambda: _own((3, 2), CONV, CONV_ORDER, CONV_INNER), SMALL, 5, None, 395, id="3x2"),
    # r and s skewed by 2*s1: every lane leads on both loops, so a lane-map group's run starts below lane 0's (I's by
    # 4 positions, W's at -4 and -2): signed group offsets (memctl.signed_group_offsets; refused until 2026-12-06)
    pytest.param(lambda: _own((3, 2), TWO_LEADS, CONV_ORDER[:4] + ["r", "c", "s"], ["r", "c", "s"], control=[0, 1]),
                 {"n": 2, "k": 2, "p": 1, "q": 2, "c": 1, "r": 2, "s": 1}, 1, None, 249, id="3x2-two-leads"),
    pytest.param(lambda: _own((3, 2), SEVERAL, CONV_ORDER, CONV_INNER), SEVERAL_B, 3, None, 566, id="3x2-several-skews",
                 marks=pytest.mark.slow),
    pytest.param(lambda: _own((2, 3), CONV_2X3, CONV_ORDER, CONV_INNER), SMALL, 5, None, 298, id="2x3",
                 marks=pytest.mark.slow),
    pytest.param(lambda: _own((1, 4), CONV_1XN(4), CONV_ORDER, CONV_INNER), SMALL, 5, None, 393, id="1x4",
                 marks=pytest.mark.slow),
    pytest.param(lambda: _own((3, 2), CONV, CONV_ORDER, CONV_INNER), {"n": 2, "k": 5, "p": 4, "q": 3, "c": 3, "r": 2,
                                                                     "s": 3}, 9, None, 1300, id="3x2-b",
                 marks=pytest.mark.slow),
    pytest.param(lambda: _own((3, 2), {**CONV, "r": "t_r - s0"}, CONV_ORDER, CONV_INNER, control=[1, 0]),
                 {"n": 1, "k": 4, "p": 5, "q": 2, "c": 2, "r": 3, "s": 2}, 7, None, 496, id="3x2-halo",
                 marks=pytest.mark.slow),
    pytest.param(lambda: _own((1, 4), {"p": "4*t_p + s1", "r": "t_r - s1", "c": "t_c"}, ["p", "r", "c"], ["r", "c"],
                              CONV1), {"p": 5, "r": 3, "c": 2}, 3, None, 222, id="conv1-1x4", marks=pytest.mark.slow),
    # blocks: k ragged over 2 tiles, p in 2 blocks, c in 2, the padded loop r split in chunks of 2 (each chunk's rows
    # padded by the span), psums added across the c and r blocks
    pytest.param(lambda: _own((3, 2), CONV, CONV_ORDER, CONV_INNER), {"n": 2, "k": 5, "p": 6, "q": 3, "c": 3, "r": 4,
                                                                     "s": 2}, 7,
                 ({"n": 1, "k": 1, "p": 2, "q": 3, "c": 2, "r": 2, "s": 2}, tuple(CONV_ORDER)), 4764,
                 id="3x2-16-blocks-r-chunks", marks=pytest.mark.slow),
    pytest.param(lambda: _own((1, 4), CONV_1XN(4), CONV_ORDER, CONV_INNER), {"n": 1, "k": 3, "p": 9, "q": 3, "c": 3,
                                                                            "r": 3, "s": 2}, 11,
                 ({"n": 1, "k": 2, "p": 1, "q": 3, "c": 3, "r": 3, "s": 2}, ("n", "p", "k", "q", "c", "r", "s")), 1365,
                 id="1x4-6-blocks", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("make,bounds,seed,plan,cycles", OWN_MEMORY_CASES)
def test_maps_own_schedule_through_the_memory_system(make, bounds, seed, plan, cycles):
    from archgen.verif.layer_check import verify_layer
    tile, order = plan or (None, None)
    res = verify_layer(make(), bounds, seed=seed, tile=tile, order=order)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
    assert res.detail["rtl_dram_bytes"] == res.dram_bytes
    assert res.ok, res.detail
    print(f"RTL {res.rtl_cycles} = model {res.model_cycles} cycles")
    assert res.rtl_cycles == cycles


def _random_own_layer(rng):
    """A random ``schedule: map`` convolution (shape, sigma, control vector, order of the tile's loops) and layer,
    and half the time an explicit command (chunks of some inner loops, any order) instead of the planner's."""
    import itertools
    shape = (rng.randint(1, 3), rng.randint(2, 4))
    sigma = (rng.randint(0, 2) if shape[0] > 1 else 0, rng.randint(0, 2))
    sigma = sigma if any(sigma) else (0, 1)
    inner = list(list(itertools.permutations(CONV_INNER))[rng.randrange(6)])
    skew = " ".join(f"- {v}*s{a}" for a, v in enumerate(sigma) if v)
    mp = {**CONV, "k": f"{shape[0]}*t_k + s0" if shape[0] > 1 else "t_k", "p": f"{shape[1]}*t_p + s1",
          "r": f"t_r {skew}"}
    design = _own(shape, mp, CONV_ORDER[:4] + inner, inner, control=[rng.randint(0, 1), rng.randint(0, 1)])
    return _random_command(rng, design, {d: rng.randint(1, n) for d, n in zip(CONV_ORDER, (2, 5, 7, 2, 2, 4, 3))})


def _random_command(rng, design, bounds):
    """(design, bounds, tile, order): half the time the planner's command (None, None), else chunks of some inner
    loops in any order."""
    df = design.dataflow()
    if rng.random() < 0.5:
        return design, bounds, None, None
    loops = list(df.outer_dims()) + [d for d in df.inner_dims() if rng.random() < 0.5]
    return design, bounds, {d: rng.randint(1, 2) for d in loops}, tuple(rng.sample(loops, len(loops)))


@pytest.mark.slow
@pytest.mark.parametrize("case", range(6))
def test_random_maps_own_schedule_through_the_memory_system(case):
    """Random shapes, skews, control vectors, loop orders, layers and commands (chunks of the padded loop
    included): outputs exact, RTL cycles == model cycles, DRAM bytes RTL == model. A random command the partial-sum
    policy refuses (``memory.partial_sums_through_dram``, not this schedule's) runs as the planner's instead."""
    import random
    _verify_random_layer(*_random_own_layer(random.Random(1000 + case)), case)


def _verify_random_layer(design, bounds, tile, order, seed):
    """Outputs exact, RTL cycles == model cycles, DRAM bytes RTL == model; a command the partial-sum policy refuses
    (``memory.partial_sums_through_dram``, not this schedule's) runs as the planner's instead."""
    from archgen.arch.errors import SpecError
    from archgen.verif.layer_check import verify_layer
    try:
        res = verify_layer(design, bounds, seed=seed, tile=tile, order=order)
    except SpecError as e:
        assert e.problems[0].path == "memory.partial_sums_through_dram", e
        res = verify_layer(design, bounds, seed=seed)
    assert res.outputs_exact, (bounds, tile, order, res.detail)
    assert res.rtl_cycles == res.model_cycles
    assert res.detail["rtl_dram_bytes"] == res.dram_bytes


def _random_several_layer(rng):
    """A random ``schedule: map`` convolution with r and s both skewed (H125's memory sweep: every lane leads on two
    loops, so most lane-map groups start below lane 0's) on 1..3 x 2..3, and half the time an explicit command."""
    import itertools
    shape = (rng.randint(1, 3), rng.randint(2, 3))

    def skew(loop):
        while True:
            sigma = (rng.randint(0, 1) if shape[0] > 1 else 0, rng.randint(0, 2))
            if any(sigma):
                return f"t_{loop} " + " ".join(f"- {v}*s{a}" for a, v in enumerate(sigma) if v)
    inner = list(list(itertools.permutations(CONV_INNER))[rng.randrange(6)])
    mp = {**CONV, "k": f"{shape[0]}*t_k + s0" if shape[0] > 1 else "t_k", "p": f"{shape[1]}*t_p + s1",
          "r": skew("r"), "s": skew("s")}
    design = _own(shape, mp, CONV_ORDER[:4] + inner, inner, control=[rng.randint(0, 1), rng.randint(0, 1)])
    return _random_command(rng, design, {d: rng.randint(1, n) for d, n in zip(CONV_ORDER, (2, 5, 6, 2, 2, 3, 3))})


@pytest.mark.slow
@pytest.mark.parametrize("case", range(8))
def test_random_several_skews_through_the_memory_system(case):
    """H125's memory sweep (seeds 2000-2007; 7 of 8 were refused by the lane-map guard before signed group offsets):
    outputs exact, RTL cycles == model cycles, DRAM bytes RTL == model. A random command the partial-sum policy
    refuses runs as the planner's instead."""
    import random
    _verify_random_layer(*_random_several_layer(random.Random(2000 + case)), case)


# ``schedule: map`` with positive FU coefficients (H127): ``r: "t_r + s0 - 2"`` runs FUs further along axis 0 earlier
# (the lag read backwards: each row starts sooner for them, the map's FIFOs hop toward lower coordinates); mixed signs
# lead along one axis and lag along the other. Outputs exact, RTL cycles == model cycles; ``cycles`` pins the figures
# docs/dataflows.md reports. Array level (``--ideal-dram``), then through the memory system (DRAM bytes RTL == model).
LEAD = {**CONV, "r": "t_r + s0 + s1 - 3"}
MIXED = {**CONV, "r": "t_r + s0 - s1 - 2"}
# the true convolution I[p - r]: a lead along p's axis gives I one lane (docs/dataflows.md "Positive FU coefficients")
TRUE_CONV = "O[n,k,p,q] += I[n,c,p-r,q-s] * W[k,c,r,s]"
TRUE_MIXED = {**CONV, "r": "t_r - s0 + s1 - 1"}
TRUE_1X4 = {**CONV_1XN(4), "r": "t_r + s1 - 3"}
LEAD_CASES = [
    pytest.param(lambda: _own((3, 2), TRUE_MIXED, CONV_ORDER, CONV_INNER, TRUE_CONV), SMALL, 5, 196,
                 id="3x2-true-conv-mixed"),
    pytest.param(lambda: _own((3, 2), MIXED, CONV_ORDER, CONV_INNER), SMALL, 5, 196, id="3x2-mixed",
                 marks=pytest.mark.slow),
    pytest.param(lambda: _own((3, 2), LEAD, CONV_ORDER, CONV_INNER), SMALL, 5, 196, id="3x2-lead",
                 marks=pytest.mark.slow),
    pytest.param(lambda: _own((1, 4), TRUE_1X4, CONV_ORDER, CONV_INNER, TRUE_CONV), SMALL, 5, 194,
                 id="1x4-true-conv-lead", marks=pytest.mark.slow),
    pytest.param(lambda: _own((2, 3), {**CONV_2X3, "r": "t_r + s0 - s1 - 1"}, CONV_ORDER, CONV_INNER, control=[-1, 1]),
                 SMALL, 5, 102, id="2x3-mixed-control", marks=pytest.mark.slow),
    pytest.param(lambda: _own((1, 4), {"p": "4*t_p + s1", "r": "t_r + s1 - 3", "c": "t_c"}, ["p", "r", "c"], ["r", "c"],
                              CONV1), {"p": 5, "r": 3, "c": 2}, 3, 26, id="conv1-1x4-lead", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("make,bounds,seed,cycles", LEAD_CASES)
def test_positive_fu_coefficients_on_verilator(make, bounds, seed, cycles):
    """The checks of ``test_maps_own_schedule_on_verilator`` on these maps."""
    test_maps_own_schedule_on_verilator(make, bounds, seed, cycles)


LEAD_MEMORY_CASES = [
    pytest.param(lambda: _own((3, 2), TRUE_MIXED, CONV_ORDER, CONV_INNER, TRUE_CONV), SMALL, 5, None, 395,
                 id="3x2-true-conv-mixed"),
    pytest.param(lambda: _own((1, 4), TRUE_1X4, CONV_ORDER, CONV_INNER, TRUE_CONV), SMALL, 5, None, 393,
                 id="1x4-true-conv-lead"),
    pytest.param(lambda: _own((3, 2), LEAD, CONV_ORDER, CONV_INNER), SMALL, 5, None, 395, id="3x2-lead"),
    pytest.param(lambda: _own((3, 2), MIXED, CONV_ORDER, CONV_INNER), SMALL, 5, None, 395, id="3x2-mixed"),
    pytest.param(lambda: _own((3, 2), {**CONV, "r": "t_r + s0 - 2"}, CONV_ORDER, CONV_INNER), SMALL, 5, None, 395,
                 id="3x2-lead-halo"),
    pytest.param(lambda: _own((1, 4), {**CONV_1XN(4), "r": "t_r + s1 - 3"}, CONV_ORDER, CONV_INNER), SMALL, 5, None, 393,
                 id="1x4-lead"),
    pytest.param(lambda: _own((3, 2), LEAD, CONV_ORDER, CONV_INNER), {"n": 2, "k": 5, "p": 6, "q": 3, "c": 3, "r": 4,
                                                                     "s": 2}, 7,
                 ({"n": 1, "k": 1, "p": 2, "q": 3, "c": 2, "r": 2, "s": 2}, tuple(CONV_ORDER)), 4764,
                 id="3x2-lead-blocks"),
    # leads and lags on two loops at once (H127's several-skew sweep, seeds 4002 and 4004): the lane-map groups start
    # below lane 0's, which the memory system refused before signed group offsets (H126)
    pytest.param(lambda: _own((3, 4), {**CONV, "p": "4*t_p + s1", "r": "t_r - s0 + 2*s1 - 6", "s": "t_s + 2*s0 + s1 - 7"},
                              CONV_ORDER[:4] + ["s", "c", "r"], ["s", "c", "r"], TRUE_CONV, control=[1, -1]),
                 {"n": 1, "k": 3, "p": 5, "q": 2, "c": 1, "r": 3, "s": 1}, 4002, None, 560, id="3x4-two-loops-lead-lag"),
    pytest.param(lambda: _own((2, 4), {**CONV, "k": "2*t_k + s0", "p": "4*t_p + s1", "r": "t_r + 2*s0 - s1 - 2",
                                       "s": "t_s + 2*s0 - s1 - 2"}, CONV_ORDER, CONV_INNER, TRUE_CONV, control=[0, 1]),
                 {"n": 1, "k": 2, "p": 4, "q": 1, "c": 2, "r": 2, "s": 1}, 4004,
                 ({"n": 1, "k": 1, "p": 1, "q": 2}, None), 286, id="2x4-two-loops-mixed"),
]


@pytest.mark.slow
@pytest.mark.parametrize("make,bounds,seed,plan,cycles", LEAD_MEMORY_CASES)
def test_positive_fu_coefficients_through_the_memory_system(make, bounds, seed, plan, cycles):
    """The checks of ``test_maps_own_schedule_through_the_memory_system`` (DRAM bytes RTL == model included)."""
    test_maps_own_schedule_through_the_memory_system(make, bounds, seed, plan, cycles)
