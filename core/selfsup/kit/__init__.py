"""The plugin kit: ``selfsup plugin new NAME --modality M`` writes a complete third-party plugin project.

The project's files are templates shipped in ``selfsup/kit/template``: ``common/`` (packaging, README,
CI) and one folder per modality of :data:`MODALITIES` (the package with its example components and
recipe, and its tests), merged into one project in the layout of the first-party plugins.
Rendering is plain string replacement of ``{{key}}`` placeholders (no code is evaluated); in paths,
a ``dot-`` prefix becomes ``.`` (``dot-github`` -> ``.github``, kept out of sight of packaging tools)
and ``.tmpl`` is dropped (so template ``.py`` files are never imported or collected by the core's tools).
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from selfsup import __version__

if TYPE_CHECKING:  # pragma: no cover
    from importlib.resources.abc import Traversable

#: Plugin names the kit refuses: the core's own and the first-party plugins' entry points.
RESERVED = frozenset({"core", "text", "vision", "speech", "multimodal", "toy"})
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class KitError(ValueError):
    """A bad name or modality, or a target directory that exists (without ``force``)."""


@dataclass(frozen=True)
class Modality:
    """What ``--modality`` changes: the example the project holds, and the words that describe it."""

    description: str  #: pyproject's description
    sibling: str | None  #: the first-party plugin whose data, backbones and evaluators the example uses
    about: str  #: README: what the example is
    components: tuple[tuple[str, str, str], ...]  #: README table rows: (kind, name, where)
    train_time: str  #: README: how long the example recipe trains on a CPU
    learning_check: str  #: README: what tests/test_example_recipe.py checks


#: The modalities the kit has an example for (``--modality``; ``vector`` is the default).
MODALITIES: dict[str, Modality] = {
    "vector": Modality(
        description="A selfsup plugin: the SCARF pretext task on a generated vector data source.",
        sibling=None,
        about="Its example is SCARF (Bahri et al., ICLR 2022) on clusters generated from a seed, with the core's "
        "`mlp` backbone and `knn` evaluator: it needs nothing but selfsup and torch.",
        components=(
            ("data source", "{{name}}_clusters", "`data/clusters.py`: labelled clusters generated from a seed"),
            ("pretext task", "{{name}}_scarf",
             "`tasks/scarf.py`: SCARF, contrastive learning with random feature corruption"),
            ("recipe", "{{name}}-example", "`recipes/{{name}}-example.toml`: both, with the core's `mlp` and `knn`"),
        ),
        train_time="seconds on a CPU",
        learning_check="held-out kNN accuracy beats the same network at its random initialisation",
    ),
    "vision": Modality(
        description="A selfsup plugin: the VICReg pretext task on images, with selfsup-vision's data and backbones.",
        sibling="selfsup-vision",
        about="Its example is VICReg (Bardes, Ponce and LeCun, ICLR 2022) on selfsup-vision's `digits`, with its "
        "`multi_view` augmentation and `small_cnn` backbone, which the recipe names by their registered names.",
        components=(
            ("pretext task", "{{name}}_vicreg",
             "`tasks/vicreg.py`: VICReg, variance-invariance-covariance regularisation of two views"),
            ("recipe", "{{name}}-example",
             "`recipes/{{name}}-example.toml`: on selfsup-vision's `digits` with its `small_cnn`, kNN-evaluated"),
        ),
        train_time="about ten seconds on a CPU",
        learning_check="held-out kNN accuracy beats the same network at its random initialisation",
    ),
    "text": Modality(
        description="A selfsup plugin: a replaced-token pretext task on text, with selfsup-text's data and backbone.",
        sibling="selfsup-text",
        about="Its example is replaced-token prediction (the random-replacement corruption of BERT, Devlin et al., "
        "NAACL 2019, without [MASK] tokens) on selfsup-text's `embedded_corpus` with its `transformer` encoder.",
        components=(
            ("pretext task", "{{name}}_replaced_tokens",
             "`tasks/replaced_tokens.py`: predict the original of randomly replaced tokens"),
            ("recipe", "{{name}}-example", "`recipes/{{name}}-example.toml`: on selfsup-text's `embedded_corpus` with "
             "a small BERT-style `transformer`, evaluated by `mlm_accuracy`"),
        ),
        train_time="about half a minute on a CPU",
        learning_check="held-out masked-token accuracy and loss beat the same network at its random initialisation",
    ),
    "speech": Modality(
        description="A selfsup plugin: the CPC pretext task on speech, with selfsup-speech's data and encoders.",
        sibling="selfsup-speech",
        about="Its example is Contrastive Predictive Coding (van den Oord, Li and Vinyals, 2018) on "
        "selfsup-speech's synthesized keywords (`synth_speech`) with its unidirectional `logmel_encoder`.",
        components=(
            ("pretext task", "{{name}}_cpc",
             "`tasks/cpc.py`: CPC, InfoNCE between predicted and actual future frames"),
            ("recipe", "{{name}}-example", "`recipes/{{name}}-example.toml`: on selfsup-speech's `synth_speech` with "
             "its `logmel_encoder`, evaluated by its keyword probe"),
        ),
        train_time="about twenty seconds on a CPU (the first run also synthesizes the keywords)",
        learning_check="the keyword probe on held-out voices beats the same network at its random initialisation",
    ),
}


def supported_range(version: str = __version__) -> str:
    """The core versions a new plugin declares: this core's minor series, ``">=0.1,<0.2"`` for 0.1.x."""
    major, minor = (int(part) for part in re.findall(r"\d+", version)[:2])
    return f">={major}.{minor},<{major}.{minor + 1}"


