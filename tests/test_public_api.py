"""Each subpackage exports a curated API through ``__all__``; the model layers stay free of the HDL."""
import importlib
import subprocess
import sys

import pytest

PACKAGES = ["arch", "workloads", "mappings", "dataflow", "sim", "rtlgen", "verif"]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_resolves(name):
    pkg = importlib.import_module(f"archgen.{name}")
    assert pkg.__all__ == sorted(pkg.__all__) and pkg.__all__
    for export in pkg.__all__:
        obj = getattr(pkg, export)
        assert not isinstance(obj, type(sys)), export            # a name, not a submodule shadowing it
        assert export in sys.modules[obj.__module__].__all__, export


def test_layers_import_no_framework_they_must_not():
    code = ("import sys, archgen.dataflow.compile, archgen.dataflow.control, archgen.mappings.tiling;"
            "bad = sorted(m for m in ('amaranth', 'simpy', 'cocotb') if m in sys.modules);"
            "import archgen.sim.array_model, archgen.sim.array_sim;"
            "bad += ['amaranth (sim)'] if 'amaranth' in sys.modules else [];"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
