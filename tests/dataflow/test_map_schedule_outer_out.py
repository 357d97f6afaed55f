"""``schedule: map`` with a skewed loop the OUTPUT depends on outside the tile (issue 14; docs/dataflows.md "Skewed
output loops outside the tile"): a skewed tile loop the output uses, or one that leads a run of trailing reduction
loops and leaves the tile with the run's form. The loop runs L + span tiles (mappings/tiling.py ``outer_pads``), FU s
runs tile t as iteration t - offset(s) and is masked outside its own L tiles, so at each drain it writes its element
of tile t - offset(s): the host program's per-lane output index expects it, and the drains of its masked tiles are
padding (index -1, dropped). Checked in Amaranth's simulator (outputs exact against a tiling-independent loop nest,
RTL cycles == model cycles), alone and in a fused design (the fused top gates the per-tile flags by its dataflow,
H139); the memory system refuses it naming ``dataflows.X.schedule``; an output reduced along an axis the skew moves is
refused."""
import itertools

import numpy as np
import pytest

from archgen.dataflow.compile import compile_array, compile_fused
from archgen.dataflow.host import host_program, random_operands
from archgen.dataflow.memctl import check_memory_system
from archgen.mappings.tiling import map_problem, outer_pads
from test_map_schedule import _random_sigma, _skewed_row
from test_memctl_stream_outputs import run_design
from test_map_schedule_outer import CONV_OP, GEMM, _exact, _issue_cycles, _random_conv_rest, _random_outer_cases, _spec

GEMM_OUT = {"i": "3*t_i + s0", "j": "t_j - s0", "k": "t_k"}

# (operation, shape, map, order, inner, bounds, seed): the skewed output loop outside the tile
FIXED = [
    # the brief's example: the skew on the tile loop t_j (tile [k])
    (GEMM, (3,), GEMM_OUT, ["j", "i", "k"], None, {"i": 4, "j": 4, "k": 3}, 1),
    # j leads the run [j, k] and leaves the tile with the run's form; a lead (FUs further along run earlier)
    (GEMM, (3,), {"i": "3*t_i + s0", "j": "t_j + s0 - 2", "k": "t_k"}, ["i", "j", "k"], ["j", "k"],
     {"i": 5, "j": 3, "k": 2}, 2),
    # and the reduction loop k skewed inside the tile as well (its rows padded, FIFOs of the map's own)
    (GEMM, (3,), {"i": "3*t_i + s0", "j": "t_j - s0", "k": "t_k - s0"}, ["j", "i", "k"], ["k"],
     {"i": 3, "j": 3, "k": 4}, 3),
    # 1x4: n skewed outside the tile with partial-sum rounds of c (outside, before n)
    (CONV_OP, (1, 4), {"n": "t_n - s1", "k": "t_k", "p": "4*t_p + s1", "q": "t_q", "c": "t_c", "r": "t_r",
                       "s": "t_s"}, ["k", "p", "c", "n", "q", "r", "s"], ["r", "s"],
     {"n": 2, "k": 2, "p": 5, "q": 2, "c": 2, "r": 2, "s": 2}, 4),
    # 3x2: q skewed by a lag along axis 0 and a lead along axis 1, outside the tile [c, r, s]
    (CONV_OP, (3, 2), {"n": "t_n", "k": "3*t_k + s0", "p": "2*t_p + s1", "q": "t_q - s0 + s1 - 1", "c": "t_c",
                       "r": "t_r", "s": "t_s"}, ["n", "k", "p", "q", "c", "r", "s"], ["c", "r", "s"],
     {"n": 1, "k": 4, "p": 3, "q": 3, "c": 2, "r": 2, "s": 2}, 5),
]


def _outer_output_loops(design) -> list[str]:
    """The skewed loops outside the tile the compiled dataflow runs that the output depends on."""
    df = compile_array(design).dataflow
    return [p.loop for p in outer_pads(design, df) if design.operation.output.uses(p.loop)]


