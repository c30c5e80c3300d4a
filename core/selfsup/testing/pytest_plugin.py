"""pytest plugin (entry point ``pytest11: selfsup``): fixtures for plugin test suites.

* ``selfsup_registry``: the registry of installed plugins.
* ``selfsup_run_recipe``: a function that writes a recipe dict as TOML-equivalent data, validates
  it, trains it in ``tmp_path`` and returns the :class:`selfsup.engine.loop.TrainResult`.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def selfsup_registry():
    from selfsup.plugins import get_plugin_manager

    return get_plugin_manager().registry


@pytest.fixture
def selfsup_run_recipe(tmp_path):
    def run(recipe: dict[str, Any], **kwargs: Any):
        from selfsup.engine.loop import train
        from selfsup.plugins import get_plugin_manager
        from selfsup.recipe import LoadedRecipe, check_components, parse_recipe

        pm = get_plugin_manager()
        data = {"output_dir": str(tmp_path / "run"), **recipe}
        parsed = parse_recipe(data, "test recipe", default_name="test")
        check_components(parsed, pm.registry, "test recipe", tmp_path)
        loaded = LoadedRecipe(recipe=parsed, source="test recipe", base_dir=tmp_path)
        return train(loaded, pm, progress=False, **kwargs)

    return run
