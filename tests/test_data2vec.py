"""The core's data2vec task on a toy backbone that implements LayerwiseMaskedEncoder (defined here, so
no plugin is needed): targets against the formula, loss at masked positions only, the teacher sees the
unmasked input and follows the student by EMA, a clear error for other backbones, conformance."""

from __future__ import annotations

import math
import types

import pytest
import torch
from torch import nn

import selfsup
import selfsup_toy
from selfsup.builtins import data2vec as d2v
from selfsup.builtins.options import Data2VecOptions
from selfsup.components import BuildContext, LayerwiseMaskedEncoder
from selfsup.options import Options
from selfsup.testing import TaskConformance, registry_with

POSITIONS, FEATURES, DIM, DEPTH = 4, 2, 8, 3


class ToyLayersOptions(Options):
    depth: int = DEPTH


class ToyLayers(nn.Module):
    """``input [B, 8]`` read as 4 positions of 2 features; a linear embedding, a learned mask
    embedding and residual MLP blocks. ``batch["valid"] [B]`` (optional): valid positions per sample,
    the rest padding. Records the masks it is given in ``calls``."""

    def __init__(self, depth: int = DEPTH):
        super().__init__()
        self.embed_in = nn.Linear(FEATURES, DIM)
        self.mask_embedding = nn.Parameter(torch.randn(DIM))
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(DIM), nn.Linear(DIM, DIM), nn.Tanh())
                                    for _ in range(depth))
        self.output_dim = DIM
        self.calls: list[torch.Tensor | None] = []

    def padding(self, batch) -> torch.Tensor | None:
        if "valid" not in batch:
            return None
        return torch.arange(POSITIONS)[None] >= torch.as_tensor(batch["valid"])[:, None]  # [B, T]

    def masked_positions(self, batch, generator, *, ratio=None, span=None) -> torch.Tensor:
        b = batch["input"].shape[0]
        mask = torch.rand(b, POSITIONS, generator=generator) < (0.5 if ratio is None else ratio)  # [B, T]
        mask[:, 0] = True  # at least one
        padding = self.padding(batch)
        return mask if padding is None else mask & ~padding

    def encode_layers(self, batch, mask=None):
        self.calls.append(None if mask is None else mask.clone())
        x = batch["input"].float().reshape(-1, POSITIONS, FEATURES)  # [B, T, F]
        h = self.embed_in(x)  # [B, T, D]
        if mask is not None:
            h = torch.where(mask[..., None], self.mask_embedding, h)
        layers = []
        for block in self.blocks:
            h = h + block(h)
            layers.append(h)  # [B, T, D]
        return layers, self.padding(batch)

    def embed(self, batch) -> torch.Tensor:
        return self.encode_layers(batch)[0][-1].mean(dim=1)  # [B, D]


plugin = types.SimpleNamespace(__name__="toy_layers_plugin")


@selfsup.hookimpl
def _register_backbones(register):
    register("toy_layers", lambda o, c: ToyLayers(o.depth), options=ToyLayersOptions,
             consumes={"input": "float32[8]"}, summary="A toy LayerwiseMaskedEncoder (tests).")


plugin.register_backbones = _register_backbones


def make_task(backbone=None, seed=0, **options):
    torch.manual_seed(seed)
    backbone = backbone or ToyLayers()
    task = d2v.Data2Vec(Data2VecOptions(top_k=2, **options), BuildContext(name="data2vec", backbone=backbone))
    return task, backbone


def batch(n=6, seed=0, **extra):
    g = torch.Generator().manual_seed(seed)
    return {"input": torch.randn(n, POSITIONS * FEATURES, generator=g), "index": torch.arange(n), **extra}


# ------------------------------------------------------------------------------ targets


def layer_norm_by_hand(h):
    mean = h.mean(-1, keepdim=True)
    var = ((h - mean) ** 2).mean(-1, keepdim=True)
    return (h - mean) / torch.sqrt(var + 1e-5)


def instance_norm_by_hand(h, valid):
    out = torch.zeros_like(h)
    for b in range(h.shape[0]):
        v = h[b, : valid[b]]  # [t, D]
        mean = v.mean(0)
        var = ((v - mean) ** 2).mean(0)
        out[b] = (h[b] - mean) / torch.sqrt(var + 1e-5)
    return out


