"""``pretrained`` on the trunk adapters: their own weights, from a file, an export or the Hub cache.

Without a trunk an adapter's whole state dict loads (strict: a different architecture is an error);
with a shared trunk only the adapter's own modules load, and the shared layers stay the trunk
backbone's (which has a ``pretrained`` of its own). The Hub repositories are written into a
temporary cache in ``huggingface_hub``'s layout (``selfsup.testing.hub.hub_cache_repo``), offline.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from selfsup.components import BuildContext
from selfsup.lib.pretrained import PretrainedMismatch, WeightsNotCached
from selfsup.plugins import get_plugin_manager
from selfsup.testing.hub import hub_cache_repo

TEXT = {"family": "bert", "layers": 2, "heads": 2, "dim": 32, "context": 64, "tokenizer": "bytes"}
OWN = {"layers": 2, "heads": 2, "dim": 32}
AUDIO = {"n_mels": 16, "hop_ms": 20.0}


@pytest.fixture
def cache(selfsup_weight_caches) -> Path:
    """An empty Hub cache (``HF_HUB_CACHE``) and torch hub dir; downloads off."""
    return selfsup_weight_caches / "hf"


def build(name: str, options: dict, key: str | None = None, seed: int = 0, **context):
    torch.manual_seed(seed)
    comp = get_plugin_manager().registry.get("backbone", name)
    return comp.build(options, BuildContext(name=key or name, **context)).eval()


def audio_batch() -> dict:
    from selfsup_speech.data.collate import pad_audio

    g = torch.Generator().manual_seed(0)
    clips = [{"audio": (0.3 * torch.sin(2 * math.pi * 220.0 * torch.arange(n) / 16000.0)
                        + 0.05 * torch.randn(n, generator=g)).float()} for n in (8000, 5000)]
    return pad_audio(clips)


@torch.no_grad()
def test_image_adapter_loads_its_state_dict_from_the_hub(cache):
    source = build("trunk_image", OWN, seed=1)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    snapshot = hub_cache_repo(cache, "org/trunk-image", {"model.safetensors": state})
    loaded = build("trunk_image", {**OWN, "pretrained": "hf:org/trunk-image"}, seed=2)
    x = torch.rand(3, 1, 8, 8)  # [N, C, H, W]
    torch.testing.assert_close(loaded(x), source(x))
    record = loaded.pretrained_record
    assert record["revision"] == snapshot.name and record["load"]["matched"] == len(state)
    assert record["load"]["missing"] == record["load"]["unexpected"] == []
    # another architecture does not fit: strict refuses, lax loads what matches and reports the rest
    with pytest.raises(PretrainedMismatch, match=r"shape mismatches patch_embed.weight \[32, 1, 2, 2\] vs "
                                                 r"\[32, 1, 4, 4\].*pretrained_strict = false"):
        build("trunk_image", {**OWN, "patch_size": 4, "pretrained": "hf:org/trunk-image"})
    lax = build("trunk_image", {**OWN, "patch_size": 4, "pretrained": "hf:org/trunk-image",
                                "pretrained_strict": False})
    mismatched = {m[0] for m in lax.pretrained_record["load"]["mismatched"]}
    assert mismatched == {"patch_embed.weight", "positions"}
    torch.testing.assert_close(lax.cls_token, source.cls_token)
    with pytest.raises(WeightsNotCached, match="selfsup fetch hf:org/absent"):
        build("trunk_image", {**OWN, "pretrained": "hf:org/absent"})
    # trained weights loaded right after the build (a resume, selfsup eval): the file is not read
    skipped = build("trunk_image", {**OWN, "pretrained": "hf:org/trunk-image"}, seed=2, load_weights=False)
    assert not hasattr(skipped, "pretrained_record") and not torch.equal(skipped.cls_token, source.cls_token)


@torch.no_grad()
def test_audio_adapter_on_a_shared_trunk_loads_only_its_own_modules(cache, tmp_path):
    trained_text = build("transformer", TEXT, key="text", seed=1)
    source = build("trunk_audio", {"trunk": "text", **AUDIO}, key="audio", seed=1, backbones={"text": trained_text})
    source.export(tmp_path / "audio")  # the adapter's own export: its modules and the layers it ran on
    text = build("transformer", TEXT, key="text", seed=2)  # another trunk (in a recipe: its own pretrained)
    before = {k: v.clone() for k, v in text.body.encoder.state_dict().items()}
    loaded = build("trunk_audio", {"trunk": "text", **AUDIO, "pretrained": str(tmp_path / "audio")}, key="audio",
                   seed=2, backbones={"text": text})
    assert loaded.encoder is text.body.encoder
    for key, value in text.body.encoder.state_dict().items():  # the shared layers are left alone
        torch.testing.assert_close(value, before[key])
    own = {k: v for k, v in source.state_dict().items() if not k.startswith("encoder.")}
    for key, value in loaded.state_dict().items():
        if not key.startswith("encoder."):
            torch.testing.assert_close(value, own[key])
    record = loaded.pretrained_record
    assert record["load"]["missing"] == record["load"]["unexpected"] == [] and record["load"]["matched"] == len(own)
    assert "encoder.* tensors not loaded: the layers are the shared trunk 'text'" in record["summary"]
    # the same export into its own layers: then the whole adapter, layers included, is the source's
    alone = build("trunk_audio", {**OWN, **AUDIO, "pretrained": str(tmp_path / "audio")}, seed=3)
    batch = audio_batch()
    torch.testing.assert_close(alone.embed(batch), source.embed(batch))
    with pytest.raises(ValueError, match="an export of a 'trunk_audio' adapter, not 'trunk_image'"):
        build("trunk_image", {**OWN, "pretrained": str(tmp_path / "audio")})


def test_options_refuse_other_kinds_of_weights():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="a trunk adapter takes its own weights"):
        build("trunk_image", {**OWN, "pretrained": "timm:vit_tiny_patch16_224.augreg_in21k"})
