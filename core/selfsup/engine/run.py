"""Everything a training run holds, set up once: :func:`prepare_run` builds it, :class:`Run` saves,
restores, logs and evaluates it. The loop itself (``loop.py``) only steps.

Setup, in order: processes and device -> components (weights from the seed) -> data streams ->
optimizer and schedule -> resume (the newest intact checkpoint; what changed in the recipe since
then is printed, safe changes applied, unsafe ones refused) -> DDP / compile wrappers -> outputs.

A checkpoint holds ``Run.state_dict()`` (step, optimizer, grad scaler, data-stream positions, RNG
states of every rank) beside the model weights; ``Run.load_state_dict`` is its exact inverse.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from selfsup.components import BuildContext, EpochContext
from selfsup.engine import checkpoint as ckpt
from selfsup.engine.build import Built, _build, build_run, component_label
from selfsup.engine.data import TaskStream, is_iterable_source
from selfsup.engine.distributed import DistInfo, barrier, init_distributed, shutdown_distributed
from selfsup.engine.environment import pretrained_records, write_environment, write_pretrained
from selfsup.engine.evaluation import run_evaluators
from selfsup.engine.fsdp import Sharding, ensure_process_group
from selfsup.engine.health import HealthCheck
from selfsup.engine.metrics import MetricsWriter, ProgressBar
from selfsup.engine.optim import apply_hyperparameters, build_optimizer, build_scheduler
from selfsup.engine.resume import recipe_changes, refuse_unsafe
from selfsup.engine.rounds import FOLDER as ROUNDS_FOLDER
from selfsup.engine.rounds import RoundData, Rounds, clean_temporaries, warn_stale
from selfsup.events import RunInfo
from selfsup.lib.distributed import DeviceUnavailable
from selfsup.lib.distributed import resolve_device as lib_resolve_device
from selfsup.paths import UnsafePath, inside
from selfsup.plugins import PluginManager
from selfsup.recipe import LoadedRecipe, Recipe, RecipeError

PRECISION = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingDiverged(RuntimeError):
    """A loss or the weights became NaN or infinite; the bad state was not saved."""


class RunDirInUse(RuntimeError):
    """A fresh run would overwrite checkpoints of an earlier one."""


def resolve_device(name: str, local_rank: int = 0, source: str = "recipe") -> torch.device:
    """:func:`selfsup.lib.resolve_device`, with a missing CUDA reported against ``train.device``."""
    try:
        return lib_resolve_device(name, local_rank)
    except DeviceUnavailable as exc:
        raise RecipeError(source, [("train.device", str(exc))]) from None


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


@dataclass
class Run:
    """A prepared run: components, streams, optimizer, outputs and the optimizer step reached."""

    loaded: LoadedRecipe
    pm: PluginManager
    dist: DistInfo
    device: torch.device
    built: Built
    streams: dict[str, TaskStream]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    total_steps: int
    sizes: dict[str, int] | None
    info: RunInfo
    train_model: torch.nn.Module | None = None
    step: int = 0
    writer: MetricsWriter | None = None
    bar: ProgressBar | None = None
    last_saved: Path | None = None
    evaluation: dict[str, float] = field(default_factory=dict)
    saved_step: int | None = None  # the step of the newest checkpoint this process wrote
    evaluated: dict[str, int] = field(default_factory=dict)  # evaluator -> the step it last ran at
    best: dict[str, Any] = field(default_factory=lambda: {"value": None, "step": None, "stale": 0})  # train.best
    health: HealthCheck | None = None  # [train.health] diagnostics (rank 0)
    rounds: Rounds | None = None  # [rounds]: round ends, the feedback and the round applied
    sharding: Sharding | None = None  # train.strategy = "fsdp": the sharded model and rank 0's full replica

    @property
    def recipe(self) -> Recipe:
        return self.loaded.recipe

    @property
    def model(self) -> Any:
        return self.built.model

    @property
    def whole(self) -> Any:
        """The built components with a whole model, for work on rank 0 alone (evaluators, health, export):
        the run's own, or under FSDP the replica gathered from the shards (:meth:`gather` first)."""
        return self.built if self.sharding is None else dataclasses.replace(self.built, model=self.sharding.replica)

    def gather(self) -> None:
        """Under FSDP, refresh rank 0's replica from the shards (every rank calls it); else nothing."""
        if self.sharding is not None:
            self.sharding.gather()

    @property
    def run_dir(self) -> Path:
        return self.info.run_dir

    # ------------------------------------------------------------------ checkpoint state

    def state_dict(self) -> dict[str, Any]:
        """Everything but the weights that an exact resume needs (RNG states gathered from every rank)."""
        rngs = [ckpt.rng_state()]
        if self.dist.enabled:
            rngs = [None] * self.dist.world_size
            dist.all_gather_object(rngs, ckpt.rng_state())
        return {
            "step": self.step,
            # under FSDP the optimizer state is sharded: every rank writes its part (checkpoint sharded/)
            **({"optimizer": self.optimizer.state_dict()} if self.sharding is None else {}),
            "scaler": self.scaler.state_dict(),
            "streams": {n: s.state_dict() for n, s in self.streams.items()},
            "rng": rngs,
            "best": dict(self.best),
            **({"rounds": self.rounds.state_dict()} if self.rounds is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any], *, weights_only: bool = False) -> None:
        """The inverse of :meth:`state_dict`. ``weights_only`` keeps the fresh optimizer and grad
        scaler (a new optimisation from the checkpoint's weights) and restores the rest. The learning
        rate schedule is rebuilt from the recipe at the restored step, so lr and schedule changes apply."""
        if not weights_only:
            if "optimizer" in state:  # a sharded (FSDP) checkpoint holds it in sharded/, loaded before
                self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
        for name, stream_state in state["streams"].items():
            if name in self.streams:
                self.streams[name].load_state_dict(stream_state)
        rngs = state["rng"]
        ckpt.set_rng_state(rngs[self.dist.rank] if len(rngs) == self.dist.world_size else rngs[0])
        self.step = self.info.step = int(state["step"])
        self.best = dict(state.get("best") or self.best)
        if self.rounds is not None:
            self.rounds.load_state_dict(state.get("rounds"))
        apply_hyperparameters(self.optimizer, self.recipe.train)
        self.scheduler = build_scheduler(self.optimizer, self.recipe.train, self.total_steps, start=self.step)

    # ------------------------------------------------------------------ outputs

    def nonfinite(self) -> str | None:
        """The first parameter or optimizer state that is NaN/inf (``None`` when all are finite)."""
        for name, p in self.model.named_parameters():
            if not torch.isfinite(_local(p)).all():
                return f"parameter {name}"
        for p, state in self.optimizer.state.items():
            for key, value in state.items():
                if (isinstance(value, torch.Tensor) and value.is_floating_point()
                        and not torch.isfinite(_local(value)).all()):
                    return f"optimizer state {key!r} of a {tuple(p.shape)} parameter"
        return None

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0), after checking that the weights and the
        optimizer state are finite: a checkpoint is only ever written for a healthy state."""
        bad = self.nonfinite()
        if _any_rank(bad is not None, self.dist):
            raise TrainingDiverged(diverged_message(self, f"non-finite weights after step {self.step} "
                                                          f"({bad or 'on another rank'})"))
        state = self.state_dict()
        path = prepared = None
        if self.sharding is not None:  # every rank writes its shard into the checkpoint's folder, then rank 0 the rest
            self.gather()
            prepared = self._shared_temporary()
            try:
                self.sharding.save(prepared / ckpt.SHARDED, self.optimizer)
            except BaseException:
                if self.dist.is_main:
                    shutil.rmtree(prepared, ignore_errors=True)
                raise
            barrier()
        if self.dist.is_main:
            meta = {"recipe": self.recipe.name, "world_size": self.dist.world_size,
                    "config": self.recipe.model_dump(mode="json")}
            path = ckpt.save_checkpoint(self.run_dir, self.step, self.whole.model, state,
                                        keep=self.recipe.train.keep_checkpoints, meta=meta, prepared=prepared)
            self.last_saved = path
            self.pm.fire("on_checkpoint_saved", run=self.info, step=self.step, path=str(path))
        barrier()
        self.saved_step = self.step
        return path

    def _shared_temporary(self) -> Path:
        """The hidden folder this step's checkpoint is written into, named by rank 0, known to every rank."""
        box = [str(ckpt.temporary_dir(self.run_dir, self.step)) if self.dist.is_main else None]
        if self.dist.enabled:
            dist.broadcast_object_list(box, src=0)
        if self.dist.is_main:
            folder = Path(box[0])
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        barrier()
        return Path(box[0])

    def track_best(self, results: dict[str, float]) -> bool:
        """``[train.best]``: after an evaluation, keep the checkpoint of an improved metric as the best
        (``checkpoints/best``; pruning spares it) and count evaluations without improvement. Returns
        whether training should stop early (``patience`` reached)."""
        spec = self.recipe.train.best
        if spec is None:
            return False
        if self.dist.enabled:  # evaluators run on rank 0: every rank takes the same decision
            box = [results]
            dist.broadcast_object_list(box, src=0)
            results = box[0]
        if not any(k.startswith(spec.metric.split("/", 1)[0] + "/") for k in results):
            return False
        if spec.metric not in results:
            raise RecipeError(self.loaded.source, [("train.best.metric", f"the evaluator reported no {spec.metric!r} "
                                                    f"(it reported {', '.join(sorted(results))})")])
        value, best = results[spec.metric], self.best["value"]
        sign = 1.0 if spec.mode == "max" else -1.0
        if math.isfinite(value) and (best is None or sign * (value - best) > spec.min_delta):
            self.best.update(value=value, step=self.step, stale=0)
            path = self.save() if self.saved_step != self.step else self.last_saved
            if self.dist.is_main and path is not None:
                ckpt.mark_best(self.run_dir, path)
            barrier()
            return False
        self.best["stale"] += 1
        stop = spec.patience is not None and self.best["stale"] >= spec.patience
        if stop and self.dist.is_main:
            print(f"early stopping at step {self.step}: {spec.metric} has not improved for {self.best['stale']} "
                  f"evaluations (best {self.best['value']:.4g} at step {self.best['step']})", flush=True)
        return stop

    def stopped_early(self) -> bool:
        """Whether ``train.best``'s patience ran out (a resumed early-stopped run takes no more steps)."""
        spec = self.recipe.train.best
        return spec is not None and spec.patience is not None and self.best["stale"] >= spec.patience

    def restore_best(self) -> bool:
        """Load the best checkpoint's weights (``train.best.restore``) when they are not the current ones."""
        spec = self.recipe.train.best
        if spec is None or not spec.restore or self.best["step"] in (None, self.step):
            return False
        path = ckpt.best_checkpoint(self.run_dir)
        if path is None:
            warnings.warn(f"the best checkpoint (step {self.best['step']}) is gone; the last weights are kept",
                          stacklevel=2)
            return False
        if self.sharding is not None:
            self.sharding.load_full(ckpt.read_weights(path))
        else:
            ckpt.load_weights(path, self.model)
        if self.dist.is_main:
            print(f"restored the best checkpoint, {path.name} ({spec.metric} = {self.best['value']:.4g})", flush=True)
        return True

    def log(self, metrics: dict[str, float]) -> None:
        """Write a train record (rank 0) with the data sources' bad-sample counts beside it, and the
        training-health metrics when a check is due ([train.health])."""
        if self.sharding is not None and self.recipe.train.health.enabled:  # the check reads the whole model
            if self.step == self.total_steps or (self.recipe.train.health.every > 0
                                                 and self.step % self.recipe.train.health.every == 0):
                self.gather()
        if not self.dist.is_main:
            return
        metrics = {**metrics, **bad_data_counts(self.built.data)}
        if self.health is not None and self.health.due(self.step, self.total_steps):
            metrics.update(self.health.check(self.step))
        self.writer.write("train", self.step, metrics)
        self.bar.update(self.step, loss=metrics.get("loss"), samples_per_s=metrics.get("samples_per_s"))
        self.pm.fire("on_step_end", run=self.info, step=self.step, metrics=metrics)

    def evaluate(self, names: list[str], *, weights_from: int | None = None) -> dict[str, float]:
        """Run the named evaluators (rank 0) and record them; ``weights_from``: the step whose weights
        were loaded (the best checkpoint), recorded as ``weights_step`` beside the metrics. The record
        and ``on_evaluation_end`` also carry the training-health metrics of these weights."""
        results: dict[str, float] = {}
        if not names:
            return results
        self.gather()
        if self.dist.is_main:
            results = run_evaluators(self.recipe, self.whole, names=names, step=self.step, device=self.device,
                                     run_dir=self.run_dir, labels=self.built.labels)
            extra = {} if weights_from is None else {"weights_step": float(weights_from)}
            health = self.health.check(self.step, weights_from) if self.health is not None else {}
            self.writer.write("eval", self.step, {**results, **health, **extra})
            self.pm.fire("on_evaluation_end", run=self.info, step=self.step, metrics={**results, **health})
        barrier()
        self.evaluation.update(results)
        self.evaluated.update(dict.fromkeys(names, self.step))
        return results

    def export(self) -> None:
        """Backbones that define ``export(directory)`` write themselves in their library's own format
        (a transformers backbone: ``save_pretrained``) to ``<run>/export/<backbone name>``."""
        self.gather()
        if not self.dist.is_main:
            return
        for name, backbone in self.whole.model.backbones.items():
            export = getattr(backbone, "export", None)
            if callable(export):
                export(inside(self.run_dir, "export", name))

    def close(self, status: str, metrics: dict[str, float]) -> None:
        """Close the outputs (rank 0) and leave the process group: every rank waits for the others
        when the run ended together (rank 0 may still be exporting or evaluating), so no rank exits
        while a collective or the group's threads still need it."""
        for stream in self.streams.values():  # data-loader workers stop with the run
            stream.close()
        if self.dist.is_main and self.writer is not None:
            self.bar.close()
            self.pm.fire("on_train_end", run=self.info, status=status, metrics={**metrics, **self.evaluation})
            self.writer.close()
        if self.dist.enabled:
            if status != "failed":  # a failed rank may have left the others inside a collective
                barrier()
            shutdown_distributed()
        elif self.sharding is not None:  # the group of one process FSDP ran in (engine/fsdp.py)
            shutdown_distributed()


