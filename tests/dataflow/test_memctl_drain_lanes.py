"""H148's waited drains through the memory system when a drain group spans lanes of one drained row (issue 14,
``schedule: map``): the output is reduced along the lanes' axis, which the skew of a loop l outside the tile moves, so
the lanes of a row carry one element (their group's) and only the representative's lane drains its sum; the others
drain padding. The lanes of one group alias: one position, counted once in the banks, the padding lanes' writes
dropped per row (``drain_rows``) and kept out of the write crossbar, their partial-sum reads 0 (dataflow/memctl.py
``_drain_lane_aliases``, rtlgen/layer_top.py ``_write_live``). Checked in Amaranth through the layer core: outputs
exact against the loop nest, RTL cycles == model cycles, DRAM bytes equal (H155). Also H147's tile masks on a 3-D
array drained over both leading axes (a step per ``row@a`` level, memctl ``_row_steps``)."""
import dataclasses

import numpy as np
import pytest

import archgen.rtlgen.layer_top as layer_top
from archgen.arch.errors import SpecError
from archgen.dataflow.compile import compile_array
from archgen.dataflow.memctl import _drain_lane_aliases, layer_program
from archgen.dataflow.reduce_skew import drain_groups, memory_drain_waits
from archgen.mappings.memory_tiling import make_command, plan_layer
from test_map_schedule import _skewed_row
from test_map_schedule_outer import CONV_OP, GEMM, _spec
from test_map_schedule_outer_reduce import BGEMM
from test_memctl_outer_pads import _run
from test_memctl_stream_outputs import run_design

# c on the lanes' axis (1), n skewed along it: both lanes of a row drain one element, lane 1's FU is the representative
LANES = {"n": "t_n - s1", "k": "t_k", "p": "2*t_p + s0", "q": "t_q", "c": "2*t_c + s1", "r": "t_r", "s": "t_s"}
ORDER = ["n", "k", "p", "c", "q", "r", "s"]
BOUNDS = {"n": 3, "k": 2, "p": 3, "q": 2, "c": 4, "r": 2, "s": 2}

# (operation, shape, map, order, inner, bounds)
FIXED = [
    (CONV_OP, (2, 2), LANES, ORDER, ["r", "s"], BOUNDS),
    (CONV_OP, (2, 2), LANES | {"q": "t_q + s0 - s1 - 1"}, ORDER, ["r", "s"], BOUNDS),       # two loops: n and q
    (GEMM, (2, 2), {"i": "2*t_i + s0", "j": "t_j + s1 - s0 - 1", "k": "2*t_k + s1"}, ["j", "i", "k"], None,
     {"i": 3, "j": 3, "k": 5}),                                                               # a lead along the lanes
    (CONV_OP, (2, 3), LANES | {"c": "3*t_c + s1", "n": "t_n + s1 - 2"}, ORDER, ["r", "s"], BOUNDS | {"c": 5}),
    (CONV_OP, (1, 3), LANES | {"p": "t_p", "c": "3*t_c + s1"}, ORDER, ["r", "s"], BOUNDS | {"c": 5}),   # 1x3
]
# multi-block commands: (FIXED index, tile, order, partial sums through DRAM, seed, cycles)
MULTI = [
    (0, {"n": 3, "k": 2, "p": 2, "c": 1, "q": 2}, ("n", "k", "p", "q", "c"), False, 2, 465),   # c split, in the buffer
    (0, {"n": 3, "k": 2, "p": 2, "c": 1, "q": 2}, ("c", "n", "k", "p", "q"), True, 3, 465),    # c outermost, DRAM
    (0, {"n": 3, "k": 1, "p": 2, "c": 2, "q": 2}, ("n", "k", "p", "c", "q"), False, 1, 593),   # k split
    (0, {"n": 1, "k": 2, "p": 1, "c": 2, "q": 2}, ("n", "k", "p", "c", "q"), False, 4, 918),   # n (skewed) split
    (1, {"n": 3, "k": 2, "p": 2, "c": 1, "q": 1}, ("c", "n", "k", "p", "q"), True, 5, 1055),   # two loops, DRAM
    (1, {"n": 2, "k": 1, "p": 2, "c": 1, "q": 2}, ("n", "k", "p", "q", "c"), False, 6, 1377),  # two loops, 8 blocks
    (2, {"i": 2, "j": 2, "k": 1}, ("k", "j", "i"), True, 7, 1235),                              # GEMM k via DRAM
    (2, {"i": 1, "j": 3, "k": 1}, ("i", "j", "k"), False, 8, 932),                              # GEMM k in the buffer
    (3, {"n": 3, "k": 2, "p": 1, "c": 1, "q": 2}, ("n", "c", "k", "p", "q"), True, 9, 829),    # 2x3, c and p split
    (4, {"n": 3, "k": 1, "p": 2, "c": 1, "q": 2}, ("c", "n", "k", "p", "q"), True, 10, 1593),  # 1x3, c via DRAM
]


