"""Pseudo-label self-training in rounds: the ``pseudo_labels`` feedback (``[rounds.feedback]``).

After each round, the backbone embeds the feedback's data (frozen, in order, through the
feedback's ``augment`` pipeline) and k-means clusters the embeddings into ``clusters``
pseudo-classes, as DeepCluster does before each epoch (Caron, Bojanowski, Joulin and Douze, Deep
Clustering for Unsupervised Learning of Visual Features, ECCV 2018). Each sample's cluster id becomes
its pseudo-label (the sample field ``field``), which a task of the next round learns to predict
(Lee, Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method for Deep Neural Networks,
ICML 2013 workshop): a ``finetune`` task with a ``classification`` head whose ``target`` is the field,
on augmented inputs, is the student of Noisy Student (Xie, Luong, Hovy and Le, Self-training with
Noisy Student improves ImageNet classification, CVPR 2020): labels from clean inputs, learnt from
noised ones.

Refined, not redrawn: from the second feedback on, k-means starts from the means of the previous
pseudo-classes in the new embedding space (``kmeans(init=...)``), so pseudo-label ``j`` keeps its
meaning from round to round and the head trained on it stays valid (DeepCluster, which redraws,
must reset its classifier after every clustering).

Curriculum (the sampling weights of the next round), for sample ``i`` in cluster ``c(i)``:

* confidence ``p_i``: the softmax over its similarities to the centroids (cosine when
  ``spherical``, else minus the squared distance), at ``temperature``, taken at its own cluster;
* ``w_i = p_i ** confidence_power``, 0 when ``p_i < min_confidence``;
* times ``unstable_weight`` when its pseudo-label changed since the previous round (consistent
  samples are trusted more: a sample that hops between clusters lies between them);
* divided by the size of ``c(i)`` when ``balanced`` (every pseudo-class is drawn equally often);
* scaled to mean 1.

Metrics (``feedback/<name>`` in the round record): ``clusters_used``, ``cluster_entropy`` (1.0:
equal sizes), ``confidence_mean``, ``inertia``, ``changed`` (the share of pseudo-labels that changed,
from the second feedback on) and, when the data has true labels under ``measure_labels`` (read for
this measurement only, never for training), ``nmi_labels`` and ``purity`` of the pseudo-labels.

Only embeddings are used: the feedback works for any modality whose backbone has ``embed``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F

from selfsup.builtins.options import PseudoLabelOptions
from selfsup.components import BuildContext, FeedbackContext, FeedbackResult
from selfsup.lib.clustering import kmeans, normalized_mutual_info, purity
from selfsup.lib.data import scan_targets
from selfsup.lib.health import cluster_entropy


class PseudoLabels:
    """The ``pseudo_labels`` feedback component (see the module docstring)."""

    def __init__(self, options: PseudoLabelOptions):
        self.options = options

    def run(self, context: FeedbackContext) -> FeedbackResult:
        o = self.options
        feats, labels = context.features()  # [N, D] on the CPU, in the data's order
        n, k = feats.shape[0], o.clusters
        if k > n:
            raise ValueError(f"clusters = {k} is more than the {n} samples of the data")
        x = feats.to(context.device).float()
        if o.spherical:
            x = F.normalize(x, dim=1)
        previous = self._previous(context, n)
        init = None if previous is None else self._means(x, previous, k, context.generator)
        seed = int(torch.randint(2**62, (1,), generator=context.generator))
        result = kmeans(x, k, iters=o.kmeans_iters, seed=seed, spherical=o.spherical, init=init)
        assigned = result.assignments.to(x.device)  # [N], every cluster non-empty
        centroids = F.normalize(result.centroids, dim=1) if o.spherical else result.centroids  # [K, D]
        similarity = x @ centroids.T if o.spherical else -torch.cdist(x, centroids).square()  # [N, K]
        confidence = (similarity / o.temperature).softmax(dim=1).gather(1, assigned[:, None]).squeeze(1)  # [N]

        weights = confidence.double() ** o.confidence_power
        weights[confidence < o.min_confidence] = 0.0
        metrics: dict[str, float] = {}
        if previous is not None:
            changed = assigned.cpu() != previous
            weights[changed.to(weights.device)] *= o.unstable_weight
            metrics["changed"] = float(changed.double().mean())
        sizes = torch.bincount(assigned, minlength=k)  # [K]
        if o.balanced:
            weights = weights / sizes[assigned].double()
        if float(weights.sum()) <= 0:
            raise ValueError(f"every sample got weight 0 (min_confidence = {o.min_confidence} is above every "
                             f"confidence, highest {float(confidence.max()):.3g}); lower min_confidence")
        weights = weights * n / weights.sum()

        assigned, confidence = assigned.cpu(), confidence.float().cpu()
        entropy, _ = cluster_entropy(assigned, k)
        metrics.update(clusters_used=float((sizes > 0).sum()), cluster_entropy=float(entropy),
                       confidence_mean=float(confidence.mean()), inertia=float(result.inertia))
        truth = self._truth(context, labels)
        if truth is not None:
            metrics.update(nmi_labels=normalized_mutual_info(assigned, truth), purity=purity(assigned, truth))
        fields = {o.field: assigned.long()}
        if o.confidence_field is not None:
            fields[o.confidence_field] = confidence
        return FeedbackResult(weights=weights.cpu(), fields=fields, metrics=metrics)

    def _previous(self, context: FeedbackContext, n: int) -> torch.Tensor | None:
        """The pseudo-labels the round just trained on (of the data's own ``n`` samples), if any."""
        before = context.previous.fields.get(self.options.field) if context.previous is not None else None
        if before is None:
            return None
        before = torch.as_tensor(before).long().cpu()[:n]
        if before.shape != (n,) or int(before.max()) >= self.options.clusters or int(before.min()) < 0:
            raise ValueError(f"the previous round's {self.options.field!r} does not hold {n} ids below "
                             f"clusters = {self.options.clusters} (was the recipe changed between rounds?)")
        return before

    @staticmethod
    def _means(x: torch.Tensor, previous: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        """``[K, D]``: the mean embedding of each previous pseudo-class (a random sample for one left empty)."""
        ids = previous.to(x.device)
        sums = torch.zeros(k, x.shape[1], device=x.device, dtype=x.dtype).index_add_(0, ids, x)
        counts = torch.bincount(ids, minlength=k)
        means = sums / counts.clamp_min(1)[:, None].to(x.dtype)
        for empty in torch.nonzero(counts == 0).flatten().tolist():
            means[empty] = x[int(torch.randint(x.shape[0], (1,), generator=generator))]
        return means

    def _truth(self, context: FeedbackContext, labels: torch.Tensor | None) -> torch.Tensor | None:
        """True labels for measuring only (``measure_labels``), or None with a warning when absent."""
        key = self.options.measure_labels
        if key is None:
            return None
        if key == "label" and labels is not None:
            return labels
        try:
            values = scan_targets(context.data, key)
            return torch.as_tensor([int(v) for v in values], dtype=torch.long)
        except (ValueError, TypeError) as err:
            warnings.warn(f"pseudo_labels: the pseudo-labels are not measured against {key!r} ({err}); leave "
                          f"measure_labels unset to not measure", stacklevel=2)
            return None


def build(options: PseudoLabelOptions, context: BuildContext) -> Any:
    return PseudoLabels(options)
