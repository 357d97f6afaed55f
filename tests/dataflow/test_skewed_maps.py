"""Skewed space-time maps (issue 14 item 3): a map whose temporal loops are skewed by the FU coordinates runs as
the tiled map with the control vector the skew implies (exact on the tile's innermost loop; on a loop with
loops after it the map's delay of sigma.s x D steps is compressed to sigma.s cycles, docs/dataflows.md
"Skewed maps"); maps that distribute loops over the FUs otherwise are refused with one field-named line
(exit 2 from the CLI)."""
import itertools

import numpy as np
import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec_data
from archgen.cli import main
from archgen.dataflow.compile import compile_array
from archgen.dataflow.interconnect import derive_interconnect, tiled_equivalent

GEMM = {"version": 1, "name": "gemm_skew", "operation": "C[i,j] += A[i,k] * B[k,j]",
        "types": {"A": "int8", "B": "int8", "C": "int32"}, "bounds": {"i": 5, "j": 4, "k": 6}}


def _design(shape, dataflow):
    return load_spec_data(dict(GEMM, array={"shape": list(shape)}, dataflows={"d": dataflow}))


def _assignment(design, df, bounds):
    """(FU, linear step within its row of the innermost loop) -> iteration, straight from the map's
    expressions: the ground truth of which FU runs what, and when relative to the others."""
    names = df.ts_map.inputs
    shape = design.shape
    trips = {v: 12 for v in names if v.startswith("t_")}
    got = {}
    for tv in itertools.product(*[range(-8, 12)] * len(trips)):
        env = dict(zip([v for v in names if v.startswith("t_")], tv))
        for s in itertools.product(*[range(e) for e in shape]):
            env.update({f"s{a}": v for a, v in enumerate(s)})
            x = tuple(int(e.const + sum(c * env[v] for v, c in e.terms)) for e in df.ts_map.exprs)
            if all(0 <= xi < bounds[d] for xi, d in zip(x, design.operation.dims)):
                got.setdefault(x, set()).add(s)
    return got


@pytest.mark.parametrize("shape,k_expr,control", [
    ((3, 2), "t_k - s0 - s1", [1, 1]),
    ((2, 4), "t_k - 2*s1", [0, 2]),
    ((4,), "t_k - s0", [1]),
])
def test_skew_on_the_innermost_loop_becomes_a_control_vector(shape, k_expr, control):
    rank = len(shape)
    mp = {"i": f"{shape[0]}*t_i + s0", "j": "t_j" if rank == 1 else f"{shape[1]}*t_j + s1", "k": k_expr}
    design = _design(shape, {"map": mp, "order": ["i", "j", "k"] if rank > 1 else ["j", "i", "k"]})
    df = design.dataflows[0]
    assert df.spatial is None
    tiled = tiled_equivalent(design, df)
    assert list(tiled.control) == control
    assert tiled.inner_dims()[-1] == "k" and tiled.spatial is not None
    # the same FU runs every iteration under both maps
    b = {"i": 5, "j": 4, "k": 6}
    assert _assignment(design, df, b) == _assignment(design, tiled, b)
    fg = derive_interconnect(design)
    assert fg.dataflow == tiled
    assert compile_array(design).dataflow == tiled


@pytest.mark.parametrize("mp,field", [
    ({"i": "2*t_i + s0 + s1", "j": "2*t_j + s1", "k": "t_k"}, "dataflows.d.map.i"),    # hexagonal-style
    ({"i": "2*t_i + s0", "j": "2*t_j + s1 + t_k", "k": "t_k"}, "dataflows.d.map.j"),
])
def test_maps_that_are_not_built_are_refused_naming_the_field(mp, field, tmp_path, capsys):
    order = ["i", "j", "k"]
    try:
        design = _design((2, 2), {"map": mp, "order": order})
    except SpecError as err:                 # the checks themselves refused it: also field-named
        assert field.rsplit(".", 1)[0] in str(err)
        return
    with pytest.raises(SpecError) as err:
        derive_interconnect(design)
    assert len(err.value.problems) == 1 and str(err.value.problems[0]).startswith(field)
    import yaml
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(dict(GEMM, array={"shape": [2, 2]}, dataflows={"d": {"map": mp, "order": order}})))
    assert main(["build", str(path), "-o", str(tmp_path / "out")]) == 2
    err_text = capsys.readouterr().err
    assert "Traceback" not in err_text and field in err_text and len(err_text.strip().splitlines()) == 1


