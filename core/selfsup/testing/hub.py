"""Pretrained weights in the libraries' cache layouts, for tests of loading code that would download.

:func:`hub_cache_repo` writes a repository into a Hugging Face Hub cache exactly as
``huggingface_hub`` leaves one after a download (``models--org--name/blobs/<sha256>``,
``snapshots/<commit>/<file>`` links, ``refs/<revision>``), so ``hf:`` and ``timm:`` specs resolve
through the same ``snapshot_download`` call that fetches them for users. :func:`torch_hub_file`
puts a file where torch hub (torchvision, torchaudio) caches a URL's download."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (str, Path)):
        return Path(value).read_bytes()
    if isinstance(value, Mapping):  # a state dict: saved as safetensors
        from safetensors.torch import save

        return save({k: v.contiguous() for k, v in value.items()})
    raise TypeError(f"expected bytes, a path or a state dict, got {type(value).__name__}")


def hub_cache_repo(cache_dir: str | Path, repo_id: str, files: Mapping[str, Any], *, revision: str = "main",
                   commit: str | None = None, repo_type: str = "model") -> Path:
    """Write ``files`` (name -> bytes, a file path or a state dict saved as safetensors) as the
    snapshot of ``repo_id`` at ``revision`` in the Hub cache ``cache_dir``; returns the snapshot
    folder. ``commit`` defaults to a hash of the contents (40 hex digits, like a git commit)."""
    blobs = {name: _bytes(value) for name, value in files.items()}
    if commit is None:
        digest = hashlib.sha1()
        for name in sorted(blobs):
            digest.update(name.encode() + b"\0" + hashlib.sha256(blobs[name]).digest())
        commit = digest.hexdigest()
    repo = Path(cache_dir) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for name, data in blobs.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    if revision != commit:
        (repo / "refs" / revision).write_text(commit)
    return snapshot


def torch_hub_file(url: str, value: Any, hub_dir: str | Path | None = None) -> Path:
    """Write ``value`` (bytes, a file path, or a state dict saved with ``torch.save``) where torch
    hub caches ``url`` (``<hub_dir or torch.hub.get_dir()>/checkpoints/<file name>``)."""
    import torch

    if hub_dir is None:
        hub_dir = torch.hub.get_dir()
    target = Path(hub_dir) / "checkpoints" / os.path.basename(urlparse(url).path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(value, Mapping):
        torch.save(dict(value), target)
    else:
        target.write_bytes(_bytes(value))
    return target
