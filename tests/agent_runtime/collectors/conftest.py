"""Fixtures locating captured test data.

* ``tests/data/proc/``: /proc captures of the development VM (two snapshots
  ~1 s apart for stat/diskstats/net_dev, with their times in ts.1/ts.2) and a
  hand-written diskstats of an 8-GPU training node.
* nvidia-smi captures live OUTSIDE the repository (never copy them in):
  ``$CENTRALITY_NVSMI_DATA`` if set, else ``<repo>/../shared/data/nvidia-smi``.
  Tests needing them are skipped when the folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]  # tests/agent_runtime/collectors -> ... -> repo
PROC_DATA = REPO_ROOT / "tests" / "data" / "proc"


def nvsmi_data_dir() -> Path:
    env = os.environ.get("CENTRALITY_NVSMI_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "nvidia-smi"


@pytest.fixture
def proc_dir() -> Path:
    """The folder of /proc captures."""
    return PROC_DATA


@pytest.fixture
def proc_text():
    """``proc_text("stat.1")`` -> the text of a /proc capture."""

    def read(name: str) -> str:
        return (PROC_DATA / name).read_text()

    return read


@pytest.fixture
def proc_ts():
    """``proc_ts(1)`` -> the time (s) the first snapshot was taken."""

    def read(n: int) -> float:
        return float((PROC_DATA / f"ts.{n}").read_text())

    return read


@pytest.fixture
def nvsmi_dir() -> Path:
    d = nvsmi_data_dir()
    if not d.is_dir():
        pytest.skip(f"nvidia-smi captures not found at {d} (set CENTRALITY_NVSMI_DATA)")
    return d


@pytest.fixture
def nvsmi(nvsmi_dir: Path):
    """``nvsmi("xml-1xT4.xml")`` -> text of a capture (skips if that file is absent)."""

    def read(name: str) -> str:
        p = nvsmi_dir / name
        if not p.is_file():
            pytest.skip(f"capture {name} not found in {nvsmi_dir}")
        return p.read_text()

    return read


@pytest.fixture
def no_gpu_env(monkeypatch, tmp_path):
    """A machine without GPUs: pynvml cannot be imported, nvidia-smi is not on PATH."""
    import sys

    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
