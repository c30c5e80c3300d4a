"""data2vec: one masked-prediction objective for speech, vision and text.

Baevski, Hsu, Xu, Babu, Gu and Auli, data2vec: A General Framework for Self-supervised Learning in
Speech, Vision and Language, ICML 2022 (https://arxiv.org/abs/2202.03555).

The student (the backbone) encodes the batch with some positions masked (replaced by its mask
embedding); the teacher, an exponential moving average of the student (:class:`selfsup.lib.EMATeacher`,
momentum increased linearly from ``base_momentum`` = tau_0 to ``final_momentum`` = tau_e over
``ramp_steps`` = tau_n optimizer steps, then constant; section 3.3), encodes the *unmasked* batch.
The target of a position is the average of the teacher's top ``top_k`` block outputs, each
normalised first (``layer_norm``: instance norm over time for speech, parameter-less layer norm for
vision and text), the average optionally normalised again (``final_norm``). A linear regression
head maps the student's last block output to the target, and the loss (MSE, or smooth L1 with
``beta``) is taken at the masked positions only.

The task is modality-agnostic: the backbone decides what a position is and how to mask, through the
:class:`selfsup.components.LayerwiseMaskedEncoder` protocol (``masked_positions``, ``encode_layers``,
optionally ``prepare_masking``). Differences from the paper: targets are the blocks' outputs (after
the last residual connection), not the feed-forward outputs before it; the loss is averaged over
masked positions and features, without the paper's 1/sqrt(D) scale; masks come from the backbone
(text replaces every selected token by [MASK], without the 80/10/10 rule).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.builtins.options import Data2VecOptions
from selfsup.components import BuildContext, TaskOutput
from selfsup.lib import seeding
from selfsup.lib.teacher import EMATeacher

PROTOCOL = ("masked_positions", "encode_layers")
NORM_EPS = 1e-5  # as F.layer_norm and F.instance_norm


# ------------------------------------------------------------------------------ targets and loss


def normalize(x: torch.Tensor, padding: torch.Tensor | None, how: str) -> torch.Tensor:
    """``x [B, T, D]`` normalised: ``"layer"`` over the D features of each position (no affine),
    ``"instance"`` each feature over the valid positions of its sequence (``padding [B, T]`` True =
    excluded; biased variance), ``"none"`` unchanged."""
    if how == "none":
        return x
    if how == "layer":
        return F.layer_norm(x, x.shape[-1:], eps=NORM_EPS)
    if how != "instance":
        raise ValueError(f"unknown normalisation {how!r} (layer, instance or none)")
    keep = torch.ones_like(x[..., :1]) if padding is None else (~padding).to(x.dtype).unsqueeze(-1)  # [B, T, 1]
    count = keep.sum(dim=1, keepdim=True).clamp_min(1.0)  # [B, 1, 1]
    mean = (x * keep).sum(dim=1, keepdim=True) / count  # [B, 1, D]
    var = ((x - mean) ** 2 * keep).sum(dim=1, keepdim=True) / count  # [B, 1, D]
    return (x - mean) / torch.sqrt(var + NORM_EPS)


def data2vec_targets(layers: list[torch.Tensor], top_k: int, padding: torch.Tensor | None = None,
                     layer_norm: str = "layer", final_norm: str = "none") -> torch.Tensor:
    """The regression targets ``[B, T, D]``: ``final_norm(mean_{l in top K} layer_norm(layers[l]))``
    over the last ``top_k`` of ``layers`` (each ``[B, T, D]``, input side first)."""
    if not 0 < top_k <= len(layers):
        raise ValueError(f"top_k = {top_k}, but the backbone has {len(layers)} transformer blocks")
    top = [normalize(h.float(), padding, layer_norm) for h in layers[-top_k:]]  # K x [B, T, D]
    return normalize(torch.stack(top).mean(dim=0), padding, final_norm)  # [B, T, D]


def regression_loss(pred: torch.Tensor, target: torch.Tensor, loss: str, beta: float) -> torch.Tensor:
    """``pred, target [M, D]`` (the masked positions) -> the mean MSE or smooth L1 (``beta``)."""
    if loss == "mse":
        return F.mse_loss(pred, target)
    return F.smooth_l1_loss(pred, target, beta=beta)


# ------------------------------------------------------------------------------ the task


class _Layers(nn.Module):
    """The backbone with ``forward = encode_layers``: what the EMA teacher copies and runs."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, batch: dict[str, Any], mask: torch.Tensor | None = None) -> Any:
        return self.backbone.encode_layers(batch, mask)


