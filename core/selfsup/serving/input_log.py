"""Opt-in logging of served inputs (``--log-inputs DIR``), as data selfsup can train on again.

The folder is a valid data source for the served model's modality, so production data can
continue pre-training (``selfsup train RECIPE --resume-weights-only`` with the folder as data):

* text fields: ``texts-NNNNNN.jsonl``, one ``{"text": ..., "time": ...}`` object per input (the text
  plugin's ``jsonl`` source; a pair model also writes ``text_pair``);
* image and audio fields: one file per input under ``images/`` or ``audio/``, named by time and a
  counter (the ``image_folder`` / ``audio_folder`` sources; the bytes are kept as uploaded, the
  suffix from the file's magic bytes);
* tensor fields: ``tensors-NNNNNN.jsonl``.

The total size is capped (``--log-max-mb``): past the cap, the oldest files are deleted first
(rotation); a JSONL file is closed for a new one at a tenth of the cap. Writes happen in the
request's decoding thread under a lock; a failed write (disk full) is logged once and skips the
input log, never the request.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("selfsup.serve")
_lock = threading.Lock()
_counter = itertools.count()
_failed = False

MAGIC = ((b"\x89PNG", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp"), (b"RIFF", ".wav"),
         (b"fLaC", ".flac"), (b"OggS", ".ogg"), (b"ID3", ".mp3"))


def suffix(data: bytes, media: str) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    for magic, ext in MAGIC:
        if data.startswith(magic):
            return ext
    return ".bin" if media == "image" else ".audio"


def log_inputs(config: Any, loaded: Any, raws: list[dict[str, Any]]) -> None:
    global _failed
    root = Path(config.log_inputs)
    cap = int(config.log_max_mb * 2**20)
    fields = loaded.decoder.fields
    try:
        with _lock:
            root.mkdir(parents=True, exist_ok=True)
            now = time.time()
            lines: dict[str, list[str]] = {}
            for raw in raws:
                record: dict[str, Any] = {}
                for name, value in raw.items():
                    media = fields.get(name)
                    if media in ("image", "audio"):
                        folder = root / ("images" if media == "image" else "audio")
                        folder.mkdir(exist_ok=True)
                        path = folder / f"{int(now * 1000):013d}-{next(_counter):06d}{suffix(value, media)}"
                        path.write_bytes(value)
                    else:
                        record[name] = value
                if record:
                    kind = "texts" if all(fields.get(k) == "text" for k in record) else "tensors"
                    record["time"] = now
                    lines.setdefault(kind, []).append(json.dumps(record, ensure_ascii=False))
            for kind, text in lines.items():
                with _current(root, kind, cap).open("a", encoding="utf-8", errors="replace") as f:
                    f.write("\n".join(text) + "\n")
            _rotate(root, cap)
    except OSError as exc:
        if not _failed:
            log.warning("the input log at %s could not be written (%s); inputs are served but not logged", root, exc)
            _failed = True


def _current(root: Path, kind: str, cap: int) -> Path:
    files = sorted(root.glob(f"{kind}-*.jsonl"))
    if files and files[-1].stat().st_size < max(1, cap // 10):
        return files[-1]
    number = int(files[-1].stem.rsplit("-", 1)[-1]) + 1 if files else 0
    return root / f"{kind}-{number:06d}.jsonl"


def _rotate(root: Path, cap: int) -> None:
    files = [p for p in root.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    for path in sorted(files, key=lambda p: p.stat().st_mtime_ns):
        if total <= cap:
            break
        total -= path.stat().st_size
        path.unlink(missing_ok=True)
