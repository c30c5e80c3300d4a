"""Label efficiency: fine-tuning with 1%, 10% and 100% of the labels, from (a) the selfsup-pretrained
backbone, (b) the same backbone at random initialisation, (c) a linear probe on raw features.

One recipe per modality, each variant trained with the same recipe, steps, seed and labelled subset
(``subset`` data source: a seeded share of every class), and measured on the same held-out split:

* vision: SimCLR on mnist5k (``simclr-mnist5k``) -> ``finetune-digits`` with mnist5k 16x16 data;
  raw features: the pixels;
* text: the MLM encoder (``mlm-quickstart``) -> ``finetune-polarity`` (movie-review polarity);
  raw features: bag of tokens (counts of each token id);
* speech: HuBERT (``hubert-quickstart``) -> ``finetune-keywords`` (keywords, held-out voices);
  raw features: mean and standard deviation of 40 log-mel bands.

No model selection on the held-out split (``train.best`` off, fixed steps): the reported figures are
of the final weights. The batch is the recipe's, or the whole subset when it is smaller. Missing
pretrained runs are trained first (``RUNS/<recipe>``). Prints one Markdown table (mean and standard
deviation over the seeds) for docs/benchmarks.md.

    .venv/bin/python bench/label_efficiency.py                       # all three, 3 seeds
    .venv/bin/python bench/label_efficiency.py --modalities vision --seeds 0 --fractions 0.1
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
from selfsup.engine.init import locate
from selfsup.lib import class_report, fit_linear_probe

MODALITIES: dict[str, dict[str, Any]] = {
    "vision": {
        "pretrain": "simclr-mnist5k", "recipe": "finetune-digits", "steps": 200, "raw": "pixels",
        "train": {"type": "mnist5k", "options": {"split": "train", "size": 16}},
        "val": {"type": "mnist5k", "options": {"split": "val", "size": 16}},
        "overrides": {"train.batch_size": 64, "train.warmup_steps": 10},
    },
    "text": {
        "pretrain": "mlm-quickstart", "recipe": "finetune-polarity", "steps": 300, "raw": "tokens",
        "train": {"type": "labelled_text", "options": {"set": "polarity", "tokenizer": "bpe-8k", "max_length": 64,
                                                       "split": "train"}},
        "val": {"type": "labelled_text", "options": {"set": "polarity", "tokenizer": "bpe-8k", "max_length": 64,
                                                     "split": "val"}},
        "overrides": {"train.batch_size": 32, "train.warmup_steps": 30},
    },
    "speech": {
        "pretrain": "hubert-quickstart", "recipe": "finetune-keywords", "steps": 200, "raw": "logmel",
        "train": {"type": "synth_speech", "options": {"split": "train", "utterances_per_pair": 4}},
        "val": {"type": "synth_speech", "options": {"split": "val", "utterances_per_pair": 4}},
        "overrides": {"train.batch_size": 16, "train.warmup_steps": 20},
    },
}


def pretrained_run(name: str, runs: Path) -> Path:
    path = runs / name
    if not (path / "recipe.json").is_file() or selfsup.open_run(path).checkpoint is None:
        print(f"pre-training {name} into {path}", flush=True)
        selfsup.train(name, {"output_dir": str(path), "train.tensorboard": False})
    return path


def finetune(spec: dict[str, Any], pre: Path, fraction: float, seed: int, out: Path, pretrained: bool,
             scale: float) -> dict[str, float]:
    subset = {"type": "subset", "options": {"data": spec["train"], "fraction": fraction, "seed": seed}}
    steps = max(10, int(spec["steps"] * scale))
    values = {**spec["overrides"], "seed": seed, "output_dir": str(out), "data.train": subset,
              "data.val": spec["val"], "train.max_steps": steps, "train.best": None, "evaluators.val.every": 0,
              "train.tensorboard": False}
    values["train.warmup_steps"] = min(values.get("train.warmup_steps", 0), steps // 5)
    size = len(BuildContext(name="n").build("data", "subset", subset["options"]))
    values["train.batch_size"] = min(values["train.batch_size"], size)  # 1% of a small set: fewer than a batch
    if pretrained:
        run = selfsup.finetune(pre, spec["recipe"], values)
    else:  # the same backbone type and options, from the recipe's seed
        found = locate(pre, "pretrained")
        values["backbones.pretrained"] = {"type": found.type, "options": found.options}
        run = selfsup.train(spec["recipe"], values)
    metrics = run.metrics
    return {"accuracy": metrics["val/accuracy"], "f1_macro": metrics["val/f1_macro"]}


def raw_features(kind: str, source: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``([N, F] float32, labels [N])``: the raw-input features of a source."""
    rows = [source[i] for i in range(len(source))]
    labels = torch.tensor([int(r["label"]) for r in rows])
    if kind == "pixels":
        return torch.stack([torch.as_tensor(r["image"]).float().flatten() for r in rows]), labels
    if kind == "tokens":
        vocab = 1 + max(int(torch.as_tensor(r["input_ids"]).max()) for r in rows)
        vocab = max(vocab, 8192)
        return torch.stack([torch.bincount(torch.as_tensor(r["input_ids"]).long(), minlength=vocab).float()
                            for r in rows]), labels
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=400, hop_length=160, n_mels=40)
    feats = []
    for r in rows:
        logmel = (mel(torch.as_tensor(r["audio"]).float()) + 1e-6).log()  # [40, frames]
        feats.append(torch.cat([logmel.mean(1), logmel.std(1)]))
    return torch.stack(feats), labels


