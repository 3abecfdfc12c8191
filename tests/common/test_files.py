"""Tests for ablate.common.files: atomic replacement of a file."""

from __future__ import annotations

import stat

import pytest

from ablate.common.files import atomic_path, write_text


def test_success_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "row.json"  # the folder is made as needed
    write_text(target, "old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"  # untouched until the block ends
        assert tmp.parent == target.parent and tmp.name.endswith(".tmp")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["row.json"]


def test_an_exception_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "runs.csv"
    write_text(target, "finished results")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half a fi")
            raise KeyboardInterrupt
    assert target.read_text() == "finished results"
    assert [p.name for p in tmp_path.iterdir()] == ["runs.csv"]


def test_two_writers_get_their_own_temporaries(tmp_path):
    target = tmp_path / "claims.json"
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a != b
        a.write_text("first")
        b.write_text("second")
    assert target.read_text() == "first"  # the outer block ends last and wins


def test_the_new_file_is_readable_by_all(tmp_path):
    write_text(tmp_path / "x", "1")
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o644
