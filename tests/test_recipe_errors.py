"""Bad recipes exit non-zero with one readable message naming the field, never a traceback."""

from __future__ import annotations

import pytest
from conftest import cli, write_toy_recipe

CASES = [
    # (description, text replacement (old, new) or --set, expected fragments)
    ("unknown task", ('type = "toy_infonce"', 'type = "toy_infonse"'),
     ["tasks.infonce.type", "unknown pretext task 'toy_infonse'", "did you mean 'toy_infonce'"]),
    ("task from an uninstalled distribution", ('type = "toy_infonce"', 'type = "apc"'),
     ["tasks.infonce.type", "'apc' is provided by selfsup-speech", "selfsup install selfsup-speech"]),
    ("wrong type", ("batch_size = 64", 'batch_size = "sixty-four"'),
     ["train.batch_size", "valid integer", "'sixty-four'"]),
    ("unknown field", ("lr = 3e-3", "lr = 3e-3\nlearning_rate = 0.1"),
     ["train.learning_rate", "unknown field"]),
    ("misspelled field", ("lr = 3e-3", "lr = 3e-3\nbatchsize = 8"),
     ["train.batchsize", "unknown field", "did you mean 'batch_size'"]),
    ("negative lr", ("lr = 3e-3", "lr = -3e-3"),
     ["train.lr", "greater than 0", "-0.003"]),
    ("unknown component option", ("temperature = 0.2 }", "temperature = 0.2, temprature = 1 }"),
     ["tasks.infonce.options.temprature", "unknown field", "did you mean 'temperature'"]),
    ("bad component option value", ("std = 0.4", "std = -0.4"),
     ["augmentations.views.options.std", "greater than 0"]),
    ("dangling reference", ('data = "train"\naugment', 'data = "trian"\naugment'),
     ["tasks.infonce.data", "no [data.trian]", "did you mean 'train'"]),
    ("invalid TOML", ("lr = 3e-3", "lr = = 3"), ["invalid TOML"]),
]


@pytest.mark.parametrize(("label", "edit", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_recipe_is_one_clear_error(tmp_path, label, edit, expected):
    path = write_toy_recipe(tmp_path)
    old, new = edit
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    for command in ("validate", "train"):
        # only the toy plugin: the core's messages must not depend on which plugins are installed
        res = cli(command, str(path), cwd=tmp_path, env={"SELFSUP_PLUGINS": "toy"})
        assert res.returncode == 2, (command, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr
        assert res.stderr.startswith("error: ")
        for fragment in expected:
            assert fragment in res.stderr, (fragment, res.stderr)
    assert not (tmp_path / "run").exists(), "an invalid recipe must not create a run"


def _tensor_file_recipe(directory, data_path):
    path = directory / "r.toml"
    path.write_text(TENSOR_FILE_RECIPE.replace("DATA_PATH", data_path))
    return path


TENSOR_FILE_RECIPE = """
[data.points]
type = "tensor_file"
options = { path = "DATA_PATH" }
[augmentations.views]
type = "noisy_views"
[backbones.mlp]
type = "mlp"
options = { in_dim = 4 }
[tasks.t]
type = "toy_infonce"
data = "points"
augment = ["views"]
backbone = "mlp"
[train]
max_steps = 1
"""


def test_missing_data_path_names_field(tmp_path):
    path = _tensor_file_recipe(tmp_path, "nowhere/points.npz")
    res = cli("validate", str(path), cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "data.points.options.path: file not found" in res.stderr
    assert str(tmp_path / "nowhere" / "points.npz") in res.stderr  # resolved against the recipe's folder


def test_overrides_go_through_validation(tmp_path):
    path = write_toy_recipe(tmp_path)
    res = cli("validate", str(path), "--set", "train.lr=-1", cwd=tmp_path)
    assert res.returncode == 2 and "train.lr" in res.stderr and "greater than 0" in res.stderr
    res = cli("validate", str(path), "--set", "train.lr=3e-4", "--set", "tasks.infonce.options.temperature=0.5")
    assert res.returncode == 0, res.stderr
    assert "adamw lr 0.0003" in res.stdout
    res = cli("validate", str(path), "--set", "train.optimizer=lars", "--set", "train.optimizer_options={momentum = 2}")
    assert res.returncode == 2 and "train.optimizer_options.momentum" in res.stderr


def test_several_problems_are_listed_together(tmp_path):
    path = write_toy_recipe(tmp_path)
    res = cli("validate", str(path), "--set", "train.lr=-1", "--set", "train.batch_size=0")
    assert res.returncode == 2
    assert "2 problems" in res.stderr and "train.lr" in res.stderr and "train.batch_size" in res.stderr


def test_unknown_recipe_name_suggests_shipped_one(tmp_path):
    res = cli("train", "toy-quickstrat", cwd=tmp_path)
    assert res.returncode == 2 and "did you mean 'toy-quickstart'" in res.stderr


def test_exactly_one_length(tmp_path):
    path = write_toy_recipe(tmp_path)
    res = cli("validate", str(path), "--set", "train.epochs=2")
    assert res.returncode == 2 and "train: set exactly one of max_steps and epochs" in res.stderr


def test_corrupt_data_file_is_one_line_error(tmp_path):
    (tmp_path / "points.npz").write_bytes(b"this is not a zip file")
    path = _tensor_file_recipe(tmp_path, "points.npz")
    res = cli("train", str(path), cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1
    assert "data.points: 'tensor_file' could not be built: ValueError: cannot read" in res.stderr


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["evaluators.knn.fit_data="], "evaluators.knn.fit_data: 'knn' needs fit_data"),
        (["train.optimizer=sgd", "train.optimizer_options={momentum = 0.0, nesterov = true}"],
         "nesterov needs momentum > 0"),
        (["data.train.options.n=40"], "tasks.infonce.data: its data source has 32 samples, fewer than one batch of 64"),
    ],
)
def test_startup_problems_are_one_line_errors(tmp_path, overrides, expected):
    path = write_toy_recipe(tmp_path)
    args = [a for o in overrides for a in ("--set", o)]
    res = cli("train", str(path), *args, cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert expected in res.stderr and str(path) in res.stderr


def test_resume_with_a_changed_model_is_a_clear_error(tmp_path):
    path = write_toy_recipe(tmp_path, max_steps=8)
    assert cli("train", str(path)).returncode == 0
    res = cli("train", str(path), "--resume", "--set", "backbones.mlp.options.out_dim=16", "--set",
              "train.max_steps=12")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "backbones.mlp.options.out_dim: changed since the checkpoint (32 -> 16)" in res.stderr
    assert "resume refused" in res.stderr
