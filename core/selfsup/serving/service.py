"""The served model: loading, decoding, batched inference, drift monitoring and hot reload.

A :class:`Loaded` is one version of the model: the backbone (and fine-tuned head) from
:func:`selfsup.model.load_model`, the decoder of the run's data source (the run's own
preprocessing, from its recipe), and the drift reference of its training data. The
:class:`Service` holds the current one; a reload builds and warms up the next one beside it and
then swaps one reference, so batches already running finish on the old version and later ones use
the new: no request fails during the swap.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup.components import BadInput, BuildContext
from selfsup.serving.config import ServeConfig
from selfsup.serving.metrics import Metrics
from selfsup.serving.reference import Neighbours, fit_reference

log = logging.getLogger("selfsup.serve")

@dataclass
class Payload:
    """One decoded input on its way through the batcher."""

    sample: dict[str, Any]
    predict: bool
    summary: str = ""  # a short description of the raw input (the dashboard's recent inputs)


@dataclass
class Loaded:
    model: Any  # selfsup.model.Model
    decoder: Any  # selfsup.components.Decoder
    version: str
    checkpoint: str  # the checkpoint or export folder the weights came from
    reference: Any = None  # selfsup.lib.drift.DriftReference, or None
    neighbours: Any = None  # selfsup.serving.reference.Neighbours, or None (no training data at hand)
    session: Any = None  # an onnxruntime.InferenceSession (--runtime onnx), else None: PyTorch eager
    needs: tuple[str, ...] = ()  # sample keys the served backbone reads (its registered `consumes`, required ones)
    info: dict[str, Any] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.time)

    def infer(self, samples: list[dict[str, Any]], heads: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embeddings ``[N, D]`` and the head's raw outputs ``[N, ...]`` (when ``heads``) of a batch."""
        model = self.model
        collate = model.collate
        if collate is None:
            from torch.utils.data import default_collate as collate
        from selfsup.lib.data import to_device

        if self.session is not None:
            return self._infer_onnx(collate([dict(s) for s in samples]), heads)
        batch = to_device(collate([dict(s) for s in samples]), model.device)
        with torch.inference_mode():
            features = model.features(batch).float()  # [N, D]
            outputs = None
            if heads and model.task is not None:
                reads_own = getattr(model.task.head, "inputs", None) is not None
                outputs = (model.task.outputs(batch, model.backbone) if reads_own
                           else model.task.head(features)).float()
        return features.cpu(), None if outputs is None else outputs.cpu()

    def _infer_onnx(self, batch: dict[str, Any], heads: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        wanted = {i.name for i in self.session.get_inputs()}
        results = self.session.run(None, {k: v.numpy() for k, v in batch.items() if k in wanted})
        features = torch.from_numpy(results[0]).float()
        outputs = torch.from_numpy(results[1]).float() if heads and len(results) > 1 else None
        return features, outputs

    def answer(self, embedding: torch.Tensor, outputs: torch.Tensor | None) -> dict[str, Any]:
        """The JSON of one input: its embedding, or its prediction (and probabilities)."""
        if outputs is None:
            return {"embedding": embedding.tolist()}
        head = self.model.task.head
        with torch.inference_mode():
            prediction = head.predict(outputs.unsqueeze(0).to(self.model.device)).cpu()[0]
        out: dict[str, Any] = {"prediction": prediction.tolist()}
        if head.problem in ("single_label", "token"):
            out["probabilities"] = outputs.softmax(-1).tolist()
        elif head.problem == "multi_label":
            out["probabilities"] = outputs.sigmoid().tolist()
        names = self.info.get("label_names")
        if names and head.problem == "single_label" and isinstance(out["prediction"], int):
            out["label"] = names[out["prediction"]] if 0 <= out["prediction"] < len(names) else None
        return out


def data_spec(model: Any) -> tuple[str, dict[str, Any]]:
    """The data source (type, options) whose samples the served model was trained on."""
    from selfsup.model import data_of, finetune_task, primary
    from selfsup.recipe import parse_recipe

    if not model.recipe:
        raise ValueError(f"{model.source} records no recipe (an export from an older selfsup): export it again")
    recipe = parse_recipe(model.recipe, "recipe")
    key = model.key or primary(recipe)[0]
    finetune = finetune_task(recipe, key) if model.task is not None else None
    spec = recipe.data[recipe.tasks[finetune].data if finetune else data_of(recipe, key)]
    return spec.type, dict(spec.options or {})


def load(config: ServeConfig, pm: Any) -> Loaded:
    """Load the model at ``config.path``, its decoder and drift reference, and warm it up."""
    from selfsup.engine.init import MANIFEST
    from selfsup.model import load_model

    path = Path(config.path)
    model = load_model(path, pm, device=config.device, backbone=config.backbone, project=config.project)
    for module in model.modules():
        module.eval()
    kind, options = data_spec(model)
    decoder = BuildContext(name="serve", base_dir=model.base_dir, _registry=pm.registry).decoder(kind, options)
    export = (path / MANIFEST).is_file()
    checkpoint = str(path) if export else model.source.rsplit("(", 1)[-1].rstrip(")")
    version = _version(path, checkpoint, export)
    info: dict[str, Any] = {"data": {"type": kind, "options": options}, "inputs": dict(decoder.fields),
                            "export": export, "backbone": model.key, "project": config.project}
    names = getattr(model.data, "label_names", None)
    if names:
        info["label_names"] = [str(n) for n in names]
    loaded = Loaded(model=model, decoder=decoder, version=version, checkpoint=checkpoint, info=info,
                    needs=needed_keys(model, pm))
    if config.runtime == "onnx":
        loaded.session = onnx_session(loaded, path, export, config)
        info["runtime"] = "onnx"
    loaded.info["embedding_dim"] = warm_up(loaded)
    if config.drift:
        loaded.reference = drift_reference(loaded, path, export, config)
    loaded.neighbours = Neighbours.of(model)
    return loaded


def needed_keys(model: Any, pm: Any) -> tuple[str, ...]:
    """The sample keys the served backbone must get (its registered ``consumes``, optional ones left
    out): a decoder of a paired source (image + caption) decodes either field, and an input without
    the served backbone's is refused by name before it reaches the model."""
    from selfsup.model import primary
    from selfsup.recipe import parse_recipe

    recipe = parse_recipe(model.recipe, "recipe")
    spec = recipe.backbones[model.key or primary(recipe)[0]]
    component = pm.registry.get("backbone", spec.type)
    if component is None or not component.consumes:
        return ()
    return tuple(k.key for k in component.consumes.resolve(dict(spec.options or {}))
                 if not k.optional and k.type is not None)


def onnx_session(loaded: Loaded, path: Path, export: bool, config: ServeConfig) -> Any:
    """An ONNX Runtime session of the model: exported once per version under ``<run>/serve/`` (traced
    from the run's own batch and checked against PyTorch by ``selfsup export``'s code)."""
    import onnxruntime

    from selfsup.exporting import write_traced

    if export:
        raise ValueError("--runtime onnx serves a run directory (it exports the model to ONNX from the run's data); "
                         "serve the run, or use --runtime torch for a selfsup export")
    folder = path / "serve" / f"onnx-{loaded.version}{_variant(config)}"
    if not (folder / "model.onnx").is_file():
        tmp = folder.with_name(folder.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        write_traced(loaded.model, tmp, "onnx", tolerance=1e-4)
        tmp.replace(folder)
    loaded.model.to("cpu")
    return onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])


