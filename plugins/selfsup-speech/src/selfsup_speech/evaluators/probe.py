"""``speech_probe``: a linear classifier on frozen speech features, with an MFCC baseline.

The probe of SUPERB (Yang et al., SUPERB: Speech processing Universal PERformance Benchmark,
Interspeech 2021) in its simplest form: the backbone is frozen, utterances are mean-pooled, and a
linear classifier is trained on top. Two feature choices:

* ``layer_weighted = false``: ``backbone.embed`` (mean of the last layer over valid frames); the
  classifier is multinomial logistic regression fitted with full-batch L-BFGS from zero
  (:func:`selfsup.lib.fit_linear_probe`, as the core's ``linear_probe``), on standardised features;
* ``layer_weighted = true``: SUPERB's weighted sum: every layer of ``backbone.layers`` is
  mean-pooled and standardised, and a softmax over one learned weight per layer mixes them; weights
  and classifier are trained together (full-batch Adam from zero). The learned weights are reported
  as ``layer_weight_<i>``.

Targets: ``label`` (keyword) is fitted on ``fit_data`` and scored on ``data``; with the
``synth_speech`` voice split these hold different voices, so the score is keyword recognition for
unseen speakers. ``speaker`` (voice identification) can only be scored on voices the classifier
has seen: either ``fit_data`` and ``data`` share their voices (``split_by = "utterance"``), or
``split_within = true`` divides ``data``'s utterances per class (seeded) into a fit part and a
scored part, so a held-out-voice split measures how well the features tell apart voices the
backbone never trained on. A speaker probe whose fit and scored sets share no voice is refused.

``mfcc_accuracy``: the same probe (same split, L-BFGS) on the mean and standard deviation over time
of 13 MFCCs with deltas and delta-deltas (78 numbers per clip): what hand-made features give.
``chance`` is the share of the most frequent class in the scored set.

Cost: ``fit_limit`` fits on a seeded, class-balanced subset of the fit utterances; clips are
batched in order of length (little padding; the speech backbones' valid frames do not depend on
padding) and the MFCC statistics of a source are computed once and reused by every later
evaluation of the same data (keyed by the source's ``cache_key`` when it has one, as
``synth_speech`` does, so a fresh run on the same data reuses them too).

``noise_snr_db``: a harder condition, in which every utterance the probe sees (fitted and scored,
backbone and MFCC baseline alike) has noise added at an SNR drawn from the range (the
``add_noise`` augmentation, seeded per utterance, so every evaluation sees the same noisy audio).

Features are taken from the sources as they are (this evaluator's ``augment`` list is not applied).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F

from selfsup.components import BuildContext, EvalContext
from selfsup.lib import fit_linear_probe, frozen, ordered
from selfsup_speech.augment.audio import AddNoise
from selfsup_speech.augment.options import AddNoiseOptions
from selfsup_speech.backbones.common import masked_mean
from selfsup_speech.data.collate import pad_audio
from selfsup_speech.evaluators.options import SpeechProbeOptions
from selfsup_speech.features import MFCCFrames

NOISE_SALT = {"fit": 1_000_003, "data": 2_000_029}  # fit and scored utterances get different noise
_MFCC_CACHE: "OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]]" = OrderedDict()  # cache_key -> statistics
_MFCC_CACHE_SIZE = 16


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def extract(backbone: Any, samples: list[dict[str, Any]], *, key: str, layer_weighted: bool, batch_size: int,
            device: torch.device, collate: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features [N, D] or [N, L, D] float32 on the CPU, targets [N] int64)`` for ``samples``, in
    their order. Clips are batched longest first, so batches hold clips of similar length."""
    collate = collate or pad_audio
    if not samples:
        raise ValueError("speech_probe: empty data source")
    if any(key not in s for s in samples):
        raise ValueError(f"speech_probe: samples have no {key!r} field (target = {key!r})")
    if layer_weighted and (not callable(getattr(backbone, "layers", None))
                           or not callable(getattr(backbone, "padding_mask", None))):
        raise ValueError("layer_weighted needs a backbone with layers() and padding_mask() (the speech backbones)")
    order = sorted(range(len(samples)), key=lambda i: -torch.as_tensor(samples[i]["audio"]).numel())
    feats: list[torch.Tensor] = []
    with frozen(backbone):
        for start in range(0, len(order), batch_size):
            batch = _to(collate([samples[i] for i in order[start:start + batch_size]]), device)
            if layer_weighted:
                padding = backbone.padding_mask(batch)
                pooled = [masked_mean(h.float(), padding) for h in backbone.layers(batch)]  # L x [B, D]
                feats.append(torch.stack(pooled, dim=1).cpu())  # [B, L, D]
            else:
                feats.append(backbone.embed(batch).float().cpu())  # [B, D]
    x = torch.empty_like(torch.cat(feats))
    x[torch.tensor(order)] = torch.cat(feats)  # back to the samples' order
    return x, torch.tensor([int(s[key]) for s in samples], dtype=torch.long)