def test_targets_are_the_average_of_the_normalised_top_k_layers():
    torch.manual_seed(0)
    layers = [torch.randn(3, 5, 6) * (i + 1) + i for i in range(4)]
    got = d2v.data2vec_targets(layers, 3, None, "layer", "none")
    expected = sum(layer_norm_by_hand(h) for h in layers[1:]) / 3
    torch.testing.assert_close(got, expected)
    # a final layer norm on the average
    torch.testing.assert_close(d2v.data2vec_targets(layers, 2, None, "layer", "layer"),
                               layer_norm_by_hand((layer_norm_by_hand(layers[2]) + layer_norm_by_hand(layers[3])) / 2))
    # without normalisation: the plain mean of the top K
    torch.testing.assert_close(d2v.data2vec_targets(layers, 2, None, "none", "none"), (layers[2] + layers[3]) / 2)
    with pytest.raises(ValueError, match="top_k = 5, but the backbone has 4"):
        d2v.data2vec_targets(layers, 5)


def test_instance_norm_is_over_the_valid_positions_of_each_sequence():
    torch.manual_seed(0)
    layers = [torch.randn(3, 5, 6) * 3 + 2 for _ in range(2)]
    valid = [5, 3, 1]
    padding = torch.arange(5)[None] >= torch.tensor(valid)[:, None]
    got = d2v.data2vec_targets(layers, 2, padding, "instance", "none")
    expected = (instance_norm_by_hand(layers[0], valid) + instance_norm_by_hand(layers[1], valid)) / 2
    for b, t in enumerate(valid):  # padded positions are not targets: only the valid ones are compared
        torch.testing.assert_close(got[b, :t], expected[b, :t])
    # padding values change nothing at valid positions
    changed = [h.clone() for h in layers]
    for h in changed:
        h[1, 3:] = 1000.0
    torch.testing.assert_close(d2v.data2vec_targets(changed, 2, padding, "instance")[1, :3], got[1, :3])


def test_loss_is_mse_or_smooth_l1_of_the_formula():
    pred, target = torch.randn(7, 4), torch.randn(7, 4) * 3
    torch.testing.assert_close(d2v.regression_loss(pred, target, "mse", 1.0), ((pred - target) ** 2).mean())
    diff = (pred - target).abs()
    beta = 2.0
    by_hand = torch.where(diff < beta, 0.5 * diff**2 / beta, diff - 0.5 * beta).mean()
    torch.testing.assert_close(d2v.regression_loss(pred, target, "smooth_l1", beta), by_hand)


# ------------------------------------------------------------------------------ the task


def test_student_gets_the_mask_teacher_the_unmasked_input_and_the_loss_matches_by_hand():
    task, backbone = make_task(layer_norm="layer")
    data = batch()
    out = task(data, backbone)
    student_mask = backbone.calls[-1]
    teacher_calls = task.teacher.module.backbone.calls
    assert student_mask is not None and student_mask.any() and not student_mask.all()
    assert teacher_calls == [None], "the teacher must encode the unmasked batch"
    # by hand: the teacher starts as an exact copy of the student
    with torch.no_grad():
        unmasked, _ = ToyLayers.encode_layers(backbone, data, None)
        target = sum(layer_norm_by_hand(h) for h in unmasked[-2:]) / 2  # [B, T, D]
        masked, _ = ToyLayers.encode_layers(backbone, data, student_mask)
        pred = task.head(masked[-1])  # [B, T, D]
        expected = ((pred - target) ** 2)[student_mask].mean()
    torch.testing.assert_close(out.loss.detach(), expected)
    assert 0 < float(out.metrics["masked_fraction"]) < 1
    assert math.isclose(float(out.metrics["momentum"]), 0.999, rel_tol=1e-6)


def test_loss_ignores_predictions_at_unmasked_positions():
    task, backbone = make_task()
    data = batch()
    torch.manual_seed(1)
    reference = task(data, backbone).loss
    mask = backbone.calls[-1]

    def scramble_unmasked(module, inputs, output):  # the student's last block, [B, T, D]
        return output + 100.0 * (~mask)[..., None]

    handle = backbone.blocks[-1].register_forward_hook(scramble_unmasked)
    torch.manual_seed(1)
    changed = task(data, backbone).loss
    handle.remove()
    torch.testing.assert_close(changed, reference)
    # while changing the masked positions' outputs changes the loss
    handle = backbone.blocks[-1].register_forward_hook(lambda m, i, o: o + 1.0 * mask[..., None])
    assert not torch.equal(task(data, backbone).loss, reference)
    handle.remove()