# ------------------------------------------------------------------------------------------ setup


def prepare_run(loaded: LoadedRecipe, pm: PluginManager, *, resume: bool = False, weights_only: bool = False,
                progress: bool = True) -> Run:
    """Build a run from a validated recipe, resumed from its newest intact checkpoint if asked."""
    recipe, cfg, source = loaded.recipe, loaded.recipe.train, loaded.source
    run_dir = recipe.run_dir()

    # --- processes, device, determinism -------------------------------------------------------
    device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")), source)
    info = init_distributed(device.type)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    set_determinism(cfg.deterministic)

    for name, spec in recipe.tasks.items():  # batch arithmetic first: a recipe error before any run-dir check
        micro_batch(spec.batch_size or cfg.batch_size, info.world_size, cfg.grad_accum,
                    f"tasks.{name}.batch_size" if spec.batch_size else "train.batch_size", source)

    try:  # every file the run writes stays inside its run directory (no symlink leads out)
        for part in ("checkpoints", "metrics.jsonl", "recipe.json", "environment.json", "tensorboard", "export",
                     "rounds", *(f"export/{name}" for name in recipe.backbones)):
            inside(run_dir, *part.split("/"))
    except UnsafePath as err:
        raise RecipeError(source, [("output_dir", str(err))]) from None

    # --- the checkpoint to resume from, and what changed in the recipe since ------------------
    resume = resume or weights_only
    checkpoints = ckpt.list_checkpoints(run_dir)
    if checkpoints and not resume:
        raise RunDirInUse(
            f"{run_dir} already holds checkpoints ({checkpoints[-1].name}); pass --resume to continue that run "
            f"or choose another directory (--set output_dir=...)"
        )
    start_from = None
    if resume and checkpoints:
        start_from, problems = ckpt.find_resumable(run_dir)
        if info.is_main:
            for problem in problems:
                warnings.warn(f"damaged checkpoint skipped: {problem}", stacklevel=2)
        if start_from is None:
            raise RecipeError(source, [("", f"no intact checkpoint in {ckpt.checkpoint_dir(run_dir)} to resume from: "
                                            + "; ".join(problems))])
        changes = recipe_changes(_saved_config(start_from, run_dir), recipe.model_dump(mode="json"))
        refuse_unsafe(changes, source, weights_only=weights_only)
        if changes and info.is_main:
            print(f"resuming from {start_from.name} with recipe changes:", *(c.text() for c in changes),
                  sep="\n  ", flush=True)

    # --- components (weights initialised from the seed, identical on every rank) --------------
    built = build_run(recipe, pm.registry, base_dir=loaded.base_dir, source=source, plugins=pm,
                      options=loaded.options, initialise=start_from is None)
    if info.is_main:
        for key, where in built.initialised.items():
            print(f"backbones.{key}: weights from {where}", flush=True)
        for key, record in pretrained_records(built.model.backbones).items():
            print(f"backbones.{key}: pretrained {record['spec']} ({record['summary']})", flush=True)
    model = built.model.to(device)
    sharding = None
    if cfg.strategy == "fsdp":  # shard before the optimizer is built: fully_shard replaces the parameters
        ensure_process_group(info)
        sharded_state = start_from / ckpt.SHARDED if start_from is not None else None
        if start_from is not None and (weights_only or not sharded_state.is_dir()):
            _load_weights(start_from, model, source)  # whole weights (also a DDP run's, with --resume-weights-only)
        sharding = Sharding(model, cfg.fsdp, cfg.precision, is_main=info.is_main)
    view, feedback = _feedback(loaded, built, pm, run_dir) if recipe.rounds is not None else (None, None)
    torch.manual_seed(recipe.seed + 1 + info.rank)  # training-time randomness (dropout...) per rank
    streams = _streams(loaded, built, info, device, view)
    total_steps, sizes = _length(loaded, built, streams)
    rounds = None
    if recipe.rounds is not None:
        rounds = Rounds(recipe.rounds, feedback=feedback, view=view, total_steps=total_steps,
                        label=built.labels["rounds.feedback"], source=source)
        for stream in streams.values():  # the feedback's weights, times the task's own
            if stream.source is view:
                stream.sample_weights = rounds.sample_weights(stream.sample_weights)
    optimizer = build_optimizer(model, cfg)
    run = Run(
        loaded=loaded, pm=pm, dist=info, device=device, built=built, streams=streams, optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg, total_steps),
        scaler=torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16"),
        total_steps=total_steps, sizes=sizes,
        info=RunInfo(name=recipe.name or "run", run_dir=run_dir, recipe=recipe.model_dump(mode="json"),
                     device=str(device), world_size=info.world_size, total_steps=total_steps,
                     parameters=sum(p.numel() for p in model.parameters()),
                     rounds=recipe.rounds.count if recipe.rounds is not None else 1),
        rounds=rounds, sharding=sharding,
    )

    # --- resume: weights, then optimizer, schedule, RNG and data positions ---------------------
    if start_from is not None:
        if sharding is None:
            _load_weights(start_from, model, source)
        elif not weights_only and (start_from / ckpt.SHARDED).is_dir():  # shards of any world size
            sharding.load(start_from / ckpt.SHARDED, optimizer)
        elif not weights_only:
            raise RecipeError(source, [("train.strategy", f"{start_from} holds no sharded state (it was not "
                                                          "trained with strategy 'fsdp'): resume with "
                                                          "--resume-weights-only")])
        run.load_state_dict(ckpt.load_state(start_from), weights_only=weights_only)
        run.last_saved = start_from

    # --- wrappers: DDP, torch.compile -----------------------------------------------------------
    run.train_model = model
    if info.enabled and sharding is None:
        run.train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=_find_unused(recipe, built),
        )
    if cfg.compile:
        run.train_model = torch.compile(run.train_model)

    # --- outputs (rank 0) -----------------------------------------------------------------------
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.clean_temporaries(run_dir)
        if rounds is not None:
            clean_temporaries(run_dir)
            if start_from is None:
                warn_stale(run_dir)
        _write_recipe(run_dir, loaded)
        write_environment(run_dir, device, info.world_size, pm)
        if start_from is None:  # where the starting weights came from (a resume keeps the first run's record)
            write_pretrained(run_dir, pretrained_records(built.model.backbones))
        had_metrics = (run_dir / "metrics.jsonl").is_file()
        run.writer = MetricsWriter(run_dir, tensorboard=cfg.tensorboard, resume_step=run.step if had_metrics else None)
        run.bar = ProgressBar(total_steps, run.step, enabled=progress, description=run.info.name)
        if cfg.health.enabled:
            run.health = HealthCheck(run.whole.model, streams, device, recipe.seed, cfg.health)
        pm.fire("on_train_start", run=run.info)
    return run


