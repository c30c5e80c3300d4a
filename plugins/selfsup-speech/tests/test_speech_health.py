"""Training-health diagnostics of the speech tasks: wav2vec 2.0's codebook perplexity and HuBERT's
cluster balance (the core calls ``health`` in eval mode without gradients)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import speech_models_support as support
import torch

from selfsup.components import EpochContext
from selfsup.lib import cluster_entropy, frozen
from selfsup_speech.backbones.options import Wav2Vec2EncoderOptions
from selfsup_speech.backbones.wav2vec2 import Wav2Vec2Encoder
from selfsup_speech.data.collate import pad_audio
from selfsup_speech.tasks.hubert import HuBERTTask
from selfsup_speech.tasks.options import HuBERTOptions, Wav2Vec2Options
from selfsup_speech.tasks.wav2vec2 import Wav2Vec2Task


def encoder():
    torch.manual_seed(0)
    return Wav2Vec2Encoder(Wav2Vec2EncoderOptions(**support.W2V_SMALL))


def tones_batch(data):
    return pad_audio([{**data[i], "index": i} for i in range(len(data))])


def _np_perplexity(codes, k):  # codes [N, G] -> exp(entropy of each group's code counts), averaged
    out = []
    for g in range(codes.shape[1]):
        p = np.bincount(codes[:, g], minlength=k) / len(codes)
        p = p[p > 0]
        out.append(math.exp(-(p * np.log(p)).sum()))
    return float(np.mean(out))


def test_wav2vec2_reports_the_codebook_perplexity_per_group():
    backbone = encoder()
    options = Wav2Vec2Options(codebook_groups=2, codebook_entries=8, codevector_dim=16, final_dim=16)
    task = Wav2Vec2Task(options, backbone, seed=0)
    batch = tones_batch(support.Tones())
    with frozen(task, backbone):
        out = task.health(batch, backbone)
        z, padding = backbone.latents(batch)
        logits = task.quantizer.logits(task.normalize_latents(z[~padding])).view(-1, 2, 8)  # [N, G, V]
    assert set(out) == {"code_perplexity", "prob_perplexity"}
    assert out["code_perplexity"] == pytest.approx(_np_perplexity(logits.argmax(-1).numpy(), 8), rel=1e-5)
    assert 1.0 < out["code_perplexity"] <= 8.0 and 1.0 < out["prob_perplexity"] <= 8.0
    with torch.no_grad():  # a collapsed quantizer: entry 3 of each group for every frame
        task.quantizer.logits.weight.zero_()
        task.quantizer.logits.bias.zero_()
        task.quantizer.logits.bias[[3, 8 + 3]] = 50.0
    with frozen(task, backbone):
        collapsed = task.health(batch, backbone)
    assert collapsed == pytest.approx({"code_perplexity": 1.0, "prob_perplexity": 1.0}, rel=1e-4)


def test_hubert_reports_the_balance_of_its_targets_and_predictions():
    data = support.Tones()
    backbone = encoder()
    options = HuBERTOptions(clusters=4, kmeans_iters=10, final_dim=16, feature_batch_size=4)
    task = HuBERTTask(options, backbone, data, seed=0)
    batch = tones_batch(data)
    with frozen(task, backbone):
        assert task.health(batch, backbone) == {}  # no targets yet
    task.on_epoch_start(EpochContext(epoch=0, seed=0, device=torch.device("cpu"), backbone=backbone, data=data,
                                     augment=[], batch_size=4))
    with frozen(task, backbone):
        out = task.health(batch, backbone)
        z, padding = backbone.latents(batch)
        states = backbone.contextualize(z, padding, torch.zeros_like(padding))
        predicted = task.logits(states[~padding]).argmax(-1)
    entropy, perplexity = cluster_entropy(task.targets, 4)
    assert out == pytest.approx({"cluster_entropy": float(entropy), "cluster_perplexity": float(perplexity),
                                 "prediction_entropy": float(cluster_entropy(predicted, 4)[0])})
    assert 0.3 < out["cluster_entropy"] <= 1.0 and 0.0 <= out["prediction_entropy"] <= 1.0
    task.targets.zero_()  # every frame in one cluster
    with frozen(task, backbone):
        collapsed = task.health(batch, backbone)
    assert collapsed["cluster_entropy"] == 0.0 and collapsed["cluster_perplexity"] == pytest.approx(1.0)
