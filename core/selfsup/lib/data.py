"""Helpers for reading data sources and batches: in order, on a device, through a frozen backbone.

Importing this module does not import torch (functions that need it import it when called).
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from selfsup.lib.modules import frozen
from selfsup.lib.seeding import sample_generator

if TYPE_CHECKING:  # pragma: no cover
    import torch


def is_iterable_source(source: Any) -> bool:
    """Whether ``source`` is a streaming source (has ``iterate`` and no ``__getitem__``)."""
    return hasattr(source, "iterate") and not hasattr(source, "__getitem__")


def to_device(batch: Any, device: torch.device | str) -> Any:
    """Every tensor of a nested batch (dicts, lists, tuples) moved to ``device``; other values as they are."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def ordered(source: Any, *, seed: int = 0, index: bool = False, pipeline: Sequence[Any] = (),
            stream: int | str = 0) -> Iterator[dict[str, Any]]:
    """A source's samples in a fixed order: ``source[0]``, ``source[1]``, ... for a map-style
    source, epoch 0 on a single process for a streaming one (``seed``: its shuffle seed).

    With ``index`` every sample carries its position as ``"index"`` (unless it has one). With
    ``pipeline`` (augmentations ``(sample, generator) -> sample``) sample ``i`` goes through them
    with the generator ``sample_generator(seed, stream, 0, i)``, so every pass sees the same views."""
    if is_iterable_source(source):
        samples = source.iterate(epoch=0, rank=0, world_size=1, seed=seed)
    else:
        samples = (source[i] for i in range(len(source)))
    steps = list(pipeline)
    if steps:
        from selfsup.engine.data import apply_pipeline  # names a failing augmentation in its error
    for i, sample in enumerate(samples):
        if index:
            sample = {"index": i, **sample}
        yield apply_pipeline(sample, steps, sample_generator(seed, stream, 0, i)) if steps else sample


def batches(source: Any, *, batch_size: int, pipeline: Sequence[Any] = (), seed: int = 0,
            stream: int | str = 0) -> Iterator[dict[str, Any]]:
    """A whole source in order (:func:`ordered`), collated into batches of ``batch_size`` (the last may
    be smaller) with the source's ``collate`` or torch's ``default_collate``; on the CPU."""
    from torch.utils.data import default_collate

    collate = getattr(source, "collate", None) or default_collate  # e.g. text sources pad to the longest
    chunk: list[dict[str, Any]] = []
    for sample in ordered(source, seed=seed, pipeline=pipeline, stream=stream):
        chunk.append(sample)
        if len(chunk) == batch_size:
            yield collate(chunk)
            chunk = []
    if chunk:
        yield collate(chunk)


def extract_features(
    backbone: Any, source: Any, *, pipeline: Sequence[Any] = (), batch_size: int, device: Any, seed: int = 0,
    stream: int | str = 0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``backbone.embed`` over a whole source in order, frozen: ``(features [N, D] float32 on the CPU,
    labels [N] int64 or None)``. Samples are batched as :func:`batches` does; labels are returned
    when every batch has a ``"label"``."""
    import torch

    feats, labels = [], []
    with frozen(backbone):
        for batch in batches(source, batch_size=batch_size, pipeline=pipeline, seed=seed, stream=stream):
            feats.append(backbone.embed(to_device(batch, device)).float().cpu())
            if "label" in batch:
                labels.append(torch.as_tensor(batch["label"]).long().cpu())
    if not feats:
        raise ValueError("cannot evaluate on an empty data source")
    return torch.cat(feats), (torch.cat(labels) if len(labels) == len(feats) else None)


def scan_targets(source: Any, key: str, *, limit: int | None = None) -> list[Any]:
    """``sample[key]`` of every sample, in order (epoch 0 of a streaming source), without augmentations:
    what a head needs to size itself and weight classes. A source may define ``targets(key)`` to
    answer without decoding its samples. Raises ValueError naming the key when a sample lacks it."""
    fast = getattr(source, "targets", None)
    if callable(fast):
        values = fast(key)
        if values is not None:
            return list(values)
    out = []
    for i, sample in enumerate(ordered(source)):
        if key not in sample:
            raise ValueError(f"sample {i} has no {key!r} field (it has {', '.join(sorted(sample))})")
        out.append(sample[key])
        if limit is not None and len(out) >= limit:
            break
    return out


def find_inputs(inputs: Iterable[str], extensions: Iterable[str], *,
                what: str = "files") -> tuple[list[Path], list[str] | None]:
    """``(files, labels)``: the files of ``inputs`` (folders searched recursively, files, glob
    patterns) whose suffix is one of ``extensions``, in order, each once; ``labels[i]`` is the class
    sub-folder of ``files[i]`` when every file lies in a sub-folder of an input folder (as the
    folder data sources label them), else ``labels`` is None. ``what`` names the files in errors.
    What the ``prepare-*`` commands of the plugins read."""
    exts = {e.lower() for e in extensions}
    files: list[Path] = []
    labels: list[str | None] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in exts)
            files += found
            labels += [p.relative_to(path).parts[0] if p.parent != path else None for p in found]
        elif path.is_file():
            files.append(path)
            labels.append(None)
        else:
            matches = sorted(Path(m) for m in glob.glob(item) if Path(m).is_file())
            if not matches:
                raise ValueError(f"no such file, folder or matching pattern: {item}")
            files += matches
            labels += [None] * len(matches)
    seen: set[Path] = set()
    keep = []
    for i, f in enumerate(files):
        if f.resolve() not in seen:
            seen.add(f.resolve())
            keep.append(i)
    files, labels = [files[i] for i in keep], [labels[i] for i in keep]
    if not files:
        raise ValueError(f"no {what} ({', '.join(sorted(exts))}) in {', '.join(inputs)}")
    return files, (labels if all(x is not None for x in labels) else None)  # type: ignore[return-value]