def _load_weights(path: Path, model: torch.nn.Module, source: str) -> None:
    try:
        ckpt.load_weights(path, model)
    except (ValueError, RuntimeError) as err:  # shapes or names changed since the checkpoint
        raise RecipeError(source, [("", f"cannot resume from {path}: {err}".splitlines()[0])]) from None


def _local(t: torch.Tensor) -> torch.Tensor:
    """A sharded tensor's (FSDP's DTensor) part on this rank; a plain tensor as it is."""
    return t.to_local() if hasattr(t, "to_local") else t


def _feedback(loaded: LoadedRecipe, built: Built, pm: PluginManager, run_dir: Path) -> tuple[RoundData, Any]:
    """``[rounds.feedback]``: the view of its data the tasks train on (its workers' copies catch up with
    the rounds from ``<run_dir>/rounds``), and the built feedback component."""
    recipe, source = loaded.recipe, loaded.source
    spec = recipe.rounds.feedback
    data = built.data[spec.data]
    if is_iterable_source(data) or not hasattr(data, "__len__"):
        raise RecipeError(source, [("rounds.feedback.data", f"data {spec.data!r} streams its samples; a feedback "
                                                            f"weights and labels each sample, so it needs a map-style "
                                                            f"source (a known length)")])
    backbones = built.model.backbones
    context = BuildContext(name="feedback", seed=recipe.seed, base_dir=loaded.base_dir, _registry=pm.registry,
                           backbone=backbones[spec.backbone or next(iter(backbones.keys()))], data=data)
    built.labels["rounds.feedback"] = component_label(pm.registry, "feedback", "rounds.feedback", spec, pm)
    feedback = _build(pm.registry, "feedback", "rounds.feedback", spec, context, source,
                      loaded.options.get("rounds.feedback"))
    if not callable(getattr(feedback, "run", None)):
        raise RecipeError(source, [("rounds.feedback.type", f"{spec.type!r} did not return a feedback component "
                                                            f"(an object with run(context))")])
    return RoundData(data, Path(run_dir) / ROUNDS_FOLDER), feedback