def _design(case):
    op, shape, mp, order, inner, _bounds = FIXED[case]
    return _spec(op, shape, mp, order, inner)


def _exact(design, bounds, seed):
    exact, rtl, model, moved, dram = run_design(design, bounds, seed, fits=True)
    assert exact and rtl == model
    assert {k: v for k, v in moved.items() if v} == {k: v for k, v in dram.items() if v}
    return rtl


def _multi(idx):
    """MULTI[idx] through the layer core: (outputs exact, RTL cycles, model cycles, bytes moved, the model's)."""
    case, tile, order, spill, seed, _cycles = MULTI[idx]
    design = _design(case)
    if spill:
        design = dataclasses.replace(design, memory=dataclasses.replace(design.memory_system,
                                                                        partial_sums_through_dram=True))
    c = compile_array(design)
    return _run(c, make_command(c.design, FIXED[case][5], c.dataflow, tile, order), seed)


def test_lanes_of_one_group_alias_and_run_exact():
    """The former refusal's conv: lane 0 never drains (its FUs wait), lane 1 drains both rows; one position, exact."""
    design = _design(0)
    c = compile_array(design)
    assert drain_groups(c.fu_graph) and not memory_drain_waits(c.fu_graph)
    assert _drain_lane_aliases(c.fu_graph) == (0, 0)
    prog = layer_program(c, plan_layer(design, BOUNDS, c.dataflow), spec_size=False)
    outs = [w for w in prog.walks if w.operand == "O"]
    assert [(w.scatter, w.lane_alias, w.drain_rows) for w in outs] == [(True, (0, 0), ((), (0, 1)))] * len(outs)
    assert _exact(design, BOUNDS, 1) == 591


@pytest.mark.slow
def test_without_the_enabled_lane_gate_the_outputs_are_wrong(monkeypatch):
    """The check can fail: with every block-live lane in the write crossbar, the padding lane's word (the partial sum
    it would add onto: 0 + old) is ORed into the representative's at the shared bank, wrong at equal cycles."""
    monkeypatch.setattr(layer_top, "_write_live", lambda m, w, alts, seq, row_c, en:
                        layer_top._live_lanes(m, w, alts, seq, row_c, ahead=False))
    exact, rtl, model, _moved, _dram = _multi(0)
    assert not exact and rtl == model


@pytest.mark.slow
@pytest.mark.parametrize("case", range(1, len(FIXED)))
def test_fixed_cases(case):
    _exact(_design(case), FIXED[case][5], case)


@pytest.mark.slow
@pytest.mark.parametrize("idx", range(len(MULTI)))
def test_multi_block_commands(idx):
    """Blocks adding onto partial sums in the buffer and through DRAM, the skewed loop split, two loops, 2x3, 1x3."""
    exact, rtl, model, moved, dram = _multi(idx)
    assert exact and rtl == model == MULTI[idx][5] and moved == dram


