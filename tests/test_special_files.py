"""Case files and .npy files that are not regular files, or too big to parse, are refused at once
(issue 19, item 6): a FIFO never hangs, a symlink to /dev/zero is not read until memory runs out,
and a file full of numbers beyond the element limits is refused before it is parsed."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from verigrad.casefile.loader import load_case
from verigrad.errors import CaseError, LimitError

CASE = 'name = "s"\nloss = "sum(x**2)"\n[symbols]\nx = { shape = [3], init = "normal" }\n'


def test_a_fifo_case_file_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "c.toml"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    with pytest.raises(CaseError, match="is a FIFO, not a regular file"):
        load_case(fifo)
    assert time.monotonic() - t0 < 5


def test_a_symlink_to_a_device_is_refused(tmp_path):
    link = tmp_path / "c.toml"
    link.symlink_to("/dev/zero")
    with pytest.raises(CaseError, match="is a device, not a regular file"):
        load_case(link)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_npy_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    target = tmp_path / "d.npy"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to("/dev/zero")
    case = tmp_path / "c.toml"
    case.write_text('name = "s"\nloss = "sum(x**2)"\n[symbols]\nx = { file = "d.npy" }\n')
    with pytest.raises(CaseError, match=r"file='d\.npy' is not a regular file"):
        load_case(case)


def test_numbers_beyond_the_element_limits_are_refused_before_parsing(tmp_path):
    n = 1_200_000  # more than the file's max_elements allows, beyond the slack
    values = ", ".join(["0.5"] * n)
    big = tmp_path / "big.toml"
    big.write_text(f'name = "s"\nloss = "sum(x**2)"\n[symbols]\nx = {{ value = [{values}] }}\n'
                   f'[limits]\nmax_elements = 1000000\nmax_symbol_elements = 1000000\n')
    t0 = time.process_time()
    with pytest.raises(LimitError, match=r"holds at least 1,19\d,\d{3} numbers in arrays, more than its element "
                                         r"limit \(1,000,000\) allows"):
        load_case(big)
    assert time.process_time() - t0 < 2.0  # refused from a byte count, not after a full TOML parse


def test_a_big_file_within_its_limits_still_loads(tmp_path):
    n = 100_000
    x = np.linspace(-1, 1, n)
    big = tmp_path / "ok.toml"
    big.write_text(f'name = "s"\nloss = "sum(x**2)"\n[symbols]\nx = {{ value = [{", ".join(map(repr, x.tolist()))}] }}\n')
    case = load_case(big)
    assert case.symbols[0].value.shape == (n,)
    assert np.array_equal(case.symbols[0].value, x)
