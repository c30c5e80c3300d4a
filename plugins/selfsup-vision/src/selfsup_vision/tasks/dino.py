"""DINO: self-distillation with no labels, over multi-crop views.

Caron, Touvron, Misra, Jégou, Mairal, Bojanowski and Joulin, Emerging Properties in Self-Supervised
Vision Transformers, ICCV 2021 (https://arxiv.org/abs/2104.14294).

The student (the backbone and a DINO head: an MLP with GELU down to a bottleneck, L2 normalisation,
and a weight-normalised linear layer to K outputs) sees every view of the ``multi_crop``
augmentation, global and local; the teacher, an exponential moving average of the student
(:class:`selfsup.lib.teacher.EMATeacher`, cosine momentum from ``base_momentum`` to
``final_momentum`` over training, moved once per optimizer step in :meth:`DINO.after_step`), sees
the global views only. For each pair of a teacher view t and a different student view s the loss
is the cross entropy ``H(softmax((g_t - c) / tau_t), softmax(g_s / tau_s))``, summed over the pairs
and divided by their number, averaged over the batch (the reference's averaging).

Against collapse: the teacher's outputs are centred (``c``, a buffer: an exponential moving average
with ``center_momentum`` of the mean teacher output over the global batch of an optimizer step, all
micro-batches of a gradient accumulation and every DDP rank; applied in ``after_step``, so every
micro-batch of a step uses the same centre) and sharpened (``tau_t`` below ``tau_s``). The teacher
temperature warms up linearly from ``warmup_teacher_temp`` to ``teacher_temp`` over
``warmup_teacher_temp_steps`` optimizer steps (counted by :meth:`DINO.on_step`, not by forward
passes). The head's last layer gets no gradient at all (``None``, as the reference's
``cancel_gradients_last_layer``: the optimizer skips it, no decay, no moment) for the first
``freeze_last_layer_steps`` optimizer steps; the task then asks DDP for ``find_unused_parameters``.

Parameter sharing: none. The teacher is a full copy of backbone and head; the student's backbone is
the run's backbone (``backbones.<name>`` in the checkpoint), the teacher's copy is in the task's
state (``tasks.<name>.teacher.module``), loaded weights of the backbone reach it on its first call.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from selfsup.components import BuildContext, TaskOutput
from selfsup.lib import embedding_std, world_size
from selfsup.lib.teacher import EMATeacher


class WeightNormLinear(nn.Module):
    """``y = x @ (g * v / ||v||).T`` without bias (Salimans and Kingma 2016), weight ``v: [K, P]``;
    ``g: [K]`` is fixed at 1 when ``fixed_norm`` (DINO's ``norm_last_layer``), else a parameter
    (1-D, so the optimizer does not decay it)."""

    def __init__(self, in_dim: int, out_dim: int, fixed_norm: bool):
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(out_dim, in_dim))  # [K, P]
        nn.init.kaiming_uniform_(self.weight_v, a=math.sqrt(5))  # nn.Linear's initialisation
        self.weight_g = None if fixed_norm else nn.Parameter(torch.ones(out_dim))  # [K]

    def weight(self, frozen: bool = False) -> torch.Tensor:
        v, g = self.weight_v, self.weight_g
        if frozen:  # no path from the output to these parameters: their .grad stays None
            v, g = v.detach(), (None if g is None else g.detach())
        w = F.normalize(v, dim=1)  # [K, P]
        return w if g is None else w * g[:, None]

    def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:  # x: [N, P] -> [N, K]
        return x @ self.weight(frozen).T


class DINOHead(nn.Module):
    """``layers`` linear layers ``in_dim -> hidden_dim -> ... -> bottleneck_dim`` with GELU (and
    BatchNorm when ``batch_norm``) between them, L2 normalisation, then the weight-normalised
    ``bottleneck_dim -> out_dim`` last layer. Linear weights from a truncated normal (std 0.02),
    biases zero, as the reference."""

    def __init__(self, in_dim: int, hidden_dim: int, bottleneck_dim: int, out_dim: int, layers: int,
                 batch_norm: bool, norm_last_layer: bool):
        super().__init__()
        modules: list[nn.Module] = []
        dim = in_dim
        for _ in range(layers - 1):
            modules += [nn.Linear(dim, hidden_dim)] + ([nn.BatchNorm1d(hidden_dim)] if batch_norm else []) + [nn.GELU()]
            dim = hidden_dim
        modules.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*modules)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
                nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, norm_last_layer)
        self.freeze_last_layer = False  # set by the task while the last layer is frozen

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [N, D] -> [N, K]
        z = F.normalize(self.mlp(x), dim=-1)  # [N, bottleneck]
        return self.last_layer(z, frozen=self.freeze_last_layer)


class _Student(nn.Module):
    """Backbone then head: what the teacher copies (built once, never registered in the task)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def teacher_temperature(step: int, warmup: float, final: float, warmup_steps: int) -> float:
    """The reference's schedule: ``linspace(warmup, final, warmup_steps)[step]`` during the
    warm-up, ``final`` after it."""
    if step >= warmup_steps:
        return final
    if warmup_steps == 1:
        return warmup
    return warmup + (final - warmup) * step / (warmup_steps - 1)


def dino_loss(
    teacher: torch.Tensor,  # [T, B, K] teacher outputs of the global views
    student: torch.Tensor,  # [S, B, K] student outputs, the same T global views first, then the local views
    center: torch.Tensor,  # [K]
    teacher_temp: float,
    student_temp: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, teacher probabilities [T, B, K])``: the mean over the batch of the cross entropy
    between the centred, sharpened teacher and the student, summed over the pairs ``(t, s)`` with
    ``s != t`` and divided by their number."""
    with torch.autocast(teacher.device.type, enabled=False):
        p_t = F.softmax((teacher.float() - center.float()) / teacher_temp, dim=-1)  # [T, B, K]
        log_p_s = F.log_softmax(student.float() / student_temp, dim=-1)  # [S, B, K]
        ce = -torch.einsum("tbk,sbk->ts", p_t, log_p_s) / teacher.shape[1]  # [T, S]: mean over the batch
        pairs = torch.ones_like(ce, dtype=torch.bool)
        pairs.fill_diagonal_(False)  # a view is not its own target
        return ce[pairs].sum() / pairs.sum(), p_t


class DINO(nn.Module):
    """The DINO task: ``batch["global_views"]: [B, G, C, gs, gs]`` and optional
    ``batch["local_views"]: [B, L, C, ls, ls]`` (the ``multi_crop`` augmentation)."""

    def __init__(self, options: Any, backbone: nn.Module):
        super().__init__()
        self.o = o = options
        self.head = DINOHead(backbone.output_dim, o.hidden_dim, o.bottleneck_dim, o.output_dim, o.head_layers,
                             o.head_batch_norm, o.norm_last_layer)
        self.teacher = EMATeacher(_Student(backbone, self.head), base_momentum=o.base_momentum,
                                  final_momentum=o.final_momentum, schedule=o.momentum_schedule)
        self.register_buffer("center", torch.zeros(o.output_dim))  # [K]
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # optimizer steps so far (from on_step)
        # the pending centre of this step: sum of teacher outputs [K] and their count (not checkpointed:
        # after_step consumes them before any checkpoint)
        self._center_sum: torch.Tensor | None = None
        self._center_count = 0
        # DDP: the frozen last layer is unused for the first steps
        self.find_unused_parameters = o.freeze_last_layer_steps > 0

    @property
    def teacher_temp(self) -> float:
        o = self.o
        return teacher_temperature(int(self.steps), o.warmup_teacher_temp, o.teacher_temp, o.warmup_teacher_temp_steps)

    def on_step(self, step: int) -> None:
        """The optimizer step about to run (once per step, whatever grad_accum is): the teacher
        temperature and the last-layer freezing follow optimizer steps, not forward passes."""
        self.steps.fill_(step)

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        """After each optimizer update: the teacher moves toward the student, the centre toward the
        mean teacher output of the step (global batch)."""
        self.teacher.update(step, total_steps)
        if self._center_sum is None:
            return
        total = torch.cat([self._center_sum, self._center_sum.new_tensor([self._center_count])])  # [K + 1]
        if world_size() > 1:
            dist.all_reduce(total)
        m = self.o.center_momentum
        self.center.mul_(m).add_(total[:-1] / total[-1], alpha=1 - m)
        self._center_sum, self._center_count = None, 0

    def forward(self, batch: dict[str, Any], backbone: nn.Module) -> TaskOutput:
        global_views = batch["global_views"]  # [B, G, C, gs, gs]
        local_views = batch.get("local_views")  # [B, L, C, ls, ls] or None
        b, g = global_views.shape[:2]
        crops = [global_views.transpose(0, 1).flatten(0, 1)]  # [G*B, C, gs, gs], view-major
        if local_views is not None and local_views.shape[1]:
            crops.append(local_views.transpose(0, 1).flatten(0, 1))  # [L*B, C, ls, ls]

        self.head.freeze_last_layer = self.training and int(self.steps) < self.o.freeze_last_layer_steps
        feats = [backbone(x) for x in crops]  # one backbone forward per resolution: [V*B, D] each
        student = self.head(torch.cat(feats)).unflatten(0, (-1, b))  # [S, B, K], globals first
        teacher = self.teacher(crops[0]).unflatten(0, (g, b))  # [G, B, K], no gradient

        tau_t = self.teacher_temp
        loss, p_t = dino_loss(teacher, student, self.center, tau_t, self.o.student_temp)

        with torch.no_grad():
            if self.training:  # the centre moves in after_step, from every micro-batch of the step
                s = teacher.float().sum(dim=(0, 1))  # [K]
                self._center_sum = s if self._center_sum is None else self._center_sum + s
                self._center_count += g * b
            log_p_t = torch.log(p_t.clamp_min(1e-12))
            teacher_entropy = -(p_t * log_p_t).sum(-1).mean()  # per-sample sharpness: 0 = one-hot
            log_p_s = F.log_softmax(student[:g].detach().float() / self.o.student_temp, dim=-1)  # [G, B, K]
            kl = (p_t * (log_p_t - log_p_s)).sum(-1).mean()  # KL(teacher || student) on the same view
            mean_p = p_t.mean(dim=(0, 1))  # [K]: the batch's average target
            metrics = {
                "teacher_entropy": teacher_entropy,
                "teacher_batch_entropy": -(mean_p * mean_p.clamp_min(1e-12).log()).sum(),  # 0: all on one dim
                "kl_teacher_student": kl,
                "center_norm": self.center.norm(),
                "embedding_std": embedding_std(feats[0][:b].detach().float()),
                "momentum": self.teacher.momentum.detach().clone(),
                "teacher_temp": torch.tensor(tau_t),
            }
        return TaskOutput(loss=loss, metrics=metrics)


def build(options: Any, context: BuildContext) -> DINO:
    return DINO(options, context.backbone)
