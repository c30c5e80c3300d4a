"""`selfsup install` passes pip only what it recognises (catalogued tasks and distributions, local
wheels and projects, or an explicit --pip-args), and plugins directories other users can write to
are refused before any of their code runs. No test here really installs anything (--dry-run)."""

from __future__ import annotations

import json
import os
import shlex
import stat

import pytest
from conftest import cli, write_plugin

from selfsup.catalog import InstallRefused, install_targets
from selfsup.plugins import PluginManager, PluginWarning, untrusted_reason


def dry_run(*args: str, **kw):
    return cli("install", "--dry-run", *args, **kw)


@pytest.mark.parametrize(
    "args",
    [
        ["-x"],
        ["--index-url=https://evil.example/simple", "simclr"],
        ["--target=/etc", "simclr"],
        ["--", "--target=/etc"],
        ["--", "-r/etc/requirements.txt"],
        ["--find-links", "--target=/etc", "simclr"],
    ],
)
def test_names_that_are_pip_options_are_refused(args):
    res = dry_run(*args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stdout == "" and "Traceback" not in res.stderr  # nothing printed as a pip command, nothing run
    assert "pip option" in res.stderr or "No such option" in res.stderr, res.stderr


@pytest.mark.parametrize("dry", [True, False])
def test_unknown_name_is_refused_with_a_suggestion_not_installed(dry):
    # without --dry-run too: the refusal comes before pip would run
    res = cli("install", *(["--dry-run"] if dry else []), "simclrr", env={"PIP_NO_INDEX": "1"})
    assert res.returncode == 2 and res.stdout == ""
    assert "unknown plugin or task 'simclrr'; did you mean 'simclr' (from selfsup-vision)?" in res.stderr
    assert "--pip-args 'simclrr'" in res.stderr


def test_catalogued_tasks_and_distributions_are_accepted():
    res = dry_run("simclr", "selfsup-text", "selfsup_speech[extra]>=0.1", "mae")
    assert res.returncode == 0, res.stderr
    cmd = shlex.split(res.stdout)
    assert cmd[1:4] == ["-m", "pip", "install"]
    assert cmd[4:] == ["selfsup-vision", "selfsup-text", "selfsup_speech[extra]>=0.1"]
    assert "simclr: provided by selfsup-vision" in res.stderr


def test_local_wheels_and_projects_are_accepted(tmp_path):
    wheel = tmp_path / "selfsup_rotnet-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    project = tmp_path / "selfsup-rotnet"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'selfsup-rotnet'\n")
    res = dry_run(str(wheel), "selfsup-rotnet", "-e", str(project), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    cmd = shlex.split(res.stdout)
    assert cmd[-2:] == [str(wheel), str(project)] and cmd[cmd.index("-e") + 1] == str(project)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing-0.1-py3-none-any.whl", "wheel 'missing-0.1-py3-none-any.whl' not found"),
        ("./not-a-project", "neither a catalogued name nor an existing wheel or project folder"),
        ("selfsup-vision @ https://evil.example/v.whl", "from a URL needs an explicit --pip-args"),
    ],
)
def test_missing_files_and_urls_are_refused(tmp_path, name, message):
    with pytest.raises(InstallRefused, match=message.replace("(", r"\(")):
        install_targets([name])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InstallRefused, match="not a Python project"):
        install_targets([str(tmp_path / "empty")])


def test_pip_args_is_the_explicit_escape_hatch():
    res = dry_run("simclr", "--pip-args", "--index-url https://mirror.example/simple some-other-dist")
    assert res.returncode == 0, res.stderr
    cmd = shlex.split(res.stdout)
    assert cmd[-4:] == ["selfsup-vision", "--index-url", "https://mirror.example/simple", "some-other-dist"]
    assert "passing to pip as written: --index-url https://mirror.example/simple some-other-dist" in res.stderr
    res = dry_run("--pip-args", "'unbalanced")
    assert res.returncode == 2 and "--pip-args" in res.stderr and "Traceback" not in res.stderr


