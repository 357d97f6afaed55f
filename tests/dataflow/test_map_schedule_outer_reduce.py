"""``schedule: map`` with a skewed loop l OUTSIDE the tile that the output uses, skewed along an array axis the output
is reduced along (issue 14; docs/dataflows.md "Skewed output loops outside the tile"). The output is held per FU over
the tile (no adder tree or chain is derived across that axis), and at a drain the FUs of one lane hold different tiles
of l. Each FU's drained sum waits n_s = O_l - offset_l(s) iterations of l, n_s x D drains (D the tiles of one
iteration of l), and the lane's representative row (its FU of offset O_l) drains the sum (dataflow/reduce_skew.py
``drain_groups``, rtlgen/array.py ``_waited_drain``). Checked in Amaranth's simulator: outputs exact against a
tiling-independent loop nest, RTL cycles == model cycles. The memory system builds it since H154
(tests/dataflow/test_memctl_drain_waits.py); fused designs build it (tests/dataflow/test_fused_drain_waits.py)."""
import numpy as np
import pytest

from archgen.arch.errors import SpecError
from archgen.dataflow.compile import compile_array
from archgen.dataflow.host import host_program, random_operands
from archgen.dataflow.memctl import check_memory_system
from archgen.dataflow.reduce_skew import drain_groups
from archgen.mappings.tiling import map_problem
from test_map_schedule import _skewed_row
from test_map_schedule_outer import CONV_OP, GEMM, _exact, _spec

BRIEF = {"n": "t_n - s0", "k": "t_k", "p": "2*t_p + s1", "q": "t_q", "c": "2*t_c + s0", "r": "t_r", "s": "t_s"}
ORDER = ["n", "k", "p", "c", "q", "r", "s"]

# (operation, shape, map, order, inner, bounds, seed)
FIXED = [
    # the brief's example: n lags along axis 0, which carries c (partial-sum rounds of c after n: D = 16 tiles)
    (CONV_OP, (2, 2), BRIEF, ORDER, ["r", "s"], {"n": 3, "k": 2, "p": 3, "q": 2, "c": 4, "r": 2, "s": 2}, 1),
    # q leads along axis 0 and is the last loop outside the tile (D = 1)
    (CONV_OP, (2, 2), BRIEF | {"n": "t_n", "q": "t_q + s0 - 1"}, ORDER, ["r", "s"],
     {"n": 1, "k": 2, "p": 3, "q": 4, "c": 4, "r": 2, "s": 2}, 2),
    # 3x2: n leads along axis 0 and lags along axis 1 (4 offsets), c's rounds before n's tiles
    (CONV_OP, (3, 2), BRIEF | {"n": "t_n + s0 - s1 - 2", "c": "3*t_c + s0"}, ["n", "c", "k", "p", "q", "r", "s"],
     ["r", "s"], {"n": 3, "k": 2, "p": 3, "q": 2, "c": 5, "r": 2, "s": 2}, 3),
    # GEMM on 2x2, k on axis 0 (one-step tiles, partial-sum rounds of k), j lags along it
    (GEMM, (2, 2), {"i": "2*t_i + s1", "j": "t_j - s0", "k": "2*t_k + s0"}, ["j", "i", "k"], None,
     {"i": 3, "j": 3, "k": 5}, 4),
]


@pytest.mark.parametrize("case", range(len(FIXED)))
def test_fixed_cases_are_exact(case):
    op, shape, mp, order, inner, bounds, seed = FIXED[case]
    design = _spec(op, shape, mp, order, inner)
    assert drain_groups(compile_array(design).fu_graph)
    _exact(design, bounds, seed)


def test_the_representative_drains_its_group_and_the_other_rows_are_padding():
    """The brief's 2x2: FU (1, x) (offset 1) drains the element of tile t_n - 1 (index -1 while t_n < 1 or t_n > N),
    FU (0, x) waits 1 iteration of n = 16 tiles and its row is padding (0)."""
    op, shape, mp, order, inner, bounds, seed = FIXED[0]
    design = _spec(op, shape, mp, order, inner)
    compiled = compile_array(design)
    assert drain_groups(compiled.fu_graph) == (((1, 0), (((0, 0), (("n", 1),)),)), ((1, 1), (((0, 1), (("n", 1),)),)))
    mapping = map_problem(design, bounds, compiled.dataflow)
    prog = host_program(compiled.fu_graph, mapping, random_operands(compiled.fu_graph, mapping,
                                                                    np.random.default_rng(seed)))
    rows = prog.out_index.reshape(mapping.n_tiles, 2, 2, 4)
    assert (rows[:, 0] == -1).all() and (prog.expected.reshape(mapping.n_tiles, 2, 2)[:, 0] == 0).all()
    tiles_n = mapping.n_tiles // 16
    for t in range(mapping.n_tiles):
        n = t // 16 - 1
        assert rows[t, 1, 0, 0] == (n if 0 <= n < tiles_n - 1 else -1)      # lane 1 is ragged in p (3 on 2)


