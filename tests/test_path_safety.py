"""A run writes only inside its run directory: selfsup.paths.inside refuses absolute parts, '..'
that climbs out and symbolic links that lead out; recipe validation refuses the names that would try."""

from __future__ import annotations

import os

import pytest
from conftest import cli, write_toy_recipe

from selfsup.paths import UnsafePath, inside


def test_parts_inside_the_run_are_joined_and_resolved(tmp_path):
    run = tmp_path / "run"
    assert inside(run, "export", "mlp") == (run / "export" / "mlp").resolve()
    assert inside(run, "checkpoints/step-00000001", "model.safetensors") == run.resolve() / "checkpoints" / \
        "step-00000001" / "model.safetensors"
    assert inside(run, "export", "a", "..", "b") == run.resolve() / "export" / "b"  # '..' that stays inside
    assert inside(run) == run.resolve()
    assert not run.exists()  # nothing is created


@pytest.mark.parametrize(
    "parts",
    [
        ("/etc/passwd",),
        ("export", "/tmp/elsewhere"),
        ("..",),
        ("..", "sibling"),
        ("export", "..", "..", "x"),
        ("export/../../x",),
        ("export", "mlp\x00"),
    ],
)
def test_paths_leaving_the_run_are_refused(tmp_path, parts):
    run = tmp_path / "runs" / "r"
    with pytest.raises(UnsafePath):
        inside(run, *parts)


def test_unsafe_path_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="absolute path"):
        inside(tmp_path, "/abs")


def test_a_symlink_pointing_outside_is_refused(tmp_path):
    run, outside = tmp_path / "run", tmp_path / "outside"
    (run / "export").mkdir(parents=True)
    outside.mkdir()
    (run / "export" / "mlp").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath, match="leads outside the run directory"):
        inside(run, "export", "mlp", "model.safetensors")
    (run / "latest").symlink_to(outside / "file")  # a dangling link out
    with pytest.raises(UnsafePath):
        inside(run, "latest")


def test_a_symlink_inside_the_run_is_followed(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "step-1").mkdir(parents=True)
    (run / "newest").symlink_to(run / "checkpoints" / "step-1", target_is_directory=True)
    assert inside(run, "newest", "meta.json") == (run / "checkpoints" / "step-1" / "meta.json").resolve()


def test_the_run_directory_may_itself_be_a_symlink(tmp_path):
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    assert inside(link, "export") == real.resolve() / "export"


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_a_symlink_loop_is_refused_not_a_crash(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "a").symlink_to(run / "b")
    (run / "b").symlink_to(run / "a")
    try:
        result = inside(run, "a", "x")
    except UnsafePath:
        return
    assert run.resolve() in result.parents  # some Pythons resolve a loop without raising


@pytest.mark.parametrize(
    "override",
    ['name="../../x"', 'name="/abs"', 'backbones={"/tmp/abs" = { type = "mlp", options = { in_dim = 16 } } }',
     'backbones={".." = { type = "mlp", options = { in_dim = 16 } } }'],
)
def test_validate_refuses_names_that_would_escape(tmp_path, override):
    # the recipe keys and name that used to make `train` write outside runs/ (issue 12, item 9)
    res = cli("validate", str(write_toy_recipe(tmp_path)), "--set", override)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "name:" in res.stderr or "backbones[" in res.stderr, res.stderr
