"""Training-loop overhead: ``selfsup.engine.loop.train`` against hand-written PyTorch loops.

Every side trains the same model (built by ``selfsup.engine.build.build_run`` from one recipe, so
modules and initial weights are identical), on the same data (the toy plugin's ``blobs`` source
seen through its ``noisy_views`` augmentation), with AdamW (decay / no-decay param groups), a cosine
``LambdaLR`` schedule and the same batch size. Three sides run in one process, in rounds (warm-up,
then ``--rounds`` rounds, the side that goes first rotating), ``--steps`` optimizer steps each:

* selfsup: ``selfsup.engine.loop.train``;
* hand-seeded: a hand-written loop whose augmentations draw from a generator reseeded per sample
  from the sample's coordinates, as selfsup's data streams do (the same augmentations after a
  resume and for any worker or process count): the same data work, so selfsup / hand-seeded is
  the overhead of the loop itself (target <= 3%);
* hand-shared: a hand-written loop drawing every augmentation from one generator (the usual
  script; reproducible from the start only), so hand-seeded / hand-shared is what the per-sample
  seeding costs.

Two timings per run, both with ``time.perf_counter``:

* loop: the optimizer steps only, from just before the first batch is drawn to just after the
  last step (and its logging). Setup (building components, optimizer, output directory) and the
  final checkpoint are excluded from both sides. For selfsup the boundaries come from its own
  lifecycle events: ``on_train_start`` (fired right before the first step) and ``on_step_end`` of
  the last step (fired before the final checkpoint is written).
* end-to-end: the whole call, setup and one final checkpoint included on both sides (selfsup:
  its atomic, fsynced checkpoint directory; baseline: one ``torch.save`` of model, optimizer and
  scheduler state).

The reported ratios are medians of the per-round ratios of the loop timings. The ratio of medians
and of the fastest runs are printed beside them: on a shared virtual machine, speed drifts between
runs by more than the overhead.

    .venv/bin/python bench/overhead.py [--steps 200] [--rounds 5] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import machine  # bench/machine.py
from torch.utils.data import DataLoader, Dataset, default_collate

import selfsup
from selfsup.engine.build import build_run
from selfsup.engine.loop import train
from selfsup.lib.seeding import sample_seeds
from selfsup.plugins import get_plugin_manager
from selfsup.recipe import LoadedRecipe, check_components, parse_recipe

SEED = 0
OTHER_LOAD_LIMIT = 0.05  # cores kept busy by other processes during a run above which it is redone
TASK = "infonce"
BACKBONE = "mlp"


# ------------------------------------------------------------------------------------ the recipe


def recipe_dict(*, steps: int, batch_size: int, log_every: int, output_dir: Path) -> dict[str, Any]:
    return {
        "name": "overhead",
        "seed": SEED,
        "output_dir": str(output_dir),
        "data": {
            "train": {
                "type": "blobs",
                "options": {"n": 8192, "dim": 64, "classes": 8, "spread": 0.6, "nuisance": 20.0},
            }
        },
        "augmentations": {"views": {"type": "noisy_views", "options": {"std": 0.4}}},
        "backbones": {
            BACKBONE: {"type": "mlp", "options": {"in_dim": 64, "hidden_dims": [512, 512], "out_dim": 128}}
        },
        "tasks": {
            TASK: {"type": "toy_infonce", "data": "train", "augment": ["views"], "backbone": BACKBONE,
                   "options": {"temperature": 0.2}}
        },
        "train": {
            "optimizer": "adamw",
            "lr": 1e-3,
            "weight_decay": 1e-4,
            "schedule": "cosine",
            "warmup_steps": min(10, steps - 1),
            "min_lr": 0.0,
            "batch_size": batch_size,
            "max_steps": steps,
            "log_every": log_every,
            "device": "cpu",
            "workers": 0,
            "tensorboard": False,
            "checkpoint_every": 0,
        },
    }


def load(steps: int, batch_size: int, log_every: int, output_dir: Path) -> LoadedRecipe:
    registry = get_plugin_manager().registry
    source = "bench/overhead.py"
    recipe = parse_recipe(recipe_dict(steps=steps, batch_size=batch_size, log_every=log_every, output_dir=output_dir),
                          source)
    check_components(recipe, registry, source, Path.cwd())
    return LoadedRecipe(recipe=recipe, source=source, base_dir=Path.cwd())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------ selfsup side


def _own_cpu_seconds() -> float:
    """CPU seconds this process (all its threads) has used."""
    t = os.times()
    return t.user + t.system


class LoopClock:
    """A selfsup plugin that timestamps the first and last step through lifecycle events."""

    def __init__(self) -> None:
        self.start = self.end = self.cpu_start = self.cpu_end = math.nan

    @selfsup.hookimpl
    def on_train_start(self, run) -> None:
        self.start, self.cpu_start = time.perf_counter(), _own_cpu_seconds()

    @selfsup.hookimpl
    def on_step_end(self, run, step, metrics) -> None:
        if step == run.total_steps:
            self.end, self.cpu_end = time.perf_counter(), _own_cpu_seconds()


CLOCK = LoopClock()


def run_selfsup(steps: int, batch_size: int, log_every: int, output_dir: Path) -> dict[str, float]:
    pm = get_plugin_manager()
    loaded = load(steps, batch_size, log_every, output_dir)
    seed_everything(SEED)
    CLOCK.__init__()
    t0 = time.perf_counter()
    result = train(loaded, pm, progress=False)
    t1 = time.perf_counter()
    assert result.status == "completed" and result.step == steps, result
    assert not math.isnan(CLOCK.start) and not math.isnan(CLOCK.end), "lifecycle events did not fire"
    return {"loop": CLOCK.end - CLOCK.start, "cpu": CLOCK.cpu_end - CLOCK.cpu_start, "total": t1 - t0,
            "loss": result.metrics["loss"]}


# ------------------------------------------------------------------------------------ baseline


class AugmentedBlobs(Dataset):
    """The same source and augmentation as a hand-written loop would see them.

    ``seeding="shared"``: every augmentation draws from one seeded generator (the usual hand-written
    loop: reproducible from the start, not across a resume). ``seeding="per-sample"``: each sample's
    generator is reseeded from its coordinates with the public ``selfsup.lib.seeding``, the
    guarantee selfsup gives (the same augmentation after a resume, for any worker or process count),
    so that the timing compares the loops doing the same data work."""

    def __init__(self, source: Any, augment: Any, seed: int, seeding: str):
        self.source, self.augment, self.seed, self.seeding = source, augment, seed, seeding
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        g = self.generator
        if self.seeding == "shared":
            return [self.augment(self.source[i], g) for i in indices]
        seeds = sample_seeds(self.seed, TASK, 0, indices)  # one epoch's coordinates suffice for timing
        return [self.augment(self.source[i], g.manual_seed(s)) for i, s in zip(indices, seeds)]


def cosine(step: int, *, total: int, warmup: int, min_ratio: float) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def run_baseline(steps: int, batch_size: int, log_every: int, output_dir: Path, seeding: str) -> dict[str, float]:
    loaded = load(steps, batch_size, log_every, output_dir)
    recipe, cfg = loaded.recipe, loaded.recipe.train
    seed_everything(SEED)
    t0 = time.perf_counter()

    # same components and initial weights as selfsup (build_run seeds torch with recipe.seed)
    built = build_run(recipe, get_plugin_manager().registry, base_dir=loaded.base_dir, source=loaded.source,
                      with_evaluators=False)
    model = built.model
    backbone, task = model.backbones[BACKBONE], model.tasks[TASK]
    torch.manual_seed(recipe.seed + 1)

    spec = recipe.tasks[TASK]
    (augment,) = built.pipeline(spec.augment)
    data = AugmentedBlobs(built.data[spec.data], augment, recipe.seed, seeding)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=0,
                        collate_fn=default_collate, generator=torch.Generator().manual_seed(recipe.seed))

    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine(s, total=steps, warmup=cfg.warmup_steps, min_ratio=cfg.min_lr / cfg.lr)
    )

    model.train()
    logged = math.nan
    t_loop, cpu_loop = time.perf_counter(), _own_cpu_seconds()
    step, batches = 0, iter(loader)
    while step < steps:
        try:
            batch = next(batches)
        except StopIteration:  # next epoch, reshuffled
            batches = iter(loader)
            batch = next(batches)
        optimizer.zero_grad(set_to_none=True)
        loss = task(batch, backbone).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        if step % log_every == 0 or step == steps:
            logged = loss.item()
    t_loop_end, cpu_loop_end = time.perf_counter(), _own_cpu_seconds()

    output_dir.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
         "scheduler": scheduler.state_dict()},
        output_dir / "final.pt",
    )
    t1 = time.perf_counter()
    return {"loop": t_loop_end - t_loop, "cpu": cpu_loop_end - cpu_loop, "total": t1 - t0, "loss": logged}


# ------------------------------------------------------------------------------------ contention


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes on the machine spent busy so far (from /proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if fields[0] != "cpu":
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_for_idle(max_wait: float, quiet: float = 3.0) -> float:
    """Wait (at most ``max_wait`` s) until other processes kept under 5% of the machine busy for
    ``quiet`` consecutive seconds; returns the seconds waited."""
    start = time.perf_counter()
    calm, cores = 0.0, os.cpu_count() or 1
    while calm < quiet and time.perf_counter() - start < max_wait:
        busy0, t0 = _busy_cpu_seconds(), time.perf_counter()
        if busy0 is None:
            return 0.0
        time.sleep(0.5)
        load = (_busy_cpu_seconds() - busy0) / (time.perf_counter() - t0)
        calm = calm + 0.5 if load < 0.05 * cores else 0.0
    return time.perf_counter() - start


def measured(fn, *args) -> dict[str, float]:
    """Run ``fn(*args)`` and add ``other``: the average number of cores other processes (and
    steal) kept busy meanwhile, so a disturbed measurement can be seen and redone."""
    busy0, own0, wall0 = _busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter()
    result = fn(*args)
    busy1, own1, wall1 = _busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter()
    if busy0 is None or busy1 is None:
        result["other"] = math.nan
    else:
        result["other"] = max(0.0, (busy1 - busy0) - (own1 - own0)) / max(wall1 - wall0, 1e-9)
    return result


# ------------------------------------------------------------------------------------ reporting



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per timed run (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds, each selfsup then baseline (default 5)")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size (default 256)")
    parser.add_argument("--warmup-steps", type=int, default=50, help="steps of the untimed warm-up run of each side")
    parser.add_argument("--log-every", type=int, default=10, help="log interval of both loops (selfsup's default 10)")
    parser.add_argument("--retries", type=int, default=3,
                        help="redo a round up to this many times when other processes were busy during it (default 3)")
    parser.add_argument("--max-wait", type=float, default=120,
                        help="before each round, wait up to this many seconds for the machine to be idle (default 120)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: the machine's cores)")
    args = parser.parse_args()
    if args.steps < 2 or args.rounds < 1 or args.batch_size < 1:
        parser.error("need --steps >= 2, --rounds >= 1, --batch-size >= 1")

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(args.threads or cores)
    get_plugin_manager().register(CLOCK, "bench-loop-clock")

    print(machine())
    print(f"model: mlp 64-512-512-128 + toy_infonce head; AdamW, cosine; batch {args.batch_size}; "
          f"{args.steps} steps x {args.rounds} rounds of three sides (the first side rotates) after a "
          f"{args.warmup_steps}-step warm-up")
    print("sides: selfsup; hand-seeded: a hand-written loop that seeds each sample's augmentation as selfsup\n"
          " does (the same data work); hand-shared: a hand-written loop drawing every augmentation from one\n"
          " generator (not reproducible across a resume)")
    print("(loss: selfsup's mean over its last log window, the others' last logged step; a sanity check only;\n"
          " loop CPU: CPU seconds of this process over the loop, all threads;\n"
          " other load: cores kept busy by other processes meanwhile, should be ~0)\n")

    sides = {
        "selfsup": run_selfsup,
        "hand-seeded": functools.partial(run_baseline, seeding="per-sample"),
        "hand-shared": functools.partial(run_baseline, seeding="shared"),
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="selfsup-overhead-") as tmp:
        for name, fn in sides.items():
            fn(max(2, args.warmup_steps), args.batch_size, args.log_every, Path(tmp) / f"warmup-{name}")
        runs = 0
        for r in range(args.rounds):
            for attempt in range(args.retries + 1):
                waited = wait_for_idle(args.max_wait)
                if waited > 5:
                    print(f"(waited {waited:.0f} s for other processes to go quiet)", flush=True)
                round_results = {}
                items = list(sides.items())
                order = items[r % len(items):] + items[:r % len(items)]  # who goes first rotates
                for name, fn in order:
                    runs += 1
                    res = measured(fn, args.steps, args.batch_size, args.log_every, Path(tmp) / f"run{runs}-{name}")
                    round_results[name] = res
                    print(f"round {r + 1}/{args.rounds} {name:11s}  loop {res['loop']:7.3f} s  "
                          f"(CPU {res['cpu']:7.3f} s)  end-to-end {res['total']:7.3f} s  loss {res['loss']:.4f}  "
                          f"other load {res['other']:.2f} cores", flush=True)
                disturbed = max(res["other"] for res in round_results.values()) > OTHER_LOAD_LIMIT
                if not disturbed or attempt == args.retries:
                    break
                print(f"round {r + 1}: other processes were busy, round discarded and redone", flush=True)
            for name, res in round_results.items():
                results[name].append(res)

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    print()
    header = f"{'timing':11s} {'side':11s} {'median s':>9s} {'min s':>8s} {'max s':>8s} {'steps/s':>8s} {'ms/step':>8s}"
    print(header)
    print("-" * len(header))
    for key, label in (("loop", "loop"), ("total", "end-to-end"), ("cpu", "loop CPU")):
        for name in sides:
            values = [r[key] for r in results[name]]
            m = statistics.median(values)
            print(f"{label:11s} {name:11s} {m:9.3f} {min(values):8.3f} {max(values):8.3f} "
                  f"{args.steps / m:8.1f} {1e3 * m / args.steps:8.2f}")
    print()
    print("ratios: the median of the per-round ratios (each round runs every side back to back, so slow\n"
          "phases of the machine cancel), the ratio of medians and the ratio of the fastest runs")

    def paired(a: str, b: str, key: str) -> list[float]:
        return [x[key] / y[key] for x, y in zip(results[a], results[b])]

    comparisons = (
        ("selfsup", "hand-seeded", "the loop's overhead (the same data work on both sides)"),
        ("hand-seeded", "hand-shared", "what reproducible per-sample augmentation costs in a hand-written loop"),
        ("selfsup", "hand-shared", "selfsup against the usual hand-written loop (both of the above)"),
    )
    for a, b, meaning in comparisons:
        print(f"\n{a} / {b}: {meaning}")
        for key, label in (("loop", "loop"), ("total", "end-to-end"), ("cpu", "loop CPU")):
            per_round = paired(a, b, key)
            fastest = min(r[key] for r in results[a]) / min(r[key] for r in results[b])
            ratio = statistics.median(per_round)
            print(f"  {label:11s} {ratio:.3f} ({100 * (ratio - 1):+.1f}%); per-round "
                  f"{min(per_round):.3f}..{max(per_round):.3f}; "
                  f"of medians {med(a, key) / med(b, key):.3f}; of fastest {fastest:.3f}")
    overhead = 100 * (statistics.median(paired("selfsup", "hand-seeded", "loop")) - 1)
    seeding = 100 * (statistics.median(paired("hand-seeded", "hand-shared", "loop")) - 1)
    verdict = "within" if overhead <= 3.0 else "ABOVE"
    print(f"\ntraining-loop overhead {overhead:+.1f}% (median per-round ratio, the same data work): "
          f"{verdict} the 3% target")
    print(f"per-sample augmentation seeds cost {seeding:+.1f}% of a hand-written loop's step on this toy model")
    busiest = max(r["other"] for rs in results.values() for r in rs)
    if busiest > OTHER_LOAD_LIMIT:
        print(f"WARNING: other processes kept up to {busiest:.2f} cores busy during a timed run; "
              f"the numbers above are disturbed, rerun on an idle machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
