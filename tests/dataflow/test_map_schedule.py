"""``dataflows.X.schedule: map``: the map's own schedule of a skew on a loop inside the tile (issue 14 item 3,
docs/dataflows.md "Skewed maps"). Each row of the skewed loop l is L + span positions, FU s runs iteration
pos - sigma.s and is masked outside its own L positions, and its inputs come over the wires and FIFOs of the map's
reuse. Checked here in Amaranth's simulator (outputs exact, RTL cycles == model cycles) on random shapes, bounds,
seeds and control vectors; the lanes equal ``skew_lane_cost``'s count for the map's own schedule; the fields and
paths that do not build it are refused naming ``dataflows.X.schedule``."""
import numpy as np
import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import load_spec_data
from archgen.dataflow.compile import compile_array
from archgen.dataflow.interconnect import derive_interconnect, skew_lane_cost
from archgen.dataflow.ir import Role
from archgen.mappings.tiling import delay_axes, map_problem, row_pads
from archgen.sim.array_model import simulate_array
from archgen.verif.array_amaranth import verify_array_amaranth

CONV_OP = "O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r,s]"
CONV_ORDER = ["n", "k", "p", "q", "c", "r", "s"]


def _spec(op, shape, mp, order, inner, schedule="map", control=None, clock=None, types=None):
    df = {"map": mp, "order": order, "inner": inner, "schedule": schedule} | ({"control": control} if control else {})
    names = {x for x in op.replace("[", " ").replace("+=", " ").replace("*", " ").split() if x[:1].isupper()}
    data = {"version": 1, "name": "skew_map", "operation": op, "array": {"shape": list(shape)},
            "types": types or {n: ("int32" if n == "O" else "int8") for n in names}, "dataflows": {"m": df}}
    return load_spec_data(data | ({"clock_mhz": clock} if clock else {}))


def _skewed_row(loop, sigma, shape):
    """``t_loop - sigma.s``; a negative sigma_a is a positive FU coefficient (FUs further along axis a run earlier),
    whose map starts at the constant -(the largest -sigma.s) so that every iteration from 0 runs."""
    terms = [f"{'-' if v > 0 else '+'} {abs(v)}*s{a}" for a, v in enumerate(sigma) if v and shape[a] > 1]
    early = sum(-v * (shape[a] - 1) for a, v in enumerate(sigma) if v < 0)
    return " ".join([f"t_{loop}"] + terms + ([f"- {early}"] if early else []))


def _conv_map(shape, sigma=(1, 1)):
    """The convolution with k on axis 0 and p on axis 1 (1-D arrays: p on axis 1), r skewed by sigma.s."""
    return {"n": "t_n", "k": f"{shape[0]}*t_k + s0" if shape[0] > 1 else "t_k",
            "p": f"{shape[1]}*t_p + s1", "q": "t_q", "c": "t_c", "r": _skewed_row("r", sigma, shape), "s": "t_s"}


def _conv(shape, schedule="map", inner=("c", "r", "s"), sigma=(1, 1), **kw):
    order = CONV_ORDER[:-3] + list(inner)
    return _spec(CONV_OP, shape, _conv_map(shape, sigma), order, list(inner), schedule, **kw)


TABLE = [((3, 2), {"I": 1, "W": 3}), ((2, 3), {"I": 1, "W": 2}), ((1, 4), {"I": 1, "W": 1})]


@pytest.mark.parametrize("shape,lanes", TABLE)
def test_built_lanes_are_the_maps_own_count(shape, lanes):
    """The built interconnect of ``schedule: map`` takes the memory lanes ``skew_lane_cost`` counts for the map's own
    schedule (an independent walk in tests/dataflow/test_skewed_maps.py checks that count); the default build keeps
    the compressed count."""
    design = _conv(shape)
    cost = skew_lane_cost(design, design.dataflows[0])
    built = {p.name: p.n_lanes for p in derive_interconnect(design).inputs}
    assert built == dict(cost.literal) == lanes
    compressed = _conv(shape, schedule="compressed")
    assert {p.name: p.n_lanes for p in derive_interconnect(compressed).inputs} == dict(cost.compressed)
    assert dict(skew_lane_cost(compressed, compressed.dataflows[0]).compressed) == dict(cost.compressed)


