"""pytest plugin (entry point ``pytest11: selfsup``): fixtures for plugin test suites.

* ``selfsup_registry``: the registry of installed plugins.
* ``selfsup_weight_caches``: empty weight caches for tests of pretrained-weights code: ``HF_HUB_CACHE``
  is ``<tmp_path>/hf`` and ``TORCH_HOME`` ``<tmp_path>/torch``, downloads are not allowed by the
  environment (``SELFSUP_ALLOW_DOWNLOADS`` and ``HF_HUB_OFFLINE`` unset); returns ``tmp_path``. Fill
  them with :func:`selfsup.testing.hub_cache_repo` and :func:`selfsup.testing.torch_hub_file`.
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
def selfsup_weight_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("SELFSUP_ALLOW_DOWNLOADS", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path


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
