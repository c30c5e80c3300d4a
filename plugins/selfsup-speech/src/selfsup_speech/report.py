"""selfsup-speech's section of ``selfsup report RUN``: codebook usage of wav2vec2 and HuBERT tasks.

wav2vec2: the code each of the quantizer's groups picks for every frame (eval mode: no Gumbel noise)
over a few batches of the task's data. HuBERT: the cluster its head predicts for every frame (no
masking) beside the k-means targets it was trained against. A codebook in health uses many codes
about equally; a collapsed one puts nearly every frame on a few. Registered by the plugin's
``report_sections`` hook.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from selfsup.report_api import ReportRun, ReportSection

BATCHES = 4
BATCH_SIZE = 16


def sections(run: ReportRun) -> list[ReportSection] | None:
    """One codebook section per wav2vec2 or HuBERT task of the run, else ``None``."""
    keys = run.tasks_of_type("wav2vec2", "hubert")
    return [codebook_section(run, key) for key in keys] or None


def perplexity(counts: np.ndarray) -> float:
    """exp of the entropy of the usage ``counts`` (K for K codes used equally, 1 for one code)."""
    p = counts / max(counts.sum(), 1)
    p = p[p > 0]
    return float(math.exp(-(p * np.log(p)).sum())) if p.size else 0.0


def codebook_section(run: ReportRun, key: str) -> ReportSection:
    """The usage histograms and a table (codes used, perplexity, the most used code's share)."""
    kind = run.task_types()[key]
    usage = wav2vec2_usage(run, key) if kind == "wav2vec2" else hubert_usage(run, key)
    frames = int(next(iter(usage.values())).sum())
    rows = [{"codebook": name, "codes": len(counts), "used": int((counts > 0).sum()),
             "perplexity": perplexity(counts), "most used share": float(counts.max() / max(counts.sum(), 1))}
            for name, counts in usage.items()]
    what = "the quantizer's choice per frame" if kind == "wav2vec2" else "the predicted cluster per frame"
    return ReportSection(
        f"Codebook usage ({key})", figures=[usage_figure(usage)],
        captions=[f"{what}, {frames} frames of data.{run.recipe['tasks'][key]['data']} "
                  f"({run.components.checkpoint.name})"],
        table=rows, note="A healthy codebook spreads frames over many codes (perplexity near the number of "
                         "codes); a collapsed one puts nearly every frame on a few.")


def batches(run: ReportRun, key: str) -> Any:
    """A few collated batches of the task's data on the model's device."""
    import torch

    components = run.components
    task = components.tasks[key]
    samples = run.samples(run.recipe["tasks"][key]["data"], BATCHES * BATCH_SIZE, keys=("audio",))
    for start in range(0, len(samples), BATCH_SIZE):
        batch = task.collate(samples[start:start + BATCH_SIZE])
        yield {k: v.to(components.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def wav2vec2_usage(run: ReportRun, key: str) -> dict[str, np.ndarray]:
    """``{"group g": counts [entries]}``: how often each code of each quantizer group was chosen."""
    import torch

    task, backbone = run.components.tasks[key], run.components.task_backbones[key]
    quantizer = task.quantizer
    counts = np.zeros((quantizer.groups, quantizer.entries), dtype=np.int64)
    with torch.no_grad():
        for batch in batches(run, key):
            z, padding = backbone.latents(batch)  # [B, F, C], [B, F]
            choices = quantizer(task.normalize_latents(z[~padding]), task.temperature())["choices"]  # [N, G]
            for g in range(quantizer.groups):
                counts[g] += np.bincount(choices[:, g].cpu().numpy(), minlength=quantizer.entries)
    return {f"group {g}": counts[g] for g in range(quantizer.groups)}


def hubert_usage(run: ReportRun, key: str) -> dict[str, np.ndarray]:
    """``{"predicted": counts [K], "k-means targets": cluster sizes [K]}``."""
    import torch

    task, backbone = run.components.tasks[key], run.components.task_backbones[key]
    clusters = int(task.cluster_sizes.numel())
    predicted = np.zeros(clusters, dtype=np.int64)
    with torch.no_grad():
        for batch in batches(run, key):
            z, padding = backbone.latents(batch)
            states = backbone.contextualize(z, padding)  # [B, F, D], nothing masked
            chosen = task.logits(states[~padding]).argmax(-1)  # [N]
            predicted += np.bincount(chosen.cpu().numpy(), minlength=clusters)
    return {"predicted": predicted, "k-means targets": task.cluster_sizes.cpu().numpy().astype(np.int64)}


def usage_figure(usage: dict[str, np.ndarray]) -> Any:
    """One bar chart per codebook: the count of each code, by code index (a matplotlib ``Figure``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 2.2 * len(usage)), dpi=90, layout="constrained")
    axes = fig.subplots(len(usage), 1, squeeze=False)[:, 0]
    for ax, (name, counts) in zip(axes, usage.items()):
        ax.bar(np.arange(len(counts)), counts, width=1.0, color="#2459c7")
        ax.set_title(f"{name}: {int((counts > 0).sum())} of {len(counts)} codes used, perplexity "
                     f"{perplexity(counts):.1f}", fontsize=10)
        ax.set_xlim(-0.5, len(counts) - 0.5)
        ax.set_ylabel("frames", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[-1].set_xlabel("code", fontsize=8)
    return fig
