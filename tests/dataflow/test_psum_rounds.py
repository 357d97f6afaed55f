"""A reduction loop of the tile before an output-dependent inner loop (dataflow/interconnect.py ``psum_rounds``;
docs/dataflows.md "A reduction loop outside an output-dependent inner loop").

The 1-D GEMM ``C[i,j] += A[i,k] * B[k,j]`` on [3], spatial {i: 0}, order [i, k, j] (tile [k, j]) updates C[i, j]
for every j within each k: a read-modify-write per step, refused before 2026-12-05 (1,112 specs of the refusal
search). It runs as the dataflow with the tile's loops up to its last reduction loop that an output-dependent loop
follows moved out of the tile (here k: tiles of [j]), the output streamed out per step and its partial sums of
the previous k brought back in through the array's partial-sum port. These tests check, independently of the
interconnect, that every iteration keeps its FU and its place in the step sequence, the model's gaps between
tiles against the rule docs/dataflows.md states, the --explain and manifest wording, and small cases in Amaranth's
simulator (outputs exact, RTL cycles == model cycles; tests/verif/test_array_psum_rounds.py on Verilator)."""
from __future__ import annotations

import pytest
from test_reduction_runs import CONV2, GEMM, _design, _walk

from archgen.dataflow.compile import compile_array
from archgen.dataflow.explain import explain
from archgen.dataflow.interconnect import psum_round_split, psum_rounds_of, reduction_runs_of
from archgen.dataflow.ir import Role
from archgen.mappings.tiling import map_problem
from archgen.sim.array_model import simulate_array
from archgen.verif.array_amaranth import verify_array_amaranth

CONV1 = ("O[k,p] += W[k,r] * I[p+r]", {"W": "int8", "I": "int8", "O": "int32"}, {"k": 3, "p": 5, "r": 3})

# (operation, shape, dataflow, loops moved out of the tile, the tile left, the tile the array runs, a problem)
CASES = [
    (GEMM, [3], {"spatial": {"i": 0}, "order": ["i", "k", "j"], "control": [0]}, ("k",), ("j",), ("j",),
     {"i": 5, "j": 3, "k": 4}),
    (GEMM, [3], {"spatial": {"j": 0}, "order": ["k", "j", "i"], "control": [1]}, (), None, None,
     {"i": 4, "j": 5, "k": 3}),   # not of the class: the tile [i] has no reduction loop (checked below)
    (GEMM, [3], {"spatial": {"j": 0}, "order": ["j", "k", "i"], "control": [1]}, ("k",), ("i",), ("i",),
     {"i": 4, "j": 5, "k": 3}),
    (CONV1, [2], {"spatial": {"k": 0}, "order": ["k", "r", "p"], "control": [1]}, ("r",), ("p",), ("p",),
     {"k": 3, "p": 4, "r": 3}),
    # a trailing reduction run after the output-dependent loops: [c, p, r] -> [p, r] -> runs of [r]
    (CONV2, [2, 2], {"spatial": {"k": 0, "q": 1}, "order": ["k", "q", "c", "p", "r"], "control": [1, 1]},
     ("c",), ("p", "r"), ("r",), {"k": 3, "p": 3, "q": 3, "c": 2, "r": 3}),
    # two reduction loops before the output-dependent one, reduced by a chain along axis 1
    (CONV2, [2, 2], {"spatial": {"k": 0, "q": 1}, "order": ["k", "q", "r", "c", "p"], "control": [1, 1]},
     ("r", "c"), ("p",), ("p",), {"k": 3, "p": 3, "q": 3, "c": 2, "r": 3}),
    # interleaved: [r, k, c, p] (O[k, p] recurs at two distances) -> everything up to c moves out: tiles of [p]
    (CONV2, [3], {"spatial": {"q": 0}, "order": ["q", "r", "k", "c", "p"], "control": [0]},
     ("r", "k", "c"), ("p",), ("p",), {"k": 3, "p": 3, "q": 4, "c": 2, "r": 2}),
    (CONV2, [2, 2, 2], {"spatial": {"c": 0, "k": 1, "p": 2}, "order": ["c", "k", "p", "r", "q"],
                        "control": [1, 1, 0]}, ("r",), ("q",), ("q",), {"k": 3, "p": 3, "q": 2, "c": 3, "r": 3}),
]
IDS = ["gemm-1d-ikj", "gemm-1d-not-of-the-class", "gemm-1d-jki-skewed", "conv1-2", "conv2-2x2-trailing-run",
       "conv2-2x2-two-reductions", "conv2-3-interleaved", "conv2-2x2x2-psum-chain"]
BUILT = [c for c in CASES if c[3]]
BUILT_IDS = [i for i, c in zip(IDS, CASES) if c[3]]


