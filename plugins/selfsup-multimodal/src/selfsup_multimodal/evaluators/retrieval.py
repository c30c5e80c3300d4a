"""Cross-modal retrieval: recall@k in both directions on held-out pairs.

Each held-out pair is embedded on both sides through a cross-modal task's projections
(``CLIP.embed``); for every query of one side, the other side's items are ranked by cosine
similarity. A query scores at k when one of the k nearest items is a hit: its own partner
(``match = "pair"``), an item with the same text tokens (``"text"``: "seven" spoken by another
voice is as right as its own transcript), or with the same label (``"label"``). Chance is the
expected recall of a random ranking with the same hits, reported beside (``chance_r@k``).
"""

from __future__ import annotations

from math import comb
from typing import Any

import torch

from selfsup.components import BuildContext, EvalContext
from selfsup.lib import frozen, to_device
from selfsup_multimodal.tasks.clip import same_text


def hits_matrix(ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None, match: str) -> torch.Tensor:
    """``[N, N]`` bool: which items count as right answers for each query (``ids``/``mask`` ``[N, L]``:
    every item's text tokens)."""
    n = ids.shape[0]
    if match == "pair":
        return torch.eye(n, dtype=torch.bool)
    if match == "label":
        if labels is None:
            raise ValueError("retrieval: match = 'label' needs samples with a 'label'")
        return labels[:, None] == labels[None, :]
    return same_text(ids, mask, ids, mask)


def recall_at(similarity: torch.Tensor, hits: torch.Tensor, k: int) -> float:
    """Fraction of queries (rows) with a hit among their k most similar items."""
    top = similarity.topk(min(k, similarity.shape[1]), dim=1).indices  # [N, k]
    return hits.gather(1, top).any(dim=1).float().mean().item()


def chance_recall(hits: torch.Tensor, k: int) -> float:
    """Expected recall@k of a uniformly random ranking: 1 - C(N - m, k) / C(N, k) per query."""
    n = hits.shape[1]
    k = min(k, n)
    return sum(1 - comb(n - int(m), k) / comb(n, k) for m in hits.sum(dim=1).tolist()) / hits.shape[0]


class Retrieval:
    def __init__(self, options: Any):
        self.o = options

    @torch.no_grad()
    def evaluate(self, context: EvalContext) -> dict[str, float]:
        o = self.o
        tasks = context.tasks or {}
        if o.task not in tasks:
            raise ValueError(f"retrieval: no task {o.task!r} in the run (tasks: {', '.join(tasks) or 'none'})")
        task = tasks[o.task]
        backbones = context.backbone if isinstance(context.backbone, dict) else None
        if backbones is None or set(backbones) != set(task.roles):
            raise ValueError(f"retrieval: give the evaluator the task's backbones, "
                             f"backbone = {{ {', '.join(task.roles)} }}")
        source = context.data
        a_role, b_role = task.roles
        a, b, ids, masks, labels = [], [], [], [], []
        with frozen(task, *backbones.values()):
            for start in range(0, len(source), context.batch_size):
                batch = source.collate([source[i] for i in range(start, min(start + context.batch_size, len(source)))])
                on_device = to_device(batch, context.device)
                a.append(task.embed(a_role, backbones[a_role], on_device).cpu())
                b.append(task.embed(b_role, backbones[b_role], on_device).cpu())
                ids.append(batch["input_ids"])
                masks.append(batch["attention_mask"])
                if "label" in batch:
                    labels.append(batch["label"])
        length = max(t.shape[1] for t in ids)
        padded = [torch.cat([torch.nn.functional.pad(t, (0, length - t.shape[1])) for t in ts]) for ts in (ids, masks)]
        hits = hits_matrix(*padded, torch.cat(labels) if len(labels) == len(a) else None, o.match)  # [N, N]
        sim = torch.cat(a) @ torch.cat(b).T  # [N, N]: a-side queries x b-side items
        metrics: dict[str, float] = {}
        for k in o.ks:
            metrics[f"{a_role}_to_{b_role}_r@{k}"] = recall_at(sim, hits, k)
            metrics[f"{b_role}_to_{a_role}_r@{k}"] = recall_at(sim.T, hits.T, k)
            metrics[f"chance_r@{k}"] = chance_recall(hits, k)
        metrics["pairs"] = float(sim.shape[0])
        return metrics


def build(options: Any, context: BuildContext) -> Retrieval:
    return Retrieval(options)
