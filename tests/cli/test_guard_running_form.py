"""The size guards count the tiles of the form the array runs (archgen/limits.py ``running_mapping``), not the spec's
tile. GEMM on [3], spatial {i: 0}: order [i, k, j] runs as tiles of [j] with k outside (psum rounds) and [i, j, k]
as tiles of [k] with j outside (H104's reduction runs); both run trips(moved loop) times the spec's tile count, and
the workload simulation's cost and memory grow with tiles (docs/limits.md, sim_tiles)."""
from __future__ import annotations

import pytest
from conftest import run_cli as _run

from archgen import limits

SPEC = """\
version: 1
kind: array
name: moved
operation: "C[i,j] += A[i,k] * B[k,j]"
types: {{A: int8, B: int8, C: int32}}
array: {{shape: [3]}}
dataflows:
  d: {{spatial: {{i: 0}}, order: [{order}], control: [0]}}
"""
# gemm:M,K,N = i 6, k 4, j 4: the spec's tile covers [k, j] in 2 tiles (i 6 on 3 FUs); the form that runs
# has 2 x 4 = 8 tiles (4 trips of the moved loop), of 4 steps each
ORDERS = [("i, k, j", "psum rounds"), ("i, j, k", "reduction runs")]


@pytest.mark.parametrize("order, form", ORDERS, ids=[f for _o, f in ORDERS])
def test_sim_guard_counts_the_tiles_that_run(order, form, tmp_path, monkeypatch):
    monkeypatch.setitem(limits.LIMITS, "sim_tiles", limits.Limit("sim_tiles", 4, "tiles", "test"))
    (tmp_path / "s.yaml").write_text(SPEC.format(order=order))
    rc, _out, err = _run(["sim", "s.yaml", "--workload", "gemm:6,4,4"], tmp_path, monkeypatch)
    assert rc == 2 and "--workload: its largest layer is 8 tiles on this array" in err, err   # spec's tile: 2
    assert "the limit is 4 tiles" in err and "--force" in err
    rc, out, err = _run(["sim", "s.yaml", "--workload", "gemm:6,4,4", "--force"], tmp_path, monkeypatch)
    assert rc == 0 and "gemm" in out, err


def test_verify_guard_names_the_tiles_that_run(tmp_path, monkeypatch):
    """tiles x steps is the same in both forms (the same iterations); the refusal states the tiles that run."""
    monkeypatch.setitem(limits.LIMITS, "verify_cycles", limits.Limit("verify_cycles", 31, "cycles", "test"))
    (tmp_path / "s.yaml").write_text(SPEC.format(order="i, k, j"))
    rc, _out, err = _run(["verify", "s.yaml", "--gemm", "6,4,4"], tmp_path, monkeypatch)
    assert rc == 2 and "--gemm: this problem takes at least 32 cycles (8 tiles of 4 steps)" in err, err


@pytest.mark.parametrize("order, tiles", [("i, k, j", (2, 8)), ("i, j, k", (2, 8)), ("k, i, j", (8, 8))])
def test_running_mapping_against_the_spec_tile(order, tiles):
    """The spec's tiling and running_mapping's: more tiles where a loop moves out, the same where none does."""
    import yaml

    from archgen.arch.spec import load_spec_data
    from archgen.mappings.tiling import map_problem
    design = load_spec_data(yaml.safe_load(SPEC.format(order=order)))
    bounds = {"i": 6, "k": 4, "j": 4}
    spec, running = map_problem(design, bounds, design.dataflow()), limits.running_mapping(design, bounds, "d")
    assert (spec.n_tiles, running.n_tiles) == tiles
    assert spec.n_tiles * spec.steps == running.n_tiles * running.steps == 32


FUSED = """\
version: 1
kind: array
name: fz
operation: "C[i,j] += A[i,k] * B[k,j]"
types: {A: int8, B: int8, C: int32}
array: {shape: [3]}
dataflows:
  b: {spatial: {i: 0}, order: [i, j, k], control: [0]}
  a: {spatial: {k: 0}, order: [i, j, k], control: [0]}
fuse: [b, a]
"""


def test_sim_guard_of_a_fused_design_counts_every_dataflow(tmp_path, monkeypatch):
    """A fused design's `sim` (no --dataflow) runs every layer under each of its dataflows, so the tile guard
    takes the largest over them, not the default dataflow's (b: 8 tiles of gemm 6,4,4; a: 48)."""
    monkeypatch.setitem(limits.LIMITS, "sim_tiles", limits.Limit("sim_tiles", 10, "tiles", "test"))
    (tmp_path / "f.yaml").write_text(FUSED)
    rc, _out, err = _run(["sim", "f.yaml", "--workload", "gemm:6,4,4"], tmp_path, monkeypatch)
    assert rc == 2 and "its largest layer is 48 tiles on this array under dataflow 'a'" in err, err
    rc, out, err = _run(["sim", "f.yaml", "--workload", "gemm:6,4,4", "--dataflow", "b"], tmp_path, monkeypatch)
    assert rc == 0 and "gemm" in out, err