def _streams(loaded: LoadedRecipe, built: Built, info: DistInfo, device: torch.device,
             view: RoundData | None = None) -> dict[str, TaskStream]:
    """One batch stream per task; tasks on the data of ``[rounds.feedback]`` read it through ``view``."""
    recipe, cfg = loaded.recipe, loaded.recipe.train
    fed = recipe.rounds.feedback.data if recipe.rounds is not None else None
    streams = {}
    for name, spec in recipe.tasks.items():
        path = f"tasks.{name}.batch_size" if spec.batch_size else "train.batch_size"
        per_rank = micro_batch(spec.batch_size or cfg.batch_size, info.world_size, cfg.grad_accum, path, loaded.source)
        task = built.model.tasks[name]
        source = view if view is not None and spec.data == fed else built.data[spec.data]
        streams[name] = TaskStream(
            name, source, built.pipeline(spec.augment), batch_size=per_rank, seed=recipe.seed,
            rank=info.rank, world_size=info.world_size, workers=cfg.workers,
            collate=getattr(task, "collate", None) or getattr(source, "collate", None),
            on_epoch_start=_epoch_hook(name, task, built, recipe, device, info, per_rank),
            sample_weights=getattr(task, "sample_weights", None), pin_memory=device.type == "cuda",
            lengths=_lengths(source, name, loaded.source) if spec.group_by_length else None,
            labels={"data": built.labels.get(f"data.{spec.data}", f"data.{spec.data}"),
                    "augment": [built.labels.get(f"augmentations.{a}", f"augmentations.{a}") for a in spec.augment]},
        )
    return streams


