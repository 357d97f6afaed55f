"""Spec loading: built-in specs, overrides, and one test per kind of bad input, each pinning that the
SpecError has one line per problem naming the field path and the offending value."""
from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest

from archgen.arch.errors import SpecError
from archgen.arch.spec import (apply_overrides, builtin_specs, find_spec, load_spec, load_spec_data,
                               read_spec_file)

ARRAY_SPECS = ["gemm_os", "gemm_ws", "gemm_is", "gemm_os_bcast", "conv_ws"]

EXPECTED = {   # spatial (axis -> loop), order, control, from the files' comments and DESIGN.md section 2
    "gemm_os": ({0: "i", 1: "j"}, ("i", "j", "k"), (1, 1)),
    "gemm_ws": ({0: "k", 1: "j"}, ("j", "k", "i"), (1, 1)),
    "gemm_is": ({0: "i", 1: "k"}, ("i", "k", "j"), (1, 1)),
    "gemm_os_bcast": ({0: "i", 1: "j"}, ("i", "j", "k"), (0, 0)),
    "conv_ws": ({0: "c", 1: "k"}, ("k", "c", "r", "s", "n", "p", "q"), (1, 1)),
}


@pytest.fixture
def gemm():
    return copy.deepcopy(read_spec_file(find_spec("gemm_os")))


def spec_error(data, source="bad.yaml") -> SpecError:
    with pytest.raises(SpecError) as info:
        load_spec_data(data, source=source)
    return info.value


def problem_lines(err: SpecError) -> list[str]:
    """The per-problem lines of the message (without the 'source:' prefix or the 'N problems' header)."""
    text = str(err)
    if err.source:
        assert text.startswith(f"{err.source}: ")
        text = text[len(err.source) + 2:]
    lines = text.splitlines()
    if len(err.problems) == 1:
        assert len(lines) == 1, text
        return lines
    assert lines[0] == f"{len(err.problems)} problems"
    assert all(line.startswith("  ") for line in lines[1:])
    return [line.strip() for line in lines[1:]]


def only_line(err: SpecError) -> str:
    lines = problem_lines(err)
    assert len(err.problems) == 1 and len(lines) == 1, str(err)
    return lines[0]


# ---------------------------------------------------------------------------------------------
# good specs


@pytest.mark.parametrize("name", ARRAY_SPECS)
def test_builtin_array_specs_load(name):
    design = load_spec(name)
    assert design.name == name
    assert design.shape == (4, 4)
    assert [o.name for o in design.operation.operands] == [n for n, _ in design.types]
    df = design.dataflows[0]
    spatial, order, control = EXPECTED[name]
    assert df.spatial_dims == spatial
    assert df.order == order and df.control == control
    assert df.form == "spatial"
    assert design.acc_type.bits == 32 and all(t.bits == 8 for n, t in design.types if n != design.operation.output.name)
    assert design.clock_mhz == 500.0


def test_builtin_specs_are_found_by_name_with_or_without_suffix():
    for name in ARRAY_SPECS:
        assert f"{name}.yaml" in builtin_specs()
        assert find_spec(name) == find_spec(f"{name}.yaml") == builtin_specs()[f"{name}.yaml"]


@pytest.mark.parametrize("overrides, shape, clock", [
    (["array.shape=32x32"], (32, 32), 500.0),
    (["clock_mhz=700"], (4, 4), 700.0),
    (["array.shape=3x5"], (3, 5), 500.0),
    (["array.shape=3x5", "clock_mhz=700"], (3, 5), 700.0),
    (["array.shape=[2, 8]"], (2, 8), 500.0),
])
def test_overrides(overrides, shape, clock):
    design = load_spec("gemm_os", overrides)
    assert design.shape == shape and design.clock_mhz == clock
    # the tiled map follows the new extents: i = R*t_i + s0, j = C*t_j + s1
    exprs = dict(zip(design.dataflows[0].ts_map.names, design.dataflows[0].ts_map.exprs))
    assert exprs["i"].coeffs == {"t_i": shape[0], "s0": 1}
    assert exprs["j"].coeffs == {"t_j": shape[1], "s1": 1}


def test_overrides_do_not_touch_the_input(gemm):
    before = copy.deepcopy(gemm)
    out = apply_overrides(gemm, ["array.shape=32x32", "dram.bandwidth_gbps=25.6"])
    assert gemm == before
    assert out["array"]["shape"] == "32x32" and out["dram"] == {"bandwidth_gbps": 25.6}


