"""The ``selfsup audit`` command: social-bias measurements of a text model (docs/bias.md).

Example::

    selfsup audit runs/clm-quickstart                       # likelihood pairs (+ SEAT), gender
    selfsup audit path/to/minilm --method seat --attributes gender,control --out audit-minilm
    selfsup audit runs/mlm-quickstart --extra religion.toml --attributes gender,religion --json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def add_command(cli: click.Group) -> None:
    """Register ``audit`` on the ``selfsup`` command group."""
    cli.add_command(audit)


@click.command("audit")
@click.argument("model", metavar="RUN_OR_EXPORT", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--method", type=click.Choice(["crows", "seat", "all"]), default="all", show_default=True,
              help="crows: likelihood of minimally different sentence pairs (decoders, masked LMs); seat: "
              "embedding association tests; all: every method the model allows.")
@click.option("--attributes", default="gender", show_default=True,
              help="Comma-separated attributes: gender, control (WEAT 1, a sanity check), or those of --extra.")
@click.option("--extra", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="TOML/JSON file adding templates, word pairs, attributes or WEAT tests.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap and permutations.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder. Default: RUN/audit for a run directory, else ./audit-<folder name>.")
@click.option("--bootstrap", type=click.IntRange(100, 1_000_000), default=2000, show_default=True,
              help="Bootstrap resamples of the intervals.")
@click.option("--permutations", type=click.IntRange(10_000, 100_000_000), default=100_000, show_default=True,
              help="Monte Carlo permutations when the exact WEAT test is too large.")
@click.option("--decoder-prefix", type=click.Choice(["eos", "none"]), default="eos", show_default=True,
              help="Decoders: score sentences after the end-of-text token, or from their first token.")
@click.option("--pooling", type=click.Choice(["auto", "mean", "cls", "last"]), default="auto", show_default=True,
              help="Sentence embedding for SEAT.")
@click.option("--device", default="cpu", show_default=True, help="Torch device.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (without the per-pair scores).")
def audit(model, method, attributes, extra, seed, out, bootstrap, permutations, decoder_prefix, pooling, device,
          as_json) -> None:
    """Measure social bias of a text model: CrowS-Pairs-style likelihood differences and SEAT/WEAT.

    RUN_OR_EXPORT is a run directory (text `transformer` backbone), a `selfsup export` folder
    (selfsup or hf format) or a local transformers folder. Writes audit.json, audit.md and audit.png.
    """
    from pydantic import ValidationError

    from selfsup_text.audit.options import AuditOptions
    from selfsup_text.audit.pipeline import run_audit
    from selfsup_text.audit.report import markdown, write_report

    try:
        options = AuditOptions(method=method, attributes=[a.strip() for a in attributes.split(",") if a.strip()],
                               extra=extra, seed=seed, bootstrap=bootstrap, permutations=permutations,
                               decoder_prefix=decoder_prefix, pooling=pooling, device=device)
        result = run_audit(model, options)
    except (ValidationError, ValueError, FileNotFoundError) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    if out is None:
        out = model / "audit" if (model / "recipe.json").is_file() else Path(f"audit-{model.resolve().name}")
    files = write_report(result, out)
    if as_json:
        click.echo(json.dumps({k: v for k, v in result.items() if k != "pairs"}, indent=2))
    else:
        click.echo(markdown(result))
    click.echo(f"wrote {', '.join(str(p) for p in files.values())}", err=as_json)
