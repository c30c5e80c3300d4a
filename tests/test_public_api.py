"""The public plugin API: plugins import only public core modules and never each other's modules,
and docs/plugin-api.md lists every public name (and nothing that does not exist)."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "plugin-api.md"
TEMPLATE = REPO / "core" / "selfsup" / "kit" / "template"

#: Core modules no plugin code may import, even from its tests (they are private or moved to selfsup.lib).
FORBIDDEN = ("selfsup.engine", "selfsup.builtins", "selfsup.cluster", "selfsup.splits", "selfsup.badfiles")


def public_modules() -> list[str]:
    """The modules the doc's table declares public (``| `selfsup.lib` | ... |``)."""
    return re.findall(r"^\| `(selfsup[\w.]*)` \|", DOC.read_text(), flags=re.M)


def documented_names() -> dict[str, set[str]]:
    """``{module: names}`` from the doc: the top-level ``- `name`...`` items under each ``## `module``` heading."""
    out: dict[str, set[str]] = {}
    module = None
    for line in DOC.read_text().splitlines():
        heading = re.match(r"^## `(selfsup[\w.]*)`\s*$", line)
        if heading:
            module = heading.group(1)
            out[module] = set()
        elif line.startswith("## "):
            module = None
        elif module is not None:
            item = re.match(r"^- `(\w+)", line)
            if item:
                out[module].add(item.group(1))
    return out


def public_names(module_name: str) -> set[str]:
    """``__all__``, or else the classes and functions the module defines and its ALL_CAPS constants."""
    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        return set(module.__all__)
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_") or name == "TYPE_CHECKING":
            continue
        defined_here = (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__ == module_name
        if defined_here or name.isupper():
            names.add(name)
    return names


# ------------------------------------------------------------------------------------------ imports


def imported_modules(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in ``source`` (function-local ones too, ``from pkg import
    sub`` as ``pkg.sub``) and every string given to ``lazy(...)`` or ``import_module(...)``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if node.module == "selfsup" and alias.name not in ("hookimpl", "__version__")]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if func in ("lazy", "import_module") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value.partition(":")[0]))
    return found


def problems(source: str, own_package: str, allowed_core: list[str] | None, where: str) -> list[str]:
    """Imports of ``source`` that break the rules: another plugin's package, a forbidden core module,
    or (with ``allowed_core``) a core module that is not public."""
    out = []
    for line, module in imported_modules(source):
        top = module.split(".")[0]
        if top.startswith("selfsup_") and top != own_package:
            out.append(f"{where}:{line}: imports another plugin's module {module}")
        elif top == "selfsup":
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN):
                out.append(f"{where}:{line}: imports the private {module}")
            elif allowed_core is not None and not any(module == m or module.startswith(m + ".") if m != "selfsup"
                                                      else module == m for m in allowed_core):
                out.append(f"{where}:{line}: imports {module}, which is not a public module (docs/plugin-api.md)")
    return out


def plugin_files() -> list[tuple[Path, str, bool]]:
    """``(file, its package, whether the public-module allow-list applies)`` for plugin code."""
    files = []
    for src in [*sorted(REPO.glob("plugins/*/src")), *sorted(REPO.glob("tests/plugins/*/src"))]:
        for path in sorted(src.rglob("*.py")):
            files.append((path, path.relative_to(src).parts[0], True))
    for path in sorted(TEMPLATE.rglob("*.tmpl")):
        if path.name.endswith(".py.tmpl"):
            files.append((path, "selfsup_kitdemo", "src" in path.relative_to(TEMPLATE).parts))
    return files


def read_code(path: Path) -> str:
    text = path.read_text()
    return text.replace("{{name}}", "kitdemo").replace("{{modality}}", "tabular") if path.suffix == ".tmpl" else text


def test_plugins_import_only_public_core_modules_and_never_each_other():
    allowed = public_modules()
    files = plugin_files()
    assert len([f for f in files if "plugins/selfsup-" in str(f[0])]) > 50
    assert any(f[0].suffix == ".tmpl" for f in files)
    found = []
    for path, package, strict in files:
        found += problems(read_code(path), package, allowed if strict else None, str(path.relative_to(REPO)))
    assert not found, "\n".join(found)


def test_the_import_check_catches_what_it_should():
    allowed = public_modules()
    source = '''
import selfsup
from selfsup.lib import info_nce
from selfsup.components import BuildContext
from selfsup_mine.x import y

def factory(options, context):
    from selfsup.engine.distributed import gather_with_grad
    from selfsup_text.tokenizers import load_tokenizer
    from selfsup import plugins
    return lazy("selfsup_vision.tasks.simclr:build")
'''
    found = problems(source, "selfsup_mine", allowed, "f.py")
    assert [p.split(": ", 1)[1] for p in found] == [
        "imports the private selfsup.engine.distributed",
        "imports another plugin's module selfsup_text.tokenizers",
        "imports selfsup.plugins, which is not a public module (docs/plugin-api.md)",
        "imports another plugin's module selfsup_vision.tasks.simclr",
    ], found
    template = "from selfsup_{{name}}.options import X\nfrom selfsup.splits import split_indices\n"
    path = Path("t.py.tmpl")
    text = template.replace("{{name}}", "kitdemo")
    assert problems(text, "selfsup_kitdemo", allowed, str(path)) == [f"{path}:2: imports the private selfsup.splits"]


# ------------------------------------------------------------------------------------------ the doc


def test_doc_declares_the_public_modules():
    assert public_modules() == ["selfsup", "selfsup.lib", "selfsup.components", "selfsup.options", "selfsup.registry",
                                "selfsup.testing", "selfsup.report_api", "selfsup.events"]
    assert set(documented_names()) == set(public_modules())


@pytest.mark.parametrize("module", ["selfsup", "selfsup.lib", "selfsup.components", "selfsup.options",
                                    "selfsup.registry", "selfsup.testing", "selfsup.report_api", "selfsup.events"])
def test_doc_lists_every_public_name_and_nothing_else(module):
    listed = documented_names()[module]
    imported = importlib.import_module(module)
    missing = sorted(public_names(module) - listed)
    unknown = sorted(n for n in listed if not hasattr(imported, n))
    assert not missing, f"public names of {module} missing from docs/plugin-api.md: {missing}"
    assert not unknown, f"docs/plugin-api.md lists names {module} does not have: {unknown}"


def test_every_lib_name_has_a_docstring_and_the_version_is_documented():
    import selfsup.lib as lib

    for name in lib.__all__:
        if name != "API_VERSION":
            doc = (getattr(lib, name).__doc__ or "").strip()
            assert doc and doc.splitlines()[0].strip(), f"selfsup.lib.{name} has no one-line docstring"
    assert re.fullmatch(r"\d+\.\d+", lib.API_VERSION)
    assert f"`selfsup.lib.API_VERSION` is **{lib.API_VERSION}**" in DOC.read_text()
    with pytest.raises(AttributeError):
        lib.not_a_name  # noqa: B018


def test_importing_the_public_modules_does_not_import_torch():
    code = ("import sys, selfsup, selfsup.lib, selfsup.components, selfsup.options, selfsup.registry, "
            "selfsup.report_api, selfsup.events\n"
            "from selfsup.lib import BadFiles, split_indices, ordered, frozen, batch_seed\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
