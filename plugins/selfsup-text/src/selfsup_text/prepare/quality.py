"""The quality-filter step of ``selfsup prepare``: Gopher's rules, then C4's, with every removal counted.

The rules themselves are in :mod:`.gopher` (Rae et al. 2021, Appendix A.1.1 and Table A1) and
:mod:`.c4` (Raffel et al. 2020, §2.2). Run together (``--quality gopher+c4``) they go in that order,
as in FineWeb's pipeline (Penedo et al. 2024: Gopher repetition and quality filters, then C4's):
Gopher judges the page as it came, then C4 drops lines and judges what is left.

Counting: every document is checked against every enabled rule. ``would_fail`` counts the documents
failing a rule whatever else they fail; ``removed`` gives each removed document to the first rule it
fails, in the fixed order of :func:`rule_order` (Gopher's quality rules, Gopher's repetition rules,
C4's page rules), so the ``removed`` counts add up to the documents the step removed. Line rules count
``lines_removed`` and the ``documents`` that lost lines, in the documents kept. Each rule keeps up to 3
examples (the first 200 characters of a removed document, or the removed line; a ``c4_bad_words``
example starts with the word or phrase found, in brackets).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from selfsup.options import Options
from selfsup_text.prepare import c4 as c4_rules
from selfsup_text.prepare import gopher as gopher_rules
from selfsup_text.prepare.c4 import C4Options
from selfsup_text.prepare.gopher import GopherOptions

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

#: ``--quality`` choices -> (Gopher on, C4 on).
CHOICES = {"none": (False, False), "gopher": (True, False), "c4": (False, True), "gopher+c4": (True, True)}
EXAMPLES = 3
EXCERPT = 200


class QualityOptions(Options):
    """The rule-based quality filters of ``selfsup prepare``: a TOML file with ``[gopher]`` and ``[c4]``
    tables sets any threshold (``--quality-config``)."""

    gopher: GopherOptions = Field(default_factory=GopherOptions,
                                         description="Gopher's quality and repetition rules (Rae et al. 2021).")
    c4: C4Options = Field(default_factory=C4Options, description="C4's line and page rules (Raffel et al. "
                             "2020).")

    @property
    def enabled(self) -> bool:
        return self.gopher.enabled or self.c4.enabled

    def named(self) -> str:
        """The ``--quality`` choice these options amount to."""
        on = [name for name, group in (("gopher", self.gopher), ("c4", self.c4)) if group.enabled]
        return "+".join(on) or "none"


def rule_order(options: QualityOptions) -> list[str]:
    """The document rules of the enabled groups, in the order they are checked."""
    return [*(gopher_rules.RULES if options.gopher.enabled else ()),
            *(c4_rules.PAGE_RULES if options.c4.enabled else ())]


# ---------------------------------------------------------------------------------------- options


def load_quality_config(path: str | Path) -> QualityOptions:
    """Options from a TOML file (``[gopher]``/``[c4]`` tables of thresholds); a path inside it (``bad_words_file``)
    is relative to the file. Errors name the file, the field and the nearest known field."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"--quality-config: cannot read {file}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--quality-config {file}: invalid TOML: {exc}") from None
    try:
        return QualityOptions.model_validate(data, context={"base_dir": file.resolve().parent})
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise ValueError(f"--quality-config {file}: {problems}") from None


def _problem(error: dict[str, Any]) -> str:
    loc = [str(part) for part in error["loc"]]
    where = ".".join(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        known = _fields(loc[:-1])
        near = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.5)
        hint = f"; did you mean {near[0]!r}?" if near else f"; known: {', '.join(known)}"
        return f"{where}: unknown field{hint}"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    shown = "" if isinstance(value, dict) or value is None else f" (got {value!r})"
    return f"{where}: {message}{shown}"