def test_host_program_of_a_skewed_map_matches_the_numpy_product():
    from archgen.dataflow.host import host_program, random_operands
    from archgen.mappings.tiling import map_problem
    design = _design((3, 2), {"map": {"i": "3*t_i + s0", "j": "2*t_j + s1", "k": "t_k - s0 - s1"},
                              "order": ["i", "j", "k"]})
    fg = compile_array(design).fu_graph
    bounds = {"i": 5, "j": 3, "k": 7}
    mapping = map_problem(design, bounds, fg.dataflow)
    t = random_operands(fg, mapping, np.random.default_rng(1))
    prog = host_program(fg, mapping, t)
    assert np.array_equal(prog.result, t["A"] @ t["B"])


def test_a_block_distribution_is_refused_with_its_larger_problem_witness():
    """``i: "t_i + 2*s0"`` passes the checks on reference bounds of at most 2 x P0 rows, but FU s0 = floor(i / 2) is
    not affine in the loops (no stt form) and the map runs iterations twice on any larger problem: the refusal
    names the iteration, which the map's own expressions confirm."""
    design = load_spec_data(dict(GEMM, array={"shape": [2]}, bounds={"i": 2, "j": 2, "k": 2},
                                 dataflows={"m": {"map": {"i": "t_i + 2*s0", "j": "t_j", "k": "t_k"}}}))
    with pytest.raises(SpecError) as err:
        derive_interconnect(design)
    (p,) = err.value.problems
    text = str(p)
    assert text.startswith("dataflows.m.map: array axis(es) [0] carry no loop in the tiled form")
    assert "nor is it injective and covering beyond the reference bounds" in text
    i = int(text.split("runs (i=")[1].split(",")[0])
    bound_i = int(text.split("{'i': ")[1].split(",")[0])
    hits = [(t, s) for t in range(bound_i) for s in range(2) if t + 2 * s == i]     # t_i runs 0..bound_i - 1
    assert len(hits) > 1


# (shape, map, order, inner, skewed loop, loops after it): skews on a loop that is not the tile's innermost
OUTER_SKEWS = [
    ((3, 2), {"i": "3*t_i + s0", "j": "2*t_j + s1", "k": "t_k - s0 - s1"}, ["i", "k", "j"], None, "k", ("j",)),
    ((3, 2), {"i": "3*t_i + s0", "j": "2*t_j + s1", "k": "t_k - s0 - s1"}, ["k", "i", "j"], None, "k", ("i", "j")),
    ((1, 4), {"i": "t_i - s1", "j": "4*t_j + s1", "k": "t_k"}, ["j", "i", "k"], ["k"], "i", ("k",)),
    ((1, 4), {"i": "t_i - 2*s1", "j": "4*t_j + s1", "k": "t_k"}, ["i", "j", "k"], None, "i", ("j", "k")),
]


