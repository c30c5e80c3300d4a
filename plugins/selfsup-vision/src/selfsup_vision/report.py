"""selfsup-vision's sections of ``selfsup report RUN``: a t-SNE of the trained backbone's features on
held-out images, and, for a run with an ``mae`` task, its reconstructions of masked images
(original / masked / reconstructed). Registered by the plugin's ``report_sections`` hook."""

from __future__ import annotations

from typing import Any

import numpy as np

from selfsup.report_api import ReportRun, ReportSection

TASKS = ("simclr", "mae", "deepcluster", "swav")
DATA = ("digits", "mnist5k", "image_folder", "webdataset")
TSNE_POINTS = 500
MAE_IMAGES = 8


def sections(run: ReportRun) -> list[ReportSection] | None:
    """The sections for an image run (an image task or data source), else ``None``."""
    images = [key for key, kind in run.data_types().items() if kind in DATA]
    if not images and not run.tasks_of_type(*TASKS):
        return None
    out = [embedding_section(run, images)]
    out += [mae_section(run, key) for key in run.tasks_of_type("mae")]
    return out


def held_out(run: ReportRun, images: list[str]) -> str:
    """The image data an evaluator scores on (held out), else the first image data of the recipe."""
    for spec in (run.recipe.get("evaluators") or {}).values():
        if spec.get("data") in images:
            return spec["data"]
    if images:
        return images[0]
    return next(iter((run.recipe.get("tasks") or {}).values()))["data"]


def embedding_section(run: ReportRun, images: list[str]) -> ReportSection:
    """t-SNE of the trained backbone's features, coloured by label (the embedding_plot evaluator's picture)."""
    from selfsup_vision.evaluators.embedding_plot import tsne_figure

    key = held_out(run, images)
    samples = run.samples(key, TSNE_POINTS, keys=("image", "label"))
    features = run.model.embed([{"image": s["image"]} for s in samples]).numpy()
    labels = np.array([int(s["label"]) for s in samples]) if all("label" in s for s in samples) else None
    checkpoint = run.components.checkpoint.name
    fig, trust = tsne_figure(features, labels, f"t-SNE of the trained backbone on data.{key}", max_points=TSNE_POINTS)
    return ReportSection("Embedding (t-SNE)", figures=[fig],
                         captions=[f"{len(samples)} images of data.{key}, features of {checkpoint}; "
                                   f"trustworthiness {trust:.3f} (1 = neighbourhoods kept)"])


def mae_section(run: ReportRun, key: str) -> ReportSection:
    """Original, masked and reconstructed images of MAE task ``key`` (masked patches pasted in)."""
    images, masked, recon, error = mae_reconstructions(run, key)
    rows = [("original", images), ("masked", masked), ("reconstruction", recon),
            ("reconstruction + visible", np.where(np.isnan(masked), recon, images))]
    return ReportSection(
        f"MAE reconstructions ({key})", figures=[image_grid(rows)],
        captions=[f"{len(images)} images of data.{run.recipe['tasks'][key]['data']}, checkpoint "
                  f"{run.components.checkpoint.name}; masked patches in red"],
        note=f"Mean squared error on the masked patches, in pixels: {error:.4g} (mask ratio "
             f"{run.components.tasks[key].mask_ratio:g}).")


def mae_reconstructions(run: ReportRun, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(images, masked, reconstructed)`` ``[N, H, W, C]`` arrays (masked pixels NaN) and the
    pixel-space error on the masked patches, with a fixed mask seed and the global RNG left as it was."""
    import torch
    import torch.nn.functional as F

    from selfsup_vision.tasks.mae import NORM_PIX_EPS, masked_mse, patchify, unpatchify

    components = run.components
    task, backbone = components.tasks[key], components.task_backbones[key]
    samples = run.samples(run.recipe["tasks"][key]["data"], MAE_IMAGES, keys=("image",))
    imgs = torch.stack([torch.as_tensor(s["image"]) for s in samples]).float().to(components.device)
    size = (task.grid[0] * task.patch, task.grid[1] * task.patch)
    if tuple(imgs.shape[-2:]) != size:  # the task saw images resized by augmentations
        imgs = F.interpolate(imgs, size=size, mode="bilinear", align_corners=False)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        latent, mask, ids_restore = task.encode(backbone.model, imgs)
        pred = task.decode(latent, ids_restore, backbone.model.num_prefix_tokens).float()  # [N, L, p*p*C]
        pixels = patchify(imgs, task.patch)
        if task.norm_pix_loss:  # predictions are per-patch normalised pixels
            mean, var = pixels.mean(-1, keepdim=True), pixels.var(-1, keepdim=True)
            pred = pred * (var + NORM_PIX_EPS) ** 0.5 + mean
        error = float(masked_mse(pred, pixels, mask))
        hidden = unpatchify(mask[:, :, None].expand_as(pixels), task.patch, task.grid) > 0.5  # [N, C, H, W]
        recon = unpatchify(pred, task.patch, task.grid)

    def hwc(x: Any) -> np.ndarray:
        return x.permute(0, 2, 3, 1).cpu().numpy()

    images = hwc(imgs)
    masked = np.where(hwc(hidden), np.nan, images)
    return images, masked, hwc(recon), error


def image_grid(rows: list[tuple[str, np.ndarray]]) -> Any:
    """A matplotlib ``Figure``: one row of images a ``(label, [N, H, W, C])``, each image scaled by the
    first row's range; NaN pixels are drawn red."""
    import matplotlib
    from matplotlib.figure import Figure

    reference = rows[0][1]
    count = reference.shape[0]
    fig = Figure(figsize=(1.3 * count + 1.2, 1.35 * len(rows)), dpi=100, layout="constrained")
    axes = fig.subplots(len(rows), count, squeeze=False)
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="#d94c4c")
    for r, (label, batch) in enumerate(rows):
        for i in range(count):
            low, high = np.nanmin(reference[i]), np.nanmax(reference[i])
            image = np.clip((batch[i] - low) / max(high - low, 1e-8), 0, 1)
            ax = axes[r, i]
            if image.shape[-1] == 1:
                ax.imshow(np.ma.masked_invalid(image[..., 0]), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(np.where(np.isnan(image), np.array([0.85, 0.3, 0.3]), image), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(label, fontsize=8)
    return fig
