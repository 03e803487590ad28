"""Demo and bootstrap noise (issue 15, item 12): the demo does not advertise a log directory it
deletes, the join secret is on no command line, and installing the project editable (as
scripts/bootstrap.sh does) prints no setuptools BuildBackendWarning block."""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env
from tests.fixtures.venvs import pip_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _read_until(fd: int, proc, needle: bytes, timeout: float, seen: bytearray) -> bool:
    """Read the terminal into ``seen`` until ``needle`` shows (lines the terminal wrapped joined)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen.extend(os.read(fd, 65536))
            except OSError:
                return False
            if needle in _words(seen):
                return True
    return needle in _words(seen)


def _plain(data: bytes) -> bytes:
    return re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", bytes(data))


def _words(data: bytes) -> bytes:
    return b" ".join(_plain(data).split())


def _command_lines(pid: int) -> list[bytes]:
    """The command lines of ``pid`` and all it started (the demo's processes)."""
    import psutil

    out = []
    root = psutil.Process(pid)
    for p in [root, *root.children(recursive=True)]:
        try:
            out.append("\x00".join(p.cmdline()).encode())
        except psutil.Error:
            pass
    return out


def _start_demo(home):
    """The demo with 2 simulated machines on a real PTY: (process, the PTY's master side)."""
    import pty

    master, slave = pty.openpty()
    env = {**cli_env(home), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    proc = subprocess.Popen([sys.executable, "-m", "centrality_cli", "demo", "--machines", "2"], cwd=REPO,
                            env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    return proc, master


def _kill_tree(proc) -> None:
    """SIGKILL the demo and everything it started (they have sessions of their own)."""
    import psutil

    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        family = []
    for p in family:
        try:
            p.kill()
        except psutil.Error:
            pass
    proc.wait()


def test_demo_on_a_terminal(home, tmp_path):
    """The demo on a real PTY with 2 simulated machines: the join secret is on no command line
    while it runs, and the log directory it names is either kept or said to be removed."""
    proc, master = _start_demo(home)
    seen = bytearray()
    try:
        assert _read_until(master, proc, b"4. The dashboard", 120, seen), seen.decode(errors="replace")[-2000:]
        assert _read_until(master, proc, b"keeps them)", 30, seen), seen.decode(errors="replace")[-2000:]
        text = _words(seen).decode(errors="replace")
        where = re.search(r"\(Logs and state: (\S+?)[;\s]", text)
        assert where, text[-2000:]
        assert "removed on quit" in text and "--state-dir DIR keeps them" in text  # a temporary dir
        lines = _command_lines(proc.pid)
        assert any(b"simulate" in c for c in lines) and any(b"agent\x00run" in c for c in lines), lines
        secrets = [c for c in lines if b"ctj1." in c]
        assert not secrets, secrets  # join strings start ctj1.: none on a command line
        # The dashboard shows the fleet (reading keeps it drawing).
        assert _read_until(master, proc, b"sim-", 60, seen), seen.decode(errors="replace")[-2000:]
        os.write(master, b"q")
        _read_until(master, proc, b"\x00never\x00", 30, seen)  # drain the terminal until the demo ends
        assert proc.wait(10) == 0, _plain(seen).decode(errors="replace")[-3000:]
        assert not Path(where.group(1)).exists()  # removed, as it said
    finally:
        _kill_tree(proc)
        os.close(master)


def test_a_demo_killed_9_leaves_no_process_behind(home):
    import psutil

    proc, master = _start_demo(home)
    seen = bytearray()
    started = []
    try:
        assert _read_until(master, proc, b"4. The dashboard", 120, seen), seen.decode(errors="replace")[-2000:]
        started = psutil.Process(proc.pid).children(recursive=True)
        names = [" ".join(p.cmdline()) for p in started]
        assert any(" server" in n for n in names) and any(" simulate" in n for n in names), names
        proc.kill()
        proc.wait()
        _gone, alive = psutil.wait_procs(started, timeout=20)
        assert not alive, [" ".join(p.cmdline()) for p in alive]
    finally:
        _kill_tree(proc)
        for p in started:
            try:
                p.kill()
            except psutil.Error:
                pass
        os.close(master)


def _bootstrap_pip_env() -> dict:
    """The environment scripts/bootstrap.sh gives its `pip install -e`."""
    line = next(l for l in (REPO / "scripts" / "bootstrap.sh").read_text().splitlines()
                if "pip\" install -q -e" in l)
    return dict(re.findall(r'(\w+)="([^"]*)"', line.split('"$venv')[0]))


def test_editable_install_prints_no_build_backend_warning(tmp_path):
    from provision.wheel import source_files

    src = tmp_path / "src"
    for rel in source_files(REPO):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, src / rel)
    where = tmp_path / "venv"
    # A new venv, and the pip bootstrap.sh leaves in .venv (upgraded): this session's, run with
    # --python under the new venv's interpreter (a pip of its own would cost an ensurepip and an upgrade).
    venv.EnvBuilder(with_pip=False).create(where)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONWARNINGS")}
    pip = [x for x in pip_for(where / "bin" / "python") if x != "-q"]

    def install(extra_env: dict) -> str:
        proc = subprocess.run([*pip, "install", "-q", "--no-deps", "-e", str(src)], env={**env, **extra_env},
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout + proc.stderr

    assert "BuildBackendWarning" in install({})  # what a plain `pip install -e .` shows today
    quiet = install(_bootstrap_pip_env())
    assert "BuildBackendWarning" not in quiet and "Editable installation" not in quiet, quiet
