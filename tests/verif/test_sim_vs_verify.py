"""`archgen sim` and `archgen verify` agree on a layer small enough for Verilator."""
import json

import pytest

from archgen.arch.spec import load_spec
from archgen.cli import main
from archgen.verif.array_check import verify_array

pytestmark = pytest.mark.verilator


@pytest.mark.parametrize("spec", ["gemm_os.yaml", "gemm_ws.yaml"])
def test_sim_reports_the_cycles_verify_measures(spec, tmp_path):
    assert main(["sim", spec, "--workload", "gemm:13,29,7", "--ideal-dram", "--out", str(tmp_path)]) == 0
    sim_cycles = json.loads((tmp_path / "sim.json").read_text())["layers"][0]["cycles"]
    res = verify_array(load_spec(spec), {"i": 13, "k": 29, "j": 7}, seed=4)
    assert res.outputs_exact
    assert res.rtl_cycles == sim_cycles == res.model_cycles
