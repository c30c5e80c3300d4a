"""The data contract (selfsup.contract): the spec language, registration, recipe validation of the
keys that flow between components, and the conformance checks of the declarations."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import selfsup
from selfsup.contract import (
    ContractError,
    Keys,
    check_augmentation,
    check_contract,
    check_sample,
)
from selfsup.plugins import PluginManager, PluginWarning, get_plugin_manager
from selfsup.recipe import (
    RecipeError,
    apply_overrides,
    load_recipe,
    parse_recipe,
    parse_toml,
    resolve_source,
)
from selfsup.testing import (
    AugmentationConformance,
    BackboneConformance,
    DataSourceConformance,
    EvaluatorConformance,
    TaskConformance,
)

FIRST_PARTY = {"selfsup", "selfsup-vision", "selfsup-text", "selfsup-speech", "selfsup-multimodal", "selfsup-toy"}


# ------------------------------------------------------------------------------------------ spec language


def test_spec_resolves_option_references_conditions_and_optional_keys():
    keys = Keys.parse({
        "image": "float32[1,{size|8},{size|8}]", "label?": "int64[]", "document_ids if window": "int64[{window+1}]",
        "{key}": "float[*,C]", "{out_key|key}": "int64[_]", "picked if column": "int64[]", "inner": "int64[{t.n}]",
    })
    opts = SimpleNamespace(size=None, window=3, key="x", out_key=None, column=0, t={"n": 5})
    assert [str(k) for k in keys.resolve(opts)] == [
        "image: float32[1,8,8]", "label?: int64[]", "document_ids: int64[4]", "x: float[*,C]", "x: int64[_]",
        "picked: int64[]", "inner: int64[5]"]  # column = 0 is set; {t.n} reads a table option
    opts = SimpleNamespace(size=16, window=None, key=None, out_key=None, column=None, t={})
    assert [str(k) for k in keys.resolve(opts)] == ["image: float32[1,16,16]", "label?: int64[]", "inner: int64[_]"]
    assert keys.as_dict()["document_ids if window"] == "int64[{window+1}]"


@pytest.mark.parametrize("raw, message", [
    ({"x": "float33[3]"}, "unknown dtype 'float33'"),
    ({"x": "float32[C,*]"}, "may only come first"),
    ({"x": "float32[C,h-1]"}, "dim 'h-1'"),
    ({"x y": "int64"}, "is not a key"),
    ({"x": "-"}, "only for an augmentation's produces"),
    ({"x": "str[3]"}, "a str has no shape"),
    ({"x": "int64[{nope}]"}, "option 'nope'"),
    ({"x if nope": "int64"}, "option 'nope'"),
])
def test_spec_errors_are_reported(raw, message):
    from pydantic import BaseModel

    class Opts(BaseModel):
        size: int = 3

    with pytest.raises(ContractError, match=message):
        Keys.parse(raw, options=Opts)


def test_sample_and_augmentation_checks_find_wrong_keys_dtypes_and_shapes():
    import torch

    keys = Keys.parse({"image": "float32[C,H,H]", "label": "int64[]"})
    good = {"image": torch.zeros(1, 8, 8), "label": 3, "index": 0}
    assert check_sample(keys, None, good, exhaustive=True) == []
    problems = check_sample(keys, None, {"image": torch.zeros(1, 8, 7, dtype=torch.float64), "note": "x"},
                            exhaustive=True)
    assert any("dtype float64, not float32" in p for p in problems)
    assert any("missing 'label'" in p for p in problems) and any("'note' (str) is not declared" in p for p in problems)
    assert "shape [1,8,7] does not fit [C,H,H]" in check_sample(keys, None, {**good, "image": torch.zeros(1, 8, 7)})[0]

    consumes, produces = Keys.parse({"image": "float32[C,H,W]"}), Keys.parse({"views": "float32[2,C,4,4]"})
    before = {"image": torch.zeros(3, 8, 8), "label": 1}
    assert check_augmentation(consumes, produces, None, before, {**before, "views": torch.zeros(2, 3, 4, 4)}) == []
    bad = {"image": torch.zeros(3, 6, 6), "views": torch.zeros(2, 1, 4, 4), "extra": torch.zeros(2)}
    problems = check_augmentation(consumes, produces, None, before, bad)
    assert any("'image' changed from float32[3,8,8] to float32[3,6,6]" in p for p in problems)
    assert any("output 'views'" in p and "[2,1,4,4] does not fit [2,3,4,4]" in p for p in problems)  # C = 3 from image
    assert any("'extra'" in p and "not declared in produces" in p for p in problems)
    assert any("'label' was removed" in p for p in problems)


# ------------------------------------------------------------------------------------------ registration


class _BadDeclarations:
    @selfsup.hookimpl
    def register_backbones(self, register):
        register("fine", lambda o, c: None, consumes={"input": "float32[D]"})
        register("produces_keys", lambda o, c: None, produces={"input": "float32[D]"})

    @selfsup.hookimpl
    def register_data_sources(self, register):
        register("typo", lambda o, c: None, produces={"image": "flaot32[C,H,W]"})


def test_registration_rejects_bad_declarations_naming_the_component():
    pm = PluginManager(load_entry_points=False)
    pm.register(_BadDeclarations(), "bad")
    with pytest.warns(PluginWarning):
        registry = pm.registry
    messages = [e.message for e in pm.errors]
    assert registry.get("backbone", "fine").consumes.as_dict() == {"input": "float32[D]"}
    assert any("backbone 'produces_keys': produces= is not for backbones (they declare only consumes)" in m
               for m in messages), messages
    assert any("data source 'typo': produces: unknown dtype 'flaot32'" in m for m in messages), messages


def test_every_first_party_component_declares_its_keys():
    registry = get_plugin_manager().registry
    undeclared = [f"{c.kind} {c.name}" for comps in registry.components.values() for c in comps.values()
                  if c.distribution in FIRST_PARTY and not c.declared]
    assert not undeclared, f"first-party components without produces=/consumes=: {undeclared}"


# ------------------------------------------------------------------------------------------ recipes


def test_every_shipped_recipe_validates_with_its_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs/mlm-quickstart/export/encoder").mkdir(parents=True)  # nsp/simcse start from mlm's export
    registry = get_plugin_manager().registry
    names = registry.names("recipe")
    assert {"simclr-digits", "toy-quickstart", "multimodal-quickstart", "hubert-quickstart", "mlm-quickstart"} <= {
        *names}
    for name in names:
        load_recipe(name, registry)  # raises RecipeError naming the problem


def _check(name: str, *overrides: str) -> list[tuple[str, str]]:
    registry = get_plugin_manager().registry
    text, label, _, default = resolve_source(name, registry)
    recipe = parse_recipe(apply_overrides(parse_toml(text, label), list(overrides)), label, default)
    return check_contract(recipe, registry)


def test_a_task_without_its_augmentation_is_reported_against_the_recipe_fields(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeError) as err:
        load_recipe("toy-quickstart", get_plugin_manager().registry, ["tasks.infonce.augment=[]"])
    assert err.value.problems == [(
        "tasks.infonce",
        "pretext task 'infonce' (toy_infonce) reads 'views: float32[V,D]' but data 'train' (blobs) through "
        "augmentations [] yields input, label",
    )]


def test_named_dims_and_option_values_unify_along_the_flow():
    # the backbone reads 3 channels; digits give 1, through multi_view's views and simclr's feeds
    problems = dict(_check("simclr-digits", "backbones.cnn.options.in_channels=3"))
    assert problems["tasks.simclr"] == (
        "backbone 'cnn' (small_cnn) reads 'image: float32[3,H,W]' but pretext task 'simclr' (simclr) feeds it "
        "'image: float32[1,8,8]' (shape [1,8,8] does not fit [3,H,W])")
    knn = problems["evaluators.knn"]
    assert "fit_data 'train' (digits) through augmentations [] yields 'image: float32[1,8,8]'" in knn
    assert _check("simclr-digits", "augmentations.views.options.views=3") == [(
        "tasks.simclr", "pretext task 'simclr' (simclr) reads 'views: float32[2,C,H,W]' but data 'train' (digits) "
        "through augmentations ['views'] yields 'views: float32[3,1,8,8]' (shape [3,1,8,8] does not fit [2,C,H,W])")]
    # a ViT sized for 32 px after a 16 px crop; a shared trunk's adapter sized for 16 px digits
    assert any("reads 'image: float32[1,32,32]'" in m and "augmentations ['crop'] yields 'image: float32[1,16,16]'" in m
               for _, m in _check("mae-digits", "backbones.vit.options.img_size=32"))
    assert ("tasks.simclr", "backbone 'image' (trunk_image) reads 'image: float32[1,16,16]' but pretext task 'simclr' "
            "(simclr) feeds it 'image: float32[1,8,8]' (shape [1,8,8] does not fit [1,16,16])") in _check(
        "multimodal-quickstart", "backbones.image.options.image_size=16")


def test_conditional_keys_and_option_named_keys_are_checked():
    # nsp needs sentence starts: the source has them only with sentences = true
    problems = _check("nsp-quickstart", "data.train.options.sentences=false")
    assert any(p == "tasks.nsp" and "reads 'sentence_starts: int64[S]'" in m for p, m in problems), problems
    # kNN's raw baseline reads the key its option names
    assert _check("toy-quickstart", "evaluators.knn.options.raw_baseline='views'")[0] == (
        "evaluators.knn", "evaluator 'knn' (knn) reads 'views: any[*]' but data 'val' (blobs) through augmentations [] "
        "yields input, label")


def test_undeclared_components_and_unresolved_names_are_not_contract_checked(tmp_path, write_plugin_dir):
    # a third-party source that declares nothing: the recipe validates as before
    pm = PluginManager(plugins_dirs=[write_plugin_dir])
    text, label, _, default = resolve_source("toy-quickstart", pm.registry)
    recipe = parse_recipe(apply_overrides(parse_toml(text, label), ["data.train.type='plain_vectors'"]), label, default)
    assert check_contract(recipe, pm.registry) == []
    # a misspelt type is reported once, by name, with no key noise
    with pytest.raises(RecipeError) as err:
        load_recipe("toy-quickstart", pm.registry, ["backbones.mlp.type='mlpp'"])
    assert [p for p, _ in err.value.problems] == ["backbones.mlp.type"]


@pytest.fixture
def write_plugin_dir(tmp_path):
    from conftest import write_plugin

    write_plugin(tmp_path / "plugins", "plainvec", """
        import selfsup

        @selfsup.hookimpl
        def register_data_sources(register):
            register("plain_vectors", lambda options, context: None, summary="Undeclared vectors.")
        """)
    return tmp_path / "plugins"


# ------------------------------------------------------------------------------------------ conformance


class _Vectors:
    def __init__(self, note: bool = False, label: bool = True):
        self.note, self.label = note, label

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        import torch

        sample = {"input": torch.full((4,), float(i)), **({"label": i % 2} if self.label else {})}
        return {**sample, "note": "x"} if self.note else sample


class _Shift:
    def __call__(self, sample, generator):
        import torch

        return {**sample, "shifted": sample["input"] + torch.rand((), generator=generator)}


def _reads_label_backbone(options, context):
    import torch

    class ReadsLabel(torch.nn.Module):
        output_dim = 2

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 2)

        def embed(self, batch):
            return self.lin(batch["input"]) + batch["label"].float()[:, None]  # reads an undeclared key

    return ReadsLabel()


class _WrongDeclarations:
    """Components whose declarations do not match what they do."""

    @selfsup.hookimpl
    def register_data_sources(self, register):
        register("vectors_wrong", lambda o, c: _Vectors(note=True), summary="Declares 3 floats, yields 4 and a note.",
                 produces={"input": "float32[3]", "label": "int64[]"})
        register("vectors_right", lambda o, c: _Vectors(), summary="Declares what it yields.",
                 produces={"input": "float32[4]", "label": "int64[]"})
        register("vectors_no_label", lambda o, c: _Vectors(label=False), summary="Has no label.",
                 produces={"input": "float32[4]"})

    @selfsup.hookimpl
    def register_augmentations(self, register):
        register("shift", lambda o, c: _Shift(), consumes={"input": "float32[D]"})

    @selfsup.hookimpl
    def register_backbones(self, register):
        register("reads_label", _reads_label_backbone, consumes={"input": "float32[D]"})


def test_conformance_fails_when_declared_keys_do_not_match():
    wrong = [_WrongDeclarations()]

    class WrongSource(DataSourceConformance):
        plugins = wrong
        data = ("vectors_wrong", {})

    class RightSource(DataSourceConformance):
        plugins = wrong
        data = ("vectors_right", {})

    class UndeclaredOutput(AugmentationConformance):
        plugins = wrong
        augmentation = ("shift", {})
        data = ("vectors_right", {})

    class ReadsUndeclared(BackboneConformance):
        plugins = wrong
        backbone = ("reads_label", {})
        data = ("vectors_right", {})

    class KNNWithoutLabels(EvaluatorConformance):
        plugins = wrong
        evaluator = "knn"
        data = fit_data = ("vectors_no_label", {})
        backbone = ("mlp", {"in_dim": 4})

    with pytest.raises(pytest.fail.Exception) as failed:
        WrongSource().test_samples_match_declared_keys()
    assert "'input' is float32[4], declared 'input: float32[3]'" in str(failed.value)
    assert "'note' (str) is not declared" in str(failed.value)
    RightSource().test_samples_match_declared_keys()
    with pytest.raises(pytest.fail.Exception, match="output key 'shifted' .* is not declared in produces"):
        UndeclaredOutput().test_output_matches_declared_keys()
    ReadsUndeclared().test_embed_shape_and_gradients()  # works on whole samples...
    with pytest.raises(KeyError, match="label"):
        ReadsUndeclared().test_embed_reads_only_declared_keys()  # ...not on the keys it declares
    with pytest.raises(pytest.fail.Exception, match="missing 'label'"):
        KNNWithoutLabels().test_data_gives_declared_keys()


def test_task_conformance_runs_the_task_on_its_declared_keys_only():
    import selfsup_toy

    class Toy(TaskConformance):
        plugins = [selfsup_toy]
        task = "toy_infonce"
        data = ("blobs", {"n": 16, "dim": 4})
        augment = [("noisy_views", {})]
        backbone = ("mlp", {"in_dim": 4, "hidden_dims": [8], "out_dim": 4})

    Toy().test_runs_on_declared_keys_only()

    class WrongViews(Toy):
        augment = [("noisy_views", {"views": 3})]

    WrongViews().test_runs_on_declared_keys_only()  # V is a name: any number of views fits [V,D]

    class NoViews(Toy):
        augment = []

    with pytest.raises(pytest.fail.Exception, match="missing 'views'"):
        NoViews().test_runs_on_declared_keys_only()
