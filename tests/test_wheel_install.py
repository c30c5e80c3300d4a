"""A plugin built as a wheel and installed into an environment holding only the core shows up in
`selfsup plugins` and trains from a recipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import REPO, write_toy_recipe

OURS = ("selfsup", "_selfsup", "__editable__", "selfsup_toy")


def _run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert res.returncode == 0, f"{cmd}\n{res.stdout}\n{res.stderr}"
    return res


def _third_party_view(target: Path) -> Path:
    """Symlinks to this environment's third-party packages (torch, pydantic, ...), without any
    selfsup distribution or editable hook: the new environment's only other dependencies."""
    site = Path(sysconfig.get_paths()["purelib"])
    target.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower().replace("-", "_")
        if name.startswith(OURS) or entry.suffix == ".pth":
            continue
        (target / entry.name).symlink_to(entry)
    return target


@pytest.mark.slow
def test_plugin_wheel_in_core_only_environment(tmp_path):
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)]
    _run([*build, str(REPO)])
    _run([*build, str(REPO / "tests" / "plugins" / "selfsup-toy")])
    assert sorted(p.name.split("-")[0] for p in wheels.glob("*.whl")) == ["selfsup", "selfsup_toy"]

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "third_party.pth").write_text(str(_third_party_view(tmp_path / "deps")) + "\n")
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}
    env.pop("PYTHONPATH", None)
    # the venv's bundled setuptools would shadow the newer one torch requires
    _run([str(py), "-m", "pip", "uninstall", "-q", "-y", "setuptools"], env=env)
    _run([str(py), "-m", "pip", "install", "-q", "--no-index", str(next(wheels.glob("selfsup-*.whl")))], env=env)

    selfsup = [str(py), "-m", "selfsup"]
    before = json.loads(_run([*selfsup, "plugins", "--json"], env=env).stdout)
    assert [r["name"] for r in before] == ["core"]

    # installed through the CLI, from the wheel, not editable (selfsup install takes a local wheel by path)
    _run([*selfsup, "install", "--find-links", str(wheels), str(next(wheels.glob("selfsup_toy-*.whl")))], env=env)
    where = _run([str(py), "-c", "import selfsup_toy; print(selfsup_toy.__file__)"], env=env).stdout
    assert str(site) in where and str(REPO) not in where

    rows = {r["name"]: r for r in json.loads(_run([*selfsup, "plugins", "--json"], env=env).stdout)}
    assert rows["toy"]["distribution"] == "selfsup-toy" and rows["toy"]["version"] == "0.1.0"
    assert "toy_infonce" in rows["toy"]["components"]["pretext_task"]

    recipe = write_toy_recipe(tmp_path, max_steps=20)
    res = _run([*selfsup, "train", str(recipe), "--no-progress"], env=env, cwd=tmp_path)
    assert "completed at step 20" in res.stdout
    assert (tmp_path / "run" / "checkpoints" / "step-00000020" / "model.safetensors").is_file()
