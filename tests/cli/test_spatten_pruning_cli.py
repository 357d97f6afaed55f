"""SpAtten pruning from the spec and the command line, traces without a library workload, trace tools."""
from __future__ import annotations


import numpy as np
import pytest
from conftest import run_cli

from archgen.arch.errors import SpecError
from archgen.arch.spatten_spec import builtin_spec_path, load_spatten_spec, spec_hash
from archgen.arch.spec import apply_overrides, read_spec_file
from archgen.sim.spatten_algo import prune_schedule
from archgen.sim.spatten_sim import algo_config_from_spec
from archgen.workloads.trace import save_trace, synthetic_trace


def _spec(*sets):
    path = builtin_spec_path("spatten_small")
    return load_spatten_spec(apply_overrides(read_spec_file(path), list(sets)))


def _cli(argv, monkeypatch, tmp_path):
    return run_cli(argv, tmp_path, monkeypatch)


def test_small_spec_is_dense_and_full_spec_carries_the_paper_setting():
    cfg = algo_config_from_spec(load_spatten_spec(builtin_spec_path("spatten_small")))
    assert cfg.token_prune == cfg.head_prune == cfg.value_prune == 0
    # spatten.yaml: the ramps of SPATTEN.md (first 15% / 30% of layers unpruned, start + end = 2 x average)
    cfg = algo_config_from_spec(load_spatten_spec(builtin_spec_path("spatten")))
    assert (cfg.token_prune_start, cfg.token_unpruned_frac) == (0.15, 0.15)
    assert (cfg.head_prune_start, cfg.head_unpruned_frac) == (0.05, 0.30)
    assert np.isclose(cfg.token_prune, 0.3) and np.isclose(cfg.head_prune, 0.1) and cfg.value_prune == 0.3
    assert (cfg.msb_bits, cfg.lsb_bits, cfg.threshold) == (8, 4, 0.1)


def test_a_per_layer_schedule_replaces_the_shipped_ramp():
    spec = load_spatten_spec(apply_overrides(read_spec_file(builtin_spec_path("spatten")),
                                             ["pruning.token={per_layer: [0, 0.1, 0.2]}"]))
    assert spec.pruning.token.per_layer == (0.0, 0.1, 0.2) and spec.pruning.local_v == 0.3


def test_ramp_from_start_and_end():
    spec = _spec("pruning.token.start=0.1", "pruning.token.end=0.5", "pruning.token.unpruned_layers=0.25",
                 "pruning.local_v=0.3")
    cfg = algo_config_from_spec(spec)
    ratios = prune_schedule(8, cfg.token_prune, cfg.token_unpruned_frac, cfg.token_prune_start)
    assert ratios[:2].tolist() == [0, 0]
    assert np.allclose(ratios[2:], np.linspace(0.1, 0.5, 6))
    assert cfg.value_prune == 0.3 and cfg.msb_bits == spec.pq.msb_bits


def test_pruning_is_not_part_of_the_hardware_hash():
    assert spec_hash(_spec("pruning.token.end=0.5")) == spec_hash(_spec())


@pytest.mark.parametrize("sets,line", [
    (["pruning.token.end=1"], "pruning.token.end: must be less than 1 (got 1)"),
    (["pruning.local_v=-0.1"], "pruning.local_v: must be at least 0 (got -0.1)"),
    (["pruning.head.per_layer=[0.1, 2]"], "pruning.head.per_layer.1: must be less than 1 (got 2)"),
    (["pruning.token.per_layer=[0.1]", "pruning.token.end=0.2"],
     "pruning.token.per_layer: give either per_layer or start/end/unpruned_layers, not both (to replace the "
     "spec's ramp, set the whole schedule: --set 'pruning.token={per_layer: [...]}') (got ['end', 'per_layer'])"),
    (["pruning.tokens.end=0.2"], "pruning.tokens: unknown key; did you mean 'token'?"),
])
def test_bad_pruning_is_refused_by_field(sets, line):
    with pytest.raises(SpecError) as info:
        _spec(*sets)
    assert line in str(info.value).splitlines()[-1]


def test_sim_from_a_trace_alone_prints_what_pruning_kept(tmp_path, monkeypatch):
    save_trace(synthetic_trace(3, 4, 48, seed=3), tmp_path / "t.npz")
    rc, out, err = _cli(["sim", "spatten_small.yaml", "--trace", "t.npz", "--set", "pruning.token.per_layer=[0,0.25,0.5]"],
                        monkeypatch, tmp_path)
    assert rc == 0, err
    rows = [line for line in out.splitlines() if "attention" in line]
    kept = [float(r.split()[1].split("/")[0]) for r in rows]
    assert kept == [48.0, 36.0, 24.0]                 # 48 x (1 - ratio), cascading
    assert "whole model:" in out and "less than dense fp32 K/V" in out
    rc, _out, err = _cli(["sim", "spatten_small.yaml", "--trace", "t.npz", "--set", "pruning.token.per_layer=[0,0.25]"],
                         monkeypatch, tmp_path)
    assert rc == 2 and "pruning.token.per_layer: has 2 entries but the trace has 3 layers" in err


def test_sim_needs_a_workload_except_for_a_spatten_trace(tmp_path, monkeypatch):
    rc, _out, err = _cli(["sim", "gemm_os.yaml"], monkeypatch, tmp_path)
    assert rc == 2 and err.startswith("archgen: --workload: name a workload")


def test_trace_show_and_extract_errors(tmp_path, monkeypatch):
    save_trace(synthetic_trace(2, 3, 16, seed=1), tmp_path / "t.npz")
    rc, out, _err = _cli(["trace", "show", "t.npz"], monkeypatch, tmp_path)
    assert rc == 0 and "2 layers x 3 heads, 16 queries over 16 tokens" in out
    (tmp_path / "text.txt").write_text("hello world")
    rc, _out, err = _cli(["trace", "extract", "nope", "--text", "text.txt", "-o", "x.npz"], monkeypatch, tmp_path)
    assert rc == 2 and err.startswith("archgen: MODEL_DIR: not a directory")
    (tmp_path / "m").mkdir()
    rc, _out, err = _cli(["trace", "extract", "m", "--text", "missing.txt", "-o", "x.npz"], monkeypatch, tmp_path)
    assert rc == 2 and "--text: cannot read a UTF-8 text file" in err
    assert not (tmp_path / "x.npz").exists()
