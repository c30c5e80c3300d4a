"""``trunk_audio``: speech into transformer layers, with the speech backbones' interface.

Front end: log-mel filterbank frames (selfsup-speech's ``logmel_frontend``, built by its registered
name: torchaudio ``MelSpectrogram``, centred frames with reflect padding, computed per clip on its
valid samples so padding never changes them; each band standardised over the clip with
``normalize = "utterance"``), then a linear map to the trunk width: these are the latents
``z [B, F, D]``. ``contextualize`` normalises them (LayerNorm, as wav2vec 2.0 and HuBERT normalise
their conv features, so the tasks' feature penalty cannot starve the layers), puts a learned mask
embedding at the masked frames (HuBERT: Hsu et al., HuBERT: Self-Supervised Speech Representation
Learning by Masked Prediction of Hidden Units, TASLP 2021), adds sinusoidal positions (Vaswani et
al. 2017) and runs the transformer layers bidirectionally with the padded frames masked out of
attention. It is an encoder for masked prediction (``hubert``) and probes, not for APC (no causal
mode).

The interface is the one of selfsup-speech's backbones (``latents``, ``contextualize``,
``frames``, ``layers``, ``embed``, ``padding_mask``, ``num_frames``, ``output_dim``, ``latent_dim``,
``frame_rate``, ``frame_offset``), so selfsup-speech's ``hubert`` task and ``speech_probe``
evaluator run on it unchanged.

``pretrained`` starts the adapter from saved weights (a state dict file, a ``selfsup export``
folder, an adapter export, or ``hf:org/name[@revision]`` holding one; :func:`.trunk.load_own_pretrained`):
without a trunk all of it, with a trunk its own input projection, feature norm, mask embedding and norms only.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from selfsup.components import BuildContext
from selfsup.lib import masked_mean, sinusoidal_positions
from selfsup_multimodal.backbones.options import TrunkAudioOptions
from selfsup_multimodal.backbones.trunk import TrunkAdapter, load_own_pretrained

#: The options of selfsup-speech's ``logmel_frontend`` this adapter passes on.
FRONTEND_FIELDS = ("sample_rate", "n_mels", "win_ms", "hop_ms", "normalize")


class TrunkAudio(TrunkAdapter):
    kind, options_model = "trunk_audio", TrunkAudioOptions

    def __init__(self, options: Any, context: BuildContext | None, encoder: nn.Module | None = None):
        super().__init__(options, context, encoder)
        o = options
        # the log-mel front end is selfsup-speech's, built by its registered name (no weights)
        builder = context if context is not None else BuildContext(name="trunk_audio")
        self.frontend = builder.build("backbones", "logmel_frontend", {f: getattr(o, f) for f in FRONTEND_FIELDS})
        self.normalize = o.normalize
        self.sample_rate = self.frontend.sample_rate
        self.win, self.hop = self.frontend.win, self.frontend.hop
        self.n_mels = self.frontend.n_mels
        self.frame_rate = self.frontend.frame_rate
        self.frame_offset = self.frontend.frame_offset  # centred frames: frame i is centred on sample i * hop
        self.latent_dim = self.output_dim  # latents are already in the trunk's width
        self.input_proj = nn.Linear(self.n_mels, self.output_dim)
        # as wav2vec 2.0 / HuBERT normalise their conv features: the tasks' feature penalty on the
        # latents (their mean square) then only shrinks a scale this LayerNorm removes
        self.feature_norm = nn.LayerNorm(self.output_dim, eps=self.encoder.config.layer_norm_eps)
        # [D]: a masked frame's input (HuBERT)
        self.mask_embedding = nn.Parameter(torch.empty(self.output_dim).uniform_())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        # checkpoints and exports made before the front end was a component hold its buffers as "mel.*"
        for key in [k for k in state_dict if k.startswith(prefix + "mel.")]:
            state_dict[prefix + "frontend." + key[len(prefix):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ frames

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """``[B]`` sample counts -> ``[B]`` frames (centred frames: ``length // hop + 1``)."""
        return self.frontend.num_frames(lengths)

    def padding_mask(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Frame padding mask ``[B, F]`` (True = padding) of a batch, without computing features."""
        return self.frontend.padding_mask(batch)

    def logmel(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel frames ``[B, F, n_mels]`` (zero at padding) and the padding mask ``[B, F]``."""
        return self.frontend(batch)

    def latents(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z [B, F, D], padding_mask [B, F])``: log-mel frames mapped to the trunk width (zero at padding)."""
        frames, padding = self.logmel(batch)
        z = self.input_proj(frames).masked_fill(padding.unsqueeze(-1), 0.0)  # [B, F, D]
        return z, padding

    def frames(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Last-layer outputs ``[B, F, D]`` and the frame padding mask ``[B, F]``."""
        z, padding = self.latents(batch)
        return self.contextualize(z, padding), padding

    def layers(self, batch: Mapping[str, Any]) -> list[torch.Tensor]:
        """Per-layer states ``[B, F, D]``, as ``contextualize(..., all_layers=True)`` lists them."""
        z, padding = self.latents(batch)
        return self.contextualize(z, padding, all_layers=True)

    def embed(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Mean of the last layer over valid frames: ``[B, D]``."""
        features, padding = self.frames(batch)
        return masked_mean(features, padding)

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
    adapter = TrunkAudio(options, context)
    load_own_pretrained(adapter, context)  # its own weights, when pretrained is set
    return adapter
