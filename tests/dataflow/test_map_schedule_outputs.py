"""``schedule: map`` with an output that depends on loops inside the tile (issue 14; docs/dataflows.md "Outputs that
depend on loops of the tile"). An output held per run of trailing reduction loops (tile [D, R], the skews in R) runs
the map's own schedule: with D moved out of the tile the run is the tile, its rows padded and masked per FU, and every
FU drains at the padded run's end. An output streamed per step that depends on a padded loop of the tile: each FU
writes the element of its own position (pos - offset(s)), and the write side takes each lane's element at its own
position. Checked in Amaranth (outputs exact, RTL cycles == model cycles) on fixed and random maps; a skewed loop that
the tile's forms move out of the tile, and an output reduced along an axis its skewed loop moves, are refused naming
``dataflows.X.schedule``."""
import itertools

import numpy as np
import pytest

from archgen.arch.errors import SpecError
from archgen.dataflow.compile import compile_array
from archgen.dataflow.ir import Role
from archgen.mappings.tiling import map_problem, row_pads
from archgen.sim.array_model import simulate_array
from archgen.verif.array_amaranth import verify_array_amaranth

from test_map_schedule import CONV_OP, _random_sigma, _skewed_row, _spec

GEMM = "C[i,j] += A[i,k] * B[k,j]"
BATCHED = "C[i,j] += A[i,k,m] * B[k,m,j]"
CONV_HELD = {"n": "t_n", "k": "3*t_k + s0", "p": "2*t_p + s1", "q": "t_q", "c": "t_c", "r": "t_r - s0 - s1",
             "s": "t_s"}

# (operation, shape, map, order, inner, control, bounds, seed): the output depends on the tile's first loops and is
# held per run of the skewed reduction loops after them
HELD = [
    (GEMM, (3,), {"i": "3*t_i + s0", "j": "t_j", "k": "t_k - s0"}, ["i", "j", "k"], ["j", "k"], None,
     {"i": 4, "j": 3, "k": 4}, 1),
    (CONV_OP, (3, 2), CONV_HELD, ["n", "k", "p", "q", "c", "r", "s"], ["q", "c", "r", "s"], None,
     {"n": 1, "k": 4, "p": 3, "q": 3, "c": 2, "r": 3, "s": 2}, 5),
]


def _held(op, shape, mp, order, inner, **kw):
    """``_spec`` with the output (the operation's first name) 32 bits wide and the inputs 8."""
    names = {x for x in op.replace("[", " ").replace("+=", " ").replace("*", " ").split() if x[:1].isupper()}
    out = op.split("[")[0]
    return _spec(op, shape, mp, order, inner, types={n: "int32" if n == out else "int8" for n in names}, **kw)


@pytest.mark.parametrize("op,shape,mp,order,inner,control,bounds,seed",
                         [HELD[0], pytest.param(*HELD[1], marks=pytest.mark.slow)])
def test_an_output_held_per_run_of_skewed_reduction_loops_is_exact(op, shape, mp, order, inner, control, bounds,
                                                                     seed):
    """The run is the tile the array runs (accumulated in place, padded, masked per FU); outputs exact, cycles equal,
    and the padded run is longer than the compressed build's by the span per row."""
    design = _held(op, shape, mp, order, inner, control=control)
    compiled = compile_array(design)
    pads = row_pads(design, compiled.dataflow)
    assert pads and compiled.fu_graph.output.role is Role.ACCUMULATE
    assert set(compiled.dataflow.inner_dims()) < set(inner)             # the output's loops left the tile
    res = verify_array_amaranth(design, bounds, seed=seed)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
    compressed = compile_array(_held(op, shape, mp, order, inner, schedule="compressed", control=control))
    own, short = (map_problem(c.design, bounds, c.dataflow).steps for c in (compiled, compressed))
    loop = pads[0].loop
    assert own == short // bounds[loop] * (bounds[loop] + pads[0].span(shape))


def test_the_model_counts_the_padded_runs():
    """``simulate_array`` issues (L + span) / L as many steps as the compressed build (one skewed loop per run)."""
    op, shape, mp, order, inner, _, bounds, _ = HELD[0]
    issued = {}
    for schedule in ("map", "compressed"):
        compiled = compile_array(_held(op, shape, mp, order, inner, schedule=schedule))
        issued[schedule] = simulate_array(compiled, map_problem(compiled.design, bounds, compiled.dataflow)).issue_cycles
    assert issued["map"] == issued["compressed"] // bounds["k"] * (bounds["k"] + 2)


