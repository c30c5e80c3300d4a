"""One shared transformer trunk against separate backbones, on the same three tasks.

Trains ``multimodal-quickstart`` (SimCLR on digits through ``trunk_image``, MLM on the embedded
corpus through the BERT trunk, HuBERT on spoken keywords through ``trunk_audio``: one set of
transformer layers) and ``multimodal-separate`` (the same tasks, sizes and schedule, each adapter
with transformer layers of its own), then evaluates each run's final checkpoint and its random
initialisation with the recipe's evaluators (``selfsup eval RUN`` and ``selfsup eval RUN --baseline``).

Reported per run:

* parameters: unique tensors' elements (``SelfSupModel.parameters()``, shared tensors once),
  backbones and task heads together;
* train time: from the ``train`` call to the end of the last step (building, HuBERT's k-means
  targets, the steps; not the final checkpoint and evaluation); loop time: first step to last step
  (lifecycle events ``on_train_start`` and ``on_step_end``), from which steps/s and samples/s
  (the batches of the tasks each step runs: one in turn under the recipes' ``round_robin``);
* each modality's metric, trained and at random init: kNN accuracy on held-out digits,
  masked-token accuracy on held-out text, keyword probe accuracy on held-out voices (noisy).

    OMP_NUM_THREADS=2 .venv/bin/python bench/multimodal_trunk.py [--steps 150] [--runs /tmp/mm-bench]
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
from pathlib import Path

from machine import machine  # bench/machine.py

import selfsup
from selfsup.engine.loop import tasks_for_step, train
from selfsup.evaluation import evaluate_run
from selfsup.plugins import get_plugin_manager
from selfsup.recipe import load_recipe

RECIPES = {"shared trunk": "multimodal-quickstart", "separate backbones": "multimodal-separate"}
#: (modality, evaluator metric) shown in the table
METRICS = [("image", "knn/accuracy"), ("text", "mlm_accuracy/accuracy"), ("speech", "keywords/accuracy")]


class LoopClock:
    """Timestamps the first and the last optimizer step through selfsup's lifecycle events."""

    def __init__(self) -> None:
        self.start = self.end = math.nan
        self.parameters = 0

    @selfsup.hookimpl
    def on_train_start(self, run) -> None:
        self.start, self.parameters = time.perf_counter(), run.parameters

    @selfsup.hookimpl
    def on_step_end(self, run, step, metrics) -> None:
        if step == run.total_steps:
            self.end = time.perf_counter()



def samples_seen(recipe, steps: int) -> int:
    """Samples drawn by ``steps`` optimizer steps: the batch of every task each step picks
    (all of them under ``sum``, one in turn under ``round_robin``)."""
    batch = {name: spec.batch_size or recipe.train.batch_size for name, spec in recipe.tasks.items()}
    return sum(batch[t] * recipe.train.grad_accum for step in range(steps) for t in tasks_for_step(recipe, step))


def run_one(recipe: str, run_dir: Path, overrides: list[str], clock: LoopClock) -> dict[str, float]:
    pm = get_plugin_manager()
    if run_dir.exists():
        shutil.rmtree(run_dir)
    loaded = load_recipe(recipe, pm.registry, [f'output_dir="{run_dir}"', "train.tensorboard=false", *overrides])
    clock.__init__()
    start = time.perf_counter()
    result = train(loaded, pm, progress=False)
    total = clock.end - start
    if result.status != "completed":
        raise RuntimeError(f"{recipe}: training ended {result.status}")
    trained, _ = evaluate_run(result.run_dir, pm)
    before, _ = evaluate_run(result.run_dir, pm, random_init=True)
    loop = clock.end - clock.start
    out = {"steps": result.step, "parameters": clock.parameters, "train_s": total, "loop_s": loop,
           "steps_per_s": result.step / loop, "samples_per_s": samples_seen(loaded.recipe, result.step) / loop}
    for _, metric in METRICS:
        out[metric] = trained[metric]
        out[metric + ":random"] = before[metric]
    return out


def table(results: dict[str, dict[str, float]]) -> str:
    names = list(results)
    rows = [
        "| | " + " | ".join(f"{n} (`{RECIPES[n]}`)" for n in names) + " |",
        "| --- | " + " | ".join("---:" for _ in names) + " |",
        "| parameters (unique) | " + " | ".join(f"{results[n]['parameters'] / 1e6:.2f} M" for n in names) + " |",
        "| optimizer steps | " + " | ".join(f"{results[n]['steps']:.0f}" for n in names) + " |",
        "| train time (whole run) | " + " | ".join(f"{results[n]['train_s']:.0f} s" for n in names) + " |",
        "| loop time (steps only) | " + " | ".join(f"{results[n]['loop_s']:.0f} s" for n in names) + " |",
        "| steps/s | " + " | ".join(f"{results[n]['steps_per_s']:.2f}" for n in names) + " |",
        "| samples/s (all tasks) | " + " | ".join(f"{results[n]['samples_per_s']:.0f}" for n in names) + " |",
    ]
    for modality, metric in METRICS:
        rows.append(f"| {modality}: `{metric}` trained / random init | " + " | ".join(
            f"{results[n][metric]:.3f} / {results[n][metric + ':random']:.3f}" for n in names) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="Shorten both runs to this many optimizer steps.")
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-multimodal-trunk"), help="Where the runs go.")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="Extra recipe override (both runs).")
    args = parser.parse_args()
    overrides = list(args.overrides)
    if args.steps is not None:
        overrides += [f"train.max_steps={args.steps}", f"train.warmup_steps={max(1, args.steps // 10)}"]
    clock = LoopClock()
    get_plugin_manager().register(clock, "bench-multimodal-clock")
    print(f"machine: {machine()}\n")
    results = {}
    for label, recipe in RECIPES.items():
        results[label] = run_one(recipe, args.runs / recipe, overrides, clock)
        print(f"{label}: {results[label]}", flush=True)
    print()
    print(table(results))


if __name__ == "__main__":
    main()
