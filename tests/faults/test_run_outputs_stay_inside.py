"""A run writes only inside its run directory: a symlink planted in it that points elsewhere
(checkpoints/, export/, an export folder) stops the run before anything is written there."""

from __future__ import annotations

import pytest
from conftest import cli, write_toy_recipe


@pytest.mark.parametrize("link", ["checkpoints", "export", "export/mlp", "metrics.jsonl"])
def test_symlink_out_of_the_run_dir_is_refused_before_writing(tmp_path, link):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    run = tmp_path / "run"
    target = run / link
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(outside / "x" if link == "metrics.jsonl" else outside,
                      target_is_directory=link != "metrics.jsonl")
    res = cli("train", str(write_toy_recipe(tmp_path, max_steps=8)))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "outside the run directory" in res.stderr
    assert list(outside.iterdir()) == [], "nothing was written outside the run directory"