@pytest.mark.parametrize("shape", [s for s, _ in TABLE])
def test_model_steps_count_the_padded_rows(shape):
    """Steps per tile = the compressed build's, each row of r longer by the span (``SkewLaneCost.tile_steps``)."""
    design = _conv(shape)
    b = {"n": 1, "k": 4, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}
    cost = skew_lane_cost(design, design.dataflows[0])
    fg = compile_array(design).fu_graph
    mapping = map_problem(design, b, fg.dataflow)
    own, compressed = cost.tile_steps(design, design.dataflows[0], b)
    assert mapping.steps == own == compressed // 3 * (3 + cost.span)
    assert row_pads(design, fg.dataflow)[0].span(shape) == cost.span


# (operation, shape, map, order, inner, control, clock, bounds, seed): the table's maps, other shapes and sizes, a
# 1xN array, control vectors, a clock that pipelines, a skew on the innermost loop, and a 1-D convolution whose
# padded positions no zero-filled input masks (W[r + c]: only the per-FU flags zero them)
CONV1 = "O[p] += I[p+r] * W[r+c]"
CONV_C = {"n": "t_n", "c": "2*t_c + s0", "k": "2*t_k + s1", "p": "t_p", "q": "t_q", "r": "t_r - s0 - s1", "s": "t_s"}
RANDOM = [
    (CONV_OP, (3, 2), None, None, None, None, None, {"n": 1, "k": 4, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}, 5),
    (CONV_OP, (2, 3), None, None, None, None, None, {"n": 2, "k": 3, "p": 4, "q": 1, "c": 2, "r": 4, "s": 3}, 1),
    (CONV_OP, (1, 4), None, None, None, None, None, {"n": 1, "k": 2, "p": 6, "q": 2, "c": 3, "r": 2, "s": 2}, 7),
    (CONV_OP, (1, 6), None, None, None, None, None, {"n": 1, "k": 2, "p": 7, "q": 1, "c": 1, "r": 3, "s": 3}, 2),
    (CONV_OP, (2, 2), None, None, None, [1, 1], None, {"n": 1, "k": 3, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}, 3),
    (CONV_OP, (3, 3), None, None, None, [0, 1], None, {"n": 1, "k": 5, "p": 4, "q": 1, "c": 1, "r": 2, "s": 4}, 4),
    (CONV_OP, (2, 3), None, None, None, None, 1500, {"n": 1, "k": 3, "p": 5, "q": 2, "c": 2, "r": 3, "s": 2}, 8),
    (CONV_OP, (3, 2), None, None, ["c", "s", "r"], None, None, {"n": 1, "k": 4, "p": 3, "q": 2, "c": 2, "r": 3,
                                                                  "s": 2}, 6),
    (CONV1, (1, 4), {"p": "4*t_p + s1", "r": "t_r - s1", "c": "t_c"}, ["p", "r", "c"], ["r", "c"], None, None,
     {"p": 5, "r": 3, "c": 2}, 3),
    # the output reduced across axis 0 (c on it, ragged): an adder tree, then partial-sum chains (control [1, 0])
    (CONV_OP, (2, 2), CONV_C, ["n", "k", "c", "p", "q", "r", "s"], ["r", "s"], None, None,
     {"n": 1, "k": 3, "p": 2, "q": 2, "c": 3, "r": 3, "s": 2}, 2),
    (CONV_OP, (2, 2), CONV_C, ["n", "k", "c", "p", "q", "r", "s"], ["r", "s"], [1, 0], None,
     {"n": 1, "k": 4, "p": 1, "q": 2, "c": 5, "r": 2, "s": 3}, 2),
    (CONV1, (1, 3), {"p": "3*t_p + s1", "r": "t_r - s1", "c": "t_c"}, ["p", "r", "c"], ["r", "c"], [0, 1], None,
     {"p": 7, "r": 4, "c": 3}, 9),
]


@pytest.mark.parametrize("op,shape,mp,order,inner,control,clock,bounds,seed", RANDOM)
def test_maps_own_schedule_is_exact_in_amaranth(op, shape, mp, order, inner, control, clock, bounds, seed):
    if mp is None:
        design = _conv(shape, control=control, clock=clock, inner=inner or ("c", "r", "s"))
    else:
        design = _spec(op, shape, mp, order, inner, control=control, clock=clock)
    compiled = compile_array(design)
    assert row_pads(design, compiled.dataflow) and compiled.fu_graph.output.role is Role.ACCUMULATE
    res = verify_array_amaranth(design, bounds, seed=seed)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles


def test_the_per_fu_flags_are_what_zero_the_padded_positions(monkeypatch):
    """Without the per-FU mask the 1-D convolution (no input whose index is r alone) is wrong: the check can fail."""
    import archgen.rtlgen.array as array
    design = _spec(CONV1, (1, 4), {"p": "4*t_p + s1", "r": "t_r - s1", "c": "t_c"}, ["p", "r", "c"], ["r", "c"])
    monkeypatch.setattr(array, "row_pads", lambda d, df: ())
    assert not verify_array_amaranth(design, {"p": 5, "r": 3, "c": 2}, seed=3).outputs_exact


def test_random_shapes_and_seeds_in_amaranth():
    """Random array shapes (1xN included), bounds and seeds of the convolution map: all exact, cycles equal."""
    rng = np.random.default_rng(123)
    for _ in range(6):
        shape = (int(rng.integers(1, 4)), int(rng.integers(2, 5)))
        b = {"n": 1, "k": int(rng.integers(1, 6)), "p": int(rng.integers(1, 8)), "q": int(rng.integers(1, 3)),
             "c": int(rng.integers(1, 3)), "r": int(rng.integers(1, 5)), "s": int(rng.integers(1, 4))}
        res = verify_array_amaranth(_conv(shape), b, seed=int(rng.integers(100)))
        assert res.outputs_exact and res.rtl_cycles == res.model_cycles, (shape, b, res.detail)


def test_model_cycles_grow_by_the_padding():
    """The cycle model counts the padded rows: the map's own schedule is (L + span) / L as many issue steps."""
    b = {"n": 1, "k": 3, "p": 2, "q": 2, "c": 2, "r": 3, "s": 3}
    issued = {}
    for schedule in ("map", "compressed"):
        compiled = compile_array(_conv((3, 2), schedule=schedule))
        result = simulate_array(compiled, map_problem(compiled.design, b, compiled.dataflow))
        issued[schedule] = result.issue_cycles
        assert result.macs == 3 * 2 * 2 * 2 * 3 * 3
    assert issued["map"] == issued["compressed"] // 3 * (3 + 3)


@pytest.mark.parametrize("data,path,needle", [
    ({"spatial": {"i": 0}, "order": ["j", "i", "k"], "schedule": "map"}, "dataflows.m.schedule",
     "only a 'map' dataflow has a schedule"),
    # a skewed loop outside the tile is built (tests/dataflow/test_map_schedule_outer*.py), also one the output
    # depends on skewed along an axis the output is reduced along: held over the tile (H148,
    # test_map_schedule_outer_reduce.py) or streamed per step (H150, test_map_schedule_outer_stream.py)
    ({"map": {"i": "3*t_i + s0", "j": "t_j", "k": "t_k"}, "order": ["i", "j", "k"], "schedule": "fast"},
     "dataflows.m.schedule", "must be one of 'compressed', 'map'"),
])
def test_schedule_map_is_refused_where_it_is_not_built(data, path, needle):
    spec = {"version": 1, "name": "g", "operation": "C[i,j] += A[i,k] * B[k,j]", "array": {"shape": [3]},
            "types": {"A": "int8", "B": "int8", "C": "int32"}, "dataflows": {"m": data}}
    with pytest.raises(SpecError) as err:
        compile_array(load_spec_data(spec))
    assert any(p.path == path and needle in p.message for p in err.value.problems), err.value


# fused designs run the map's own schedule of the selected dataflow: tests/dataflow/test_fused_map_schedule.py


def _own_spec_file(tmp_path):
    """The 3x2 ``schedule: map`` convolution of docs/dataflows.md as a spec file."""
    import yaml
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "name": "own", "operation": CONV_OP, "array": {"shape": [3, 2]},
                                    "types": {"I": "int8", "W": "int8", "O": "int32"},
                                    "dataflows": {"skew": {"map": _conv_map((3, 2)), "order": CONV_ORDER,
                                                           "inner": ["c", "r", "s"], "schedule": "map"}}}))
    return path


