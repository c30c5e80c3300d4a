"""selfsup vs lightly: SimCLR, SwAV, BYOL, DINO, Barlow Twins and VICReg on the same backbone, data,
augmentations, batch, epochs and seed.

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

BYOL, DINO, Barlow Twins and VICReg (``--method non-contrastive``) are compared differently, on
identical inputs: the augmented views of every epoch are generated once, by selfsup's
``multi_view`` / ``multi_crop`` augmentations under fixed per-sample seeds, and the same view
tensors, in the same batches, feed both sides. Both sides run the same hand-written loop
(:func:`hand_loop`: AdamW, no decay on biases and norms, warmup + cosine, one teacher update after
each optimizer step); the selfsup side calls the task module itself (``forward``, ``on_step``,
``after_step``, as the training loop does), the lightly side is lightly's heads, losses,
``update_momentum`` / ``cosine_schedule`` and DINO's ``cancel_last_layer_gradients`` written as
lightly's examples write them (one forward per view). So the throughput ratio measures the method
implementations only, not augmentation or data loading.

    .venv/bin/python bench/vs_lightly.py --method non-contrastive --epochs 20 --repeats 2
"""

from __future__ import annotations

import argparse
import copy
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
from selfsup.lib.seeding import sample_generator
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


# The non-contrastive and self-distillation methods: shared view tensors, the same hand-written loop.
TWO_VIEWS = {"type": "multi_view", "options": {"views": 2, "size": 8, "crop_scale": [0.5, 1.0], "flip": 0.0,
                                               "color_jitter": 0.5, "color_jitter_p": 0.8}}
