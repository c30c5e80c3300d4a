"""`selfsup plugin new` writes a plugin project that installs from its wheel next to a core-only
environment, declares its core range and passes its own tests (conformance + beats random init)."""

from __future__ import annotations

import json
import os
import subprocess
import re
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import pytest
from conftest import REPO, cli
from test_cli import PROBE
from test_wheel_install import _run, _third_party_view

from selfsup.kit import KitError, new_plugin, supported_range

FILES = {
    ".github/workflows/ci.yml",
    ".gitignore",
    "README.md",
    "pyproject.toml",
    "src/selfsup_kitdemo/__init__.py",
    "src/selfsup_kitdemo/data.py",
    "src/selfsup_kitdemo/options.py",
    "src/selfsup_kitdemo/recipes/kitdemo-example.toml",
    "src/selfsup_kitdemo/scarf.py",
    "tests/test_conformance.py",
    "tests/test_example_recipe.py",
}


def test_plugin_new_writes_the_project(tmp_path):
    res = cli("plugin", "new", "kitdemo", "--dir", str(tmp_path), "--modality", "tabular")
    assert res.returncode == 0, res.stderr
    root = tmp_path / "selfsup-kitdemo"
    assert f"created {root}" in res.stdout
    assert {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} == FILES

    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "selfsup-kitdemo"
    assert project["project"]["dependencies"][0] == f"selfsup{supported_range()}" == "selfsup>=0.1,<0.2"
    assert project["project"]["entry-points"]["selfsup"] == {"kitdemo": "selfsup_kitdemo"}
    assert project["tool"]["setuptools"]["package-data"] == {"selfsup_kitdemo": ["recipes/*.toml"]}
    assert "test" in project["project"]["optional-dependencies"] and project["tool"]["pytest"]
    for path in root.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "{{" not in text.replace("${{", ""), f"unrendered placeholder in {path}"
            if path.suffix == ".py":
                compile(text, str(path), "exec")  # syntax only; nothing runs
    assert 'MODALITY = "tabular"' in (root / "src/selfsup_kitdemo/__init__.py").read_text()
    assert "${{ matrix.python-version }}" in (root / ".github/workflows/ci.yml").read_text()

    again = cli("plugin", "new", "kitdemo", "--dir", str(tmp_path))
    assert again.returncode == 2 and "already exists; pass --force" in again.stderr
    (root / "README.md").write_text("mine")
    (root / "NOTES.txt").write_text("kept")
    assert cli("plugin", "new", "kitdemo", "--dir", str(tmp_path), "--force").returncode == 0
    assert (root / "README.md").read_text() != "mine" and (root / "NOTES.txt").read_text() == "kept"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Bad-Name", "must be lowercase letters, digits and '_'.*'bad_name'"),
        ("9lives", "starting with a letter"),
        ("selfsup-foo", "without the 'selfsup-' prefix"),
        ("core", "is reserved"),
        ("class", "is reserved"),
    ],
)
def test_bad_names_are_refused(tmp_path, name, message):
    with pytest.raises(KitError, match=message):
        new_plugin(name, tmp_path)
    assert not any(tmp_path.iterdir())


def test_cli_reports_bad_name_and_stays_light(tmp_path):
    res = cli("plugin", "new", "no good", "--dir", str(tmp_path))
    assert res.returncode == 2 and res.stderr.startswith("error: plugin name 'no good' must be")
    args = ["plugin", "new", "light", "--dir", str(tmp_path)]
    res = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stderr.rstrip().endswith("HEAVY="), res.stderr


def test_generated_package_is_light_and_its_recipe_validates(tmp_path):
    root = new_plugin("kitdemo", tmp_path).root
    probe = "import sys, selfsup_kitdemo; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(root / "src")})
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr

    sys.path.insert(0, str(root / "src"))
    try:
        import selfsup_kitdemo

        from selfsup.recipe import load_recipe
        from selfsup.testing import registry_with

        registry = registry_with([selfsup_kitdemo])
        loaded = load_recipe(str(root / "src/selfsup_kitdemo/recipes/kitdemo-example.toml"), registry)
        assert loaded.recipe.tasks["scarf"].type == "kitdemo_scarf"
        assert registry.get("recipe", "kitdemo-example").modality == "vector"
    finally:
        sys.path.remove(str(root / "src"))
        for module in [m for m in sys.modules if m.startswith("selfsup_kitdemo")]:
            del sys.modules[module]


@pytest.mark.slow
def test_generated_plugin_installs_and_passes_its_own_tests(tmp_path):
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)]
    _run([*build, str(REPO)])

    # a fresh environment with the core's wheel only; torch and friends come from this one
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    site = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    with open(os.path.join(site, "third_party.pth"), "w") as pth:
        pth.write(str(_third_party_view(tmp_path / "deps")) + "\n")
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels), "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    _run([str(py), "-m", "pip", "uninstall", "-q", "-y", "setuptools"], env=env)
    _run([str(py), "-m", "pip", "install", "-q", "--no-index", str(next(wheels.glob("selfsup-*.whl")))], env=env)

    # the kit's templates come from the installed core wheel
    _run([str(py), "-m", "selfsup", "plugin", "new", "kitdemo", "--dir", str(tmp_path)], env=env)
    project = tmp_path / "selfsup-kitdemo"
    _run([*build, str(project)])
    _run([str(py), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels), "selfsup-kitdemo"], env=env)

    rows = {r["name"]: r for r in json.loads(_run([str(py), "-m", "selfsup", "plugins", "--json"], env=env).stdout)}
    assert set(rows) == {"core", "kitdemo"}
    demo = rows["kitdemo"]
    assert (demo["distribution"], demo["source"], demo["requires"], demo["errors"]) == (
        "selfsup-kitdemo", "entry point", ">=0.1,<0.2", [])
    assert demo["components"] == {"data_source": ["kitdemo_clusters"], "pretext_task": ["kitdemo_scarf"],
                                  "recipe": ["kitdemo-example"]}

    # the project's own suite, against the installed wheel: conformance, and beats random init
    res = _run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], env=env, cwd=project)
    passed = re.search(r"(\d+) passed", res.stdout)
    assert passed and int(passed.group(1)) >= 10 and "failed" not in res.stdout and "skipped" not in res.stdout, res.stdout