@pytest.mark.parametrize("op, shape, df, moved, rest, runs, bounds", CASES, ids=IDS)
def test_the_loops_moved_out_of_the_tile(op, shape, df, moved, rest, runs, bounds):
    design = _design(op, shape, df)
    split = psum_rounds_of(design, design.dataflow())
    if not moved:
        assert split is None
        return
    assert split.moved == moved and split.rest == rest
    assert compile_array(design).dataflow.inner_dims() == runs
    assert (reduction_runs_of(design, design.dataflow()) is not None) == (rest != runs)


@pytest.mark.parametrize("op, shape, df, moved, rest, runs, bounds", BUILT, ids=BUILT_IDS)
def test_each_iteration_keeps_its_fu_and_its_place_in_the_step_sequence(op, shape, df, moved, rest, runs, bounds):
    """Walked from the two dataflows' definitions (tiles over the outer loops, steps over the inner loops, both
    lexicographic): the spec's tile and the form the array runs give every iteration the same FU and step."""
    design = _design(op, shape, df)
    spec_df, compiled = design.dataflow(), compile_array(design)
    assert compiled.dataflow.order == spec_df.order
    assert _walk(design, spec_df, bounds) == _walk(design, compiled.dataflow, bounds)
    out = compiled.fu_graph.output
    assert out.psum_in                       # partial sums of the moved reduction loops come back in
    assert out.role is (Role.ACCUMULATE if rest != runs else Role.STREAM_OUT)


@pytest.mark.parametrize("op, shape, df, moved, rest, runs, bounds",
                         [c for c in BUILT if c[4] == c[5]], ids=[i for i, c in zip(BUILT_IDS, BUILT) if c[4] == c[5]])
def test_tiles_issue_back_to_back_unless_shorter_than_a_reload_or_the_read_after_write(op, shape, df, moved, rest,
                                                                                        runs, bounds):
    """The model's cycles between consecutive tiles' first steps (the output streamed out): the tile's steps S,
    or longer for short tiles. An input constant over the tile left is stationary: the loader refills the shadow
    registers after the previous tile's swap reached every FU (swap skew + 1 cycles after its first step) and takes
    rows cycles; a tile that reads partial sums back waits for the previous tile's first beat to have left
    (output latency + 1 cycles after its first step). Gap = max(S, those bounds); docs/dataflows.md has the table."""
    design = _design(op, shape, df)
    compiled = compile_array(design)
    sch = compiled.schedule
    for length in (1, 2, 3, 6):
        b = dict(bounds, **{rest[-1]: length})
        mapping = map_problem(design, b, compiled.dataflow)
        gaps = simulate_array(compiled, mapping).tile_cycles[:-1]
        tiles = list(mapping.tiles())
        for k, gap in enumerate(gaps):
            want = mapping.steps
            if sch.has_stationary:
                want = max(want, sch.swap_skew + 1 + sch.rows)
            if not tiles[k + 1].first:
                want = max(want, sch.out_latency + 1)
            assert gap == want, (length, k, gap, want, sch)
    # the reference problem of docs/dataflows.md: tiles of 16 steps run back to back
    mapping = map_problem(design, {d: 16 for d in design.operation.dims}, compiled.dataflow)
    total = simulate_array(compiled, mapping).total_cycles
    assert total - mapping.n_tiles * mapping.steps < 10


def test_explain_and_manifest_say_what_the_tile_became():
    from archgen.rtlgen.build import build_array
    design = _design(*CASES[0][:3])
    text = "\n".join(explain(design))
    want = ("C is read, updated and written per step: the tile [k, j] updates the partial sums of each element of "
            "C within every iteration of k; built as tiles of [j] with k outside the tile (the same FU per iteration "
            "and the same step sequence), C streamed out per step and its partial sums of earlier iterations of k "
            "brought back in through the array's partial-sum port")
    assert want in text
    assert "inside a tile: j;" in text
    _verilog, manifest = build_array(design, pipeline=False)
    assert manifest["parameters"]["inner"] == ["j"] and manifest["parameters"]["tile"].startswith(want)
    trailing = _design(*CASES[4][:3])
    text = "\n".join(explain(trailing))
    assert "built as tiles of [p, r] with c outside the tile" in text
    assert "O held per run of the trailing reduction loop(s) of [p, r] and its partial sums of" in text
    assert "O is held per run: the tile [p, r] gives each FU one element of O for a run of r" in text