def _variant(config: ServeConfig) -> str:
    """The served backbone and projection in the names of the files cached per model (ONNX, drift)."""
    return "".join(f"-{part}" for part in (config.backbone, config.project) if part)


def _version(path: Path, checkpoint: str, export: bool) -> str:
    """A short name of the weights: the checkpoint (or "export"), with a hash of the weights files'
    names, sizes and modification times (a re-written checkpoint of the same step gets a new one)."""
    folder = path if export else path / "checkpoints" / checkpoint
    weights = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    digest = hashlib.sha256()
    for w in weights:
        stat = w.stat()
        digest.update(f"{w.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return f"{'export' if export else checkpoint}-{digest.hexdigest()[:8]}"


def example_sample(model: Any) -> dict[str, Any] | None:
    """A sample of the model's own data (label and index dropped), for warm-up; None without data."""
    data = model.data
    if data is None:
        return None
    if hasattr(data, "__len__") and hasattr(data, "__getitem__") and len(data):
        sample = data[0]
    elif hasattr(data, "iterate"):
        sample = next(iter(data.iterate(epoch=0, rank=0, world_size=1, seed=0)), None)
        if sample is None:
            return None
    else:
        return None
    return {k: v for k, v in sample.items() if k not in ("label", "index")}


def warm_up(loaded: Loaded) -> int | None:
    """Run one input through the model (first-call costs paid before /readyz says ready); the
    embedding size, when a sample was at hand."""
    sample = example_sample(loaded.model)
    if sample is None:
        return getattr(loaded.model.backbone, "output_dim", None)
    features, _ = loaded.infer([sample], heads=loaded.model.task is not None)
    return int(features.shape[-1])


def drift_reference(loaded: Loaded, path: Path, export: bool, config: ServeConfig) -> Any:
    """The drift reference: an export's ``drift.json``, or (run directory) the one cached under
    ``<run>/serve/`` for this version, computed from the run's data when missing; None when there
    is no data to compute it from (logged)."""
    from selfsup.lib.drift import DriftReference

    if export:
        file = path / "drift.json"
        if file.is_file():
            return DriftReference.load(file)
        log.warning("%s has no drift.json (exported before drift references existed): drift is not scored", path)
        return None
    file = path / "serve" / f"drift-{loaded.version}{_variant(config)}-w{config.drift_window}.json"
    if file.is_file():
        return DriftReference.load(file)
    reference = fit_reference(loaded.model, config.drift_window)
    if reference is None:
        log.warning("no training data at hand to compute the drift reference: drift is not scored")
        return None
    file.parent.mkdir(parents=True, exist_ok=True)
    reference.save(file)
    return reference


class Service:
    """The current model, the drift monitor and the metrics; reloads swap the model in one step."""

    def __init__(self, config: ServeConfig, pm: Any):
        self.config, self.pm = config, pm
        self.metrics = Metrics()
        self.current: Loaded | None = None
        self.monitor: Any = None
        self.error: str | None = None  # why the model could not be loaded, for /readyz
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=20)  # the dashboard's inputs
        self._reload_lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self.current is not None

    def start(self) -> None:
        """Load the first model (blocking; run off the event loop)."""
        try:
            self._install(load(self.config, self.pm))
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and the command
            self.error = f"{type(exc).__name__}: {exc}"
            raise

    def reload(self) -> Loaded:
        """Load the model at the configured path again (a newer checkpoint, a new export) and swap
        it in; on failure the current model stays and the error is raised."""
        with self._reload_lock:
            try:
                loaded = load(self.config, self.pm)
            except Exception:
                self.metrics.reloads.labels("failed").inc()
                raise
            self._install(loaded)
            self.metrics.reloads.labels("ok").inc()
            return loaded

    def newest_checkpoint(self) -> str | None:
        """The checkpoint a reload would load now (run directories), for --watch-seconds."""
        from selfsup.api import open_run

        if not (Path(self.config.path) / "recipe.json").is_file():
            return None
        found = open_run(self.config.path).checkpoint
        return None if found is None else found.name

    def _install(self, loaded: Loaded) -> None:
        monitor = None
        if loaded.reference is not None:
            from selfsup.lib.drift import DriftMonitor

            monitor = DriftMonitor(loaded.reference, window=self.config.drift_window)
        self.monitor = monitor
        self.current = loaded  # the swap: one reference
        self.error = None
        m = self.metrics
        m.set_model(loaded.version, str(self.config.path))
        m.ready.set(1)
        if loaded.reference is not None:
            m.drift_threshold.set(loaded.reference.threshold)
            m.drift_alert.set(0)

    # ---------------------------------------------------------------- the batcher's work (a thread)

    def run_batch(self, payloads: list[Payload]) -> list[Any]:
        """Answers for a batch; an input the model cannot take gets a BadInput, the others their answer."""
        loaded = self.current  # a reload during this batch does not change the model it runs on
        assert loaded is not None
        heads = any(p.predict for p in payloads)
        try:
            features, outputs = loaded.infer([p.sample for p in payloads], heads)
            rows = [(features[i], None if outputs is None or not p.predict else outputs[i])
                    for i, p in enumerate(payloads)]
        except Exception:  # noqa: BLE001 - find which input the model cannot take: run them one by one
            rows = []
            for p in payloads:
                try:
                    f, o = loaded.infer([p.sample], p.predict)
                    rows.append((f[0], None if o is None else o[0]))
                except Exception as exc:  # noqa: BLE001 - that input's error, not the service's
                    rows.append(BadInput("", f"the model cannot take this input: {type(exc).__name__}: "
                                             f"{str(exc)[:300]}", 422))
        good = [(p, r[0]) for p, r in zip(payloads, rows) if not isinstance(r, BaseException)]
        if good:
            embeddings = torch.stack([e for _, e in good]).numpy()
            if self.monitor is not None:
                self.monitor.add(embeddings)
                self._drift_metrics()
            self._remember(loaded, [p for p, _ in good][-5:], embeddings[-5:])
        return [r if isinstance(r, BaseException) else loaded.answer(r[0], r[1]) for r in rows]

    def _remember(self, loaded: Loaded, payloads: list[Payload], embeddings: np.ndarray) -> None:
        now = time.time()
        for p, row in zip(payloads, embeddings):
            self.recent.append({"time": now, "input": p.summary, "embedding": row, "neighbours": loaded.neighbours})

    def recent_inputs(self) -> list[dict[str, Any]]:
        """The dashboard's recent inputs with their nearest training examples, found now (when the
        dashboard asks) rather than for every batch served."""
        rows = list(self.recent)
        out = []
        for row in rows:
            neighbours = row["neighbours"]
            near = neighbours.nearest(row["embedding"][None])[0] if neighbours is not None else None
            out.append({"time": row["time"], "input": row["input"], "nearest": near})
        return out

    def _drift_metrics(self) -> None:
        score = self.monitor.score()
        if score is not None:
            self.metrics.drift_score.set(score)
            self.metrics.drift_alert.set(1 if self.monitor.alert else 0)
