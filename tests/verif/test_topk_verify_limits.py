"""`archgen verify SPEC --unit topk` checks the spec's own engine: its P, FIFO depth and max_n (the
spec's max_tokens), never a bigger build. The RTL run is replaced by a recorder (no Verilator here)."""
from __future__ import annotations

import pytest
from conftest import run_cli

import archgen.verif.topk_check as topk_check
from archgen.arch.spatten_spec import builtin_spec_path, load_spatten_spec


@pytest.mark.parametrize("spec_name,n,k", [("spatten_small.yaml", 64, 5), ("spatten.yaml", 1000, 512)])
def test_verify_builds_the_specs_engine(spec_name, n, k, tmp_path, monkeypatch):
    spec = load_spatten_spec(builtin_spec_path(spec_name.removesuffix(".yaml")))
    built = []

    def fake_run(requests, **kw):
        built.append(kw)
        return {"passed": True, "requests": [{"beats": [], "cycles": -1, "rounds": -1}]}

    monkeypatch.setattr(topk_check, "run_topk_rtl", fake_run)
    rc, out, _err = run_cli(["verify", spec_name, "--unit", "topk", "--n", str(n), "--k", str(k)],
                            tmp_path, monkeypatch)
    assert len(built) == 1
    assert built[0]["max_n"] == spec.max_tokens
    assert built[0]["parallelism"] == spec.topk.parallelism
    assert built[0]["fifo_depth"] == spec.topk.fifo_depth
    # the recorder returned nothing sensible: the check must say so (exit 1), not pass
    assert rc == 1 and "WRONG" in out
