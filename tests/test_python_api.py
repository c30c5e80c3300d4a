"""docs/python-api.md's example, run with doctest in an empty folder, and the API's argument checks."""

from __future__ import annotations

import doctest

import pytest
from conftest import REPO


def test_the_documented_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testfile(str(REPO / "docs" / "python-api.md"), module_relative=False,
                              optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted >= 10 and result.failed == 0


def test_overrides_are_a_dict_or_a_list_of_strings():
    import selfsup
    from selfsup.recipe import RecipeError

    with pytest.raises(TypeError, match="overrides: pass a dict"):
        selfsup.train("simclr-digits", "train.lr=1")
    with pytest.raises(RecipeError, match=r"train.lr: .*greater than 0"):
        selfsup.train("simclr-digits", {"train.lr": -1.0})
    with pytest.raises(FileNotFoundError, match="not a selfsup run directory"):
        selfsup.open_run(REPO)


def test_importing_selfsup_stays_light():
    """``import selfsup`` imports no torch; the API's names load it on first use."""
    import subprocess
    import sys

    code = ("import sys, selfsup; light = 'torch' not in sys.modules; "
            "selfsup.load; print(light, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True"]