def _fields(loc: list[str]) -> list[str]:
    model: type[BaseModel] = QualityOptions
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def resolve_quality(choice: str | None, config: str | Path | None = None) -> tuple[QualityOptions, list[str]]:
    """The options ``--quality`` and ``--quality-config`` ask for, and warnings. ``choice`` (a key of
    :data:`CHOICES`) turns the groups on or off; without it the file's ``enabled`` values count (off by
    default). A file that sets thresholds of a group left off gets a warning, not silence."""
    if choice is not None and choice not in CHOICES:
        near = difflib.get_close_matches(choice, list(CHOICES), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ValueError(f"--quality must be one of {', '.join(CHOICES)}, got {choice!r}{hint}")
    options = load_quality_config(config) if config is not None else QualityOptions()
    if choice is not None:
        on_gopher, on_c4 = CHOICES[choice]
        options = options.model_copy(update={
            "gopher": options.gopher.model_copy(update={"enabled": on_gopher}),
            "c4": options.c4.model_copy(update={"enabled": on_c4}),
        })
    warnings = []
    for name in ("gopher", "c4"):
        group = getattr(options, name)
        changed = sorted(k for k in group.model_fields_set if k != "enabled")
        if changed and not group.enabled:
            warnings.append(f"--quality-config sets {name} thresholds ({', '.join(changed)}) but {name} is off "
                            f"(use --quality {name} or gopher+c4)")
    return options, warnings


# ---------------------------------------------------------------------------------------- the step


def quality_filter(texts: list[str], options: QualityOptions) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The documents the enabled rules keep (C4's line rules applied) and, per rule, what it did:
    document rules ``{"removed", "would_fail", "examples"}``, C4's line rules ``{"lines_removed",
    "documents", "examples"}`` and ``c4_citations`` ``{"markers_removed", "documents"}``."""
    report: dict[str, dict[str, Any]] = {
        rule: {"removed": 0, "would_fail": 0, "examples": []} for rule in rule_order(options)}
    if options.c4.enabled:
        for rule in c4_rules.LINE_RULES:
            report[rule] = {"lines_removed": 0, "documents": 0, "examples": []}
        report["c4_citations"] = {"markers_removed": 0, "documents": 0}
    if not options.enabled:
        return list(texts), {}
    bad_words = None
    if options.c4.enabled and options.c4.bad_words:
        bad_words = c4_rules.load_bad_words(options.c4.bad_words_file)
    kept = []
    for text in texts:
        failures = gopher_rules.gopher_failures(text, options.gopher) if options.gopher.enabled else []
        cleaned = c4_rules.c4_clean(text, options.c4, bad_words) if options.c4.enabled else None
        if cleaned is not None:
            failures += cleaned.failures
        for rule in failures:
            report[rule]["would_fail"] += 1
        if failures:
            first = report[failures[0]]
            first["removed"] += 1
            if len(first["examples"]) < EXAMPLES:
                found = cleaned.bad_word if failures[0] == "c4_bad_words" and cleaned is not None else None
                first["examples"].append((f"[{found}] " if found else "") + text[:EXCERPT])
            continue
        if cleaned is not None:
            for rule, lines in cleaned.removed_lines.items():
                entry = report[rule]
                entry["lines_removed"] += len(lines)
                entry["documents"] += 1
                entry["examples"].extend(line[:EXCERPT] for line in lines[: EXAMPLES - len(entry["examples"])])
            report["c4_citations"]["markers_removed"] += cleaned.citations
            report["c4_citations"]["documents"] += cleaned.citations > 0
            text = cleaned.text
        kept.append(text)
    return kept, report


def removed_total(report: dict[str, dict[str, Any]]) -> int:
    """The documents the step removed (the ``removed`` counts of the document rules)."""
    return sum(entry.get("removed", 0) for entry in report.values())


def summary_lines(report: dict[str, dict[str, Any]]) -> list[str]:
    """Lines for the printed summary: each rule that removed or would remove something."""
    lines = []
    for rule, entry in report.items():
        if "removed" in entry and (entry["removed"] or entry["would_fail"]):
            lines.append(f"  {rule}: {entry['removed']} removed ({entry['would_fail']} fail it)")
        elif entry.get("lines_removed"):
            lines.append(f"  {rule}: {entry['lines_removed']} lines removed from {entry['documents']} documents")
        elif entry.get("markers_removed"):
            lines.append(f"  {rule}: {entry['markers_removed']} citation markers removed")
    return lines