def test_padding_is_never_a_target_and_masks_follow_the_seeded_step():
    task, backbone = make_task()
    data = batch(valid=torch.tensor([4, 2, 1, 4, 3, 2]))
    task(data, backbone)
    first = backbone.calls[-1]
    padding = backbone.padding(data)
    assert not (first & padding).any()
    task(data, backbone)
    assert torch.equal(backbone.calls[-1], first), "same step, same batch: same mask"
    task.on_step(1)
    task(data, backbone)
    assert not torch.equal(backbone.calls[-1], first), "the next step draws other masks"


def test_teacher_follows_the_student_by_the_linear_momentum_schedule():
    task, backbone = make_task(base_momentum=0.9, final_momentum=0.99, ramp_steps=10)
    task(batch(), backbone).loss.backward()
    before = [p.detach().clone() for p in task.teacher.module.parameters()]
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(1.0)
    task.after_step(1, 100)
    m = 0.9  # step 1: the start of the ramp
    for t, old, s in zip(task.teacher.module.parameters(), before, backbone.parameters()):
        torch.testing.assert_close(t, m * old + (1 - m) * s.detach())
    task.after_step(1, 100)  # idempotent per step
    assert float(task.teacher.momentum) == pytest.approx(0.9)
    task.after_step(6, 100)
    assert float(task.teacher.momentum) == pytest.approx(0.9 + (0.99 - 0.9) * 5 / 10)
    assert not any(p.requires_grad for p in task.teacher.parameters())
    # the student's parameters are not duplicated in the task: only the teacher's copy and the head
    names = [n for n, _ in task.named_parameters()]
    assert all(n.startswith(("teacher.module.", "head.")) for n in names), names


def test_teacher_runs_in_eval_mode_and_is_in_the_state_dict():
    task, _ = make_task()
    task.train()
    assert task.training and not task.teacher.training and not task.teacher.module.training
    keys = task.state_dict().keys()
    assert "teacher.step" in keys and "teacher.module.backbone.mask_embedding" in keys
    assert task.find_unused_parameters, "encode_layers skips a backbone's pooling parameters: DDP must allow it"


def test_a_backbone_without_the_protocol_is_refused_with_a_clear_message():
    registry = registry_with([selfsup_toy])
    mlp = registry.get("backbone", "mlp").build({"in_dim": 8}, BuildContext(name="mlp"))
    with pytest.raises(ValueError, match="MLP has no masked_positions or encode_layers: data2vec needs a transformer"):
        d2v.Data2Vec(Data2VecOptions(), BuildContext(name="data2vec", backbone=mlp))
    assert isinstance(ToyLayers(), LayerwiseMaskedEncoder) and not isinstance(mlp, LayerwiseMaskedEncoder)


def test_prepare_masking_is_called_before_the_teacher_copies_the_backbone():
    class Lazy(ToyLayers):
        def prepare_masking(self):
            self.extra = nn.Parameter(torch.zeros(DIM))

    task, backbone = make_task(Lazy())
    assert hasattr(backbone, "extra") and hasattr(task.teacher.module.backbone, "extra")


def test_top_k_beyond_the_backbone_depth_is_reported():
    torch.manual_seed(0)
    backbone = ToyLayers(depth=2)
    task = d2v.Data2Vec(Data2VecOptions(top_k=3), BuildContext(name="data2vec", backbone=backbone))
    with pytest.raises(ValueError, match="top_k = 3, but the backbone has 2 transformer blocks"):
        task(batch(), backbone)


class TestData2VecConformance(TaskConformance):
    plugins = [selfsup_toy, plugin]
    task = "data2vec"
    task_options = {"top_k": 2, "loss": "smooth_l1", "beta": 0.5, "mask_length": 2}
    data = ("blobs", {"n": 64, "dim": 8, "classes": 4})
    backbone = ("toy_layers", {})
    bad_options = [{"top_k": 0}, {"mask_prob": 1.0}, {"loss": "l1"}, {"base_momentum": 1.5}, {"beta": 0}]
    inert_options = {
        "final_momentum": "the suite runs no optimizer update, so the teacher never moves",
        "ramp_steps": "the suite runs no optimizer update, so the teacher never moves",
        "mask_length": "the toy backbone masks single positions",
    }
    option_variants = {"mask_prob": 0.9, "beta": 0.05}
