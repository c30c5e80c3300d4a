"""The training loop. Plain PyTorch, meant to be read top to bottom.

One optimizer step =
    pick the step's tasks (policy ``sum``: all; ``round_robin``: one in turn; ``sample``: one drawn
    with probability proportional to its weight, the same draw on every rank)
    -> ``grad_accum`` micro-steps, each: next batch of every picked task, one forward of the
       whole model under autocast, weighted loss, non-finite check, backward (DDP syncs on the last)
    -> gradient clipping -> optimizer and scheduler step
    -> logging, evaluation and checkpoints when due (rank 0 writes).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from selfsup.components import EpochContext
from selfsup.events import RunInfo
from selfsup.plugins import PluginManager
from selfsup.recipe import LoadedRecipe, Recipe, RecipeError
from selfsup.train import checkpoint as ckpt
from selfsup.train.build import build_run
from selfsup.train.data import TaskStream, is_iterable_source, to_device
from selfsup.train.distributed import DistInfo, barrier, init_distributed
from selfsup.train.evaluation import run_evaluators
from selfsup.train.metrics import MetricsWriter, ProgressBar
from selfsup.train.optim import build_optimizer, build_scheduler

PRECISION = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; training stopped without saving the bad state."""


class RunDirInUse(RuntimeError):
    """A fresh run would overwrite checkpoints of an earlier one."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ setup


def resolve_device(name: str, local_rank: int = 0, source: str = "recipe") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RecipeError(source, [("train.device", f"{name!r} requested but CUDA is not available")])
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def set_determinism(enabled: bool) -> None:
    """Deterministic kernels (bit-identical reruns and resumes on the same machine)."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def micro_batch(global_batch: int, world: int, accum: int, field_path: str, source: str) -> int:
    per = global_batch // (world * accum)
    if per * world * accum != global_batch:
        raise RecipeError(
            source,
            [(field_path, f"{global_batch} is not divisible by processes x grad_accum = {world} x {accum}")],
        )
    return per


def tasks_for_step(recipe: Recipe, step: int, sizes: dict[str, int] | None = None) -> list[str]:
    """The tasks that run at ``step``: all of them (``sum``), one in turn (``round_robin``), or one
    drawn with probability proportional to its ``weight`` (``sample``) or to the number of samples
    of its data (``proportional``, ``sizes``: task -> samples). Draws are seeded by (seed, step): the
    same on every rank and after a resume."""
    names = list(recipe.tasks)
    policy = recipe.train.task_policy
    if policy == "sum" or len(names) == 1:
        return names
    if policy == "round_robin":
        return [names[step % len(names)]]
    if policy == "proportional":
        if sizes is None:
            raise ValueError("task_policy 'proportional' needs the size of every task's data")
        weights = np.array([sizes[n] for n in names], dtype=np.float64)
    else:
        weights = np.array([recipe.tasks[n].weight for n in names], dtype=np.float64)
    rng = np.random.default_rng([recipe.seed, step])  # same draw on every rank and after resume
    return [names[rng.choice(len(names), p=weights / weights.sum())]]


def loss_weight(recipe: Recipe, task: str) -> float:
    """The task's loss weight: ``weight``, except under ``sample`` where the weight is the draw's."""
    return 1.0 if recipe.train.task_policy == "sample" else recipe.tasks[task].weight


def _scalar(value: Any) -> float:
    return float(value.detach().float().item()) if isinstance(value, torch.Tensor) else float(value)


def _mean_across_ranks(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist())}


def _any_rank(flag: bool, info: DistInfo) -> bool:
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


# ------------------------------------------------------------------------------------------ train


