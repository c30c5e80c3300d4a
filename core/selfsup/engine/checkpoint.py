"""Checkpoints you can trust: ``<run>/checkpoints/step-XXXXXXXX/`` with

* ``model.safetensors``: every backbone and task head (the model's ``state_dict``),
* ``state.pt``: optimizer, scheduler, grad scaler, RNG states (per rank), data-stream positions,
* ``meta.json``: step, time, recipe, ``"format": 2`` and ``"files"``: the size and sha256 of the two
  files above, taken as they were written.

Writing: a checkpoint goes into a hidden ``.tmp-step-XXXXXXXX-PID`` folder, is flushed to disk and
renamed into place, so a crash (even ``kill -9``) leaves the earlier checkpoints plus either nothing
or the new, complete one. ``latest`` names the newest written; only the last ``keep`` are kept, and
older ones are pruned only once the new one is complete. A write that fails (disk full, I/O error)
removes its partial files, keeps every earlier checkpoint and raises :class:`CheckpointWriteError`,
which says what failed, how much space the checkpoint needs and how much is free where.

Reading: :func:`find_resumable` picks the newest checkpoint whose files are all present and match the
sizes and hashes in its ``meta.json`` (checkpoints written before hashes existed: present, non-empty,
complete safetensors header and zip directory), and names every damaged newer one, its file and what
is wrong. :func:`clean_temporaries` removes what interrupted writes left behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import shutil
import time
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

PREFIX = "step-"
FORMAT = 2
WEIGHTS, STATE, META = "model.safetensors", "state.pt", "meta.json"
SHARDED = "sharded"  # train.strategy = "fsdp": every rank's shard of the model and optimizer state (DCP)
BEST = "best"  # checkpoints/best: the name of the checkpoint train.best selected
CHUNK = 1 << 20  # bytes hashed at a time

_STEP_DIR = re.compile(r"step-(\d{8})")
_TMP_DIR = re.compile(r"\.(tmp|old)-step-(\d{8})-(\d+)")  # a checkpoint being written / being replaced
_TMP_FILE = re.compile(r"\..+\.tmp-(\d+)")  # a file being written by write_text_atomic
_MAX_HEADER = 100 << 20  # a safetensors header larger than this is not one


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, I/O error); its partial files were removed and
    every earlier checkpoint is kept. ``errno`` is the failed operation's; ``needed``/``free`` are
    bytes (``free`` is ``None`` when unknown); ``kept`` is the newest checkpoint left (or ``None``)."""

    def __init__(self, message: str, *, cause: OSError | None = None, needed: int = 0, free: int | None = None,
                 kept: Path | None = None):
        super().__init__(message)
        self.errno = cause.errno if cause is not None else None
        self.needed, self.free, self.kept = needed, free, kept


