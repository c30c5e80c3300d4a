"""Fine-tuning end to end on the toy blobs: init from a run, the modes, layer-wise lr decay, best
checkpoint and early stopping, resume, the classification evaluator's reports, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import cli, write_toy_recipe

from selfsup.components import BuildContext
from selfsup.engine import checkpoint as ckpt
from selfsup.engine.loop import train
from selfsup.engine.metrics import read_metrics
from selfsup.engine.optim import build_optimizer
from selfsup.lib.modules import layer_groups
from selfsup.plugins import get_plugin_manager
from selfsup.recipe import RecipeError, TrainSpec, load_recipe

FINETUNE = """
seed = 0
output_dir = "{out}"

[data.train]
type = "blobs"
options = {{ n = 512, dim = 16, classes = 4, spread = 0.6, nuisance = 12.0, split = "train" }}

[data.val]
type = "blobs"
options = {{ n = 512, dim = 16, classes = 4, spread = 0.6, nuisance = 12.0, split = "val" }}

[backbones.pretrained]
type = "mlp"
options = {{ in_dim = 16, hidden_dims = [64], out_dim = 32 }}
{init}

[tasks.classify]
type = "finetune"
data = "train"
backbone = "pretrained"
options = {{ mode = "{mode}", layer_decay = {decay} }}

[evaluators.val]
type = "classification"
data = "val"
every = {every}

[train]
lr = {lr}
batch_size = 64
max_steps = {steps}
log_every = 5
keep_checkpoints = 1
deterministic = true
tensorboard = false
{train}
"""


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A toy InfoNCE run on the blobs (60 steps): the backbone the tests fine-tune."""
    directory = tmp_path_factory.mktemp("pre")
    res = cli("train", str(write_toy_recipe(directory)), "--no-progress")
    assert res.returncode == 0, res.stderr
    return directory / "run"


def write(tmp_path, pretrained, *, name="ft.toml", mode="full", decay=1.0, every=10, steps=40, train_extra="",
          init=True, lr=3e-3):
    text = FINETUNE.format(out=tmp_path / name.replace(".toml", ""), mode=mode, decay=decay, every=every, lr=lr,
                           steps=steps, train=train_extra,
                           init=f'init = {{ path = "{pretrained}", backbone = "mlp" }}' if init else "")
    path = tmp_path / name
    path.write_text(text)
    return path


def run(path, **kwargs):
    pm = get_plugin_manager()
    return train(load_recipe(str(path), pm.registry), pm, progress=False, **kwargs)


def backbone_weights(directory):
    state = ckpt.read_weights(directory)
    return {k.split(".", 2)[2]: v for k, v in state.items() if k.startswith("backbones.")}


def test_linear_mode_trains_the_head_only_and_pretraining_beats_random_init(tmp_path, pretrained):
    start = backbone_weights(ckpt.find_resumable(pretrained)[0])
    result = run(write(tmp_path, pretrained, mode="linear", steps=100, lr=3e-2))
    after = backbone_weights(ckpt.find_resumable(result.run_dir)[0])
    assert set(after) == set(start) and all(torch.equal(after[k], start[k]) for k in start)  # frozen
    random = run(write(tmp_path, pretrained, name="random.toml", mode="linear", steps=100, lr=3e-2, init=False))
    assert result.evaluation["val/accuracy"] > random.evaluation["val/accuracy"] + 0.1, (
        result.evaluation, random.evaluation)
    assert result.evaluation["val/f1_macro"] > 0.8


def test_layer_decay_and_partial_unfreezing_set_the_optimizer():
    ctx = BuildContext(name="t")
    backbone = ctx.build("backbones", "mlp", {"in_dim": 8, "hidden_dims": [16, 16], "out_dim": 4})
    groups = layer_groups(backbone)  # three Linear layers (with their LayerNorms)
    assert [len(g) for g in groups] == [4, 4, 2]
    data = [{"input": torch.zeros(8), "label": torch.tensor(i % 3)} for i in range(6)]
    task = ctx.build("tasks", "finetune", {"mode": "partial", "unfreeze_last": 2, "layer_decay": 0.5},
                     backbone=backbone, data=data)
    assert [all(p.requires_grad for p in g) for g in groups] == [False, True, True]
    model = torch.nn.Module()
    model.backbone, model.tasks = backbone, torch.nn.ModuleDict({"t": task})
    optimizer = build_optimizer(model, TrainSpec(lr=0.1, max_steps=5, weight_decay=0.01))
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert all(id(p) not in lr_of for p in groups[0])  # frozen: not optimized
    assert [lr_of[id(p)] for p in groups[1]] == pytest.approx([0.1 * 0.5**2] * 4)  # group 1 of 3: 0.5^(3-1)
    assert [lr_of[id(p)] for p in groups[2]] == pytest.approx([0.1 * 0.5] * 2)
    assert [lr_of[id(p)] for p in task.head.parameters()] == pytest.approx([0.1] * 2)
    decay = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    assert all(decay[id(p)] == (0.01 if p.ndim > 1 else 0.0) for p in task.parameters() if p.requires_grad)