def raw_probe(spec: dict[str, Any], fraction: float, seed: int) -> dict[str, float]:
    ctx = BuildContext(name="raw")
    train = ctx.build("data", "subset", {"data": spec["train"], "fraction": fraction, "seed": seed})
    val = ctx.build("data", spec["val"]["type"], spec["val"]["options"])
    x_fit, y_fit = raw_features(spec["raw"], train)
    x_val, y_val = raw_features(spec["raw"], val)
    mean, std = x_fit.mean(0), x_fit.std(0).clamp_min(1e-6) if len(x_fit) > 1 else torch.ones(x_fit.shape[1])
    num_classes = int(max(y_fit.max(), y_val.max())) + 1
    head = fit_linear_probe((x_fit - mean) / std, y_fit, num_classes=num_classes, weight_decay=1e-3, max_iter=200)
    with torch.no_grad():
        predicted = head((x_val - mean) / std).argmax(1)
    averages = class_report(y_val, predicted, num_classes).averages()
    return {"accuracy": averages["accuracy"], "f1_macro": averages["f1_macro"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modalities", nargs="+", default=list(MODALITIES), choices=list(MODALITIES))
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.01, 0.1, 1.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="Where the pretrained runs are (or go).")
    parser.add_argument("--out", type=Path, default=Path("runs/label-efficiency"), help="Fine-tuning runs.")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="Scale every fine-tuning's steps (a quick try).")
    args = parser.parse_args()
    print(f"machine: {machine()}\n", flush=True)
    rows = []
    for modality in args.modalities:
        spec = MODALITIES[modality]
        pre = pretrained_run(spec["pretrain"], args.runs)
        for fraction in args.fractions:
            size = len(BuildContext(name="n").build("data", "subset", {"data": spec["train"], "fraction": fraction}))
            results: dict[str, list[dict[str, float]]] = {"pretrained": [], "random init": [], "raw-feature probe": []}
            start = time.perf_counter()
            for seed in args.seeds:
                tag = f"{modality}-{fraction:g}-{seed}"
                results["pretrained"].append(finetune(spec, pre, fraction, seed, args.out / f"pre-{tag}", True,
                                                      args.steps_scale))
                results["random init"].append(finetune(spec, pre, fraction, seed, args.out / f"rand-{tag}", False,
                                                       args.steps_scale))
                results["raw-feature probe"].append(raw_probe(spec, fraction, seed))
            minutes = (time.perf_counter() - start) / 60
            for variant, values in results.items():
                rows.append((modality, fraction, size, variant, values))
                acc = [v["accuracy"] for v in values]
                f1 = [v["f1_macro"] for v in values]
                print(f"{modality} {fraction:g} ({size} labelled) {variant}: accuracy {_ms(acc)}, macro F1 {_ms(f1)}"
                      f" [{', '.join(f'{a:.3f}' for a in acc)}] ({minutes:.1f} min for this fraction)", flush=True)
    print("\n| modality | labels (train samples) | pretrained | random init | raw-feature probe |")
    print("| --- | --- | ---: | ---: | ---: |")
    for modality in args.modalities:
        for fraction in args.fractions:
            cells = {v: vals for m, f, n, v, vals in rows if m == modality and f == fraction}
            size = next(n for m, f, n, _, _ in rows if m == modality and f == fraction)
            print(f"| {modality} | {fraction:.0%} ({size}) | " + " | ".join(
                _ms([x["accuracy"] for x in cells[v]]) for v in ("pretrained", "random init", "raw-feature probe"))
                + " |")
    print(f"\nheld-out accuracy, mean ± standard deviation over seeds {args.seeds} (seed = run seed = subset seed)")


def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


if __name__ == "__main__":
    main()
