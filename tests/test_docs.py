"""Every hook in hookspecs.py is documented in docs/plugin-hooks.md."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from selfsup import hookspecs

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def hook_names() -> list[str]:
    return [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "selfsup_spec")]


def test_every_hook_has_a_section():
    text = (DOCS / "plugin-hooks.md").read_text()
    headings = set(re.findall(r"^##+ `(\w+)`", text, flags=re.M))
    names = hook_names()
    assert len(names) >= 12
    missing = [n for n in names if n not in headings]
    assert not missing, f"hooks missing from docs/plugin-hooks.md: {missing}"


def test_every_hook_has_a_docstring():
    for name in hook_names():
        assert (getattr(hookspecs, name).__doc__ or "").strip(), name


def test_every_recipe_field_is_documented():
    from selfsup import recipe

    text = (DOCS / "recipes.md").read_text()
    for model in (recipe.Recipe, recipe.TaskSpec, recipe.EvaluatorSpec, recipe.TrainSpec):
        for field in model.model_fields:
            assert f"`{field}`" in text, f"{model.__name__}.{field} is not in docs/recipes.md"


def test_relative_links_in_readme_and_docs_point_at_files():

    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("plugins/*/README.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken
