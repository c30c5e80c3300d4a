"""``selfsup export RUN --format F --out DIR``: a trained model in a format other tools load.

Core formats, for any backbone:

* ``selfsup``: ``selfsup.json`` (the backbone's type and options, the fine-tuned task's resolved
  options, the recipe, SHA-256 of every file) + ``backbone.safetensors`` (+ ``task.safetensors``).
  ``selfsup.load``, ``selfsup finetune`` and ``init`` read it.
* ``onnx``: ``model.onnx``, traced from a batch of the run's own data: inputs named after the batch's
  tensor keys (``image``, ``input_ids`` + ``attention_mask``, ``audio``), a dynamic batch axis and a
  dynamic sequence axis for sequences, outputs ``embedding`` (and ``outputs`` of a fine-tuned head).
  Checked with onnxruntime against PyTorch before it is kept (``pip install 'selfsup[onnx]'``).
* ``torchscript``: ``model.pt``, the same module traced, for ``torch.jit.load`` (no selfsup import).

A backbone adds formats of its own library through ``export_formats()`` -> ``{name: write(directory)}``
(the text plugin: ``hf``, ``save_pretrained``; the vision plugin: ``timm``). Every export gets a model
card, ``README.md``: recipe, data, metrics beside the run's baseline, license.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

import selfsup

CORE_FORMATS = ("selfsup", "onnx", "torchscript")


class ExportError(ValueError):
    """A format that does not fit the model, or an export that did not reproduce the model's outputs."""


def formats_of(model: Any) -> list[str]:
    """The formats ``model`` (a :class:`selfsup.model.Model`) can be exported to."""
    own = getattr(model.backbone, "export_formats", None)
    return [*CORE_FORMATS, *(own() if callable(own) else {})]


def export_run(run_dir: Path, out: Path, *, format: str, pm: Any, backbone: str | None = None,
               checkpoint: Path | None = None, tolerance: float = 1e-4) -> Path:
    """Export the run's model (its best, else newest intact checkpoint) to ``out``; returns ``out``."""
    from selfsup.model import load_model

    try:
        model = load_model(Path(run_dir), pm, checkpoint=checkpoint, backbone=backbone)
    except ValueError as exc:
        raise ExportError(f"--backbone: {exc}") from None
    known = formats_of(model)
    if format not in known:
        raise ExportError(f"format {format!r} does not fit {type(model.backbone).__name__}; it exports to "
                          f"{', '.join(known)}")
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if format == "selfsup":
            details = write_selfsup(model, tmp, run_dir)
        elif format in ("onnx", "torchscript"):
            details = write_traced(model, tmp, format, tolerance)
        else:
            model.backbone.export_formats()[format](tmp)
            details = {"files": sorted(p.name for p in tmp.iterdir())}
        write_card(tmp, model, run_dir, format, details)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def write_selfsup(model: Any, folder: Path, run_dir: Path) -> dict[str, Any]:
    from safetensors.torch import save_model

    from selfsup.engine.init import MANIFEST
    from selfsup.model import data_of, finetune_task
    from selfsup.recipe import parse_recipe

    recipe = parse_recipe(model.recipe, "recipe")
    key = model.key
    task_name = finetune_task(recipe, key)
    spec = recipe.backbones[key]
    save_model(model.backbone, str(folder / "backbone.safetensors"))  # tied tensors (BERT's MLM decoder) stored once
    manifest: dict[str, Any] = {
        "format": "selfsup-export", "version": 1, "selfsup": selfsup.__version__, "time": time.time(),
        "key": key, "type": spec.type, "options": spec.options, "weights": "backbone.safetensors",
        "source": str(run_dir), "step": _step(model), "base_dir": str(model.base_dir), "recipe": model.recipe,
    }
    if task_name is not None:
        task_spec = recipe.tasks[task_name]
        save_model(model.task, str(folder / "task.safetensors"))
        manifest["task"] = {"name": task_name, "type": task_spec.type, "options": model.task.export_options(),
                            "weights": "task.safetensors"}
    data_key = recipe.tasks[task_name].data if task_name else data_of(recipe, key)
    if model.collate is not None:
        manifest["collate_data"] = {"type": recipe.data[data_key].type, "options": recipe.data[data_key].options}
    from selfsup.engine.checkpoint import _hash_and_sync  # the checkpoints' record: size and SHA-256
    from selfsup.serving.reference import fit_reference

    reference = fit_reference(model)  # what `selfsup serve` compares live embeddings with (drift)
    if reference is not None:
        reference.save(folder / "drift.json")
    kept = [*sorted(folder.glob("*.safetensors")), *([folder / "drift.json"] if reference is not None else [])]
    manifest["files"] = {p.name: _hash_and_sync(p) for p in kept}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return {"files": sorted([MANIFEST, *manifest["files"]])}


def _step(model: Any) -> int | None:
    text = model.source.rsplit("(", 1)[-1].rstrip(")")
    return int(text.removeprefix("step-")) if text.startswith("step-") else None


class Traced(torch.nn.Module):
    """``forward(*tensors)`` -> embedding (and the head's outputs): the batch rebuilt from positional
    tensors in ``keys`` order, for tracing (ONNX, TorchScript take tensors, not dicts)."""

    def __init__(self, model: Any, keys: list[str]):
        super().__init__()
        self.backbone, self.task, self.projection, self.keys = model.backbone, model.task, model.projection, keys

    def forward(self, *tensors: torch.Tensor) -> Any:
        batch = dict(zip(self.keys, tensors))
        embedding = self.backbone.embed(batch)
        if self.projection is not None:
            embedding = self.projection(embedding)
        if self.task is None:
            return embedding
        return embedding, self.task.outputs(batch, self.backbone)


