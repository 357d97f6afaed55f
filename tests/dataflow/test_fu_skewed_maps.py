"""Maps that skew the FU assignment itself (issue 14): a loop on several array axes or an axis shared by several
loops, e.g. ``j: "3*t_j + s1 - s0"``. Such a map (every loop reading its own t only, every t counting from 0)
runs every iteration exactly once on EVERY problem size iff its FUs' offsets o(s) = sigma.s + m are one
complete residue system modulo the loops' strides C, each below its stride (arch/mapping_check.py
``ResidueForm``). The ones that are run as the tiled map with the map's FU s at array position p(s); the others
pass the checks only at small reference bounds and are refused with an iteration they run twice or miss on
larger ones, which the map's own expressions confirm here."""
import ast
import dataclasses
import itertools
import math
import re

import pytest

from archgen.arch.affine import AffineExpr, AffineMap
from archgen.arch.errors import SpecError
from archgen.arch.mapping_check import brute_force_coverage, check_coverage, residue_form, time_var_ranges
from archgen.arch.spec import load_spec_data
from archgen.cli import main
from archgen.dataflow.interconnect import fu_placement, tiled_equivalent

GEMM = {"version": 1, "name": "gemm_fu_skew", "operation": "C[i,j] += A[i,k] * B[k,j]",
        "types": {"A": "int8", "B": "int8", "C": "int32"}, "bounds": {"i": 5, "j": 4, "k": 6}}
DIMS = ("i", "j", "k")


def _rows(d, rank, strides, sigmas, consts):
    return [AffineExpr.of({f"t_{d}": c, **{f"s{a}": v for a, v in enumerate(sg)}}, m)
            for c in strides for sg in itertools.product(sigmas, repeat=rank) for m in consts]


def _criterion_agrees(shapes, strides, sigmas, consts):
    """Every two-loop map over the given rows: the residue criterion against brute-force enumeration, on the
    bounds it names for invalid maps and on a spread of bounds for valid ones. Returns (maps, valid)."""
    n = valid = 0
    for shape in shapes:
        inputs = ("t_i", "t_j") + tuple(f"s{a}" for a in range(len(shape)))
        for ei, ej in itertools.product(*[_rows(d, len(shape), strides, sigmas, consts) for d in "ij"]):
            mp = AffineMap(inputs, (ei, ej), ("i", "j"))
            form = residue_form(mp, shape)
            n += 1
            if form.valid_for_all_bounds():
                valid += 1
                for b in ((1, 1), (2, 7), (5, 3), (9, 8)):
                    assert brute_force_coverage(mp, shape, dict(zip("ij", b))).ok, (shape, ei, ej, b)
            else:
                assert not brute_force_coverage(mp, shape, form.witness_bounds({"i": 1, "j": 1})).ok, (shape, ei, ej)
    return n, valid


def test_the_residue_criterion_is_exact_on_every_small_map():
    """Exhaustive over small arrays, strides (negative included), FU coefficients and offsets: a map is valid on
    every problem size exactly when the criterion says so, and an invalid one fails on its witness bounds."""
    n, valid = _criterion_agrees([(2,), (2, 3)], (-1, 1, 2, 3), (-1, 0, 1), (-1, 0))
    assert n == (4 * 3 * 2) ** 2 + (4 * 9 * 2) ** 2 and 0 < valid < n


@pytest.mark.slow
def test_the_residue_criterion_is_exact_on_a_larger_space():
    n, valid = _criterion_agrees([(2,), (3,), (4,), (2, 2), (2, 3), (3, 2)], (-1, 1, 2, 3, 4), (-1, 0, 1, 2),
                                 (-1, 0, 1))
    assert n == 183_600 and valid == 1074


