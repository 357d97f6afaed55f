"""Outputs held per run of the tile's trailing reduction loops (dataflow/interconnect.py ``reduction_runs``;
docs/dataflows.md "Outputs held per run of the reduction loops").

A tile [D, R] whose output depends on the loops D and not on the reduction loops R after them (the plainest 1-D
GEMM: ``C[i,j] += A[i,k] * B[k,j]`` on [3], spatial {i: 0}, order [i, j, k]) gives each FU one output element per
run of R. It runs as the dataflow with D moved out of the tile: these tests check, independently of the
interconnect, that every iteration keeps its FU and its place in the step sequence, that the runs issue back to
back (the model's gaps between runs) except for the drain stall ``--explain`` states, and that an input that uses
no loop of the run (stationary: kept over the runs of a tile when it uses none of the tile's loops, or stationary per
run instead of streamed) is built, exact, with the cycles it costs against the tile's own schedule."""
from __future__ import annotations

import itertools
import math

import pytest

from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.explain import explain
from archgen.dataflow.interconnect import derive_interconnect, reduction_run_split, reduction_runs_of
from archgen.dataflow.ir import EdgeKind, Role
from archgen.mappings.tiling import map_problem
from archgen.sim.array_model import simulate_array

_I8 = "int8"
GEMM = ("C[i,j] += A[i,k] * B[k,j]", {"A": _I8, "B": _I8, "C": "int32"}, None)
CONV2 = ("O[k,p,q] += I[c,p+r,q] * W[k,c,r]", {"W": _I8, "I": _I8, "O": "int32"},
         {"k": 3, "p": 4, "q": 2, "c": 2, "r": 3})


def _design(op, shape, df):
    expr, types, bounds = op
    data = {"version": 1, "kind": "array", "name": "runs", "operation": expr, "types": types,
            "array": {"shape": shape}, "dataflows": {"d": df}}
    if bounds:
        data["bounds"] = bounds
    return load_spec_data(data)


# (operation, shape, dataflow, the run loops, a problem): class 1 of the refusal search (docs/limits.md)
CASES = [
    (GEMM, [3], {"spatial": {"i": 0}, "order": ["i", "j", "k"], "control": [0]}, ("k",),
     {"i": 5, "j": 3, "k": 4}),
    (GEMM, [3], {"spatial": {"j": 0}, "order": ["j", "i", "k"], "control": [1]}, ("k",),
     {"i": 2, "j": 4, "k": 3}),
    (CONV2, [2, 2], {"spatial": {"k": 0, "q": 1}, "order": ["k", "q", "p", "r", "c"], "control": [1, 1]},
     ("r", "c"), {"k": 3, "p": 3, "q": 3, "c": 2, "r": 3}),
    (CONV2, [2, 3], {"spatial": {"r": 0, "k": 1}, "order": ["p", "k", "r", "q", "c"], "control": [1, 1]},
     ("c",), {"k": 4, "p": 2, "q": 3, "c": 3, "r": 3}),
    (CONV2, [2, 2, 2], {"spatial": {"c": 0, "k": 1, "p": 2}, "order": ["c", "k", "p", "q", "r"],
                        "control": [1, 1, 0]}, ("r",), {"k": 3, "p": 3, "q": 2, "c": 3, "r": 3}),
]
IDS = ["gemm-1d-i", "gemm-1d-j-skewed", "conv2-2x2-run-rc", "conv2-2x3-chain-k", "conv2-2x2x2-psum"]


