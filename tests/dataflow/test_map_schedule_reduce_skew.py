"""``schedule: map`` with an output reduced along an array axis that a padded loop it uses is skewed along (issue 14;
docs/dataflows.md "Outputs reduced along a skewed axis"). The FUs a lane sums work on different positions of the
padded loop at one step, so each FU's product waits its lane's offset difference in issued steps before the adder
tree or partial-sum chain (dataflow/reduce_skew.py; with loops after it in the tile a buffer of run-time depth); the
lane streams the element of its largest offset. Checked in Amaranth (outputs exact, RTL cycles == model cycles) on
fixed and random maps, 2-D and 3-D arrays, lags, leads and mixed signs, trees and chains; a wait longer than the
buffers is refused (fused: tests/dataflow/test_fused_reduce_skew.py)."""
import numpy as np
import pytest

from archgen.arch.errors import SpecError
from archgen.dataflow.compile import compile_array
from archgen.dataflow.reduce_skew import lane_offsets, product_waits
from archgen.verif.array_amaranth import verify_array_amaranth

from test_map_schedule import CONV_OP, _skewed_row
from test_map_schedule_outputs import GEMM, _held

BATCHED = "C[i,j] += A[i,k,m] * B[k,m,j]"

# (operation, shape, map, order, inner, control, bounds): the output reduced along an axis its padded loop is
# skewed along
FIXED = [
    # the brief's GEMM on 2x2: i on axis 0, k on axis 1 (C reduced across it), j skewed along axis 1
    pytest.param(GEMM, (2, 2), {"i": "2*t_i + s0", "k": "2*t_k + s1", "j": "t_j - s1"}, ["i", "k", "j"], ["j"], None,
                 {"i": 3, "j": 5, "k": 4}, id="gemm-2x2-tree"),
    pytest.param(GEMM, (2, 3), {"k": "2*t_k + s0", "i": "3*t_i + s1", "j": "t_j - s0"}, ["k", "i", "j"], ["j"],
                 [1, 1], {"i": 4, "j": 4, "k": 3}, id="gemm-2x3-chain"),
    pytest.param(GEMM, (2, 3), {"i": "2*t_i + s0", "k": "3*t_k + s1", "j": "t_j + 2*s1 - 4"}, ["i", "k", "j"], ["j"],
                 None, {"i": 3, "j": 5, "k": 5}, id="gemm-2x3-lead"),
    pytest.param(GEMM, (2, 3), {"i": "2*t_i + s0", "k": "3*t_k + s1", "j": "t_j - s0 + s1 - 2"}, ["i", "k", "j"],
                 ["j"], [0, 1], {"i": 3, "j": 4, "k": 4}, id="gemm-2x3-mixed-chain"),
    pytest.param(BATCHED, (2, 2, 2), {"i": "2*t_i + s0", "k": "2*t_k + s1", "m": "2*t_m + s2", "j": "t_j - s1 - 2*s2"},
                 ["i", "k", "m", "j"], ["j"], None, {"i": 3, "j": 4, "k": 3, "m": 2}, id="batched-2x2x2"),
    pytest.param(CONV_OP, (2, 3), {"n": "t_n", "c": "2*t_c + s0", "p": "3*t_p + s1", "k": "t_k",
                                   "q": "t_q - s0 - s1", "r": "t_r", "s": "t_s"},
                 ["n", "k", "p", "c", "r", "s", "q"], ["q"], None,
                 {"n": 1, "k": 2, "p": 4, "q": 3, "c": 3, "r": 2, "s": 2}, id="conv-2x3-c-on-rows"),
]


@pytest.mark.parametrize("op,shape,mp,order,inner,control,bounds", FIXED)
def test_an_output_reduced_along_a_skewed_axis_is_exact(op, shape, mp, order, inner, control, bounds):
    """The lane's FUs wait different numbers of steps (so the reduction needs them), outputs exact, cycles equal."""
    design = _held(op, shape, mp, order, inner, control=control)
    fg = compile_array(design).fu_graph
    assert fg.output.tree_axes or fg.output.reuse_axes                     # reduced across the array
    waits = product_waits(fg)
    assert waits and all(any(s in waits for s in lane.fus) for lane in fg.output.lanes)
    assert lane_offsets(fg)
    res = verify_array_amaranth(design, bounds, seed=3)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles


