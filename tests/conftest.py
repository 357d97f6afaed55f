"""Shared pytest options (slow and model-file tests are opt-in with --runslow) and the in-process CLI runner."""
import contextlib
import io

import pytest


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow or hf (large arrays, place and route, real models)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="opt-in: pass --runslow to run slow/large cases")
    for item in items:
        if "slow" in item.keywords or "hf" in item.keywords:
            item.add_marker(skip)


def run_cli(argv, root, monkeypatch):
    """``archgen.cli.main(argv)`` in-process with ``root`` as the working directory: (exit code, stdout, stderr)."""
    from archgen.cli import main
    monkeypatch.chdir(root)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()
