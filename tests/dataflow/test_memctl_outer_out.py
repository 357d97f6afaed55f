"""A skewed loop outside the tile that the OUTPUT depends on, through the memory system (issue 14, ``schedule: map``;
docs/memory.md). The loop l runs L + span tiles and FU s drains its element of tile t - offset(s) (H141, the array
level). The output's write walk and partial-sum walk give each drained row its lead of -offset on l's tile level
(memctl ``lane_lead``) and drop the writes of the row's masked tiles (``PortWalk.tile_masks``: a write there would
alias another element of the box). Here the skew runs along the drained rows only (the lanes of one row share an
offset: one run per beat); a skew along the output's lanes is tests/dataflow/test_memctl_lane_skew_out.py. Checked in Amaranth (outputs exact, RTL cycles == model cycles, DRAM bytes RTL == model)."""
import numpy as np
import pytest

from archgen.arch.errors import SpecError
from archgen.dataflow.compile import compile_array
from archgen.dataflow.memctl import layer_program
from archgen.mappings.memory_tiling import plan_layer
from archgen.mappings.tiling import outer_pads
from test_map_schedule import _skewed_row
from test_map_schedule_outer import CONV_OP, _random_conv_rest, _spec
from test_memctl_stream_outputs import run_design

GEMM_B = "C[b,i,j] += A[b,i,k] * B[b,k,j]"

# (operation, shape, map, order, inner, bounds, seed): an output loop skewed along the array's rows (axis 0) only
ROWS = [
    # 2x2 conv, q lags along the rows, tile [c, r, s] (the output accumulated in place)
    (CONV_OP, (2, 2), {"n": "t_n", "k": "2*t_k + s0", "p": "2*t_p + s1", "q": "t_q - s0", "c": "t_c", "r": "t_r",
                       "s": "t_s"}, ["n", "k", "p", "q", "c", "r", "s"], ["c", "r", "s"],
     {"n": 1, "k": 4, "p": 3, "q": 3, "c": 2, "r": 2, "s": 2}, 5),
    # 3x2 conv, n leads along the rows, c outside the tile after it (partial-sum rounds read back per row)
    (CONV_OP, (3, 2), {"n": "t_n + s0 - 2", "k": "3*t_k + s0", "p": "2*t_p + s1", "q": "t_q", "c": "t_c",
                       "r": "t_r", "s": "t_s"}, ["k", "p", "n", "q", "c", "r", "s"], ["r", "s"],
     {"n": 2, "k": 3, "p": 3, "q": 2, "c": 2, "r": 2, "s": 2}, 6),
    # batched GEMM on 3x2, b lags by 2 per row, order [b, i, j, k]
    (GEMM_B, (3, 2), {"b": "t_b - 2*s0", "i": "3*t_i + s0", "j": "2*t_j + s1", "k": "t_k"}, ["b", "i", "j", "k"],
     ["k"], {"b": 3, "i": 4, "j": 3, "k": 3}, 7),
]


def _check(case, fits=True):
    op, shape, mp, order, inner, bounds, seed = case
    design = _spec(op, shape, mp, order, inner)
    df = compile_array(design).dataflow
    assert any(design.operation.output.uses(p.loop) for p in outer_pads(design, df))
    exact, rtl, model, moved, dram = run_design(design, bounds, seed, fits=fits)
    assert (exact, rtl) == (True, model), (case, rtl, model)
    assert {k: v for k, v in moved.items() if v} == {k: v for k, v in dram.items() if v}
    return rtl


def test_a_skew_along_the_rows_is_exact():
    _check(ROWS[0])


@pytest.mark.slow
@pytest.mark.parametrize("case", ROWS[1:])
def test_leads_partial_sums_and_gemm_are_exact(case):
    _check(case)


def test_the_write_walk_masks_each_rows_own_tiles():
    """The 2x2 conv's output walk: q's tile level masked with the rows' offsets (row r: offset r, both lanes of a
    row alike), and q runs Q + 1 tiles a block with the block's own Q as the mask's length."""
    design = _spec(*ROWS[0][:5])
    c = compile_array(design)
    prog = layer_program(c, plan_layer(design, ROWS[0][5], c.dataflow), spec_size=False)
    out = [w for w in prog.walks if w.operand == "O"]
    assert out and all(w.tile_masks == ((w.levels.index("tile:q"), (0, 0), 1),) for w in out)
    for row in prog.rows:
        w = out[0]
        tl = w.levels.index("tile:q")
        assert row[f"{w.port}_trips{tl}"] == row[f"{w.port}_tile_len@{tl}"] + 1


@pytest.mark.slow
def test_without_the_masks_the_outputs_are_wrong(monkeypatch):
    """The check can fail: with the masks dropped, the masked tiles' writes land in the box (aliasing)."""
    import archgen.dataflow.memctl as memctl
    monkeypatch.setattr(memctl, "_tile_masks", lambda *a: ())
    op, shape, mp, order, inner, bounds, seed = ROWS[0]
    exact, rtl, model, _moved, _dram = run_design(_spec(op, shape, mp, order, inner), bounds, seed, fits=True)
    assert rtl == model and not exact