def train(loaded: LoadedRecipe, pm: PluginManager, *, resume: bool = False, progress: bool = True) -> TrainResult:
    recipe, cfg = loaded.recipe, loaded.recipe.train
    run_dir = recipe.run_dir()

    # --- processes, device, determinism -------------------------------------------------------
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(cfg.device, local_rank, loaded.source)
    info = init_distributed(device.type)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    set_determinism(cfg.deterministic)

    # --- components (weights initialised from the seed, identical on every rank) --------------
    built = build_run(recipe, pm.registry, base_dir=loaded.base_dir, source=loaded.source)
    model = built.model.to(device)
    torch.manual_seed(recipe.seed + 1 + info.rank)  # training-time randomness (dropout...) per rank

    streams: dict[str, TaskStream] = {}
    for name, spec in recipe.tasks.items():
        path = f"tasks.{name}.batch_size" if spec.batch_size else "train.batch_size"
        per_rank = micro_batch(spec.batch_size or cfg.batch_size, info.world_size, cfg.grad_accum, path, loaded.source)
        task = model.tasks[name]
        streams[name] = TaskStream(
            name,
            built.data[spec.data],
            built.pipeline(spec.augment),
            batch_size=per_rank,
            seed=recipe.seed,
            rank=info.rank,
            world_size=info.world_size,
            workers=cfg.workers,
            collate=getattr(task, "collate", None) or getattr(built.data[spec.data], "collate", None),
            on_epoch_start=_epoch_hook(name, task, model, built, recipe, device, info, per_rank),
            sample_weights=getattr(task, "sample_weights", None),
            pin_memory=device.type == "cuda",
            lengths=_lengths(built.data[spec.data], name, loaded.source) if spec.group_by_length else None,
        )
    checkpoints = ckpt.list_checkpoints(run_dir)
    if checkpoints and not resume:
        raise RunDirInUse(
            f"{run_dir} already holds checkpoints ({checkpoints[-1].name}); pass --resume to continue that run "
            f"or choose another directory (--set output_dir=...)"
        )

    try:
        for name, stream in streams.items():
            current = name
            stream.check()
        current = next(iter(streams))
        per_epoch = streams[current].batches_per_epoch() if cfg.epochs else 0
    except ValueError as err:
        raise RecipeError(loaded.source, [(f"tasks.{current}.data", str(err))]) from None
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch / cfg.grad_accum))
    sizes = None
    if cfg.task_policy == "proportional":
        unsized = [n for n, spec in recipe.tasks.items() if not hasattr(built.data[spec.data], "__len__")]
        if unsized:
            raise RecipeError(loaded.source, [("train.task_policy", f"'proportional' needs data with a length; "
                                               f"task {unsized[0]!r} streams its data (use 'sample' with weights)")])
        sizes = {n: len(built.data[spec.data]) for n, spec in recipe.tasks.items()}

    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")

    # --- resume: weights, optimizer, schedule, RNG and data positions -------------------------
    step = 0
    if resume and checkpoints:
        last = checkpoints[-1]
        try:
            ckpt.load_weights(last, model)
        except (ValueError, RuntimeError) as err:  # shapes or names changed since the checkpoint
            raise RecipeError(loaded.source, [("", f"cannot resume from {last}: {err}".splitlines()[0])]) from None
        state = ckpt.load_state(last)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        for name, stream_state in state["streams"].items():
            streams[name].load_state_dict(stream_state)
        rngs = state["rng"]
        ckpt.set_rng_state(rngs[info.rank] if len(rngs) == info.world_size else rngs[0])
        step = int(state["step"])

    # --- wrappers: DDP, torch.compile -----------------------------------------------------------
    train_model: torch.nn.Module = model
    if info.enabled:
        find_unused = cfg.find_unused_parameters
        if find_unused is None:  # automatic: a step leaves some parameters without gradient when ...
            find_unused = (len(recipe.tasks) > 1 and cfg.task_policy != "sum") or any(  # ... tasks take turns
                getattr(m, "find_unused_parameters", False)  # ... or a component says it may (heads a task ignores)
                for m in [*model.tasks.values(), *model.backbones.values()]
            )
        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=find_unused
        )
    if cfg.compile:
        train_model = torch.compile(train_model)

    # --- outputs (rank 0) -----------------------------------------------------------------------
    writer = bar = None
    run = RunInfo(
        name=recipe.name or "run",
        run_dir=run_dir,
        recipe=recipe.model_dump(mode="json"),
        device=str(device),
        world_size=info.world_size,
        total_steps=total_steps,
        step=step,
        parameters=sum(p.numel() for p in model.parameters()),
    )
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_recipe(run_dir, loaded)
        _truncate_metrics(run_dir, after=step)
        writer = MetricsWriter(run_dir, tensorboard=cfg.tensorboard)
        bar = ProgressBar(total_steps, step, enabled=progress, description=run.name)
        pm.fire("on_train_start", run=run)

    def save(at: int) -> Path | None:
        if info.is_main:
            rngs = [ckpt.rng_state()]
        if info.enabled:
            gathered: list[Any] = [None] * info.world_size
            dist.all_gather_object(gathered, ckpt.rng_state())
            rngs = gathered
        path = None
        if info.is_main:
            state = {
                "step": at,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "streams": {n: s.state_dict() for n, s in streams.items()},
                "rng": rngs,
            }
            meta = {"recipe": recipe.name, "world_size": info.world_size}
            path = ckpt.save_checkpoint(run_dir, at, model, state, keep=cfg.keep_checkpoints, meta=meta)
            pm.fire("on_checkpoint_saved", run=run, step=at, path=str(path))
        barrier()
        return path

    def evaluate(at: int, names: list[str]) -> dict[str, float]:
        results: dict[str, float] = {}
        if names and info.is_main:
            results = run_evaluators(recipe, built, names=names, step=at, device=device, run_dir=run_dir)
            writer.write("eval", at, results)
            pm.fire("on_evaluation_end", run=run, step=at, metrics=results)
        barrier()
        return results

    autocast = torch.autocast(device.type, dtype=PRECISION[cfg.precision], enabled=cfg.precision != "fp32")
    last_logged: dict[str, float] = {}
    evaluation: dict[str, float] = {}
    status = "failed"
    window_start, window_samples = time.perf_counter(), 0
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}

    try:
        train_model.train()
        while step < total_steps:
            picked = tasks_for_step(recipe, step, sizes)
            optimizer.zero_grad(set_to_none=True)

            # forward/backward over micro-batches; DDP all-reduces gradients on the last one only
            for micro in range(cfg.grad_accum):
                batches = {t: to_device(next(streams[t]), device) for t in picked}
                sync = micro == cfg.grad_accum - 1
                no_sync = train_model.no_sync() if info.enabled and not sync else contextlib.nullcontext()
                with no_sync:
                    with autocast:
                        outputs = train_model(batches)
                    losses = {t: outputs[t][0].float() for t in picked}
                    bad = [t for t, l in losses.items() if not torch.isfinite(l)]
                    if _any_rank(bool(bad), info):
                        raise TrainingDiverged(_diverged_message(bad or picked, losses, step + 1, scheduler, run_dir))
                    loss = sum(loss_weight(recipe, t) * losses[t] for t in picked)
                    scaler.scale(loss / cfg.grad_accum).backward()
                for t in picked:
                    _accumulate(sums, counts, f"loss/{t}", losses[t])
                    for key, value in outputs[t][1].items():
                        _accumulate(sums, counts, f"{t}/{key}", value)
                _accumulate(sums, counts, "loss", loss)
                window_samples += sum(streams[t].batch_size * info.world_size for t in picked)

            if cfg.grad_clip is not None:
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                _accumulate(sums, counts, "grad_norm", grad_norm)
            lr = scheduler.get_last_lr()[0]
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            run.step = step

            # logging
            if step % cfg.log_every == 0 or step == total_steps:
                elapsed = time.perf_counter() - window_start
                metrics = _mean_across_ranks({k: _scalar(sums[k]) / counts[k] for k in sums}, info)
                metrics.update(lr=lr, samples_per_s=window_samples / max(elapsed, 1e-9))
                sums.clear(), counts.clear()
                window_start, window_samples = time.perf_counter(), 0
                last_logged = metrics
                if info.is_main:
                    writer.write("train", step, metrics)
                    bar.update(step, loss=metrics["loss"], samples_per_s=metrics["samples_per_s"])
                    pm.fire("on_step_end", run=run, step=step, metrics=metrics)

            # evaluation and checkpoints
            due = [n for n, e in recipe.evaluators.items() if e.every and step % e.every == 0 and step < total_steps]
            if due:
                evaluation.update(evaluate(step, due))
                train_model.train()
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total_steps:
                save(step)

        save(step)
        if info.is_main:
            export_backbones(model, run_dir / "export")
        evaluation.update(evaluate(step, [n for n, e in recipe.evaluators.items() if e.at_end]))
        status = "completed"
    except TrainingDiverged:
        status = "diverged"
        raise
    finally:
        if info.is_main:
            bar.close()
            pm.fire("on_train_end", run=run, status=status, metrics={**last_logged, **evaluation})
            writer.close()
    return TrainResult(run_dir=run_dir, step=step, status=status, metrics=last_logged, evaluation=evaluation)