# (the brief's example, k before j in the tile, runs as partial-sum rounds with k outside the tile and is built:
# tests/dataflow/test_map_schedule_outer.py; a skewed output loop that leads a run of reduction loops leaves the
# tile with the run's form and is built too: tests/dataflow/test_map_schedule_outer_out.py)


# (an output reduced along an axis its padded loop is skewed along is built since H142 when that loop is the tile's
# last, refused with loops after it: tests/dataflow/test_map_schedule_reduce_skew.py)


@pytest.mark.parametrize("mp,order,inner,needle", [
    ({"i": "3*t_i + s0", "j": "t_j", "k": "t_k - s0"}, ["i", "k", "j"], ["k", "j"],
     "why compressed: t_k is a reduction loop before loop(s) j that C depends on, so the tile runs as partial-sum "
     "rounds with t_k outside it"),
    ({"i": "3*t_i + s0", "j": "t_j - s0", "k": "t_k"}, ["i", "j", "k"], ["j", "k"],
     "why compressed: C depends on t_j, which runs outside the run of the trailing reduction loop(s) k; the map's "
     "own schedule pads t_j per FU"),
])
def test_explain_says_why_the_compressed_build_runs(mp, order, inner, needle):
    """``--explain`` of the default build names what the map's own schedule would need, not a tile-loop skew."""
    from archgen.dataflow.explain import explain
    text = "\n".join(explain(_held(GEMM, (3,), mp, order, inner, schedule="compressed")))
    assert needle in text and "the skew is on a tile loop" not in text


def _conv_bounds(rng, **hi):
    """Random convolution bounds: n up to 2, k up to 4, p up to 5, the others up to ``hi``."""
    return {d: int(rng.integers(1, n + 1)) for d, n in ({"n": 2, "k": 4, "p": 5} | hi).items()}


def _random_held_case(rng):
    """A random convolution whose tile is D + R: D one or two output loops (q, or n then q), R a permutation of c, r, s
    with one to three of them skewed (lags, or leads and mixed signs: ``_random_sigma``), on a random 2-D array
    (1xN included), control vector, clock and bounds."""
    shape = (int(rng.integers(1, 4)), int(rng.integers(2, 5)))
    leads = bool(rng.random() < 0.4)
    run = [str(d) for d in rng.permutation(["c", "r", "s"])]
    skewed = [d for d in run if rng.random() < 0.5] or [run[-1]]
    dep = ["q"] if rng.random() < 0.6 else ["n", "q"]
    mp = {"n": "t_n", "k": f"{shape[0]}*t_k + s0" if shape[0] > 1 else "t_k", "p": f"{shape[1]}*t_p + s1", "q": "t_q",
          **{d: _skewed_row(d, _random_sigma(rng, shape, leads), shape) if d in skewed else f"t_{d}"
             for d in ("c", "r", "s")}}
    order = [d for d in ("n", "k", "p") if d not in dep] + dep + run
    low = -1 if leads else 0
    design = _spec(CONV_OP, shape, mp, order, dep + run,
                   control=[int(rng.integers(low, 2)), int(rng.integers(low, 2))], clock=int(rng.choice([500, 1500])))
    return design, _conv_bounds(rng, q=3, c=2, r=3, s=3)


def test_random_batched_reductions_held_per_run_in_amaranth():
    """``C[i,j] += A[i,k,m] * B[k,m,j]`` on 1xN and Nx1 arrays with j outside the run [k, m], both skewed or one."""
    rng = np.random.default_rng(1132)
    for n, run in itertools.product((2, 3), (["k", "m"], ["m", "k"])):
        sk = {d: f"t_{d} - {int(rng.integers(1, 3))}*s0" if rng.random() < 0.7 or d == run[-1] else f"t_{d}"
              for d in run}
        mp = {"i": f"{n}*t_i + s0", "j": "t_j", **sk}
        design = _held(BATCHED, (n,), mp, ["i", "j"] + run, ["j"] + run)
        b = {"i": int(rng.integers(1, 5)), "j": int(rng.integers(1, 4)), "k": int(rng.integers(1, 4)),
             "m": int(rng.integers(1, 4))}
        res = verify_array_amaranth(design, b, seed=n)
        assert res.outputs_exact and res.rtl_cycles == res.model_cycles, (mp, b, res.detail)