def _random_rows_case(rng):
    """A random convolution on 2x2 to 3x3 with k on axis 0 and p on axis 1, 1-2 of n, q skewed along axis 0 only
    (lags and leads), sometimes a reduction loop skewed along any axis too; a random order and tile."""
    shape = (int(rng.integers(2, 4)), int(rng.integers(2, 4)))
    mp = {d: f"t_{d}" for d in ("n", "k", "p", "q", "c", "r", "s")} | {"k": f"{shape[0]}*t_k + s0",
                                                                      "p": f"{shape[1]}*t_p + s1"}
    for d in rng.choice(["n", "q"], size=int(rng.integers(1, 3)), replace=False):
        mp[str(d)] = _skewed_row(str(d), (int(rng.choice([-2, -1, 1, 2])), 0), shape)
    if rng.random() < 0.4:
        d = str(rng.choice(["c", "r", "s"]))
        mp[d] = _skewed_row(d, (int(rng.integers(-1, 2)), int(rng.integers(1, 2))), shape)
    return _random_conv_rest(rng, shape, mp, {"k", "p"}, q=3)


def random_rows_cases(seed, count):
    """``count`` random cases whose compiled dataflow runs a skewed output loop outside the tile."""
    rng = np.random.default_rng(seed)
    found = 0
    while found < count:
        design, bounds, s = _random_rows_case(rng)
        df = compile_array(design).dataflow
        if any(design.operation.output.uses(p.loop) for p in outer_pads(design, df)):
            found += 1
            yield design, bounds, s


@pytest.mark.slow
def test_random_convolutions_skewed_along_the_rows_are_exact():
    """12 random convolutions: each built one exact (RTL == model cycles, DRAM bytes equal); a streamed output whose
    lanes span both axes has the skew along its lanes too (scattered since H149, tests/dataflow/
    test_memctl_lane_skew_out.py), and only its bank clash may be refused (by name)."""
    assert sweep(random_rows_cases(147, 12), lambda design, e: "two lanes cannot write one bank in one cycle" in str(e)
                 and len({tuple(ln.fus[-1])[0] for ln in compile_array(design).fu_graph.output.lanes}) > 1) >= 10


def sweep(cases, refused) -> int:
    """Each (design, bounds, seed) through the memory system (the planner's command with ``buffer_fit``): built
    exact, RTL == model cycles, DRAM bytes equal, or refused as ``refused(design, err)`` allows; returns how many
    built."""
    built = 0
    for design, bounds, seed in cases:
        try:
            exact, rtl, model, moved, dram = run_design(design, bounds, seed, fits=True)
        except SpecError as e:
            assert refused(design, e), e
            continue
        built += 1
        assert (exact, rtl) == (True, model), (design.dataflows, bounds, seed)
        assert {k: v for k, v in moved.items() if v} == {k: v for k, v in dram.items() if v}
    return built


@pytest.mark.slow
@pytest.mark.parametrize("case,tile,order,blocks", [
    (0, {"n": 1, "k": 1, "p": 2, "q": 1}, ("n", "k", "p", "q"), 6),       # q one tile a block (each masks its own)
    (0, {"n": 1, "k": 2, "p": 1, "q": 2}, ("q", "k", "n", "p"), 4),       # q split 2 + 1, outermost
    (1, {"k": 1, "p": 1, "n": 1, "q": 2, "c": 1}, ("k", "p", "n", "q", "c"), 8),   # c split: adds onto partial sums
    (2, {"b": 2, "i": 1, "j": 2}, ("b", "i", "j"), 4)])                   # b split 2 + 1 (strides step down)
def test_blocks_that_cut_the_skewed_loop_are_exact(case, tile, order, blocks, monkeypatch):
    """Each block runs its own chunk + span tiles of the loop, its mask's length the chunk (``<port>_tile_len@``): the
    hand-given command replaces the planner's in ``run_design``."""
    from archgen.mappings.memory_tiling import make_command
    op, shape, mp, order0, inner, bounds, seed = ROWS[case]
    design = _spec(op, shape, mp, order0, inner)
    assert len(list(make_command(design, bounds, compile_array(design).dataflow, tile, order).blocks())) == blocks
    monkeypatch.setitem(run_design.__globals__, "plan_layer",
                        lambda d, b, df, fits=None: make_command(d, b, df, tile, order))
    exact, rtl, model, moved, dram = run_design(design, bounds, seed)
    assert exact and rtl == model, (rtl, model)
    assert {k: v for k, v in moved.items() if v} == {k: v for k, v in dram.items() if v}


@pytest.mark.slow
def test_the_one_fused_layer_core_runs_it():
    """Beside a spatial dataflow in the one fused layer core (its walks carry the masks; their fields are in the
    fused descriptor): every layer exact, RTL == model cycles, DRAM bytes equal."""
    from archgen.verif.fused_program_check import verify_fused_program
    from test_fused_outer_pads import _design
    op, shape, mp, order, inner, bounds, _seed = ROWS[0]
    design = _design(op, shape, {"m": {"map": mp, "order": order, "inner": inner, "schedule": "map"},
                                 "ws": {"spatial": {"k": 0, "p": 1}, "order": order}})
    runs = verify_fused_program(design, [("m", bounds), ("ws", bounds), ("m", bounds)], seed=3, simulator="amaranth")
    assert [r.dataflow for r in runs] == ["m", "ws", "m"]
    for r in runs:
        assert r.outputs_exact and r.rtl_cycles == r.model_cycles, (r.dataflow, r.rtl_cycles, r.model_cycles)
        assert r.detail["rtl_dram_bytes"] == r.dram_bytes, r.dataflow