def example_batch(model: Any, size: int = 2) -> dict[str, torch.Tensor]:
    """``size`` samples of the run's (fine-tuning, else first) task data, collated: the tracing input.
    Only the tensor keys the backbone reads are kept (labels and bookkeeping keys are dropped)."""
    from selfsup.lib.data import ordered

    if model.data is None:
        raise ExportError(f"{model.source}: tracing needs the run's data (load the model from its run directory)")
    samples = []
    for sample in ordered(model.data):
        samples.append(sample)
        if len(samples) == size:
            break
    batch = next(model._batches(samples))
    skip = {"label", "labels", "target", "index", "document_ids", "sentence_starts"}
    return {k: v.cpu() for k, v in batch.items() if isinstance(v, torch.Tensor) and k not in skip}


def write_traced(model: Any, folder: Path, format: str, tolerance: float) -> dict[str, Any]:
    batch = example_batch(model)
    keys = list(batch)
    module = Traced(model.to("cpu"), keys).eval()
    args = tuple(batch[k] for k in keys)
    with torch.no_grad():
        expected = module(*args)
    expected = expected if isinstance(expected, tuple) else (expected,)
    names = ["embedding", "outputs"][: len(expected)]
    if format == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(module, args, check_trace=False, strict=False)
        path = folder / "model.pt"
        traced.save(str(path))
        with torch.no_grad():
            got = torch.jit.load(str(path))(*args)
        got = got if isinstance(got, tuple) else (got,)
    else:
        path = folder / "model.onnx"
        dynamic = {k: ({0: "batch", 1: "sequence"} if v.ndim == 2 and not v.is_floating_point()
                       or (k == "audio" and v.ndim == 2) else {0: "batch"}) for k, v in batch.items()}
        dynamic.update({n: {0: "batch"} for n in names})
        torch.onnx.export(module, args, str(path), input_names=keys, output_names=names, dynamic_axes=dynamic,
                          opset_version=17, dynamo=False)
        got = run_onnx(path, batch)
    diff = max(float((torch.as_tensor(g).float() - e.float()).abs().max()) for g, e in zip(got, expected))
    if not diff <= tolerance:
        raise ExportError(f"the {format} export's outputs differ from the model's by {diff:.3g} (tolerance "
                          f"{tolerance:g}); it was not written")
    return {"files": [path.name], "inputs": {k: list(v.shape) for k, v in batch.items()}, "outputs": names,
            "max_abs_diff": diff}


def run_onnx(path: Path, batch: dict[str, torch.Tensor]) -> list[Any]:
    """The ONNX model's outputs on ``batch`` with onnxruntime (CPU)."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ExportError("the onnx format needs onnxruntime: pip install 'selfsup[onnx]'") from exc
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v.numpy() for k, v in batch.items() if k in wanted})


def _head_text(model: Any, format: str) -> str:
    if model.task is None:
        return ""
    if format in CORE_FORMATS:
        return f" with a fine-tuned {model.task.head.problem} head"
    return f" (the backbone only: the fine-tuned {model.task.head.problem} head is not in this format)"


def write_card(folder: Path, model: Any, run_dir: Path, format: str, details: dict[str, Any]) -> None:
    """``README.md``: what the model is, how to load it without selfsup, what it scored and on what."""
    from selfsup.api import open_run

    recipe = model.recipe
    run = open_run(run_dir)
    metrics = {k: v for k, v in run.metrics.items() if "/" in k and not k.startswith(("loss/", "bad_data/"))}
    baseline_file = run_dir / "eval-random-init.json"
    baseline = json.loads(baseline_file.read_text()) if baseline_file.is_file() else {}
    rows = "\n".join(f"| `{k}` | {v:.4g} | {baseline[k]:.4g} |" if k in baseline else f"| `{k}` | {v:.4g} | |"
                     for k, v in sorted(metrics.items()))
    data = "\n".join(f"- `{name}`: `{spec['type']}` {json.dumps(spec.get('options', {}))}"
                     for name, spec in recipe.get("data", {}).items())
    load = {
        "selfsup": "model = selfsup.load(FOLDER)  # .embed(samples), .predict(samples)",
        "onnx": "session = onnxruntime.InferenceSession(FOLDER + '/model.onnx')  # inputs: "
                + ", ".join(details.get("inputs", {})),
        "torchscript": "module = torch.jit.load(FOLDER + '/model.pt')  # positional inputs: "
                       + ", ".join(details.get("inputs", {})),
    }.get(format, f"see the {format} library's loader (files: {', '.join(details.get('files', []))})")
    diff = f"\nOutputs checked against the PyTorch model: max abs diff {details['max_abs_diff']:.3g}.\n" \
        if "max_abs_diff" in details else ""
    card = f"""---
license: {recipe.get("license", "other")}
library_name: selfsup
tags: [self-supervised, selfsup]
---

# {recipe.get("name") or run_dir.name}

{recipe.get("description", "")}

Exported by selfsup {selfsup.__version__} from `{run_dir}` ({model.source.rsplit("(", 1)[-1].rstrip(")")}),
format `{format}`: {type(model.backbone).__name__}{_head_text(model, format)}.

```python
{load}
```
{diff}
## Data

{data}

## Metrics

| metric | this model | before training (`selfsup eval --baseline`) |
|---|---:|---:|
{rows}

## Recipe

```json
{json.dumps(recipe, indent=2)}
```
"""
    (folder / "README.md").write_text(card)