NON_CONTRASTIVE: dict[str, dict[str, Any]] = {
    "byol": {"augment": TWO_VIEWS,
             "task": {"projection_hidden_dim": 256, "projection_dim": 64, "predictor_hidden_dim": 256,
                      "base_momentum": 0.99}},
    "dino": {"augment": {"type": "multi_crop", "options": {"global_crops": 2, "global_size": 8,
                                                           "global_scale": [0.5, 1.0], "local_crops": 4,
                                                           "local_size": 6, "local_scale": [0.3, 0.6], "flip": 0.0,
                                                           "color_jitter": 0.5, "color_jitter_p": 0.8}},
             "task": {"output_dim": 256, "hidden_dim": 256, "bottleneck_dim": 64, "head_batch_norm": True,
                      "student_temp": 0.1, "warmup_teacher_temp": 0.04, "teacher_temp": 0.04,
                      "warmup_teacher_temp_steps": 0, "base_momentum": 0.99, "freeze_last_layer_steps": 20}},
    "barlow_twins": {"augment": TWO_VIEWS,
                     "task": {"projection_hidden_dim": 512, "projection_dim": 512, "projection_layers": 3,
                              "off_diagonal_weight": 5e-3}},
    "vicreg": {"augment": TWO_VIEWS,
               "task": {"projection_hidden_dim": 512, "projection_dim": 512, "projection_layers": 3,
                        "invariance_weight": 25.0, "variance_weight": 25.0, "covariance_weight": 1.0}},
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


# ------------------------------------------------------------------- shared views, one hand-written loop


def shared_batches(method: str, epochs: int, train_set) -> list[dict[str, torch.Tensor]]:
    """Every batch of ``epochs`` epochs, augmented once by selfsup's augmentation: epoch ``e`` shuffles
    with seed ``SEED + e`` (drop_last) and augments sample ``i`` with ``sample_generator(SEED, method,
    e, i)``. The same tensors go to both libraries."""
    registry = get_plugin_manager().registry
    spec = NON_CONTRASTIVE[method]["augment"]
    augment = registry.get("augmentation", spec["type"]).build(spec["options"], BuildContext(name="views"))
    n, b = len(train_set.images), TRAIN["batch_size"]
    out = []
    for epoch in range(epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(SEED + epoch))
        for start in range(0, n - b + 1, b):
            samples = [augment({"image": train_set.images[i]}, sample_generator(SEED, method, epoch, int(i)))
                       for i in order[start : start + b]]
            out.append({k: torch.stack([s[k] for s in samples]) for k in samples[0] if k != "image"})
    return out


def hand_loop(modules: list[torch.nn.Module], batches: list[dict[str, torch.Tensor]], step_fn, *,
              after_backward=None, after_step=None) -> float:
    """The loop both libraries run: ``loss = step_fn(step, batch)``, backward, ``after_backward(step)``,
    AdamW step (no decay on 1-D parameters), warmup + cosine schedule, ``after_step(step + 1, steps)``.
    Returns the seconds it took."""
    from selfsup.recipe import TrainSpec

    steps = len(batches)
    spec = TrainSpec(**TRAIN, max_steps=steps)
    optimizer = torch.optim.AdamW(param_groups(torch.nn.ModuleList(modules), spec.weight_decay), lr=spec.lr)
    scheduler = build_scheduler(optimizer, spec, steps)
    start = time.perf_counter()
    for step, batch in enumerate(batches):
        loss = step_fn(step, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward(step)
        optimizer.step()
        scheduler.step()
        if after_step is not None:
            after_step(step + 1, steps)
        if (step + 1) % 50 == 0:
            loss.item()  # a real loop logs; the same cadence on both sides
    return time.perf_counter() - start


def run_selfsup_task(method: str, batches: list[dict[str, torch.Tensor]]) -> tuple[float, torch.nn.Module]:
    """selfsup's task module in :func:`hand_loop`: ``on_step``, ``forward``, ``after_step`` as the loop calls them."""
    torch.manual_seed(SEED)
    backbone = small_cnn()
    registry = get_plugin_manager().registry
    task = registry.get("pretext_task", method).build(NON_CONTRASTIVE[method]["task"],
                                                      BuildContext(name=method, backbone=backbone))
    backbone.train(), task.train()

    def step_fn(step: int, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if hasattr(task, "on_step"):
            task.on_step(step)
        return task(batch, backbone).loss

    seconds = hand_loop([backbone, task], batches, step_fn, after_step=getattr(task, "after_step", None))
    return seconds, backbone


def run_lightly_method(method: str, batches: list[dict[str, torch.Tensor]]) -> tuple[float, torch.nn.Module]:
    """lightly's modules and losses in :func:`hand_loop`, as lightly's examples use them."""
    from lightly.loss import BarlowTwinsLoss, DINOLoss, NegativeCosineSimilarity, VICRegLoss
    from lightly.models.modules import heads
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.utils.scheduler import cosine_schedule

    torch.manual_seed(SEED)
    backbone = small_cnn()
    d, t = backbone.output_dim, NON_CONTRASTIVE[method]["task"]
    after_backward = after_step = None
    if method in ("barlow_twins", "vicreg"):
        if method == "barlow_twins":
            head = heads.BarlowTwinsProjectionHead(d, t["projection_hidden_dim"], t["projection_dim"])
            criterion = BarlowTwinsLoss(lambda_param=t["off_diagonal_weight"], gather_distributed=False)
        else:
            head = heads.VICRegProjectionHead(d, t["projection_hidden_dim"], t["projection_dim"],
                                              num_layers=t["projection_layers"])
            criterion = VICRegLoss(lambda_param=t["invariance_weight"], mu_param=t["variance_weight"],
                                   nu_param=t["covariance_weight"])
        modules = [backbone, head]

        def step_fn(step, batch):
            x0, x1 = batch["views"].unbind(1)
            return criterion(head(backbone(x0)), head(backbone(x1)))
    elif method == "byol":
        projection = heads.BYOLProjectionHead(d, t["projection_hidden_dim"], t["projection_dim"])
        prediction = heads.BYOLPredictionHead(t["projection_dim"], t["predictor_hidden_dim"], t["projection_dim"])
        online = torch.nn.Sequential(backbone, projection)
        target = copy.deepcopy(online)
        deactivate_requires_grad(target)
        criterion = NegativeCosineSimilarity()
        modules = [backbone, projection, prediction]

        def step_fn(step, batch):
            x0, x1 = batch["views"].unbind(1)
            p0, p1 = prediction(online(x0)), prediction(online(x1))
            with torch.no_grad():
                z0, z1 = target(x0), target(x1)
            return 0.5 * (criterion(p0, z1) + criterion(p1, z0))

        def after_step(step, steps):  # lightly's examples update before the next forward: the same thing
            update_momentum(online, target, m=cosine_schedule(step - 1, steps, t["base_momentum"], 1.0))
    else:  # dino
        dims = (d, t["hidden_dim"], t["bottleneck_dim"], t["output_dim"])
        head = heads.DINOProjectionHead(*dims, batch_norm=t["head_batch_norm"],
                                        freeze_last_layer=t["freeze_last_layer_steps"])
        student = torch.nn.Sequential(backbone, head)
        # as lightly's DINO example: a second head (a weight-normalised layer cannot be deep-copied),
        # here loaded with the student's weights so that both start equal, as in the reference
        teacher = torch.nn.Sequential(copy.deepcopy(backbone), heads.DINOProjectionHead(
            *dims, batch_norm=t["head_batch_norm"]))
        teacher.load_state_dict(student.state_dict())
        deactivate_requires_grad(teacher)
        criterion = DINOLoss(output_dim=t["output_dim"], warmup_teacher_temp=t["warmup_teacher_temp"],
                             teacher_temp=t["teacher_temp"], warmup_teacher_temp_epochs=t["warmup_teacher_temp_steps"],
                             student_temp=t["student_temp"])
        modules = [backbone, head]

        def step_fn(step, batch):
            views = list(batch["global_views"].unbind(1)) + list(batch["local_views"].unbind(1))
            with torch.no_grad():
                teacher_out = [teacher(v) for v in views[:2]]
            student_out = [student(v) for v in views]
            return criterion(teacher_out, student_out, epoch=step)  # the warm-up indexed by optimizer step

        def after_backward(step):
            head.cancel_last_layer_gradients(current_epoch=step)

        def after_step(step, steps):
            update_momentum(student, teacher, m=cosine_schedule(step - 1, steps, t["base_momentum"], 1.0))
    for m in modules:
        m.train()
    return hand_loop(modules, batches, step_fn, after_backward=after_backward, after_step=after_step), backbone


# ------------------------------------------------------------------------------------ main



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=["simclr", "swav", "both", *NON_CONTRASTIVE, "non-contrastive"],
                        default="both", help="both: simclr and swav; non-contrastive: byol, dino, barlow_twins, vicreg "
                                             "(those registered: a task not installed is skipped).")
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
    groups = {"both": ["simclr", "swav"], "non-contrastive": list(NON_CONTRASTIVE)}
    methods = groups.get(args.method, [args.method])
    registered = get_plugin_manager().registry.names("pretext_task")
    for method in [m for m in methods if m not in registered]:
        print(f"({method}: no such task installed, skipped)")
    methods = [m for m in methods if m in registered]
    print(f"| method | library | images/s (median of {args.repeats}) | kNN accuracy | steps |")
    print("| --- | --- | ---: | ---: | ---: |")
    for method in methods:
        rates: dict[str, list[float]] = {"selfsup": [], "lightly": []}
        accs: dict[str, list[float]] = {"selfsup": [], "lightly": []}
        steps_of: dict[str, int] = {}
        batches = shared_batches(method, round(args.epochs), train_set) if method in NON_CONTRASTIVE else None
        for r in range(args.repeats):
            order = ["selfsup", "lightly"] if r % 2 == 0 else ["lightly", "selfsup"]
            for lib in order:
                with tempfile.TemporaryDirectory() as tmp:
                    if batches is not None:
                        run = run_selfsup_task if lib == "selfsup" else run_lightly_method
                        (seconds, backbone), steps = run(method, batches), len(batches)
                    elif lib == "selfsup":
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
