"""What the pyinfra worker tells the CLI: one JSON object per line, tagged by ``kind``.

Order of a run::

    hosts                         the targeted hosts and their settings
    connected | failed (per host) SSH connection results
    plan, planned (per host)      the deploy's operations, and what would change where
    confirm                       (with --confirm) the worker waits for "go" or "stop" on stdin
    step (per host and op)        progress while executing
    result (per host)             outcome of each host
    done                          the end (``fatal`` instead when the run itself broke)
"""

from __future__ import annotations

from typing import Union

import msgspec


class _Event(msgspec.Struct, tag_field="kind", kw_only=True):
    pass


class HostInfo(msgspec.Struct, kw_only=True):
    host: str
    name: str = ""
    """Machine name ("" when the host's settings are invalid)."""
    target: str = ""
    """user@address:port the worker connects to."""
    labels: dict[str, str] = {}
    prefix: str = ""


class Hosts(_Event, tag="hosts"):
    hosts: list[HostInfo]


class Connected(_Event, tag="connected"):
    host: str


class Failed(_Event, tag="failed"):
    host: str
    reason: str
    """One line: ``unreachable: ...``, ``auth failed: ...``, ``install failed: ...``."""


class Plan(_Event, tag="plan"):
    ops: list[str]
    """Names of the deploy's operations, in execution order."""


class Planned(_Event, tag="planned"):
    host: str
    changes: list[str]
    """Operations that will change something on this host."""


class Confirm(_Event, tag="confirm"):
    pass


class Step(_Event, tag="step"):
    host: str
    op: str
    index: int
    """1-based position of ``op`` in the plan."""
    status: str
    """``start``, ``ok`` or ``error``."""


class Result(_Event, tag="result"):
    host: str
    ok: bool
    changed: bool
    changes: list[str] = []
    reason: str = ""
    public_key: str = ""
    """The agent's public key as read back from the host (provision only)."""
    log_hint: str = ""
    """Where the agent logs on the host (provision only)."""


class Done(_Event, tag="done"):
    aborted: bool = False


class Fatal(_Event, tag="fatal"):
    reason: str
    exit_code: int = 1
    """The CLI's exit status for this error (2: a usage error such as a bad --limit)."""


Event = Union[Hosts, Connected, Failed, Plan, Planned, Confirm, Step, Result, Done, Fatal]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode(event: Event) -> bytes:
    return _encoder.encode(event) + b"\n"


def decode(line: bytes | str) -> Event:
    return _decoder.decode(line)