def test_without_the_waits_the_lanes_sum_different_positions(monkeypatch):
    """The waits are what makes it exact: without them every fixed 2-D case is wrong (the check can fail)."""
    import archgen.rtlgen.array as array
    monkeypatch.setattr(array, "product_waits", lambda fg: {})
    for case in FIXED[:4]:
        op, shape, mp, order, inner, control, bounds = case.values
        res = verify_array_amaranth(_held(op, shape, mp, order, inner, control=control), bounds, seed=3)
        assert not res.outputs_exact, case.id


# loops after the padded loop in the tile: a wait of whole rows of them, a buffer of run-time depth
AFTER = [
    pytest.param("C[i,j,m] += A[i,k,m] * B[k,j]", (2, 2), {"i": "2*t_i + s0", "k": "2*t_k + s1", "j": "t_j - s1",
                                                         "m": "t_m"}, ["i", "k", "j", "m"], ["j", "m"], None,
                 {"i": 3, "j": 3, "k": 4, "m": 3}, id="gemm-2x2-loop-after"),
    pytest.param("C[i,j,m] += A[i,k,m] * B[k,j]", (2, 3), {"i": "2*t_i + s0", "k": "3*t_k + s1", "j": "t_j + s1 - 2",
                                                         "m": "t_m - s0"}, ["i", "k", "j", "m"], ["j", "m"], None,
                 {"i": 3, "j": 3, "k": 4, "m": 2}, id="gemm-2x3-lead-padded-loop-after"),
    pytest.param(CONV_OP, (1, 4), {"n": "t_n - s1", "k": "t_k", "p": "t_p", "c": "4*t_c + s1", "q": "t_q", "r": "t_r",
                                   "s": "t_s"}, ["k", "p", "c", "r", "s", "n", "q"], ["n", "q"], [0, 1],
                 {"n": 3, "k": 2, "p": 2, "q": 3, "c": 5, "r": 2, "s": 2}, id="conv-1x4-n-before-q"),
]


@pytest.mark.parametrize("op,shape,mp,order,inner,control,bounds", AFTER)
def test_loops_after_the_padded_loop_wait_whole_rows(monkeypatch, op, shape, mp, order, inner, control, bounds):
    """A wait of n iterations of l is n x (the steps of the loops after l) at run time: exact, cycles equal; without
    the waits wrong."""
    design = _held(op, shape, mp, order, inner, control=control)
    res = verify_array_amaranth(design, bounds, seed=1)
    assert res.outputs_exact and res.rtl_cycles == res.model_cycles, res.detail
    import archgen.rtlgen.array as array
    monkeypatch.setattr(array, "product_waits", lambda fg: {})
    assert not verify_array_amaranth(design, bounds, seed=1).outputs_exact


def test_a_wait_longer_than_the_buffers_is_refused():
    """The wait buffers hold array.max_fifo_depth steps per iteration, like the delay connections' FIFOs."""
    from archgen.mappings.tiling import map_problem
    op, shape, mp, order, inner, control, bounds = AFTER[0].values
    design = _held(op, shape, mp, order, inner, control=control)
    df = compile_array(design).dataflow
    map_problem(design, {**bounds, "m": design.max_fifo_depth}, df)
    with pytest.raises(SpecError) as err:
        map_problem(design, {**bounds, "m": design.max_fifo_depth + 1}, df)
    assert err.value.problems[0].path == "array.max_fifo_depth"
    assert f"output terms wait whole steps of t_j = {design.max_fifo_depth + 1} array steps" in err.value.problems[0].message


def _sigma(rng, shape, leads, axes):
    """A skew per array axis, nonzero only on ``axes`` (of extent > 1), one at least: 0 to 2, or -2 to 2 with
    ``leads``."""
    while True:
        sigma = tuple(int(rng.integers(-2 if leads else 0, 3)) if a in axes and e > 1 else 0
                      for a, e in enumerate(shape))
        if any(sigma):
            return sigma


