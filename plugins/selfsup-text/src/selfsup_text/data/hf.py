"""``hf_dataset``: a Hugging Face ``datasets`` dataset from local disk (never the hub).

Either ``path``, a folder written by ``Dataset.save_to_disk``/``DatasetDict.save_to_disk`` (read with
``datasets.load_from_disk``; ``hf_split`` picks the split of a DatasetDict), or ``builder`` (``json``,
``csv``, ``parquet`` or ``text``) with local ``data_files`` (read with ``datasets.load_dataset``).
``text_field`` is the text column (the ``text`` builder names it ``text``); ``label_field`` an
optional integer or string label column. Needs ``pip install 'selfsup-text[datasets]'``.

Bad data (``source.bad_files``, a :class:`selfsup.lib.BadFiles`, warned once when built): rows
whose text is missing or not a string are skipped and counted; a text longer than ``max_doc_chars``
is cut into several documents, each with the row's label (counted as ``cut``). Arrow strings are
valid UTF-8, so there is no bad Unicode to replace.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from selfsup.components import BuildContext
from selfsup.lib import BadFiles
from selfsup_text.data.base import TextSource, tokenizer_for
from selfsup_text.data.jsonl import encode_labels
from selfsup_text.data.reading import cut_text


def _datasets():
    try:
        import datasets
    except ImportError:
        raise ImportError(
            "the hf_dataset data source needs the 'datasets' package: pip install 'selfsup-text[datasets]'"
        ) from None
    return datasets


def _local_files(patterns: list[str], base_dir: Path) -> list[str]:
    files: list[str] = []
    for entry in patterns:
        path = Path(entry).expanduser()
        path = path if path.is_absolute() else base_dir / path
        matches = sorted(glob.glob(str(path), recursive=True)) if any(c in entry for c in "*?[") else [str(path)]
        matches = [m for m in matches if Path(m).is_file()]
        if not matches:
            raise FileNotFoundError(f"hf_dataset: no local file matches {entry!r} (in {base_dir})")
        files.extend(matches)
    return files


def load(options: Any, base_dir: Path):
    """The ``datasets.Dataset`` named by the options."""
    datasets = _datasets()
    if options.path is not None:
        data = datasets.load_from_disk(str(options.path))
        if isinstance(data, datasets.DatasetDict):
            if options.hf_split not in data:
                raise KeyError(f"hf_dataset: {options.path} has splits {list(data)}, not {options.hf_split!r}")
            data = data[options.hf_split]
        return data
    files = _local_files(options.data_files, base_dir)
    return datasets.load_dataset(options.builder, data_files={options.hf_split: files}, split=options.hf_split)


def checked_texts(column: list[Any], labels: list[Any] | None, limit: int, bad: BadFiles, where: str):
    """``(texts, labels)``: rows without a string text dropped (counted as skipped), texts longer than
    ``limit`` characters cut into several rows with the same label (counted as cut)."""
    texts, kept = [], []
    for row, text in enumerate(column):
        if not isinstance(text, str):
            bad.record(f"{where} row {row}", f"text is {type(text).__name__}, not a string")
            continue
        pieces = [text] if len(text) <= limit else cut_text(text, limit)
        if len(pieces) > 1:
            bad.note("cut", f"{where} row {row}", f"a text of {len(text):,} characters cut into {len(pieces)}")
        texts += pieces
        kept += [row] * len(pieces)
    return texts, None if labels is None else [labels[row] for row in kept]


def build(options: Any, context: BuildContext) -> TextSource:
    data = load(options, Path(context.base_dir))
    for field in (options.text_field, options.label_field):
        if field is not None and field not in data.column_names:
            raise KeyError(f"hf_dataset: no column {field!r}; columns: {data.column_names}")
    where = str(options.path) if options.path is not None else ", ".join(options.data_files)
    bad = BadFiles("hf_dataset", "skip", what="row", max_doc_chars=options.max_doc_chars)
    values = list(data[options.label_field]) if options.label_field is not None else None
    texts, values = checked_texts(data[options.text_field], values, options.max_doc_chars, bad, where)
    bad.warn(f"({where})")
    labels = names = None
    if values is not None:
        feature = data.features[options.label_field]
        labels, names = encode_labels(values)
        if names is None and hasattr(feature, "names"):  # a ClassLabel column
            names = list(feature.names)
    source = TextSource(texts, tokenizer_for(options, context), options, labels=labels, label_names=names)
    source.bad_files = bad
    return source