def check_name(name: str) -> str:
    """``name`` if it can be a plugin name, entry point and package suffix; else :class:`KitError`."""
    if name.lower().startswith(("selfsup-", "selfsup_")):
        raise KitError(f"pass the name without the 'selfsup-' prefix: {name[8:]!r} makes selfsup-{name[8:]}")
    if not NAME_PATTERN.match(name):
        hint = re.sub(r"[^a-z0-9_]", "_", name.lower()).strip("_")
        suggestion = f" (e.g. {hint!r})" if hint and NAME_PATTERN.match(hint) else ""
        raise KitError(f"plugin name {name!r} must be lowercase letters, digits and '_', starting with a letter, "
                       f"at most 40 characters{suggestion}")
    if keyword.iskeyword(name) or name in RESERVED:
        raise KitError(f"plugin name {name!r} is reserved; choose a name specific to your project")
    return name


def check_modality(modality: str) -> Modality:
    """The kit's example for ``modality``; :class:`KitError` listing the choices for any other."""
    if modality not in MODALITIES:
        raise KitError(f"the kit has no example for modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    return MODALITIES[modality]


@dataclass(frozen=True)
class Plan:
    """What :func:`new_plugin` writes: the project directory and each file's text, by relative path."""

    root: Path
    files: dict[str, str]


def _walk(node: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    out: list[tuple[str, Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        rel = f"{prefix}{child.name}"
        out += _walk(child, rel + "/") if child.is_dir() else [(rel, child)]
    return out


def render(text: str, values: dict[str, str]) -> str:
    """Replace each ``{{key}}`` of ``values`` in ``text`` (others, like GitHub's ``${{ x }}``, stay)."""
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def values_for(name: str, modality: str = "vector") -> dict[str, str]:
    """The ``{{key}}`` placeholders of plugin ``name``'s project for ``modality``."""
    m = check_modality(modality)
    core_range = supported_range()
    dependencies = [f"selfsup{core_range}", *([f"{m.sibling}{core_range}"] if m.sibling else []), "torch>=2.4"]
    rows = "\n".join(f"| {kind} | `{comp}` | {where} |" for kind, comp, where in m.components)
    return {
        "name": name,
        "package": f"selfsup_{name}",
        "distribution": f"selfsup-{name}",
        "modality": modality,
        "core_range": core_range,
        "core_version": __version__,
        "description": m.description,
        "dependencies": ", ".join(f'"{d}"' for d in dependencies),
        "about": m.about,
        "components": render(rows, {"name": name}),
        "install_note": f"; pulls in {m.sibling}" if m.sibling else "",
        "train_time": m.train_time,
        "learning_check": m.learning_check,
    }


def plan(name: str, directory: str | Path = ".", *, modality: str = "vector") -> Plan:
    """The files of plugin ``name`` in ``directory/selfsup-<name>`` (nothing is written): the kit's
    ``common`` templates and those of ``modality``."""
    check_name(name)
    values = values_for(name, modality)
    template = resources.files("selfsup.kit").joinpath("template")
    files = {}
    for part in ("common", modality):
        for rel, node in _walk(template.joinpath(part)):
            if not rel.endswith(".tmpl"):
                continue
            path = "/".join("." + p[4:] if p.startswith("dot-") else p for p in rel[: -len(".tmpl")].split("/"))
            files[render(path, values)] = render(node.read_text(encoding="utf-8"), values)
    return Plan(Path(directory) / f"selfsup-{name}", dict(sorted(files.items())))


def new_plugin(name: str, directory: str | Path = ".", *, modality: str = "vector", force: bool = False) -> Plan:
    """Write plugin ``name``'s project to ``directory/selfsup-<name>`` and return what was written.
    An existing project directory is an error unless ``force`` (then the kit's files are overwritten
    and any other file is left alone)."""
    result = plan(name, directory, modality=modality)
    if result.root.exists() and not force:
        raise KitError(f"{result.root} already exists; pass --force to overwrite the kit's files in it")
    for rel, text in result.files.items():
        target = result.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return result