def _random_conv_case(rng):
    """A random convolution on a 2-D array whose axes carry k or c (axis 0) and p, c or r (axis 1), one of them at
    least reduced; its tile one or both of n, q in any order, one skewed along the reduced axes (lags, leads, mixed
    signs), the other along any axes or not at all; the other loops outside."""
    while True:
        a0, a1 = str(rng.choice(["k", "c"])), str(rng.choice(["p", "c", "r"]))
        if a0 != a1 and "k" + "p" != a0 + a1:
            break
    shape = (int(rng.integers(2, 4)), int(rng.integers(2, 4)))
    leads = bool(rng.random() < 0.4)
    reduced = [a for a, d in enumerate((a0, a1)) if d in ("c", "r")]
    tile = [str(d) for d in rng.permutation(["n", "q"])][: int(rng.integers(1, 3))]
    mp = {d: f"t_{d}" for d in ("n", "k", "c", "p", "q", "r", "s")}
    mp.update({a0: f"{shape[0]}*t_{a0} + s0", a1: f"{shape[1]}*t_{a1} + s1"})
    waited = str(rng.choice(tile))
    mp[waited] = _skewed_row(waited, _sigma(rng, shape, leads, reduced), shape)
    for d in tile:
        if d != waited and rng.random() < 0.5:
            mp[d] = _skewed_row(d, _sigma(rng, shape, leads, (0, 1)), shape)
    outer = [str(d) for d in rng.permutation([d for d in mp if d not in tile])]
    low = -1 if leads else 0
    design = _held(CONV_OP, shape, mp, outer + tile, tile,
                   control=[int(rng.integers(low, 2)), int(rng.integers(low, 2))], clock=int(rng.choice([500, 1500])))
    bounds = {d: int(rng.integers(1, n + 1)) for d, n in {"n": 2, "k": 3, "c": 3, "p": 4, "q": 4, "r": 3,
                                                          "s": 2}.items()}
    return design, bounds


def _random_batched_case(rng):
    """A random batched GEMM ``C[i,j] += A[i,k,m] * B[k,m,j]`` on a 3-D array carrying i, k, m in any order, j the
    tile skewed along the k or m axis at least (lags, leads, mixed signs)."""
    reduced = []
    while not reduced:
        shape = tuple(int(rng.integers(1, 3)) for _ in range(2)) + (2,)
        axes = [str(d) for d in rng.permutation(["i", "k", "m"])]
        reduced = [a for a, d in enumerate(axes) if d != "i" and shape[a] > 1]
    leads = bool(rng.random() < 0.4)
    mp = {d: f"{shape[a]}*t_{d} + s{a}" if shape[a] > 1 else f"t_{d}" for a, d in enumerate(axes)}
    mp["j"] = _skewed_row("j", _sigma(rng, shape, leads, reduced), shape)
    low = -1 if leads else 0
    design = _held(BATCHED, shape, mp, axes + ["j"], ["j"], control=[int(rng.integers(low, 2)) for _ in shape],
                   clock=int(rng.choice([500, 1500])))
    return design, {d: int(rng.integers(1, 5)) for d in ("i", "j", "k", "m")}


@pytest.mark.parametrize("count", [pytest.param(2, id="2"), pytest.param(40, id="40", marks=pytest.mark.slow)])
@pytest.mark.parametrize("make,seed", [pytest.param(_random_conv_case, 142, id="conv-2d"),
                                       pytest.param(_random_batched_case, 1142, id="batched-3d")])
def test_random_reductions_along_skewed_axes_in_amaranth(make, seed, count):
    """Random maps whose output lanes wait: all exact, RTL cycles == model cycles."""
    rng = np.random.default_rng(seed)
    for t in range(count):
        design, b = make(rng)
        fg = compile_array(design).fu_graph
        assert product_waits(fg), design.dataflows[0].ts_map
        res = verify_array_amaranth(design, b, seed=t)
        assert res.outputs_exact and res.rtl_cycles == res.model_cycles, (design.dataflows[0].ts_map, b, t, res.detail)


# a fused design builds the waits too (H146): tests/dataflow/test_fused_reduce_skew.py