def balanced_subset(targets: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """At most ``limit`` indices (sorted), spread evenly over the classes of ``targets [N]``:
    every class's items in a seeded order, then round-robin over the classes."""
    if limit >= targets.numel():
        return torch.arange(targets.numel())
    g = torch.Generator().manual_seed(seed + 7_919)
    perm = torch.randperm(targets.numel(), generator=g)  # [N] random order
    shuffled = targets[perm]
    rank = torch.zeros_like(perm)  # position of each item among its class's items (in random order)
    for c in torch.unique(targets).tolist():
        where = shuffled == c
        rank[where] = torch.arange(int(where.sum()))
    keep = perm[torch.argsort(rank * (perm.numel() + 1) + torch.arange(perm.numel()))[:limit]]
    return keep.sort().values


@torch.no_grad()
def mfcc_statistics(samples: list[dict[str, Any]], *, key: str, n_mfcc: int,
                    sample_rate: int = 16000) -> tuple[torch.Tensor, torch.Tensor]:
    """``([N, 6 * n_mfcc] mean and std over time of MFCC + deltas + delta-deltas, targets [N])``."""
    mfcc = MFCCFrames(sample_rate, n_mfcc)
    rows, targets = [], []
    for sample in samples:
        if key not in sample:
            raise ValueError(f"speech_probe: samples have no {key!r} field (target = {key!r})")
        frames = mfcc(sample["audio"])  # [F, 3 * n_mfcc]
        std = frames.std(0) if frames.shape[0] > 1 else torch.zeros(frames.shape[1])
        rows.append(torch.cat([frames.mean(0), std]))
        targets.append(int(sample[key]))
    return torch.stack(rows), torch.tensor(targets, dtype=torch.long)


def within_split(targets: torch.Tensor, fit_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(fit, scored)`` dividing every class's items (seeded); a class with two or more
    items gives at least one to each side, a single item goes to the fit side."""
    g = torch.Generator().manual_seed(seed)
    fit, scored = [], []
    for c in torch.unique(targets).tolist():
        items = torch.nonzero(targets == c).flatten()
        items = items[torch.randperm(items.numel(), generator=g)]
        k = items.numel() if items.numel() < 2 else min(max(1, round(fit_fraction * items.numel())), items.numel() - 1)
        fit.append(items[:k])
        scored.append(items[k:])
    return torch.cat(fit).sort().values, torch.cat(scored).sort().values


def _standardize(fit: torch.Tensor, scored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = fit.mean(0)
    std = fit.std(0).clamp_min(1e-6) if fit.shape[0] > 1 else torch.ones_like(mean)
    return (fit - mean) / std, (scored - mean) / std


def fit_layer_weighted(x: torch.Tensor, y: torch.Tensor, *, num_classes: int, weight_decay: float, steps: int,
                       lr: float) -> tuple[torch.Tensor, torch.nn.Linear]:
    """``x [N, L, D]`` -> (layer logits ``[L]``, classifier); both start at zero (no randomness)."""
    weights = torch.zeros(x.shape[1], requires_grad=True)
    head = torch.nn.Linear(x.shape[2], num_classes)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    opt = torch.optim.Adam([weights, *head.parameters()], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            mixed = (torch.softmax(weights, 0)[None, :, None] * x).sum(1)  # [N, D]
            loss = F.cross_entropy(head(mixed), y) + weight_decay * head.weight.pow(2).sum()
            loss.backward()
            opt.step()
    return weights.detach(), head


class SpeechProbe:
    """See the module docstring."""

    def __init__(self, options: SpeechProbeOptions):
        self.options = options
        self.needs_fit_data = not options.split_within  # checked when the run is built
        # id(source) -> (source, samples as the probe sees them: subset, noise); the source is kept
        # so that its id is not reused while cached
        self._prepared: dict[tuple[int, str], tuple[Any, list[dict[str, Any]]]] = {}
        self._mfcc_local: dict[tuple[int, str], tuple[Any, torch.Tensor, torch.Tensor]] = {}

    def _noise(self) -> AddNoise | None:
        o = self.options
        if o.noise_snr_db is None:
            return None
        return AddNoise(AddNoiseOptions(snr_db=tuple(o.noise_snr_db), color=o.noise_color))

    def prepared(self, source: Any, role: str) -> list[dict[str, Any]]:
        """The utterances of ``source`` the probe uses in ``role`` (``"fit"`` or ``"data"``):
        all of them, or the ``fit_limit`` subset for fitting; with ``noise_snr_db``, noisy."""
        cached = self._prepared.get((id(source), role))
        if cached is not None and cached[0] is source:
            return cached[1]
        o = self.options
        samples = list(ordered(source))  # in order (a streaming source: epoch 0, seed 0)
        if role == "fit" and o.fit_limit is not None and not o.split_within:
            if any(o.target not in s for s in samples):
                raise ValueError(f"speech_probe: samples have no {o.target!r} field (target = {o.target!r})")
            keep = balanced_subset(torch.tensor([int(s[o.target]) for s in samples]), o.fit_limit, o.seed)
            samples = [samples[i] for i in keep.tolist()]
        noise = self._noise()
        if noise is not None:
            salt = NOISE_SALT[role]
            samples = [noise(s, torch.Generator().manual_seed(o.seed * 7_919 + salt + i))
                       for i, s in enumerate(samples)]
        self._prepared[(id(source), role)] = (source, samples)
        return samples

    def _mfcc(self, source: Any, role: str) -> tuple[torch.Tensor, torch.Tensor]:
        """MFCC statistics of ``prepared(source, role)``: computed once per data (a source with a
        ``cache_key`` shares them with every later evaluator on the same data)."""
        o = self.options
        source_key = getattr(source, "cache_key", None)
        if source_key is not None:
            limit = o.fit_limit if role == "fit" and not o.split_within else None
            noise = (tuple(o.noise_snr_db), o.noise_color, role) if o.noise_snr_db is not None else None
            key = (source_key, o.target, o.n_mfcc, limit, noise, o.seed if (limit or noise) else 0)
            if key in _MFCC_CACHE:
                _MFCC_CACHE.move_to_end(key)
                return _MFCC_CACHE[key]
        else:
            local = self._mfcc_local.get((id(source), role))
            if local is not None and local[0] is source:
                return local[1], local[2]
        rate = int(getattr(source, "sample_rate", 16000))
        x, y = mfcc_statistics(self.prepared(source, role), key=o.target, n_mfcc=o.n_mfcc, sample_rate=rate)
        if source_key is not None:
            _MFCC_CACHE[key] = (x, y)
            while len(_MFCC_CACHE) > _MFCC_CACHE_SIZE:
                _MFCC_CACHE.popitem(last=False)
        else:
            self._mfcc_local[(id(source), role)] = (source, x, y)
        return x, y

    def _score(self, x_fit: torch.Tensor, y_fit: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
               layer_weighted: bool) -> dict[str, float]:
        o = self.options
        classes = torch.unique(torch.cat([y_fit, y]))  # remap to 0..C-1
        y_fit, y = torch.searchsorted(classes, y_fit), torch.searchsorted(classes, y)
        if layer_weighted:
            if o.standardize:
                x_fit, x = _standardize(x_fit, x)  # per layer and dimension
            weights, head = fit_layer_weighted(x_fit, y_fit, num_classes=len(classes), weight_decay=o.weight_decay,
                                               steps=o.steps, lr=o.lr)
            mix = torch.softmax(weights, 0)
            x_fit, x = (mix[None, :, None] * x_fit).sum(1), (mix[None, :, None] * x).sum(1)
            out = {f"layer_weight_{i}": float(w) for i, w in enumerate(mix)}
        else:
            if o.standardize:
                x_fit, x = _standardize(x_fit, x)
            head = fit_linear_probe(x_fit, y_fit, num_classes=len(classes), weight_decay=o.weight_decay,
                                    max_iter=o.max_iter)
            out = {}
        with torch.no_grad():
            out["accuracy"] = (head(x).argmax(1) == y).float().mean().item()
            out["fit_accuracy"] = (head(x_fit).argmax(1) == y_fit).float().mean().item()
        out["chance"] = torch.bincount(y).max().item() / y.numel()
        return out

    def _check_classes(self, y_fit: torch.Tensor, y: torch.Tensor) -> None:
        if self.options.target == "speaker" and not set(y.tolist()) & set(y_fit.tolist()):
            raise ValueError(
                "speech_probe: target = 'speaker' but fit_data and data share no voice, so no voice of data can be "
                "named; use split_within = true (fit and score on different utterances of data's voices) or sources "
                "split by utterance")

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        o = self.options
        if not o.split_within and context.fit_data is None:
            raise ValueError(f"evaluator {context.name!r}: speech_probe needs fit_data unless split_within = true")

        def features(source: Any, role: str) -> tuple[torch.Tensor, torch.Tensor]:
            return extract(context.backbone, self.prepared(source, role), key=o.target,
                           layer_weighted=o.layer_weighted, batch_size=context.batch_size, device=context.device,
                           collate=getattr(source, "collate", None))

        x, y = features(context.data, "data")
        if o.split_within:
            fit_idx, eval_idx = within_split(y, o.within_fit_fraction, o.seed)
            if o.fit_limit is not None and fit_idx.numel() > o.fit_limit:
                fit_idx = fit_idx[balanced_subset(y[fit_idx], o.fit_limit, o.seed)]
            x_fit, y_fit, x, y = x[fit_idx], y[fit_idx], x[eval_idx], y[eval_idx]
        else:
            x_fit, y_fit = features(context.fit_data, "fit")
        self._check_classes(y_fit, y)
        if y.numel() == 0:
            raise ValueError("speech_probe: nothing left to score (every class has a single utterance)")
        metrics = self._score(x_fit, y_fit, x, y, o.layer_weighted)
        if o.mfcc_baseline:
            m, my = self._mfcc(context.data, "data")
            if o.split_within:
                m_fit, my_fit, m, my = m[fit_idx], my[fit_idx], m[eval_idx], my[eval_idx]
            else:
                m_fit, my_fit = self._mfcc(context.fit_data, "fit")
            metrics["mfcc_accuracy"] = self._score(m_fit, my_fit, m, my, layer_weighted=False)["accuracy"]
        return metrics


def build(options: SpeechProbeOptions, context: BuildContext) -> SpeechProbe:
    return SpeechProbe(options)
