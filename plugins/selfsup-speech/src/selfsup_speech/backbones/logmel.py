"""``logmel_encoder``: log-mel filterbank frames + a unidirectional LSTM or causal transformer.

The encoder of Autoregressive Predictive Coding (Chung, Hsu, Tang, Glass, An Unsupervised
Autoregressive Model for Speech Representation Learning, Interspeech 2019): log-mel frames
(10 ms shift) into a stack of unidirectional LSTM layers with residual connections. A causal
transformer (pre-LN, sinusoidal positions, a causal attention mask) is the alternative;
``causal = false`` makes either bidirectional (not for APC).

The log-mel frames are computed per clip on its valid samples only (torchaudio
``MelSpectrogram``, centred frames with reflect padding), so padding in a batch never changes
them; ``latents`` returns them, the targets of APC. With ``normalize = "utterance"`` every mel band
is standardised over the clip's frames.

``pretrained`` starts the encoder from a state dict or a selfsup export of a ``logmel_encoder`` with
the same options (local, or in an ``hf:`` repository); the front end has no weights.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn
from torchaudio.transforms import MelSpectrogram

from selfsup.components import BuildContext
from selfsup.lib import masked_mean, sinusoidal_positions
from selfsup_speech.backbones.common import FrameEncoderMixin, audio_and_lengths, lengths_to_padding_mask
from selfsup_speech.backbones.options import LogMelEncoderOptions, LogMelFrontendOptions

LOG_FLOOR = 1e-6  # added to mel power before the log


def centred_frames(lengths: Any, hop: int) -> torch.Tensor:
    """``[B]`` sample counts -> ``[B]`` frames of a centred STFT: ``length // hop + 1``."""
    return torch.div(torch.as_tensor(lengths).long(), hop, rounding_mode="floor") + 1


