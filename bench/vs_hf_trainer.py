"""selfsup vs transformers.Trainer: the same GPT-2-style model and data, trained side by side.

Both sides train a GPT-2 decoder (selfsup-text's ``transformer`` backbone, family gpt2) with the
same initial weights (the Trainer side gets a copy of the model selfsup built), on the same packed
windows of the embedded corpus (``embedded_corpus``, byte-level BPE ``bpe-8k``), with the same
batch, steps, AdamW settings (decay on matrices and embeddings, not on biases and norms), warmup +
cosine schedule, bf16 autocast on CPU, no data-loader workers and no evaluation during training.
Windows are one causal sequence on both sides (``cross_document_attention = true``, GPT-2's setup);
the Trainer side passes the pre-shifted targets as ``shift_labels`` so both compute the loss on
exactly the same target tokens. Rounds alternate which side goes first.

Reported: training throughput (tokens/s over the training loop on both sides: from selfsup's
``on_train_start`` event, after the data is tokenized and the model built, and from the Trainer's
``on_train_begin`` callback, to the end of the last optimizer step on each side), the
selfsup/Trainer ratio, the training loss at the logged steps and the held-out loss of both final
models on the same validation windows.

    .venv/bin/python bench/vs_hf_trainer.py --steps 200 --repeats 2

``--task finetune`` compares fine-tuning instead (text classification; see bench/hf_finetune.py):

    .venv/bin/python bench/vs_hf_trainer.py --task finetune --size nano --steps 200 --batch 32 --lr 1e-4
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
from clock import Clock  # bench/clock.py
from machine import machine  # bench/machine.py

from selfsup.components import BuildContext
from selfsup.engine.loop import train
from selfsup.engine.metrics import read_metrics
from selfsup.plugins import get_plugin_manager
from selfsup.recipe import LoadedRecipe, check_components, parse_recipe

SEED = 0
LOG_EVERY = 20


def config(args: argparse.Namespace) -> dict:
    data = {"name": "all", "window": args.window, "tokenizer": "bpe-8k", "split_seed": 0}
    return {
        "data": {
            "train": {"type": "embedded_corpus", "options": {**data, "split": "train"}},
            "val": {"type": "embedded_corpus", "options": {**data, "split": "val"}},
        },
        "backbone": {"type": "transformer", "options": {"family": "gpt2", "size": args.size, "context": args.window,
                                                        "tokenizer": "bpe-8k", "dropout": 0.0}},
        "train": {"optimizer": "adamw", "lr": args.lr, "weight_decay": 0.01, "warmup_steps": args.steps // 10,
                  "schedule": "cosine", "batch_size": args.batch, "max_steps": args.steps, "precision": "bf16",
                  "log_every": LOG_EVERY, "tensorboard": False, "workers": 0},
    }


def build(kind: str, spec: dict, **context):
    registry = get_plugin_manager().registry
    return registry.get(kind, spec["type"]).build(spec["options"], BuildContext(name=kind, seed=SEED, **context))


# ------------------------------------------------------------------------------------ selfsup


def run_selfsup(cfg: dict, out: Path) -> tuple[float, int, dict[int, float], torch.nn.Module]:
    recipe = {
        "name": "bench-clm", "seed": SEED, "output_dir": str(out),
        "data": {"train": cfg["data"]["train"]},
        "backbones": {"gpt": cfg["backbone"]},
        "tasks": {"clm": {"type": "clm", "data": "train", "backbone": "gpt",
                          "options": {"cross_document_attention": True}}},
        "train": cfg["train"],
    }
    pm = get_plugin_manager()
    parsed = parse_recipe(recipe, "bench")
    check_components(parsed, pm.registry, "bench", Path.cwd())
    clock = Clock(cfg["train"]["max_steps"])
    pm.register(clock, f"bench-clock-{id(clock)}")
    result = train(LoadedRecipe(recipe=parsed, source="bench", base_dir=Path.cwd()), pm, progress=False)
    seconds = clock.end - clock.start
    losses = {r["step"]: r["loss"] for r in read_metrics(result.run_dir) if r["kind"] == "train"}
    from safetensors.torch import load_file

    model = build("backbone", cfg["backbone"]).model
    weights = load_file(str(out / "checkpoints" / f"step-{result.step:08d}" / "model.safetensors"))
    model.load_state_dict({k.removeprefix("backbones.gpt.model."): v for k, v in weights.items()
                           if k.startswith("backbones.gpt.model.")}, strict=False)
    model.tie_weights()
    return seconds, result.step, losses, model


# ------------------------------------------------------------------------------------ Trainer


class Windows(torch.utils.data.Dataset):
    """The same windows as items the Trainer's default collator stacks."""

    def __init__(self, source):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        w = self.source[i]["input_ids"]  # [W + 1]
        return {"input_ids": w[:-1], "labels": w[:-1], "shift_labels": w[1:]}