@pytest.mark.parametrize("shape,mp,order,inner,loop,after", OUTER_SKEWS)
def test_skew_on_an_outer_loop_runs_the_same_iterations_on_the_same_fus_in_the_same_order(shape, mp, order, inner,
                                                                                           loop, after):
    """The map delays FU s by sigma.s iterations of the skewed loop; the tiled map it runs as gives every FU the
    same iterations (checked from both maps' expressions) and, per FU, in the same order: the map's temporal
    vectors of an FU's iterations sorted lexicographically in ``order`` list them as the tiled map's do."""
    from archgen.dataflow.interconnect import map_skews
    df_spec = {"map": mp, "order": order} | ({"inner": inner} if inner else {})
    design = _design(shape, df_spec)
    df = design.dataflows[0]
    (sk,) = map_skews(design, df)
    assert (sk.loop, sk.after) == (loop, after)
    tiled = tiled_equivalent(design, df)
    sigma = [-df.ts_map.exprs[design.operation.dims.index(loop)].coeffs.get(f"s{a}", 0) for a in range(len(shape))]
    assert list(tiled.control) == [c + s for c, s in zip(df.control, sigma)] == list(sk.sigma)
    b = {"i": 5, "j": 6, "k": 4}
    got_map, got_tiled = _assignment(design, df, b), _assignment(design, tiled, b)
    assert got_map == got_tiled and all(len(fus) == 1 for fus in got_map.values())
    assert len(got_map) == 5 * 6 * 4
    assert _per_fu_order(design, df, b) == _per_fu_order(design, tiled, b)
    # the map's literal delay between neighbours is sigma_a iterations of the loop: D = product of the trips after it
    trips = {d: -(-b[d] // shape[tiled.axis_of[d]]) if d in tiled.axis_of else b[d] for d in after}
    assert sk.steps_per_iteration(design, df, b) == int(np.prod([trips[d] for d in after]))
    assert compile_array(design).dataflow == tiled


def _per_fu_order(design, df, bounds):
    """FU -> its iterations in the order the map runs them (temporal vectors sorted in ``df.order``)."""
    names = [v for v in df.ts_map.inputs if v.startswith("t_")]
    pos = [names.index(f"t_{d}") for d in df.order]
    runs: dict = {}
    for tv in itertools.product(*[range(-8, 12)] * len(names)):
        env = dict(zip(names, tv))
        for s in itertools.product(*[range(e) for e in design.shape]):
            env.update({f"s{a}": v for a, v in enumerate(s)})
            x = tuple(int(e.const + sum(c * env[v] for v, c in e.terms)) for e in df.ts_map.exprs)
            if all(0 <= xi < bounds[d] for xi, d in zip(x, design.operation.dims)):
                runs.setdefault(s, []).append((tuple(tv[p] for p in pos), x))
    return {s: [x for _, x in sorted(r)] for s, r in runs.items()}


def test_explain_prints_the_skews_fifo_depths(capsys):
    """``archgen build --explain`` on a skew of a middle loop: D and the map's own neighbour connections, solved on
    the map (a FIFO of sigma_a x D steps along each skewed axis), then the compressed control it runs with."""
    from archgen.dataflow.explain import explain
    design = _design((3, 2), {"map": {"i": "3*t_i + s0", "j": "2*t_j + s1", "k": "t_k - s0 - s1"},
                              "order": ["i", "k", "j"]})
    text = "\n".join(explain(design))
    ref = design.reference_bounds
    d = -(-ref["j"] // 2)
    assert (f"skew of t_k by FU coordinates (sigma = [1, 1]) with loop(s) j after it: under the map FU s runs sigma.s "
            f"iterations of t_k = sigma.s x D array steps late, D = trips of t_j = {d} at the reference bounds") in text
    # B (no j) reaches its axis-0 neighbour one step of t_k (D steps) later; A (no i) its axis-1 neighbour one step
    # of t_k and one back of t_j (a different j: D - 1 steps), the least delay the map offers
    assert f"axis 0, B: delay +t_k +s0 ({d} cycles)" in text
    assert f"axis 1, A: delay +t_k -t_j +s1 ({d - 1} cycle" in text
    assert "built as the tiled map with control c = [1, 1]" in text


@pytest.mark.parametrize("mp,field,bounds", [
    ({"i": "t_i + t_j", "j": "4*t_j + s1", "k": "t_k"}, "i", {"i": 3, "j": 3, "k": 3}),     # reads an earlier loop's t
    ({"i": "t_i - t_k", "j": "4*t_j + s1", "k": "t_k"}, "i", {"i": 3, "j": 3, "k": 1}),     # reads a later loop's t
])
def test_a_loop_reading_another_loops_t_is_refused_as_not_covering_larger_problems(mp, field, bounds):
    """Every temporal variable counts from 0 over the trips its loops need (arch/mapping_check.py), so a row of i
    shifted by another loop's t leaves iterations unrun once that loop runs twice: the checks pass such a map only
    where it runs once at the reference bounds. The refusal names an iteration it misses on larger bounds, and the
    map's own expressions (every t from 0 over its trips there) confirm that nothing runs it."""
    from archgen.arch.mapping_check import time_var_ranges
    design = load_spec_data(dict(GEMM, array={"shape": [1, 4]}, bounds=bounds,
                                 dataflows={"m": {"map": mp, "order": ["j", "i", "k"], "inner": ["k"]}}))
    with pytest.raises(SpecError) as err:
        derive_interconnect(design)
    (p,) = err.value.problems
    text = str(p)
    assert text.startswith(f"dataflows.m.map.{field}: the generator builds maps in which loop {field} reads only its own")
    assert "nor is it injective and covering beyond the reference bounds" in text and "never runs (i=" in text
    import ast
    import re
    missed = tuple(int(v) for v in re.search(r"never runs \(i=(-?\d+), j=(-?\d+), k=(-?\d+)\)", text).groups())
    grown = ast.literal_eval(re.search(r"with bounds (\{[^}]*\})", text).group(1))
    df = design.dataflows[0]
    trips = time_var_ranges(df.ts_map, design.shape, grown)
    names = [v for v in df.ts_map.inputs if v.startswith("t_")]
    for tv in itertools.product(*[range(trips[v]) for v in names]):
        env = dict(zip(names, tv))
        for s1 in range(4):
            env.update({"s0": 0, "s1": s1})
            x = tuple(int(e.const + sum(c * env[v] for v, c in e.terms)) for e in df.ts_map.exprs)
            assert x != missed


def test_build_explain_on_the_command_line_prints_the_skews_fifo_depths(tmp_path, capsys):
    import yaml
    path = tmp_path / "s.yaml"
    mp = {"i": "t_i - s1", "j": "4*t_j + s1", "k": "t_k"}
    path.write_text(yaml.safe_dump(dict(GEMM, array={"shape": [1, 4]},
                                        dataflows={"d": {"map": mp, "order": ["j", "i", "k"], "inner": ["k"]}})))
    assert main(["build", str(path), "--explain", "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    # D = trips of k = 6 (GEMM's bounds); A (no j) reaches its axis-1 neighbour one step of t_i = 6 steps later
    assert "D = trips of t_k = 6 at the reference bounds" in out
    assert "axis 1, A: delay +t_i +s1 (6 cycles)" in out
    assert "built as the tiled map with control c = [0, 1]" in out


CONV_OP = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]"
# (shape, map of the skewed convolution with inner [c, r, s]): the skew sits on r, s runs after it
CONV_SKEWS = [
    ((3, 2), {"n": "t_n", "k": "3*t_k + s0", "p": "2*t_p + s1", "q": "t_q", "c": "t_c", "r": "t_r - s0 - s1",
              "s": "t_s"}),
    ((2, 3), {"n": "t_n", "k": "2*t_k + s0", "p": "3*t_p + s1", "q": "t_q", "c": "t_c", "r": "t_r - s0 - s1",
              "s": "t_s"}),
    ((1, 4), {"n": "t_n", "k": "t_k", "p": "4*t_p + s1", "q": "t_q", "c": "t_c", "r": "t_r - s1", "s": "t_s"}),
]


def _conv(shape, mp):
    return load_spec_data({"version": 1, "name": "conv_skew", "operation": CONV_OP,
                           "types": {"I": "int8", "W": "int8", "O": "int32"}, "array": {"shape": list(shape)},
                           "dataflows": {"skew": {"map": mp, "order": ["n", "k", "p", "q", "c", "r", "s"],
                                                  "inner": ["c", "r", "s"]}}})


def _literal_lanes(design, df, operand, trips):
    """Memory lanes ``operand`` needs under the map's own schedule, by walking one tile: every t_r position of a
    row padded by the skew's span, each FU's element from the map's expressions (outer loops at t = 0). FU b can
    take its stream from neighbour a through a wire (same position) or a FIFO of one t_r iteration (D steps) when
    b's element at every position is a's at that position minus the shift. Lanes = source components of that
    graph; then the tree rooted at one FU per source component is replayed and every unmasked product of every FU
    must receive the element its iteration reads."""
    import networkx as nx
    op, shape = design.operation, design.shape
    x = op.operand(operand)
    acc = x.access_matrix(op.dims)
    names = [v for v in df.ts_map.inputs if v.startswith("t_")]
    span = max(-sum(c * (e - 1) for c, e in zip((df.ts_map.exprs[op.dims.index("r")].coeffs.get(f"s{a}", 0)
                                                   for a in range(len(shape))), shape)), 0)
    ranges = {"t_c": trips["c"], "t_r": trips["r"] + span, "t_s": trips["s"]}
    positions = list(itertools.product(*[range(ranges.get(v, 1)) for v in names]))
    fus = list(itertools.product(*[range(e) for e in shape]))
    elem, valid = {}, {}
    for s in fus:
        for tv in positions:
            env = dict(zip(names, tv)) | {f"s{a}": v for a, v in enumerate(s)}
            it = np.array([int(e.const + sum(c * env[v] for v, c in e.terms)) for e in df.ts_map.exprs])
            elem[s, tv] = tuple(acc @ it)
            valid[s, tv] = all(0 <= v < trips[d] for v, d in zip(it, op.dims))
    rpos = names.index("t_r")

    def shifted(tv, d):
        u = list(tv)
        u[rpos] -= d
        return tuple(u) if u[rpos] >= 0 else None

    g = nx.DiGraph()
    g.add_nodes_from(fus)
    feeds = {}
    for a in fus:
        for axis in range(len(shape)):
            for step in (1, -1):
                b = list(a)
                b[axis] += step
                b = tuple(b)
                if not 0 <= b[axis] < shape[axis]:
                    continue
                for d in (0, 1):
                    if all(shifted(tv, d) is None or elem[a, shifted(tv, d)] == elem[b, tv] for tv in positions):
                        g.add_edge(a, b)
                        feeds.setdefault((a, b), d)
    cond = nx.condensation(g)
    sources = [n for n in cond.nodes if cond.in_degree(n) == 0]
    roots = [min(cond.nodes[n]["members"]) for n in sources]
    held = {}
    for r in roots:
        held.update({(r, tv): elem[r, tv] for tv in positions})
        for a, b in nx.bfs_edges(g, r):
            if any(k[0] == b for k in held):
                continue
            d = feeds[a, b]
            held.update({(b, tv): held.get((a, shifted(tv, d))) if shifted(tv, d) else None for tv in positions})
    assert all(held[s, tv] == elem[s, tv] for s in fus for tv in positions if valid[s, tv])
    return len(sources)


@pytest.mark.parametrize("shape,mp", CONV_SKEWS)
def test_lane_cost_of_the_maps_own_schedule_matches_a_walk_of_the_tile(shape, mp):
    """``skew_lane_cost``: memory-fed input lanes under the map's own schedule (its reuse moves: wires and FIFOs
    of one r iteration) against the compressed build. The map's count equals an independent walk of the padded
    tile; on every case the map's diagonal reuse of I (the same element on the axis-1 neighbour in the same
    step) needs fewer lanes than the compressed build, where that reuse is a reverse move it does not build."""
    from archgen.dataflow.interconnect import skew_lane_cost
    design = _conv(shape, mp)
    df = design.dataflows[0]
    cost = skew_lane_cost(design, df)
    assert cost.loop == "r"
    fg = derive_interconnect(design)
    assert dict(cost.compressed) == {p.name: p.n_lanes for p in fg.inputs}
    trips = {"n": 1, "k": shape[0] if "s0" in mp["k"] else 1, "p": shape[-1], "q": 1, "c": 2, "r": 3, "s": 2}
    for name in ("I", "W"):
        assert cost.literal[name] == _literal_lanes(design, df, name, trips), name
    assert cost.literal["I"] < cost.compressed["I"] and cost.saving > 0
    # the price: each row of r padded by the largest sigma.s (FU (P0-1, P1-1) starts r that many iterations late)
    sigma = [-df.ts_map.exprs[design.operation.dims.index("r")].coeffs.get(f"s{a}", 0) for a in range(len(shape))]
    assert cost.span == sum(v * (e - 1) for v, e in zip(sigma, shape))
    b = {"n": 1, "k": 4, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}
    assert cost.tile_steps(design, df, b) == (2 * (3 + cost.span) * 2, 2 * 3 * 2)


def test_explain_says_which_schedule_of_a_skew_inside_the_tile_is_built_and_why():
    from archgen.dataflow.explain import explain
    design = _conv(*CONV_SKEWS[0])
    text = "\n".join(explain(design))
    assert ("memory-fed input lanes: the map's own schedule I 1, W 3 (4 in all), the compressed build I 2, W 3 "
            "(5 in all); ") in text
    assert "the map's own schedule would save 1 lane(s) but is NOT built" in text
    assert "so the compressed build runs" in text
    assert "steps per tile at the reference bounds: 54 (rows of t_r padded by 3 iteration(s)) against 27" in text
    tile_loop = _design((3, 2), {"map": {"i": "3*t_i + s0", "j": "2*t_j + s1", "k": "t_k - s0 - s1"},
                                 "order": ["i", "k", "j"]})
    from archgen.dataflow.interconnect import skew_lane_cost
    assert skew_lane_cost(tile_loop, tile_loop.dataflows[0]) is None
    assert "why compressed: the skew is on a tile loop (t_k)" in "\n".join(explain(tile_loop))