@pytest.mark.parametrize("op,shape,mp,order,inner,bounds,seed", FIXED[:3])
def test_the_briefs_gemm_and_its_forms_are_exact(op, shape, mp, order, inner, bounds, seed):
    design = _spec(op, shape, mp, order, inner)
    assert _outer_output_loops(design) == ["j"]
    _exact(design, bounds, seed)


def test_each_drain_carries_the_element_of_its_own_tile():
    """The skew is real on the output side: at tile t of j lane s drains C[i, t - s] (index -1 outside 0 <= t - s <
    J, the masked drains the host program drops), and j runs J + 2 tiles."""
    design = _spec(GEMM, (3,), GEMM_OUT, ["j", "i", "k"])
    compiled = compile_array(design)
    bounds = {"i": 3, "j": 2, "k": 3}
    mapping = map_problem(design, bounds, compiled.dataflow)
    assert mapping.trips()["j"] == 2 + 2 and mapping.n_tiles == 4
    prog = host_program(compiled.fu_graph, mapping, random_operands(compiled.fu_graph, mapping,
                                                                    np.random.default_rng(1)))
    for t, s in itertools.product(range(4), range(3)):
        want = [s, t - s] if 0 <= t - s < 2 else [-1, -1]
        assert prog.out_index[t, s].tolist() == want
        if want[0] >= 0:
            assert prog.expected[t, s] == prog.result[s, t - s]


def test_the_model_counts_l_plus_span_tiles():
    """The price: (J + span) / J as many tiles of j as the compressed build (the issue cycles follow)."""
    issued = _issue_cycles(GEMM_OUT, ["j", "i", "k"], {"i": 3, "j": 5, "k": 4})
    assert issued["map"] * 5 == issued["compressed"] * (5 + 2)


def test_the_memory_system_builds_it_and_the_reduced_form():
    """The memory system builds it since H149 (tests/dataflow/test_memctl_lane_skew_out.py); an output reduced along
    the axis the skew of its loop moves (k on axis 0, j skewed along it) is built at the array level since H148 / H150
    (held over the tile, one or two such loops: test_map_schedule_outer_reduce.py; streamed per step, as here:
    test_map_schedule_outer_stream.py) and through the memory system since H156 (it was refused there)."""
    check_memory_system(compile_array(_spec(GEMM, (3,), GEMM_OUT, ["j", "i", "k"])).fu_graph)     # raises if refused
    design = _spec(GEMM, (3,), {"k": "3*t_k + s0", "i": "t_i", "j": "t_j - s0"}, ["j", "k", "i"])
    check_memory_system(compile_array(design).fu_graph)
    ok, rtl, model, dma, modelled = run_design(design, {"i": 4, "j": 5, "k": 6}, 3, fits=True)
    assert ok and rtl == model and dma == modelled, (rtl, model, dma, modelled)


def _fused_with_a_spatial_partner(op, shape, mp, order, inner):
    """The map fused with a plain spatial dataflow of the same loop order (i on the array for the GEMM, k and p for
    the convolution)."""
    spatial = {"i": 0} if op == GEMM else ({"k": 0, "p": 1} if shape[0] > 1 else {"p": 1})
    return _spec(op, shape, mp, order, inner, fuse={"ws": {"spatial": spatial, "order": list(order)}})


@pytest.mark.parametrize("case", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow),
                                  pytest.param(4, marks=pytest.mark.slow)])
