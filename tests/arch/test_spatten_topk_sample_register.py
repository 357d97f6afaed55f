"""units.topk.sample_register (H136): the spec field, validated, threaded to the core's engines and to
every top-k cycle count of the SpAtten model; off by default (the Verilog of the built-in specs unchanged)."""
import dataclasses

import numpy as np
import pytest
import yaml
from conftest import run_cli

from archgen.arch.errors import SpecError
from archgen.arch.spatten_spec import builtin_spec_path, load_spatten_spec, spec_hash
from archgen.sim.spatten_model import core_cycles, core_reference
from archgen.sim.topk_model import simulate_topk


def _raw(name="spatten_small"):
    return yaml.safe_load(builtin_spec_path(name).read_text())


def test_sample_register_is_a_validated_boolean_off_by_default():
    """Off in both built-in specs; true loads; a hardware field (in the spec hash); a non-boolean is
    refused naming the field."""
    for name in ("spatten", "spatten_small"):
        assert load_spatten_spec(_raw(name)).topk.sample_register is False
    d = _raw()
    d["units"]["topk"]["sample_register"] = True
    on = load_spatten_spec(d)
    assert on.topk.sample_register is True and spec_hash(on) != spec_hash(load_spatten_spec(_raw()))
    for bad in ("yes", 1, None):
        d["units"]["topk"]["sample_register"] = bad
        with pytest.raises(SpecError) as info:
            load_spatten_spec(d)
        assert f"units.topk.sample_register: must be true or false (got {bad!r})" in {
            str(p) for p in info.value.problems}


@pytest.mark.parametrize("value, rc", [("true", 0), ("false", 0), ("maybe", 2), ("1", 2)])
def test_set_on_the_command_line(value, rc, tmp_path, monkeypatch):
    """``--set units.topk.sample_register=...`` through the CLI: a boolean loads, anything else exits 2
    with one line naming the field."""
    got, out, err = run_cli(["check", "spatten_small.yaml", "--set", f"units.topk.sample_register={value}"],
                            tmp_path, monkeypatch)
    assert got == rc, (out, err)
    if rc:
        assert err.startswith("archgen: units.topk.sample_register: must be true or false"), err
        assert len(err.splitlines()) == 1


def test_core_model_runs_the_sample_register_engine():
    """A pruned command on the model: each row's top-k cycles are ``simulate_topk(...,
    sample_register=True)``'s on the row's exponentials, more than the default engine's, and the
    command's total grows by no more than the top-k rows' difference (their hand-off is the same)."""
    base = load_spatten_spec(_raw())
    sreg = dataclasses.replace(base, topk=dataclasses.replace(base.topk, sample_register=True))
    rng = np.random.default_rng(3)
    keys, values = rng.integers(-512, 512, (60, 16)), rng.integers(-512, 512, (60, 16))
    queries = rng.integers(-512, 512, (3, 16))
    runs = {s.topk.sample_register: core_cycles(s, queries, keys, values, shift=14, keep_k=21, pq_enable=False)
            for s in (base, sreg)}
    for q, r_off, r_on in zip(queries, runs[False].topk_runs, runs[True].topk_runs):
        exps = [int(e) for e in core_reference(base, q, keys, values, shift=14, keep_k=21, pq_enable=False).exps]
        assert r_on.cycles == simulate_topk(exps, 21, parallelism=4, fifo_depth=base.topk.fifo_depth,
                                            replay=False, sample_register=True).cycles
        assert r_on.cycles > r_off.cycles and r_on.indices == r_off.indices
    assert [r.out.tolist() for r in runs[True].results] == [r.out.tolist() for r in runs[False].results]
    extra = sum(a.cycles - b.cycles for a, b in zip(runs[True].topk_runs, runs[False].topk_runs))
    assert runs[False].cycles <= runs[True].cycles <= runs[False].cycles + extra
