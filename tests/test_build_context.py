"""BuildContext.build: a composite component builds its parts by registry name, with the run's registry."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import TOY_RECIPE
from pydantic import Field

import selfsup
import selfsup.builtins
import selfsup_toy
from selfsup.components import BuildContext
from selfsup.options import Options
from selfsup.plugins import CORE_PLUGIN, PluginManager


class CountingOptions(Options):
    n: int = Field(gt=0)


class SubsetOptions(Options):
    of: str
    options: dict[str, Any] = {}
    k: int = Field(2, gt=0)


class Counting:
    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"value": i, "seed": self.seed}


class Subset:
    """The first ``k`` samples of a part built by name."""

    def __init__(self, part: Any, k: int):
        self.part, self.k = part, k

    def __len__(self) -> int:
        return self.k

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.part[i]


class Parts:
    """A test plugin: ``counting`` (a leaf) and ``subset_of`` (a composite built on any registered source)."""

    @selfsup.hookimpl
    def register_data_sources(self, register):
        register("counting", lambda o, c: Counting(o.n, c.seed), options=CountingOptions, summary="0, 1, 2, ...")
        register("subset_of", lambda o, c: Subset(c.build("data", o.of, o.options), o.k), options=SubsetOptions,
                 summary="The first k samples of another source.")


def registry():
    pm = PluginManager(load_entry_points=False)
    pm.register(selfsup.builtins, CORE_PLUGIN, distribution="selfsup")
    pm.register(selfsup_toy, "toy")
    pm.register(Parts(), "parts")
    assert not pm.errors, [e.message for e in pm.errors]
    return pm.registry


def test_build_returns_the_part_validated_with_the_same_seed_and_directory(tmp_path):
    context = BuildContext(name="val", seed=7, base_dir=tmp_path, _registry=registry())
    subset = context.build("data", "subset_of", {"of": "counting", "options": {"n": 5}, "k": 3})
    assert len(subset) == 3 and subset[2] == {"value": 2, "seed": 7}
    assert len(context.build("data_source", "counting", {"n": 4})) == 4  # registry kinds work too
    blobs = context.build("data", "blobs", {"n": 40, "dim": 4, "classes": 2})  # another plugin's source
    assert len(blobs) > 0 and "input" in blobs[0]


def test_build_errors_name_the_component_and_the_problem():
    context = BuildContext(name="train", _registry=registry())
    unknown = "train: no data source named 'countng' is registered.*did you mean 'counting'"
    with pytest.raises(ValueError, match=unknown):
        context.build("data", "countng", {"n": 3})
    invalid = "train: invalid options for the data source 'counting': "
    with pytest.raises(ValueError, match=invalid + "n: Input should be greater than 0"):
        context.build("data", "counting", {"n": 0})
    with pytest.raises(ValueError, match=invalid + "m: Extra inputs are not permitted"):
        context.build("data", "counting", {"n": 3, "m": 1})
    with pytest.raises(ValueError, match="context.build got kind 'datum'"):
        context.build("datum", "counting", {"n": 3})
    with pytest.raises(TypeError, match="seed"):
        context.build("data", "counting", {"n": 3}, seed=1)


def test_a_run_builds_parts_from_its_own_registry(tmp_path):
    """build_run hands factories a context holding the run's registry: ``counting`` is known only
    there (not to the installed plugins), and the composite still finds it."""
    from selfsup.engine.build import build_run
    from selfsup.recipe import load_recipe

    text = TOY_RECIPE.format(seed=3, output_dir=tmp_path / "run", dropout=0.0, batch_size=32, max_steps=10,
                             log_every=1, checkpoint_every=0, keep=1)
    path = tmp_path / "r.toml"
    parts = '[data.parts]\ntype = "subset_of"\noptions = { of = "counting", options = { n = 9 }, k = 4 }\n'
    path.write_text(f"{text}\n{parts}")
    reg = registry()
    loaded = load_recipe(str(path), reg)
    built = build_run(loaded.recipe, reg, base_dir=loaded.base_dir, source=loaded.source, options=loaded.options)
    assert len(built.data["parts"]) == 4 and built.data["parts"][3] == {"value": 3, "seed": 3}
    # a context made by hand builds from the installed plugins, which do not have "counting"
    with pytest.raises(ValueError, match="no data source named 'counting'"):
        BuildContext(name="parts").build("data", "counting", {"n": 9})
