"""SwAV: swapped prediction of online cluster assignments over multi-crop views.

Caron, Misra, Mairal, Goyal, Bojanowski and Joulin, Unsupervised Learning of Visual Features by
Contrasting Cluster Assignments, NeurIPS 2020 (https://arxiv.org/abs/2006.09882).

Every view (global and local crops, from the ``multi_crop`` augmentation) is projected to an
L2-normalised ``z`` and scored against K prototypes (a bias-free linear layer whose rows are
L2-normalised before each forward). For each of the first ``assign_views`` global views, the
Sinkhorn-Knopp algorithm turns the batch's scores into soft codes ``q`` that use every prototype
equally (computed without gradient, over the global batch under DDP, optionally together with a
queue of past projections); every other view must predict those codes:
``-sum_k q_ik log softmax(scores_v / temperature)_k``, averaged over the other views and then over
the assigned views. The prototypes get no gradient for the first ``freeze_prototypes_steps`` steps.

Steps are counted in a buffer (checkpointed) as training forward passes, so with
``train.grad_accum = n`` the counters of freezing and queue start advance n times per optimizer step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from selfsup.components import BuildContext, TaskOutput
from selfsup.lib import cluster_entropy, gather_with_grad, world_size
from selfsup_vision.tasks.simclr import ProjectionHead


@torch.no_grad()
def sinkhorn(
    scores: torch.Tensor,  # [B, K] this rank's samples scored against the prototypes
    epsilon: float,
    iterations: int,
    *,
    shared: torch.Tensor | None = None,  # [M, K] extra samples every rank holds identically (the queue)
) -> torch.Tensor:
    """Soft codes ``[B, K]`` for ``scores``: each row sums to 1 and, over the whole (global) batch,
    every prototype receives the same total mass (approximately, after a few iterations).

    Q = exp(scores / epsilon) is alternately rescaled so that each prototype's row sums to 1/K
    and each sample's column to 1/N (N samples in all), then scaled by N. Under
    ``torch.distributed`` the prototype sums are all-reduced, so the codes are those of one
    process holding every rank's ``scores``; ``shared`` rows take part once (not once per rank)
    and their codes are dropped."""
    dtype = torch.float32 if scores.device.type == "mps" else torch.float64  # float64: no underflow for small epsilon
    with torch.autocast(scores.device.type, enabled=False):
        out_dtype, scores = scores.dtype, scores.to(dtype)
        shared = scores.new_zeros((0, scores.shape[1])) if shared is None else shared.to(dtype)
        distributed = world_size() > 1
        k = scores.shape[1]
        n = scores.shape[0] * world_size() + shared.shape[0]  # samples in the global problem

        # Subtracting a per-prototype constant cancels in the first row normalisation; it keeps
        # exp() finite for any epsilon (the largest entry of every row becomes 1), and float64
        # keeps the other entries from underflowing to 0 down to epsilon ~ 0.003 for cosine scores.
        shift = torch.cat([scores, shared]).max(dim=0).values  # [K]
        if distributed:
            dist.all_reduce(shift, op=dist.ReduceOp.MAX)
        q = torch.exp((scores - shift) / epsilon).T  # [K, B]
        q_shared = torch.exp((shared - shift) / epsilon).T  # [K, M]

        for _ in range(iterations):
            rows = q.sum(dim=1, keepdim=True)  # [K, 1]: each prototype's mass over the batch
            if distributed:
                dist.all_reduce(rows)
            rows = rows + q_shared.sum(dim=1, keepdim=True)
            q, q_shared = q / (rows * k), q_shared / (rows * k)  # every prototype: 1/K
            q = q / (q.sum(dim=0, keepdim=True) * n)  # every sample: 1/N
            q_shared = q_shared / (q_shared.sum(dim=0, keepdim=True) * n)
        return (q * n).T.to(out_dtype)  # [B, K], rows sum to 1


def swav_loss(
    scores: list[torch.Tensor],  # V tensors [B, K]: global views first, then local views
    codes: list[torch.Tensor],  # A tensors [B, K]: codes of views 0..A-1 (A <= number of global views)
    temperature: float,
) -> torch.Tensor:
    """Swapped prediction: for each assigned view i, the mean over every other view v of the cross
    entropy ``-sum_k q_i log softmax(scores_v / temperature)``, averaged over the assigned views."""
    with torch.autocast(scores[0].device.type, enabled=False):
        log_p = [F.log_softmax(s.float() / temperature, dim=1) for s in scores]  # V x [B, K]
        total = scores[0].new_zeros((), dtype=torch.float32)
        for i, q in enumerate(codes):
            others = [-(q * log_p[v]).sum(dim=1).mean() for v in range(len(scores)) if v != i]
            total = total + torch.stack(others).mean()
        return total / len(codes)


class SwAV(nn.Module):
    """The SwAV task: ``batch["global_views"]: [B, G, C, gs, gs]`` and optional
    ``batch["local_views"]: [B, L, C, ls, ls]`` (the ``multi_crop`` augmentation)."""

    def __init__(self, options: Any, in_dim: int):
        super().__init__()
        self.o = options
        self.head = ProjectionHead(in_dim, options.projection_hidden_dim, options.projection_dim,
                                   options.projection_layers)
        self.prototypes = nn.Linear(options.projection_dim, options.prototypes, bias=False)  # weight [K, P]
        with torch.no_grad():
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # optimizer steps so far (from on_step)
        if options.queue_length:
            # Identical on every rank (it holds the gathered projections of all ranks), so DDP's
            # broadcast of buffers from rank 0 changes nothing and a checkpoint holds all of it.
            self.register_buffer("queue",
                                 torch.zeros(options.assign_views, options.queue_length, options.projection_dim))
            self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))  # valid rows at the front

    def project(self, backbone: nn.Module, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """Groups of views ``[B, V, C, H, W]`` (one resolution each) -> L2-normalised ``z`` per
        view, ``V x [B, P]``. One backbone forward per resolution, one head forward for all."""
        b = views[0].shape[0]
        feats = [backbone(v.transpose(0, 1).flatten(0, 1)) for v in views]  # [V*B, D] each, view-major
        z = F.normalize(self.head(torch.cat(feats)), dim=1)  # [sum V * B, P]
        return list(z.split(b))  # [B, P] per view

    def on_step(self, step: int) -> None:
        """The optimizer step about to run (the loop calls this once per step, whatever grad_accum
        is): prototype freezing and the queue's start count optimizer steps, not forward passes."""
        self.steps.fill_(step)

    def forward(self, batch: dict[str, Any], backbone: nn.Module) -> TaskOutput:
        o = self.o
        global_views = batch["global_views"]  # [B, G, C, gs, gs]
        local_views = batch.get("local_views")  # [B, L, C, ls, ls] or None
        if global_views.shape[1] < o.assign_views:
            raise ValueError(f"swav: assign_views = {o.assign_views} but the batch has {global_views.shape[1]} global "
                             f"views")
        groups = [global_views] + ([local_views] if local_views is not None and local_views.shape[1] else [])

        with torch.no_grad():  # prototypes on the unit sphere before every step, as in the paper
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        weight = self.prototypes.weight  # [K, P]
        if self.training and int(self.steps) < o.freeze_prototypes_steps:
            # Zero gradient rather than none: DDP expects a gradient for every parameter.
            weight = weight.detach() + 0.0 * weight

        z = self.project(backbone, groups)  # V x [B, P]
        with torch.autocast(weight.device.type, enabled=False):
            scores = [zv.float() @ weight.float().T for zv in z]  # V x [B, K]

        use_queue = o.queue_length and int(self.steps) >= o.queue_start_step and int(self.queue_filled) > 0
        codes = []
        with torch.no_grad():
            for i in range(o.assign_views):
                # [M, K]
                shared = self.queue[i, : int(self.queue_filled)] @ self.prototypes.weight.T if use_queue else None
                codes.append(sinkhorn(scores[i].detach(), o.sinkhorn_epsilon, o.sinkhorn_iterations, shared=shared))
        loss = swav_loss(scores, codes, o.temperature)

        if self.training and o.queue_length:
            self._enqueue(z[: o.assign_views])

        with torch.no_grad():
            assignment = [q.argmax(dim=1) for q in codes]  # A x [B]
            used = torch.zeros(o.prototypes, device=loss.device).index_fill_(0, torch.cat(assignment), 1.0)
            metrics = {
                "prototypes_used": used.mean(),  # fraction of prototypes that are some sample's argmax code
                "code_confidence": torch.stack([q.max(dim=1).values.mean() for q in codes]).mean(),
            }
            if len(codes) > 1:
                metrics["assignment_agreement"] = (assignment[0] == assignment[1]).float().mean()
        return TaskOutput(loss=loss, metrics=metrics)

    def health(self, batch: dict[str, Any], backbone: nn.Module) -> dict[str, float]:
        """Training-health extra (called by the core in eval mode without gradients): how evenly the
        probe's first global views spread over the prototypes they score highest (argmax of the scores,
        not of Sinkhorn's codes, which are equipartitioned by construction): ``cluster_entropy`` (1.0:
        every prototype equally often; below 1 anyway when there are fewer samples than prototypes)
        and ``cluster_perplexity`` (prototypes in use)."""
        z = self.project(backbone, [batch["global_views"][:, :1]])[0]  # [B, P]
        weight = F.normalize(self.prototypes.weight.float(), dim=1)  # [K, P]
        entropy, perplexity = cluster_entropy((z.float() @ weight.T).argmax(dim=1), self.o.prototypes)
        return {"cluster_entropy": float(entropy), "cluster_perplexity": float(perplexity)}

    @torch.no_grad()
    def _enqueue(self, z: list[torch.Tensor]) -> None:
        """Push the assigned views' projections (``A x [B, P]``, from every rank) at the front."""
        new = torch.stack([gather_with_grad(zv.detach().float()) for zv in z])  # [A, W*B, P]
        n = min(new.shape[1], self.queue.shape[1])
        self.queue[:, n:] = self.queue[:, :-n].clone()
        self.queue[:, :n] = new[:, :n]
        self.queue_filled.fill_(min(int(self.queue_filled) + n, self.queue.shape[1]))


def build(options: Any, context: BuildContext) -> SwAV:
    return SwAV(options, context.backbone.output_dim)