# ----------------------------------------------------------------------------- plugins directories

MARKER_PLUGIN = """
import os, selfsup
open(os.environ["MARKER"], "w").write("imported")

@selfsup.hookimpl
def register_augmentations(register):
    register("marked_aug", lambda o, c: None, summary="From a plugins directory.")
"""


@pytest.fixture
def shared_dir(tmp_path):
    """A plugins directory anyone may write to, holding a plugin that leaves a marker when imported."""
    directory = tmp_path / "shared"
    write_plugin(directory, "marked", MARKER_PLUGIN)
    directory.chmod(0o777)
    return directory, {"MARKER": str(tmp_path / "imported")}, tmp_path / "imported"


@pytest.mark.parametrize("how", ["option", "env"])
@pytest.mark.parametrize("command", [["--help"], ["plugins"], ["validate", "toy-quickstart"]])
def test_world_writable_plugins_dir_is_refused_even_for_help(shared_dir, how, command):
    directory, env, marker = shared_dir
    args = ["--plugins-dir", str(directory), *command] if how == "option" else command
    if how == "env":
        env = {**env, "SELFSUP_PLUGINS_DIR": str(directory)}
    res = cli(*args, env=env)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.startswith(f"error: plugins directory {str(directory)!r} is world-writable"), res.stderr
    assert "--trust" in res.stderr and "SELFSUP_TRUST_PLUGINS_DIR=1" in res.stderr
    assert not marker.exists(), "the refused directory's code ran"


@pytest.mark.parametrize("how", ["option", "env"])
def test_trust_loads_it(shared_dir, how):
    directory, env, marker = shared_dir
    if how == "option":
        res = cli("--trust", "--plugins-dir", str(directory), "plugins", "--json", env=env)
    else:
        res = cli("--plugins-dir", str(directory), "plugins", "--json", env={**env, "SELFSUP_TRUST_PLUGINS_DIR": "1"})
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["marked"]["components"] == {"augmentation": ["marked_aug"]} and marker.exists()


def test_a_world_writable_file_in_a_private_dir_is_refused(tmp_path, monkeypatch):
    directory = tmp_path / "private"
    path = write_plugin(directory, "marked", MARKER_PLUGIN)
    directory.chmod(0o755)
    path.chmod(0o666)
    monkeypatch.setenv("MARKER", str(tmp_path / "imported"))
    with pytest.warns(PluginWarning, match="plugin file .* is world-writable"):
        pm = PluginManager(load_entry_points=False, plugins_dirs=[directory])
    assert pm.refused and "marked" not in pm.infos and not (tmp_path / "imported").exists()
    assert PluginManager(load_entry_points=False, plugins_dirs=[directory], trust_dirs=True).infos["marked"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to give a folder away")
def test_a_dir_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    directory = tmp_path / "theirs"
    write_plugin(directory, "marked", MARKER_PLUGIN)
    os.chown(directory, 54321, 54321)
    assert "belongs to another user (uid 54321)" in untrusted_reason(directory)
    monkeypatch.setenv("MARKER", str(tmp_path / "imported"))
    with pytest.warns(PluginWarning):
        pm = PluginManager(load_entry_points=False, plugins_dirs=[directory])
    assert "marked" not in pm.infos and not (tmp_path / "imported").exists()


def test_a_private_dir_is_trusted(tmp_path):
    directory = tmp_path / "mine"
    write_plugin(directory, "x", "")
    directory.chmod(stat.S_IRWXU)
    assert untrusted_reason(directory) is None


def test_plugins_dir_after_the_subcommand_runs_no_code(shared_dir):
    directory, env, marker = shared_dir
    directory.chmod(0o700)  # private: it would load if it were read as a top-level option
    res = cli("plugins", "--plugins-dir", str(directory), env=env)
    assert res.returncode == 2 and "No such option" in res.stderr
    assert not marker.exists(), "a --plugins-dir given after the subcommand was loaded before click refused it"
