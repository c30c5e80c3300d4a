"""End-to-end training: learning happens, metrics/checkpoints are written, precision and policies."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import cli, write_toy_recipe

from selfsup.engine import checkpoint as ckpt
from selfsup.engine.build import build_run
from selfsup.engine.evaluation import run_evaluators
from selfsup.engine.loop import tasks_for_step, train
from selfsup.engine.metrics import read_metrics
from selfsup.plugins import get_plugin_manager
from selfsup.recipe import load_recipe


def _train(path, *overrides, **kw):
    pm = get_plugin_manager()
    return train(load_recipe(str(path), pm.registry, overrides), pm, progress=False, **kw)


def test_toy_training_learns_and_beats_random_init(tmp_path):
    path = write_toy_recipe(tmp_path, max_steps=150, log_every=10)
    loaded = load_recipe(str(path), get_plugin_manager().registry)
    untrained = build_run(loaded.recipe, get_plugin_manager().registry, base_dir=tmp_path, source="t")
    random_init = run_evaluators(loaded.recipe, untrained, names=["knn"], step=0, device=torch.device("cpu"),
                                 run_dir=tmp_path)

    result = _train(path)
    assert result.status == "completed" and result.step == 150
    losses = [r["loss"] for r in read_metrics(result.run_dir) if r["kind"] == "train"]
    assert len(losses) == 15
    assert losses[-1] < 0.6 * losses[0], losses
    # stated margin: +10 accuracy points over the same backbone at random init, on held-out points
    assert result.evaluation["knn/accuracy"] > random_init["knn/accuracy"] + 0.10, (result.evaluation, random_init)


def test_outputs_of_a_run(tmp_path):
    result = _train(write_toy_recipe(tmp_path, max_steps=20, checkpoint_every=5, keep=2))
    run = result.run_dir
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-00000015", "step-00000020"]  # keep-last-2
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-00000020"
    assert not list((run / "checkpoints").glob(".tmp-*"))
    records = read_metrics(run)
    train_records = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train_records] == [5, 10, 15, 20]
    assert {"loss", "loss/infonce", "infonce/accuracy", "lr", "samples_per_s"} <= set(train_records[0])
    assert [r for r in records if r["kind"] == "eval"][-1]["knn/accuracy"] == result.evaluation["knn/accuracy"]
    saved = json.loads((run / "recipe.json").read_text())
    assert saved["recipe"]["train"]["max_steps"] == 20


def test_eval_command_reproduces_final_evaluation(tmp_path):
    result = _train(write_toy_recipe(tmp_path, max_steps=20))
    res = cli("eval", str(result.run_dir), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["knn/accuracy"] == pytest.approx(result.evaluation["knn/accuracy"])
    res = cli("eval", str(result.run_dir), "--evaluator", "nope")
    assert res.returncode == 2 and "no evaluator named 'nope'" in res.stderr


def test_eval_baseline_puts_random_init_beside_the_checkpoint(tmp_path):
    result = _train(write_toy_recipe(tmp_path, max_steps=20))
    both = json.loads(cli("eval", str(result.run_dir), "--baseline", "--json").stdout)
    alone = json.loads(cli("eval", str(result.run_dir), "--random-init", "--json").stdout)
    assert both["trained"]["knn/accuracy"] == pytest.approx(result.evaluation["knn/accuracy"])
    assert both["random_init"] == pytest.approx(alone)
    table = cli("eval", str(result.run_dir), "--baseline")
    assert table.returncode == 0 and "random init" in table.stdout and "knn/accuracy" in table.stdout
    assert cli("eval", str(result.run_dir), "--baseline", "--random-init").returncode == 2


def test_backbones_with_export_are_exported_at_the_end(tmp_path, monkeypatch):
    from selfsup.builtins.mlp import MLP

    def export(self, directory):
        directory.mkdir(parents=True)
        (directory / "weights.pt").write_bytes(b"saved")

    monkeypatch.setattr(MLP, "export", export, raising=False)
    result = _train(write_toy_recipe(tmp_path, max_steps=20))
    assert (result.run_dir / "export" / "mlp" / "weights.pt").read_bytes() == b"saved"


def test_fresh_run_refuses_to_overwrite_checkpoints(tmp_path):
    path = write_toy_recipe(tmp_path, max_steps=8)
    assert cli("train", str(path), cwd=tmp_path).returncode == 0
    res = cli("train", str(path), cwd=tmp_path)
    assert res.returncode == 2 and "--resume" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cpu(tmp_path, precision):
    result = _train(write_toy_recipe(tmp_path, max_steps=30), f"train.precision={precision}")
    losses = [r["loss"] for r in read_metrics(result.run_dir) if r["kind"] == "train"]
    assert result.status == "completed" and losses[-1] < losses[0]


def test_epochs_set_the_number_of_steps(tmp_path):
    # 409 training points (80% of 512), batch 64 -> 6 batches per epoch; 2 epochs = 12 steps
    result = _train(write_toy_recipe(tmp_path), "train.max_steps=", "train.epochs=2", "train.warmup_steps=0")
    assert result.step == 12


def test_grad_accumulation_and_clipping(tmp_path):
    result = _train(write_toy_recipe(tmp_path, max_steps=10), "train.grad_accum=2", "train.grad_clip=0.5")
    records = [r for r in read_metrics(result.run_dir) if r["kind"] == "train"]
    assert result.status == "completed" and "grad_norm" in records[0]
    res = cli("train", str(write_toy_recipe(tmp_path, "r2.toml")), "--set", "train.grad_accum=3", cwd=tmp_path)
    assert res.returncode == 2 and "train.batch_size: 64 is not divisible" in res.stderr


def _two_task_recipe(tmp_path, policy):
    path = write_toy_recipe(tmp_path, max_steps=20, log_every=1)
    text = path.read_text().replace(
        "[evaluators.knn]",
        '[tasks.second]\ntype = "toy_infonce"\ndata = "val"\naugment = ["views"]\nbackbone = "mlp"\nweight = '
        '3.0\n\n[evaluators.knn]',
    )
    path.write_text(text + f'task_policy = "{policy}"\n')
    return path


def test_multi_task_sum_policy_weights_losses(tmp_path):
    result = _train(_two_task_recipe(tmp_path, "sum"))
    first = [r for r in read_metrics(result.run_dir) if r["kind"] == "train"][0]
    assert first["loss"] == pytest.approx(first["loss/infonce"] + 3.0 * first["loss/second"], rel=1e-5)


def test_multi_task_sample_policy_draws_by_weight(tmp_path):
    loaded = load_recipe(str(_two_task_recipe(tmp_path, "sample")), get_plugin_manager().registry)
    picks = [tasks_for_step(loaded.recipe, s)[0] for s in range(2000)]
    assert picks == [tasks_for_step(loaded.recipe, s)[0] for s in range(2000)]  # seeded
    assert 0.70 < picks.count("second") / 2000 < 0.80  # weight 3 of 4
    (tmp_path / "b").mkdir()
    result = _train(_two_task_recipe(tmp_path / "b", "sample"))
    records = [r for r in read_metrics(result.run_dir) if r["kind"] == "train"]
    assert all(("loss/infonce" in r) != ("loss/second" in r) for r in records)


def test_round_robin_policy_alternates(tmp_path):
    loaded = load_recipe(str(_two_task_recipe(tmp_path, "round_robin")), get_plugin_manager().registry)
    assert [tasks_for_step(loaded.recipe, s)[0] for s in range(4)] == ["infonce", "second"] * 2


def test_loader_workers_do_not_change_the_run(tmp_path):
    a = _train(write_toy_recipe(tmp_path, "a.toml", output_dir=str(tmp_path / "a"), max_steps=10, log_every=1))
    b = _train(write_toy_recipe(tmp_path, "b.toml", output_dir=str(tmp_path / "b"), max_steps=10, log_every=1),
               "train.workers=2")
    la = [r["loss"] for r in read_metrics(a.run_dir) if r["kind"] == "train"]
    lb = [r["loss"] for r in read_metrics(b.run_dir) if r["kind"] == "train"]
    assert la == lb


def test_tensorboard_events_are_written(tmp_path):
    result = _train(write_toy_recipe(tmp_path, max_steps=10), "train.tensorboard=true")
    events = list((result.run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(result.run_dir / "tensorboard"))
    acc.Reload()
    assert {"loss", "loss/infonce", "eval/knn/accuracy"} <= set(acc.Tags()["scalars"])


def test_group_by_length_needs_a_source_with_lengths(tmp_path):
    res = cli("train", str(write_toy_recipe(tmp_path, max_steps=20)), "--set", "tasks.infonce.group_by_length=true",
              cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "tasks.infonce.group_by_length" in res.stderr and "lengths()" in res.stderr, res.stderr


def test_environment_is_recorded_beside_the_recipe(tmp_path):
    run = _train(write_toy_recipe(tmp_path, max_steps=6)).run_dir
    env = json.loads((run / "environment.json").read_text())
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["world_size"] == 1
    assert env["plugins"]["core"]["distribution"] == "selfsup"


def _stopper():
    import selfsup

    class Stopper:
        ended: list = []

        @selfsup.hookimpl
        def on_evaluation_end(self, run, step, metrics):
            run.request_stop(f"pruned at step {step} (knn/accuracy {metrics['knn/accuracy']:.2f})")

        @selfsup.hookimpl
        def on_train_end(self, run, status, metrics):
            self.ended.append((status, run.stop_reason))

    return Stopper()


def test_a_plugin_can_stop_a_run_after_an_evaluation(tmp_path):
    path = write_toy_recipe(tmp_path, max_steps=40)
    text = path.read_text().replace("[evaluators.knn]", "[evaluators.knn]\nevery = 10")
    path.write_text(text)
    pm = get_plugin_manager()
    stopper = _stopper()
    pm.register(stopper, "stopper")
    result = train(load_recipe(str(path), pm.registry), pm, progress=False)
    assert result.status == "stopped" and result.step == 10
    assert len(stopper.ended) == 1 and stopper.ended[0][0] == "stopped"
    assert stopper.ended[0][1].startswith("pruned at step 10 (knn/accuracy ")
    assert [p.name for p in ckpt.list_checkpoints(result.run_dir)] == ["step-00000010"]
    evals = [r["step"] for r in read_metrics(result.run_dir) if r["kind"] == "eval"]
    assert evals == [10]  # no final evaluation after a stop
    from selfsup.plugins import reset_plugin_manager

    reset_plugin_manager()  # without the stopper
    resumed = train(load_recipe(str(path), get_plugin_manager().registry), get_plugin_manager(), resume=True,
                    progress=False)
    assert resumed.status == "completed" and resumed.step == 40  # a stopped run can be resumed
