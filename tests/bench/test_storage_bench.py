"""``bench/storage.py`` removes its SQLite files, whether it ends well or not."""

from __future__ import annotations

import sys
import tempfile

import pytest

from bench import storage


def test_the_storage_bench_leaves_no_temporary_files_when_it_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen = []

    def failing(backend, url, *args):
        seen.append(url)
        assert list(tmp_path.glob("centrality-bench-storage-*/disk.db"))  # written there, so far
        raise RuntimeError("the box ran out of patience")

    monkeypatch.setattr(storage, "fleet", failing)
    monkeypatch.setattr(sys, "argv", ["storage", "--backend", "sqlite", "--machines", "4", "--seconds", "60",
                                      "--fleet", "2"])
    with pytest.raises(RuntimeError, match="patience"):
        storage.main()
    assert seen and str(tmp_path) in seen[0]
    assert list(tmp_path.iterdir()) == []
