"""Damaged checkpoints, leftovers and full disks: the newest intact checkpoint is found and every
damaged newer one is named with its file and problem; a failed write says why, how much space it
needs and where, removes its partial files and keeps the earlier checkpoints. Tiny modules only."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch
from diskfull import fill, small_tmpfs
from safetensors import SafetensorError
from torch import nn

from selfsup.engine import checkpoint as ckpt


def _model(seed: int = 0, width: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, width), nn.BatchNorm1d(width), nn.Linear(width, 2))


def _state(step: int, extra: int = 16) -> dict:
    return {"step": step, "optimizer": {"exp_avg": torch.randn(extra)}, "rng": [ckpt.rng_state()]}


def _save(run, step: int, *, keep: int = 5, model: nn.Module | None = None, state: dict | None = None):
    return ckpt.save_checkpoint(run, step, model or _model(step), state or _state(step), keep=keep,
                                meta={"recipe": "faults"})


def _two(tmp_path):
    """A run with an intact step-00000010 and a newest step-00000020 (for the test to damage)."""
    run = tmp_path / "run"
    return run, _save(run, 10), _save(run, 20)


def _tensor_data_middle(file) -> int:
    """The offset of the middle of a safetensors file's tensor data (past its header)."""
    raw = file.read_bytes()
    start = 8 + int.from_bytes(raw[:8], "little")
    return (start + len(raw)) // 2


def _garble(file, offset: int, count: int = 16) -> None:
    raw = bytearray(file.read_bytes())
    raw[offset:offset + count] = bytes(b ^ 0xA5 for b in raw[offset:offset + count])
    size = file.stat().st_size
    file.write_bytes(bytes(raw))
    assert file.stat().st_size == size


def _truncate(file) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


