"""``schedule: map`` with an output STREAMED per step (it uses a loop of the formed tile) that depends on a skewed loop
l OUTSIDE the tile, skewed along an array axis the output is reduced along (issue 14; docs/dataflows.md "Skewed output
loops outside the tile"). The output's lanes sum FUs (chains or trees across that axis, interconnect.py
``_reduced_rows``) that run different tiles of l, so each FU's product waits O_l - offset_l(s) iterations of l before
the reduction: D x S issued steps each (D the tiles of the loops outside the tile after l, S the steps per tile), a
buffer of run-time depth (H142's product waits, reduce_skew.py ``product_waits``, mappings/tiling.py
``reduced_pads``). The lane streams the element of tile t - O_l. Checked in Amaranth's simulator: outputs exact
against a tiling-independent loop nest, RTL cycles == model cycles; alone and fused. The memory system builds it
since H156 (tests/dataflow/test_memctl_stream_waits.py)."""
import collections

import numpy as np
import pytest

from archgen.arch.errors import SpecError
from archgen.dataflow.compile import compile_array
from archgen.dataflow.memctl import check_memory_system
from archgen.dataflow.reduce_skew import product_waits
from archgen.mappings.tiling import map_problem
from archgen.verif.array_amaranth import verify_array_amaranth
from test_map_schedule import _skewed_row
from test_map_schedule_outer import CONV_OP, GEMM, _exact, _spec
from test_map_schedule_outer_reduce import BGEMM, exact_unless_too_deep

GEMM_LAG = {"k": "3*t_k + s0", "i": "t_i", "j": "t_j - s0"}

# (operation, shape, map, order, inner, bounds, seed)
FIXED = [
    # GEMM on 3: k on the array (partial-sum rounds of k after j), j lags along it, the output streamed over i
    (GEMM, (3,), GEMM_LAG, ["j", "k", "i"], None, {"i": 3, "j": 3, "k": 5}, 1),
    # 2x2 conv: c on axis 0, k on axis 1, n (the last loop outside the tile) leads along axis 0 and lags along axis 1,
    # streamed over q (tile [s, q])
    (CONV_OP, (2, 2), {"n": "t_n + s0 - s1 - 1", "k": "2*t_k + s1", "p": "t_p", "q": "t_q", "c": "2*t_c + s0",
                       "r": "t_r", "s": "t_s"}, ["k", "c", "p", "r", "n", "s", "q"], ["s", "q"],
     {"n": 2, "k": 3, "p": 2, "q": 3, "c": 3, "r": 2, "s": 2}, 2),
    # 3x2 batched GEMM: k on axis 0, i on axis 1, b lags by 2 per row, streamed over j
    (BGEMM, (3, 2), {"b": "t_b - 2*s0", "i": "2*t_i + s1", "j": "t_j", "k": "3*t_k + s0"}, ["b", "k", "i", "j"], ["j"],
     {"b": 2, "i": 3, "j": 3, "k": 4}, 3),
]


def _design(case):
    op, shape, mp, order, inner, bounds, seed = FIXED[case]
    return _spec(op, shape, mp, order, inner), bounds, seed


def _outer_waits(compiled) -> bool:
    outer = set(compiled.dataflow.outer_dims())
    return any(loop in outer for w in product_waits(compiled.fu_graph).values() for loop in w)


def test_the_gemm_waits_whole_tiles_and_is_exact():
    """FU s of the GEMM waits 2 - s iterations of j: 2 x (trips of k x steps) steps (k's 2 rounds x 3 steps of i)."""
    design, bounds, seed = _design(0)
    compiled = compile_array(design)
    assert product_waits(compiled.fu_graph) == {(0,): {"j": 2}, (1,): {"j": 1}}
    mapping = map_problem(design, bounds, compiled.dataflow)
    assert (mapping.trips()["k"], mapping.steps) == (2, 3)
    assert _exact(design, bounds, seed).rtl_cycles == 33


@pytest.mark.slow
@pytest.mark.parametrize("case", [1, 2])
def test_fixed_cases_are_exact(case):
    design, bounds, seed = _design(case)
    assert _outer_waits(compile_array(design))
    _exact(design, bounds, seed)


@pytest.mark.slow
def test_without_the_waits_the_outputs_are_wrong(monkeypatch):
    """The check can fail: the products straight into the reduction (no waits) give wrong outputs."""
    from archgen.rtlgen.array import ArrayTop
    monkeypatch.setattr(ArrayTop, "_wait", lambda self, ctx, v: None)
    design, bounds, seed = _design(0)
    assert not verify_array_amaranth(design, bounds, seed=seed).outputs_exact


def test_deep_waits_are_refused_by_name():
    """Bounds whose iteration of j holds more than array.max_fifo_depth steps. (The memory system builds the form
    since H156: tests/dataflow/test_memctl_stream_waits.py.)"""
    design, _, _ = _design(0)
    check_memory_system(compile_array(design).fu_graph)
    with pytest.raises(SpecError, match="array.max_fifo_depth"):
        map_problem(design, {"i": 22, "j": 3, "k": 9}, compile_array(design).dataflow)      # 3 rounds x 22 steps