def test_without_the_waits_the_outputs_are_wrong(monkeypatch):
    """The check can fail: the drain without the waits (each row its own FU's sum) is not exact."""
    from archgen.rtlgen.array import ArrayTop
    monkeypatch.setattr(ArrayTop, "_waited_drain", lambda self, ctx, outs, drain: outs)
    from archgen.verif.array_amaranth import verify_array_amaranth
    op, shape, mp, order, inner, bounds, seed = FIXED[0]
    assert not verify_array_amaranth(_spec(op, shape, mp, order, inner), bounds, seed=seed).outputs_exact


def test_where_it_is_not_built_it_is_refused_by_name():
    """Bounds whose iteration of l holds more than array.max_fifo_depth tiles. (The memory system builds the form
    since H154: its check passes.)"""
    design = _spec(CONV_OP, (2, 2), BRIEF, ORDER, ["r", "s"])
    check_memory_system(compile_array(design).fu_graph)          # raises if refused
    compiled = compile_array(design)
    big = {"n": 2, "k": 5, "p": 8, "q": 4, "c": 2, "r": 1, "s": 1}
    with pytest.raises(SpecError, match="array.max_fifo_depth"):      # the bounds, as archgen sim plans them
        map_problem(design, big, compiled.dataflow)
    mapping = map_problem(design, big, compiled.dataflow, fifo_check=False)
    with pytest.raises(SpecError, match="array.max_fifo_depth"):      # and the host program (verify) itself
        host_program(compiled.fu_graph, mapping, random_operands(compiled.fu_graph, mapping,
                                                                 np.random.default_rng(0)))


def _random_case(rng, loops=1):
    """A random convolution with c on axis 0 (the output is reduced along it) and k or p on axis 1, ``loops`` of its
    other output loops skewed along axis 0 by a lag or a lead (and along axis 1 or not), outside the tile [r, s] or
    [s]."""
    shape = (int(rng.integers(2, 4)), int(rng.integers(1, 4)))
    across = str(rng.choice(["k", "p"]))
    skewed = str(rng.choice([d for d in ("n", "q", "k", "p") if d != across]))
    sigma = (int(rng.choice([-2, -1, 1, 2])), int(rng.integers(-1, 2)) if shape[1] > 1 else 0)
    mp = {"n": "t_n", "k": "t_k", "p": "t_p", "q": "t_q", "c": f"{shape[0]}*t_c + s0", "r": "t_r", "s": "t_s"}
    mp[across] = f"{shape[1]}*t_{across} + s1" if shape[1] > 1 else f"t_{across}"
    mp[skewed] = _skewed_row(skewed, sigma, shape)
    inner = ["r", "s"] if rng.random() < 0.6 else ["s"]
    outer = [d for d in "nkpqcrs" if d not in inner]
    order = [str(d) for d in rng.permutation(outer)] + inner
    bounds = {d: int(rng.integers(1, hi + 1)) for d, hi in zip("nkpqcrs", (2, 3, 3, 3, 5, 2, 3))}
    seed = int(rng.integers(0, 1000))
    others = [d for d in ("n", "q", "k", "p") if d not in (across, skewed)]
    for extra in (rng.permutation(others)[:loops - 1] if loops > 1 else ()):
        sigma = (int(rng.choice([-2, -1, 1, 2])), int(rng.integers(-1, 2)) if shape[1] > 1 else 0)
        mp[str(extra)] = _skewed_row(str(extra), sigma, shape)
    return _spec(CONV_OP, shape, mp, order, inner), bounds, seed


BGEMM = "C[b,i,j] += A[b,i,k] * B[b,k,j]"


def _random_gemm(rng, loops=1):
    """A random batched GEMM with k on axis 0 and i or j on axis 1, one-step tiles (partial-sum rounds of k), b or the
    other of i, j skewed along axis 0 (and along axis 1 or not); with ``loops`` = 2 both."""
    shape = (int(rng.integers(2, 4)), int(rng.integers(1, 4)))
    across = str(rng.choice(["i", "j"]))
    skewed = str(rng.choice(["b", "j" if across == "i" else "i"]))
    sigma = (int(rng.choice([-2, -1, 1, 2])), int(rng.integers(-1, 2)) if shape[1] > 1 else 0)
    mp = {"b": "t_b", "i": "t_i", "j": "t_j", "k": f"{shape[0]}*t_k + s0"}
    mp[across] = f"{shape[1]}*t_{across} + s1" if shape[1] > 1 else f"t_{across}"
    mp[skewed] = _skewed_row(skewed, sigma, shape)
    order = [str(d) for d in rng.permutation(list("bijk"))]
    bounds = {d: int(rng.integers(1, hi + 1)) for d, hi in zip("bijk", (2, 4, 4, 7))}
    seed = int(rng.integers(0, 1000))
    if loops > 1:
        other = "b" if skewed != "b" else "j" if across == "i" else "i"
        sigma = (int(rng.choice([-2, -1, 1, 2])), int(rng.integers(-1, 2)) if shape[1] > 1 else 0)
        mp[other] = _skewed_row(other, sigma, shape)
    return _spec(BGEMM, shape, mp, order), bounds, seed


