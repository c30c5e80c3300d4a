"""CLIP-style cross-modal contrastive learning between two encoders.

Radford, Kim, Hallacy, Ramesh, Goh, Agarwal, Sastry, Askell, Mishkin, Clark, Krueger and
Sutskever, Learning Transferable Visual Models From Natural Language Supervision, ICML 2021
(https://arxiv.org/abs/2103.00020).

The task gets a table of two backbones (``backbone = { audio = "w2v", text = "bert" }``); each
role's pooled features (``backbone.embed(batch)``) go through its own projection to a shared space
and are L2-normalised. With ``s = exp(logit_scale)`` (learned, initialised to 1 / temperature and
capped at 100 as in CLIP), the logits are ``s * a @ b.T`` and the loss is the mean of the cross
entropies in both directions (a -> b over the rows, b -> a over the columns). Under DDP the other
ranks' embeddings are gathered with gradients, so each rank's anchors see the global batch.

Short captions repeat within a batch ("seven" spoken by several voices). With ``positives =
"same_text"`` every item whose text tokens equal the anchor's partner's is a positive: the target
of a row is uniform over them (a multi-positive InfoNCE), instead of pushing identical captions
apart. ``"pair"`` is plain CLIP.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from selfsup.components import BuildContext, TaskOutput
from selfsup.lib import info_nce, world_size

MAX_LOGIT_SCALE = math.log(100.0)


def same_text(ids: torch.Tensor, mask: torch.Tensor, candidates: torch.Tensor,
              candidate_mask: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` bool: whether sample i's unpadded token sequence equals candidate j's.
    ``ids``/``mask`` ``[B, L]``, ``candidates``/``candidate_mask`` ``[N, L']``."""
    length = max(ids.shape[1], candidates.shape[1])
    a = F.pad(ids * mask, (0, length - ids.shape[1]))  # [B, L]: padding zeroed so it compares equal
    b = F.pad(candidates * candidate_mask, (0, length - candidates.shape[1]))  # [N, L]
    a_len, b_len = mask.sum(dim=1), candidate_mask.sum(dim=1)  # [B], [N]: a real token 0 is not padding
    return (a[:, None, :] == b[None, :, :]).all(dim=2) & (a_len[:, None] == b_len[None, :])  # [B, N]


def same_text_targets(ids: torch.Tensor, mask: torch.Tensor, candidates: torch.Tensor,
                      candidate_mask: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` float: row i is uniform over the candidates whose text equals sample i's."""
    same = same_text(ids, mask, candidates, candidate_mask).float()  # [B, N]
    return same / same.sum(dim=1, keepdim=True)


def clip_loss(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, targets: torch.Tensor | None = None,
              *, gather: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE between L2-normalised ``a`` ``[B, E]`` and ``b`` ``[B, E]`` (row i of each
    is a pair). ``targets`` ``[B, W*B]`` (rows sum to 1) replaces the one-hot "own partner" target in
    both directions (the text side defines sameness, which is symmetric); with ``gather`` the candidates are every
    rank's rows. Returns ``(loss, a->b top-1 accuracy)``:
    :func:`selfsup.lib.info_nce` with ``symmetric``, under the caller's autocast (as CLIP computes it)."""
    return info_nce(a, b, scale=scale, targets=targets, symmetric=True, gather=gather, full_precision=False)


@torch.no_grad()
def gather_tokens(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's ``ids``/``mask`` ``[B, L_rank]``, padded to the longest rank: ``[W*B, L]``."""
    if world_size() == 1:
        return ids, mask
    length = torch.tensor([ids.shape[1]], device=ids.device)
    dist.all_reduce(length, op=dist.ReduceOp.MAX)
    pad = int(length) - ids.shape[1]
    ids, mask = F.pad(ids, (0, pad)), F.pad(mask, (0, pad))
    out_ids = [torch.empty_like(ids) for _ in range(world_size())]
    out_mask = [torch.empty_like(mask) for _ in range(world_size())]
    dist.all_gather(out_ids, ids.contiguous())
    dist.all_gather(out_mask, mask.contiguous())
    return torch.cat(out_ids), torch.cat(out_mask)


class Projection(nn.Sequential):
    def __init__(self, in_dim: int, out_dim: int, kind: str):
        if kind == "mlp":
            super().__init__(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, out_dim))
        else:
            super().__init__(nn.Linear(in_dim, out_dim, bias=False))


class Joint(nn.Module):
    """A role's projection and L2 normalisation: pooled features ``[N, D]`` -> shared space ``[N, E]``."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(features).float(), dim=1)  # [N, E]


class CLIP(nn.Module):
    """Two roles, each with a projection; ``embed(role, backbone, batch)`` is the normalised
    shared-space embedding (used by the ``retrieval`` evaluator too)."""

    def __init__(self, options: Any, backbones: dict[str, nn.Module]):
        super().__init__()
        if not isinstance(backbones, dict) or len(backbones) != 2:
            raise ValueError('clip needs a table of two backbones, e.g. backbone = { audio = "w2v", text = "bert" }')
        self.o = options
        self.roles = list(backbones)
        self.heads = nn.ModuleDict({r: Projection(b.output_dim, options.embed_dim, options.projection)
                                    for r, b in backbones.items()})
        scale = torch.tensor(math.log(1 / options.temperature))
        if options.learn_temperature:
            self.logit_scale = nn.Parameter(scale)
        else:
            self.register_buffer("logit_scale", scale)

    def embed(self, role: str, backbone: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return self.joint_projection(role)(backbone.embed(batch))  # [B, E]

    def joint_projection(self, role: str | None) -> Joint:
        """Role ``role``'s map into the shared space (``selfsup serve --project``, ``selfsup.load(project=)``);
        it shares this task's tensors."""
        if role not in self.heads:
            raise ValueError(f"clip has the roles {', '.join(self.heads)}, not {role!r}")
        return Joint(self.heads[role])

    def forward(self, batch: dict[str, Any], backbones: dict[str, nn.Module]) -> TaskOutput:
        a_role, b_role = self.roles
        a = self.embed(a_role, backbones[a_role], batch)  # [B, E]
        b = self.embed(b_role, backbones[b_role], batch)  # [B, E]
        with torch.no_grad():
            self.logit_scale.clamp_(max=MAX_LOGIT_SCALE)
        targets = None
        if self.o.positives == "same_text":
            ids, mask = batch["input_ids"], batch["attention_mask"]
            candidates, candidate_mask = gather_tokens(ids, mask) if self.o.gather_distributed else (ids, mask)
            targets = same_text_targets(ids, mask, candidates, candidate_mask)  # [B, W*B]
        loss, accuracy = clip_loss(a, b, self.logit_scale.exp(), targets, gather=self.o.gather_distributed)
        return TaskOutput(loss=loss,
                          metrics={"accuracy": accuracy.detach(), "temperature": (1 / self.logit_scale.exp()).detach()})


def build(options: Any, context: BuildContext) -> CLIP:
    return CLIP(options, context.backbone)