def check_backbone(backbone: Any) -> None:
    """A ValueError naming what is missing when ``backbone`` cannot be driven by data2vec."""
    if isinstance(backbone, dict):
        raise ValueError("data2vec takes one backbone, not a table of roles")
    missing = [name for name in PROTOCOL if not callable(getattr(backbone, name, None))]
    if missing or not isinstance(backbone, nn.Module):
        raise ValueError(
            f"backbone {type(backbone).__name__} has no {' or '.join(missing) or 'nn.Module'}: data2vec needs a "
            f"transformer backbone that masks its own positions and returns every block's output (the "
            f"LayerwiseMaskedEncoder protocol of selfsup.components: masked_positions, encode_layers), e.g. "
            f"'timm' with a ViT, 'wav2vec2_encoder' or 'transformer' with family = 'bert'")


class Data2Vec(nn.Module):
    """The regression head and the EMA teacher (a copy of the backbone, in the checkpoint)."""

    def __init__(self, options: Data2VecOptions, context: BuildContext):
        super().__init__()
        backbone = context.backbone
        check_backbone(backbone)
        prepare = getattr(backbone, "prepare_masking", None)
        if callable(prepare):
            prepare()  # before the teacher's copy and the optimizer: the mask embedding is a parameter
        self.options, self.seed = options, int(context.seed)
        self.teacher = EMATeacher(_Layers(backbone), base_momentum=options.base_momentum,
                                  final_momentum=options.final_momentum, schedule="linear",
                                  ramp_steps=options.ramp_steps)
        self.teacher.eval()
        dim = int(backbone.output_dim)
        self.head = nn.Linear(dim, dim)  # the student's last block output -> the target
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))  # optimizer steps done: seeds masks
        # encode_layers skips what embed adds after the blocks (a ViT's final norm, a pooler): under DDP
        # those parameters get no gradient
        self.find_unused_parameters = True

    def train(self, mode: bool = True) -> Data2Vec:
        super().train(mode)
        self.teacher.eval()  # the teacher encodes without dropout, as in the paper's code
        return self

    def on_step(self, step: int) -> None:
        self.updates.fill_(step)

    def after_step(self, step: int, total_steps: int) -> None:
        self.teacher.update(step, total_steps)

    def _generator(self, batch: dict[str, Any]) -> torch.Generator:
        index = batch.get("index")
        if index is None:  # no sample positions (a streaming source): one draw of the global generator
            return torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        indices = torch.as_tensor(index).long().flatten().cpu()
        return seeding.batch_generator(self.seed, "data2vec", int(self.updates), indices)

    def forward(self, batch: dict[str, Any], backbone: Any) -> TaskOutput:
        o = self.options
        mask = backbone.masked_positions(batch, self._generator(batch), ratio=o.mask_prob, span=o.mask_length)
        layers, padding = backbone.encode_layers(batch, mask)  # L x [B, T, D], [B, T] or None
        x = layers[-1]  # [B, T, D]
        mask = mask.to(x.device).bool()  # [B, T]
        if padding is not None:
            mask = mask & ~padding.to(x.device)
        if mask.shape != x.shape[:2]:
            raise ValueError(f"the backbone's mask is {tuple(mask.shape)} for {tuple(x.shape[:2])} positions")
        with torch.no_grad():
            teacher_layers, _ = self.teacher(batch, None)  # the unmasked batch
            target = data2vec_targets(teacher_layers, o.top_k, padding, o.layer_norm, o.final_norm)  # [B, T, D]
        if not bool(mask.any()):
            raise ValueError("the backbone masked no position of the batch")
        pred = self.head(x[mask]).float()  # [M, D]
        y = target[mask]  # [M, D]
        loss = regression_loss(pred, y, o.loss, o.beta)
        with torch.no_grad():
            valid = x.shape[0] * x.shape[1] if padding is None else int((~padding).sum())
            metrics = {"masked_fraction": mask.sum().float() / max(valid, 1),
                       "target_std": y.std(dim=0, correction=0).mean(),
                       "prediction_std": pred.std(dim=0, correction=0).mean(),
                       "momentum": self.teacher.momentum.float()}
        return TaskOutput(loss=loss, metrics=metrics)


def build(options: Data2VecOptions, context: BuildContext) -> Data2Vec:
    return Data2Vec(options, context)
