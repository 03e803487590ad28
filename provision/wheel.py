"""The agent wheel that provisioning uploads to hosts.

The hosts run the same code as the ``centrality`` that provisions them, so the
wheel is made from it, never fetched from a package index:

* run from a source tree (a checkout, or ``pip install -e``): the package
  directories and ``pyproject.toml`` are copied to a temporary directory (the
  source tree is never written to) and built with ``pip wheel --no-deps`` with
  a fixed ``SOURCE_DATE_EPOCH``, so the same source gives the same bytes;
* installed from a wheel (``pip install centrality``): the installed files of
  the distribution (its ``RECORD``: the packages and the ``.dist-info``
  metadata, without ``.pyc`` files and installer records) are packed back into
  a wheel of the same name and version, with a new ``RECORD`` and fixed zip
  timestamps. No build tool is needed, and the same installation gives the
  same bytes.

Wheels are cached under ``$XDG_CACHE_HOME/centrality/wheels/<content digest>/``;
a second run reuses the wheel, and the hosts compare it by sha256, so nothing
changes on them. ``--wheel PATH`` (or ``$CENTRALITY_AGENT_WHEEL``) skips both.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from centrality_core.errors import ConfigError

PACKAGES = ("centrality_core", "centrality_cli", "control_plane", "agent_runtime", "tui", "provision")
TOP_FILES = ("pyproject.toml", "README.md", "LICENSE")
#: 1980-01-01, the earliest time a zip file can hold: reproducible wheels.
SOURCE_DATE_EPOCH = "315532800"
WHEEL_ENV = "CENTRALITY_AGENT_WHEEL"

_lock = threading.Lock()


@dataclass(frozen=True)
class Wheel:
    path: Path
    sha256: str

    @property
    def filename(self) -> str:
        return self.path.name


def source_root() -> Path | None:
    """The source tree this code runs from, if it is one (an editable or source checkout)."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "agent_runtime").is_dir():
        return root
    return None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    base_path = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return base_path / "centrality" / "wheels"


def source_files(root: Path) -> list[Path]:
    """The files that go into the wheel, relative to ``root``, sorted."""
    files = [Path(f) for f in TOP_FILES if (root / f).is_file()]
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and "__pycache__" not in rel.parts and path.suffix not in (".pyc", ".pyo"):
                files.append(rel)
    return sorted(files)


def source_digest(root: Path) -> str:
    h = hashlib.sha256()
    for rel in source_files(root):
        h.update(str(rel).encode() + b"\0")
        h.update((root / rel).read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def existing(path: str | Path) -> Wheel:
    """A wheel given by the user (``--wheel``)."""
    p = Path(path).expanduser().resolve()
    if not p.is_file() or p.suffix != ".whl":
        raise ConfigError(f"agent wheel {path} is not a .whl file")
    return Wheel(p, sha256_file(p))


def build(root: Path | None = None, *, cache: Path | None = None) -> Wheel:
    """The agent wheel for the code running now: from the cache, or built (or packed) now."""
    root = root or source_root()
    if root is None:
        from .repack import from_installed

        return from_installed(cache=cache or cache_dir())
    with _lock:
        digest = source_digest(root)
        target = (cache or cache_dir()) / digest[:24]
        found = sorted(target.glob("centrality-*.whl")) if target.is_dir() else []
        if found:
            return Wheel(found[0], sha256_file(found[0]))
        with tempfile.TemporaryDirectory(prefix="centrality-wheel-") as tmp:
            src, out = Path(tmp) / "src", Path(tmp) / "out"
            for rel in source_files(root):
                (src / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / rel, src / rel)
            env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                    env=env, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ConfigError(f"cannot build the agent wheel: {exc}") from None
            built = sorted(out.glob("centrality-*.whl"))
            if proc.returncode != 0 or not built:
                tail = " ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-3:])
                raise ConfigError(f"cannot build the agent wheel (pip wheel exited {proc.returncode}): {tail}")
            target.mkdir(parents=True, exist_ok=True)
            final = target / built[0].name
            shutil.copyfile(built[0], final.with_suffix(".tmp"))
            os.replace(final.with_suffix(".tmp"), final)
        return Wheel(final, sha256_file(final))


def for_deploy(path: str | None) -> Wheel:
    """What a deploy uploads: ``centrality_wheel`` host data, ``$CENTRALITY_AGENT_WHEEL``, or a build."""
    path = path or os.environ.get(WHEEL_ENV)
    if path:
        return existing(path)
    return build()
