"""HuBERT pre-training.

Hsu, Bolte, Tsai, Lakhotia, Salakhutdinov, Mohamed, HuBERT: Self-Supervised Speech Representation
Learning by Masked Prediction of Hidden Units, IEEE/ACM TASLP 2021.

Every frame of the training set gets a discrete target, its k-means cluster id: iteration 1
clusters MFCCs (13 coefficients with deltas and delta-deltas, 10 ms frames, each backbone frame
taking the MFCC frame nearest its centre); iteration 2 clusters the features of one layer of the
iteration-1 model (``targets = {checkpoint = <run or export dir>, layer = n}``), or, to continue
pre-training a published model (the backbone's ``pretrained = "torchaudio:HUBERT_BASE"``), of one
layer of the task's own backbone before its first step (``targets = {layer = n}``). The backbone's
latents are span-masked (mask embedding in the transformer's input, ``mask_prob = 0.8``, spans of
10 frames, as the paper) and the transformer's outputs predict the targets of the masked frames
with cross-entropy (``unmasked_weight`` adds the unmasked frames; the paper's best setting
ignores them). Logits are cosine similarities between the projected output and a learned
embedding per cluster, divided by 0.1 (the paper's ``sim(A o_t, e_c) / tau``), or a linear layer.

The targets are computed once per task, when the first epoch starts (``on_epoch_start``; or at the
first forward outside the training loop), on the data source without augmentation, and kept in
buffers (``targets`` flat over all frames, ``offsets`` per sample index) so they are checkpointed
and a resumed run trains against the same targets. k-means is seeded by the run seed. Because the
targets are per frame of the *unaugmented* audio, augmentations that change the length or timing
(``random_crop``, ``speed_perturb``) cannot be used with this task; gain and noise can.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.models.wav2vec2.components import GradMultiply

from selfsup.components import BuildContext, EpochContext, TaskOutput
from selfsup.lib import cluster_entropy, frozen, kmeans
from selfsup_speech.data.collate import pad_audio
from selfsup_speech.features import MFCCFrames, align_frames
from selfsup_speech.tasks.masking import batch_generator, compute_span_mask
from selfsup_speech.tasks.options import HuBERTOptions

KMEANS_SALT = 100_003  # k-means seed = run seed * salt + 17: fixed per run, independent of the epoch


def nearest_centroids(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """``x [N, D]``, ``centroids [K, D]`` -> ``[N]`` index of the nearest centroid."""
    out = []
    for start in range(0, x.shape[0], chunk):
        out.append(torch.cdist(x[start:start + chunk], centroids).argmin(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=x.device)


class HuBERTTask(nn.Module):
    """Prediction head and per-frame k-means targets (buffers) of HuBERT."""

    def __init__(self, options: HuBERTOptions, backbone: Any, data: Any, seed: int):
        super().__init__()
        for attr in ("latents", "contextualize", "num_frames", "frame_rate", "frame_offset"):
            if not hasattr(backbone, attr):
                raise ValueError(f"hubert needs a speech backbone with latents/contextualize/num_frames/frame_rate "
                                 f"(wav2vec2_encoder or logmel_encoder); {type(backbone).__name__} has no {attr}")
        if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
            raise ValueError("hubert needs a map-style data source (known length): it keeps targets per sample")
        o = self.options = options
        if o.targets != "mfcc" and o.targets.checkpoint is None and not getattr(backbone, "pretrained_record", None):
            raise ValueError("hubert targets = {layer = %d} without checkpoint clusters the task's own backbone before "
                             "training, which needs pretrained weights: set the backbone's pretrained option (e.g. "
                             "torchaudio:HUBERT_BASE), or give targets.checkpoint = <run or export dir> (also for "
                             "a backbone started with [backbones.<name>.init]: that run)" % o.targets.layer)
        if o.targets != "mfcc" and o.targets.checkpoint is not None and not o.targets.checkpoint.exists():
            raise FileNotFoundError(f"hubert targets.checkpoint {o.targets.checkpoint} does not exist: train the "
                                    f"earlier iteration first (e.g. the hubert-quickstart recipe writes "
                                    f"runs/hubert-quickstart)")
        self.data = data
        self.seed = seed
        self.sample_rate = int(getattr(data, "sample_rate", getattr(backbone, "sample_rate", 16000)))
        backbone_rate = getattr(backbone, "sample_rate", self.sample_rate)
        if backbone_rate != self.sample_rate:
            raise ValueError(f"the data is at {self.sample_rate} Hz but the backbone expects {backbone_rate} Hz")
        if o.head == "cosine":
            self.final_proj = nn.Linear(backbone.output_dim, o.final_dim)
            self.code_embeddings = nn.Parameter(torch.empty(o.clusters, o.final_dim).uniform_())  # [K, final_dim]
        else:
            self.final_proj = nn.Linear(backbone.output_dim, o.clusters)
        n = len(data)
        self.register_buffer("targets", torch.zeros(0, dtype=torch.long))  # [total frames] cluster ids
        # [N + 1] sample i: offsets[i]:offsets[i+1]
        self.register_buffer("offsets", torch.zeros(n + 1, dtype=torch.long))
        self.register_buffer("cluster_sizes", torch.zeros(o.clusters, dtype=torch.long))  # [K]
        self.register_buffer("clustered", torch.zeros((), dtype=torch.long))  # 1 once targets exist
        # optimizer steps (from on_step; seeds masks)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        # the targets' length (frames in the data set) is only known once computed: take the saved size
        key = prefix + "targets"
        if key in state_dict:
            self.targets = torch.zeros_like(state_dict[key], device=self.targets.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return pad_audio(samples)

    def on_step(self, step: int) -> None:
        """The optimizer step about to run (called by the loop once per step): seeds the masks."""
        self.updates.fill_(step)

    # -------------------------------------------------------------------------- targets

    @torch.no_grad()
    def target_features(self, backbone: Any, device: torch.device) -> list[torch.Tensor]:
        """Per sample ``[n_i, d]`` features aligned to the backbone's frames (``n_i`` of them)."""
        o = self.options
        if o.targets == "mfcc":
            source = MFCCFrames(self.sample_rate, o.n_mfcc)
            rate, offset = source.frame_rate, source.frame_offset
            model = None
        elif o.targets.checkpoint is None:  # the task's own (pretrained) backbone, before any step
            model = backbone
            rate, offset = model.frame_rate, model.frame_offset
        else:
            from selfsup_speech.tasks.pretrained import load_backbone

            model = load_backbone(o.targets.checkpoint, o.targets.backbone).to(device)
            rate, offset = model.frame_rate, model.frame_offset
        out: list[torch.Tensor] = []
        n = len(self.data)
        for start in range(0, n, o.feature_batch_size):
            samples = [self.data[i] for i in range(start, min(n, start + o.feature_batch_size))]
            lengths = torch.tensor([torch.as_tensor(s["audio"]).numel() for s in samples])
            frames = backbone.num_frames(lengths).tolist()
            if model is None:
                feats = [source(s["audio"]) for s in samples]
            else:
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in pad_audio(samples).items()}
                layers = model.layers(batch)
                if not 0 <= o.targets.layer < len(layers):
                    where = f"the model at {o.targets.checkpoint}" if o.targets.checkpoint else "the task's backbone"
                    raise ValueError(f"targets.layer = {o.targets.layer}, but {where} has layers 0..{len(layers) - 1}")
                states = layers[o.targets.layer].float()  # [B, F, D]
                valid = model.num_frames(lengths.to(device)).clamp_max(states.shape[1]).tolist()
                feats = [states[i, : valid[i]] for i in range(len(samples))]
            for f, count in zip(feats, frames):
                out.append(align_frames(f.to(device), rate, offset, int(count), backbone.frame_rate,
                                        backbone.frame_offset))
        return out

    @torch.no_grad()
    def compute_targets(self, backbone: Any, device: torch.device, seed: int) -> None:
        """Features of every frame -> (standardise) -> k-means on at most ``kmeans_max_frames``
        of them -> every frame's nearest centroid."""
        o = self.options
        with frozen(backbone):
            per_sample = self.target_features(backbone, device)
        counts = torch.tensor([f.shape[0] for f in per_sample], dtype=torch.long)
        x = torch.cat(per_sample).float()  # [total, d]
        if o.standardize:
            x = (x - x.mean(0)) / x.std(0).clamp_min(1e-5)
        if x.shape[0] < o.clusters:
            raise ValueError(f"clusters = {o.clusters} is more than the {x.shape[0]} frames of the data set")
        g = torch.Generator().manual_seed(seed * KMEANS_SALT + 17)
        fit = x
        if x.shape[0] > o.kmeans_max_frames:
            fit = x[torch.randperm(x.shape[0], generator=g)[: o.kmeans_max_frames].to(x.device)]
        result = kmeans(fit, o.clusters, iters=o.kmeans_iters, seed=seed * KMEANS_SALT + 17)
        labels = nearest_centroids(x, result.centroids.to(x.device)).to(self.targets.device)  # [total]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(labels, src=0)  # identical targets on every rank
        self.targets = labels
        self.offsets.copy_(torch.cat([torch.zeros(1, dtype=torch.long),
                                      torch.cumsum(counts, 0)]).to(self.offsets.device))
        self.cluster_sizes.copy_(torch.bincount(labels, minlength=o.clusters))
        self.clustered.fill_(1)

    def on_epoch_start(self, context: EpochContext) -> None:
        """Compute the targets at the start of the first epoch (later epochs keep them)."""
        if int(self.clustered) == 0:
            self.compute_targets(context.backbone, context.device, context.seed)

    def batch_targets(self, index: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """``[B, F]`` targets of the batch's samples (``-100`` at padding)."""
        out = torch.full(padding.shape, -100, dtype=torch.long, device=padding.device)
        valid = (~padding).sum(1).tolist()
        for b, i in enumerate(torch.as_tensor(index).long().tolist()):
            start, end = int(self.offsets[i]), int(self.offsets[i + 1])
            if end - start != valid[b]:
                raise ValueError(
                    f"hubert: sample {i} has {end - start} target frames but the backbone gives {valid[b]}: targets "
                    f"belong to the unaugmented audio, so augmentations that change its length (random_crop, "
                    f"speed_perturb) cannot be used with this task")
            out[b, : end - start] = self.targets[start:end]
        return out

    # -------------------------------------------------------------------------- training

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """``[..., D]`` -> ``[..., K]`` cluster logits."""
        projected = self.final_proj(states)
        if self.options.head == "linear":
            return projected
        sim = F.cosine_similarity(projected.float().unsqueeze(-2), self.code_embeddings.float(), dim=-1)  # [..., K]
        return sim / self.options.logit_temperature

    def forward(self, batch: dict[str, Any], backbone: Any) -> TaskOutput:
        o = self.options
        if "index" not in batch:
            raise ValueError("hubert needs batch['index'] (sample positions, added by the core for map-style sources)")
        if int(self.clustered) == 0:  # outside the training loop (which calls on_epoch_start first)
            self.compute_targets(backbone, batch["audio"].device, self.seed)
        z, padding = backbone.latents(batch)  # [B, F, C], [B, F]
        penalty = torch.zeros((), device=z.device)
        if z.requires_grad:
            if o.feature_grad_mult != 1.0:
                z = GradMultiply.apply(z, o.feature_grad_mult)
            penalty = z.float().pow(2)[~padding].mean()
        mask = compute_span_mask(tuple(padding.shape), o.mask_prob, o.mask_length,
                                 batch_generator(self.seed, int(self.updates), batch), padding.cpu(),
                                 o.min_masks).to(z.device)
        states = backbone.contextualize(z, padding, mask)  # [B, F, D]
        targets = self.batch_targets(batch["index"], padding)  # [B, F]
        unmasked = ~mask & ~padding
        logits_m = self.logits(states[mask])  # [N_m, K]
        loss_m = F.cross_entropy(logits_m.float(), targets[mask]) if logits_m.shape[0] else states.sum() * 0.0
        loss = loss_m + o.feature_penalty_weight * penalty
        metrics: dict[str, Any] = {"loss_masked": loss_m.detach(), "feature_penalty": penalty.detach()}
        with torch.no_grad():
            if logits_m.shape[0]:
                metrics["accuracy_masked"] = (logits_m.argmax(-1) == targets[mask]).float().mean()
        if o.unmasked_weight > 0 and bool(unmasked.any()):
            logits_u = self.logits(states[unmasked])
            loss_u = F.cross_entropy(logits_u.float(), targets[unmasked])
            loss = loss + o.unmasked_weight * loss_u
            metrics["loss_unmasked"] = loss_u.detach()
            metrics["accuracy_unmasked"] = (logits_u.argmax(-1) == targets[unmasked]).float().mean().detach()
        return TaskOutput(loss=loss, metrics=metrics)

    def health(self, batch: dict[str, Any], backbone: Any) -> dict[str, float]:
        """Training-health extra (called by the core in eval mode without gradients), once the targets
        exist: ``cluster_entropy`` and ``cluster_perplexity`` of the k-means targets of every frame of
        the data set (1.0: equal clusters, 0.0: one cluster; fixed for the run, they say whether the
        targets are worth predicting), and ``prediction_entropy``: the same of the clusters the model
        predicts for the probe's unpadded, unmasked frames (towards 0: it predicts one unit everywhere)."""
        if int(self.clustered) == 0:
            return {}
        k = self.options.clusters
        entropy, perplexity = cluster_entropy(self.targets, k)
        z, padding = backbone.latents(batch)  # [B, F, C], [B, F]
        states = backbone.contextualize(z, padding, torch.zeros_like(padding))  # [B, F, D]
        predicted = self.logits(states[~padding]).argmax(-1)  # [N]
        return {"cluster_entropy": float(entropy), "cluster_perplexity": float(perplexity),
                "prediction_entropy": float(cluster_entropy(predicted, k)[0])}


def build(options: HuBERTOptions, context: BuildContext) -> HuBERTTask:
    return HuBERTTask(options, context.backbone, context.data, context.seed)