def _random_lanes(rng, loops=1):
    """A random convolution with c on axis 1 (the lanes': the output is reduced along it) and k or p on axis 0 (or
    nothing on a 1xN array), ``loops`` of its other output loops skewed along axis 1 by a lag or a lead (and along
    axis 0 or not), outside the tile [r, s] or [s]."""
    shape = (int(rng.integers(1, 4)), int(rng.integers(2, 4)))
    across = str(rng.choice(["k", "p"]))
    mp = {"n": "t_n", "k": "t_k", "p": "t_p", "q": "t_q", "c": f"{shape[1]}*t_c + s1", "r": "t_r", "s": "t_s"}
    if shape[0] > 1:
        mp[across] = f"{shape[0]}*t_{across} + s0"
    for d in rng.permutation([d for d in ("n", "q", "k", "p") if d != across])[:loops]:
        sigma = (int(rng.integers(-1, 2)) if shape[0] > 1 else 0, int(rng.choice([-2, -1, 1, 2])))
        mp[str(d)] = _skewed_row(str(d), sigma, shape)
    inner = ["r", "s"] if rng.random() < 0.6 else ["s"]
    order = [str(d) for d in rng.permutation([d for d in "nkpqcrs" if d not in inner])] + inner
    bounds = {d: int(rng.integers(1, hi + 1)) for d, hi in zip("nkpqcrs", (2, 3, 3, 3, 5, 2, 3))}
    return _spec(CONV_OP, shape, mp, order, inner), bounds, int(rng.integers(0, 1000))


def _random_lanes_gemm(rng, loops=1):
    """A random batched GEMM with k on axis 1 (one-step tiles, partial-sum rounds of k) and i or j on axis 0, b or
    the other of i, j skewed along axis 1 (and along axis 0 or not); with ``loops`` = 2 both."""
    shape = (int(rng.integers(1, 4)), int(rng.integers(2, 4)))
    across = str(rng.choice(["i", "j"]))
    mp = {"b": "t_b", "i": "t_i", "j": "t_j", "k": f"{shape[1]}*t_k + s1"}
    if shape[0] > 1:
        mp[across] = f"{shape[0]}*t_{across} + s0"
    for d in rng.permutation(["b", "j" if across == "i" else "i"])[:loops]:
        sigma = (int(rng.integers(-1, 2)) if shape[0] > 1 else 0, int(rng.choice([-2, -1, 1, 2])))
        mp[str(d)] = _skewed_row(str(d), sigma, shape)
    bounds = {d: int(rng.integers(1, hi + 1)) for d, hi in zip("bijk", (2, 4, 4, 7))}
    return _spec(BGEMM, shape, mp, [str(d) for d in rng.permutation(list("bijk"))]), bounds, int(rng.integers(0, 1000))


@pytest.mark.slow
@pytest.mark.parametrize("draw,loops", [(_random_lanes, 1), (_random_lanes, 2), (_random_lanes_gemm, 1),
                                        (_random_lanes_gemm, 2)])
def test_random_draws(draw, loops):
    """Random convs and batched GEMMs, one and two loops, lags and leads, 1xN and non-square, the planner's commands
    (buffer_fit), each a draw whose lanes alias. The only refusals allowed are per layer, as H154's: a block deeper
    than the drain buffers and the command-field width of a walk's base."""
    rng = np.random.default_rng(155 + loops)
    draws = (draw(rng, loops) for _ in iter(int, 1))
    aliased = (d for d in draws if _drain_lane_aliases(compile_array(d[0]).fu_graph))
    assert sum(_exact_or_layer_refusal(*d) for d, _ in zip(aliased, range(8))) >= 4


def _exact_or_layer_refusal(design, bounds, seed) -> bool:
    """Exact (:func:`_exact`), or refused per layer only (False): a walk base beyond its command field, or a block
    deeper than the drain buffers."""
    try:
        _exact(design, bounds, seed)
    except SpecError as err:
        assert all(p.path.endswith("_base") and "does not fit" in p.message or "array.max_fifo_depth" in p.message
                   for p in err.problems), err
        return False
    return True


