"""Fixtures for shell and copy tests: the command tests' control plane (settings per test),
the real CLI on a real PTY (pexpect), and OpenSSH's ``ssh`` pointed at the control plane."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env
from tests.integration.exec.conftest import control_plane, store_url  # noqa: F401

pexpect = pytest.importorskip("pexpect")


@pytest.fixture
def cp_settings(request) -> dict:
    """The test's settings (``indirect`` parametrize), over no per-source connection rate:
    dozens of agents and CLI runs connect from 127.0.0.1 here."""
    return {"connection_rate_per_source": 0, **dict(getattr(request, "param", {}))}


class Term:
    """A process on a real PTY; ``expect`` runs in a thread so the control plane keeps serving."""

    def __init__(self, child) -> None:
        self.child = child

    async def expect(self, pattern, timeout: float = 15):
        return await asyncio.to_thread(self.child.expect, pattern, timeout=timeout)

    def send(self, text: str) -> None:
        self.child.send(text)

    async def wait(self, timeout: float = 15) -> int:
        await self.expect(pexpect.EOF, timeout)
        await asyncio.to_thread(self.child.wait)
        return self.child.exitstatus if self.child.exitstatus is not None else 128 + self.child.signalstatus

    @property
    def before(self) -> str:
        return self.child.before


@pytest.fixture
def spawn(home):
    children = []

    def start(argv: list[str], *, rows: int = 24, cols: int = 80, term: str = "vt220") -> Term:
        env = {**cli_env(home), "TERM": term}
        child = pexpect.spawn(argv[0], argv[1:], env=env, cwd=str(REPO), dimensions=(rows, cols),
                              encoding="utf-8", codec_errors="replace", timeout=15)
        children.append(child)
        return Term(child)

    yield start
    for child in children:
        if child.isalive():
            child.terminate(force=True)


def centrality(*args: str) -> list[str]:
    return [sys.executable, "-m", "centrality_cli", *args]


def openssh(cp, home: Path, request: str | None, *opts: str, user: str = "operator") -> list[str]:
    """OpenSSH's client with the operator key the control plane bootstrapped, host key pinned;
    ``user`` a machine's name: a session on that machine."""
    key = home / ".config" / "centrality" / "keys" / "operator_ed25519"
    host, port = cp.address.rsplit(":", 1)
    known = home / "known_hosts"
    known.write_text(f"[{host}]:{port} {cp.host_key.export_public_key().decode().strip()}\n")
    return ["ssh", "-F", "none", "-p", port, "-i", str(key), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-l", user, *opts, host, *([request] if request is not None else [])]