# streamed outputs that depend on a padded loop of the tile: (operation, shape, map, order, inner, bounds, seed)
OUTER = "C[i,j] += A[i] * B[j]"
STREAMED = [
    (OUTER, (3,), {"i": "3*t_i + s0", "j": "t_j - s0"}, ["i", "j"], ["j"], {"i": 3, "j": 4}, 1),
    (GEMM, (3,), {"i": "3*t_i + s0", "j": "t_j - s0", "k": "t_k"}, ["i", "k", "j"], ["j"], {"i": 4, "j": 4, "k": 3}, 1),
    (CONV_OP, (3, 2), {**CONV_HELD, "r": "t_r", "q": "t_q - s0 - s1"}, ["n", "k", "p", "c", "r", "s", "q"], ["q"],
     {"n": 1, "k": 4, "p": 3, "q": 3, "c": 2, "r": 2, "s": 2}, 4),
]


@pytest.mark.parametrize("op,shape,mp,order,inner,bounds,seed",
                         [STREAMED[0], STREAMED[1], pytest.param(*STREAMED[2], marks=pytest.mark.slow)])
def test_an_output_streamed_over_a_padded_loop_is_exact(op, shape, mp, order, inner, bounds, seed):
    """Each lane's beat at row position pos is the element pos - offset(s) of its FUs (padding outside their own L
    positions); partial sums of the outer reduction loops come back in the same way. The output beats count the
    padded positions: L + span per row, as the RTL streams them."""
    design = _held(op, shape, mp, order, inner)
    compiled = compile_array(design)
    pads = row_pads(design, compiled.dataflow)
    assert pads and compiled.fu_graph.output.role is Role.STREAM_OUT
    res = verify_array_amaranth(design, bounds, seed=seed)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
    mapping = map_problem(design, bounds, compiled.dataflow)
    assert res.detail["beats_got"] == mapping.steps * len(list(mapping.tiles()))
    assert mapping.steps == bounds[pads[0].loop] + pads[0].span(shape)


def _random_streamed_case(rng):
    """A random convolution whose tile is one or both of the output loops n, q (each skewed with probability 0.6, one
    at least; lags, or leads and mixed signs), the other loops outside in any order (partial sums over c, r, s); axis 0
    carries k, or c (the output reduced along it, the skews then 0 along it); random control vector, clock and
    bounds."""
    shape = (int(rng.integers(1, 4)), int(rng.integers(2, 5)))
    leads = bool(rng.random() < 0.4)
    reduce0 = shape[0] > 1 and rng.random() < 0.4
    tile = [str(d) for d in rng.permutation(["n", "q"])][: int(rng.integers(1, 3))]
    skewed = [d for d in tile if rng.random() < 0.6] or [tile[-1]]

    def row(d):
        sigma = _random_sigma(rng, shape, leads)
        return _skewed_row(d, (0, sigma[1] or 1) if reduce0 else sigma, shape)
    a0 = "c" if reduce0 else "k"
    mp = {"n": "t_n", "k": "t_k", "c": "t_c", "p": f"{shape[1]}*t_p + s1", "q": "t_q", "r": "t_r", "s": "t_s",
          a0: f"{shape[0]}*t_{a0} + s0" if shape[0] > 1 else f"t_{a0}"}
    mp.update({d: row(d) for d in skewed})
    outer = [str(d) for d in rng.permutation([d for d in ("n", "k", "p", "q", "c", "r", "s") if d not in tile])]
    low = -1 if leads else 0
    design = _held(CONV_OP, shape, mp, outer + tile, tile,
                   control=[int(rng.integers(low, 2)), int(rng.integers(low, 2))], clock=int(rng.choice([500, 1500])))
    return design, _conv_bounds(rng, q=4, c=3, r=2, s=2)