# 3-D arrays drained over both leading axes (H147's former _tile_masks refusal): specs of the refusal search
# (benchmarks/dataflow_refusal_search.py ``schedule 0 30``), a drain group spanning the lanes and one that does not
CONV2 = "O[k,p,q] += I[c,p+r,q] * W[k,c,r]"
THREE_D = [
    ({"k": "t_k - s0 - s1", "p": "t_p - s0 + s1 + s2 - 2", "q": "2*t_q + s0", "c": "2*t_c + s1", "r": "2*t_r + s2"},
     ["k", "p", "q", "c", "r"], {"k": 3, "p": 4, "q": 2, "c": 2, "r": 2}),
    ({"k": "2*t_k + s1", "p": "2*t_p + s2", "q": "t_q + s0 - s1 - s2 - 1", "c": "t_c + s0 - s2 - 1", "r": "2*t_r + s0"},
     ["q", "k", "r", "p", "c"], {"k": 3, "p": 3, "q": 2, "c": 2, "r": 3}),
]


def _three_d(case):
    mp, order, bounds = THREE_D[case]
    return _spec(CONV2, (2, 2, 2), mp, order), bounds


@pytest.mark.slow
@pytest.mark.parametrize("case", range(len(THREE_D)))
def test_a_3d_array_drained_over_both_leading_axes(case):
    """Each row@a level steps the tile masks' offsets (memctl ``_row_steps``) and numbers the drained rows
    (``PortWalk.row_extents``): exact, RTL == model, DRAM equal."""
    design, bounds = _three_d(case)
    c = compile_array(design)
    assert drain_groups(c.fu_graph) and bool(_drain_lane_aliases(c.fu_graph)) == (case == 0)
    prog = layer_program(c, plan_layer(design, bounds, c.dataflow), spec_size=False)
    assert any(isinstance(step, tuple) for w in prog.walks for _tl, _offs, step in w.tile_masks)
    _exact(design, bounds, 5)


@pytest.mark.slow
def test_without_the_row_steps_a_3d_drain_is_wrong(monkeypatch):
    """The check can fail: every drained row at row 0's offsets, the outputs are wrong at equal cycles."""
    import archgen.dataflow.memctl as memctl
    monkeypatch.setattr(memctl, "_row_steps", lambda compiled, pad, levels, coords, off0: tuple(
        (levels.index(f"row@{a}"), 0) for a in range(len(compiled.design.shape) - 1)))
    exact, rtl, model, _moved, _dram = run_design(*_three_d(0), 5, fits=True)
    assert not exact and rtl == model


@pytest.mark.slow
def test_the_fused_layer_core_runs_it_beside_ws():
    """The former refusal's conv fused with a ws dataflow, m / ws / m through the one fused layer core: each exact,
    RTL == model cycles, DRAM bytes RTL == model (591 / 543 / 591 cycles)."""
    from archgen.verif.fused_program_check import verify_fused_program
    from test_fused_outer_pads import _design as fused_design
    m = {"map": LANES, "order": ORDER, "schedule": "map", "inner": ["r", "s"]}
    design = fused_design(CONV_OP, (2, 2), {"m": m, "ws": {"spatial": {"k": 0, "p": 1}, "order": ORDER}})
    runs = verify_fused_program(design, [("m", BOUNDS), ("ws", BOUNDS), ("m", BOUNDS)], seed=1, simulator="amaranth")
    assert [(r.dataflow, r.outputs_exact, r.rtl_cycles == r.model_cycles) for r in runs] == [
        ("m", True, True), ("ws", True, True), ("m", True, True)]
    assert all(r.detail["rtl_dram_bytes"] == r.dram_bytes for r in runs)
    assert [r.rtl_cycles for r in runs] == [591, 543, 591]
