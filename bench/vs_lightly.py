"""selfsup vs lightly: SimCLR and SwAV on the same backbone, data, augmentations, batch, epochs and seed.

The lightly side is lightly's own building blocks (transform, projection head, prototypes, loss)
in a plain PyTorch loop, as lightly's examples write it. The selfsup side is a recipe run by
``selfsup.engine.loop.train``. Both use the same small CNN, the same optimizer (AdamW, no decay on
biases and norms), the same warmup + cosine schedule, the same number of images per step and of
steps, ``num_workers=0`` and 2 CPU threads, and run one after the other in this process, in
alternating order for ``--repeats`` rounds.

Reported per method: training throughput (images/s, training only, evaluation excluded), the
selfsup/lightly throughput ratio, and the final weighted-kNN accuracy (k=200, t=0.1, held-out
digits) of each backbone, plus raw pixels and random init as baselines.

    .venv/bin/python bench/vs_lightly.py --method simclr --epochs 40 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import machine  # bench/machine.py
from PIL import Image

from selfsup.builtins.knn import weighted_knn_predict
from selfsup.components import BuildContext
from selfsup.engine.loop import train
from selfsup.engine.optim import build_scheduler, param_groups
from selfsup.plugins import get_plugin_manager
from selfsup.recipe import LoadedRecipe, check_components, parse_recipe

SEED = 0
K, T = 200, 0.1
CNN = {"widths": [32, 64, 128], "norm": "batch"}
TRAIN = {"optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-4, "warmup_steps": 20, "batch_size": 256}

# One configuration per method, shared by both libraries.
METHODS: dict[str, dict[str, Any]] = {
    "simclr": {
        "augment": {"type": "multi_view", "options": {"views": 2, "size": 8, "crop_scale": [0.5, 1.0], "flip": 0.0,
                                                     "color_jitter": 0.5, "color_jitter_p": 0.8}},
        "task": {"temperature": 0.2, "projection_hidden_dim": 256, "projection_dim": 64, "projection_layers": 2},
    },
    "swav": {
        "augment": {"type": "multi_crop", "options": {"global_crops": 2, "global_size": 8, "global_scale": [0.5, 1.0],
                                                     "local_crops": 4, "local_size": 6, "local_scale": [0.3, 0.6],
                                                     "flip": 0.0, "color_jitter": 0.5, "color_jitter_p": 0.8}},
        "task": {"prototypes": 30, "temperature": 0.1, "sinkhorn_epsilon": 0.03, "sinkhorn_iterations": 3,
                 "projection_hidden_dim": 256, "projection_dim": 64, "freeze_prototypes_steps": 50},
    },
}


def digits(split: str):
    registry = get_plugin_manager().registry
    return registry.get("data_source", "digits").build({"split": split}, BuildContext(name=split))


def small_cnn() -> torch.nn.Module:
    registry = get_plugin_manager().registry
    return registry.get("backbone", "small_cnn").build(CNN, BuildContext(name="cnn"))


@torch.no_grad()
def knn_accuracy(backbone: torch.nn.Module, train_set, val_set) -> float:
    backbone.eval()
    bank = backbone(train_set.images)
    queries = backbone(val_set.images)
    pred = weighted_knn_predict(bank, train_set.labels, queries, k=K, temperature=T)
    return (pred == val_set.labels).float().mean().item()


def raw_pixel_knn(train_set, val_set) -> float:
    pred = weighted_knn_predict(train_set.images.flatten(1), train_set.labels, val_set.images.flatten(1), k=K,
                                temperature=T)
    return (pred == val_set.labels).float().mean().item()


# ------------------------------------------------------------------------------------ selfsup


def run_selfsup(method: str, epochs: int, out: Path) -> tuple[float, int, torch.nn.Module]:
    cfg = METHODS[method]
    recipe = {
        "name": f"bench-{method}",
        "seed": SEED,
        "output_dir": str(out),
        "data": {"train": {"type": "digits", "options": {"split": "train"}}},
        "augmentations": {"views": cfg["augment"]},
        "backbones": {"cnn": {"type": "small_cnn", "options": CNN}},
        "tasks": {method: {"type": method, "data": "train", "augment": ["views"], "backbone": "cnn",
                           "options": cfg["task"]}},
        "train": {**TRAIN, "epochs": epochs, "log_every": 50, "tensorboard": False},
    }
    pm = get_plugin_manager()
    parsed = parse_recipe(recipe, "bench")
    check_components(parsed, pm.registry, "bench", Path.cwd())
    loaded = LoadedRecipe(recipe=parsed, source="bench", base_dir=Path.cwd())
    start = time.perf_counter()
    result = train(loaded, pm, progress=False)
    seconds = time.perf_counter() - start
    # rebuild the backbone and load the final weights for the kNN evaluation
    from safetensors.torch import load_file

    weights = load_file(str(out / "checkpoints" / f"step-{result.step:08d}" / "model.safetensors"))
    backbone = small_cnn()
    prefix = "backbones.cnn."
    backbone.load_state_dict({k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)})
    return seconds, result.step, backbone


# ------------------------------------------------------------------------------------ lightly


class PILDigits(torch.utils.data.Dataset):
    """The same training digits as PIL images, through a lightly transform."""

    def __init__(self, source, transform):
        self.images = [Image.fromarray((x[0].numpy() * 255).round().astype(np.uint8), mode="L") for x in source.images]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i])


def lightly_parts(method: str, in_dim: int):
    from lightly.loss import NTXentLoss, SwaVLoss
    from lightly.models.modules import SimCLRProjectionHead, SwaVProjectionHead, SwaVPrototypes
    from lightly.transforms import SimCLRTransform, SwaVTransform

    cfg = METHODS[method]
    a, t = cfg["augment"]["options"], cfg["task"]
    common = dict(cj_prob=a["color_jitter_p"], cj_strength=a["color_jitter"], random_gray_scale=0.0, gaussian_blur=0.0,
                  hf_prob=a["flip"], vf_prob=0.0, rr_prob=0.0, normalize=None)
    if method == "simclr":
        transform = SimCLRTransform(input_size=a["size"], min_scale=a["crop_scale"][0], **common)
        head = SimCLRProjectionHead(in_dim, t["projection_hidden_dim"], t["projection_dim"],
                                    num_layers=t["projection_layers"])
        return transform, head, None, NTXentLoss(temperature=t["temperature"])
    transform = SwaVTransform(
        crop_sizes=(a["global_size"], a["local_size"]), crop_counts=(a["global_crops"], a["local_crops"]),
        crop_min_scales=(a["global_scale"][0], a["local_scale"][0]),
        crop_max_scales=(a["global_scale"][1], a["local_scale"][1]),
        **common,
    )
    head = SwaVProjectionHead(in_dim, t["projection_hidden_dim"], t["projection_dim"])
    prototypes = SwaVPrototypes(t["projection_dim"], t["prototypes"],
                                n_steps_frozen_prototypes=t["freeze_prototypes_steps"])
    loss = SwaVLoss(temperature=t["temperature"], sinkhorn_iterations=t["sinkhorn_iterations"],
                    sinkhorn_epsilon=t["sinkhorn_epsilon"])
    return transform, head, prototypes, loss


def run_lightly(method: str, epochs: int) -> tuple[float, int, torch.nn.Module]:
    from selfsup.recipe import TrainSpec

    torch.manual_seed(SEED)
    backbone = small_cnn()
    transform, head, prototypes, criterion = lightly_parts(method, backbone.output_dim)
    modules = torch.nn.ModuleList([m for m in (backbone, head, prototypes) if m is not None])
    data = PILDigits(digits("train"), transform)
    g = torch.Generator().manual_seed(SEED)
    loader = torch.utils.data.DataLoader(data, batch_size=TRAIN["batch_size"], shuffle=True, drop_last=True,
                                         generator=g)
    steps = max(1, int(epochs * len(loader)))
    spec = TrainSpec(**TRAIN, max_steps=steps)
    optimizer = torch.optim.AdamW(param_groups(modules, spec.weight_decay), lr=spec.lr)
    scheduler = build_scheduler(optimizer, spec, steps)
    step = 0
    start = time.perf_counter()
    while step < steps:
        for views in loader:
            if method == "simclr":
                x0, x1 = views
                z = head(backbone(torch.cat([x0, x1])))
                loss = criterion(z[: len(x0)], z[len(x0) :])
            else:
                prototypes.normalize()
                scores = []
                for crops in views:  # crops: [B, C, s, s], globals first
                    z = torch.nn.functional.normalize(head(backbone(crops)), dim=1)
                    scores.append(prototypes(z, step))
                n_global = METHODS["swav"]["augment"]["options"]["global_crops"]
                loss = criterion(scores[:n_global], scores[n_global:])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step % 50 == 0:
                loss.item()  # a real loop logs; same cadence as the selfsup run
            if step == steps:
                break
    return time.perf_counter() - start, steps, backbone


# ------------------------------------------------------------------------------------ main



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=["simclr", "swav", "both"], default="both")
    parser.add_argument("--epochs", type=float, default=40)
    parser.add_argument("--repeats", type=int, default=2, help="Rounds, alternating which library goes first.")
    args = parser.parse_args()
    torch.set_num_threads(2)
    train_set, val_set = digits("train"), digits("val")
    torch.manual_seed(SEED)
    baseline = {"raw pixels": raw_pixel_knn(train_set, val_set),
                "random init": knn_accuracy(small_cnn(), train_set, val_set)}
    print(f"machine: {machine()}")
    print(f"digits: {len(train_set)} train / {len(val_set)} held-out; kNN k={K}, t={T}")
    print(f"baselines: raw pixels {baseline['raw pixels']:.4f}, "
          f"small CNN at random init {baseline['random init']:.4f}\n")
    methods = ["simclr", "swav"] if args.method == "both" else [args.method]
    print(f"| method | library | images/s (median of {args.repeats}) | kNN accuracy | steps |")
    print("| --- | --- | ---: | ---: | ---: |")
    for method in methods:
        rates: dict[str, list[float]] = {"selfsup": [], "lightly": []}
        accs: dict[str, list[float]] = {"selfsup": [], "lightly": []}
        steps_of: dict[str, int] = {}
        for r in range(args.repeats):
            order = ["selfsup", "lightly"] if r % 2 == 0 else ["lightly", "selfsup"]
            for lib in order:
                with tempfile.TemporaryDirectory() as tmp:
                    if lib == "selfsup":
                        seconds, steps, backbone = run_selfsup(method, args.epochs, Path(tmp) / "run")
                    else:
                        seconds, steps, backbone = run_lightly(method, args.epochs)
                rates[lib].append(steps * TRAIN["batch_size"] / seconds)
                accs[lib].append(knn_accuracy(backbone, train_set, val_set))
                steps_of[lib] = steps
        for lib in ("selfsup", "lightly"):
            print(f"| {method} | {lib} | {statistics.median(rates[lib]):.0f} | {statistics.mean(accs[lib]):.4f} | "
                  f"{steps_of[lib]} |")
        ratio = statistics.median(rates["selfsup"]) / statistics.median(rates["lightly"])
        gap = statistics.mean(accs["selfsup"]) - statistics.mean(accs["lightly"])
        print(f"| {method} | selfsup / lightly | {ratio:.2f}x | {gap:+.4f} | |")


if __name__ == "__main__":
    main()
