"""The last step of ``selfsup prepare``: ``manifest.json``, the counts of every step, and the summary."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Manifest:
    documents_in: int = 0
    skipped_files: list[str] = field(default_factory=list)
    skipped_lines: int = 0
    cut_documents: int = 0  # over-long documents cut into pieces of at most max_doc_chars characters
    invalid_unicode_lines: int = 0  # lines whose undecodable bytes or lone surrogates became U+FFFD
    warnings: list[str] = field(default_factory=list)  # the bad-data warnings, with examples (file:line)
    empty_after_cleaning: int = 0
    pii: dict[str, int] = field(default_factory=dict)  # --pii: emails, phones, ips replaced; documents changed
    language: dict[str, Any] = field(default_factory=dict)  # --languages: kept per language, removed, examples
    quality: dict[str, dict[str, Any]] = field(default_factory=dict)  # --quality: per rule (see prepare.quality)
    quality_removed: int = 0  # documents the quality rules removed (the sum of their "removed")
    exact_duplicates: int = 0
    near_duplicates: int = 0
    documents_kept: int = 0
    counterfactual: dict[str, int] = field(default_factory=dict)  # --counterfactual: its counts (train split only)
    splits: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> {"documents", "tokens"}
    tokenizer: str = ""
    vocab_size: int = 0
    dtype: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    def write(self, out: Path) -> Path:
        file = out / "manifest.json"
        file.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return file

    def summary(self) -> str:
        lines = [
            f"documents in: {self.documents_in}"
            + (f" (+{len(self.skipped_files)} unreadable files skipped)" if self.skipped_files else "")
            + (f" ({self.skipped_lines} malformed JSON lines skipped)" if self.skipped_lines else "")
            + (f" ({self.cut_documents} over-long documents cut)" if self.cut_documents else "")
            + (f" ({self.invalid_unicode_lines} lines with invalid Unicode replaced)"
               if self.invalid_unicode_lines else ""),
        ]
        if self.pii:
            lines.append(f"pii replaced: {self.pii['emails']} e-mails, {self.pii['phones']} phone numbers, "
                         f"{self.pii['ips']} IP addresses (in {self.pii['documents']} documents)")
        if self.language:
            kept = ", ".join(f"{lang} {n}" for lang, n in self.language["kept"].items()) or "none"
            other = ", ".join(f"{lang} {n}" for lang, n in self.language["removed_by_language"].items())
            lines.append(f"language: kept {kept}; removed {self.language['removed']}"
                         + (f" ({other}; {self.language['low_score']} below {self.language['min_score']})"
                            if self.language["removed"] else ""))
        if self.quality:
            from selfsup_text.prepare.quality import summary_lines

            lines.append(f"quality: removed {self.quality_removed} documents")
            lines.extend(summary_lines(self.quality))
        lines += [
            f"removed: {self.empty_after_cleaning} empty after cleaning, {self.exact_duplicates} exact duplicates, "
            f"{self.near_duplicates} near duplicates",
            f"kept: {self.documents_kept} documents; tokenizer {self.tokenizer} "
            f"({self.vocab_size} tokens, {self.dtype})",
        ]
        if self.counterfactual:
            lines.append("counterfactual (train): " + ", ".join(f"{k} {v}" for k, v in self.counterfactual.items()))
        for name, counts in self.splits.items():
            lines.append(f"  {name:5s}: {counts['documents']:>9,} documents {counts['tokens']:>13,} tokens")
        return "\n".join(lines)
