"""The fine-tuning mode of vs_hf_trainer.py (``--task finetune``): text classification, selfsup's
``finetune`` task against ``transformers.Trainer`` on the same model, data, batch and steps.

The model is the ``finetune-polarity`` recipe's: the BERT encoder of an MLM run (``init``) with a
classification head on its mean-pooled states, built once by selfsup; the Trainer side trains a
deep copy of it (wrapped so that ``forward`` returns the same cross-entropy loss). Both sides read
the polarity sentences through the data source's own collate (padding to the longest in the batch),
shuffled, no workers; AdamW with the same decay groups, warmup + cosine, no clipping, no evaluation
during training, no layer-wise decay (the Trainer has none). ``--bf16`` turns on bf16 autocast and
``--group-by-length`` length-grouped batches on both sides (selfsup's ``group_by_length``, the
Trainer's ``LengthGroupedSampler``); both off by default. Reported: training samples/s
(from the first to the last optimizer step on each side), their ratio, and the held-out accuracy of
both final models on the same validation sentences.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from clock import Clock  # bench/clock.py

import selfsup
from selfsup.engine.build import build_run
from selfsup.engine.loop import train
from selfsup.plugins import get_plugin_manager
from selfsup.recipe import load_recipe


def recipe_values(args: Any, out: Path) -> dict[str, Any]:
    return {"output_dir": str(out), "train.max_steps": args.steps, "train.batch_size": args.batch,
            "train.lr": args.lr, "train.warmup_steps": args.steps // 10, "train.best": None,
            "train.tensorboard": False, "train.log_every": args.steps, "evaluators.val.every": 0,
            "tasks.classify.group_by_length": args.group_by_length, "tasks.classify.options.layer_decay": 1.0,
            "train.precision": "bf16" if args.bf16 else "fp32",
            "tasks.classify.options.head_options": {"dropout": 0.0}, "train.weight_decay": 0.01}


class Classifier(torch.nn.Module):
    """The selfsup backbone and head as one module whose forward returns the loss, for the Trainer."""

    def __init__(self, backbone: torch.nn.Module, head: torch.nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, input_ids, attention_mask, label=None, **unused):
        logits = self.head(self.backbone.embed({"input_ids": input_ids, "attention_mask": attention_mask}))
        logits = logits.float()
        loss = None if label is None else F.cross_entropy(logits.float(), label)
        return {"loss": loss, "logits": logits}


class Items(torch.utils.data.Dataset):
    """The source's samples, with ``input_ids`` as the Trainer's ``group_by_length`` reads them."""

    def __init__(self, source: Any):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return dict(self.source[i])


def sampler(group_by_length: bool) -> dict[str, Any]:
    """The Trainer's length-grouping argument: ``train_sampling_strategy`` in transformers 5, the
    older ``group_by_length`` flag before it."""
    import inspect

    from transformers import TrainingArguments

    if "train_sampling_strategy" in inspect.signature(TrainingArguments).parameters:
        return {"train_sampling_strategy": "group_by_length" if group_by_length else "random"}
    return {"group_by_length": group_by_length}


@torch.no_grad()
def accuracy(model: Classifier, source: Any, batch: int = 128) -> float:
    model.eval()
    right = 0
    for start in range(0, len(source), batch):
        b = source.collate([source[i] for i in range(start, min(start + batch, len(source)))])
        right += int((model(b["input_ids"], b["attention_mask"])["logits"].argmax(1) == b["label"]).sum())
    return right / len(source)


def run_both(args: Any, pretrained: Path) -> None:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    pm = get_plugin_manager()
    rates: dict[str, list[float]] = {"selfsup": [], "Trainer": []}
    accs: dict[str, list[float]] = {"selfsup": [], "Trainer": []}
    for r in range(args.repeats):
        for side in (["selfsup", "Trainer"] if r % 2 == 0 else ["Trainer", "selfsup"]):
            with tempfile.TemporaryDirectory() as tmp:
                loaded = load_recipe("finetune-polarity", pm.registry, values=recipe_values(args, Path(tmp) / "run"),
                                     pretrained=pretrained)
                built = build_run(loaded.recipe, pm.registry, base_dir=loaded.base_dir, source="bench", plugins=pm,
                                  options=loaded.options)  # the initial model both sides start from
                train_source, val_source = built.data["train"], built.data["val"]
                samples = args.steps * args.batch
                if side == "selfsup":
                    clock = Clock(args.steps)
                    pm.register(clock, f"bench-clock-{id(clock)}")
                    train(loaded, pm, progress=False)
                    seconds = clock.end - clock.start
                    model = selfsup.load(Path(tmp) / "run")
                    accs[side].append(accuracy(Classifier(model.backbone, model.task.head), val_source))
                else:
                    model = Classifier(copy.deepcopy(built.model.backbones["pretrained"]),
                                       copy.deepcopy(built.model.tasks["classify"].head))
                    clock = {"start": 0.0, "end": 0.0}

                    class Record(TrainerCallback):
                        def on_train_begin(self, a, state, control, **kw):
                            clock["start"] = time.perf_counter()

                        def on_step_end(self, a, state, control, **kw):
                            if state.global_step == args.steps:
                                clock["end"] = time.perf_counter()

                    targs = TrainingArguments(
                        output_dir=tmp, max_steps=args.steps, per_device_train_batch_size=args.batch,
                        learning_rate=args.lr, weight_decay=0.01, warmup_steps=args.steps // 10,
                        lr_scheduler_type="cosine", optim="adamw_torch", use_cpu=True, save_strategy="no",
                        report_to=[], disable_tqdm=True, dataloader_num_workers=0, seed=0, max_grad_norm=0.0,
                        logging_steps=args.steps, remove_unused_columns=False, label_names=["label"],
                        bf16=args.bf16, **sampler(args.group_by_length),
                    )
                    trainer = Trainer(model=model, args=targs, train_dataset=Items(train_source),
                                      data_collator=train_source.collate, callbacks=[Record()])
                    trainer.train()
                    seconds = clock["end"] - clock["start"]
                    accs[side].append(accuracy(model, val_source))
            rates[side].append(samples / seconds)
            print(f"round {r + 1} {side}: {samples / seconds:,.1f} samples/s, held-out accuracy {accs[side][-1]:.4f}",
                  flush=True)
    print(f"\n| side | samples/s (median of {args.repeats}) | held-out accuracy (mean) |")
    print("| --- | ---: | ---: |")
    for side in ("selfsup", "Trainer"):
        print(f"| {side} | {statistics.median(rates[side]):,.1f} | {statistics.mean(accs[side]):.4f} |")
    ratio = statistics.median(rates["selfsup"]) / statistics.median(rates["Trainer"])
    gap = statistics.mean(accs["selfsup"]) - statistics.mean(accs["Trainer"])
    print(f"| selfsup / Trainer | **{ratio:.2f}x** | {gap:+.4f} |")
