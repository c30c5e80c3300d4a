"""wav2vec 2.0 pre-training.

Baevski, Zhou, Mohamed, Auli, wav2vec 2.0: A Framework for Self-Supervised Learning of Speech
Representations, NeurIPS 2020.

The backbone's conv latents ``z`` are masked in spans (:mod:`selfsup_speech.tasks.masking`: the
transformer sees a learned mask embedding there) and the transformer's output ``c_t`` at every
masked frame must pick the quantized latent ``q_t`` of that frame out of ``K`` distractors, the
quantized latents of other masked frames of the same utterance (never the frame itself, never
padding): ``-log exp(sim(c_t, q_t)/kappa) / sum_{q in {q_t} + Q_t} exp(sim(c_t, q)/kappa)`` with
cosine similarity and ``kappa = 0.1`` (both projected to ``final_dim`` first, as fairseq does).

The quantizer is a product of ``G`` Gumbel-softmax codebooks of ``V`` entries each: a linear map
gives ``G x V`` logits per frame; in training a straight-through hard Gumbel-softmax picks one
entry per group (temperature ``max(2 * decay^step, 0.5)``), in evaluation the argmax; the picked
entries are concatenated. The diversity loss ``(GV - sum_g exp(H(p_g))) / GV`` on the softmax
probabilities averaged over the batch's masked frames (no Gumbel noise) keeps the codebooks in use
(weight alpha = 0.1), and an L2 penalty on ``z`` (weight 10) keeps the conv latents small. The
codebook perplexity of the hard choices is logged beside the softmax one: a collapse shows as
``code_perplexity`` falling towards ``G``.

Differences from fairseq: the quantizer's input is ``z`` standardised per channel over the batch's
masked frames (``BatchNorm1d`` without affine parameters; running statistics in evaluation), where
fairseq applies the feature projection's per-frame LayerNorm. At this plugin's scale the per-frame
normalisation leaves a component shared by every frame (about 80% of the variance of a small random
conv encoder's latents) that dominates the quantizer's logits: all frames pick the same few codes
from the first step, identical distractors are masked out, and the codebooks collapse within 20
steps whatever the learning rate (measured: code perplexity 2 of 128). Centring over frames keeps
the codes in use (perplexity ~80 of 128). There is no dropout on the quantizer's input
(``dropout_features``). The codebook entries start as standard normal vectors (fairseq: uniform
in [0, 1), which makes all code vectors nearly parallel, so that at this scale every target looks
alike to the cosine similarity and the loss stays at chance for hundreds of steps).
The step counter driving the temperature is a buffer (checkpointed) set by ``on_step``: it counts
optimizer steps, so gradient accumulation does not speed up the decay.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.models.wav2vec2.components import GradMultiply

from selfsup.components import BuildContext, TaskOutput
from selfsup.lib import code_perplexity
from selfsup_speech.data.collate import pad_audio
from selfsup_speech.tasks.masking import batch_generator, compute_span_mask
from selfsup_speech.tasks.options import Wav2Vec2Options


def perplexity(probs: torch.Tensor) -> torch.Tensor:
    """``probs [G, V]`` (each row sums to 1) -> ``[G]``: ``exp`` of each row's entropy (V for
    uniform use of V entries, 1 for a single entry)."""
    entropy = -(probs * torch.log(probs + 1e-7)).sum(-1)  # [G]
    return torch.exp(entropy)


class GumbelVectorQuantizer(nn.Module):
    """Product quantizer with ``groups`` Gumbel-softmax codebooks of ``entries`` vectors of size
    ``dim / groups`` (Jang et al. 2017 straight-through Gumbel-softmax)."""

    def __init__(self, input_dim: int, groups: int, entries: int, dim: int):
        super().__init__()
        if dim % groups:
            raise ValueError(f"codebook groups {groups} must divide the code vector size {dim}")
        self.groups, self.entries = groups, entries
        self.logits = nn.Linear(input_dim, groups * entries)  # fairseq weight_proj
        nn.init.normal_(self.logits.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.logits.bias)
        # zero-mean entries: fairseq's uniform_() in [0, 1) makes every code vector nearly parallel (cosine ~0.75
        # between entries, ~0.99 between whole code vectors after project_q), so all targets look alike to the
        # cosine similarity and, at this scale, the contrastive loss stays at log(1 + K) for hundreds of steps
        self.codebooks = nn.Parameter(torch.randn(groups * entries, dim // groups))  # [G*V, dim/G]

    def forward(self, x: torch.Tensor, temperature: float,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``x [N, input_dim]`` -> ``quantized [N, dim]``, ``code_perplexity`` and
        ``prob_perplexity`` (sums over groups), ``choices [N, G]`` (entry per group)."""
        n = x.shape[0]
        logits = self.logits(x).float().view(n, self.groups, self.entries)  # [N, G, V]
        choices = logits.argmax(-1)  # [N, G]
        hard = F.one_hot(choices, self.entries).to(logits.dtype)  # [N, G, V]
        if n > 0:
            code_ppl = perplexity(hard.mean(0)).sum()
            prob_ppl = perplexity(torch.softmax(logits, -1).mean(0)).sum()
        else:
            code_ppl = prob_ppl = logits.new_zeros(())
        if self.training:
            u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
            gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))  # [N, G, V]
            soft = torch.softmax((logits + gumbel) / temperature, -1)
            choices = soft.argmax(-1)
            hard = F.one_hot(choices, self.entries).to(soft.dtype)
            onehot = hard - soft.detach() + soft  # straight-through: hard forward, soft gradient
        else:
            onehot = hard
        codebooks = self.codebooks.view(self.groups, self.entries, -1)  # [G, V, dim/G]
        quantized = torch.einsum("ngv,gvd->ngd", onehot.to(codebooks.dtype), codebooks).reshape(n, -1)  # [N, dim]
        return {"quantized": quantized, "code_perplexity": code_ppl, "prob_perplexity": prob_ppl, "choices": choices}


