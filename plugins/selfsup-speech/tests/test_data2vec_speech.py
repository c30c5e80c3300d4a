"""wav2vec2_encoder as a LayerwiseMaskedEncoder for the core's data2vec: span masks that avoid padding,
per-layer outputs, the mask embedding; conformance of data2vec on it, and a shortened quickstart
against random init."""

from __future__ import annotations

import pytest
import speech_models_support as support
import torch
from speech_models_support import e2e_cache, one_thread, synth_cache  # noqa: F401  (fixtures)

from selfsup.components import LayerwiseMaskedEncoder
from selfsup.testing import TaskConformance, train_against_random_init
from selfsup_speech.backbones.options import Wav2Vec2EncoderOptions
from selfsup_speech.backbones.wav2vec2 import Wav2Vec2Encoder

pytestmark = pytest.mark.usefixtures("synth_cache")


def encoder():
    torch.manual_seed(0)
    return Wav2Vec2Encoder(Wav2Vec2EncoderOptions(**support.W2V_SMALL))


@pytest.fixture(scope="module")
def batch():
    source = support.build("data_source", *support.SYNTH_TRAIN)
    samples = [source[i] for i in range(8)]
    return source.collate(samples)  # audio [B, S] padded, lengths [B]


def test_span_masks_avoid_padding_and_cover_the_ratio(batch):
    backbone = encoder()
    assert isinstance(backbone, LayerwiseMaskedEncoder)
    padding = backbone.padding_mask(batch)  # [B, F]
    assert padding.any(), "the suite's clips differ in length: some frames are padding"
    mask = backbone.masked_positions(batch, torch.Generator().manual_seed(0), ratio=0.65, span=3)
    assert mask.shape == padding.shape and mask.dtype == torch.bool
    assert not (mask & padding).any() and mask.any(1).all()
    share = mask.sum() / (~padding).sum()
    assert 0.3 < float(share) < 0.65  # spans overlap: below mask_prob (about 0.49 for long clips)
    assert torch.equal(mask, backbone.masked_positions(batch, torch.Generator().manual_seed(0), ratio=0.65, span=3))
    # spans: every masked run is at least 3 frames long (or reaches the end of the valid frames)
    for row, pad in zip(mask, padding):
        valid = row[~pad].int().tolist()
        runs = "".join(map(str, valid)).split("0")
        assert all(len(r) >= 3 for r in runs if r), runs


def test_encode_layers_are_the_transformer_layers_with_the_mask_embedding(batch):
    backbone = encoder().eval()
    layers, padding = backbone.encode_layers(batch)
    assert len(layers) == 2 and all(h.shape == (*padding.shape, 32) for h in layers)
    features, frames_padding = backbone.frames(batch)
    transformer = backbone.model.encoder.transformer  # post-LN (layer_norm_first false): a final norm follows
    last = layers[-1] if transformer.layer_norm_first else transformer.layer_norm(layers[-1])
    torch.testing.assert_close(last, features)
    assert torch.equal(padding, frames_padding)
    mask = backbone.masked_positions(batch, torch.Generator().manual_seed(1), span=3)
    masked, _ = backbone.encode_layers(batch, mask)
    assert not torch.allclose(masked[-1], layers[-1])
    # the masked frames' transformer input is the mask embedding: its gradient is non-zero
    masked[-1][~padding].sum().backward()
    assert backbone.mask_embedding.grad is not None and backbone.mask_embedding.grad.abs().sum() > 0
    backbone.zero_grad()
    backbone.encode_layers(batch)[0][-1][~padding].sum().backward()
    assert backbone.mask_embedding.grad is None or backbone.mask_embedding.grad.abs().sum() == 0


class TestData2VecSpeechConformance(TaskConformance):
    task = "data2vec"
    task_options = {"top_k": 2, "layer_norm": "instance", "mask_prob": 0.5, "mask_length": 3, "loss": "smooth_l1",
                    "beta": 0.5}
    data = support.SYNTH_TRAIN
    backbone = ("wav2vec2_encoder", support.W2V_SMALL)
    inert_options = {
        "final_momentum": "the suite runs no optimizer update, so the teacher never moves",
        "ramp_steps": "the suite runs no optimizer update, so the teacher never moves",
    }
    option_variants = {"beta": 0.05}


E2E = [*support.E2E_DATA, *support.E2E_W2V_ENCODER, "train.max_steps=150"]


@pytest.mark.slow
def test_shortened_quickstart_beats_random_init(tmp_path, one_thread, e2e_cache):  # noqa: F811
    """data2vec-speech shrunk (fewer clips, a smaller encoder, 150 steps): the keyword probe on
    held-out voices beats the same encoder at its random initialisation by 0.2 (measured: 0.717 vs
    0.242; 120 scored clips, one standard error near 0.5 is 0.046)."""
    trained, random_init = train_against_random_init(
        "data2vec-speech", tmp_path / "run", E2E, evaluators=["keywords"])
    assert trained["keywords/accuracy"] > random_init["keywords/accuracy"] + 0.2, (trained, random_init)