def _runs(ts_map, shape, bounds, order):
    """FU -> the in-box iterations it runs, in the temporal order of its t (every t from 0 over its trips)."""
    trips = time_var_ranges(ts_map, shape, bounds)
    tvars = [f"t_{d}" for d in order]
    out = {}
    for tv in itertools.product(*[range(trips[v]) for v in tvars]):
        env = dict(zip(tvars, tv))
        for s in itertools.product(*[range(e) for e in shape]):
            env.update({f"s{a}": v for a, v in enumerate(s)})
            x = tuple(int(e.evaluate(env)) for e in ts_map.exprs)
            if all(0 <= v < bounds[d] for v, d in zip(x, ts_map.names)):
                out.setdefault(s, []).append(x)
    return out


def _fu_skewed(exprs, shape):
    """A row with stride != 1 that is not ``extent*t + s_axis``, or two such rows on one axis."""
    axes = []
    for e in exprs:
        co = e.coeffs
        c = co[next(v for v in co if v.startswith("t_"))]
        if c == 1:
            continue
        sv = [(v, k) for v, k in co.items() if not v.startswith("t_")]
        if len(sv) != 1 or sv[0][1] != 1 or shape[int(sv[0][0][1:])] != c:
            return True
        axes.append(sv[0][0])
    return len(axes) != len(set(axes))


def _confirm_witness(design, df, text):
    """The iteration the refusal names runs twice / never under the map's own expressions on the named bounds."""
    grown = ast.literal_eval(re.search(r"with bounds (\{[^}]*\})", text).group(1))
    m = re.search(r"it (runs|never runs) \(i=(-?\d+), j=(-?\d+), k=(-?\d+)\)", text)
    x = tuple(int(v) for v in m.groups()[1:])
    hits = sum(run.count(x) for run in _runs(df.ts_map, design.shape, grown, df.order).values())
    assert hits == 0 if m.group(1) == "never runs" else hits > 1


@pytest.mark.parametrize("shape", [pytest.param((2, 2), marks=pytest.mark.slow), (2, 3),
                                   pytest.param((3, 2), marks=pytest.mark.slow)])
def test_every_fu_skewed_map_the_checks_accept_is_built_or_refused_with_a_witness(shape):
    """Every map over strides 1..3, FU coefficients -1..1 and offsets -1..0 on loops i and j (k = t_k) that skews
    the FU assignment and passes the checks at the reference bounds (the GEMM's 5, 4, 6 or a small 3, 1, 2):
    valid for every problem size -> built, each map FU running exactly the iterations, in the same order, of
    its array position p(s) in the tiled map built; otherwise refused on the row's field with a witness."""
    inputs = tuple(f"t_{d}" for d in DIMS) + tuple(f"s{a}" for a in range(len(shape)))
    built = refused = 0
    for ref in ({"i": 5, "j": 4, "k": 6}, {"i": 3, "j": 1, "k": 2}):
        rows = [_rows(d, len(shape), (1, 2, 3), (-1, 0, 1), (-1, 0)) for d in "ij"]
        for ei, ej in itertools.product(*rows):
            exprs = (ei, ej, AffineExpr.var("t_k"))
            mp = AffineMap(inputs, exprs, DIMS)
            if not _fu_skewed(exprs, shape) or not check_coverage(mp, shape, ref).ok:
                continue
            spec = {"i": str(ei), "j": str(ej), "k": "t_k"}
            design = load_spec_data(dict(GEMM, bounds=ref, array={"shape": list(shape)},
                                         dataflows={"m": {"map": spec, "order": list(DIMS)}}))
            df = design.dataflows[0]
            if residue_form(mp, shape).valid_for_all_bounds():
                tiled = tiled_equivalent(design, df)
                place = fu_placement(design, df)
                assert sorted(place.values()) == sorted(place)          # a permutation of the array's FUs
                big = {"i": 7, "j": 8, "k": 3}
                mine, theirs = _runs(mp, shape, big, df.order), _runs(tiled.ts_map, shape, big, tiled.order)
                assert all(mine.get(s, []) == theirs.get(p, []) for s, p in place.items()), spec
                assert sum(map(len, mine.values())) == math.prod(big.values())
                built += 1
            else:
                with pytest.raises(SpecError) as err:
                    tiled_equivalent(design, df)
                (p,) = err.value.problems
                text = str(p)
                assert text.startswith("dataflows.m.map.") and "not a dataflow beyond the reference bounds" in text
                _confirm_witness(design, df, text)
                refused += 1
    assert built > 0 and refused > 0


