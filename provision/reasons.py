"""Why a host failed, in one line a person can act on. Pure.

Every reason starts with its category:

    unreachable:              no SSH connection (refused, timed out, unknown name)
    auth failed:              SSH refused our key, or the host key does not match
    install failed:           a step of the deploy failed on the host
    agent never registered:   installed and started, but never live on the control plane
"""

from __future__ import annotations

import re

from centrality_core.sanitize import one_line

LIMIT = 240

UNREACHABLE = "unreachable"
AUTH_FAILED = "auth failed"
INSTALL_FAILED = "install failed"
NEVER_REGISTERED = "agent never registered"

_PAREN = re.compile(r"\(([^()]*)\)\s*$")


def _detail(message: str) -> str:
    """The innermost trailing ``(...)`` of a pyinfra connect error: the library's own words."""
    m = _PAREN.search(message)
    return m.group(1).strip() if m else message.strip()


def line(category: str, detail: str) -> str:
    return one_line(f"{category}: {detail}", LIMIT)


def connect_failure(message: str, *, target: str, key: str = "") -> str:
    """A pyinfra ``ConnectError`` (or a key that cannot be read) as a reason."""
    text = message.strip()
    low = text.lower()
    if "authentication" in low or "no authentication methods" in low or "permission denied" in low:
        with_key = f" (key {key})" if key else ""
        return line(AUTH_FAILED, f"{target} refused our SSH key{with_key}")
    if "host key" in low:
        return line(AUTH_FAILED, f"{target} presented a host key that does not match known_hosts")
    if "private key" in low or "invalid key" in low or ("no such file" in low and key):
        return line(AUTH_FAILED, f"cannot use SSH key {key}: {_detail(text)}")
    if "resolve" in low:
        return line(UNREACHABLE, f"{target}: unknown host name")
    detail = _detail(text)
    if "refused" in detail.lower():
        detail = "connection refused"
    elif "timed out" in low or "timeout" in low:
        detail = "connection timed out"
    elif "banner" in low or "eof" in low:
        detail = f"no SSH server answered ({detail})"
    return line(UNREACHABLE, f"{target}: {detail}")


def op_failure(op: str, stderr: list[str], stdout: list[str]) -> str:
    """A failed deploy operation: its name and the last line it printed."""
    last = next((s for s in reversed(stderr) if s.strip()), "") or next(
        (s for s in reversed(stdout) if s.strip()), "")
    return line(INSTALL_FAILED, f"{op}: {last.strip()}" if last else f"{op} failed")


def never_registered(name: str, waited_s: float, detail: str = "") -> str:
    base = f"{name} not live after {waited_s:.0f}s"
    return line(NEVER_REGISTERED, f"{base}: {detail}" if detail else base)
