"""metrics.jsonl is append-only: a torn last line is cut (not rewritten) with a warning, a resumed run
appends a marker instead of rewriting the history, and a full disk drops records with one warning
instead of stopping training."""

from __future__ import annotations

import json
import os
import warnings

import pytest
from diskfull import fill, small_tmpfs

from selfsup.engine import metrics as metrics_module
from selfsup.engine.metrics import MetricsWriter, read_metrics


def _write(run_dir, steps, *, resume_step=None, loss=1.0):
    writer = MetricsWriter(run_dir, tensorboard=False, resume_step=resume_step)
    for step in steps:
        writer.write("train", step, {"loss": loss})
    writer.close()


def _lines(path):
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), "the file must end on a complete line"
    return [json.loads(line) for line in raw.splitlines()]


@pytest.mark.parametrize("torn", [b'{"kind": "train", "step": 20, "lo', b"\0" * 4096, b"\0\0\0\n", b'{"kind": "tr\n'])
def test_a_torn_last_line_is_cut_with_a_warning(tmp_path, torn):
    path = tmp_path / "metrics.jsonl"
    _write(tmp_path, [5, 10, 15])
    good = path.read_bytes()
    inode = path.stat().st_ino
    with open(path, "ab") as fh:
        fh.write(torn)

    with pytest.warns(UserWarning) as caught:
        writer = MetricsWriter(tmp_path, tensorboard=False, resume_step=15)
    writer.write("train", 20, {"loss": 0.5})
    writer.close()

    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and str(path) in messages[0] and f"cut off {len(torn)} bytes" in messages[0]
    raw = path.read_bytes()
    assert raw.startswith(good), "the complete lines must be left as they were"
    assert path.stat().st_ino == inode, "the file is cut and appended to, never replaced"
    assert [r["kind"] for r in _lines(path)] == ["train", "train", "train", "resume", "train"]
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(5, 1.0), (10, 1.0), (15, 1.0), (20, 0.5)]


def test_a_complete_record_missing_only_its_newline_is_kept(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"kind": "train", "step": 5, "loss": 1.0}\n{"kind": "train", "step": 10, "loss": 2.0}')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _write(tmp_path, [15])
    assert [r["step"] for r in _lines(path)] == [5, 10, 15]


def test_read_metrics_skips_a_torn_last_line(tmp_path):
    _write(tmp_path, [5, 10])
    with open(tmp_path / "metrics.jsonl", "ab") as fh:
        fh.write(b'{"kind": "train", "st')  # a write in progress, or a crash in the middle of one
    assert [r["step"] for r in read_metrics(tmp_path)] == [5, 10]


def test_read_metrics_names_unreadable_lines_in_the_middle(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"kind": "train", "step": 5}\nnot json\n{"kind": "train", "step": 10}\n')
    with pytest.warns(UserWarning, match=r"metrics.jsonl: skipped 1 unreadable line\(s\) \(line 2\)"):
        assert [r["step"] for r in read_metrics(tmp_path)] == [5, 10]


def test_resume_markers_supersede_the_steps_after_them(tmp_path):
    """Run to 25 (checkpoint at 10), resume from 10 and run to 20, crash, resume from 20 and finish:
    one history, each step once, with the values of the run that continued."""
    _write(tmp_path, [5, 10, 15, 20, 25], loss=1.0)
    _write(tmp_path, [15, 20], resume_step=10, loss=2.0)
    _write(tmp_path, [25, 30], resume_step=20, loss=3.0)
    writer = MetricsWriter(tmp_path, tensorboard=False)
    writer.write("eval", 30, {"knn": 0.9})
    writer.close()

    records = read_metrics(tmp_path)
    assert [(r["kind"], r["step"], r.get("loss")) for r in records] == [
        ("train", 5, 1.0), ("train", 10, 1.0), ("train", 15, 2.0), ("train", 20, 2.0),
        ("train", 25, 3.0), ("train", 30, 3.0), ("eval", 30, None),
    ]
    raw = _lines(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in raw if r["kind"] == "resume"] == [10, 20], "markers are in the file"
    assert len(raw) == 5 + 2 + 2 + 2 + 1, "nothing was removed from the file"


def test_resuming_appends_instead_of_rewriting(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _write(tmp_path, [5, 10, 15])
    before, inode = path.read_bytes(), path.stat().st_ino
    _write(tmp_path, [15], resume_step=10)
    assert path.read_bytes().startswith(before) and path.stat().st_ino == inode


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_enospc_drops_records_with_one_warning(tmp_path):
    (tmp_path / "metrics.jsonl").symlink_to("/dev/full")  # every write fails with ENOSPC
    with pytest.warns(UserWarning) as caught:
        writer = MetricsWriter(tmp_path, tensorboard=False, resume_step=0)
        for step in (1, 2, 3):
            writer.write("train", step, {"loss": 1.0})
        writer.close()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages
    assert "metrics.jsonl: cannot write metrics" in messages[0] and "No space left on device" in messages[0]
    assert "4 metric record(s) could not be written" in messages[1]
    assert writer.dropped == 4


class _HalfWrites:
    """The ``os`` module, except that the next ``os.write`` writes half its bytes, then fails."""

    def __init__(self):
        self.fail = True

    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, fd, data):
        if not self.fail:
            return os.write(fd, data)
        self.fail = False
        os.write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")


def test_a_partly_written_record_is_cut_back(tmp_path, monkeypatch):
    writer = MetricsWriter(tmp_path, tensorboard=False)
    writer.write("train", 5, {"loss": 1.0})
    monkeypatch.setattr(metrics_module, "os", _HalfWrites())
    with pytest.warns(UserWarning, match="No space left on device"):
        writer.write("train", 10, {"loss": 1.0})
    writer.write("train", 15, {"loss": 1.0})
    with pytest.warns(UserWarning, match="1 metric record"):
        writer.close()
    assert [r["step"] for r in _lines(tmp_path / "metrics.jsonl")] == [5, 15]
    assert writer.dropped == 1


def test_real_full_disk(tmp_path):
    """A 64 KiB tmpfs filled by something else: records are dropped, then written again once there is
    space; the file never holds a torn line (needs root to mount)."""
    with small_tmpfs(tmp_path / "disk", 64) as disk:
        run = disk / "run"
        writer = MetricsWriter(run, tensorboard=False)
        writer.write("train", 1, {"loss": 1.0})
        filler = fill(disk)
        with pytest.warns(UserWarning, match="No space left on device"):
            for step in range(2, 40):  # ~1 KiB each: more than the last page of the file holds
                writer.write("train", step, {f"metric/{i}": float(step) for i in range(60)})
        filler.unlink()
        writer.write("train", 40, {"loss": 1.0})
        with pytest.warns(UserWarning, match="metric record"):
            writer.close()
        steps = [r["step"] for r in _lines(run / "metrics.jsonl")]
        assert steps[0] == 1 and steps[-1] == 40 and len(steps) + writer.dropped == 40
        assert writer.dropped > 0
