"""What ``FakeSource.exec`` answers for a command: a tiny, deterministic shell. Pure.

It understands a handful of commands, enough for tests, snapshots and the
demo without a control plane: ``hostname``, ``uname -r``, ``nvidia-smi -L``
(GPU machines; "not found" elsewhere), ``echo``, ``true``, ``false``,
``exit N``, ``sleep N`` (``N`` at or above the timeout times out at once;
under it, the run waits ``N`` real seconds, which is what cancel tests
use) and ``cat /etc/os-release`` (its first line). Anything else is "not
found" (127), as ``sh`` would say.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass


@dataclass(frozen=True)
class FakeResult:
    stdout: str = ""
    stderr: str = ""
    status: str = "ok"  # ok | failed | timeout | ...
    exit_code: int | None = 0
    wait: float = 0.0  # seconds the command takes (sleep)

    @property
    def code(self) -> int:
        return {"ok": 0, "timeout": 124, "cancelled": 130, "unreachable": 255}.get(
            self.status, self.exit_code if self.exit_code is not None else 1)


def failed(code: int, stderr: str = "") -> FakeResult:
    return FakeResult(stderr=stderr, status="failed", exit_code=code)


def run(argv: list[str], *, hostname: str, info: dict, timeout: float) -> FakeResult:
    """The result of ``argv`` (``sh -c LINE`` is unwrapped) on a machine with ``info``."""
    if argv[:2] == ["sh", "-c"] and len(argv) == 3:
        try:
            argv = shlex.split(argv[2])
        except ValueError as exc:
            return failed(2, f"sh: 1: Syntax error: {exc}\n")
    if not argv:
        return FakeResult()
    cmd, args = argv[0], argv[1:]
    if cmd == "hostname":
        return FakeResult(hostname + "\n")
    if cmd == "uname" and args == ["-r"]:
        return FakeResult(f"{info.get('kernel', '')}\n")
    if cmd == "echo":
        return FakeResult(" ".join(args) + "\n")
    if cmd == "true":
        return FakeResult()
    if cmd == "false":
        return failed(1)
    if cmd == "exit":
        code = int(args[0]) if args and args[0].isdigit() else 0
        return FakeResult() if code == 0 else failed(code)
    if cmd == "sleep":
        try:
            seconds = float(args[0]) if args else 0.0
        except ValueError:
            return failed(1, f"sleep: invalid time interval ‘{args[0]}’\n")
        if seconds >= timeout:
            return FakeResult(status="timeout", exit_code=None)
        return FakeResult(wait=seconds)
    if cmd == "cat" and args == ["/etc/os-release"]:
        return FakeResult(f'PRETTY_NAME="{info.get("os", "")}"\n')
    if cmd == "nvidia-smi" and args == ["-L"]:
        gpus = info.get("gpus") or []
        if not gpus:
            return failed(127, "sh: 1: nvidia-smi: not found\n")
        return FakeResult("".join(f"GPU {g['index']}: {g['name']}\n" for g in gpus))
    return failed(127, f"sh: 1: {cmd}: not found\n")
