"""qc_pipeline.cache: one builder per entry, entries every user can read (a cache baked into an image as
root serves a container run as any user), and a folder that cannot be written is CacheUnwritable, which
the homophone answers turn into "not cached" (logged), never a failed run."""

from __future__ import annotations

import logging
import stat
import threading
import time
from pathlib import Path

import pytest

from qc_pipeline.cache import CacheUnwritable, build_once
from qc_pipeline.scoring import words


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_build_once_builds_a_cache_entry_once_under_concurrency(tmp_path):
    calls = []

    def slow_build(tmp: Path) -> None:
        calls.append(1)
        time.sleep(0.3)
        tmp.write_text("model", "utf-8")

    target = tmp_path / "cache" / "entry.bin"
    threads = [threading.Thread(target=build_once, args=(target, slow_build, "test entry")) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and target.read_text("utf-8") == "model"
    assert [p.name for p in target.parent.iterdir() if p.suffix == ".tmp"] == []
    build_once(target, slow_build, "test entry")
    assert len(calls) == 1
    assert _mode(target) == 0o644  # not mkstemp's 0600: a container's non-root user must read it


def test_a_folder_that_cannot_be_written_is_cache_unwritable(tmp_path):
    """(A path under a regular file stands in for a read-only folder: it cannot be written even as root.)"""
    (tmp_path / "file").write_text("", "utf-8")
    built = []
    with pytest.raises(CacheUnwritable, match=r"cannot write the model cache .*QC_PIPELINE_CACHE_DIR"):
        build_once(tmp_path / "file" / "cache" / "entry.bin", built.append, "test entry")
    assert built == []


def test_homophone_answers_are_saved_readable_by_every_user(tmp_path, monkeypatch, clash_store):
    monkeypatch.setenv("QC_PIPELINE_CACHE_DIR", str(tmp_path))
    assert words.homophone_clash("我是客服", 500) == "克服"
    words.save_clashes()
    (saved,) = tmp_path.glob("homophones-*.json")
    assert _mode(saved) == 0o644


def test_homophone_answers_in_a_read_only_cache_are_logged_not_raised(tmp_path, monkeypatch, clash_store, caplog):
    (tmp_path / "file").write_text("", "utf-8")
    monkeypatch.setenv("QC_PIPELINE_CACHE_DIR", str(tmp_path / "file" / "cache"))
    assert words.homophone_clash("我是客服", 500) == "克服"
    with caplog.at_level(logging.INFO, logger="qc_pipeline.scoring.words"):
        words.save_clashes()
    assert "homophone answers not cached" in caplog.text
