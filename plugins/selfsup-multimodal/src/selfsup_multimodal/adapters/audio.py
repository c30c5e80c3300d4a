"""``trunk_audio``: speech into transformer layers, with the speech backbones' interface.

Front end: log-mel filterbank frames (torchaudio ``MelSpectrogram``, centred frames with reflect
padding, computed per clip on its valid samples so padding never changes them; each band
standardised over the clip with ``normalize = "utterance"``), then a linear map to the trunk width:
these are the latents ``z [B, F, D]``. ``contextualize`` normalises them (LayerNorm, as wav2vec 2.0
and HuBERT normalise their conv features, so the tasks' feature penalty cannot starve the layers),
puts a learned mask embedding at the masked frames (HuBERT: Hsu et al., HuBERT: Self-Supervised Speech Representation Learning by Masked
Prediction of Hidden Units, TASLP 2021), adds sinusoidal positions (Vaswani et al. 2017) and runs
the transformer layers bidirectionally with the padded frames masked out of attention. It is an
encoder for masked prediction (``hubert``) and probes, not for APC (no causal mode).

The interface is the one of :mod:`selfsup_speech.backbones` (``latents``, ``contextualize``,
``frames``, ``layers``, ``embed``, ``padding_mask``, ``num_frames``, ``output_dim``, ``latent_dim``,
``frame_rate``, ``frame_offset``), so selfsup-speech's ``hubert`` task and ``speech_probe``
evaluator run on it unchanged.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn
from torchaudio.transforms import MelSpectrogram

from selfsup.components import BuildContext
from selfsup_multimodal.adapters.trunk import TrunkAdapter
from selfsup_multimodal.options import TrunkAudioOptions
from selfsup_speech.backbones.common import FrameEncoderMixin, audio_and_lengths, lengths_to_padding_mask
from selfsup_speech.backbones.logmel import centred_frames, logmel_frames, sinusoidal_positions


class TrunkAudio(FrameEncoderMixin, TrunkAdapter):
    kind, options_model = "trunk_audio", TrunkAudioOptions

    def __init__(self, options: Any, context: BuildContext | None, encoder: nn.Module | None = None):
        super().__init__(options, context, encoder)
        o = options
        self.normalize = o.normalize
        self.sample_rate = int(o.sample_rate)
        self.win = max(1, round(o.win_ms * o.sample_rate / 1000))
        self.hop = max(1, round(o.hop_ms * o.sample_rate / 1000))
        n_fft = 1 << (self.win - 1).bit_length()
        self.mel = MelSpectrogram(sample_rate=o.sample_rate, n_fft=n_fft, win_length=self.win, hop_length=self.hop,
                                  n_mels=o.n_mels, center=True, pad_mode="reflect", power=2.0)
        # the window is a view into a longer periodic window: own storage, so safetensors can save it
        self.mel.spectrogram.window = self.mel.spectrogram.window.clone()
        self.n_mels = int(o.n_mels)
        self.frame_rate = o.sample_rate / self.hop
        self.frame_offset = 0.0  # centred frames: frame i is centred on sample i * hop
        self.latent_dim = self.output_dim  # latents are already in the trunk's width
        self.input_proj = nn.Linear(self.n_mels, self.output_dim)
        # as wav2vec 2.0 / HuBERT normalise their conv features: the tasks' feature penalty on the
        # latents (their mean square) then only shrinks a scale this LayerNorm removes
        self.feature_norm = nn.LayerNorm(self.output_dim, eps=self.encoder.config.layer_norm_eps)
        self.mask_embedding = nn.Parameter(torch.empty(self.output_dim).uniform_())  # [D]: a masked frame's input (HuBERT)

    # ------------------------------------------------------------------ frames

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """``[B]`` sample counts -> ``[B]`` frames (centred frames: ``length // hop + 1``)."""
        return centred_frames(lengths, self.hop)

    def padding_mask(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Frame padding mask ``[B, F]`` (True = padding) of a batch, without computing features."""
        _, lengths = audio_and_lengths(batch)
        valid = self.num_frames(lengths)
        return lengths_to_padding_mask(valid, int(valid.max()))

    def logmel(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel frames ``[B, F, n_mels]`` (zero at padding) and the padding mask ``[B, F]``."""
        return logmel_frames(self.mel, batch, self.hop, self.normalize)

    def latents(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z [B, F, D], padding_mask [B, F])``: log-mel frames mapped to the trunk width (zero at padding)."""
        frames, padding = self.logmel(batch)
        z = self.input_proj(frames).masked_fill(padding.unsqueeze(-1), 0.0)  # [B, F, D]
        return z, padding

    # ------------------------------------------------------------------ sequence model

    def contextualize(
        self, z: torch.Tensor, padding_mask: torch.Tensor, mask: torch.Tensor | None = None, all_layers: bool = False
    ) -> torch.Tensor | list[torch.Tensor]:
        """``z [B, F, D]`` -> ``[B, F, D]`` (or the list of each layer's output). Frames where
        ``mask [B, F]`` is True take the learned mask embedding; padded frames are not attended to."""
        x = self.feature_norm(z)  # [B, F, D]
        if mask is not None:
            x = torch.where(mask.unsqueeze(-1), self.mask_embedding.to(x.dtype), x)
        x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        x = x + sinusoidal_positions(x.shape[1], self.output_dim, x.device).to(x.dtype)  # [B, F, D]
        keep = None if not bool(padding_mask.any()) else ~padding_mask
        states = self.encode(x, keep)
        return states if all_layers else states[-1]

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.embed(batch)


def build(options: Any, context: BuildContext) -> TrunkAudio:
    return TrunkAudio(options, context)