def _length(loaded: LoadedRecipe, built: Built, streams: dict[str, TaskStream]) -> tuple[int, dict[str, int] | None]:
    """Total optimizer steps, and each task's data size for ``task_policy = "proportional"``."""
    recipe, cfg, source = loaded.recipe, loaded.recipe.train, loaded.source
    current = next(iter(streams))
    try:
        for current, stream in streams.items():
            stream.check()
        current = next(iter(streams))
        per_epoch = streams[current].batches_per_epoch() if cfg.epochs else 0
    except ValueError as err:
        raise RecipeError(source, [(f"tasks.{current}.data", str(err))]) from None
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch / cfg.grad_accum))
    if cfg.task_policy != "proportional":
        return total, None
    unsized = [n for n, spec in recipe.tasks.items() if not hasattr(built.data[spec.data], "__len__")]
    if unsized:
        raise RecipeError(source, [("train.task_policy", f"'proportional' needs data with a length; "
                                    f"task {unsized[0]!r} streams its data (use 'sample' with weights)")])
    return total, {n: len(built.data[spec.data]) for n, spec in recipe.tasks.items()}


def _find_unused(recipe: Recipe, built: Built) -> bool:
    """DDP's find_unused_parameters: as set, else on when a step leaves some parameters without
    gradient: tasks take turns, or a component says it may (heads a task ignores)."""
    if recipe.train.find_unused_parameters is not None:
        return recipe.train.find_unused_parameters
    model = built.model
    late = any(spec.from_round for spec in recipe.tasks.values())  # a task that waits for a round trains nothing before
    return (len(recipe.tasks) > 1 and (recipe.train.task_policy != "sum" or late)) or any(
        getattr(m, "find_unused_parameters", False) for m in [*model.tasks.values(), *model.backbones.values()]
    )


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


