"""DeepCluster.

Caron, Bojanowski, Joulin, Douze, Deep Clustering for Unsupervised Learning of Visual Features,
ECCV 2018.

Before every epoch (``on_epoch_start``; every ``recluster_every`` epochs on small data sets,
where one pass is too few steps to fit a new classifier) the backbone's features of the whole
training set (no augmentation, eval mode) are PCA-whitened (optional), L2-normalised and
clustered with k-means; the cluster ids become pseudo-labels. The epoch then trains backbone + MLP + a linear classifier
to predict the pseudo-label of each augmented image with cross-entropy. The classifier's weights
are re-initialised after each clustering (cluster ids are arbitrary, so the old classifier means
nothing), and with ``balanced`` images are sampled uniformly over clusters, which keeps the
trivial solution (one huge cluster) from dominating.

Pseudo-labels, cluster sizes and the NMI between consecutive clusterings are buffers: they are
checkpointed, so a run resumed mid-epoch keeps training against the labels it had.

DDP: every rank clusters the full data set itself, with the same k-means seed (run seed and
epoch) and the same weights, so all ranks compute the same pseudo-labels; the rank-0 labels are
then broadcast anyway, because batch-norm running statistics (updated by each rank's own
batches, not synchronised by DDP until the next forward) can make features differ in the last
bits. The classifier reset draws from a generator seeded by the run seed and epoch, identical on
every rank (the training-time RNG is seeded per rank), so parameters stay in sync.

Note: the optimizer is not rebuilt after a reset (the loop owns it); AdamW's moments of the
classifier carry over and fade after a few steps.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.components import BuildContext, EpochContext, TaskOutput
from selfsup.lib import cluster_entropy, kmeans, normalized_mutual_info

PCA_EPS = 1e-5  # added to the eigenvalues before whitening


def pca_whiten(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x [N, D]`` -> ``[N, dim]``: centred, projected on the ``dim`` leading principal
    directions and scaled to unit variance along each (faiss' PCAMatrix with eigen_power -0.5)."""
    x = x.double()
    x = x - x.mean(dim=0, keepdim=True)  # [N, D]
    cov = x.T @ x / max(x.shape[0] - 1, 1)  # [D, D]
    eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
    eigvals, eigvecs = eigvals.flip(0)[:dim], eigvecs.flip(1)[:, :dim]  # [dim], [D, dim]
    return (x @ eigvecs / (eigvals.clamp_min(0) + PCA_EPS).sqrt()).float()  # [N, dim]


def _mlp(in_dim: int, hidden: int, out: int, layers: int) -> nn.Sequential:
    """``layers`` x (Linear, ReLU): ``[B, in_dim] -> [B, out]`` (DeepCluster's classifier MLP
    before its top layer)."""
    mods: list[nn.Module] = []
    dim = in_dim
    for i in range(layers):
        nxt = out if i == layers - 1 else hidden
        mods += [nn.Linear(dim, nxt), nn.ReLU(inplace=True)]
        dim = nxt
    return nn.Sequential(*mods)


def _is_map_style(data: Any) -> bool:
    return hasattr(data, "__len__") and hasattr(data, "__getitem__")


