"""The training loop. Plain PyTorch, meant to be read top to bottom (setup lives in ``run.py``).

One optimizer step =
    pick the step's tasks (policy ``sum``: all; ``round_robin``: one in turn; ``sample``: one drawn
    with probability proportional to its weight, the same draw on every rank) and tell them the step
    -> ``grad_accum`` micro-steps, each: next batch of every picked task, one forward of the
       whole model under autocast, weighted loss, non-finite check, backward (DDP syncs on the last)
    -> gradient clipping -> optimizer and scheduler step -> the tasks' ``after_step`` (EMA teachers)
    -> logging, evaluation and checkpoints when due (rank 0 writes; a checkpoint is only written for
       finite weights) -> a SIGTERM/SIGINT received during the step saves and stops here; so does a
       plugin's ``run.request_stop(reason)`` (a sweep's pruner), without the final evaluation
    -> at the end of a round (``[rounds]``, engine/rounds.py): a checkpoint, then the feedback, which
       reshapes the data of the next round.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup.engine.data import to_device
from selfsup.engine.preempt import Preempted, PreemptionGuard
from selfsup.engine.run import (  # noqa: F401 - re-exported: the loop's public names
    PRECISION,
    RunDirInUse,
    TrainingDiverged,
    any_rank,
    diverged_message,
    micro_batch,
    prepare_run,
    resolve_device,
    set_determinism,
)
from selfsup.plugins import PluginManager
from selfsup.recipe import LoadedRecipe, Recipe


def gradient_sync(run: Any, model: Any, last: bool) -> Any:
    """Gradients are reduced across processes on the last micro-batch of a step only: DDP's ``no_sync``
    before it; FSDP reduce-scatters when ``set_requires_gradient_sync`` allows."""
    if run.sharding is not None:
        model.set_requires_gradient_sync(last)
        return contextlib.nullcontext()
    return contextlib.nullcontext() if last or not run.dist.enabled else model.no_sync()


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, float] = field(default_factory=dict)
    best_step: int | None = None  # [train.best]: the step whose weights were kept as the best


def train(loaded: LoadedRecipe, pm: PluginManager, *, resume: bool = False, resume_weights_only: bool = False,
          progress: bool = True) -> TrainResult:
    run = prepare_run(loaded, pm, resume=resume, weights_only=resume_weights_only, progress=progress)
    recipe, cfg, model, optimizer = run.recipe, run.recipe.train, run.train_model, run.optimizer
    # fp32: no autocast context at all (entering even a disabled one costs ~0.07 ms a step)
    autocast = (torch.autocast(run.device.type, dtype=PRECISION[cfg.precision]) if cfg.precision != "fp32"
                else contextlib.nullcontext())
    meter, status = Meter(), "failed"
    try:
        with PreemptionGuard() as signals:
            if run.rounds is not None:  # resumed: the data follows the last round that ended (feedback rerun if lost)
                run.rounds.resume(run)
            if run.stopped_early() and run.dist.is_main:
                print(f"this run stopped early at step {run.step} ({recipe.train.best.metric} did not improve for "
                      f"{run.best['stale']} evaluations): no more steps", flush=True)
            model.train()
            while run.step < run.total_steps and not run.stopped_early():
                picked = tasks_for_step(recipe, run.step, run.sizes, round=run.info.round)
                run.model.step_started(run.step)
                optimizer.zero_grad(set_to_none=True)

                # forward/backward over micro-batches; DDP all-reduces gradients on the last one only
                for micro in range(cfg.grad_accum):
                    waited = time.perf_counter()  # the time spent waiting for data: data_wait_share
                    batches = {t: next(run.streams[t]) for t in picked}
                    meter.data_wait += time.perf_counter() - waited
                    batches = {t: to_device(b, run.device) for t, b in batches.items()}
                    last = micro == cfg.grad_accum - 1
                    with gradient_sync(run, model, last):
                        with autocast:
                            outputs = model(batches)
                        losses = {t: outputs[t][0].float() for t in picked}
                        bad = [t for t, loss in losses.items() if not torch.isfinite(loss)]
                        if any_rank([bool(bad)], run.dist)[0]:
                            values = ", ".join(f"{t}={losses[t].item()}" for t in bad or picked)
                            raise TrainingDiverged(diverged_message(
                                run, f"non-finite loss at step {run.step + 1} ({values}); the update was not applied"))
                        loss = weighted_sum(recipe, losses, picked)
                        run.scaler.scale(loss / cfg.grad_accum if cfg.grad_accum > 1 else loss).backward()
                    meter.add_step(outputs, losses, loss, picked)
                    meter.samples += sum(run.streams[t].batch_size * run.dist.world_size for t in picked)

                if cfg.grad_clip is not None:
                    run.scaler.unscale_(optimizer)
                    norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
                    meter.add("grad_norm", norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
                lr = run.scheduler.get_last_lr()[0]
                run.scaler.step(optimizer)
                run.scaler.update()
                run.scheduler.step()
                run.step = run.info.step = run.step + 1
                run.model.step_finished(run.step, run.total_steps)  # EMA teachers follow the update

                # logging, evaluation, checkpoints; a signal received during the step stops here
                if run.step % cfg.log_every == 0 or run.step == run.total_steps:
                    run.log(meter.flush(run.dist, lr=lr))
                due = [n for n, e in recipe.evaluators.items() if e.every and run.step % e.every == 0]
                stop = False
                if due and run.step < run.total_steps:
                    stop = run.track_best(run.evaluate(due))  # [train.best]: keep the best, stop early
                    model.train()
                signalled, asked = any_rank([signals.requested, run.info.stop_reason is not None], run.dist)
                if signalled:
                    raise Preempted(signals.signum or 15, run.step, run.save())
                if asked:  # a plugin called run.request_stop (a sweep pruning this trial)
                    break
                if stop:
                    break
                ended = run.rounds.ending(run.step) if run.rounds is not None else None
                if ended is not None:  # [rounds]: keep the round's training, then its feedback reshapes the data
                    if run.saved_step != run.step:
                        run.save()
                    run.rounds.finish(run, ended)
                    model.train()
                if (cfg.checkpoint_every and run.step % cfg.checkpoint_every == 0 and run.step < run.total_steps
                        and run.saved_step != run.step):  # train.best may have saved this step already
                    run.save()

            if run.saved_step != run.step:
                run.save()
            if stop_requested(run):  # a plugin asked: no final evaluation, no export
                status = "stopped"
            else:
                final = [n for n, e in recipe.evaluators.items() if e.at_end]
                if recipe.train.best is not None:  # the final weights may be the best; else evaluate the best
                    run.track_best(run.evaluate([n for n in final if run.evaluated.get(n) != run.step]))
                    if run.restore_best():
                        run.evaluate(final, weights_from=run.best["step"])
                run.export()
                if recipe.train.best is None:
                    run.evaluate(final)
                status = "completed"
    except TrainingDiverged:
        status = "diverged"
        raise
    except Preempted:
        status = "preempted"
        raise
    finally:
        run.close(status, meter.last)
    return TrainResult(run_dir=run.run_dir, step=run.step, status=status, metrics=meter.last,
                       evaluation=run.evaluation, best_step=run.best["step"])


# ------------------------------------------------------------------------------------------ helpers


def stop_requested(run: Any) -> bool:
    """Whether a plugin asked this run to stop (on any rank); says so once, on rank 0."""
    if not any_rank([run.info.stop_reason is not None], run.dist)[0]:
        return False
    if run.dist.is_main:
        print(f"stopped at step {run.step}: {run.info.stop_reason or 'asked on another rank'} "
              f"(checkpoint kept; no final evaluation)", flush=True)
    return True


def tasks_for_step(recipe: Recipe, step: int, sizes: dict[str, int] | None = None, *, round: int = 0) -> list[str]:
    """The tasks that run at ``step``: all of them (``sum``), one in turn (``round_robin``), or one
    drawn with probability proportional to its ``weight`` (``sample``) or to the number of samples
    of its data (``proportional``, ``sizes``: task -> samples). Draws are seeded by (seed, step): the
    same on every rank and after a resume. With ``[rounds]`` only the tasks whose ``from_round`` has
    come (``round``: the round being trained) take part."""
    names = [n for n, spec in recipe.tasks.items() if spec.from_round <= round]
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


def weighted_sum(recipe: Recipe, losses: dict[str, torch.Tensor], picked: list[str]) -> torch.Tensor:
    """The step's loss: the picked tasks' losses times their weights (one task of weight 1: its loss,
    the same value without the extra operations)."""
    if len(picked) == 1 and loss_weight(recipe, picked[0]) == 1.0:
        return losses[picked[0]]
    return sum(loss_weight(recipe, t) * losses[t] for t in picked)


def loss_weight(recipe: Recipe, task: str) -> float:
    """The task's loss weight: ``weight``, except under ``sample`` where the weight is the draw's."""
    return 1.0 if recipe.train.task_policy == "sample" else recipe.tasks[task].weight


class Meter:
    """Metrics summed between two logs. Tensors stay tensors until the log (no host sync per step)."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.samples, self.start = 0, time.perf_counter()
        self.data_wait = 0.0  # seconds spent in next(stream) since the last log
        self.last: dict[str, float] = {}

    def add(self, key: str, value: Any) -> None:
        if key in self.sums:  # the sum is a new float32 tensor: no copy of the value needed
            self.sums[key] = self.sums[key] + (value.detach() if isinstance(value, torch.Tensor) else float(value))
        else:  # a copy: the component may change its tensor in place later
            self.sums[key] = (value.detach().to(torch.float32, copy=True) if isinstance(value, torch.Tensor)
                              else float(value))
        self.counts[key] = self.counts.get(key, 0) + 1

    def add_step(self, outputs: dict[str, Any], losses: dict[str, torch.Tensor], loss: Any, picked: list[str]) -> None:
        for t in picked:
            self.add(f"loss/{t}", losses[t])
            for key, value in outputs[t][1].items():
                self.add(f"{t}/{key}", value)
        self.add("loss", loss)

    def flush(self, info: Any, **extra: float) -> dict[str, float]:
        """The window's means (averaged over ranks), ``samples_per_s``, ``data_wait_share`` (the share of the
        window's wall time spent waiting for the next batch, this rank's) and ``extra``; then a new window."""
        keys = sorted(self.sums)
        if not keys:
            return {**extra}
        values = torch.stack([torch.as_tensor(self.sums[k], dtype=torch.float64).cpu() / self.counts[k] for k in keys])
        if info.enabled:
            import torch.distributed as dist

            dist.all_reduce(values)
            values /= info.world_size
        metrics = dict(zip(keys, values.tolist()))
        elapsed = time.perf_counter() - self.start
        metrics.update(extra, samples_per_s=self.samples / max(elapsed, 1e-9),
                       data_wait_share=min(1.0, self.data_wait / max(elapsed, 1e-9)))
        self.sums.clear(), self.counts.clear()
        self.samples, self.start, self.last, self.data_wait = 0, time.perf_counter(), metrics, 0.0
        return metrics