def test_best_checkpoint_is_kept_restored_and_early_stopping_stops(tmp_path, pretrained):
    # min_delta 1.0: nothing after the first evaluation counts as an improvement -> stop at the second
    best = 'best = { metric = "val/accuracy", patience = 1, min_delta = 1.0 }'
    result = run(write(tmp_path, pretrained, every=10, steps=100, train_extra=best))
    assert result.step == 20 and result.best_step == 10 and result.status == "completed"
    folder = ckpt.checkpoint_dir(result.run_dir)
    assert (folder / "best").read_text().strip() == "step-00000010"
    assert {p.name for p in ckpt.list_checkpoints(result.run_dir)} == {"step-00000010", "step-00000020"}
    evals = [r for r in read_metrics(result.run_dir) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [10, 20, 20] and evals[-1]["weights_step"] == 10
    assert evals[-1]["val/accuracy"] == pytest.approx(evals[0]["val/accuracy"])  # the best weights, evaluated
    assert json.loads((result.run_dir / "checkpoints" / "step-00000020" / "meta.json").read_text())["step"] == 20
    again = run(write(tmp_path, pretrained, every=10, steps=100, train_extra=best), resume=True)
    assert again.step == 20 and again.best_step == 10  # an early-stopped run stays stopped on --resume


def test_resume_keeps_the_tracker_and_does_not_need_the_pretrained_run(tmp_path, pretrained):
    import shutil

    copy = tmp_path / "pre-copy"
    shutil.copytree(pretrained, copy)
    best = 'best = { metric = "val/f1_macro", patience = 50 }\ncheckpoint_every = 10'
    first = run(write(tmp_path, copy, every=10, steps=20, train_extra=best))
    shutil.rmtree(copy)  # a resumed run loads its own checkpoint
    path = write(tmp_path, copy, every=10, steps=40, train_extra=best)
    resumed = run(path, resume=True)
    assert resumed.step == 40 and first.best_step is not None and resumed.best_step >= first.best_step
    with pytest.raises(RecipeError, match=r"backbones.pretrained.init: .*does not exist"):
        run(write(tmp_path, copy, name="fresh.toml", every=10, steps=20))


def test_init_errors_name_the_field(tmp_path, pretrained):
    path = write(tmp_path, pretrained)
    text = path.read_text()
    path.write_text(text.replace("hidden_dims = [64]", "hidden_dims = [48]"))
    with pytest.raises(RecipeError, match=r"pretrained.init: shapes differ: .*net.0.weight is \(64, 16\) there"):
        run(path)
    path.write_text(text.replace('backbone = "mlp" }', 'backbone = "cnn" }'))
    with pytest.raises(RecipeError, match=r"backbones.pretrained.init: .* has no backbone 'cnn' \(it has mlp\)"):
        run(path)


def test_reports_and_the_finetune_command(tmp_path, pretrained):
    recipe = write(tmp_path, pretrained, init=False, steps=20)
    text = recipe.read_text().replace(f'output_dir = "{tmp_path / "ft"}"\n', "")
    recipe.write_text(text)
    res = cli("finetune", str(pretrained), str(recipe), "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "backbones.pretrained: weights from" in res.stdout
    run_dir = tmp_path / "runs" / "ft-run"
    saved = json.loads((run_dir / "recipe.json").read_text())["recipe"]["backbones"]["pretrained"]
    assert saved["init"] == {"path": str(pretrained.resolve()), "backbone": "mlp"} and saved["type"] == "mlp"
    report = run_dir / "reports" / "val" / "step-00000020"
    table = json.loads((report / "classes.json").read_text())
    assert [row["class"] for row in table["classes"]] == ["0", "1", "2", "3"]
    val = BuildContext(name="val").build("data", "blobs", {"n": 512, "dim": 16, "classes": 4, "spread": 0.6,
                                                          "nuisance": 12.0, "split": "val"})
    assert sum(row["support"] for row in table["classes"]) == len(val)
    assert table["metrics"]["accuracy"] == pytest.approx(
        sum(row["recall"] * row["support"] for row in table["classes"]) / len(val))
    assert (report / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    confusion = (report / "confusion.csv").read_text().splitlines()
    assert confusion[0] == "true \\ predicted,0,1,2,3" and len(confusion) == 5
    res = cli("eval", str(run_dir), "--baseline", cwd=tmp_path)
    assert res.returncode == 0 and "starting weights (pretrained pretrained)" in res.stdout, res.stdout


def test_subset_keeps_a_stratified_share_and_its_keys_are_checked(tmp_path):
    import collections

    ctx = BuildContext(name="s")
    inner = {"type": "blobs", "options": {"n": 400, "dim": 8, "classes": 4, "split": "train"}}
    full = ctx.build("data", "blobs", inner["options"])
    part = ctx.build("data", "subset", {"data": inner, "fraction": 0.1, "seed": 3})
    counts = collections.Counter(int(part[i]["label"]) for i in range(len(part)))
    full_counts = collections.Counter(int(full[i]["label"]) for i in range(len(full)))
    assert {c: -(-full_counts[c] // 10) for c in full_counts} == dict(counts)  # ceil(10%) of every class
    again = ctx.build("data", "subset", {"data": inner, "fraction": 0.1, "seed": 3})
    assert [int(i) for i in again.indices] == [int(i) for i in part.indices]
    other = ctx.build("data", "subset", {"data": inner, "fraction": 0.1, "seed": 4})
    assert [int(i) for i in other.indices] != [int(i) for i in part.indices]
    rest = ctx.build("data", "subset", {"data": inner, "fraction": 0.1, "seed": 3, "complement": True})
    assert sorted([*map(int, rest.indices), *map(int, part.indices)]) == list(range(len(full)))  # disjoint, all
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
output_dir = "{tmp_path / 'run'}"
[data.d]
type = "subset"
options = {{ data = {{ type = "blobs", options = {{ n = 64, dim = 8 }} }}, fraction = 0.5 }}
[backbones.b]
type = "small_cnn"
[tasks.t]
type = "finetune"
data = "d"
backbone = "b"
[train]
max_steps = 2
""")
    with pytest.raises(RecipeError, match=r"reads 'image: .*' but data 'd' \(blobs\)"):
        load_recipe(str(recipe), get_plugin_manager().registry)


def test_init_loads_tied_weights_saved_once(tmp_path):
    """An LM decoder tied to the embedding is saved once (safetensors); init still loads both names."""
    from safetensors.torch import save_model

    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(10, 4)
            self.decoder = torch.nn.Linear(4, 10, bias=False)
            self.decoder.weight = self.embed.weight

    from selfsup.engine.init import _load

    source = Tied()
    save_model(source, str(tmp_path / "w.safetensors"))
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "w.safetensors"))
    assert len(saved) == 1  # one copy of the tied matrix
    target = Tied()
    missing, unexpected = _load(target, saved)
    assert missing == [] and unexpected == [] and torch.equal(target.decoder.weight, source.embed.weight)


def test_best_checkpoint_and_early_stopping_under_two_processes(tmp_path, pretrained):
    """Evaluators run on rank 0; every rank must take the same save / stop decision (no deadlock)."""
    best = 'best = { metric = "val/accuracy", patience = 1, min_delta = 1.0 }'
    path = write(tmp_path, pretrained, every=10, steps=100, train_extra=best, mode="partial")
    res = cli("train", str(path), "--nproc", "2", "--no-progress", timeout=600)
    assert res.returncode == 0, res.stderr
    run_dir = tmp_path / "ft"
    assert (ckpt.checkpoint_dir(run_dir) / "best").read_text().strip() == "step-00000010"
    evals = [r for r in read_metrics(run_dir) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [10, 20, 20] and evals[-1]["weights_step"] == 10
