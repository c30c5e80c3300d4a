"""`selfsup plugin new` writes a plugin project for each modality in the first-party plugins' layout;
the vector one installs from its wheel next to a core-only environment, the vision one beside
selfsup-vision, and each passes its own tests (conformance + beats random init)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import pytest
from conftest import REPO, cli, cli_heavy_imports
from test_wheel_install import _run, _third_party_view

from selfsup.kit import MODALITIES, KitError, new_plugin, supported_range

COMMON = {".github/workflows/ci.yml", ".gitignore", "README.md", "pyproject.toml"}
#: Each modality's files besides COMMON (for the plugin "kitdemo"): the first-party plugins' layout.
FILES = {
    "vector": {"data/__init__.py", "data/options.py", "data/clusters.py", "tasks/__init__.py", "tasks/options.py",
               "tasks/scarf.py"},
    "vision": {"tasks/__init__.py", "tasks/options.py", "tasks/vicreg.py"},
    "text": {"tasks/__init__.py", "tasks/options.py", "tasks/replaced_tokens.py"},
    "speech": {"tasks/__init__.py", "tasks/options.py", "tasks/cpc.py"},
}
#: Each modality's example task and the first-party plugin it builds on (a dependency).
EXAMPLES = {"vector": ("kitdemo_scarf", None), "vision": ("kitdemo_vicreg", "vision"),
            "text": ("kitdemo_replaced_tokens", "text"), "speech": ("kitdemo_cpc", "speech")}


def _files(modality: str) -> set[str]:
    package = {f"src/selfsup_kitdemo/{f}" for f in {"__init__.py", "recipes/kitdemo-example.toml", *FILES[modality]}}
    return COMMON | package | {"tests/test_conformance.py", "tests/test_example_recipe.py"}


def test_plugin_new_writes_the_project(tmp_path):
    res = cli("plugin", "new", "kitdemo", "--dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    root = tmp_path / "selfsup-kitdemo"
    assert f"created {root}" in res.stdout
    assert {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} == _files("vector")

    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "selfsup-kitdemo"
    assert project["project"]["dependencies"] == [f"selfsup{supported_range()}", "torch>=2.4"]
    assert supported_range() == ">=0.1,<0.2"
    assert project["project"]["entry-points"]["selfsup"] == {"kitdemo": "selfsup_kitdemo"}
    assert project["tool"]["setuptools"]["package-data"] == {"selfsup_kitdemo": ["recipes/*.toml"]}
    assert "test" in project["project"]["optional-dependencies"] and project["tool"]["pytest"]
    assert 'MODALITY = "vector"' in (root / "src/selfsup_kitdemo/__init__.py").read_text()
    assert "${{ matrix.python-version }}" in (root / ".github/workflows/ci.yml").read_text()

    again = cli("plugin", "new", "kitdemo", "--dir", str(tmp_path))
    assert again.returncode == 2 and "already exists; pass --force" in again.stderr
    (root / "README.md").write_text("mine")
    (root / "NOTES.txt").write_text("kept")
    assert cli("plugin", "new", "kitdemo", "--dir", str(tmp_path), "--force").returncode == 0
    assert (root / "README.md").read_text() != "mine" and (root / "NOTES.txt").read_text() == "kept"


@pytest.mark.parametrize("modality", list(MODALITIES))
def test_every_modality_writes_its_example_in_the_plugin_layout(tmp_path, modality):
    root = new_plugin("kitdemo", tmp_path, modality=modality).root
    assert {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} == _files(modality)
    task, sibling = EXAMPLES[modality]
    dependencies = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    assert dependencies == ["selfsup>=0.1,<0.2", *([f"selfsup-{sibling}>=0.1,<0.2"] if sibling else []), "torch>=2.4"]
    for path in root.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "{{" not in text.replace("${{", ""), f"unrendered placeholder in {path}"
            if path.suffix == ".py":
                compile(text, str(path), "exec")  # syntax only; nothing runs
                assert max(map(len, text.splitlines())) <= 120, f"a line of {path} is longer than 120"
    readme = (root / "README.md").read_text()
    assert f"`{task}`" in readme and f"--modality {modality}" in readme
    assert f'"{task}"' in (root / "src/selfsup_kitdemo/__init__.py").read_text()
    assert f'"{task}"' in (root / "tests/test_conformance.py").read_text()
    for options in root.rglob("options.py"):  # options modules are imported when selfsup starts: no torch
        assert not re.search(r"^\s*(import|from)\s+torch", options.read_text(), re.M), options


def test_an_unknown_modality_is_refused_with_the_choices(tmp_path):
    with pytest.raises(KitError, match="no example for modality 'tabular'; choose one of vector, vision, text, speech"):
        new_plugin("kitdemo", tmp_path, modality="tabular")
    res = cli("plugin", "new", "kitdemo", "--dir", str(tmp_path), "--modality", "audio")
    assert res.returncode == 2 and "choose one of vector, vision, text, speech" in res.stderr
    assert not any(tmp_path.iterdir())


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
    args = ["plugin", "new", "light", "--dir", str(tmp_path), "--modality", "vision"]
    res = cli_heavy_imports(args)
    assert res.returncode == 0 and res.stderr.rstrip().endswith("HEAVY="), res.stderr


def test_generated_packages_are_light_and_their_recipes_validate(tmp_path):
    """Every modality's package imports without torch, and its example recipe passes validation
    (options, sample keys from data through augmentations to task and backbone) beside the
    first-party plugin it builds on."""
    import importlib

    roots = {m: new_plugin(f"kit{m}", tmp_path, modality=m).root for m in MODALITIES}
    paths = os.pathsep.join(str(root / "src") for root in roots.values())
    probe = ("import sys\n" + "".join(f"import selfsup_kit{m}\n" for m in MODALITIES)
             + "print(sorted(m for m in ('torch', 'numpy', 'transformers') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": paths})
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr

    from selfsup.recipe import load_recipe
    from selfsup.testing import registry_with

    sys.path[:0] = [str(root / "src") for root in roots.values()]
    try:
        for modality, root in roots.items():
            sibling = EXAMPLES[modality][1]
            plugins = [importlib.import_module(f"selfsup_{sibling}")] if sibling else []
            registry = registry_with([*plugins, importlib.import_module(f"selfsup_kit{modality}")])
            recipe = root / f"src/selfsup_kit{modality}/recipes/kit{modality}-example.toml"
            loaded = load_recipe(str(recipe), registry)
            task = EXAMPLES[modality][0].replace("kitdemo", f"kit{modality}")
            assert [t.type for t in loaded.recipe.tasks.values()] == [task]
            assert registry.get("recipe", f"kit{modality}-example").modality == modality
    finally:
        del sys.path[: len(roots)]
        for module in [m for m in sys.modules if m.startswith("selfsup_kit")]:
            del sys.modules[module]


def _install_into(target: Path, project: Path) -> None:
    """pip-install ``project`` (no dependencies, no index) into the folder ``target``, for PYTHONPATH."""
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "--target", str(target), str(project)])


@pytest.mark.slow
def test_generated_vision_plugin_passes_its_own_tests_beside_selfsup_vision(tmp_path):
    """The vision example installed next to this environment's selfsup-vision: its conformance suite
    and its recipe (VICReg on digits beats the random init) pass."""
    project = new_plugin("kitdemo", tmp_path, modality="vision").root
    _install_into(tmp_path / "site", project)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "OMP_NUM_THREADS": "1"}
    res = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], env=env, cwd=project)
    passed = re.search(r"(\d+) passed", res.stdout)
    assert passed and int(passed.group(1)) >= 10, res.stdout
    assert "failed" not in res.stdout and "skipped" not in res.stdout, res.stdout


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
    assert passed and int(passed.group(1)) >= 10, res.stdout
    assert "failed" not in res.stdout and "skipped" not in res.stdout, res.stdout
