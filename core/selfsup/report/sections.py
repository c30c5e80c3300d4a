"""Plugin sections of a run report: the ``report_sections`` hook, called plugin by plugin.

A plugin whose implementation raises, returns something that is not a list of
:class:`~selfsup.report_api.ReportSection`, or gives a figure that cannot be rendered gets a section
saying ``section failed: ...`` (and a warning on stderr); the other plugins' sections and the rest
of the report are unaffected.
"""

from __future__ import annotations

import warnings
from typing import Any

from selfsup.plugins import PluginWarning
from selfsup.report import html
from selfsup.report.figures import png
from selfsup.report_api import ReportRun, ReportSection

Section = tuple[str, list[str], str]  # (title, body parts, source plugin)


def plugin_sections(pm: Any, run: ReportRun) -> list[Section]:
    """Every plugin's sections for ``run``, rendered, in plugin load order."""
    out: list[Section] = []
    for result in pm.collect("report_sections", run=run):
        source = f"plugin {result.plugin}"
        if result.error is not None:
            out.append(failed(result.plugin, result.error))
            continue
        value = result.value
        if value is None:
            continue
        items = [value] if isinstance(value, ReportSection) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(s, ReportSection) for s in items):
            problem = f"returned {type(value).__name__}, not a list of selfsup.report_api.ReportSection"
            warnings.warn(f"selfsup plugin {result.plugin!r}: report_sections {problem}", PluginWarning, stacklevel=2)
            out.append(failed(result.plugin, problem))
            continue
        for item in items:
            try:
                out.append((str(item.title), render(item), source))
            except Exception as exc:  # noqa: BLE001 - one bad figure must not lose the report
                message = f"{item.title}: {type(exc).__name__}: {exc}"
                warnings.warn(f"selfsup plugin {result.plugin!r}: report section {message}", PluginWarning,
                              stacklevel=2)
                out.append(failed(result.plugin, message))
    return out


def render(section: ReportSection) -> list[str]:
    """The HTML parts of one section: note, figures with their captions, table."""
    parts: list[str] = []
    if section.note:
        parts.append(html.paragraph(section.note))
    captions = list(section.captions)
    for index, figure in enumerate(section.figures):
        caption = captions[index] if index < len(captions) else ""
        parts.append(html.figure(png(figure), caption, alt=caption or section.title))
    if section.table:
        parts.append(html.table([dict(row) for row in section.table]))
    return parts


def failed(plugin: str, message: str) -> Section:
    """The section that stands in for a plugin's failed one."""
    return (f"{plugin}: section failed", [html.paragraph(f"section failed: {message}", "failed")], f"plugin {plugin}")
