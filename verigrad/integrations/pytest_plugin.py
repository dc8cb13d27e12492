"""pytest plugin (entry point ``pytest11``): collect case files as test items.

Opt-in: pass ``--verigrad`` or set ``verigrad = true`` in the ini file, so that
unrelated ``.toml`` files are never collected.  The collector is provided by
:mod:`verigrad.integrations.pytest_items` once enabled.
"""

from __future__ import annotations


def pytest_addoption(parser):
    group = parser.getgroup("verigrad")
    group.addoption("--verigrad", action="store_true", default=False,
                    help="collect verigrad case files (*.toml) as tests")
    parser.addini("verigrad", type="bool", default=False, help="collect verigrad case files as tests")


def pytest_collect_file(file_path, parent):
    config = parent.config
    if not (config.getoption("--verigrad") or config.getini("verigrad")):
        return None
    if file_path.suffix != ".toml" or file_path.name.startswith(("_", ".")) or file_path.name == "pyproject.toml":
        return None
    from verigrad.integrations.pytest_items import CaseFile

    return CaseFile.from_parent(parent, path=file_path)