def exact_unless_too_deep(check, design, bounds, seed) -> bool:
    """``check(design, bounds, seed)`` (it asserts exact, RTL == model); False when only the depth refusal of the
    bounds stops it (array.max_fifo_depth), never a refusal of the form."""
    try:
        check(design, bounds, seed)
    except SpecError as err:
        assert all(p.path == "array.max_fifo_depth" for p in err.problems), (design.dataflows, err)
        return False
    return True


def _random_sweep(seed: int, count: int, draw=_random_case):
    rng = np.random.default_rng(seed)
    done = 0
    while done < count:
        design, bounds, case_seed = draw(rng)
        if drain_groups(compile_array(design).fu_graph):        # every draw is built (no refusal of the form)
            done += exact_unless_too_deep(_exact, design, bounds, case_seed)


def test_random_convolutions_and_gemms_default():
    _random_sweep(2027, 3)
    _random_sweep(2027, 2, _random_gemm)


@pytest.mark.slow
@pytest.mark.parametrize("draw", [_random_case, _random_gemm])
def test_random_convolutions_and_gemms(draw):
    _random_sweep(148, 40, draw)


# two such loops (n lags along axis 0, q leads along it): no FU has both largest offsets, so the representative waits
# too and its partial sum is added at the drain (reduce_skew.py ``rep_waits``, rtlgen/array.py ``drain_psum``)
TWO = BRIEF | {"q": "t_q + s0 - 1"}
TWO_FIXED = [
    (TWO, ORDER, {"n": 3, "k": 2, "p": 3, "q": 2, "c": 4, "r": 2, "s": 2}, 1),
    (TWO, ["n", "k", "p", "q", "c", "r", "s"], {"n": 2, "k": 2, "p": 2, "q": 3, "c": 4, "r": 2, "s": 2}, 2),
]


def test_two_skewed_loops_wait_on_both():
    """The brief's conv with q skewed too: every FU waits (n_n x D_n + n_q x D_q drains), the group drains its element
    of (t_n - 1, t_q - 1) from row 1, and c's partial sums (2 rounds) reach the drain: exact, RTL == model."""
    mp, order, bounds, seed = TWO_FIXED[0]
    design = _spec(CONV_OP, (2, 2), mp, order, ["r", "s"])
    assert drain_groups(compile_array(design).fu_graph) == tuple(
        ((1, x), (((0, x), (("n", 1),)), ((1, x), (("q", 1),)))) for x in (0, 1))
    assert _exact(design, bounds, seed).rtl_cycles == 579


@pytest.mark.slow
def test_two_skewed_loops_with_c_last_outside_the_tile():
    mp, order, bounds, seed = TWO_FIXED[1]
    _exact(_spec(CONV_OP, (2, 2), mp, order, ["r", "s"]), bounds, seed)


@pytest.mark.slow
def test_two_loops_without_the_partial_sum_at_the_drain_are_wrong(monkeypatch):
    """The check can fail: a waiting representative whose partial sum goes into its accumulator (as with one loop)
    carries it to a later drain, and the outputs are wrong."""
    import archgen.rtlgen.array as array
    from archgen.verif.array_amaranth import verify_array_amaranth
    monkeypatch.setattr(array, "rep_waits", lambda groups: {})
    mp, order, bounds, seed = TWO_FIXED[0]
    assert not verify_array_amaranth(_spec(CONV_OP, (2, 2), mp, order, ["r", "s"]), bounds, seed=seed).outputs_exact


def _random_two(rng):
    """A random convolution as :func:`_random_case` with a second output loop skewed along axis 0 (both outside the
    tile)."""
    return _random_case(rng, loops=2)


def _random_two_gemm(rng):
    return _random_gemm(rng, loops=2)


def test_random_two_loops_default():
    _random_sweep(2150, 2, _random_two)
    _random_sweep(2150, 1, _random_two_gemm)


@pytest.mark.slow
@pytest.mark.parametrize("draw", [_random_two, _random_two_gemm])
def test_random_two_loops(draw):
    """Random convolutions and batched GEMMs with two such loops: exact, RTL == model."""
    _random_sweep(150, 40, draw)