@pytest.mark.parametrize("override, path, got", [
    ("array.shape=0x4", "array.shape", "[0, 4]"),
    ("array.shape=4x0", "array.shape", "[4, 0]"),
    ("clock_mhz=-5", "clock_mhz", "-5"),
    ("clock_mhz=fast", "clock_mhz", "'fast'"),
])
def test_overrides_are_validated_like_the_file(override, path, got):
    with pytest.raises(SpecError) as info:
        load_spec("gemm_os", [override])
    line = only_line(info.value)
    assert line.startswith(f"{path}: ") and f"(got {got})" in line


def test_override_of_unknown_key_suggests_the_right_one():
    with pytest.raises(SpecError) as info:
        load_spec("gemm_os", ["clok_mhz=700"])
    assert only_line(info.value) == "clok_mhz: unknown key; did you mean 'clock_mhz'?"


def test_override_without_value_is_rejected():
    with pytest.raises(SpecError) as info:
        load_spec("gemm_os", ["clock_mhz"])
    assert only_line(info.value) == "--set: overrides read FIELD=VALUE, e.g. array.shape=32x32 (got 'clock_mhz')"


def test_shape_string_and_list_are_the_same_design(gemm):
    as_list = load_spec_data(gemm)
    as_text = load_spec_data(dict(gemm, array={"shape": "4x4"}))
    assert as_text.shape == as_list.shape == (4, 4)
    assert as_text.source_hash == as_list.source_hash


# ---------------------------------------------------------------------------------------------
# bad input, one case per test


def test_unknown_key_with_did_you_mean(gemm):
    gemm["clok_mhz"] = 700
    assert only_line(spec_error(gemm)) == "clok_mhz: unknown key; did you mean 'clock_mhz'?"


def test_unknown_nested_key_with_did_you_mean(gemm):
    gemm["dataflows"]["os"]["contrl"] = [1, 1]
    assert only_line(spec_error(gemm)) == "dataflows.os.contrl: unknown key; did you mean 'control'?"


def test_misspelled_operand_in_types(gemm):
    gemm["types"] = {"A": "int8", "Bb": "int8", "C": "int32"}
    err = spec_error(gemm)
    lines = problem_lines(err)
    assert "types.Bb: no operand of that name in the operation; did you mean 'B'?" in lines
    assert all(line.startswith("types.") for line in lines)


def test_non_affine_index(gemm):
    gemm["operation"] = "C[i,j] += A[i*j,k] * B[k,j]"
    line = only_line(spec_error(gemm))
    assert line == ("operation: product of two indices (i*j) is not affine at position 14 "
                    "(got 'C[i,j] += A[i*j,k] * B[k,j]')")


def test_array_dimension_zero(gemm):
    gemm["array"]["shape"] = [0, 4]
    assert only_line(spec_error(gemm)) == "array.shape: every array dimension must be at least 1 (got [0, 4])"


def test_stt_not_injective_on_the_array_in_time(gemm):
    # s = (i, j), t = i + j: the time row ignores k, so every k of one (i, j) runs on one FU in one cycle
    gemm["dataflows"] = {"skewed": {"stt": [[1, 0, 0], [0, 1, 0], [1, 1, 0]]}}
    line = only_line(spec_error(gemm))
    assert line.startswith("dataflows.skewed.stt: not injective on the array in time: ")
    assert "(i=0, j=0, k=0) and (i=0, j=0, k=1) both run on FU (0, 0) at cycle 0" in line
    assert line.endswith("(got [[1, 0, 0], [0, 1, 0], [1, 1, 0]])")


def test_stt_with_time_row_over_all_loops_is_accepted(gemm):
    gemm["dataflows"] = {"skewed": {"stt": [[1, 0, 0], [0, 1, 0], [1, 1, 1]]}}
    design = load_spec_data(gemm)
    assert design.dataflows[0].control == (1, 1) and design.dataflows[0].spatial_dims == {0: "i", 1: "j"}


