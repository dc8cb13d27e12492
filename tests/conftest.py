"""Slow studies are opt-in: ``pytest --runslow`` (or VERIGRAD_RUNSLOW=1) runs tests marked ``slow``."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("VERIGRAD_RUNSLOW"):
        return
    skip = pytest.mark.skip(reason="slow: use --runslow or VERIGRAD_RUNSLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
