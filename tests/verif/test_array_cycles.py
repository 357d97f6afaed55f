"""The cycle model holds to the cycles recorded from the verified RTL before the compile-step refactor.

``data/array_cycles_<commit>.json`` lists, for every case of the array regression (array_cases.py),
the RTL cycles cocotb measured on Verilator and the model's cycles at that commit. The Verilator
regression (test_array_regression.py) holds the RTL to the same table; this file checks the model
without a simulator, so a change to the schedule, the timing or the SimPy processes that moves a
single cycle fails the fast suite.
"""
import json
from pathlib import Path

import pytest

from archgen.arch.spec import load_spec
from archgen.dataflow.compile import compile_array
from archgen.mappings.tiling import map_problem
from archgen.sim.array_model import simulate_array

from array_cases import ARRAY_CASES

TABLE_PATH = next((Path(__file__).parent / "data").glob("array_cycles_*.json"))
TABLE = json.loads(TABLE_PATH.read_text())


def recorded(case_id: str) -> dict:
    return TABLE["cases"][case_id]


def test_table_names_its_commit_and_covers_every_case():
    assert TABLE_PATH.stem == f"array_cycles_{TABLE['commit'][:7]}"
    assert {c.id for c in ARRAY_CASES} <= set(TABLE["cases"])
    for c in ARRAY_CASES:
        row = recorded(c.id)
        assert row["outputs_exact"], c.id
        if not c.backpressure:
            assert row["rtl_cycles"] == row["model_cycles"], c.id


@pytest.mark.parametrize("case", ARRAY_CASES, ids=lambda c: c.id)
def test_model_cycles_equal_the_recorded_table(case):
    design = load_spec(case.spec, list(case.overrides))
    compiled = compile_array(design)
    model = simulate_array(compiled, map_problem(design, dict(case.bounds), compiled.dataflow))
    assert model.total_cycles == recorded(case.id)["model_cycles"]