def sample_distractors(mask: torch.Tensor, k: int,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For every masked frame (in ``mask [B, F]``'s row-major order, i.e. ``x[mask]``'s order),
    ``k`` indices into that same order, drawn uniformly with replacement among the *other* masked
    frames of the same utterance: ``(indices [N, k] int64, valid [N, k] bool)``; ``valid`` is
    False only for an utterance with a single masked frame (nothing else to draw)."""
    device = mask.device
    counts = mask.sum(1)  # [B] masked frames per utterance
    starts = torch.cumsum(counts, 0) - counts  # [B] offset of each utterance's first masked frame
    row = mask.nonzero(as_tuple=True)[0]  # [N] utterance of each masked frame
    n = row.numel()
    if n == 0:
        return torch.zeros(0, k, dtype=torch.long, device=device), torch.zeros(0, k, dtype=torch.bool, device=device)
    local = torch.arange(n, device=device) - starts[row]  # [N] position among the utterance's masked frames
    others = (counts[row] - 1).clamp_min(1)  # [N] how many other masked frames there are
    u = torch.rand(n, k, generator=generator, device=device)
    drawn = (u * others[:, None]).long().clamp_max(others[:, None] - 1)  # [N, k] in [0, others)
    drawn = drawn + (drawn >= local[:, None]).long()  # skip the frame itself
    valid = (counts[row] > 1)[:, None].expand(n, k)
    drawn = torch.where(valid, drawn, local[:, None].expand(n, k))  # keep in range for lone frames
    return starts[row][:, None] + drawn, valid


def contrastive_logits(
    context: torch.Tensor,  # [N, D] projected transformer outputs at masked frames
    targets: torch.Tensor,  # [N, D] projected quantized latents of the same frames
    distractors: torch.Tensor,  # [N, K] indices into targets
    valid: torch.Tensor,  # [N, K] bool
    temperature: float,
) -> torch.Tensor:
    """``[N, 1 + K]`` cosine similarities / temperature; column 0 is the positive. Distractors that
    are invalid, or identical to the positive (fairseq's ``neg_is_pos``), get ``-inf``."""
    negatives = targets[distractors]  # [N, K, D]
    candidates = torch.cat([targets.unsqueeze(1), negatives], dim=1)  # [N, 1+K, D]
    logits = F.cosine_similarity(context.unsqueeze(1).float(), candidates.float(), dim=-1) / temperature  # [N, 1+K]
    same = (negatives == targets.unsqueeze(1)).all(-1)  # [N, K]
    blocked = torch.cat([torch.zeros_like(same[:, :1]), same | ~valid], dim=1)  # [N, 1+K]
    return logits.masked_fill(blocked, float("-inf"))


class Wav2Vec2Task(nn.Module):
    """Quantizer, projections and losses of wav2vec 2.0 on a backbone with ``latents`` and
    ``contextualize`` (``wav2vec2_encoder``)."""

    def __init__(self, options: Wav2Vec2Options, backbone: Any, seed: int):
        super().__init__()
        for method in ("latents", "contextualize"):
            if not callable(getattr(backbone, method, None)):
                raise ValueError(f"wav2vec2 needs a backbone with latents() and contextualize() (wav2vec2_encoder); "
                                 f"{type(backbone).__name__} has no {method}()")
        o = self.options = options
        self.seed = seed
        self.latent_norm = nn.BatchNorm1d(backbone.latent_dim, affine=False)  # over masked frames, see above
        self.quantizer = GumbelVectorQuantizer(backbone.latent_dim, o.codebook_groups, o.codebook_entries,
                                               o.codevector_dim)
        self.project_q = nn.Linear(o.codevector_dim, o.final_dim)
        self.final_proj = nn.Linear(backbone.output_dim, o.final_dim)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))  # optimizer steps so far (from on_step)

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return pad_audio(samples)

    def on_step(self, step: int) -> None:
        """The optimizer step about to run (called by the loop once per step, whatever grad_accum
        is): the temperature decays per optimizer step, not per forward pass."""
        self.updates.fill_(step)

    def temperature(self) -> float:
        o = self.options
        return max(o.max_temperature * o.temperature_decay ** int(self.updates), o.min_temperature)

    def normalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        """``[N, C]`` latents of the masked frames, standardised per channel over them (with the
        running statistics when there are fewer than 2 frames or in evaluation)."""
        norm = self.latent_norm
        use_batch = self.training and z.shape[0] > 1
        return F.batch_norm(z.float(), norm.running_mean, norm.running_var, training=use_batch,
                            momentum=norm.momentum, eps=norm.eps)

    def forward(self, batch: dict[str, Any], backbone: Any) -> TaskOutput:
        o = self.options
        z, padding = backbone.latents(batch)  # [B, F, C], [B, F]
        if o.feature_grad_mult != 1.0:
            z = GradMultiply.apply(z, o.feature_grad_mult)
        penalty = z.float().pow(2)[~padding].mean()
        device = z.device
        mask = compute_span_mask(tuple(padding.shape), o.mask_prob, o.mask_length,
                                 batch_generator(self.seed, int(self.updates), batch), padding.cpu(),
                                 o.min_masks).to(device)
        context = backbone.contextualize(z, padding, mask)  # [B, F, D]
        g = batch_generator(self.seed + 1, int(self.updates), batch, device)
        temperature = self.temperature()
        q = self.quantizer(self.normalize_latents(z[mask]), temperature, g)  # quantized [N, codevector_dim]
        targets = self.project_q(q["quantized"])  # [N, final_dim]
        predictions = self.final_proj(context[mask])  # [N, final_dim]
        distractors, valid = sample_distractors(mask, o.num_distractors, g)
        logits = contrastive_logits(predictions, targets, distractors, valid, o.logit_temperature)  # [N, 1+K]
        usable = torch.isfinite(logits[:, 1:]).any(1)  # [N] frames with at least one distractor
        if bool(usable.any()):
            zero = torch.zeros(int(usable.sum()), dtype=torch.long, device=device)
            contrastive = F.cross_entropy(logits[usable], zero)
            kept = logits[usable]
            # fairseq: a frame counts as correct when the positive is the maximum and not also the
            # minimum (all candidates equal, e.g. after a codebook collapse, is not a success)
            lowest = kept.masked_fill(~torch.isfinite(kept), float("inf")).argmin(1)
            accuracy = ((kept.argmax(1) == 0) & (lowest != 0)).float().mean()
        else:  # no utterance had two masked frames: nothing to contrast
            contrastive = predictions.sum() * 0.0 + targets.sum() * 0.0
            accuracy = torch.zeros((), device=device)
        groups_entries = o.codebook_groups * o.codebook_entries
        diversity = (groups_entries - q["prob_perplexity"]) / groups_entries
        loss = contrastive + o.diversity_weight * diversity + o.feature_penalty_weight * penalty
        metrics = {
            "contrastive": contrastive.detach(), "diversity": diversity.detach(), "feature_penalty": penalty.detach(),
            "code_perplexity": q["code_perplexity"].detach(), "prob_perplexity": q["prob_perplexity"].detach(),
            "temperature": temperature, "accuracy": accuracy.detach(),
            "masked_fraction": (mask.sum() / (~padding).sum().clamp_min(1)).detach().float(),
        }
        return TaskOutput(loss=loss, metrics=metrics)

    def health(self, batch: dict[str, Any], backbone: Any) -> dict[str, float]:
        """Training-health extra (called by the core in eval mode without gradients): the codebook use of
        every unpadded frame of the probe, per group (``selfsup.lib.code_perplexity``; the training metric
        ``code_perplexity`` is the sum over groups): ``code_perplexity`` of the argmax codes (1: one code of
        each codebook takes every frame) and ``prob_perplexity`` of the softmax probabilities."""
        z, padding = backbone.latents(batch)  # [B, F, C], [B, F]
        x = self.normalize_latents(z[~padding])  # [N, C]
        q = self.quantizer
        logits = q.logits(x).float().view(x.shape[0], q.groups, q.entries)  # [N, G, V]
        return {"code_perplexity": float(code_perplexity(logits.argmax(-1), q.entries)),
                "prob_perplexity": float(code_perplexity(logits.softmax(-1), q.entries))}


def build(options: Wav2Vec2Options, context: BuildContext) -> Wav2Vec2Task:
    return Wav2Vec2Task(options, context.backbone, context.seed)