@pytest.mark.slow
def test_in_a_fused_design_every_dataflow_is_exact():
    """Fused with ws and a lead of j: each dataflow's product waits picked by the select (H146's fused waits)."""
    from archgen.verif.fused_amaranth import verify_fused_amaranth
    op, shape, mp, order, inner, bounds, seed = FIXED[0]
    design = _spec(op, shape, mp, order, fuse={"ws": {"spatial": {"k": 0}, "order": order},
                                              "lead": {"map": mp | {"j": "t_j + s0 - 2"}, "order": order,
                                                       "schedule": "map"}})
    runs = verify_fused_amaranth(design, design.fuse, bounds, seed=seed)
    assert [(r.dataflow, r.outputs_exact, r.rtl_cycles == r.model_cycles) for r in runs] == [
        ("m", True, True), ("ws", True, True), ("lead", True, True)]


def _random_conv(rng):
    """A random convolution with c on axis 0 and k or p on axis 1, another of n, k, p skewed along axis 0 (a lag or a
    lead, along axis 1 or not), the tile [q], [s, q] or [r, s, q] (the output streamed over q)."""
    shape = (int(rng.integers(2, 4)), int(rng.integers(1, 4)))
    across = str(rng.choice(["k", "p"]))
    skewed = str(rng.choice([d for d in ("n", "k", "p") if d != across]))
    sigma = (int(rng.choice([-2, -1, 1, 2])), int(rng.integers(-1, 2)) if shape[1] > 1 else 0)
    mp = {"n": "t_n", "k": "t_k", "p": "t_p", "q": "t_q", "c": f"{shape[0]}*t_c + s0", "r": "t_r", "s": "t_s"}
    mp[across] = f"{shape[1]}*t_{across} + s1" if shape[1] > 1 else f"t_{across}"
    mp[skewed] = _skewed_row(skewed, sigma, shape)
    inner = [["q"], ["s", "q"], ["r", "s", "q"]][int(rng.integers(0, 3))]
    order = [str(d) for d in rng.permutation([d for d in "nkpcrs" if d not in inner])] + inner
    bounds = {d: int(rng.integers(1, hi + 1)) for d, hi in zip("nkpqcrs", (2, 3, 3, 3, 5, 2, 3))}
    return _spec(CONV_OP, shape, mp, order, inner), bounds, int(rng.integers(0, 1000))


def _random_gemm(rng):
    """A random batched GEMM with k on axis 0 and i or j on axis 1, b skewed along axis 0 (and along axis 1 or not),
    the tile the other of i, j (the output streamed over it)."""
    shape = (int(rng.integers(2, 4)), int(rng.integers(1, 4)))
    across = str(rng.choice(["i", "j"]))
    other = "j" if across == "i" else "i"
    sigma = (int(rng.choice([-2, -1, 1, 2])), int(rng.integers(-1, 2)) if shape[1] > 1 else 0)
    mp = {"b": _skewed_row("b", sigma, shape), "i": "t_i", "j": "t_j", "k": f"{shape[0]}*t_k + s0"}
    mp[across] = f"{shape[1]}*t_{across} + s1" if shape[1] > 1 else f"t_{across}"
    order = [str(d) for d in rng.permutation([d for d in "bijk" if d != other])] + [other]
    bounds = {d: int(rng.integers(1, hi + 1)) for d, hi in zip("bijk", (3, 4, 4, 7))}
    return _spec(BGEMM, shape, mp, order, [other]), bounds, int(rng.integers(0, 1000))


def _random_sweep(seed: int, count: int, draw) -> collections.Counter:
    """``count`` random designs whose products wait across tiles, each exact (RTL == model); the others the draw makes
    (no wait outside the tile) are skipped, and only the depth refusal of the bounds is allowed."""
    rng = np.random.default_rng(seed)
    seen = collections.Counter()
    while seen["exact"] < count:
        design, bounds, case_seed = draw(rng)
        compiled = compile_array(design)        # every draw is built (no refusal of the form)
        if _outer_waits(compiled) and exact_unless_too_deep(_exact, design, bounds, case_seed):
            seen["exact"] += 1
            seen["psum"] += compiled.fu_graph.output.psum_in
    return seen


def test_random_default():
    assert _random_sweep(2150, 2, _random_conv)["exact"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("draw", [_random_conv, _random_gemm])
def test_random_convolutions_and_batched_gemms(draw):
    assert _random_sweep(150, 40, draw)["exact"] == 40


def test_explain_states_the_product_waits_across_tiles():
    """``--explain``: each FU's product waits whole iterations of j (tiles x steps, a run-time buffer), and the
    memory system builds it with each lane's tile lead."""
    from archgen.dataflow.explain import explain
    design, _, _ = _design(0)
    text = "\n".join(explain(design, "m"))
    assert "so each FU's product waits (O - offset(s)) whole iterations of t_j before the sum (output waits" in text
    assert ("FU (0,): 2 iteration(s) of t_j = 2 x (trips of t_k x steps per tile) steps, depth from the command: a "
            "buffer of 128 entries x 32 bits") in text
    assert "through the memory system each lane writes and reads the partial sums of its element of tile t - O" in text
