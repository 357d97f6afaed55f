"""True convolutions through the CLI: an index with a negative coefficient (``I[p - r + 2]``) runs through the
generated memory system (its walk steps I's buffer downwards: signed stride fields, dataflow/memctl.py); a
layer whose index reaches below 0 (``I[p - r]``: zero padding below the tensor) is refused by field, one line,
exit 2, before anything is built."""
import re

import pytest

from tests.conftest import run_cli

SPEC = """version: 1
name: tconv
operation: "O[k,p] += W[k,r] * I[{index}]"
types: {{W: int8, I: int8, O: int32}}
array: {{shape: [2, 2]}}
dataflows:
  d: {{spatial: {{k: 0, p: 1}}, order: [k, p, r], control: [0, 0]}}
"""


def test_a_layer_below_index_0_is_refused_by_field(tmp_path, monkeypatch):
    (tmp_path / "t.yaml").write_text(SPEC.format(index="p-r"))
    rc, out, err = run_cli(["verify", "t.yaml", "--bounds", "k=3,p=4,r=3"], tmp_path, monkeypatch)
    assert rc == 2, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert re.search(r"operation: layer 'layer': operand I's index 0 reaches -2 \(an index below 0 is zero padding",
                     err), err


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("spatial, order, cycles", [
    ("{k: 0, p: 1}", "[k, p, r]", "239"),      # r walks I's buffer downwards
    ("{p: 0, r: 1}", "[k, r, p]", "342"),      # r on the lanes: lane 0 -> lane 1 steps I's index by -1
])
def test_a_true_convolution_runs_through_the_memory_system(spatial, order, cycles, tmp_path, monkeypatch):
    text = SPEC.format(index="p-r+2").replace("{k: 0, p: 1}", spatial).replace("[k, p, r]", order)
    (tmp_path / "t.yaml").write_text(text)
    rc, out, err = run_cli(["verify", "t.yaml", "--bounds", "k=5,p=7,r=3", "--seed", "3"], tmp_path, monkeypatch)
    assert rc == 0, (out, err)
    assert "outputs: exact" in out, out
    rtl = re.search(r"RTL cycles:\s+([\d,]+) cycles", out).group(1)
    model = re.search(r"model cycles:\s+([\d,]+) cycles\s+\(equal\)", out).group(1)
    assert rtl == model == cycles, out          # measured on Verilator, 2026-12-05