def test_the_memory_system_takes_streamed_outputs_over_padded_loops():
    """The memory system de-skews a streamed output over one padded loop, the tile's last, by fixed delays
    (tests/dataflow/test_memctl_stream_outputs.py) and over two padded loops (n and q) by delays set per block
    (tests/dataflow/test_memctl_deskew_multi.py): neither is refused any more (the guard named
    ``dataflows.X.schedule``); nor is an output held per run."""
    from archgen.dataflow.memctl import check_memory_system, deskew_terms, output_deskew
    one = compile_array(_held(*STREAMED[1][:5]))
    check_memory_system(one.fu_graph, one.design)
    assert output_deskew(one.fu_graph) is not None and deskew_terms(one.fu_graph, "write") == ()
    two = compile_array(_held(CONV_OP, (1, 4), {**STREAMED[2][2], "k": "t_k", "p": "4*t_p + s1", "q": "t_q + s1 - 3",
                                                "n": "t_n - s1"}, ["k", "p", "c", "r", "s", "n", "q"], ["n", "q"],
                              control=[0, 1]))
    check_memory_system(two.fu_graph, two.design)
    assert output_deskew(two.fu_graph) is None and len(deskew_terms(two.fu_graph, "write")) == 4
    held = compile_array(_held(*HELD[0][:5]))
    check_memory_system(held.fu_graph, held.design)


# the random sequences: (case generator, rng seed, output role)
RANDOM_KINDS = [pytest.param(_random_held_case, 132, Role.ACCUMULATE, id="held-per-run"),
                pytest.param(_random_streamed_case, 2132, Role.STREAM_OUT, id="streamed")]


@pytest.mark.parametrize("count", [pytest.param(2, id="2"), pytest.param(60, id="60", marks=pytest.mark.slow)])
@pytest.mark.parametrize("make,seed,role", RANDOM_KINDS)
def test_random_outputs_over_padded_loops_in_amaranth(make, seed, role, count):
    """Random held-per-run and streamed maps: all exact, RTL cycles == model cycles, the padded loops in the tile
    the array runs (2026-12-06: 60 + 60 in the suite, 100 more streamed ad hoc)."""
    rng = np.random.default_rng(seed)
    for t in range(count):
        design, b = make(rng)
        compiled = compile_array(design)
        assert row_pads(design, compiled.dataflow) and compiled.fu_graph.output.role is role
        res = verify_array_amaranth(design, b, seed=t)
        assert res.outputs_exact and res.rtl_cycles == res.model_cycles, (design.dataflows[0].ts_map, b, t, res.detail)


@pytest.mark.parametrize("make,seed,role", RANDOM_KINDS)
def test_the_per_fu_flags_zero_the_padded_positions(monkeypatch, make, seed, role):
    """Without the per-FU masks the random maps are wrong (19 of 20 of each sequence, ad hoc): the check can fail."""
    import archgen.rtlgen.array as array
    monkeypatch.setattr(array, "row_pads", lambda d, df: ())
    rng = np.random.default_rng(seed)
    wrong = [not verify_array_amaranth(design, b, seed=t).outputs_exact
             for t, (design, b) in enumerate(make(rng) for _ in range(4))]
    assert sum(wrong) >= 3


@pytest.mark.parametrize("own", [
    {"map": CONV_HELD, "order": ["n", "k", "p", "q", "c", "r", "s"], "inner": ["q", "c", "r", "s"], "schedule": "map"},
    {"map": {**CONV_HELD, "r": "t_r", "q": "t_q - s0 - s1"}, "order": ["n", "k", "p", "c", "r", "s", "q"],
     "inner": ["q"], "schedule": "map"},
], ids=["held-per-run", "streamed"])
def test_a_fused_design_runs_them(own):
    """Fused with a weight-stationary dataflow (the map's own schedule in a fused design, H129): each dataflow exact
    and RTL cycles == model cycles in Amaranth."""
    from archgen.arch.spec import load_spec_data
    from archgen.verif.fused_amaranth import verify_fused_amaranth
    flows = {"own": own, "ws": {"spatial": {"k": 0, "p": 1}, "order": ["n", "k", "p", "q", "c", "r", "s"]}}
    design = load_spec_data({"version": 1, "name": "fm", "operation": CONV_OP, "array": {"shape": [3, 2]},
                             "types": {"I": "int8", "W": "int8", "O": "int32"}, "dataflows": flows, "fuse": list(flows)})
    runs = verify_fused_amaranth(design, design.fuse, {"n": 1, "k": 4, "p": 3, "q": 3, "c": 2, "r": 2, "s": 2}, seed=5)
    assert len(runs) == 2 and all(r.outputs_exact and r.rtl_cycles == r.model_cycles for r in runs), runs
