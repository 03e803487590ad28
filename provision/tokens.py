"""A fresh join string for one host, made at the moment the host joins.

The deploy runs ``centrality token create --uses 1 --json`` (the operator request
``token create`` on the current context, or ``$CENTRALITY_CONTEXT``) in a
subprocess, so it works the same under ``centrality provision`` and under plain
``pyinfra``. A join string given as host data (``centrality_join``) is used as is.
The join string is a secret: it is never logged and never put in an error.
"""

from __future__ import annotations

import json
import subprocess
import sys

from centrality_core.sanitize import one_line

TOKEN_TTL = "30m"


class TokenError(Exception):
    """No join token could be made; the message says why (and holds no secret)."""


def join_string(*, given: str = "", address: str = "", timeout: float = 60.0) -> str:
    if given:
        return given
    argv = [sys.executable, "-m", "centrality_cli", "token", "create", "--uses", "1",
            "--ttl", TOKEN_TTL, "--json"]
    if address:
        argv += ["--address", address]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TokenError(f"`centrality token create` did not answer within {timeout:g}s") from None
    except OSError as exc:
        raise TokenError(f"cannot run `centrality token create`: {exc}") from None
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or "").strip().splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        raise TokenError(f"`centrality token create` failed: {one_line(why, 200)}")
    try:
        join = json.loads(proc.stdout)["join"]
    except (ValueError, KeyError, TypeError):
        raise TokenError("`centrality token create --json` printed no join string") from None
    if not isinstance(join, str) or not join.startswith("ctj1."):
        raise TokenError("`centrality token create --json` printed no join string")
    return join