def _walk(design, df, bounds):
    """iteration -> (FU, global step) from the dataflow's own definition: tiles over the outer loops in order
    (innermost fastest), steps over the inner loops in order, loop d at FU coordinate x_d mod extent on its axis."""
    shape, axis_of = design.shape, df.axis_of
    trips = {d: -(-n // shape[axis_of[d]]) if d in axis_of else n for d, n in bounds.items()}
    outer, inner = df.outer_dims(), df.inner_dims()
    steps = math.prod(trips[d] for d in inner)
    out = {}
    for x in itertools.product(*[range(bounds[d]) for d in design.operation.dims]):
        pos = dict(zip(design.operation.dims, x))
        t = {d: pos[d] // shape[axis_of[d]] if d in axis_of else pos[d] for d in pos}
        tile = step = 0
        for d in outer:
            tile = tile * trips[d] + t[d]
        for d in inner:
            step = step * trips[d] + t[d]
        fu = tuple(pos[axis_of_d] % shape[a] for a, axis_of_d in sorted(df.spatial_dims.items()))
        out[x] = (fu, tile * steps + step)
    return out


@pytest.mark.parametrize("op, shape, df, run, bounds", CASES, ids=IDS)
def test_each_iteration_keeps_its_fu_and_its_place_in_the_step_sequence(op, shape, df, run, bounds):
    design = _design(op, shape, df)
    spec_df = design.dataflow()
    compiled = compile_array(design)
    assert compiled.dataflow.inner_dims() == run
    assert compiled.fu_graph.output.role is Role.ACCUMULATE
    assert _walk(design, spec_df, bounds) == _walk(design, compiled.dataflow, bounds)


@pytest.mark.parametrize("op, shape, df, run, bounds", CASES, ids=IDS)
def test_runs_issue_back_to_back_unless_shorter_than_the_drain(op, shape, df, run, bounds):
    """The model's cycles between consecutive runs' first steps: the run's steps, or, for a run shorter than
    commit skew + drain rows + 1, that bound (its last step waits for the previous run's drain); runs that
    preload partial sums of an earlier visit wait for the previous run's drain first."""
    design = _design(op, shape, df)
    compiled = compile_array(design)
    sch = compiled.schedule
    for length in (1, 2, 5):
        b = dict(bounds, **{run[-1]: length})
        mapping = map_problem(design, b, compiled.dataflow)
        gaps = simulate_array(compiled, mapping).tile_cycles[:-1]
        tiles = list(mapping.tiles())
        bound = sch.commit_skew + sch.drain_rows + 1
        # the rule --explain states: run k's last step waits until run k - 1 has drained, ``bound`` cycles after
        # run k - 1's last step; a run that preloads partial sums of an earlier visit starts ``rows`` cycles after
        # that drain; otherwise a run's first step follows the previous run's last step
        first, last = 1, None
        for k, gap in enumerate(gaps):
            last = first + mapping.steps - 1 if k == 0 else max(first + mapping.steps - 1, last + bound)
            start = last + 1
            if sch.psum_in and not tiles[k + 1].first:
                start = max(start, last + bound + sch.rows)
            if mapping.steps == 1:
                start = max(start, last + bound)
            assert gap == start - first, (length, k, gap, start - first, bound)
            first = start


def test_explain_says_how_the_output_is_held():
    design = _design(*CASES[0][:3])
    text = "\n".join(explain(design))
    assert "C is held per run: the tile [j, k] gives each FU one element of C for a run of k" in text
    assert "Built as tiles of [k] with j outside the tile" in text
    assert "a run of fewer than 2 steps (commit skew 0 + 1 drain rows + 1) waits at its last step" in text


def test_delay_connections_along_an_output_dependent_loop_become_memory_lanes():
    """conv2 on 2x2, {k: 0, r: 1}, order [k, r, p, q, c]: I[c, p+r, q] is reused one step of p later one FU
    along r (a delay connection on p, an output-dependent loop of the tile [p, q, c]); the run build steps p
    outside the tile, so I is memory-fed and ``--explain`` says so."""
    design = _design(CONV2, [2, 2], {"spatial": {"k": 0, "r": 1}, "order": ["k", "r", "p", "q", "c"],
                                     "control": [0, 0]})
    split = reduction_run_split(design, design.dataflow())
    assert split.faithful and split.run == ("c",) and "delay connections of I" in split.note
    fg = compile_array(design).fu_graph
    assert not fg.fifos() and not fg.halo
    assert fg.plan("I").n_lanes == 2
    assert "(the delay connections of I along output-dependent loop(s)" in "\n".join(explain(design))


# inputs that use no loop of the run (docs/dataflows.md "Inputs that use no loop of the run"): (operation, types,
# shape, dataflow, bounds, what the split says about the input's feed, run build cycles more than the tile's own
# schedule (model, sim/array_model.py ``load_gaps``): (before the first step, after it), cycles)
_T3 = {"W": _I8, "I": _I8, "O": "int32"}
UNUSED = [
    ("O[k,p] += W[k] * I[p,r]", _T3, [2], {"spatial": {"k": 0}, "order": ["k", "p", "r"], "control": [0]},
     {"k": 3, "p": 4, "r": 3}, "input W does not depend on the run's loop(s) r, so with p outside the tile it is "
     "stationary, loaded at the first run of each tile and kept over its runs (once per tile)", (0, 0), 27),
    # I uses p (D) and not r (R): streamed as in the tile, one beat per step (stationary per run before H118: 1 cycle
    # later before the first step)
    ("O[k,p] += W[k,r] * I[p]", _T3, [2], {"spatial": {"k": 0}, "order": ["k", "p", "r"], "control": [0]},
     {"k": 3, "p": 4, "r": 3}, "input(s) I use p and not the run's loop(s) r: streamed as in the tile, one beat per "
     "step on the memory lanes (the same value for every step of a run, read again per step)", (0, 0), 26),
    ("O[k,p,q] += W[k,c,r] * I[p,q]", _T3, [2, 3], {"spatial": {"k": 0, "q": 1}, "order": ["k", "q", "p", "c", "r"],
                                                    "control": [0, 1]},
     {"k": 3, "p": 3, "q": 4, "c": 2, "r": 2}, "input(s) I use p and not the run's loop(s) c, r: streamed as in the "
     "tile, one beat per step on the memory lanes (the same value for every step of a run, read again per step)",
     (0, 0), 64),
    # runs of 2 steps, shorter than a load (swap skew 2 + 1 + 2 rows = 5 steps): W kept over the runs of each tile
    # of [q, p, r] (keep_dims q, p) and loaded with the partial-sum preloads of c's later tiles, the tile's own
    # schedule (loaded per run, as before the keep: 147 cycles, 10 more)
    ("O[k,p,q] += W[k,c] * I[c,p,q,r]", _T3, [2, 2], {"spatial": {"k": 0, "c": 1}, "order": ["k", "c", "q", "p", "r"],
                                                      "control": [1, 1]},
     {"k": 3, "p": 3, "q": 2, "c": 3, "r": 2}, "input W does not depend on the run's loop(s) r, so with q, p outside "
     "the tile it is stationary, loaded at the first run of each tile and kept over its runs (once per tile)", (0, 0),
     137),
]
UNUSED_IDS = ["broadcast-W-kept-1d", "broadcast-I-streamed-1d", "I-streamed-2x3", "W-kept-short-runs-2x2"]


@pytest.mark.parametrize("expr, types, shape, df, bounds, feeds, gaps, cycles", UNUSED, ids=UNUSED_IDS)
def test_runs_with_an_input_that_uses_no_loop_of_the_run(expr, types, shape, df, bounds, feeds, gaps, cycles):
    """Built (it was refused): the same FU per iteration and step sequence as the tile, the input kept over a tile's
    runs (no loop of D or R) or streamed per step (a loop of D, none of R) (``feeds``, in --explain too), outputs
    exact and RTL cycles == model cycles in Amaranth; against the tile's own schedule (same loader, issuer and drain,
    the input loaded once per tile or streamed) the run build is ``gaps`` cycles slower before / after the first
    step."""
    from archgen.sim.array_model import load_gaps
    from archgen.verif.array_amaranth import verify_array_amaranth
    design = _design((expr, types, None), shape, df)
    split = reduction_runs_of(design, design.dataflow())
    compiled = compile_array(design)
    streamed = "streamed as in the tile" in feeds
    assert split is not None and split.faithful == streamed
    assert (split.stream_text if streamed else split.feeds) == feeds
    assert split.streamed == (("I",) if streamed else ())
    roles = {p.name: p.role for p in compiled.fu_graph.inputs}
    assert roles == ({"W": Role.STREAM, "I": Role.STREAM} if streamed else {"W": Role.STATIONARY, "I": Role.STREAM})
    assert compiled.dataflow.inner_dims() == split.run
    assert bool(compiled.schedule.keep_dims) == ("kept over its runs" in feeds), compiled.schedule.keep_dims
    assert compiled.fu_graph.output.role is Role.ACCUMULATE
    assert _walk(design, design.dataflow(), bounds) == _walk(design, compiled.dataflow, bounds)
    assert feeds in "\n".join(explain(design))
    r = verify_array_amaranth(design, bounds, seed=4)
    assert r.outputs_exact, r.detail
    assert r.detail["psum_reads_before_write"] == 0
    assert r.rtl_cycles == r.model_cycles == cycles, (r.rtl_cycles, r.model_cycles)
    assert load_gaps(design, bounds) == gaps


def test_the_runs_output_drains_per_run():
    """The accumulators drain once per run: one output beat per lane per run (the host program's beats)."""
    from archgen.dataflow.host import host_program, random_operands
    import numpy as np
    design = _design(*CASES[0][:3])
    compiled = compile_array(design)
    bounds = {"i": 5, "j": 3, "k": 4}
    mapping = map_problem(design, bounds, compiled.dataflow)
    prog = host_program(compiled.fu_graph, mapping, random_operands(compiled.fu_graph, mapping,
                                                                      np.random.default_rng(1)))
    runs = -(-5 // 3) * 3           # tiles of i times the j loop
    assert mapping.n_tiles == runs and mapping.steps == 4
    assert len(prog.expected) == runs * compiled.schedule.drain_rows
    assert all(e.kind is not EdgeKind.DELAY for _, _, e in compiled.fu_graph.links())


def test_a_run_dataflow_fuses_as_it_runs_alone():
    """In a fused design each dataflow keeps the form it runs as alone: the run dataflow's view has the tile [k]
    and a command field for j (Verilator: `archgen verify SPEC --fuse runs,ws --dataflow runs|ws [--ideal-dram]`
    exact, 35 = 35 and 24 = 24 cycles at the array level, 233 = 233 through the memory system; docs/dataflows.md)."""
    from archgen.dataflow.compile import compile_fused
    expr, types, _ = GEMM
    design = load_spec_data({"version": 1, "kind": "array", "name": "runs_fused", "operation": expr, "types": types,
                             "array": {"shape": [3]},
                             "dataflows": {"runs": {"spatial": {"i": 0}, "order": ["i", "j", "k"], "control": [1]},
                                           "ws": {"spatial": {"k": 0}, "order": ["k", "i", "j"], "control": [1]}}})
    fused = compile_fused(design, ["runs", "ws"])
    runs = fused.views[0]
    alone = compile_array(design, "runs")
    assert runs.dataflow.inner_dims() == alone.dataflow.inner_dims() == ("k",)
    assert runs.fu_graph.output.role is Role.ACCUMULATE
    assert {f.loop for f in fused.command.fields if f.loop} >= {"i", "j"}
    bounds = {"i": 5, "j": 4, "k": 3}
    assert map_problem(design, bounds, runs.dataflow).steps == 3