def test_in_a_fused_design_every_dataflow_is_exact(case):
    """The fused top runs it as the single top does (H139's per-tile flags gated by the dataflow; the drains of masked
    tiles are the host program's padding): both dataflows exact, RTL cycles == model cycles."""
    from archgen.verif.fused_amaranth import verify_fused_amaranth
    op, shape, mp, order, inner, bounds, seed = FIXED[case]
    design = _fused_with_a_spatial_partner(op, shape, mp, order, inner)
    assert [p.loop for p in outer_pads(design, compile_fused(design, ["m", "ws"]).view("m").dataflow)
            if design.operation.output.uses(p.loop)]
    runs = verify_fused_amaranth(design, design.fuse, bounds, seed=seed)
    assert [r.dataflow for r in runs] == ["m", "ws"]
    assert all(r.outputs_exact and r.rtl_cycles == r.model_cycles for r in runs), runs


def test_explain_states_the_schedule_and_its_cost():
    from archgen.dataflow.explain import explain
    text = "\n".join(explain(_spec(GEMM, (3,), GEMM_OUT, ["j", "i", "k"])))
    assert ("t_j runs K + 2 tiles, FU s on tile t - sigma.s and masked outside its own K tiles, each drain of C "
            "carrying its element of tile t - sigma.s") in text
    assert "15 steps at the reference bounds against 9 for the compressed build" in text
    default = "\n".join(explain(_spec(GEMM, (3,), GEMM_OUT, ["j", "i", "k"], schedule="compressed")))
    assert "why compressed: the skew is on a tile loop (t_j); the map's own schedule runs it K + span tiles" in default


def _random_outer_out_case(rng):
    """A random convolution with 1-2 of its output loops skewed (n, q, and k where axis 0 carries c: the output is
    then reduced along axis 0, so those skews run along axis 1 only), sometimes a reduction loop too; lags, leads
    and mixed signs, 1xN and 2-D, a random order and tile of 1-3 loops (partial-sum rounds of the loops outside),
    control -1..1, 500/1500 MHz."""
    shape = (int(rng.integers(1, 4)), int(rng.integers(2, 5)))
    leads = bool(rng.random() < 0.4)
    reduce0 = shape[0] > 1 and rng.random() < 0.4
    a0 = "c" if reduce0 else "k"
    mp = {d: f"t_{d}" for d in ("n", "k", "p", "q", "c", "r", "s")} | {"p": f"{shape[1]}*t_p + s1"}
    if shape[0] > 1:
        mp[a0] = f"{shape[0]}*t_{a0} + s0"
    outs = ["n", "q"] + (["k"] if reduce0 else [])
    for d in rng.choice(outs, size=int(rng.integers(1, 3)), replace=False):
        sigma = _random_sigma(rng, shape, leads)
        mp[str(d)] = _skewed_row(str(d), (0, sigma[1] or 1) if reduce0 else sigma, shape)
    if rng.random() < 0.4:
        d = str(rng.choice([x for x in ("c", "r", "s") if x != a0]))
        mp[d] = _skewed_row(d, _random_sigma(rng, shape, leads), shape)
    return _random_conv_rest(rng, shape, mp, {"p"} | ({a0} if shape[0] > 1 else set()), q=3)


def _random_cases(seed, count):
    """``count`` random cases with a skewed output loop outside the tile the array runs."""
    return _random_outer_cases(seed, count, _random_outer_out_case,
                               lambda design, pads: [p for p in pads if design.operation.output.uses(p.loop)])


def test_random_convolutions_are_exact():
    for design, bounds, seed in _random_cases(141, 2):
        _exact(design, bounds, seed)


@pytest.mark.slow
@pytest.mark.parametrize("op,shape,mp,order,inner,bounds,seed", FIXED[3:])
def test_convolutions_with_a_skewed_output_loop_outside_the_tile(op, shape, mp, order, inner, bounds, seed):
    design = _spec(op, shape, mp, order, inner)
    assert _outer_output_loops(design)
    _exact(design, bounds, seed)


@pytest.mark.slow
def test_random_convolutions_in_amaranth():
    """60 random convolutions with a skewed output loop outside the tile (some with skewed reduction loops inside
    or outside it too): every one exact, RTL == model cycles."""
    for design, bounds, seed in _random_cases(2027, 60):
        _exact(design, bounds, seed)