DAMAGE = {
    "weights-truncated": ("model.safetensors", _truncate, "truncated"),
    "state-truncated": ("state.pt", _truncate, "truncated"),
    "weights-empty": ("model.safetensors", lambda f: f.write_bytes(b""), "empty (0 bytes"),
    "state-empty": ("state.pt", lambda f: f.write_bytes(b""), "empty (0 bytes"),
    "weights-missing": ("model.safetensors", lambda f: f.unlink(), "missing"),
    "state-missing": ("state.pt", lambda f: f.unlink(), "missing"),
    "weights-garbled": ("model.safetensors", lambda f: _garble(f, _tensor_data_middle(f)), "sha256 mismatch"),
    "state-garbled": ("state.pt", lambda f: _garble(f, f.stat().st_size // 2), "sha256 mismatch"),
    "meta-missing": ("meta.json", lambda f: f.unlink(), "missing"),
    "meta-garbled": ("meta.json", lambda f: f.write_bytes(b'{"step": 20, "files": {'), "unreadable"),
    "meta-empty": ("meta.json", lambda f: f.write_bytes(b""), "empty"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, case):
    name, damage, what = DAMAGE[case]
    run, good, newest = _two(tmp_path)
    damage(newest / name)

    found, warnings = ckpt.find_resumable(run)

    assert found == good
    assert len(warnings) == 1, warnings
    line = warnings[0]
    assert line.startswith(f"checkpoints/step-00000020/{name}: "), line
    assert what in line and line.endswith("; using step-00000010"), line
    assert ckpt.verify_checkpoint(good) == []


def test_garbled_tensor_bytes_are_refused_on_load(tmp_path):
    """Same size, different bytes: the hash catches what a size or header check cannot."""
    run, good, newest = _two(tmp_path)
    file = newest / "model.safetensors"
    _garble(file, _tensor_data_middle(file))
    assert ckpt._legacy_problem(file) is None, "the damage must be invisible without the hash"
    with pytest.raises(ckpt.CheckpointReadError, match="step-00000020/model.safetensors: sha256 mismatch"):
        ckpt.load_weights(newest, _model())
    _garble(newest / "state.pt", (newest / "state.pt").stat().st_size // 2)
    with pytest.raises(ckpt.CheckpointReadError, match="step-00000020/state.pt: sha256 mismatch"):
        ckpt.load_state(newest)
    fresh = _model(99)
    ckpt.load_weights(good, fresh)  # the intact one still loads
    assert torch.equal(fresh[0].weight, _model(10)[0].weight)


def test_every_damaged_newer_checkpoint_is_named(tmp_path):
    run, good, newest = _two(tmp_path)
    third = _save(run, 30)
    (newest / "state.pt").unlink()
    _truncate(third / "model.safetensors")
    (third / "state.pt").write_bytes(b"")
    found, warnings = ckpt.find_resumable(run)
    assert found == good
    assert warnings == [
        f"checkpoints/step-00000030/model.safetensors: truncated ({(third / 'model.safetensors').stat().st_size} "
        f"of {json.loads((third / 'meta.json').read_text())['files']['model.safetensors']['bytes']} bytes), "
        f"checkpoints/step-00000030/state.pt: empty (0 bytes; "
        f"{json.loads((third / 'meta.json').read_text())['files']['state.pt']['bytes']} were written); "
        f"using step-00000010",
        "checkpoints/step-00000020/state.pt: missing; using step-00000010",
    ]


def test_no_intact_checkpoint_is_reported(tmp_path):
    run = tmp_path / "run"
    only = _save(run, 10)
    (only / "model.safetensors").write_bytes(b"")
    found, warnings = ckpt.find_resumable(run)
    assert found is None
    assert warnings == ["checkpoints/step-00000010/model.safetensors: empty (0 bytes; "
                        f"{json.loads((only / 'meta.json').read_text())['files']['model.safetensors']['bytes']} "
                        "were written); no intact checkpoint is left"]


def test_meta_records_size_and_sha256_of_every_file(tmp_path):
    path = _save(tmp_path / "run", 10)
    meta = json.loads((path / "meta.json").read_text())
    assert meta["format"] == 2 and meta["step"] == 10 and meta["recipe"] == "faults"
    assert sorted(meta["files"]) == ["model.safetensors", "state.pt"]
    for name, entry in meta["files"].items():
        raw = (path / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}


def test_checkpoints_without_hashes_are_checked_for_presence_size_and_structure(tmp_path):
    """Checkpoints written before ``files`` was recorded still load, and damage is still found."""
    run, good, newest = _two(tmp_path)
    for path in (good, newest):
        meta = json.loads((path / "meta.json").read_text())
        del meta["files"], meta["format"]
        (path / "meta.json").write_text(json.dumps(meta))
    assert ckpt.find_resumable(run) == (newest, [])
    ckpt.load_weights(newest, _model())
    assert ckpt.load_state(newest)["step"] == 20

    _truncate(newest / "state.pt")
    found, warnings = ckpt.find_resumable(run)
    assert found == good
    assert warnings == ["checkpoints/step-00000020/state.pt: truncated or not a torch.save file "
                        "(no zip directory at its end); using step-00000010"]
    _truncate(newest / "model.safetensors")
    assert "checkpoints/step-00000020/model.safetensors: truncated" in ckpt.find_resumable(run)[1][0]


def test_load_errors_name_the_file_without_library_internals(tmp_path):
    run, good, newest = _two(tmp_path)
    _truncate(newest / "state.pt")
    _truncate(newest / "model.safetensors")
    for verify in (True, False):  # also when the caller skips the check against meta.json
        with pytest.raises(ckpt.CheckpointReadError) as err:
            ckpt.load_state(newest, verify=verify)
        assert str(err.value).startswith(str(newest / "state.pt") + ": ")
        assert "inline_container" not in str(err.value) and ".cc" not in str(err.value)
        with pytest.raises(ckpt.CheckpointReadError) as err:
            ckpt.load_weights(newest, _model(), verify=verify)
        assert str(err.value).startswith(str(newest / "model.safetensors") + ": truncated")


def test_a_changed_model_shape_is_named(tmp_path):
    path = _save(tmp_path / "run", 10)
    with pytest.raises(ValueError) as err:
        ckpt.load_weights(path, _model(width=16))
    text = str(err.value)
    assert "\n" not in text and str(path / "model.safetensors") in text
    assert "0.weight is (8, 4) in the checkpoint but (16, 4) in the model" in text


class _Sized(nn.Module):
    """A buffer whose size is known once computed (as HuBERT's targets): taken from the checkpoint."""

    def __init__(self, n: int = 0):
        super().__init__()
        self.register_buffer("targets", torch.arange(n))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "targets" in state_dict:
            self.targets = torch.zeros_like(state_dict[prefix + "targets"])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def test_modules_that_size_buffers_from_the_checkpoint_load(tmp_path):
    path = ckpt.save_checkpoint(tmp_path / "run", 5, _Sized(7), {"step": 5}, keep=2, meta={})
    fresh = _Sized()
    ckpt.load_weights(path, fresh)
    assert fresh.targets.tolist() == list(range(7))


def test_stray_folders_are_ignored(tmp_path):
    run, good, newest = _two(tmp_path)
    root = ckpt.checkpoint_dir(run)
    for stray in ("step-00000030.bak", "step-x", "step-000000400", "step-0000005"):
        (root / stray).mkdir()
        (root / stray / "meta.json").write_text("{}")
    (root / "step-00000050").write_text("a file, not a folder")
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-00000010", "step-00000020"]
    assert ckpt.latest_checkpoint(run) == newest
    assert ckpt.find_resumable(run) == (newest, [])


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftover_temporaries_are_removed_and_ignored(tmp_path):
    run, good, newest = _two(tmp_path)
    root, dead, alive = ckpt.checkpoint_dir(run), _dead_pid(), os.getppid()
    stale = [root / f".tmp-step-00000030-{dead}", root / f".tmp-step-00000020-{os.getpid()}"]
    for folder in stale:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"\0" * 100)
    stale_files = [root / f".latest.tmp-{dead}", run / f".recipe.json.tmp-{dead}"]
    for file in stale_files:
        file.write_text("half")
    busy = root / f".tmp-step-00000040-{alive}"  # another live process may still be writing it
    busy.mkdir()
    assert ckpt.find_resumable(run) == (newest, [])

    removed = ckpt.clean_temporaries(run)

    assert sorted(removed) == sorted(stale + stale_files)
    assert not any(p.exists() for p in stale + stale_files)
    assert busy.is_dir() and good.is_dir() and newest.is_dir()
    assert ckpt.clean_temporaries(run) == []


def test_a_checkpoint_set_aside_by_an_interrupted_resave_is_restored(tmp_path):
    run, good, newest = _two(tmp_path)
    aside = newest.with_name(f".old-step-00000020-{_dead_pid()}")
    os.rename(newest, aside)  # killed between moving the old copy aside and renaming the new one in
    with pytest.warns(UserWarning, match="step-00000020 was restored"):
        assert ckpt.clean_temporaries(run) == []
    assert ckpt.find_resumable(run) == (newest, [])


def test_saving_the_same_step_again_replaces_it_completely(tmp_path):
    run = tmp_path / "run"
    _save(run, 10)
    path = _save(run, 10, model=_model(123))
    assert ckpt.verify_checkpoint(path) == []
    assert sorted(p.name for p in ckpt.checkpoint_dir(run).iterdir()) == ["latest", "step-00000010"]
    fresh = _model(0)
    ckpt.load_weights(path, fresh)
    assert torch.equal(fresh[0].weight, _model(123)[0].weight)


def test_pruning_never_removes_the_new_checkpoint(tmp_path):
    """Resumed from step 10 past a damaged step 30: saving step 20 with keep=1 keeps step 20."""
    run, good, _ = _two(tmp_path)
    damaged = _save(run, 30)
    (damaged / "state.pt").unlink()
    (ckpt.checkpoint_dir(run) / "step-00000020").rename(tmp_path / "elsewhere")
    path = _save(run, 20, keep=1)
    assert path.is_dir() and ckpt.verify_checkpoint(path) == []
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-00000020", "step-00000030"]


# ------------------------------------------------------------------------------------------ full disks


def _assert_failed_cleanly(run, err, what: str) -> None:
    text = str(err.value)
    assert isinstance(err.value, OSError)
    assert what in text, text
    assert "checkpoint step-00000030 could not be written" in text
    assert "It needs about" in text and "are free in" in text
    assert "the last good checkpoint, step-00000020, is kept" in text
    root = ckpt.checkpoint_dir(run)
    assert not [p for p in root.iterdir() if p.name.startswith(".")], "partial files left behind"
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-00000010", "step-00000020"]
    assert all(ckpt.verify_checkpoint(p) == [] for p in ckpt.list_checkpoints(run))
    assert (root / "latest").read_text() == "step-00000020\n"


def test_enospc_writing_the_weights(tmp_path, monkeypatch):
    run, *_ = _two(tmp_path)

    def full_disk(model, filename, *args, **kwargs):
        with open(filename, "wb") as fh:
            fh.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt, "save_model", full_disk)
    with pytest.raises(ckpt.CheckpointWriteError) as err:
        _save(run, 30, keep=2)
    _assert_failed_cleanly(run, err, "writing model.safetensors failed: No space left on device (ENOSPC)")
    assert err.value.errno == errno.ENOSPC and err.value.needed > 0


def test_enospc_reported_by_safetensors(tmp_path, monkeypatch):
    """safetensors (Rust) reports a full disk as SafetensorError with the OS error in its text."""
    run, *_ = _two(tmp_path)

    def full_disk(model, filename, *args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(ckpt, "save_model", full_disk)
    with pytest.raises(ckpt.CheckpointWriteError) as err:
        _save(run, 30, keep=2)
    _assert_failed_cleanly(run, err, "writing model.safetensors failed: No space left on device")


def test_enospc_writing_the_state(tmp_path, monkeypatch):
    run, *_ = _two(tmp_path)
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            with open(f, "wb") as fh:
                fh.write(b"PK" * 500)
        else:
            f.write(b"PK" * 500)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(ckpt.CheckpointWriteError) as err:
        _save(run, 30, keep=2)
    monkeypatch.setattr(torch, "save", real_save)
    _assert_failed_cleanly(run, err, "writing state.pt failed: No space left on device (ENOSPC)")


def test_eio_on_sync(tmp_path, monkeypatch):
    run, *_ = _two(tmp_path)

    def broken(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(ckpt.CheckpointWriteError) as err:
        _save(run, 30, keep=2)
    monkeypatch.undo()
    _assert_failed_cleanly(run, err, "failed: Input/output error (EIO)")


def test_a_bug_is_not_reported_as_a_full_disk(tmp_path, monkeypatch):
    run, *_ = _two(tmp_path)

    def bug(model, filename, *args, **kwargs):
        raise KeyError("not an I/O problem")

    monkeypatch.setattr(ckpt, "save_model", bug)
    with pytest.raises(KeyError):
        _save(run, 30, keep=2)
    assert not [p for p in ckpt.checkpoint_dir(run).iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("big", ["weights", "state"])
def test_real_full_disk(tmp_path, big):
    """A 192 KiB tmpfs: a small checkpoint fits, a 1 MiB one does not (needs root to mount)."""
    with small_tmpfs(tmp_path / "disk", 192) as disk:
        run = disk / "run"
        _save(run, 10, model=_model(width=8))
        _save(run, 20, model=_model(width=8))
        model = nn.Linear(512, 512) if big == "weights" else _model(width=8)
        state = _state(30, extra=300_000 if big == "state" else 16)
        with pytest.raises(ckpt.CheckpointWriteError) as err:
            _save(run, 30, keep=2, model=model, state=state)
        file = "model.safetensors" if big == "weights" else "state.pt"
        _assert_failed_cleanly(run, err, f"writing {file} failed: No space left on device")
        assert err.value.free is not None and err.value.free < err.value.needed
        assert f"mounted at {disk}" in str(err.value)
        assert "inline_container" not in str(err.value)

        # a disk filled by something else: the small save fails too, and succeeds once space is freed
        filler = fill(disk)
        with pytest.raises(ckpt.CheckpointWriteError, match="No space left on device"):
            _save(run, 30, keep=2)
        filler.unlink()
        _save(run, 30, keep=2)
        assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-00000020", "step-00000030"]