def _epoch_hook(name, task, built, recipe, device, info, batch_size):
    """Calls ``task.on_epoch_start(EpochContext)`` if the task defines it."""
    hook = getattr(task, "on_epoch_start", None)
    if hook is None:
        return None
    spec = recipe.tasks[name]

    def call(epoch: int) -> None:
        hook(EpochContext(epoch=epoch, seed=recipe.seed, device=device, backbone=built.model.backbone_of(name),
                          data=built.data[spec.data], augment=built.pipeline(spec.augment), batch_size=batch_size,
                          rank=info.rank, world_size=info.world_size))

    return call


def _saved_config(checkpoint: Path, run_dir: Path) -> dict[str, Any] | None:
    """The recipe a checkpoint was trained with: from its meta.json, else the run's recipe.json."""
    try:
        meta = json.loads((checkpoint / "meta.json").read_text())
        if "config" in meta:
            return meta["config"]
        return json.loads((run_dir / "recipe.json").read_text())["recipe"]
    except (OSError, ValueError, KeyError):
        return None


def _write_recipe(run_dir: Path, loaded: LoadedRecipe) -> None:
    """The resolved recipe, so ``selfsup eval RUN_DIR`` and ``--resume`` can rebuild the run."""
    payload = {
        "source": loaded.source,
        "base_dir": str(loaded.base_dir),
        "recipe": loaded.recipe.model_dump(mode="json"),
    }
    ckpt.write_text_atomic(run_dir / "recipe.json", json.dumps(payload, indent=2))


