"""``selfsup embed RUN_OR_EXPORT --data D --out FILE``: a trained backbone's embeddings of a data set.

``D`` is a data key of the run's recipe (``val``) or a data table in TOML (``{ type = "digits",
options = { split = "val" } }``). Samples are read in order by ``workers`` data-loader processes (no
DDP), batched with the source's ``collate``, embedded in eval mode without gradients, and written
with each sample's id (its ``id`` field, else its position) and label when the source has them:

* ``.npy``: the ``[N, D]`` float32 matrix only;
* ``.npz``: ``embeddings``, ``ids`` and ``labels`` (when present);
* ``.parquet``: one row per sample, columns ``id``, ``label`` (when present) and ``embedding``
  (a list of floats), written with pyarrow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

SUFFIXES = (".npy", ".npz", ".parquet")


def data_source(model: Any, data: str, pm: Any) -> Any:
    """The source ``data`` names: a key of the model's recipe, or a TOML data table."""
    from selfsup.components import BuildContext
    from selfsup.recipe import RecipeError, parse_toml

    tables = (model.recipe or {}).get("data", {})
    if data in tables:
        spec = tables[data]
    else:
        try:
            spec = parse_toml(f"d = {data}", "--data")["d"]
        except RecipeError:
            spec = None
        if not isinstance(spec, dict) or "type" not in spec:
            known = ", ".join(tables) or "none"
            raise ValueError(f"--data {data!r} is neither a data key of the run ({known}) nor a TOML table "
                             "such as '{ type = \"digits\", options = { split = \"val\" } }'")
    base_dir = model.base_dir if data in tables else Path.cwd()  # a table typed here: relative to the cwd
    context = BuildContext(name="embed", base_dir=base_dir, _registry=pm.registry)
    return context.build("data", spec["type"], spec.get("options") or {})


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, source: Any):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = dict(self.source[i])
        sample.setdefault("id", i)
        return sample


def embed_source(model: Any, source: Any, *, batch_size: int = 256, workers: int = 0,
                 progress: bool = True) -> tuple[np.ndarray, list[Any], np.ndarray | None]:
    """``(embeddings [N, D] float32, ids, labels [N] or None)`` of every sample of ``source``, in order."""
    from torch.utils.data import DataLoader, default_collate

    from selfsup.lib.data import is_iterable_source, ordered

    collate = getattr(source, "collate", None) or default_collate

    def split(samples: list[dict[str, Any]]) -> tuple[Any, list[Any], list[Any]]:
        ids = [s.pop("id") for s in samples]
        labels = [s["label"] for s in samples if "label" in s]
        return collate(samples), ids, labels

    if is_iterable_source(source):
        def chunks() -> Any:
            chunk: list[dict[str, Any]] = []
            for i, sample in enumerate(ordered(source)):
                chunk.append({"id": i, **sample})
                if len(chunk) == batch_size:
                    yield split(chunk)
                    chunk = []
            if chunk:
                yield split(chunk)
        batches, total = chunks(), None
    else:
        loader = DataLoader(_Indexed(source), batch_size=batch_size, shuffle=False, num_workers=workers,
                            collate_fn=split)
        batches, total = iter(loader), len(loader)
    rows, all_ids, all_labels = [], [], []
    bar = _progress(total, progress)
    for batch, ids, labels in batches:
        rows.append(model.embed(batch).numpy())
        all_ids.extend(int(i) if isinstance(i, (int, np.integer, torch.Tensor)) else str(i) for i in ids)
        all_labels.extend(int(v) for v in labels)
        bar(len(ids))
    bar(None)
    if not rows:
        raise ValueError("the data source is empty")
    embeddings = np.concatenate(rows).astype(np.float32)
    labels = np.asarray(all_labels, dtype=np.int64) if len(all_labels) == len(embeddings) else None
    return embeddings, all_ids, labels


def _progress(total: int | None, enabled: bool) -> Any:
    """A transient bar on stderr, as the training loop's: only on a terminal."""
    import sys

    if not enabled or not sys.stderr.isatty():
        return lambda n: None
    from rich.console import Console
    from rich.progress import Progress

    progress = Progress(transient=True, console=Console(stderr=True))
    progress.start()
    job = progress.add_task("embedding", total=total)

    def advance(n: int | None) -> None:
        if n is None:
            progress.stop()
        else:
            progress.advance(job, 1)

    return advance


def write_embeddings(path: Path, embeddings: np.ndarray, ids: list[Any], labels: np.ndarray | None) -> None:
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"--out {path}: use one of {', '.join(SUFFIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    if path.suffix == ".npy":
        np.save(tmp, embeddings)
    elif path.suffix == ".npz":
        extra = {} if labels is None else {"labels": labels}
        np.savez(tmp, embeddings=embeddings, ids=np.asarray(ids), **extra)
    else:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ValueError("parquet output needs pyarrow (pip install pyarrow); or use .npz") from exc
        columns = {"id": pa.array(ids), "embedding": pa.array(list(embeddings), type=pa.list_(pa.float32()))}
        if labels is not None:
            columns = {"id": columns["id"], "label": pa.array(labels), "embedding": columns["embedding"]}
        table = pa.table(columns).replace_schema_metadata({"selfsup": json.dumps({"dim": embeddings.shape[1]})})
        pq.write_table(table, tmp)
    tmp.replace(path)
