"""selfsup.badfiles: the skip-or-raise rule every file-reading data source shares."""

from __future__ import annotations

import pytest

from selfsup.badfiles import BadFiles


def _read(path: str) -> str:
    if path.startswith("bad"):
        raise OSError(f"cannot decode {path}")
    return path.upper()


def test_skip_counts_and_the_next_readable_file_takes_the_place():
    bad = BadFiles("my_source", "skip")
    files = ["a", "bad1", "bad2", "b"]
    assert bad.read_first(files, 1, _read) == (3, "B")
    assert bad.skipped == [("bad1", "OSError: cannot decode bad1"), ("bad2", "OSError: cannot decode bad2")]
    assert bad.read_first(["bad3", "c"], 1, _read) == (1, "C")  # wraps only when needed
    with pytest.warns(UserWarning, match=r"my_source root/: skipped 2 unreadable file\(s\), e.g. bad1 \(OSError"):
        bad.warn("root/")


def test_raise_names_the_source_and_the_file():
    bad = BadFiles("my_source", "raise", what="image")
    with pytest.raises(ValueError, match="my_source: unreadable image bad1: OSError: cannot decode bad1"):
        bad.read_first(["bad1", "a"], 0, _read)
    assert bad.skipped == []


def test_nothing_readable_and_bad_policy_are_errors():
    bad = BadFiles("my_source", "skip")
    with pytest.raises(ValueError, match="none of the 2 files could be read"):
        bad.read_first(["bad1", "bad2"], 0, _read)
    assert len(bad.skipped) == 2
    with pytest.raises(ValueError, match="on_error must be 'skip' or 'raise'"):
        BadFiles("my_source", "ignore")  # type: ignore[arg-type]


def test_no_warning_when_nothing_was_skipped(recwarn):
    BadFiles("my_source", "skip").warn("root/")
    assert not recwarn.list
