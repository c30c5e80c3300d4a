"""``<run>/environment.json``: what the run ran on (software versions, device, processes), written
at the start of every run and resume, for reports and for anyone reproducing a result."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from selfsup import __version__
from selfsup.engine.checkpoint import write_text_atomic

FILENAME = "environment.json"


def environment(device: torch.device, world_size: int, plugins: Any = None) -> dict[str, Any]:
    """Python, platform, torch (and CUDA), the device, processes, CPU count, selfsup and plugin versions."""
    env: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "world_size": world_size,
        "selfsup": __version__,
    }
    infos = getattr(plugins, "infos", {}) or {}
    env["plugins"] = {name: {"distribution": info.distribution, "version": info.version}
                      for name, info in sorted(infos.items())}
    return env


def write_environment(run_dir: Path, device: torch.device, world_size: int, plugins: Any = None) -> None:
    """Write ``environment.json`` atomically (a resume overwrites it with the resuming machine's)."""
    text = json.dumps(environment(device, world_size, plugins), indent=2)
    write_text_atomic(Path(run_dir) / FILENAME, text)


PRETRAINED = "pretrained.json"


def pretrained_records(backbones: Any) -> dict[str, dict[str, Any]]:
    """``{key: record}`` of the backbones that started from pretrained weights (their
    ``pretrained_record``, set by :func:`selfsup.lib.pretrained.attach_record`)."""
    return {key: record for key, backbone in dict(backbones).items()
            if isinstance(record := getattr(backbone, "pretrained_record", None), dict)}


def write_pretrained(run_dir: Path, records: dict[str, dict[str, Any]]) -> None:
    """``<run>/pretrained.json``: each pretrained backbone's source, revision, files (sha256, bytes)
    and load report; nothing is written when no backbone started from pretrained weights."""
    if records:
        write_text_atomic(Path(run_dir) / PRETRAINED, json.dumps({"backbones": records}, indent=2))
