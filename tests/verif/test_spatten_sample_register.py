"""units.topk.sample_register on Verilator (H136): the spec field reaches the RTL. ``archgen verify
spatten_small.yaml --set units.topk.sample_register=true --unit topk`` runs the sample-register engine
(RTL == its model, which differs from the default engine's), and the SpAtten core built with it streams
pruned commands bit- and cycle-exact against the model."""
import numpy as np
import pytest
import yaml
from conftest import run_cli

from archgen.arch.spatten_spec import builtin_spec_path, load_spatten_spec
from archgen.sim.topk_model import simulate_topk
from archgen.verif.spatten_check import verify_core
from archgen.verif.topk_check import verify_topk

SMALL = load_spatten_spec(builtin_spec_path("spatten_small"))
_SET = ["--set", "units.topk.sample_register=true"]


def _sreg_spec():
    """spatten_small with ``--set units.topk.sample_register=true`` (the same Verilog as that command line)."""
    raw = yaml.safe_load(builtin_spec_path("spatten_small").read_text())
    raw["units"]["topk"]["sample_register"] = True
    return load_spatten_spec(raw)


@pytest.mark.verilator
@pytest.mark.parametrize("n, k, seed", [(64, 21, 1), pytest.param(37, 9, 2, marks=pytest.mark.slow),
                                        pytest.param(64, 60, 3, marks=pytest.mark.slow)])
def test_verify_unit_topk_runs_the_sample_register_engine(n, k, seed, tmp_path, monkeypatch):
    """The CLI's top-k check on the spec's engine (P = 4, max_n = 64, FIFO 16 rows): exact, RTL cycles ==
    the sample-register model's, which are not the default engine's (so the option reached the RTL)."""
    spec = _sreg_spec()
    res = verify_topk(n, k, 4, seed, max_n=64, fifo_depth=spec.topk.fifo_depth, sample_register=True)
    assert res["correct"] and res["cycles_match"], res
    assert res["rtl_cycles"] == res["model_cycles"]
    scores = [int(v) for v in np.random.default_rng(seed).integers(-(1 << 15), 1 << 15, n)]
    plain = simulate_topk(scores, k, parallelism=4, fifo_depth=spec.topk.fifo_depth, replay=True).cycles
    assert res["model_cycles"] > plain, (res, plain)
    rc, out, err = run_cli(["verify", "spatten_small.yaml", *_SET, "--unit", "topk", "--n", str(n), "--k", str(k),
                            "--seed", str(seed)], tmp_path, monkeypatch)
    assert rc == 0, (out, err)
    assert "outputs correct" in out and "sample register (" in out
    assert f"RTL cycles:   {res['rtl_cycles']} cycles" in out and f"model cycles: {res['rtl_cycles']} cycles" in out


_STREAMS = [
    # (dram_row_cycles, n_keys, n_queries, keep, extra) -- as tests/verif/test_spatten.py's feed and fallback
    # cases: three commands from DRAM at one row per cycle, PQ with refetches on the first, local-V on all,
    # dense_ok on the first and third (their late rows fall back unpruned)
    pytest.param(1, [48, 9, 30], [4, 5, 3], [7, 4, 10],
                 {"seed": 36, "pq_enable": [True, False, False], "shift": [19, 14, 16],
                  "dense_ok": [True, False, True]}, id="dram-three-commands-fallback"),
    # K/V on chip, two commands, every row pruned, no dense_ok: every row waits for its top-k
    pytest.param(0, [64, 40], [5, 4], [40, 20], {"seed": 5, "pq_enable": [True, False], "shift": [19, 16]},
                 id="on-chip-every-row-waits"),
]


@pytest.mark.slow   # its own Verilator build of the small core (about 5 min); run with --runslow
@pytest.mark.verilator
@pytest.mark.parametrize("row_cycles, n_keys, n_queries, keep, extra", _STREAMS)
def test_core_with_sample_register_streams_exactly(row_cycles, n_keys, n_queries, keep, extra):
    """The core built with sample-register engines: outputs bit-exact, importance sums equal, every
    command's done cycle == the model's (which runs ``simulate_topk(..., sample_register=True)``)."""
    args = dict(extra, commands=len(n_keys), dram_row_cycles=row_cycles)
    seed = args.pop("seed")
    r = verify_core(_sreg_spec(), n_keys, n_queries, seed, keep, **args)
    assert r["passed"], r.get("log_tail")
    assert r["bit_exact"] and r["importance_match"], r
    assert r["rtl_done_cycles"] == r["model_done_cycles"], r
    assert r["correct"], r
