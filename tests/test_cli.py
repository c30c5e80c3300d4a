"""The CLI's light commands stay light (no torch import), and install/recipes/tasks behave."""

from __future__ import annotations

import json

import pytest
from conftest import cli, cli_heavy_imports


@pytest.mark.parametrize("args",
                         [["--help"], ["plugins"], ["plugins", "--json"], ["tasks"], ["recipes"], ["train", "--help"],
                          ["fetch", "--help"]])
def test_light_commands_do_not_import_torch(args):
    res = cli_heavy_imports(args)
    assert res.returncode == 0, res.stderr
    assert "HEAVY=\n" in res.stderr or res.stderr.rstrip().endswith("HEAVY="), res.stderr


def test_tasks_marks_installed_and_lists_third_party():
    res = cli("tasks", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["toy_infonce"]["installed"] and rows["toy_infonce"]["distribution"] == "selfsup-toy"
    assert rows["simclr"]["distribution"] == "selfsup-vision" and rows["simclr"]["family"] == "contrastive"


def test_recipes_lists_shipped_recipes():
    res = cli("recipes", "--json")
    assert res.returncode == 0
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert {"name": "toy-quickstart", "plugin": "toy", "modality": "vector"}.items() <= rows["toy-quickstart"].items()


def test_install_resolves_task_names_to_distributions():
    res = cli("install", "--dry-run", "simclr", "mae", "hubert", "--find-links", "/wheels", "-e", ".")
    assert res.returncode == 0, res.stderr
    cmd = res.stdout.split()
    assert cmd[1:4] == ["-m", "pip", "install"]
    assert cmd[cmd.index("--find-links") + 1] == "/wheels" and cmd[cmd.index("-e") + 1] == "."
    assert cmd[-2:] == ["selfsup-vision", "selfsup-speech"]  # simclr and mae share one distribution
    assert "simclr: provided by selfsup-vision" in res.stderr


def test_install_runs_pip_and_reports_its_failure(tmp_path):
    # names outside the catalogue reach pip only through --pip-args; pip's exit status is the command's
    res = cli("install", "--find-links", str(tmp_path), "--pip-args", "selfsup-no-such-plugin",
              env={"PIP_NO_INDEX": "1"})
    assert res.returncode != 0
    assert "selfsup-no-such-plugin" in res.stderr and "No matching distribution" in res.stderr


def test_version():
    res = cli("--version")
    assert res.returncode == 0 and "selfsup, version" in res.stdout