class DeepClusterTask(nn.Module):
    """MLP + re-initialised linear classifier over ``clusters`` pseudo-classes; pseudo-labels in
    buffers."""

    def __init__(self, options: Any, backbone: nn.Module, data: Any, seed: int):
        super().__init__()
        if not _is_map_style(data):
            raise ValueError("DeepCluster needs a map-style data source (known length): it keeps a pseudo-label per "
                             "sample")
        n = len(data)
        if options.clusters > n:
            raise ValueError(f"clusters = {options.clusters} is more than the {n} samples of the data source")
        if options.pca_dim is not None and options.pca_dim > backbone.output_dim:
            raise ValueError(f"pca_dim = {options.pca_dim} exceeds the backbone's output_dim {backbone.output_dim}")
        self.options = options
        self.data = data  # for clustering outside the training loop (see forward)
        self.seed = seed
        self.mlp = _mlp(backbone.output_dim, options.projection_hidden_dim, options.projection_dim,
                        options.projection_layers)
        self.classifier = nn.Linear(options.projection_dim, options.clusters)
        self.register_buffer("pseudo_labels", torch.zeros(n, dtype=torch.long))  # [N]
        self.register_buffer("cluster_sizes", torch.zeros(options.clusters, dtype=torch.long))  # [K]
        self.register_buffer("clusterings", torch.zeros((), dtype=torch.long))  # how many so far
        self.register_buffer("nmi_previous", torch.zeros(()))  # NMI(this clustering, the one before)
        self.register_buffer("empty_reassigned", torch.zeros((), dtype=torch.long))  # in the last k-means
        self.reset_classifier(torch.Generator().manual_seed(seed))

    # -------------------------------------------------------------------------- clustering

    @torch.no_grad()
    def reset_classifier(self, generator: torch.Generator) -> None:
        """Fresh top layer, as the paper's code: weights N(0, 0.01), bias 0."""
        w = torch.randn(self.classifier.weight.shape, generator=generator) * 0.01
        self.classifier.weight.copy_(w)
        self.classifier.bias.zero_()

    @torch.no_grad()
    def cluster(self, backbone: nn.Module, *, device: torch.device, seed: int, epoch: int, pipeline: list[Any]) -> None:
        """Features of the whole data set -> (PCA-whitening) -> L2-normalise -> k-means ->
        pseudo-labels; then reset the classifier."""
        from selfsup.lib import extract_features

        o = self.options
        feats, _ = extract_features(
            backbone, self.data, pipeline=pipeline, batch_size=o.feature_batch_size, device=device, seed=seed
        )  # [N, D] float32 on CPU
        x = feats.to(device)
        if o.pca_dim is not None:
            x = pca_whiten(x, o.pca_dim)  # [N, pca_dim]
        x = F.normalize(x, dim=1)
        result = kmeans(x, o.clusters, iters=o.kmeans_iters, seed=seed * 100_003 + epoch)
        labels = result.assignments.to(self.pseudo_labels.device)  # [N]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(labels, src=0)  # identical on every rank (see the module docstring)
        sizes = torch.bincount(labels, minlength=o.clusters)  # [K]
        assert bool((sizes > 0).all()), "k-means left a cluster empty"
        if int(self.clusterings) > 0:
            self.nmi_previous.fill_(normalized_mutual_info(self.pseudo_labels.cpu(), labels.cpu()))
        self.pseudo_labels.copy_(labels)
        self.cluster_sizes.copy_(sizes)
        self.empty_reassigned.fill_(result.empty_reassigned)
        self.clusterings += 1
        self.reset_classifier(torch.Generator().manual_seed(seed * 100_003 + epoch))

    def on_epoch_start(self, context: EpochContext) -> None:
        """Re-cluster before every ``recluster_every``-th epoch (every epoch by default, as in the
        paper). Features are taken without random augmentation: only the task pipeline's
        ``normalize`` steps are applied, so the backbone sees inputs on the scale it trains on."""
        from selfsup_vision.augment.transforms import Normalize

        if context.epoch % self.options.recluster_every and int(self.clusterings) > 0:
            return
        pipeline = [step for step in (context.augment or []) if isinstance(step, Normalize)]
        self.cluster(context.backbone, device=context.device, seed=context.seed, epoch=context.epoch, pipeline=pipeline)

    def sample_weights(self, epoch: int) -> torch.Tensor | None:
        """``[N]`` inverse cluster sizes (every cluster is drawn equally often) when ``balanced``."""
        if not self.options.balanced or int(self.clusterings) == 0:
            return None
        sizes = self.cluster_sizes.double().cpu()  # [K]
        return 1.0 / sizes[self.pseudo_labels.cpu()]  # [N]

    def health(self, batch: dict[str, Any], backbone: nn.Module) -> dict[str, float]:
        """Training-health extra (called by the core): the balance of the current clustering of the
        whole data set (not of the probe batch): ``cluster_entropy`` of the pseudo-label counts (1.0:
        equal clusters, 0.0: one cluster holds every sample) and ``cluster_perplexity``; nothing
        before the first clustering."""
        if int(self.clusterings) == 0:
            return {}
        entropy, perplexity = cluster_entropy(self.pseudo_labels, self.options.clusters)
        return {"cluster_entropy": float(entropy), "cluster_perplexity": float(perplexity)}

    # -------------------------------------------------------------------------- training

    def forward(self, batch: dict[str, Any], backbone: nn.Module) -> TaskOutput:
        if int(self.clusterings) == 0:
            # outside the training loop (which calls on_epoch_start first): cluster once now
            self.cluster(backbone, device=batch["image"].device, seed=self.seed, epoch=0, pipeline=[])
        feats = backbone(batch["image"])  # [B, D]
        logits = self.classifier(self.mlp(feats))  # [B, K]
        target = self.pseudo_labels[torch.as_tensor(batch["index"], device=logits.device)]  # [B]
        loss = F.cross_entropy(logits.float(), target)
        accuracy = (logits.argmax(dim=1) == target).float().mean()
        return TaskOutput(loss=loss, metrics={"accuracy": accuracy.detach(), "nmi_previous": self.nmi_previous.clone()})


def build(options: Any, context: BuildContext) -> DeepClusterTask:
    return DeepClusterTask(options, context.backbone, context.data, context.seed)