def run_trainer(cfg: dict, model: torch.nn.Module, source,
                out: Path) -> tuple[float, int, dict[int, float], torch.nn.Module]:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    t = cfg["train"]
    losses: dict[int, float] = {}

    clock = {"start": 0.0, "end": 0.0}

    class Record(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            clock["start"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == t["max_steps"]:
                clock["end"] = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses[state.global_step] = float(logs["loss"])

    args = TrainingArguments(
        output_dir=str(out), max_steps=t["max_steps"], per_device_train_batch_size=t["batch_size"],
        learning_rate=t["lr"], weight_decay=t["weight_decay"], warmup_steps=t["warmup_steps"],
        lr_scheduler_type="cosine", optim="adamw_torch", bf16=True, use_cpu=True, logging_steps=LOG_EVERY,
        save_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0, seed=SEED,
        max_grad_norm=0.0,  # selfsup's recipe does not clip either
    )
    trainer = Trainer(model=model, args=args, train_dataset=Windows(source), callbacks=[Record()])
    trainer.train()
    return clock["end"] - clock["start"], trainer.state.global_step, losses, model


# ------------------------------------------------------------------------------------ evaluation


@torch.no_grad()
def heldout_loss(model: torch.nn.Module, source, batch: int = 32) -> float:
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(source), batch):
        w = torch.stack([source[i]["input_ids"] for i in range(start, min(start + batch, len(source)))])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=w[:, :-1]).logits.float()
        total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten(), reduction="sum").item()
        count += w[:, 1:].numel()
    return total / count



def main() -> None:
    import transformers

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--size", default="mini", help="transformer size preset (nano, mini, small, ...)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=2, help="Rounds, alternating which side goes first.")
    parser.add_argument("--task", choices=["clm", "finetune"], default="clm")
    parser.add_argument("--bf16", action="store_true", help="--task finetune: bf16 autocast on both sides.")
    parser.add_argument("--group-by-length", action="store_true",
                        help="--task finetune: length-grouped batches on both sides.")
    parser.add_argument("--pretrained", type=Path, default=Path("runs/mlm-quickstart"),
                        help="--task finetune: the MLM run whose encoder is fine-tuned.")
    args = parser.parse_args()
    if args.task == "finetune":
        from hf_finetune import run_both  # bench/hf_finetune.py

        print(f"machine: {machine()}; transformers {transformers.__version__}")
        print(f"fine-tuning {args.pretrained} on polarity: batch {args.batch}, {args.steps} steps, lr {args.lr}, "
              f"{'bf16' if args.bf16 else 'fp32'}, group_by_length {args.group_by_length}\n")
        run_both(args, args.pretrained)
        return
    cfg = config(args)
    train_source, val_source = build("data_source", cfg["data"]["train"]), build("data_source", cfg["data"]["val"])
    print(f"machine: {machine()}; transformers {transformers.__version__}")
    print(f"data: embedded corpus, bpe-8k, {len(train_source)} train / {len(val_source)} held-out windows of "
          f"{args.window} tokens")
    print(f"model: gpt2 '{args.size}', batch {args.batch} x {args.window} tokens, {args.steps} steps, bf16 autocast\n")

    rates: dict[str, list[float]] = {"selfsup": [], "Trainer": []}
    curves: dict[str, dict[int, float]] = {}
    heldout: dict[str, list[float]] = {"selfsup": [], "Trainer": []}
    tokens = args.steps * args.batch * args.window
    for r in range(args.repeats):
        torch.manual_seed(SEED)
        initial = build("backbone", cfg["backbone"]).model
        for side in (["selfsup", "Trainer"] if r % 2 == 0 else ["Trainer", "selfsup"]):
            with tempfile.TemporaryDirectory() as tmp:
                if side == "selfsup":
                    seconds, steps, losses, model = run_selfsup(cfg, Path(tmp) / "run")
                else:
                    seconds, steps, losses, model = run_trainer(cfg, copy.deepcopy(initial), train_source, Path(tmp))
            assert steps == args.steps, (side, steps)
            rates[side].append(tokens / seconds)
            curves[side] = losses
            heldout[side].append(heldout_loss(model, val_source))
            print(f"round {r + 1} {side}: {tokens / seconds:,.0f} tokens/s, held-out loss {heldout[side][-1]:.4f}",
                  flush=True)

    print(f"\n| side | tokens/s (median of {args.repeats}) | held-out loss | held-out perplexity |")
    print("| --- | ---: | ---: | ---: |")
    for side in ("selfsup", "Trainer"):
        loss = statistics.mean(heldout[side])
        print(f"| {side} | {statistics.median(rates[side]):,.0f} | {loss:.4f} | {math.exp(loss):.1f} |")
    ratio = statistics.median(rates["selfsup"]) / statistics.median(rates["Trainer"])
    gap = statistics.mean(heldout["selfsup"]) - statistics.mean(heldout["Trainer"])
    print(f"| selfsup / Trainer | **{ratio:.2f}x** | {gap:+.4f} | |")
    print("\ntraining loss at equal steps (last round):\n")
    print("| step | selfsup | Trainer |\n| ---: | ---: | ---: |")
    for step in sorted(set(curves["selfsup"]) & set(curves["Trainer"])):
        print(f"| {step} | {curves['selfsup'][step]:.4f} | {curves['Trainer'][step]:.4f} |")


if __name__ == "__main__":
    main()