# ------------------------------------------------------------------------------------------ helpers


def _lengths(source: Any, task: str, recipe_source: str) -> list[int]:
    """``source.lengths()`` for ``tasks.<task>.group_by_length``, or a recipe error saying what is missing."""
    lengths = getattr(source, "lengths", None)
    if not callable(lengths) or is_iterable_source(source):
        raise RecipeError(recipe_source, [(f"tasks.{task}.group_by_length", "the task's data source defines no "
                                           "lengths() (a map-style source must give each sample's length)")])
    values = list(lengths())
    if len(values) != len(source):
        raise RecipeError(recipe_source, [(f"tasks.{task}.group_by_length",
                                           f"lengths() gave {len(values)} values for {len(source)} samples")])
    return values


def export_backbones(model: Any, directory: Path) -> None:
    """Backbones that define ``export(directory)`` write themselves in their library's own format
    (a transformers backbone: ``save_pretrained`` with its tokenizer) to ``<run>/export/<name>``."""
    for name, backbone in model.backbones.items():
        export = getattr(backbone, "export", None)
        if callable(export):
            export(directory / name)


def _accumulate(sums: dict[str, Any], counts: dict[str, int], key: str, value: Any) -> None:
    """Sum a metric until the next log; tensors stay tensors (no host sync per step)."""
    value = value.detach().to(torch.float32, copy=True) if isinstance(value, torch.Tensor) else float(value)
    sums[key] = sums[key] + value if key in sums else value
    counts[key] = counts.get(key, 0) + 1


