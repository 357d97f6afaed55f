"""Shared pytest options: slow and model-file tests are opt-in with --runslow."""
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
