"""Request bodies -> raw inputs (field -> str or bytes), with the service's limits.

Two body types are accepted on ``/v1/embed`` and ``/v1/predict``:

* ``application/json``: ``{"inputs": [{"text": "..."}, ...]}``; a field whose media is ``image``
  or ``audio`` holds the file's bytes base64-encoded, a ``tensor`` field nested numbers. When the
  model reads one field, an input may be given bare: ``{"inputs": ["first text", "second"]}``.
* ``multipart/form-data``: parts named after the fields (``image``, ``audio``, ``text``); each part
  of a field is one input (file uploads for images and audio). With several fields (sentence
  pairs), the i-th part of every field makes input i.

Every problem is a :class:`selfsup.components.BadInput` naming the field (``inputs[2].image``) and
its status: 400 for a body that is not what the content type says, 413 for too large, 415 for an
unknown content type, 422 for inputs that are well-formed but unusable.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any, AsyncIterator, Mapping

from selfsup.components import BadInput

Raw = dict[str, Any]


async def read_body(stream: AsyncIterator[bytes], limit: int, declared: str | None) -> bytes:
    """The body, refused (413) as soon as it passes ``limit`` bytes (or declares it will)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadInput("body", f"{int(declared)} bytes; the service takes at most {limit} (--max-body-mb)", 413)
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise BadInput("body", f"more than {limit} bytes; the service takes at most {limit} (--max-body-mb)", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes, fields: Mapping[str, str], max_inputs: int) -> list[Raw]:
    if not body:
        raise BadInput("body", "empty; send {\"inputs\": [...]}", 400)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput("body", f"not valid JSON: {exc}", 400) from None
    if not isinstance(data, dict) or "inputs" not in data:
        raise BadInput("inputs", "missing: send {\"inputs\": [...]}", 422)
    unknown = sorted(set(data) - {"inputs"})
    if unknown:
        raise BadInput(unknown[0], "unknown field; the body has one field, inputs", 422)
    items = data["inputs"]
    if not isinstance(items, list):
        raise BadInput("inputs", f"must be a list, got {type(items).__name__}", 422)
    _count(len(items), max_inputs)
    return [_item(item, i, fields) for i, item in enumerate(items)]


def _count(n: int, max_inputs: int) -> None:
    if n == 0:
        raise BadInput("inputs", "empty: send at least one input", 422)
    if n > max_inputs:
        raise BadInput("inputs", f"{n} inputs; a request takes at most {max_inputs} (--max-inputs)", 413)


def _item(item: Any, i: int, fields: Mapping[str, str]) -> Raw:
    where = f"inputs[{i}]"
    if not isinstance(item, dict):
        if len(fields) == 1:
            item = {next(iter(fields)): item}
        else:
            raise BadInput(where, f"must be an object with the fields {', '.join(fields)}", 422)
    unknown = sorted(set(item) - set(fields))
    if unknown:
        raise BadInput(f"{where}.{unknown[0]}", f"unknown field; this model reads {', '.join(fields)}", 422)
    raw: Raw = {}
    for name, media in fields.items():
        if name not in item:
            continue  # the decoder says whether it is required
        raw[name] = _value(item[name], media, f"{where}.{name}")
    return raw


def _value(value: Any, media: str, where: str) -> Any:
    if media == "text":
        if not isinstance(value, str):
            raise BadInput(where, f"must be a string, got {type(value).__name__}", 422)
        return value
    if media in ("image", "audio"):
        if not isinstance(value, str):
            raise BadInput(where, f"must be a base64 string of the {media} file's bytes, got {type(value).__name__}",
                           422)
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise BadInput(where, "not valid base64", 422) from None
    if media == "tensor":
        return _numbers(value, where)
    return value


def _numbers(value: Any, where: str, depth: int = 0) -> Any:
    if depth > 8:
        raise BadInput(where, "nested more than 8 levels", 422)
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        raise BadInput(where, f"must be numbers (nested lists), got {type(value).__name__}", 422)
    if isinstance(value, list):
        return [_numbers(v, where, depth + 1) for v in value]
    if not math.isfinite(value):
        raise BadInput(where, "must be finite numbers", 422)
    return value


async def parse_multipart(headers: Any, body: bytes, fields: Mapping[str, str], max_inputs: int) -> list[Raw]:
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def once() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(headers, once(), max_files=max_inputs * max(1, len(fields)),
                                     max_fields=max_inputs * max(1, len(fields))).parse()
    except MultiPartException as exc:
        raise BadInput("body", f"not a valid multipart form: {exc.message}", 400) from None
    unknown = sorted(set(form.keys()) - set(fields))
    if unknown:
        raise BadInput(unknown[0], f"unknown form field; this model reads {', '.join(fields)}", 422)
    parts: dict[str, list[Any]] = {}
    for name, media in fields.items():
        values = []
        for j, part in enumerate(form.getlist(name)):
            where = f"inputs[{j}].{name}"
            if hasattr(part, "read"):  # an UploadFile
                data = await part.read()
                values.append(data.decode("utf-8", errors="replace") if media == "text" else data)
            elif media in ("image", "audio"):
                raise BadInput(where, f"send the {media} as a file upload (a form part with a filename)", 422)
            elif media == "tensor":
                try:
                    values.append(_numbers(json.loads(part), where))
                except json.JSONDecodeError:
                    raise BadInput(where, "must be a JSON list of numbers", 422) from None
            else:
                values.append(part)
        parts[name] = values
    n = max((len(v) for v in parts.values()), default=0)
    _count(n, max_inputs)
    return [{name: values[i] for name, values in parts.items() if i < len(values)} for i in range(n)]
