"""Options of the trunk adapters (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from selfsup.options import PretrainedOptions

#: Width, heads and layers of an adapter's own encoder when it has no trunk (the text plugin's "nano").
_OWN_DEFAULTS = {"layers": 4, "heads": 4, "dim": 128}
_OWN_FIELDS = ("layers", "heads", "dim", "intermediate", "dropout")


class _TrunkOptions(PretrainedOptions):
    """Where an adapter's transformer layers come from: a shared trunk, or its own encoder; and where
    its starting weights come from (``pretrained``: a local state dict file, a ``selfsup export``
    folder or the adapter's own export, or ``hf:org/name[@revision]`` holding one of those). With a
    trunk, ``pretrained`` sets the adapter's own weights only (its input layers and norms): the
    shared layers come from the trunk backbone's own ``pretrained``."""

    trunk: str | None = Field(
        None,
        description="Key of a [backbones] entry defined before this one: a 'transformer' with family 'bert' whose "
        "encoder layers this adapter shares. Omit it to give the adapter its own layers (layers/heads/dim).",
    )
    layers: int | None = Field(None, gt=0, description="Own encoder (no trunk): transformer layers (default 4).")
    heads: int | None = Field(None, gt=0, description="Own encoder (no trunk): attention heads (default 4).")
    dim: int | None = Field(None, gt=0, description="Own encoder (no trunk): width (default 128), divisible by heads.")
    intermediate: int | None = Field(None, gt=0,
                                     description="Own encoder (no trunk): feed-forward size (default 4 * dim).")
    dropout: float | None = Field(None, ge=0, lt=1, description="Own encoder (no trunk): dropout (default 0.1); "
                                  "with a trunk, the trunk's own dropout applies.")

    @model_validator(mode="after")
    def _trunk_or_own(self):
        if self.pretrained is not None:
            from selfsup.lib.pretrained import parse_pretrained

            kind = parse_pretrained(self.pretrained).kind
            if kind not in ("path", "hf"):
                raise ValueError(f"pretrained = {self.pretrained!r}: a trunk adapter takes its own weights, a local "
                                 f"file or folder or hf:org/name[@revision], not {kind}: weights")
        given = [f for f in _OWN_FIELDS if getattr(self, f) is not None]
        if self.trunk is not None and given:
            raise ValueError(f"{', '.join(given)} size the adapter's own encoder; with trunk = {self.trunk!r} the "
                             f"trunk's layers are used: remove them or remove trunk")
        if self.trunk is None:
            layers, heads, dim = self.own_architecture()[:3]
            if dim % heads:
                raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        return self

    def own_architecture(self) -> tuple[int, int, int, int, float]:
        """(layers, heads, dim, intermediate, dropout) of the adapter's own encoder."""
        layers = self.layers or _OWN_DEFAULTS["layers"]
        heads = self.heads or _OWN_DEFAULTS["heads"]
        dim = self.dim or _OWN_DEFAULTS["dim"]
        return layers, heads, dim, self.intermediate or 4 * dim, 0.1 if self.dropout is None else self.dropout


class TrunkImageOptions(_TrunkOptions):
    """Images through transformer layers (ViT-style input): Conv2d patch embedding, a learned
    [CLS]-like token and learned positions, the trunk's layers, a LayerNorm of its own."""

    image_size: int = Field(8, ge=1, description="Height and width of the input images (digits: 8).")
    patch_size: int = Field(2, ge=1, description="Side of the square patches; must divide image_size.")
    in_channels: int = Field(1, ge=1, description="Image channels (digits: 1).")
    pooling: Literal["cls", "mean"] = Field(
        "mean", description="Features: the mean over the patch tokens (learns faster under SimCLR), or the [CLS] "
                            "token's state.")

    @model_validator(mode="after")
    def _patches(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} does not divide image_size {self.image_size}")
        return self


class TrunkAudioOptions(_TrunkOptions):
    """Audio through transformer layers: log-mel frames, a linear map to the width (the latents), a
    learned mask embedding, sinusoidal positions, the trunk's layers (bidirectional: HuBERT, not APC)."""

    sample_rate: int = Field(16000, ge=1000, le=192000, description="Sample rate of the input audio.")
    n_mels: int = Field(40, ge=8, le=256, description="Mel bands.")
    win_ms: float = Field(25.0, gt=0, le=200, description="Analysis window in milliseconds.")
    hop_ms: float = Field(20.0, gt=0, le=100, description="Frame shift in milliseconds (frame_rate = 1000 / hop_ms).")
    normalize: Literal["utterance", "none"] = Field(
        "utterance",
        description="utterance: every mel band standardised over the clip's valid frames; none: raw log-mel.")

    @model_validator(mode="after")
    def _frames(self):
        if self.hop_ms > self.win_ms:
            raise ValueError(f"hop_ms = {self.hop_ms} exceeds win_ms = {self.win_ms}: frames would skip audio")
        return self