def _design(shape, mp, bounds=None):
    return load_spec_data(dict(GEMM, bounds=bounds or GEMM["bounds"], array={"shape": list(shape)},
                               dataflows={"m": {"map": mp, "order": list(DIMS)}}))


CANNON = {"i": "2*t_i + s0", "j": "3*t_j + s1 - s0", "k": "t_k"}       # 2x3: FU row s0 rotated by s0


def test_a_torus_skewed_map_runs_at_the_tiled_maps_positions():
    design = _design((2, 3), CANNON)
    df = design.dataflows[0]
    tiled = tiled_equivalent(design, df)
    assert tiled.spatial == ((0, "i"), (1, "j")) and list(tiled.control) == [0, 0]
    # FU (1, 0) has offset (1, -1): residue (1, 2), one tile of j behind
    assert fu_placement(design, df) == {(0, 0): (0, 0), (0, 1): (0, 1), (0, 2): (0, 2),
                                        (1, 0): (1, 2), (1, 1): (1, 0), (1, 2): (1, 1)}


def test_a_map_valid_only_at_small_bounds_is_refused_on_the_command_line(tmp_path, capsys):
    """``i: 2*t_i + s0 + s1`` on 2x2: the class (i even, j odd) has offset (2, 1), above its stride, so (0, 1) is
    never run once j has two values; the checks pass it at j = 1 only."""
    import yaml
    mp = {"i": "2*t_i + s0 + s1", "j": "2*t_j + s1", "k": "t_k"}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(dict(GEMM, bounds={"i": 5, "j": 1, "k": 3}, array={"shape": [2, 2]},
                                        dataflows={"m": {"map": mp, "order": list(DIMS)}})))
    assert main(["build", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "dataflows.m.map.i: not a dataflow beyond the reference bounds" in err
    assert "it never runs (i=0, j=1, k=0)" in err
    assert not (tmp_path / "out").exists()
    design = _design((2, 2), mp, {"i": 5, "j": 1, "k": 3})
    _confirm_witness(design, design.dataflows[0], err)


def test_a_valid_map_is_built_on_the_command_line_and_explained(tmp_path, capsys):
    import yaml
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(dict(GEMM, array={"shape": [2, 3]},
                                        dataflows={"m": {"map": CANNON, "order": list(DIMS)}})))
    assert main(["build", str(path), "--explain", "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "runs at array position p(s)" in out and "moved: (1, 0) -> (1, 2), (1, 1) -> (1, 0), (1, 2) -> (1, 1)" in out


FOLDED = {"i": "4*t_i + s0 + 2*s1", "j": "t_j", "k": "t_k"}       # 2x2: a 1x4 array folded onto 2x2


def test_a_folded_map_runs_as_the_tiled_map_on_the_logical_array():
    """``i: 4*t_i + s0 + 2*s1`` on 2x2 runs every iteration once on every problem size, but no axis has extent 4:
    it is built as the tiled map ``i: 4*t_i + s1`` on the 1x4 array it implies (same FU count), logical FU
    (0, r) placed at the physical FU whose offset s0 + 2*s1 is r (arch/spec.py ``_fold``)."""
    design = _design((2, 2), FOLDED)
    df = design.dataflows[0]
    assert design.shape == (1, 4) and design.physical_shape == (2, 2) and design.n_fus == 4
    assert dict(design.placement) == {(0, 0): (0, 0), (0, 1): (1, 0), (0, 2): (0, 1), (0, 3): (1, 1)}
    assert df.spatial == ((1, "i"),) and str(df.ts_map.exprs[0]) == "s1 + 4*t_i"
    # already tiled; its tile [j, k] holds C per run of k, so it runs with j outside the tile (reduction_runs)
    assert tiled_equivalent(design, df) == dataclasses.replace(df, inner=("k",)) and fu_placement(design, df) is None


def _folded_maps_run_their_iterations(shape, rows, big=None):
    """For every map over ``rows`` (one list of expressions per loop i, j, k) that is valid for every problem size
    but whose strides are not the array's extents: the design runs the tiled map on the logical shape, each
    physical FU s's iterations under the map, in its order, exactly those of the logical FU placed at s (on
    bounds well past every tile). Returns how many maps were folded."""
    inputs = tuple(f"t_{d}" for d in DIMS) + tuple(f"s{a}" for a in range(len(shape)))
    big = big or {"i": 9, "j": 13, "k": 7}
    folded = 0
    for exprs in itertools.product(*rows):
        mp = AffineMap(inputs, exprs, DIMS)
        logical = residue_form(mp, shape).folded_shape(shape)
        if logical is None:
            continue
        assert check_coverage(mp, shape, GEMM["bounds"]).ok
        design = _design(shape, dict(zip(DIMS, map(str, exprs))))
        df = design.dataflows[0]
        assert design.shape == logical and design.physical_shape == shape and df.spatial is not None
        place = dict(design.placement)
        assert sorted(place.values()) == sorted(itertools.product(*[range(e) for e in shape]))
        assert sorted(place) == sorted(itertools.product(*[range(e) for e in logical]))
        mine, theirs = _runs(mp, shape, big, df.order), _runs(df.ts_map, logical, big, df.order)
        assert all(mine.get(s, []) == theirs.get(lg, []) for lg, s in place.items()), exprs
        assert sum(map(len, theirs.values())) == math.prod(big.values())
        folded += 1
    return folded


@pytest.mark.parametrize("shape", [(2, 2), pytest.param((2, 3), marks=pytest.mark.slow),
                                   pytest.param((3, 2), marks=pytest.mark.slow), (1, 4)])
def test_every_folded_map_runs_the_maps_iterations_per_fu(shape):
    """Strides 1, 2, 3, 4, 6, FU coefficients -1..2 and offsets -1..0 on loops i and j, k = t_k: 2x2 has 192
    folded maps, 2x3 and 3x2 80 each (one loop of stride 4 or 6 over both axes), 1x4 none in this range."""
    rows = [_rows(d, len(shape), (1, 2, 3, 4, 6), (-1, 0, 1, 2), (-1, 0)) for d in "ij"] + [[AffineExpr.var("t_k")]]
    assert _folded_maps_run_their_iterations(shape, rows) == {(2, 2): 192, (2, 3): 80, (3, 2): 80, (1, 4): 0}[shape]


@pytest.mark.parametrize("shape,strides,sigmas,count", [
    ((2, 6), (2, 2, 3), (-1, 0, 1), 384),
    pytest.param((2, 6), (2, 2, 3), (-1, 0, 1, 2), 640, marks=pytest.mark.slow),
    pytest.param((2, 6), (3, 2, 2), (-1, 0, 1, 2), 640, marks=pytest.mark.slow)])
def test_folded_maps_with_more_strided_loops_than_axes_run_on_a_3d_logical_array(shape, strides, sigmas, count):
    """Three loops with strides > 1 on a 2-D array (Z2 x Z2 x Z3 is generated by two elements, so an affine map
    of the 12 FUs can hit every residue class once): the logical array has one axis per loop (2x2x3 for
    strides 2, 2, 3), the spec's control vector with 0 on the third axis. FU coefficients ``sigmas``, offsets
    -1..0; bounds past two tiles of every loop."""
    rows = [_rows(d, len(shape), (c,), sigmas, (-1, 0)) for d, c in zip(DIMS, strides)]
    assert _folded_maps_run_their_iterations(shape, rows, {"i": 5, "j": 5, "k": 7}) == count


def test_a_mixed_design_keeps_the_folded_refusal():
    """A folded map next to a dataflow on the physical array: one array cannot be both, so the folded map is
    refused as not built (the one case left, docs/limits.md)."""
    design = load_spec_data(dict(GEMM, array={"shape": [2, 2]}, dataflows={
        "m": {"map": FOLDED, "order": list(DIMS)}, "os": {"spatial": {"i": 0, "j": 1}, "order": list(DIMS)}}))
    assert design.shape == (2, 2) and design.placement == ()
    with pytest.raises(SpecError) as err:
        tiled_equivalent(design, design.dataflow("m"))
    (p,) = err.value.problems
    assert str(p).startswith("dataflows.m.map.i: loop i must be t_i") and "it is a folded array" in str(p)
    assert "by itself it is built on its own logical array (--dataflow m), and fused with them on that array" in str(p)
    # by itself (Design.alone, what build/verify/sim --dataflow m use): the folded map on its logical 1x4 array,
    # the same design as a spec with only that dataflow; the other dataflow keeps the spec's array
    alone = design.alone("m")
    only = load_spec_data(dict(GEMM, array={"shape": [2, 2]}, dataflows={"m": {"map": FOLDED, "order": list(DIMS)}}))
    assert (alone.shape, alone.physical_shape, alone.placement) == (only.shape, only.physical_shape, only.placement)
    assert alone.shape == (1, 4) and [d.name for d in alone.dataflows] == ["m"]
    assert tiled_equivalent(alone, alone.dataflow("m")).spatial == only.dataflow("m").spatial
    assert design.alone("os") is design and design.alone(None) is design.alone("m")


def test_a_mixed_design_runs_its_folded_map_by_itself_on_the_command_line(tmp_path, capsys):
    """`archgen build --dataflow m` on a spec whose folded map sits beside a tiled dataflow: the map is built on its
    logical 1x4 array (the same hardware as the spec with that map alone, which test_skewed_maps_rtl.py runs on
    Verilator); fused with os, it keeps that logical array (tests/verif/test_fused.py runs such a design)."""
    import json

    import yaml
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(dict(GEMM, array={"shape": [2, 2]}, dataflows={
        "os": {"spatial": {"i": 0, "j": 1}, "order": list(DIMS), "control": [1, 1]},
        "m": {"map": FOLDED, "order": ["j", "i", "k"], "control": [0, 1]}})))
    assert main(["build", str(path), "--dataflow", "m", "--explain"]) == 0
    assert "array 1x4 (logical; the 2x2 array folded)  dataflow m" in capsys.readouterr().out
    # fused (since 2026-12-05, docs/dataflows.md "Fusing dataflows that fold differently"): the map on its logical
    # array, its FUs at the physical ones of its placement, beside os on the 2x2 array
    assert main(["build", str(path), "--fuse", "os,m", "-o", str(tmp_path / "o")]) == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["parameters"]["array_shape"] == [2, 2]
    assert manifest["parameters"]["dataflows"]["m"]["array_shape"] == [1, 4]


def test_a_folded_map_is_built_on_the_command_line_and_explained(tmp_path, capsys):
    import json

    import yaml
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(dict(GEMM, array={"shape": [2, 2]},
                                        dataflows={"m": {"map": FOLDED, "order": ["j", "i", "k"]}})))
    assert main(["build", str(path), "--explain", "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "array 1x4 (logical; the 2x2 array folded)" in out
    assert "logical FU -> physical FU: (0, 0) -> (0, 0), (0, 1) -> (1, 0), (0, 2) -> (0, 1), (0, 3) -> (1, 1)" in out
    assert "logical neighbours lie 2 x 1 FU pitch, 1 x 2 FU pitches apart" in out
    params = json.loads((tmp_path / "out" / "manifest.json").read_text())["parameters"]
    assert params["array_shape"] == [1, 4] and params["physical_shape"] == [2, 2]
    assert params["placement"][1] == [[0, 1], [1, 0]]