def _epoch_hook(name, task, model, built, recipe, device, info, batch_size):
    """Calls ``task.on_epoch_start(EpochContext)`` if the task defines it."""
    hook = getattr(task, "on_epoch_start", None)
    if hook is None:
        return None
    spec = recipe.tasks[name]

    def call(epoch: int) -> None:
        hook(
            EpochContext(
                epoch=epoch,
                seed=recipe.seed,
                device=device,
                backbone=model.backbone_of(name),
                data=built.data[spec.data],
                augment=built.pipeline(spec.augment),
                batch_size=batch_size,
                rank=info.rank,
                world_size=info.world_size,
            )
        )

    return call


def _diverged_message(bad: list[str], losses: dict[str, torch.Tensor], step: int, scheduler: Any, run_dir: Path) -> str:
    values = ", ".join(f"{t}={losses[t].item()}" for t in bad)
    last = ckpt.latest_checkpoint(run_dir)
    kept = f"the last good checkpoint is {last}" if last else "no checkpoint had been saved yet"
    return (
        f"non-finite loss at step {step} ({values}; lr {scheduler.get_last_lr()[0]:.3g}); training stopped "
        f"before the update and {kept}. Lower train.lr, set train.grad_clip or use precision fp32, "
        f"then rerun (or continue with --resume)."
    )


def _write_recipe(run_dir: Path, loaded: LoadedRecipe) -> None:
    """The resolved recipe, so ``selfsup eval RUN_DIR`` and ``--resume`` can rebuild the run."""
    payload = {"source": loaded.source, "base_dir": str(loaded.base_dir), "recipe": loaded.recipe.model_dump(mode="json")}
    (run_dir / "recipe.json").write_text(json.dumps(payload, indent=2))


def _truncate_metrics(run_dir: Path, after: int) -> None:
    """Drop metric records newer than the checkpoint we (re)start from, so curves do not repeat."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= after]
    path.write_text("".join(line + "\n" for line in keep))