def test_command_line_explains_the_maps_own_schedule(tmp_path, capsys):
    """``archgen build --explain`` says the map's own schedule runs with its lanes against the compressed build's."""
    from archgen.cli import main
    path = _own_spec_file(tmp_path)
    assert main(["build", str(path), "--explain", "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "the map's own schedule I 1, W 3 (4 in all), the compressed build I 2, W 3 (5 in all)" in out
    assert "the map's own schedule runs (schedule: map): 1 lane(s) fewer than the compressed build" in out
    assert "I [8 bit]: streamed; 1 lane(s)" in out and "W [8 bit]: streamed; 3 lane(s)" in out
    import json
    params = json.loads((tmp_path / "out" / "manifest.json").read_text())["parameters"]
    assert (params["schedule"], params["padded_loops"]) == ("map", [{"loop": "r", "sigma": [1, 1], "span": 3, "halo": 0}])


@pytest.mark.slow          # the whole accelerator's Verilog: about 25 s
def test_command_line_builds_it_with_the_memory_system(tmp_path):
    """``archgen build --memory`` builds the map's own schedule (the planner and the memory system used to refuse
    it); W's three lanes start at three offsets of r, so its buffer has a read copy per lane (the lane map)."""
    import json
    from archgen.cli import main
    path = _own_spec_file(tmp_path)
    assert main(["build", str(path), "--memory", "-o", str(tmp_path / "mem")]) == 0
    manifest = json.loads((tmp_path / "mem" / "layer_manifest.json").read_text())
    assert manifest["dataflow"] == "skew"
    assert (manifest["buffers"]["I"]["copies"], manifest["buffers"]["W"]["copies"]) == (1, 3)


def _random_sigma(rng, shape, leads):
    """A skew per axis (0 on axes of extent 1, one at least not 0): 0 to 2 (lags), or with ``leads`` -2 to 2 with
    one at least negative (a positive FU coefficient; the other axis a lead, a lag or none)."""
    if not leads:
        sigma = (int(rng.integers(0, 3)) if shape[0] > 1 else 0, int(rng.integers(0, 3)))
        return sigma if any(sigma) else (0, 1)
    while True:
        sigma = tuple(int(rng.integers(-2, 3)) if e > 1 else 0 for e in shape)
        if min(sigma) < 0:
            return sigma


def _random_case(rng, leads=False):
    """A random ``schedule: map`` convolution: array shape (1xN included), skew sigma per axis (``_random_sigma``),
    control vector (0 or 1 per axis; -1 to 1 with ``leads``), order of the tile's loops, clock, bounds and seed."""
    import itertools
    shape = (int(rng.integers(1, 4)), int(rng.integers(2, 5)))
    sigma = _random_sigma(rng, shape, leads)
    inner = list(itertools.permutations(["c", "r", "s"]))[int(rng.integers(6))]
    control = [int(rng.integers(-1 if leads else 0, 2)), int(rng.integers(-1 if leads else 0, 2))]
    design = _conv(shape, sigma=sigma, inner=inner, control=control, clock=int(rng.choice([500, 1500])))
    b = {"n": int(rng.integers(1, 3)), "k": int(rng.integers(1, 6)), "p": int(rng.integers(1, 8)),
         "q": int(rng.integers(1, 3)), "c": int(rng.integers(1, 3)), "r": int(rng.integers(1, 5)),
         "s": int(rng.integers(1, 4))}
    return design, b, int(rng.integers(1000))


@pytest.mark.slow
def test_many_random_maps_in_amaranth():
    """100 random convolutions under the map's own schedule (``_random_case``): every one exact, RTL == model cycles.
    Their lanes are what docs/dataflows.md reports against ``skew_lane_cost``'s count and the compressed build: equal
    to the count wherever the control vector is 0 (checked here), more only where the count takes a move toward an
    FU that runs earlier (c.ds < 0)."""
    rng = np.random.default_rng(2026)
    for _ in range(100):
        design, b, seed = _random_case(rng)
        df = design.dataflows[0]
        cost = skew_lane_cost(design, df)
        if cost is not None and not any(df.control):      # the count ignores the control vector; with c = 0 it is met
            assert {p.name: p.n_lanes for p in derive_interconnect(design).inputs} == dict(cost.literal), df
        res = verify_array_amaranth(design, b, seed=seed)
        assert res.outputs_exact and res.rtl_cycles == res.model_cycles, (df, b, seed, res.detail)


def test_a_fifo_whose_receiver_runs_no_later_in_the_row_gets_a_halo():
    """3x2 with r skewed by s0 only: I reaches its axis-1 neighbour one r iteration later through a FIFO whose
    receiver runs at the same row position (sigma_1 = 0), so the FU behind it would read data from before the row at
    its first position; the rows get a halo of 1 (``RowPad.halo``: the skewed row is t_r - s0 - 1) and I takes
    ``skew_lane_cost``'s 1 lane, exact in Amaranth; ``--explain`` prints the halo."""
    from archgen.dataflow.explain import explain
    design = _conv((3, 2), sigma=(1, 0), control=[1, 0])
    compiled = compile_array(design)
    (pad,) = row_pads(design, compiled.dataflow)
    assert pad.halo == 1 and pad.span((3, 2)) == 3
    assert {p.name: p.n_lanes for p in compiled.fu_graph.inputs} == dict(skew_lane_cost(design, design.dataflows[0]).literal) \
        == {"I": 1, "W": 3}
    assert "rows of t_r padded by 3 iteration(s): a halo of 1 in which the FIFOs fill" in "\n".join(explain(design))
    assert verify_array_amaranth(design, {"n": 1, "k": 4, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}, seed=1).ok


def test_explain_says_when_the_built_lanes_exceed_the_count_and_compressed_is_better():
    """2x3 with r skewed by s0 only and control [1, 1]: ``skew_lane_cost`` counts I 1 through axis-1 moves toward FUs
    that run earlier (c.ds = -1), which are not built; I takes 3 lanes, as many as the compressed build, and
    ``--explain`` says compressed is the better choice instead of claiming a saving."""
    from archgen.dataflow.explain import explain
    design = _conv((2, 3), sigma=(1, 0), control=[1, 1])
    assert dict(skew_lane_cost(design, design.dataflows[0]).literal) == {"I": 1, "W": 2}
    assert {p.name: p.n_lanes for p in derive_interconnect(design).inputs} == {"I": 3, "W": 2}
    text = "\n".join(explain(design))
    assert "but it takes as many lanes as the compressed build and 9 more steps per tile" in text
    assert "skew_lane_cost counts I 1, W 2 (3 in all): the count ignores the control vector" in text
    assert verify_array_amaranth(design, {"n": 1, "k": 4, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}, seed=1).ok


@pytest.mark.slow
def test_random_batched_reductions_in_amaranth():
    """Another operation: ``C[i,j] += A[i,k,m] * B[k,m,j]`` with k skewed inside the tile ([k, m] or [m, k]), random
    shapes, skews, control vectors, clocks and bounds (2026-12-06: 150 of 150 exact in an ad-hoc sweep, 50 here)."""
    rng = np.random.default_rng(77)
    for t in range(50):
        shape = (int(rng.integers(1, 4)), int(rng.integers(2, 4)))
        sigma = (int(rng.integers(0, 2)) if shape[0] > 1 else 0, int(rng.integers(0, 3)))
        skew = " ".join(f"- {v}*s{a}" for a, v in enumerate(sigma if any(sigma) else (0, 1)) if v and shape[a] > 1)
        mp = {"i": f"{shape[0]}*t_i + s0" if shape[0] > 1 else "t_i", "j": f"{shape[1]}*t_j + s1", "k": f"t_k {skew}",
              "m": "t_m"}
        inner = ["k", "m"] if rng.integers(2) else ["m", "k"]
        control = [int(rng.integers(0, 2)), int(rng.integers(0, 2))]
        b = {"i": int(rng.integers(1, 6)), "j": int(rng.integers(1, 6)), "k": int(rng.integers(1, 5)),
             "m": int(rng.integers(1, 4))}
        design = _spec("C[i,j] += A[i,k,m] * B[k,m,j]", shape, mp, ["i", "j"] + inner, inner, control=control,
                       clock=int(rng.choice([500, 1500])))
        res = verify_array_amaranth(design, b, seed=t)
        assert res.outputs_exact and res.rtl_cycles == res.model_cycles, (mp, inner, control, b, t, res.detail)


# several skewed loops inside the tile (H125): each padded loop l by its own span_l + h_l, an FU's product masked when
# any of its loops is outside its own positions, each axis's FIFO stepping its own loop
SEVERAL = {"n": "t_n", "k": "t_k", "p": "3*t_p + s0", "q": "2*t_q + s1", "c": "t_c", "r": "t_r - s0", "s": "t_s - s1"}
SEVERAL_B = {"n": 1, "k": 3, "p": 4, "q": 3, "c": 2, "r": 3, "s": 2}


def test_several_skewed_loops_pad_each_row_and_fifo_their_own_loop():
    """Conv on 3x2 with r skewed along axis 0 and s along axis 1: W hops along axis 0 one step of t_r (a FIFO of
    (trips of s + its span) steps) and along axis 1 one step of t_s (one register); I's index does not move with
    either axis (a wire). I 1 + W 1 lanes against the compressed build's I 6 + W 1."""
    design = _spec(CONV_OP, (3, 2), SEVERAL, CONV_ORDER, ["c", "r", "s"])
    compiled = compile_array(design)
    fg = compiled.fu_graph
    assert [(p.loop, p.sigma, p.halo) for p in row_pads(design, compiled.dataflow)] == [("r", (1, 0), 0), ("s", (0, 1), 0)]
    assert fg.halo == (("r", 2), ("s", 1))
    assert {(a.operand, a.axis, a.loop, a.after) for a in delay_axes(design, compiled.dataflow)} == \
        {("W", 0, "r", ("s",)), ("W", 1, "s", ())}
    assert {p.name: p.n_lanes for p in fg.inputs if p.role is Role.STREAM} == {"I": 1, "W": 1}
    compressed = _spec(CONV_OP, (3, 2), SEVERAL, CONV_ORDER, ["c", "r", "s"], schedule="compressed")
    assert {p.name: p.n_lanes for p in derive_interconnect(compressed).inputs if p.role is Role.STREAM} == {"I": 6, "W": 1}
    mapping = map_problem(design, SEVERAL_B, compiled.dataflow)
    assert mapping.steps == 2 * (3 + 2) * (2 + 1) and mapping.fifo_depth == 2 + 1
    res = verify_array_amaranth(design, SEVERAL_B, seed=3)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles


def test_an_fu_is_masked_when_any_of_its_loops_is_outside_its_positions(monkeypatch):
    """With W indexed by r + s (no input indexed by s alone), an FU outside its own positions of s multiplies real
    elements. Exact with the OR over the loops' flags; wrong with only the first or only the last loop's flag (the
    OR replaced): the check can fail. (With W[k,c,r,s] the out-of-range elements are zero and either flag alone is
    exact.)"""
    import types

    import archgen.rtlgen.array as array
    design = _spec("O[n,k,p,q] += I[n,c,p+r,q+s] * W[k,c,r+s]", (3, 2), SEVERAL, CONV_ORDER, ["c", "r", "s"])
    assert verify_array_amaranth(design, SEVERAL_B, seed=3).outputs_exact
    for keep in (lambda a, b: a, lambda a, b: b):
        monkeypatch.setattr(array, "operator", types.SimpleNamespace(or_=keep))
        assert not verify_array_amaranth(design, SEVERAL_B, seed=3).outputs_exact


def _several_skews_case(rng, leads=False):
    """A random convolution on a random 2-D array with two or three of c, r, s skewed along random axes (sigma up to
    2 per axis; with ``leads`` each skew has a positive FU coefficient, ``_random_sigma``), a random order of the
    tile's loops, control vector, clock and bounds."""
    shape = (int(rng.integers(1, 4)), int(rng.integers(2, 5)))

    def skewed(loop):
        if leads:
            return _skewed_row(loop, _random_sigma(rng, shape, True), shape)
        sigma = (0, 0)
        while not any(sigma):
            sigma = tuple(int(rng.integers(0, 3)) if shape[a] > 1 else 0 for a in range(2))
        return f"t_{loop} " + " ".join(f"- {v}*s{a}" for a, v in enumerate(sigma) if v)
    loops = [d for d in ("c", "r", "s") if rng.random() < 0.7]
    loops = loops if len(loops) > 1 else ["r", "s"]
    mp = {"n": "t_n", "k": f"{shape[0]}*t_k + s0" if shape[0] > 1 else "t_k", "p": f"{shape[1]}*t_p + s1", "q": "t_q",
          **{d: skewed(d) if d in loops else f"t_{d}" for d in ("c", "r", "s")}}
    inner = [str(d) for d in rng.permutation(["c", "r", "s"])]
    b = {"n": 1, "k": int(rng.integers(1, 5)), "p": int(rng.integers(1, 6)), "q": int(rng.integers(1, 3)),
         "c": int(rng.integers(1, 3)), "r": int(rng.integers(1, 4)), "s": int(rng.integers(1, 4))}
    low = -1 if leads else 0
    design = _spec(CONV_OP, shape, mp, CONV_ORDER[:4] + inner, inner,
                   control=[int(rng.integers(low, 2)), int(rng.integers(low, 2))], clock=int(rng.choice([500, 1500])))
    return design, b


@pytest.mark.parametrize("count", [pytest.param(6, id="6"), pytest.param(100, id="100", marks=pytest.mark.slow)])
def test_random_several_skewed_loops_in_amaranth(count):
    """Random maps with several skewed loops: all exact, RTL cycles == model cycles (2026-12-06: 100 of 100 and 130
    more in ad-hoc sweeps)."""
    rng = np.random.default_rng(125)
    for t in range(count):
        design, b = _several_skews_case(rng)
        res = verify_array_amaranth(design, b, seed=t)
        assert res.outputs_exact and res.rtl_cycles == res.model_cycles, (design.dataflows[0].ts_map, b, t, res.detail)


# positive FU coefficients (H127): ``r: "t_r + s0 - 2"`` runs FUs further along axis 0 earlier, the lag of the axis read
# backwards: every row starts ``early`` (the largest -sigma.s) positions sooner for the earliest FUs, the masks and the
# memory lanes' leads follow the offset halo + early + sigma.s, and the map's reuse moves run toward lower coordinates
def test_a_positive_coefficient_is_the_lag_read_backwards():
    """3x2 with ``r: t_r + s0 + s1 - 3``: FU (2, 1) runs each row's first iteration at position 0, FU (0, 0) at 3; the
    map's FIFOs hop toward lower coordinates (I along axis 0, W along axis 1, step -1); the rows are padded by 3, as
    for the lag; the lanes are ``skew_lane_cost``'s count; exact in Amaranth."""
    design = _conv((3, 2), sigma=(-1, -1))
    compiled = compile_array(design)
    (pad,) = row_pads(design, compiled.dataflow)
    assert (pad.sigma, pad.halo, pad.early, pad.span((3, 2))) == ((-1, -1), 0, 3, 3)
    assert (pad.offset((2, 1)), pad.offset((0, 0)), pad.offsets((3, 2))) == (0, 3, (0, 1, 2, 3))
    assert {(a.operand, a.axis, a.step) for a in delay_axes(design, compiled.dataflow)} == {("I", 0, -1), ("W", 1, -1)}
    cost = skew_lane_cost(design, design.dataflows[0])
    assert {p.name: p.n_lanes for p in compiled.fu_graph.inputs} == dict(cost.literal) == {"I": 2, "W": 3}
    assert map_problem(design, SMALL_B, compiled.dataflow).steps == 2 * (3 + 3) * 2 and cost.span == 3
    res = verify_array_amaranth(design, SMALL_B, seed=5)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles == 196


SMALL_B = {"n": 1, "k": 4, "p": 3, "q": 2, "c": 2, "r": 3, "s": 2}


@pytest.mark.parametrize("shape,sigma,control,lanes,compressed", [
    # mixed signs: r = t_r + s0 - s1 - 2; I reaches along axis 0 (toward lower s0) by FIFO, W along axis 1 (higher s1)
    ((3, 2), (-1, 1), None, {"I": 1, "W": 3}, {"I": 2, "W": 3}),
    ((2, 3), (-1, 1), [-1, 1], {"I": 1, "W": 2}, {"I": 3, "W": 2}),
    # a lead with a control vector that runs the receivers earlier (c.ds < 0): not built, memory lanes instead
    ((3, 2), (-1, -1), [1, 1], {"I": 6, "W": 6}, {"I": 2, "W": 3}),
    # the same lead with the control vector reversed: the FIFOs' receivers run c.ds = 1 cycle later
    ((3, 2), (-1, -1), [-1, -1], {"I": 2, "W": 3}, {"I": 2, "W": 3}),
])
def test_mixed_and_positive_coefficients_lanes_and_amaranth(shape, sigma, control, lanes, compressed):
    design = _conv(shape, sigma=sigma, control=control)
    cost = skew_lane_cost(design, design.dataflows[0])
    assert {p.name: p.n_lanes for p in derive_interconnect(design).inputs} == lanes
    assert dict(cost.compressed) == compressed
    if control is None or min(control) < 0:         # no move toward an FU that runs earlier: the count is met
        assert dict(cost.literal) == lanes
    res = verify_array_amaranth(design, SMALL_B, seed=2)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles


def test_explain_names_the_lead_and_the_moves_it_cannot_build():
    """``--explain`` gives FU s's first position (early + sigma.s) and, with the control vector against the moves,
    says the count takes moves toward FUs that run earlier and compressed is the better choice."""
    from archgen.dataflow.explain import explain
    text = "\n".join(explain(_conv((3, 2), sigma=(-1, -1))))
    assert "FU s masked outside its own positions 3 + sigma.s .. 3 + sigma.s + L - 1; a positive FU coefficient runs " \
           "some FUs early: the earliest FU starts each row of t_r 3 position(s) before FU 0" in text
    assert "FU s runs iteration pos - (3 + sigma.s) at row position pos" in text
    assert "sigma.s x D array steps late (early where sigma.s < 0: a positive FU coefficient)" in text
    text = "\n".join(explain(_conv((3, 2), sigma=(-1, -1), control=[1, 1])))
    assert "but it takes 7 lane(s) more than the compressed build and 27 more steps per tile: schedule: compressed " \
           "is the better choice here; skew_lane_cost counts I 2, W 3 (5 in all): the count ignores the control " \
           "vector" in text


def test_the_per_fu_flags_zero_the_padded_positions_of_a_lead(monkeypatch):
    """The 1-D convolution with ``r: t_r + s1 - 3`` on 1x4 (W over FIFOs toward lower s1): exact with the per-FU
    flags, wrong without them."""
    import archgen.rtlgen.array as array
    design = _spec(CONV1, (1, 4), {"p": "4*t_p + s1", "r": "t_r + s1 - 3", "c": "t_c"}, ["p", "r", "c"], ["r", "c"])
    (pad,) = row_pads(design, compile_array(design).dataflow)
    assert (pad.early, pad.offset((0, 3)), pad.offset((0, 0))) == (3, 0, 3)
    assert verify_array_amaranth(design, {"p": 5, "r": 3, "c": 2}, seed=3).outputs_exact
    monkeypatch.setattr(array, "row_pads", lambda d, df: ())
    assert not verify_array_amaranth(design, {"p": 5, "r": 3, "c": 2}, seed=3).outputs_exact


@pytest.mark.parametrize("count", [pytest.param(6, id="6"), pytest.param(100, id="100", marks=pytest.mark.slow)])
def test_random_positive_and_mixed_coefficients_in_amaranth(count):
    """Random convolutions whose skew of r has a positive FU coefficient (the other axis a lead, a lag or none;
    ``_random_case(leads=True)``: control -1 to 1 per axis): all exact, RTL == model cycles; with control 0 the lanes
    are ``skew_lane_cost``'s count."""
    rng = np.random.default_rng(127)
    for _ in range(count):
        design, b, seed = _random_case(rng, leads=True)
        df = design.dataflows[0]
        cost = skew_lane_cost(design, df)
        if cost is not None and not any(df.control):
            assert {p.name: p.n_lanes for p in derive_interconnect(design).inputs} == dict(cost.literal), df
        res = verify_array_amaranth(design, b, seed=seed)
        assert res.outputs_exact and res.rtl_cycles == res.model_cycles, (df.ts_map, df.control, b, seed, res.detail)


@pytest.mark.parametrize("count", [pytest.param(4, id="4"), pytest.param(100, id="100", marks=pytest.mark.slow)])
def test_random_several_skews_with_positive_coefficients_in_amaranth(count):
    """Several skewed loops, each with a positive FU coefficient (``_several_skews_case(leads=True)``): all exact."""
    rng = np.random.default_rng(1127)
    for t in range(count):
        design, b = _several_skews_case(rng, leads=True)
        res = verify_array_amaranth(design, b, seed=t)
        assert res.outputs_exact and res.rtl_cycles == res.model_cycles, (design.dataflows[0].ts_map, b, t, res.detail)


TRUE_CONV = "O[n,k,p,q] += I[n,c,p-r,q-s] * W[k,c,r,s]"


@pytest.mark.parametrize("shape,r,lanes,compressed", [
    ((1, 4), "t_r + s1 - 3", {"I": 1, "W": 1}, {"I": 4, "W": 1}),
    ((3, 2), "t_r - s0 + s1 - 1", {"I": 1, "W": 3}, {"I": 2, "W": 3}),
    ((2, 3), "t_r - s0 + s1 - 2", {"I": 1, "W": 2}, {"I": 3, "W": 2}),
    ((3, 2), "t_r - s0 - s1", {"I": 2, "W": 3}, {"I": 2, "W": 3}),      # the lag along p: I's index moves by 2
])
def test_a_true_convolution_reuses_its_input_through_a_lead(shape, r, lanes, compressed):
    """``I[p - r]``: a hop toward higher p reads the same I element one r later only when r grows with s1, a positive
    coefficient along p's axis (the mirror of ``I[p + r]``, whose lag gives the wire). The lead gives I one lane where
    the compressed build takes one per column and the lag none fewer; exact in Amaranth."""
    mp = {"n": "t_n", "k": f"{shape[0]}*t_k + s0" if shape[0] > 1 else "t_k", "p": f"{shape[1]}*t_p + s1", "q": "t_q",
          "c": "t_c", "r": r, "s": "t_s"}
    design = _spec(TRUE_CONV, shape, mp, CONV_ORDER, ["c", "r", "s"])
    cost = skew_lane_cost(design, design.dataflows[0])
    assert {p.name: p.n_lanes for p in derive_interconnect(design).inputs} == dict(cost.literal) == lanes
    assert dict(cost.compressed) == compressed
    res = verify_array_amaranth(design, SMALL_B, seed=4)
    assert res.outputs_exact, res.detail
    assert res.rtl_cycles == res.model_cycles
