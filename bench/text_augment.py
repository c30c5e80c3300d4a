"""Text augmentation: fine-tuning with 10% of the labels, with and without EDA (Wei & Zou 2019).

The pretrained MLM encoder (``mlm-quickstart``) is fine-tuned by the ``finetune-polarity`` recipe on a
seeded, stratified 10% of a shipped labelled set (``subset`` of ``labelled_text`` with ``split = "all"``) and
measured on the other 90% of it (the same draw with ``complement = true``): 20 training and 180 held-out
sentences for ``polarity``, 20 and 180 posts for ``newsgroups``. Arms, each with the same recipe, steps,
batch and seeds:

* ``none``: no augmentation;
* ``eda-sr``: EDA's synonym replacement only (alpha_sr = 0.1);
* ``eda-all``: EDA, one of SR, RI, RS, RD per edit (alpha = 0.1 each, the paper's code defaults).

EDA runs on the fly (the recipe's ``augment`` list on the training task) with ``probability = 0.9``: nine
edited samples for one original, the mixture of the paper's code default (n_aug = 9 copies plus the
original). No model selection on the held-out part (fixed steps, ``train.best`` off). The seed is the run
seed and the subset's seed, so every seed draws other training sentences.

A second, cheap measurement (``--probe-seeds``, 10 seeds by default) takes the encoder out: a
bag-of-tokens linear probe (L-BFGS logistic regression on standardised bpe-8k token counts, as the
label-efficiency bench's raw-feature probe) trained on the same 10% subset, alone or with 9 EDA copies
of every text made offline (``edit_batch``, seeded by the probe's seed), measured on the same held-out 90%.

Back-translation and model paraphrase need a translation or paraphrase model, and none ships offline:
they are not measured here.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/text_augment.py --pretrained /tmp/mlm-quickstart
    .venv/bin/python bench/text_augment.py --sets polarity newsgroups --seeds 0 1 2 3 4
    .venv/bin/python bench/text_augment.py --sets polarity newsgroups --seeds   # the probe only (no fine-tuning)
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from machine import machine  # bench/machine.py

import selfsup
from selfsup.components import BuildContext
from selfsup.lib import class_report, fit_linear_probe

SETS: dict[str, dict[str, Any]] = {
    "polarity": {"max_length": 64},
    "newsgroups": {"max_length": 128},
}
EDA = {"tokenizer": "bpe-8k", "probability": 0.9}
ARMS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "eda-sr": {**EDA, "operations": ["sr"]},
    "eda-all": {**EDA},
}


def pretrained_run(path: Path) -> Path:
    if not (path / "recipe.json").is_file() or selfsup.open_run(path).checkpoint is None:
        print(f"pre-training mlm-quickstart into {path}", flush=True)
        selfsup.train("mlm-quickstart", {"output_dir": str(path), "train.tensorboard": False})
    return path


def tables(name: str, fraction: float, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    data = {"type": "labelled_text", "options": {"set": name, "tokenizer": "bpe-8k", "split": "all",
                                                 "max_length": SETS[name]["max_length"]}}
    subset = {"data": data, "fraction": fraction, "seed": seed}
    return ({"type": "subset", "options": subset},
            {"type": "subset", "options": {**subset, "complement": True}})


def finetune(pre: Path, name: str, arm: str, fraction: float, seed: int, steps: int, out: Path) -> dict[str, float]:
    train, held_out = tables(name, fraction, seed)
    size = len(BuildContext(name="n").build("data", "subset", train["options"]))
    values: dict[str, Any] = {
        "seed": seed, "output_dir": str(out), "data.train": train, "data.val": held_out, "train.max_steps": steps,
        "train.best": None, "evaluators.val.every": 0, "train.tensorboard": False,
        "train.batch_size": min(32, size), "train.warmup_steps": min(30, steps // 5),
    }
    options = ARMS[arm]
    if options is not None:
        values["augmentations.eda"] = {"type": "eda", "options": {**options,
                                                                  "max_length": SETS[name]["max_length"]}}
        values["tasks.classify.augment"] = ["eda"]
    run = selfsup.finetune(pre, "finetune-polarity", values)
    if run.status != "completed":
        raise RuntimeError(f"{out}: fine-tuning ended {run.status}")
    return {"accuracy": run.metrics["val/accuracy"], "f1_macro": run.metrics["val/f1_macro"], "train": size}


def texts_of(source: Any) -> tuple[list[str], list[int]]:
    """The texts (decoded from the samples' ids, as the augmentation sees them) and labels of a source."""
    from selfsup_text.tokenizers import load_tokenizer

    tokenizer = load_tokenizer("bpe-8k")
    rows = [source[i] for i in range(len(source))]
    return [tokenizer.decode(r["input_ids"][1:-1].tolist()) for r in rows], [int(r["label"]) for r in rows]


def bag_of_tokens(texts: list[str], max_length: int) -> torch.Tensor:
    """``[N, 8192]`` token counts of the texts, cut to ``max_length`` tokens as the source cuts them."""
    from selfsup_text.data.base import encode
    from selfsup_text.tokenizers import load_tokenizer

    ids, _ = encode(load_tokenizer("bpe-8k"), texts)
    return torch.stack([torch.bincount(torch.as_tensor(x[: max_length - 2]).long(), minlength=8192).float()
                        for x in ids])


def probe(name: str, arm: str, fraction: float, seed: int, copies: int = 9) -> dict[str, float]:
    train_t, held_t = tables(name, fraction, seed)
    context = BuildContext(name="probe")
    texts, labels = texts_of(context.build("data", "subset", train_t["options"]))
    held_texts, held_labels = texts_of(context.build("data", "subset", held_t["options"]))
    options = ARMS[arm]
    if options is not None:
        aug = context.build("augmentations", "eda", {**options, "probability": 1.0})
        originals = list(texts)
        for copy in range(1, copies + 1):  # originals, then copy 1 of every text, copy 2, ...
            texts += aug.edit_batch(originals, seed * 1000 + copy)
        labels = labels * (copies + 1)
    max_length = SETS[name]["max_length"]
    x, y = bag_of_tokens(texts, max_length), torch.tensor(labels)
    x_held, y_held = bag_of_tokens(held_texts, max_length), torch.tensor(held_labels)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    head = fit_linear_probe((x - mean) / std, y, num_classes=2, weight_decay=1e-3, max_iter=200)
    with torch.no_grad():
        predicted = head((x_held - mean) / std).argmax(1)
    averages = class_report(y_held, predicted, 2).averages()
    return {"accuracy": averages["accuracy"], "f1_macro": averages["f1_macro"], "train": len(texts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", type=Path, default=Path("runs/mlm-quickstart"),
                        help="The mlm-quickstart run (trained there first when missing).")
    parser.add_argument("--sets", nargs="+", default=["polarity"], choices=list(SETS))
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="Fine-tuning seeds (none: skip).")
    parser.add_argument("--probe-seeds", nargs="*", type=int, default=list(range(10)),
                        help="Seeds of the bag-of-tokens probe (none: skip).")
    parser.add_argument("--fraction", type=float, default=0.1, help="Share of the labels used for training.")
    parser.add_argument("--steps", type=int, default=300, help="Fine-tuning steps (the label-efficiency bench's).")
    parser.add_argument("--out", type=Path, default=Path("runs/text-augment"), help="Fine-tuning runs.")
    args = parser.parse_args()
    print(f"machine: {machine()}\n", flush=True)
    if args.probe_seeds:
        probe_table(args)
    if not args.seeds:
        return
    pre = pretrained_run(args.pretrained)
    rows = []
    for name in args.sets:
        for arm in args.arms:
            start = time.perf_counter()
            results = [finetune(pre, name, arm, args.fraction, seed, args.steps, args.out / f"{name}-{arm}-{seed}")
                       for seed in args.seeds]
            minutes = (time.perf_counter() - start) / 60
            acc = [r["accuracy"] for r in results]
            f1 = [r["f1_macro"] for r in results]
            rows.append((name, arm, results[0]["train"], acc, f1, minutes))
            print(f"{name} {arm} ({results[0]['train']} labelled): accuracy {_ms(acc)} "
                  f"[{', '.join(f'{a:.3f}' for a in acc)}], macro F1 {_ms(f1)} "
                  f"[{', '.join(f'{a:.3f}' for a in f1)}] ({minutes:.1f} min)", flush=True)
    print("\n| set (labelled / held out) | arm | held-out accuracy | per seed | Δ vs none (paired) | macro F1 "
          "| minutes |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: |")
    for name, arm, size, acc, f1, minutes in rows:
        held = len(BuildContext(name="n").build("data", "subset", tables(name, args.fraction, 0)[1]["options"]))
        base = next((a for n, r, _, a, _, _ in rows if n == name and r == "none"), None)
        print(f"| {name} ({size} / {held}) | {arm} | {_ms(acc)} | {' '.join(f'{a:.3f}' for a in acc)} | "
              f"{_delta(acc, base, arm)} | {_ms(f1)} | {minutes:.1f} |")
    print(f"\nmean ± standard deviation over seeds {args.seeds} (seed = run seed = subset seed); {args.steps} steps")


def probe_table(args: argparse.Namespace) -> None:
    print("| set (labelled / held out) | arm | probe accuracy | per seed | Δ vs none (paired) | macro F1 | seconds |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: |")
    for name in args.sets:
        held = len(BuildContext(name="n").build("data", "subset", tables(name, args.fraction, 0)[1]["options"]))
        base: list[float] | None = None
        for arm in args.arms:
            start = time.perf_counter()
            results = [probe(name, arm, args.fraction, seed) for seed in args.probe_seeds]
            seconds = time.perf_counter() - start
            acc = [r["accuracy"] for r in results]
            f1 = [r["f1_macro"] for r in results]
            base = acc if arm == "none" else base
            print(f"| {name} ({results[0]['train']} texts / {held}) | {arm} | {_ms(acc)} | "
                  f"{' '.join(f'{a:.3f}' for a in acc)} | {_delta(acc, base, arm)} | {_ms(f1)} | {seconds:.0f} |",
                  flush=True)
    print(f"\nbag-of-tokens probe, mean ± standard deviation over seeds {args.probe_seeds} (seed = subset seed = "
          f"EDA seed); EDA arms: the subset plus 9 edited copies of every text\n", flush=True)


def _delta(values: list[float], base: list[float] | None, arm: str) -> str:
    """Mean ± std of the per-seed differences to the ``none`` arm (same seeds, so the same subsets)."""
    if arm == "none" or base is None:
        return "–"
    return _ms([v - b for v, b in zip(values, base)], signed=True)


def _ms(values: list[float], signed: bool = False) -> str:
    sign = "+" if signed else ""
    if len(values) == 1:
        return f"{values[0]:{sign}.3f}"
    return f"{statistics.mean(values):{sign}.3f} ± {statistics.stdev(values):.3f}"


if __name__ == "__main__":
    main()
