"""Names and values made acceptable to MLflow: checked against a real MLflow store, not only
against the rules the helpers were written from."""

from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from selfsup_mlflow.keys import (
    MAX_KEY,
    MAX_PARAM_VALUE,
    chunks,
    flatten,
    numeric,
    recipe_params,
    sanitise,
    unique_names,
)

AWKWARD = ["knn/accuracy", "loss:ce", "a//b", "/lead", "trail/", "./x", "x/..", "..", "", "é unicode", "tab\there",
           "x" * 300, "a/" + "b" * 260, "bad_data/train/skipped", "q?uery=1&b", "brackets[0]", "wörd/./ok"]


@pytest.mark.parametrize("name, expected", [
    ("knn/accuracy", "knn/accuracy"),
    ("loss/classify", "loss/classify"),
    ("lr", "lr"),
    ("tasks.simclr.options.temperature", "tasks.simclr.options.temperature"),
    ("loss:ce//x/", "loss_ce/x"),
    ("/abs/./path/..", "abs/_/path/__"),
    ("", "_"),
    ("a b-c_d.e", "a b-c_d.e"),
])
def test_sanitise_keeps_valid_names_and_repairs_others(name, expected):
    assert sanitise(name) == expected


def test_every_sanitised_name_is_accepted_by_mlflow(tmp_path, new_store):
    client = MlflowClient(new_store(tmp_path / "mlflow.db"))
    run_id = client.create_run(client.create_experiment("names")).info.run_id
    names = unique_names((n, float(i)) for i, n in enumerate(AWKWARD))
    assert len(names) == len(AWKWARD) and all(len(n) <= MAX_KEY for n in names)
    client.log_batch(run_id, metrics=[Metric(n, v, 0, 1) for n, v in names.items()],
                     params=[Param(n, "v") for n in names])
    stored = client.get_run(run_id).data
    assert stored.metrics == names
    assert set(stored.params) == set(names)


def test_names_that_sanitise_alike_get_suffixes():
    assert unique_names([("a:b", 1), ("a_b", 2), ("a?b", 3)]) == {"a_b": 1, "a_b_2": 2, "a_b_3": 3}
    long = unique_names([("x" * 300, 1), ("x" * 301, 2)])
    assert [len(k) for k in long] == [MAX_KEY, MAX_KEY] and list(long)[1].endswith("_2")


def test_the_recipe_flattens_to_dotted_params_within_the_limits():
    recipe = {"seed": 0, "name": None, "train": {"lr": 0.002, "betas": [0.9, 0.99], "compile": False},
              "tasks": {"t:1": {"options": {}}}, "description": "d" * 7000}
    assert flatten(recipe)["train.lr"] == 0.002 and flatten(recipe)["tasks.t:1.options"] == {}
    params = recipe_params(recipe)
    assert params == {"seed": "0", "name": "null", "train.lr": "0.002", "train.betas": "[0.9, 0.99]",
                      "train.compile": "false", "tasks.t_1.options": "{}", "description": "d" * MAX_PARAM_VALUE}


def test_only_numbers_become_metrics():
    values = numeric({"loss": 1, "acc": 0.5, "ok": True, "note": "x", "none": None, "bad": float("nan")})
    assert list(values) == ["loss", "acc", "bad"]
    assert values["loss"] == 1.0 and isinstance(values["loss"], float) and math.isnan(values["bad"])


def test_chunks_keep_every_item_in_batches_of_the_limit():
    parts = list(chunks(list(range(250)), 100))
    assert [len(p) for p in parts] == [100, 100, 50] and [x for p in parts for x in p] == list(range(250))
