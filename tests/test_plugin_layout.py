"""Every first-party plugin keeps one folder layout (docs/writing-plugins.md, "One folder per
component kind"): each component's factory lives in the folder of its kind (``data/``, ``augment/``,
``backbones/``, ``tasks/``, ``evaluators/``, ``heads/``, ``feedback/``), its options model in that
folder's ``options.py``, and the package, the folders' ``__init__.py`` and every ``options.py`` import
without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from selfsup.plugins import PluginManager
from selfsup.registry import lazy_target

REPO = Path(__file__).resolve().parents[1]
#: package name -> its source folder, for every first-party plugin.
ROOTS = {p.name: p for p in REPO.glob("plugins/selfsup-*/src/selfsup_*") if (p / "__init__.py").is_file()}
PACKAGES = sorted(ROOTS)
#: The folder of each registry kind.
FOLDER = {"data_source": "data", "augmentation": "augment", "backbone": "backbones", "pretext_task": "tasks",
          "evaluator": "evaluators", "head": "heads", "feedback": "feedback"}


def components(package: str) -> list[tuple[str, str, object]]:
    """``(kind, name, component)`` of everything ``package`` registers, recipes left out."""
    module = __import__(package)
    manager = PluginManager(load_entry_points=False)
    manager.register(module, package)
    assert not manager.errors, manager.errors
    return [(kind, name, c) for kind, comps in manager.registry.components.items() if kind in FOLDER
            for name, c in comps.items()]


def misplaced(package: str, kind: str, name: str, target: str | None, options_module: str) -> list[str]:
    """What breaks the layout for one component (empty when nothing does)."""
    folder = f"{package}.{FOLDER[kind]}."
    out = []
    if target is None or not target.startswith(folder):
        out.append(f"{kind} {name!r}: factory {target!r} is not a lazy(...) target under {folder}")
    if options_module != f"{folder}options":
        out.append(f"{kind} {name!r}: options model defined in {options_module}, not {folder}options")
    return out


def test_the_layout_check_catches_a_misplaced_component():
    assert misplaced("selfsup_x", "pretext_task", "t", "selfsup_x.tasks.t:build", "selfsup_x.tasks.options") == []
    assert misplaced("selfsup_x", "pretext_task", "t", "selfsup_x.t:build", "selfsup_x.options") == [
        "pretext_task 't': factory 'selfsup_x.t:build' is not a lazy(...) target under selfsup_x.tasks.",
        "pretext_task 't': options model defined in selfsup_x.options, not selfsup_x.tasks.options",
    ]
    assert misplaced("selfsup_x", "backbone", "b", None, "selfsup_x.backbones.options")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_component_lives_in_the_folder_of_its_kind(package):
    assert len(PACKAGES) >= 4, PACKAGES
    found = components(package)
    if not found:  # a plugin of lifecycle hooks only (selfsup-mlflow): it must have no component folder either
        assert not [f for f in FOLDER.values() if (ROOTS[package] / f).exists()], package
        return
    problems = []
    for kind, name, c in found:
        problems += misplaced(package, kind, name, lazy_target(c.factory), c.options.__module__)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("package", PACKAGES)
def test_the_package_its_folders_and_options_import_without_torch(package):
    root = ROOTS[package]
    folders = sorted(d.name for d in root.iterdir() if d.name in FOLDER.values())
    assert "tasks" in folders or "data" in folders or not components(package), folders
    for folder in folders:
        assert (root / folder / "__init__.py").is_file() and (root / folder / "options.py").is_file(), folder
    modules = [package] + [f"{package}.{f}" for f in folders] + [f"{package}.{f}.options" for f in folders]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n    importlib.import_module(m)\n"
            "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
            "assert not loaded, loaded[:5]\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
