"""The archgen command through ``main(argv)``: build (deterministic outputs, --explain), list, doctor,
and every kind of bad input: exit status 2, one line per problem on stderr, no traceback, and a failed
build never touches a previous output directory."""
from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

from archgen.arch.spec import find_spec, load_spec, read_spec_file
from archgen.cli import main


@pytest.fixture
def gemm():
    return copy.deepcopy(read_spec_file(find_spec("gemm_os")))


def write_spec(tmp_path: Path, data, name="spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def error_lines(capsys, n_problems: int) -> list[str]:
    """stderr of a failed command: 'archgen: [source: ]problem' or a header and one indented line each."""
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    lines = out.err.rstrip("\n").splitlines()
    assert lines and lines[0].startswith("archgen: "), out.err
    if n_problems == 1:
        assert len(lines) == 1, out.err
        return [lines[0]]
    assert lines[0].endswith(f"{n_problems} problems") and len(lines) == n_problems + 1, out.err
    return [line.strip() for line in lines[1:]]


# ---------------------------------------------------------------------------------------------
# build


def test_build_writes_verilog_and_manifest_deterministically(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["build", "gemm_os", "-o", str(a)]) == 0
    out = capsys.readouterr().out
    assert "built gemm_os (4x4, dataflow os)" in out and str(a / "gemm_os.v") in out
    assert sorted(p.name for p in a.iterdir()) == ["gemm_os.v", "manifest.json"]
    assert main(["build", "gemm_os", "-o", str(b)]) == 0
    assert snapshot(a) == snapshot(b)                      # byte-identical
    verilog = (a / "gemm_os.v").read_bytes()
    manifest = json.loads((a / "manifest.json").read_text())
    assert b"module gemm_os(" in verilog or b"module gemm_os (" in verilog
    assert manifest["name"] == "gemm_os"
    assert manifest["spec_hash"] == load_spec("gemm_os").source_hash
    assert manifest["verilog_sha256"] == hashlib.sha256(verilog).hexdigest()
    assert [o["operand"] for o in manifest["operands"]] == ["A", "B", "C"]


def test_build_with_override_changes_the_design(tmp_path, capsys):
    assert main(["build", "gemm_os", "--set", "array.shape=3x5", "-o", str(tmp_path)]) == 0
    assert "built gemm_os (3x5, dataflow os)" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["spec_hash"] == load_spec("gemm_os", ["array.shape=3x5"]).source_hash


@pytest.mark.parametrize("name, expected", [
    ("gemm_os", ["A [8 bit]: streamed; 4 lane(s), skews [0, 1, 2, 3]", "12 x systolic along axis 1 (delay 1)",
                 "B [8 bit]: streamed; 4 lane(s), skews [0, 1, 2, 3]", "12 x systolic along axis 0 (delay 1)",
                 "C [32 bit]: accumulated in place",
                 "A: stationary +t_j (3 cycles); systolic +s1 (1 cycle)"]),      # a hop is not a delay connection
    ("gemm_ws", ["B [8 bit]: stationary", "C [32 bit]: streamed out through spatial reduction",
                 "12 x reduce_chain along axis 0 (delay 1)", "partial sums of earlier tiles come back in"]),
    ("gemm_os_bcast", ["A [8 bit]: streamed; 4 lane(s), skews [0, 0, 0, 0]; broadcast fan-out 4",
                       "16 x broadcast (delay 0)"]),
])
def test_build_explain_prints_connections_per_operand(name, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["build", name, "--explain"]) == 0
    out = capsys.readouterr().out
    for text in expected:
        assert text in out, text
    assert "derived connections:" in out and "memory:" in out
    assert list(tmp_path.iterdir()) == []                  # --explain alone builds nothing


def test_list_names_builtin_specs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("gemm_os", "gemm_ws", "gemm_is", "gemm_os_bcast", "conv_ws"):
        assert f"{name}.yaml" in out
    assert "built-in specs:" in out and "workloads:" in out
    # SpAtten specs: their description and the engine's size with units (they were blank lines before)
    line = out[out.index("  spatten.yaml"):].split("\n")
    assert "SpAtten" in line[0] and "engine: QxK 512 + PxV 512 multipliers of 12 bits" in line[1]
    assert "1000 MHz" in line[1] and "196,608 B" in line[1] and "GB/s" in line[1]


def test_doctor_passes_here(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "[ok ] python" in out and "[ok ] amaranth" in out and "[ok ] verilator" in out


# ---------------------------------------------------------------------------------------------
# bad input: exit status 2, one line per problem, no traceback, nothing written


def _unknown_key(d):
    d["clok_mhz"] = 700


def _types(d):
    d["types"] = {"A": "int8", "Bb": "int8", "C": "int32"}


def _non_affine(d):
    d["operation"] = "C[i,j] += A[i*j,k] * B[k,j]"


def _dim_zero(d):
    d["array"]["shape"] = [0, 4]


def _stt(d):
    d["dataflows"] = {"skewed": {"stt": [[1, 0, 0], [0, 1, 0], [1, 1, 0]]}}


def _misses(d):
    d["dataflows"] = {"m": {"map": {"i": "4*t_i + s0", "j": "4*t_j + s1", "k": "2*t_k"}}}


def _twice(d):
    d["dataflows"] = {"m": {"map": {"i": "4*t_i + s0", "j": "2*t_j + s1", "k": "t_k"}}}


def _several(d):
    d["clok_mhz"] = 700
    d["array"]["shape"] = [0, 4]
    d["types"]["A"] = "int99"


BAD_SPECS = [
    (_unknown_key, ["clok_mhz: unknown key; did you mean 'clock_mhz'?"]),
    (_types, ["types.Bb: no operand of that name in the operation; did you mean 'B'?",
              "types.B: every operand needs a data type"]),
    (_non_affine, ["operation: product of two indices (i*j) is not affine at position 14 "
                   "(got 'C[i,j] += A[i*j,k] * B[k,j]')"]),
    (_dim_zero, ["array.shape: every array dimension must be at least 1 (got [0, 4])"]),
    (_stt, ["dataflows.skewed.stt: not injective on the array in time"]),
    (_misses, ["dataflows.m.map.k: misses iterations, e.g. (i=0, j=0, k=1) is never executed"]),
    (_twice, ["dataflows.m.map.j: runs some iterations more than once"]),
    (_several, ["clok_mhz: unknown key; did you mean 'clock_mhz'?",
                "array.shape: every array dimension must be at least 1 (got [0, 4])",
                "types.A: data types are intN or uintN with N in 1..64, e.g. int8 (got 'int99')"]),
]


@pytest.mark.parametrize("mutate, expected", BAD_SPECS, ids=[m.__name__.strip("_") for m, _ in BAD_SPECS])
def test_bad_spec_file(mutate, expected, gemm, tmp_path, capsys):
    mutate(gemm)
    path = write_spec(tmp_path, gemm)
    out = tmp_path / "out"
    assert main(["build", str(path), "-o", str(out)]) == 2
    lines = error_lines(capsys, len(expected))
    if len(expected) == 1:
        assert lines[0].startswith(f"archgen: {path}: {expected[0]}"), lines[0]
    else:
        for line, want in zip(sorted(lines), sorted(expected)):
            assert line.startswith(want), (line, want)
    assert not out.exists()


@pytest.mark.parametrize("override, expected", [
    ("array.shape=0x4", "array.shape: every array dimension must be at least 1 (got [0, 4])"),
    ("clok_mhz=700", "clok_mhz: unknown key; did you mean 'clock_mhz'?"),
    ("clock_mhz", "--set: overrides read FIELD=VALUE, e.g. array.shape=32x32 (got 'clock_mhz')"),
])
def test_bad_override(override, expected, tmp_path, capsys):
    assert main(["build", "gemm_os", "--set", override, "-o", str(tmp_path / "out")]) == 2
    assert error_lines(capsys, 1)[0].endswith(expected)
    assert not (tmp_path / "out").exists()


def test_missing_spec_file(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["build", str(missing)]) == 2
    line = error_lines(capsys, 1)[0]
    assert line.startswith("archgen: spec: no such file") and line.endswith(f"(got '{missing}')")


def test_yaml_syntax_error(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nname: g\nkind: array\nclock_mhz: 500: 3\n")
    assert main(["build", str(path)]) == 2
    assert error_lines(capsys, 1)[0] == f"archgen: {path}: yaml: syntax error at line 4, column 15: mapping values are not allowed here"


def test_unknown_dataflow(capsys):
    assert main(["build", "gemm_os", "--dataflow", "nope"]) == 2
    line = error_lines(capsys, 1)[0]
    assert "no dataflow named 'nope'" in line and "choose one of: os" in line


def test_missing_spec_argument_is_a_usage_error(capsys):
    assert main(["build"]) == 2
    err = capsys.readouterr().err
    assert err == "archgen: the following arguments are required: spec; see 'archgen build --help'\n"


# ---------------------------------------------------------------------------------------------
# a failed build leaves the previous outputs alone


@pytest.fixture(scope="module")
def built_once(tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "gemm_os"
    assert main(["build", "gemm_os", "-o", str(out)]) == 0
    return out


@pytest.fixture
def previous_build(built_once, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(built_once, out)
    return out, snapshot(out)


def test_failed_validation_keeps_previous_outputs(previous_build, gemm, tmp_path, capsys):
    out, before = previous_build
    gemm["array"]["shape"] = [0, 4]
    assert main(["build", str(write_spec(tmp_path, gemm)), "-o", str(out)]) == 2
    error_lines(capsys, 1)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "spec.yaml"]   # no staging left over


def test_failed_generation_keeps_previous_outputs(previous_build, gemm, tmp_path, capsys):
    # valid spec, but the map is not in the tiled form the generator builds: fails inside the build
    out, before = previous_build
    gemm["array"]["shape"] = [2]
    gemm["bounds"] = {"i": 2, "j": 2, "k": 2}
    gemm["dataflows"] = {"m": {"map": {"i": "t_i + 2*s0", "j": "t_j", "k": "t_k"}}}
    assert main(["build", str(write_spec(tmp_path, gemm)), "-o", str(out)]) == 2
    assert "carry no loop in the tiled form" in error_lines(capsys, 1)[0]
    assert snapshot(out) == before


def test_several_dataflows_need_a_choice_and_keep_previous_outputs(previous_build, gemm, tmp_path, capsys):
    out, before = previous_build
    gemm["dataflows"]["os_bcast"] = {"spatial": {"i": 0, "j": 1}, "order": ["i", "j", "k"], "control": [0, 0]}
    assert main(["build", str(write_spec(tmp_path, gemm)), "-o", str(out)]) == 2
    assert "pick one of: os, os_bcast" in error_lines(capsys, 1)[0]
    assert snapshot(out) == before


def test_unwritable_output_directory_is_reported_not_raised(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory\n")
    assert main(["build", "gemm_os", "-o", str(blocker / "out")]) == 2
    line = error_lines(capsys, 1)[0]
    assert str(blocker) in line
    assert blocker.read_text() == "not a directory\n"


def test_ideal_dram_verify_names_what_the_memory_system_refuses():
    """`verify --ideal-dram` checks the array alone, so it passes dataflows the whole accelerator refuses; the
    note it prints comes from this: the memory system's own field-named refusal, or None when it builds."""
    from archgen.arch.spec import load_spec
    from archgen.cli import _memory_system_refusal
    assert _memory_system_refusal(load_spec("gemm_os", []), None) is None
    why = _memory_system_refusal(load_spec("gemm_os", ["memory.dram.latency=0"]), None)
    assert why.startswith("memory.dram.latency: the generated DRAM port needs a latency of at least 1 cycle")