def test_delay_connections_along_a_moved_loop_become_memory_lanes():
    """conv2 on 2x2, {k: 0, r: 1}, order [k, r, p, c, q]: I[c, p+r, q] is reused one step of p later one FU
    along r (a delay connection on p). p moves out of the tile with c, so I is memory-fed; --explain says so."""
    design = _design(CONV2, [2, 2], {"spatial": {"k": 0, "r": 1}, "order": ["k", "r", "p", "c", "q"],
                                     "control": [0, 0]})
    split = psum_round_split(design, design.dataflow())
    assert split.moved == ("p", "c") and "the delay connections of I along loop(s) p, c" in split.note
    fg = compile_array(design).fu_graph
    assert not fg.fifos() and not fg.halo
    assert split.note in "\n".join(explain(design))
    r = verify_array_amaranth(design, {"k": 3, "p": 3, "q": 2, "c": 2, "r": 3}, seed=5)
    assert r.outputs_exact and r.rtl_cycles == r.model_cycles, (r.detail, r.rtl_cycles, r.model_cycles)


@pytest.mark.parametrize("op, shape, df, moved, rest, runs, bounds", BUILT, ids=BUILT_IDS)
def test_in_amaranth(op, shape, df, moved, rest, runs, bounds):
    """Outputs exact, no partial sum read before it was written, RTL cycles == model cycles (about 1 s each)."""
    r = verify_array_amaranth(_design(op, shape, df), bounds, seed=3)
    assert r.outputs_exact, r.detail
    assert r.detail["psum_reads_before_write"] == 0
    assert r.rtl_cycles == r.model_cycles, (r.rtl_cycles, r.model_cycles)


def test_a_trailing_run_that_reloads_an_input_is_built():
    """O[k,p] += W[k,c] * I[c,p,r] on [2], order [k, c, p, r]: c moves out ([p, r] left), then the run of r: W
    uses no loop of the run nor p: it is kept over the runs of each tile of [p, r] and loaded at the first run, and
    with the partial-sum preloads of c's later tiles (it was refused). --explain names both moves; outputs exact, RTL
    cycles == model cycles (Amaranth); against the [p, r] tile's own schedule (sim/array_model.py ``load_gaps``)
    no cycle is lost."""
    from archgen.sim.array_model import load_gaps
    design = _design(("O[k,p] += W[k,c] * I[c,p,r]", {"W": "int8", "I": "int8", "O": "int32"},
                      {"k": 3, "p": 3, "c": 3, "r": 3}), [2], {"spatial": {"k": 0}, "order": ["k", "c", "p", "r"],
                                                               "control": [0]})
    assert psum_round_split(design, design.dataflow()).moved == ("c",)
    split = reduction_runs_of(design, design.dataflow())
    assert split.dep == ("p",) and split.run == ("r",) and not split.faithful
    assert compile_array(design).dataflow.inner_dims() == ("r",)
    text = "\n".join(explain(design))
    assert "built as tiles of [p, r] with c outside the tile" in text
    assert ("input W does not depend on the run's loop(s) r, so with p outside the tile it is stationary, loaded at "
            "the first run of each tile and kept over its runs") in text
    for r_trips, cycles in ((3, 81), (1, 50)):
        bounds = {"k": 3, "p": 3, "c": 3, "r": r_trips}
        r = verify_array_amaranth(design, bounds, seed=3)
        assert r.outputs_exact and r.detail["psum_reads_before_write"] == 0, r.detail
        assert r.rtl_cycles == r.model_cycles == cycles, (r.rtl_cycles, r.model_cycles)
        assert load_gaps(design, bounds) == (0, 0)


def test_a_moved_tile_fuses_as_it_runs_alone():
    """In a fused design each dataflow keeps the form it runs as alone (dataflow/compile.py ``_compile_fused``):
    the [i, k, j] dataflow's view has the tile [j], k an outer loop with a command field, the output streamed
    with partial sums in, the same as alone."""
    from archgen.arch.spec import load_spec_data
    from archgen.dataflow.compile import compile_fused
    expr, types, _ = GEMM
    design = load_spec_data({"version": 1, "kind": "array", "name": "rounds_fused", "operation": expr,
                             "types": types, "array": {"shape": [3]},
                             "dataflows": {"rounds": {"spatial": {"i": 0}, "order": ["i", "k", "j"], "control": [1]},
                                           "ws": {"spatial": {"k": 0}, "order": ["k", "i", "j"], "control": [1]}}})
    fused = compile_fused(design, ["rounds", "ws"])
    view, alone = fused.views[0], compile_array(design, "rounds")
    assert view.dataflow.inner_dims() == alone.dataflow.inner_dims() == ("j",)
    assert view.fu_graph.output.role is alone.fu_graph.output.role is Role.STREAM_OUT
    assert view.fu_graph.output.psum_in and alone.fu_graph.output.psum_in
    assert {f.loop for f in fused.command.fields if f.loop} >= {"i", "k"}
    assert map_problem(design, {"i": 5, "j": 4, "k": 3}, view.dataflow).steps == 4
