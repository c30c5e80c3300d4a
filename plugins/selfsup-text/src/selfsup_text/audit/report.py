"""The audit's report: ``audit.json`` (everything, every pair's scores), ``audit.md`` (the tables) and
``audit.png`` (each score with its interval). matplotlib is imported only to draw the plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

CAVEAT = ("Small English template sets and binary group lists; likelihood and association scores have known "
          "validity problems (Blodgett et al. 2021). A score near 0.5 (pairs) or 0 (effect size) is not evidence "
          "that the model has no bias. See docs/bias.md.")


def _ci(values: list[float], digits: int = 3) -> str:
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return "n/a"
    return f"[{values[0]:.{digits}f}, {values[1]:.{digits}f}]"


def _p(value: float) -> str:
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def markdown(result: dict[str, Any]) -> str:
    """The report's tables as Markdown."""
    model = result["model"]
    options = result["options"]
    lines = [f"# Bias audit: {model['source']}", "",
             f"Model: {model['kind']} ({model['family']}, {model['parameters']:,} parameters). "
             f"Seed {options['seed']}, {options['bootstrap']} bootstrap resamples, "
             f"{round(100 * options['confidence'])}% percentile intervals.", ""]
    if result["crows"]:
        lines += ["## Sentence pairs (likelihood)", "",
                  "Stereotype preference: share of pairs whose stereotypical sentence the model scores higher "
                  "(0.5 = none). Mean difference: stereotypical minus anti-stereotypical score, nats. Intervals: "
                  "bootstrap over templates.", "",
                  "| attribute | measure | pairs | stereotype preference | interval | mean difference | interval "
                  "| first group preferred |",
                  "| --- | --- | ---: | ---: | --- | ---: | --- | ---: |"]
        for row in result["crows"]:
            lines.append(
                f"| {row['attribute']} | {row['measure']} | {row['pairs']} | {row['stereotype_preference']:.3f} "
                f"| {_ci(row['stereotype_preference_ci'])} | {row['mean_difference']:+.3f} "
                f"| {_ci(row['mean_difference_ci'])} | {row['group_preference']:.3f} ({row['groups'][0]}) |")
        lines.append("")
    if result["seat"]:
        lines += ["## Embedding association (SEAT)", "",
                  "Effect size d > 0: X goes with A and Y with B. p: one-sided permutation test over words "
                  "(exact when all partitions were enumerated).", "",
                  "| test | X / Y | A / B | effect size | interval | p | p (two-sided) | test |",
                  "| --- | --- | --- | ---: | --- | ---: | ---: | --- |"]
        for row in result["seat"]:
            sets = row["sets"]
            kind = "exact" if row["exact"] else f"{row['permutation_samples']:,} permutations"
            lines.append(f"| {row['title']} | {sets['X']} / {sets['Y']} | {sets['A']} / {sets['B']} "
                         f"| {row['effect_size']:+.3f} | {_ci(row['effect_size_ci'])} | {_p(row['p'])} "
                         f"| {_p(row['p_two_sided'])} | {kind} |")
        lines.append("")
    for skipped in result["skipped"]:
        what = skipped["method"] + (f" ({skipped['attribute']})" if "attribute" in skipped else "")
        lines.append(f"Not measured: {what}: {skipped['reason']}.")
    if result["skipped"]:
        lines.append("")
    lines += [CAVEAT, ""]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> Path | None:
    """``audit.png``: the pair scores and effect sizes with their intervals; None when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in ("crows", "seat") if result[p]]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 0.6 * max(len(result[p]) for p in panels) + 2),
                             squeeze=False)
    for ax, panel in zip(axes[0], panels):
        rows = result[panel]
        if panel == "crows":
            labels = [f"{r['attribute']}: {r['measure']}" for r in rows]
            values = [r["stereotype_preference"] for r in rows]
            cis = [r["stereotype_preference_ci"] for r in rows]
            ax.axvline(0.5, color="grey", lw=1, ls="--")
            ax.set_xlabel("stereotype preference (share of pairs; 0.5 = none)")
            ax.set_xlim(0, 1)
        else:
            labels = [r["title"] for r in rows]
            values = [r["effect_size"] for r in rows]
            cis = [r["effect_size_ci"] for r in rows]
            ax.axvline(0.0, color="grey", lw=1, ls="--")
            ax.set_xlabel("WEAT effect size d")
        ys = list(range(len(rows)))[::-1]
        low = [v - c[0] if not math.isnan(c[0]) else 0 for v, c in zip(values, cis)]
        high = [c[1] - v if not math.isnan(c[1]) else 0 for v, c in zip(values, cis)]
        ax.errorbar(values, ys, xerr=[low, high], fmt="o", capsize=4)
        ax.set_yticks(ys)
        ax.set_yticklabels(labels)
        ax.set_title("sentence pairs" if panel == "crows" else "embedding association")
    fig.suptitle(f"bias audit: {Path(result['model']['source']).name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(result: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write ``audit.json``, ``audit.md`` and ``audit.png`` (when there are scores) to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "audit.json", "markdown": out / "audit.md"}
    files["json"].write_text(json.dumps(result, indent=1))
    files["markdown"].write_text(markdown(result))
    png = plot(result, out / "audit.png")
    if png is not None:
        files["plot"] = png
    return files
