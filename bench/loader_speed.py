"""What the data loader costs the shipped vision recipes: batch augmentations, workers kept across
epochs and rounds, and small tensors sent by value, each switched off and on, in one run.

The vision quickstarts train a small CNN on 8 or 28 px images with two data-loader workers making
two (or 2 + 4 multi-crop) augmented views per sample. Four costs made their data wait:

- **per-sample augmentation**: ~10 generator calls and ~10 small tensor ops per view, each a few
  microseconds of overhead; ``Augmentation.batch`` (API 1.8) draws each view's parameters in one
  generator call and transforms the whole batch in a few tensor operations;
- **workers started every epoch**: the digits' 1,438 training samples make 5 batches of 256, so a
  new loader (forked workers, then the first batch from cold) every 5 steps; now one loader serves
  the run and its workers run on into the next epoch;
- **workers restarted at every round's end** (``[rounds]``): the feedback changes the data the
  workers hold a copy of; now their copy catches up from the saved result and they stay;
- **shared memory for every tensor**: about a millisecond per tensor of a batch whatever its size;
  now small tensors go through the worker's pipe by value (``selfsup.engine.transfer``).

Variants, alternating within each repeat so the machine's load hits them alike:

- ``before``: all four switched off (the augmentations' ``batch`` hidden; a no-op
  ``on_epoch_start`` given to every stream, which makes the core start fresh workers each epoch, as
  it does for tasks with an epoch hook; workers restarted at rounds; shared memory throughout);
- ``batch only``, ``workers only``: one of the first two;
- ``shared memory``, ``restarted at rounds``: the code as shipped with one of the last two off;
- ``after``: the code as shipped.

Each run: the recipe as shipped, evaluators removed, ``--steps`` steps (warmup 5) logged every
``--steps / 5``; reported: the loop's ``data_wait_share`` (mean of the windows after the first,
which includes starting the workers) and samples/s over those windows, median (min-max) of
``--repeats``, and the ratio of after to before.

    nice -n 10 .venv/bin/python bench/loader_speed.py   # defaults: --steps 100 --repeats 3
    nice -n 10 .venv/bin/python bench/loader_speed.py --variants after --repeats 1 --recipes ...  # shipped code only
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
from pathlib import Path
from typing import Iterator

from machine import machine  # bench/machine.py

from selfsup.engine import data as engine_data
from selfsup.engine.loop import train
from selfsup.engine.metrics import read_metrics
from selfsup.plugins import get_plugin_manager
from selfsup.recipe import load_recipe

RECIPES = ["simclr-digits", "dino-digits", "simclr-mnist5k"]
FEATURES = ("batch", "persistent", "by_value", "rounds")
VARIANTS = {"before": (), "batch only": ("batch",), "workers only": ("persistent",),
            "shared memory": ("batch", "persistent", "rounds"),
            "restarted at rounds": ("batch", "persistent", "by_value"),
            "after": FEATURES}


@contextlib.contextmanager
def switched(*features: str) -> Iterator[None]:
    """The shipped loader with only ``features`` on: the augmentations' ``batch`` (else hidden),
    ``persistent`` workers (else fresh ones every epoch: a no-op epoch hook on every stream),
    ``by_value`` transfer of small tensors (else torch's shared memory for every tensor) and workers
    kept across ``rounds`` (else restarted when a round's feedback changes the data)."""
    from selfsup_vision.augment.transforms import ImageTransform
    from selfsup_vision.augment.views import MultiCrop, MultiView

    hidden = {cls: cls.batch for cls in (ImageTransform, MultiView, MultiCrop)}
    init, by_value, restart = engine_data.TaskStream.__init__, engine_data.ByValue, engine_data.TaskStream.restart

    def fresh_workers(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if self.on_epoch_start is None:
            self.on_epoch_start = lambda epoch: None

    try:
        if "batch" not in features:
            for cls in hidden:
                del cls.batch
        if "persistent" not in features:
            engine_data.TaskStream.__init__ = fresh_workers
        if "by_value" not in features:
            engine_data.ByValue = lambda collate: collate
        if "rounds" not in features:
            engine_data.TaskStream.restart = engine_data.TaskStream.close
        yield
    finally:
        for cls, method in hidden.items():
            cls.batch = method
        engine_data.TaskStream.__init__, engine_data.ByValue, engine_data.TaskStream.restart = init, by_value, restart


def run(recipe: str, steps: int, workdir: Path) -> dict[str, float]:
    pm = get_plugin_manager()
    run_dir = workdir / f"run-{len(list(workdir.glob('run-*')))}"
    loaded = load_recipe(recipe, pm.registry, [
        f'output_dir="{run_dir}"', "train.tensorboard=false", "train.checkpoint_every=0", "evaluators=",
        "train.epochs=", f"train.max_steps={steps}", f"train.log_every={max(1, steps // 5)}", "train.warmup_steps=5"])
    result = train(loaded, pm, progress=False)
    later = [r for r in read_metrics(result.run_dir) if r["kind"] == "train"][1:]
    return {"wait": statistics.mean(r["data_wait_share"] for r in later),
            "samples_per_s": statistics.mean(r["samples_per_s"] for r in later)}


def spread(values: list[float], fmt: str) -> str:
    values = sorted(values)
    return f"{fmt.format(statistics.median(values))} ({fmt.format(values[0])}–{fmt.format(values[-1])})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=RECIPES)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="e.g. --variants after: the code as shipped only (every shipped recipe's wait)")
    args = parser.parse_args()
    os.environ.setdefault("SELFSUP_MLFLOW", "0")
    print(machine(), flush=True)
    print(f"\n{args.steps} steps, median (min–max) of {args.repeats} runs\n\n"
          "| recipe | variant | data_wait_share (later windows) | samples/s (later) |\n| --- | --- | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in args.recipes:
            rows: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
            for _ in range(args.repeats):
                for variant in args.variants:
                    with switched(*VARIANTS[variant]):
                        rows[variant].append(run(recipe, args.steps, Path(tmp)))
            for variant, results in rows.items():
                print(f"| {recipe} | {variant} | {spread([r['wait'] for r in results], '{:.1%}')} | "
                      f"{spread([r['samples_per_s'] for r in results], '{:,.0f}')} |", flush=True)
            if "after" in rows and "before" in rows:
                speed = [a["samples_per_s"] / b["samples_per_s"] for a, b in zip(rows["after"], rows["before"])]
                print(f"| {recipe} | after / before, samples/s | | {spread(speed, '{:.2f}×')} |", flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