def logmel_frames(
    mel: MelSpectrogram, batch: Mapping[str, Any], hop: int, normalize: str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(frames [B, F, n_mels], padding_mask [B, F])``: each clip's log-mel frames (centred frames,
    ``length // hop + 1`` of them), standardised per utterance when ``normalize == "utterance"``,
    zero at padding. Shared by ``logmel_encoder`` and ``logmel_frontend`` (which other plugins build by name)."""
    audio, lengths = audio_and_lengths(batch)  # [B, T], [B]
    valid = centred_frames(lengths, hop)  # [B]
    out = audio.new_zeros(audio.shape[0], int(valid.max()), mel.n_mels)  # [B, F, n_mels]
    for i in range(audio.shape[0]):
        clip = audio[i, : int(lengths[i])]
        if clip.numel() <= mel.n_fft // 2:  # reflect padding needs more samples than half a window
            clip = nn.functional.pad(clip, (0, mel.n_fft // 2 + 1 - clip.numel()))
        frames = torch.log(mel(clip.float()) + LOG_FLOOR).T[: int(valid[i])]  # [F_i, n_mels]
        if normalize == "utterance":
            std = frames.std(0, keepdim=True) if frames.shape[0] > 1 else torch.ones_like(frames[:1])
            frames = (frames - frames.mean(0, keepdim=True)) / std.clamp_min(1e-5)
        out[i, : frames.shape[0]] = frames
    return out, lengths_to_padding_mask(valid, out.shape[1])


def mel_spectrogram(sample_rate: int, win_ms: float, hop_ms: float, n_mels: int) -> tuple[MelSpectrogram, int, int]:
    """``(MelSpectrogram, window, hop)`` in samples: centred frames, reflect padding, power 2, the
    FFT size the next power of two of the window."""
    win = max(1, round(win_ms * sample_rate / 1000))
    hop = max(1, round(hop_ms * sample_rate / 1000))
    n_fft = 1 << (win - 1).bit_length()
    mel = MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, win_length=win, hop_length=hop,
                         n_mels=n_mels, center=True, pad_mode="reflect", power=2.0)
    # the window is a view into a longer periodic window: own storage, so safetensors can save it
    mel.spectrogram.window = mel.spectrogram.window.clone()
    return mel, win, hop


class LogMelFrontend(nn.Module):
    """``logmel_frontend``: each clip's log-mel frames (see :func:`logmel_frames`), with no weights.

    Published for other plugins' backbones (the multimodal ``trunk_audio`` adapter builds it by
    name, ``context.build("backbones", "logmel_frontend", {...})``) and usable on its own as a
    baseline backbone: ``embed`` is the mean log-mel vector over the valid frames (``[B, n_mels]``).
    ``forward(batch) -> (frames [B, F, n_mels], padding_mask [B, F])``; ``num_frames(lengths)``,
    ``padding_mask(batch)``, ``frame_rate``, ``frame_offset``, ``sample_rate``, ``hop``, ``win``."""

    def __init__(self, options: LogMelFrontendOptions):
        super().__init__()
        o = self.options = options
        self.sample_rate, self.n_mels, self.normalize = int(o.sample_rate), int(o.n_mels), o.normalize
        self.mel, self.win, self.hop = mel_spectrogram(o.sample_rate, o.win_ms, o.hop_ms, o.n_mels)
        self.frame_rate = o.sample_rate / self.hop
        self.frame_offset = 0.0  # centred frames: frame i is centred on sample i * hop
        self.output_dim = self.latent_dim = self.n_mels

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """``[B]`` sample counts -> ``[B]`` frames (centred frames: ``length // hop + 1``)."""
        return centred_frames(lengths, self.hop)

    def padding_mask(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Frame padding mask ``[B, F]`` (True = padding) of a batch, without computing features."""
        _, lengths = audio_and_lengths(batch)
        valid = self.num_frames(lengths)
        return lengths_to_padding_mask(valid, int(valid.max()))

    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel frames ``[B, F, n_mels]`` (zero at padding) and the padding mask ``[B, F]``."""
        return logmel_frames(self.mel, batch, self.hop, self.normalize)

    def embed(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Mean log-mel vector over the valid frames: ``[B, n_mels]``."""
        return masked_mean(*self(batch))


class LogMelEncoder(FrameEncoderMixin, nn.Module):
    """See the package docstring of :mod:`selfsup_speech.backbones` for the interface."""

    def __init__(self, options: LogMelEncoderOptions):
        super().__init__()
        o = self.options = options
        if o.kind == "lstm" and not o.causal and o.hidden_dim % 2:
            raise ValueError("a bidirectional LSTM (causal = false) needs an even hidden_dim (half per direction)")
        self.sample_rate = int(o.sample_rate)
        self.mel, self.win, self.hop = mel_spectrogram(o.sample_rate, o.win_ms, o.hop_ms, o.n_mels)
        self.frame_rate = o.sample_rate / self.hop
        self.frame_offset = 0.0  # centred frames: frame i is centred on sample i * hop
        self.latent_dim = int(o.n_mels)
        self.output_dim = int(o.hidden_dim)
        self.causal = bool(o.causal)
        self.mask_embedding = nn.Parameter(torch.zeros(o.n_mels))  # [n_mels]: a masked frame's input
        self.dropout = nn.Dropout(o.dropout)
        if o.kind == "lstm":
            per_direction = o.hidden_dim if o.causal else o.hidden_dim // 2
            dims = [o.n_mels] + [o.hidden_dim] * o.layers
            self.rnns = nn.ModuleList(
                nn.LSTM(dims[i], per_direction, batch_first=True, bidirectional=not o.causal) for i in range(o.layers)
            )
        else:
            self.input_proj = nn.Linear(o.n_mels, o.hidden_dim)
            self.blocks = nn.ModuleList(
                nn.TransformerEncoderLayer(o.hidden_dim, o.heads, o.ffn_dim, o.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
                for _ in range(o.layers)
            )
            self.final_norm = nn.LayerNorm(o.hidden_dim)

    # ------------------------------------------------------------------ frames

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """``[B]`` sample counts -> ``[B]`` frames (centred frames: ``length // hop + 1``)."""
        return centred_frames(lengths, self.hop)

    def latents(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel frames ``[B, F, n_mels]`` (zero at padding) and the padding mask ``[B, F]``."""
        return logmel_frames(self.mel, batch, self.hop, self.options.normalize)

    def logmel(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The log-mel frames (APC's inputs and targets): same as :meth:`latents`."""
        return self.latents(batch)

    def contextualize(
        self, z: torch.Tensor, padding_mask: torch.Tensor, mask: torch.Tensor | None = None, all_layers: bool = False
    ) -> torch.Tensor | list[torch.Tensor]:
        """``z [B, F, n_mels]`` -> ``[B, F, D]`` (or each layer's output). Frames where ``mask``
        is True take the mask embedding in place of their log-mel vector."""
        if mask is not None:
            z = torch.where(mask.unsqueeze(-1), self.mask_embedding.to(z.dtype), z)
        z = z.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        states = self._lstm(z, padding_mask) if self.options.kind == "lstm" else self._transformer(z, padding_mask)
        return states if all_layers else states[-1]

    def _lstm(self, z: torch.Tensor, padding_mask: torch.Tensor) -> list[torch.Tensor]:
        lengths = (~padding_mask).sum(1).cpu()  # [B]
        x, states = z, []
        for i, rnn in enumerate(self.rnns):
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            y, _ = rnn(packed)
            y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])  # [B, F, D]
            if self.options.residual and i > 0:
                y = y + x  # APC's residual connections between layers of equal width
            states.append(y)
            x = self.dropout(y) if i < len(self.rnns) - 1 else y
        return states

    def _transformer(self, z: torch.Tensor, padding_mask: torch.Tensor) -> list[torch.Tensor]:
        f = z.shape[1]
        x = self.input_proj(z) + sinusoidal_positions(f, self.output_dim, z.device)  # [B, F, D]
        x = self.dropout(x)
        attn_mask = (torch.triu(torch.ones(f, f, dtype=torch.bool, device=z.device), diagonal=1)
                     if self.causal else None)  # [F, F], True = may not attend
        states = []
        for block in self.blocks:
            x = block(x, src_mask=attn_mask, src_key_padding_mask=padding_mask)
            states.append(x)
        states[-1] = self.final_norm(states[-1])
        return states

    def padding_mask(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Frame padding mask ``[B, F]`` of a batch (without computing features)."""
        _, lengths = audio_and_lengths(batch)
        valid = self.num_frames(lengths)
        return lengths_to_padding_mask(valid, int(valid.max()))

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.embed(batch)


def build(options: LogMelEncoderOptions, context: BuildContext) -> LogMelEncoder:
    """The encoder; ``pretrained`` (a state-dict file, a ``selfsup export --format selfsup`` folder or an
    ``hf:`` repository of either) loads into it with a report (:func:`selfsup.lib.pretrained.load_pretrained_into`);
    the mask embedding is optional (APC does not train it)."""
    encoder = LogMelEncoder(options)
    if options.pretrained is not None:
        from selfsup.lib.pretrained import load_pretrained_into

        load_pretrained_into(encoder, options, type_name="logmel_encoder", accepts=("path", "hf"),
                             optional=("mask_embedding",), base_dir=context.base_dir)
    return encoder


def build_frontend(options: LogMelFrontendOptions, context: BuildContext) -> LogMelFrontend:
    return LogMelFrontend(options)
