"""Generate the component reference pages from the registry, so they cannot drift from the code.

    python -m selfsup.docgen --out docs/components          # write docs/components/<page>.md
    python -m selfsup.docgen --out docs/components --check  # exit 1 naming the pages that differ

One page per first-party distribution (``core``, ``vision``, ``text``, ``speech``, ``multimodal``,
``video``),
listing every component it registers, by kind: its summary, the sample keys it yields, reads and
feeds (:mod:`selfsup.contract`), and every option with its type, default and description.
Components of other installed plugins are left out, so the pages depend only on this repository.
Imports no torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from selfsup.describe import component_info, default_text, description_text
from selfsup.registry import KINDS, LABEL_OF_KIND, TABLE_OF_KIND, Registry

#: Page name -> the distribution whose components it lists.
PAGES: dict[str, str] = {
    "core": "selfsup",
    "vision": "selfsup-vision",
    "text": "selfsup-text",
    "speech": "selfsup-speech",
    "multimodal": "selfsup-multimodal",
    "video": "selfsup-video",
}
COMMAND = "python -m selfsup.docgen --out docs/components"

#: How each declaration reads on the page.
_VERBS = {"produces": "Yields", "consumes": "Reads", "feeds": "Feeds its backbone(s)"}
_AUGMENTATION_VERBS = {"produces": "Writes", "consumes": "Reads"}
_FEEDBACK_VERBS = {"produces": "Adds to the samples", "consumes": "Reads"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _component(info: dict[str, Any], kind: str) -> list[str]:
    lines = [f"### `{info['name']}`", ""]
    if info["summary"]:
        lines += [info["summary"], ""]
    verbs = {"augmentation": _AUGMENTATION_VERBS, "feedback": _FEEDBACK_VERBS}.get(kind, _VERBS)
    for what, keys in info["keys"].items():
        if keys is None:
            lines.append(f"- {verbs[what]}: undeclared (not checked)")
        elif keys:
            lines.append(f"- {verbs[what]}: " + ", ".join(f"`{k}: {v}`" for k, v in keys.items()))
        else:
            lines.append(f"- {verbs[what]}: " + ("no key's type changes" if what == "produces" else "nothing"))
    if kind != "recipe":
        if info["options"]:
            lines += ["", f"Options (`{info['options_model']}`):", "", "| option | type | default | description |",
                      "|---|---|---|---|"]
            lines += [f"| `{r['name']}` | `{_cell(r['type'])}` | `{_cell(default_text(r))}` | "
                      f"{_cell(description_text(r))} |" for r in info["options"]]
        else:
            lines += ["", "No options."]
    return lines + [""]


def render_page(page: str, registry: Registry, plugins: dict[str, Any] | None = None) -> str:
    """The Markdown of one page (see :data:`PAGES`)."""
    distribution = PAGES[page]
    title = "Core built-in" if page == "core" else page.capitalize()
    lines = [
        f"<!-- Generated from the registry by `{COMMAND}`: do not edit by hand. -->",
        "",
        f"# {title} components ({distribution})",
        "",
        "Every component the distribution registers, by recipe table: what it does, the sample keys it",
        "yields and reads (the spec language is in [writing-plugins.md](../writing-plugins.md#sample-keys)),",
        "and its options. `selfsup describe KIND NAME` prints the same for any installed component.",
        "",
    ]
    for kind in KINDS:
        comps = [c for c in (registry.get(kind, n) for n in registry.names(kind)) if c.distribution == distribution]
        if not comps:
            continue
        where = {"head": "`head` of a `finetune` task", "feedback": "`[rounds.feedback]`"}.get(
            kind, f"`[{TABLE_OF_KIND[kind]}.*]`")
        lines += [f"## {LABEL_OF_KIND[kind].capitalize()}s ({where})", ""]
        if kind == "recipe":
            lines += ["| recipe | summary |", "|---|---|"]
            lines += [f"| `{c.name}` | {_cell(c.summary)} |" for c in comps]
            lines.append("")
            continue
        for comp in comps:
            lines += _component(component_info(comp, plugins), kind)
    return "\n".join(lines).rstrip() + "\n"


def render_pages(registry: Registry, plugins: dict[str, Any] | None = None) -> dict[str, str]:
    """``{file name: Markdown}`` of every page."""
    return {f"{page}.md": render_page(page, registry, plugins) for page in PAGES}


def stale_pages(out: Path, pages: dict[str, str]) -> list[str]:
    """The pages whose file in ``out`` is missing or differs from ``pages``."""
    return [name for name, text in pages.items()
            if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m selfsup.docgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="Folder of the pages (docs/components).")
    parser.add_argument("--check", action="store_true", help="Write nothing; exit 1 if a page is stale.")
    args = parser.parse_args(argv)
    from selfsup.plugins import PluginManager

    pm = PluginManager()
    pages = render_pages(pm.registry, pm.infos)
    if args.check:
        stale = stale_pages(args.out, pages)
        if stale:
            print(f"stale in {args.out}: {', '.join(stale)}; regenerate with `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in pages.items():
        (args.out / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(pages)} pages to {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
