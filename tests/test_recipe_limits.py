"""Validation refuses values that cannot train, be written or be printed: non-finite floats, huge
sizes, unsafe keys and names, non-UTF-8 files, deep nesting, and long values repeated in messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli, write_toy_recipe
from pydantic import BaseModel, Field

from selfsup import limits
from selfsup.plugins import PluginManager
from selfsup.recipe import RecipeError, load_recipe


@pytest.fixture(scope="module")
def registry():
    return PluginManager().registry


def problems(registry, path: Path, *overrides: str) -> dict[str, str]:
    with pytest.raises(RecipeError) as err:
        load_recipe(str(path), registry, list(overrides))
    return dict(err.value.problems)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["train.lr=inf"], "train.lr"),
        (["train.lr=nan"], "train.lr"),
        (["train.weight_decay=inf"], "train.weight_decay"),
        (["train.max_steps=", "train.epochs=inf"], "train.epochs"),
        (["tasks.infonce.weight=inf"], "tasks.infonce.weight"),
        (["train.grad_clip=inf"], "train.grad_clip"),
        (["tasks.infonce.options.temperature=inf"], "tasks.infonce.options.temperature"),
        (["train.optimizer_options={betas = [0.9, inf]}"], "train.optimizer_options.betas[1]"),
    ],
)
def test_non_finite_floats_are_refused_with_the_field(tmp_path, registry, overrides, field):
    found = problems(registry, write_toy_recipe(tmp_path), *overrides)
    assert field in found, found
    assert "finite" in found[field] or "greater than" in found[field], found


def test_1e999_in_the_file_is_infinite_and_refused(tmp_path, registry):
    path = write_toy_recipe(tmp_path)
    path.write_text(path.read_text().replace("lr = 3e-3", "lr = 1e999"))
    assert problems(registry, path) == {"train.lr": "must be a finite number (got inf)"}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("data.train.options.n=9223372036854775807", "data.train.options.n"),
        ("train.max_steps=9223372036854775807", "train.max_steps"),
        ("train.batch_size=4294967296", "train.batch_size"),
        ("evaluators.knn.options.k=9223372036854775807", "evaluators.knn.options.k"),
        ("seed=9223372036854775808", "seed"),
    ],
)
def test_huge_sizes_are_refused(tmp_path, registry, override, field):
    found = problems(registry, write_toy_recipe(tmp_path), override)
    assert field in found and ("at most" in found[field] or "less than or equal" in found[field]), found


def test_seeds_may_use_64_bits(tmp_path, registry):
    loaded = load_recipe(str(write_toy_recipe(tmp_path)), registry,
                         ["seed=9223372036854775807", "data.train.options.seed=9223372036854775807"])
    assert loaded.recipe.seed == 2**63 - 1


def test_fields_opt_out_of_the_limits():
    class Opts(BaseModel):
        ratio: float = 1.0
        bound: float = Field(1.0, json_schema_extra={"allow_nonfinite": True})
        count: int = 0
        big: int = Field(0, json_schema_extra={"int_max": 2**40})
        capped: int = Field(0, le=2**50)
        nested: list[dict[str, float]] = []

    assert limits.value_problems(Opts(bound=float("inf"), big=2**40, capped=2**50)) == []
    found = dict(limits.value_problems(Opts(ratio=float("nan"), count=-(2**40), big=2**41,
                                            nested=[{"a": 1.0, "b": float("-inf")}]), "x"))
    assert found == {
        "x.ratio": "must be a finite number (got nan)",
        "x.count": f"must be at least {-(2**31 - 1)} (got {-(2**40)})",
        "x.big": f"must be at most {2**40} (got {2**41})",
        "x.nested[0].b": "must be a finite number (got -inf)",
    }


@pytest.mark.parametrize("key", ["a.b", "/tmp/abs", "..", "a/b", "9lives", "with space", "ü", "x" * 65])
def test_component_keys_must_be_identifier_like(tmp_path, registry, key):
    overrides = [f'backbones={{ "{key}" = {{ type = "mlp", options = {{ in_dim = 16 }} }} }}',
                 f'tasks.infonce.backbone="{key}"']
    found = problems(registry, write_toy_recipe(tmp_path), *overrides)
    assert any(p.startswith("backbones") and ("valid key" in m or "at most 64" in m) for p, m in found.items()), found


def test_identifier_like_keys_with_dashes_pass(tmp_path, registry):
    overrides = ['backbones={ "enc-1_b" = { type = "mlp", options = { in_dim = 16 } } }',
                 'tasks.infonce.backbone="enc-1_b"']
    assert "enc-1_b" in load_recipe(str(write_toy_recipe(tmp_path)), registry, overrides).recipe.backbones


@pytest.mark.parametrize("name", ["../../x", "a/b", "a\\b", ".hidden", "..", "", "tab\there", "x" * 200])
def test_name_is_one_safe_folder_name(tmp_path, registry, name):
    path = write_toy_recipe(tmp_path)
    path.write_text(f"name = {json.dumps(name)}\n" + path.read_text())
    found = problems(registry, path)
    assert list(found) == ["name"], found


def test_output_dir_tilde_is_not_expanded_but_refused(tmp_path, registry):
    found = problems(registry, write_toy_recipe(tmp_path), 'output_dir="~/runs/x"')
    assert "'~' is not expanded" in found["output_dir"]
    loaded = load_recipe(str(write_toy_recipe(tmp_path)), registry, ['output_dir="runs/a~b"'])
    assert loaded.recipe.run_dir() == Path("runs/a~b")  # used as written


def test_non_utf8_file_is_one_clear_error(tmp_path):
    path = write_toy_recipe(tmp_path)
    path.write_bytes(path.read_bytes().replace(b"seed = 0", b"seed = 0  # caf\xe9"))
    offset = path.read_bytes().index(b"\xe9")
    res = cli("validate", str(path))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert f"{path}: not UTF-8 text: byte 0xe9 at offset {offset}" in res.stderr


def test_utf8_byte_order_mark_is_accepted(tmp_path, registry):
    path = write_toy_recipe(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_recipe(str(path), registry).recipe.seed == 0


@pytest.mark.parametrize("kind", ["array", "inline table"])
def test_5000_deep_nesting_is_a_clean_error(tmp_path, kind):
    deep = "[" * 5000 + "]" * 5000 if kind == "array" else "{a=" * 5000 + "1" + "}" * 5000
    path = write_toy_recipe(tmp_path)
    path.write_text(f"x = {deep}\n" + path.read_text())
    res = cli("validate", str(path))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "nest more than 32 levels deep (line 1)" in res.stderr


def test_deep_nesting_through_set_is_a_clean_error(tmp_path, registry):
    path = write_toy_recipe(tmp_path)
    with pytest.raises(RecipeError, match="nest more than 32 levels"):
        load_recipe(str(path), registry, ["data.train.options.n=" + "[" * 5000 + "]" * 5000])
    with pytest.raises(RecipeError, match="nests more than 32 levels"):
        load_recipe(str(path), registry, [".".join(["a"] * 5000) + "=1"])


def test_a_nested_but_shallow_value_is_only_a_type_error(tmp_path, registry):
    found = problems(registry, write_toy_recipe(tmp_path), "description=" + "[" * 20 + "]" * 20)
    assert list(found) == ["description"]


def test_strings_in_toml_do_not_count_as_nesting():
    text = 'a = "' + "[" * 100 + '"\nb = \'\'\'\n' + "{" * 100 + "\n'''\n# " + "[" * 100 + "\nc = [[1], [2]]\n"
    assert limits.toml_depth_problem(text) is None
    assert limits.toml_depth_problem("x = " + "[" * 33 + "]" * 33) == 1


def test_long_values_are_shortened_in_messages(tmp_path):
    huge = "x" * 100_000
    path = write_toy_recipe(tmp_path)
    text = path.read_text().replace('type = "toy_infonce"', f'type = "{huge}"').replace("lr = 3e-3", f'lr = "{huge}"')
    path.write_text(text)
    res = cli("validate", str(path))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr) < 2000 and "x" * 300 not in res.stderr, len(res.stderr)
    assert "train.lr" in res.stderr
    res = cli("validate", str(write_toy_recipe(tmp_path)), "--set", f"tasks.infonce.type={huge}")
    assert res.returncode == 2 and len(res.stderr) < 2000 and "tasks.infonce.type: unknown pretext task" in res.stderr


def test_a_validator_raising_oserror_is_reported_not_a_traceback(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'[data.points]\ntype = "tensor_file"\noptions = {{ path = "{"p" * 5000}" }}\n'
        '[backbones.mlp]\ntype = "mlp"\noptions = { in_dim = 4 }\n'
        '[tasks.t]\ntype = "toy_infonce"\ndata = "points"\nbackbone = "mlp"\n[train]\nmax_steps = 1\n'
    )
    res = cli("validate", str(recipe))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "data.points.options.path: cannot access" in res.stderr and len(res.stderr) < 2000


def test_limits_reach_plugin_options(registry):
    # the vision and text plugins' own bounds: a negative timm depth, an empty tokenizer
    if registry.get("backbone", "timm") is None or registry.get("data_source", "text_files") is None:
        pytest.skip("needs selfsup-vision and selfsup-text")
    with pytest.raises(RecipeError) as err:
        load_recipe("mae-digits", registry, ["backbones.vit.options.kwargs.depth=-2"])
    assert err.value.problems == [("backbones.vit.options.kwargs", "depth: a size must be positive (got -2)")]
    with pytest.raises(RecipeError) as err:
        load_recipe("mlm-quickstart", registry, ['data.train.options.tokenizer=""'])
    assert [p for p, _ in err.value.problems] == ["data.train.options.tokenizer"]