class CheckpointReadError(ValueError):
    """A checkpoint file is missing, damaged or unreadable; the message names the file and the problem."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


# ------------------------------------------------------------------------------------------ RNG


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------ writing


def temporary_dir(run_dir: Path, step: int) -> Path:
    """The hidden folder the checkpoint of ``step`` is written into before it is renamed into place."""
    return checkpoint_dir(run_dir) / f".tmp-{PREFIX}{step:08d}-{os.getpid()}"


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, state: dict[str, Any], *, keep: int,
                    meta: dict[str, Any], prepared: Path | None = None) -> Path:
    """Write a complete checkpoint for ``step`` atomically, then prune all but the newest ``keep``;
    returns its path. Raises :class:`CheckpointWriteError` (partial files removed, earlier checkpoints
    and ``latest`` untouched) when the disk refuses a write. ``prepared``: the :func:`temporary_dir`
    other processes already wrote files into (FSDP's ``sharded/``); they are hashed into ``meta.json``."""
    root = checkpoint_dir(run_dir)
    final = root / f"{PREFIX}{step:08d}"
    tmp = prepared or temporary_dir(run_dir, step)
    doing = f"creating {root}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if prepared is None:
            if tmp.exists():
                shutil.rmtree(tmp)
            doing = f"creating {tmp}"
            tmp.mkdir()
        doing = f"writing {WEIGHTS}"
        save_model(model, str(tmp / WEIGHTS))
        with ThreadPoolExecutor(1) as pool:  # hash and sync the weights while the state is written
            weights = pool.submit(_hash_and_sync, tmp / WEIGHTS)
            doing = f"writing {STATE}"
            state_file = _save_state(state, tmp / STATE)
            doing = f"syncing {WEIGHTS}"
            files = {WEIGHTS: weights.result(), STATE: state_file}
        if (tmp / SHARDED).is_dir():
            doing = f"hashing {SHARDED}"
            for file in sorted(p for p in (tmp / SHARDED).rglob("*") if p.is_file()):
                files[file.relative_to(tmp).as_posix()] = _hash_and_sync(file)
            _fsync_dir(tmp / SHARDED)
        doing = f"writing {META}"
        record = {**meta, "step": step, "time": time.time(), "format": FORMAT, "files": files}
        _write_file(tmp / META, json.dumps(record, indent=2).encode())
        doing = f"syncing {tmp}"
        _fsync_dir(tmp)
        doing = f"renaming {tmp.name} to {final.name}"
        _install(tmp, final)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        cause = _os_error(err)
        if cause is None:
            raise
        raise _write_error(run_dir, final, doing, cause, model, state) from err
    try:  # the checkpoint is complete and in place; what follows only records that durably
        _fsync_dir(root)
        write_text_atomic(root / "latest", final.name + "\n")
    except OSError as err:
        warnings.warn(f"{final} is complete, but {root / 'latest'} could not be updated ({err})", stacklevel=2)
    done = [p for p in list_checkpoints(run_dir) if _step(p) <= step]  # never newer leftovers, never this one
    best = _best_name(run_dir)  # the best checkpoint (train.best) is kept beside the newest `keep`
    for old in done[:-keep] if keep > 0 else []:
        if old.name != best:
            shutil.rmtree(old, ignore_errors=True)
    return final


def mark_best(run_dir: Path, path: Path) -> None:
    """Record checkpoint ``path`` as the run's best (``checkpoints/best`` names it); pruning keeps it."""
    write_text_atomic(checkpoint_dir(run_dir) / BEST, Path(path).name + "\n")


def _best_name(run_dir: Path) -> str | None:
    try:
        name = (checkpoint_dir(run_dir) / BEST).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name if _STEP_DIR.fullmatch(name) else None


def best_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``train.best`` selected (``checkpoints/best``), if the run recorded one and it exists."""
    name = _best_name(run_dir)
    path = checkpoint_dir(run_dir) / name if name else None
    return path if path is not None and path.is_dir() else None


def read_weights(path: Path, *, verify: bool = True) -> dict[str, torch.Tensor]:
    """Every tensor of ``model.safetensors`` in checkpoint ``path`` (checked against ``meta.json`` first)."""
    from safetensors.torch import load_file

    file = _verified(path, WEIGHTS, verify)
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as err:
        raise CheckpointReadError(f"{file}: cannot be loaded ({_first_line(err)})") from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a flushed ``.NAME.tmp-PID`` file renamed over it; on failure
    the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        _write_file(tmp, text.encode("utf-8"))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_write_text_atomic = write_text_atomic  # the name used before it was public


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through, and keeps the
    :class:`OSError` of a failed write (``torch.save`` hides it behind its own RuntimeError)."""

    def __init__(self, fh: Any):
        self.fh, self.sha, self.bytes, self.error = fh, hashlib.sha256(), 0, None

    def write(self, data: Any) -> int:
        try:
            written = self.fh.write(data)
        except OSError as err:
            self.error = err
            raise
        self.sha.update(data)
        self.bytes += len(memoryview(data).cast("B"))
        return written

    def flush(self) -> None:
        try:
            self.fh.flush()
        except OSError as err:
            self.error = err
            raise


def _hash_and_sync(path: Path) -> dict[str, Any]:
    """Size and sha256 of a file just written (read back in 1 MiB chunks), and flush it to disk."""
    sha, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
        os.fsync(fh.fileno())
    return {"sha256": sha.hexdigest(), "bytes": size}


def _save_state(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """``state.pt``, hashed while it is written."""
    with open(path, "wb") as fh:
        writer = _HashingWriter(fh)
        try:
            torch.save(state, writer)
            writer.flush()
            os.fsync(fh.fileno())
        except Exception as err:
            if writer.error is not None and writer.error is not err:
                raise writer.error from err
            raise
    return {"sha256": writer.sha.hexdigest(), "bytes": writer.bytes}


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):  # file systems that cannot sync folders
            raise
    finally:
        os.close(fd)


def _install(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``. A checkpoint already there (the same step saved again) is moved
    aside first and removed only once the new one is in place."""
    if not final.exists():
        os.rename(tmp, final)
        return
    aside = final.with_name(f".old-{final.name}-{os.getpid()}")
    if aside.exists():
        shutil.rmtree(aside)
    os.rename(final, aside)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(aside, final)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _os_error(err: BaseException) -> OSError | None:
    """The operating-system error behind ``err``: itself, or the ``os error N`` that safetensors (Rust)
    writes into its message. ``None`` for anything else (a bug is re-raised as it is)."""
    if isinstance(err, OSError):
        return err
    if isinstance(err, SafetensorError):
        found = re.search(r"os error (\d+)", str(err))
        if found:
            code = int(found.group(1))
            return OSError(code, os.strerror(code))
    return None


def _write_error(run_dir: Path, final: Path, doing: str, cause: OSError, model: torch.nn.Module,
                 state: dict[str, Any]) -> CheckpointWriteError:
    """What failed, how much space the checkpoint needs, how much is free where, and what is kept."""
    root = checkpoint_dir(run_dir)
    reason = cause.strerror or str(cause) or type(cause).__name__
    code = f" ({errno.errorcode[cause.errno]})" if cause.errno in errno.errorcode else ""
    needed = _tensor_bytes(model.state_dict()) + _tensor_bytes(state) + (64 << 10)
    free, where = _free_space(root)
    space = (f"{_human(free)} are free in {root} (file system mounted at {where})" if free is not None
             else f"the free space in {root} is unknown")
    kept = next(iter(reversed(list_checkpoints(run_dir))), None)
    keeps = (f"the last good checkpoint, {kept.name}, is kept" if kept is not None
             else "no earlier checkpoint exists")
    message = (f"checkpoint {final.name} could not be written: {doing} failed: {reason}{code}. "
               f"It needs about {_human(needed)}; {space}. Its partial files were removed and {keeps}; "
               f"free some space, then resume.")
    return CheckpointWriteError(message, cause=cause, needed=needed, free=free, kept=kept)


def _tensor_bytes(obj: Any) -> int:
    """Bytes of every tensor in a nested structure, plus a little per tensor for the file's layout."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size() + 64
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _free_space(folder: Path) -> tuple[int | None, Path]:
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return None, existing
    mount = existing.resolve()
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    return free, mount


def _human(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value, unit = float(size), "bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024:
            break
    return f"{value:.1f} {unit}"


# ------------------------------------------------------------------------------------------ finding


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders (``step-`` + 8 digits), oldest first, intact or not: use :func:`find_resumable`
    for the one to load. Temporary folders and other names (``step-00000010.bak``) are ignored."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if _STEP_DIR.fullmatch(p.name) and p.is_dir()]
    return sorted(done, key=_step)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint folder (not verified; see :func:`find_resumable`)."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def find_resumable(run_dir: Path) -> tuple[Path | None, list[str]]:
    """The newest intact checkpoint (``None`` if there is none) and one line per damaged newer one,
    naming the checkpoint, the file and what is wrong, e.g. ``checkpoints/step-00000020/model.safetensors:
    sha256 mismatch (file changed after it was written); using step-00000010``."""
    damaged = []
    for path in reversed(list_checkpoints(run_dir)):
        problems = verify_checkpoint(path)
        if not problems:
            return path, [f"{line}; using {path.name}" for line in damaged]
        where = f"{checkpoint_dir(run_dir).name}/{path.name}"
        damaged.append(", ".join(f"{where}/{problem}" for problem in problems))
    return None, [f"{line}; no intact checkpoint is left" for line in damaged]


def verify_checkpoint(path: Path) -> list[str]:
    """Problems found in checkpoint ``path`` as ``"FILE: what is wrong"`` (empty: intact). Files are
    checked against the sizes and sha256 in ``meta.json``; a checkpoint written before those were
    recorded is checked for presence, non-zero size and complete safetensors / zip structure."""
    path = Path(path)
    meta, problem = _read_meta(path)
    problems = [f"{META}: {problem}"] if problem else []
    listed = meta.get("files") if meta is not None else None
    if meta is not None and "files" in meta and not isinstance(listed, dict):
        problems.append(f"{META}: 'files' is not a table of file sizes and hashes")
    names = [WEIGHTS, STATE]
    if isinstance(listed, dict):  # a sharded checkpoint also lists every shard file
        names += sorted(n for n in listed if isinstance(n, str) and n.startswith(f"{SHARDED}/") and ".." not in n)
    for name in names:
        if isinstance(listed, dict):
            found = _file_problem(path / name, listed.get(name)) if name in listed else f"not listed in {META}"
        else:
            found = _legacy_problem(path / name)
        if found:
            problems.append(f"{name}: {found}")
    return problems


def _read_meta(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        raw = (path / META).read_bytes()
    except FileNotFoundError:
        return None, "missing"
    except OSError as err:
        return None, f"cannot be read ({err.strerror or err})"
    if not raw:
        return None, "empty (0 bytes)"
    try:
        meta = json.loads(raw)
    except ValueError as err:
        return None, f"unreadable ({_first_line(err)})"
    if not isinstance(meta, dict):
        return None, f"unreadable (a JSON {type(meta).__name__}, not an object)"
    return meta, None


def _file_problem(file: Path, expected: Any) -> str | None:
    """What is wrong with ``file`` against its ``{"sha256", "bytes"}`` entry in meta.json, or ``None``."""
    if not (isinstance(expected, dict) and isinstance(expected.get("sha256"), str)
            and isinstance(expected.get("bytes"), int)):
        return f"its entry in {META} is not {{sha256, bytes}}"
    try:
        st = file.stat()
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    want = expected["bytes"]
    if st.st_size == 0 and want:
        return f"empty (0 bytes; {want} were written)"
    if st.st_size < want:
        return f"truncated ({st.st_size} of {want} bytes)"
    if st.st_size > want:
        return f"{st.st_size} bytes, but {want} were written"
    try:
        digest = _sha256(file, st)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if digest != expected["sha256"]:
        return "sha256 mismatch (file changed after it was written)"
    return None


_HASHED: dict[tuple[int, int, int, int, int], str] = {}  # (dev, inode, size, mtime, ctime) -> sha256


def _sha256(file: Path, st: os.stat_result) -> str:
    """The file's sha256, remembered while its identity, size and times stay the same (verifying
    before loading does not read a large file twice)."""
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _HASHED:
        sha = hashlib.sha256()
        with open(file, "rb") as fh:
            while chunk := fh.read(CHUNK):
                sha.update(chunk)
        _HASHED[key] = sha.hexdigest()
    return _HASHED[key]


def _legacy_problem(file: Path) -> str | None:
    """Checks for a file without a recorded hash: present, non-empty, structurally complete."""
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if size == 0:
        return "empty (0 bytes)"
    try:
        if file.name == WEIGHTS:
            _, problem = _safetensors_header(file)
            return problem
        if not zipfile.is_zipfile(file):
            return "truncated or not a torch.save file (no zip directory at its end)"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    return None


def _safetensors_header(file: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The safetensors header of ``file`` (tensor name -> dtype, shape, offsets), or what is wrong with it."""
    size = file.stat().st_size
    with open(file, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return None, f"truncated ({size} bytes, not even a header)"
        length = int.from_bytes(head, "little")
        if length > min(size - 8, _MAX_HEADER):
            return None, f"truncated or not a safetensors file (a {length}-byte header in a {size}-byte file)"
        try:
            header = json.loads(fh.read(length))
            ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return None, "unreadable header (not a safetensors file)"
    expected = 8 + length + max(ends, default=0)
    if size < expected:
        return None, f"truncated ({size} of {expected} bytes)"
    if size > expected:
        return None, f"{size - expected} unexpected bytes after the tensor data"
    return header, None


# ------------------------------------------------------------------------------------------ loading


def load_weights(path: Path, model: torch.nn.Module, *, verify: bool = True) -> None:
    """Load ``model.safetensors`` of checkpoint ``path`` into ``model`` (strict). With ``verify`` the
    file is first checked against ``meta.json``. Errors name the file: :class:`CheckpointReadError`
    for a damaged one, ValueError for names or shapes that differ from the model's."""
    file = _verified(path, WEIGHTS, verify)
    try:
        header, problem = _safetensors_header(file)
    except OSError as err:
        header, problem = None, f"cannot be read ({err.strerror or err})"
    if problem:
        raise CheckpointReadError(f"{file}: {problem}")
    own = model.state_dict()
    try:
        # through load_state_dict, so modules that size buffers from the checkpoint (HuBERT's targets) can
        missing, unexpected = load_model(model, str(file), strict=False)
    except (SafetensorError, OSError, RuntimeError) as err:
        wrong = [f"{name} is {tuple(spec['shape'])} in the checkpoint but {tuple(own[name].shape)} in the model"
                 for name, spec in header.items() if name in own and tuple(spec["shape"]) != tuple(own[name].shape)]
        if isinstance(err, RuntimeError) and "size mismatch" in str(err) and wrong:
            more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
            raise ValueError(f"{file} does not match the recipe's model: {'; '.join(wrong[:3])}{more}") from None
        raise CheckpointReadError(f"{file}: cannot be loaded ({_first_line(err)})") from None
    if missing or unexpected:
        raise ValueError(
            f"{file} does not match the recipe's model: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )


def load_state(path: Path, *, verify: bool = True) -> dict[str, Any]:
    """``state.pt`` of checkpoint ``path`` (checked against ``meta.json`` first with ``verify``);
    a damaged or unreadable file raises :class:`CheckpointReadError` naming it."""
    file = _verified(path, STATE, verify)
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointReadError(f"{file}: missing") from None
    except Exception as err:  # torch reports damage as RuntimeError, UnpicklingError, EOFError, ...
        raise CheckpointReadError(f"{file}: not a readable torch.save file ({_first_line(err)})") from None


def _verified(path: Path, name: str, verify: bool) -> Path:
    """``path / name``, after checking it against ``meta.json`` when ``verify`` (CheckpointReadError if damaged)."""
    file = Path(path) / name
    problem = _problem_of(Path(path), name) if verify else None
    if problem:
        raise CheckpointReadError(f"{file}: {problem}")
    return file


def _problem_of(path: Path, name: str) -> str | None:
    """One file's problem: against its meta.json entry when there is one, else the structural checks."""
    meta, _ = _read_meta(path)
    listed = meta.get("files") if meta is not None else None
    if isinstance(listed, dict) and name in listed:
        return _file_problem(path / name, listed[name])
    return _legacy_problem(path / name)


def _first_line(err: BaseException) -> str:
    """An error's first line without C++ source locations (``[enforce fail at inline_container.cc:…]``)."""
    text = next((line for line in str(err).splitlines() if line.strip()), "")
    text = re.sub(r"\[enforce fail at [^\]]*\]\s*\.?\s*", "", text)
    text = re.sub(r"\S+\.(?:cc|cpp|h|hpp|rs):\d+\S*", "", text).strip(" .:")
    name = type(err).__name__
    return f"{name}: {text[:200]}" if text else name


# ------------------------------------------------------------------------------------------ cleanup


def clean_temporaries(run_dir: Path) -> list[Path]:
    """Remove what interrupted writes left: ``.tmp-step-*-PID`` folders in the checkpoints folder and
    ``.NAME.tmp-PID`` files there and in the run folder, whose process is gone (or is this one). A
    ``.old-step-*-PID`` folder (a checkpoint being replaced by a save of the same step) is put back
    if its replacement never arrived and it is intact, else removed. Returns what was removed."""
    removed: list[Path] = []
    root = checkpoint_dir(run_dir)
    for folder in (root, Path(run_dir)):
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.is_symlink():
                continue
            found = _TMP_DIR.fullmatch(entry.name) if folder == root else None
            if found and entry.is_dir() and _gone(int(found.group(3))):
                final = root / f"{PREFIX}{found.group(2)}"
                if found.group(1) == "old" and not final.exists() and not verify_checkpoint(entry):
                    os.rename(entry, final)
                    warnings.warn(f"{final} was restored (a save of the same step was interrupted)", stacklevel=2)
                    continue
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
                continue
            found = _TMP_FILE.fullmatch(entry.name)
            if found and entry.is_file() and _gone(int(found.group(1))):
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


def _gone(pid: int) -> bool:
    """True if no live process has ``pid`` (or it is this process, whose own leftovers are stale)."""
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists but belongs to someone else
        return False
    return False


def _step(path: Path) -> int:
    return int(path.name[len(PREFIX):])