# ------------------------------------------------------------------------------------------ helpers


def any_rank(flags: list[bool], info: DistInfo) -> list[bool]:
    """Each flag OR-ed over every rank (one all-reduce for all of them)."""
    if not info.enabled:
        return flags
    t = torch.tensor([1.0 if f else 0.0 for f in flags])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def _any_rank(flag: bool, info: DistInfo) -> bool:
    return any_rank([flag], info)[0]


def bad_data_counts(data: dict[str, Any]) -> dict[str, float]:
    """``{"bad_data/<data name>/<kind>": count}`` of every source that counts skipped or repaired samples."""
    out: dict[str, float] = {}
    for name, source in data.items():
        bad = getattr(source, "bad_files", None)
        counts = bad.counts() if bad is not None and hasattr(bad, "counts") else {}
        out.update({f"bad_data/{name}/{kind}": float(n) for kind, n in counts.items() if n})
    return out


def diverged_message(run: Run, what: str) -> str:
    """What went non-finite, which checkpoint is kept, and what to try for this run's precision."""
    cfg = run.recipe.train
    kept = (f"the last good checkpoint is {run.last_saved}" if run.last_saved
            else "no checkpoint had been saved yet")
    lr = run.scheduler.get_last_lr()[0]
    advice = f"lower train.lr (now {cfg.lr:g})"
    if cfg.grad_clip is None:
        advice += " or set train.grad_clip (e.g. 1.0)"
    if cfg.precision == "fp16":
        advice += "; fp16 overflows easily: precision 'bf16' keeps fp32's range"
        how = "--resume-weights-only --set train.precision=\"bf16\""
    elif cfg.precision == "bf16":
        advice += " or use precision 'fp32'"
        how = "--resume --set train.lr=..."
    else:
        how = "--resume --set train.lr=..."
    resume = f"continue from it with `selfsup train RECIPE {how}`" if run.last_saved else "then rerun"
    return f"{what} (lr {lr:.3g}); training stopped without saving that state and {kept}. Try: {advice}; {resume}."