def test_map_that_misses_iterations(gemm):
    gemm["dataflows"] = {"m": {"map": {"i": "4*t_i + s0", "j": "4*t_j + s1", "k": "2*t_k"}}}
    line = only_line(spec_error(gemm))
    assert line.startswith("dataflows.m.map.k: misses iterations, e.g. (i=0, j=0, k=1) is never executed")
    # the line must show the offending value (as written, or printed back from the parsed map)
    assert "2*t_k" in line, line


def test_map_that_runs_iterations_twice(gemm):
    gemm["dataflows"] = {"m": {"map": {"i": "4*t_i + s0", "j": "2*t_j + s1", "k": "t_k"}}}
    line = only_line(spec_error(gemm))
    assert line.startswith("dataflows.m.map.j: runs some iterations more than once")
    assert "2*t_j + s1" in line or "s1 + 2*t_j" in line, line


def test_map_with_unknown_variable(gemm):
    gemm["dataflows"] = {"m": {"map": {"i": "4*t_i + s2", "j": "4*t_j + s1", "k": "t_k"}}}
    line = only_line(spec_error(gemm))
    assert line.startswith("dataflows.m.map.i: unknown index 's2'") and line.endswith("(got '4*t_i + s2')")


def test_missing_file():
    with pytest.raises(SpecError) as info:
        load_spec("/nonexistent/dir/my_array.yaml")
    line = only_line(info.value)
    assert line.startswith("spec: no such file") and line.endswith("(got '/nonexistent/dir/my_array.yaml')")


def test_misspelled_builtin_name_suggests_close_ones():
    with pytest.raises(SpecError) as info:
        load_spec("gemm_oss")
    assert "did you mean gemm_os.yaml" in only_line(info.value)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nname: g\nkind: array\nclock_mhz: 500: 3\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.source == str(path)
    assert only_line(info.value) == "yaml: syntax error at line 4, column 15: mapping values are not allowed here"


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- version: 1\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "a spec is a YAML mapping" in only_line(info.value)


def test_several_schema_problems_collected_in_one_error(gemm):
    gemm["clok_mhz"] = 700
    gemm["array"]["shape"] = [0, 4]
    gemm["types"]["A"] = "int99"
    del gemm["dataflows"]
    err = spec_error(gemm)
    assert sorted(problem_lines(err)) == sorted([
        "clok_mhz: unknown key; did you mean 'clock_mhz'?",
        "array.shape: every array dimension must be at least 1 (got [0, 4])",
        "types.A: data types are intN or uintN with N in 1..64, e.g. int8 (got 'int99')",
        "dataflows: required key is missing",
    ])


def test_several_semantic_problems_collected_in_one_error(gemm):
    gemm["types"] = {"A": "int8", "Bb": "int8", "C": "int32"}
    gemm["bounds"] = {"x": 4}
    gemm["dataflows"]["twice"] = {"spatial": {"i": 0, "j": 0}}
    gemm["dataflows"]["skewed"] = {"stt": [[1, 0, 0], [0, 1, 0], [1, 1, 0]]}
    lines = problem_lines(spec_error(gemm))
    paths = [line.split(":")[0] for line in lines]
    assert set(paths) >= {"types.Bb", "bounds.x", "dataflows.twice.spatial.j", "dataflows.skewed.stt"}
    assert len(lines) == len(set(lines))


# ---------------------------------------------------------------------------------------------
# spec hash


def test_spec_hash_is_deterministic_and_tracks_content(gemm):
    a = load_spec_data(gemm).source_hash
    assert a == load_spec_data(copy.deepcopy(gemm)).source_hash == load_spec("gemm_os").source_hash
    assert len(a) == 64 and int(a, 16) >= 0
    assert load_spec_data(dict(gemm, clock_mhz=700)).source_hash != a
    reordered = dict(reversed(list(gemm.items())))
    assert load_spec_data(reordered).source_hash == a


def test_spec_hash_is_the_same_in_another_process():
    code = "from archgen.arch.spec import load_spec; print(load_spec('gemm_os').source_hash)"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == load_spec("gemm_os").source_hash


def test_published_array_schema_is_the_loaders():
    """docs/spec.schema.json is what users point their editors at; docs/spec.md says it is the loader's own
    schema (arch/spec.schema.json). A field added to one only (array.max_fifo_depth nearly was) fails here."""
    import json
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    published = json.loads((root / "docs" / "spec.schema.json").read_text())
    assert published == json.loads((root / "arch" / "spec.schema.json").read_text())
