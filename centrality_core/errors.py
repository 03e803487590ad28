"""Every error Centrality raises on purpose.

Each error has a stable machine-readable ``code`` and a ``reason`` a person can
act on. asyncssh, SQLAlchemy and OS errors are translated into these at the
boundary where they occur, so callers never have to know which library failed.

    CentralityError
     ├── UsageError            bad flags, bad durations, bad names given by a person
     ├── ConfigError           missing or unreadable configuration / context
     ├── ConnectError          the control plane could not be reached
     │    ├── HostKeyMismatch  the server's host key is not the pinned one
     │    └── AuthRefused      our key was refused (unknown, revoked, wrong role)
     ├── ProtocolError         a peer broke the wire protocol
     │    ├── FrameTooLarge
     │    ├── MalformedFrame
     │    ├── UnknownKind
     │    └── UnsupportedVersion
     ├── RegistrationRefused   the control plane refused an agent's registration
     ├── RequestFailed         an operator request answered with an error
     │    ├── NotFound
     │    ├── Conflict
     │    └── Forbidden
     ├── StoreError            the database failed
     └── WaitTimeout           a condition was not reached in time

``EXIT_CODES`` maps each error to the exit status of the ``centrality`` CLI, so
scripts can tell "unreachable" from "not found" from "timed out".
"""

from __future__ import annotations


class CentralityError(Exception):
    """Root of all Centrality errors: a stable ``code`` and a human ``reason``."""

    code = "error"
    exit_code = 1

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.reason


class UsageError(CentralityError):
    code = "usage"
    exit_code = 2


class ConfigError(CentralityError):
    code = "config"
    exit_code = 3


class ConnectError(CentralityError):
    code = "unreachable"
    exit_code = 4


class Busy(ConnectError):
    """The control plane turned the connection away: too many being set up at once.

    ``retry_after``: the seconds after which it said to come back, when it did."""

    code = "busy"

    def __init__(self, reason: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason, code=code)
        self.retry_after = retry_after


class HostKeyMismatch(ConnectError):
    code = "host_key_mismatch"
    exit_code = 5


class AuthRefused(ConnectError):
    code = "auth_refused"
    exit_code = 6


class ProtocolError(CentralityError):
    code = "protocol_error"
    exit_code = 7


class FrameTooLarge(ProtocolError):
    code = "frame_too_large"


class MalformedFrame(ProtocolError):
    code = "malformed_frame"


class UnknownKind(ProtocolError):
    code = "unknown_kind"

    def __init__(self, kind: str) -> None:
        super().__init__(f"unknown message kind {kind!r}")
        self.kind = kind


class UnsupportedVersion(ProtocolError):
    code = "unsupported_version"


class RegistrationRefused(CentralityError):
    """The control plane refused to register an agent (name taken, bad token...)."""

    exit_code = 8

    def __init__(self, reason: str, *, code: str = "registration_refused") -> None:
        super().__init__(reason, code=code)


class RequestFailed(CentralityError):
    code = "request_failed"
    exit_code = 1


class NotFound(RequestFailed):
    code = "not_found"
    exit_code = 9


class Conflict(RequestFailed):
    code = "conflict"
    exit_code = 10


class Forbidden(RequestFailed):
    code = "forbidden"
    exit_code = 6


class StoreError(CentralityError):
    code = "store_error"
    exit_code = 11


class WaitTimeout(CentralityError):
    code = "timeout"
    exit_code = 124  # as timeout(1)


_BY_CODE: dict[str, type[CentralityError]] = {
    cls.code: cls
    for cls in (
        UsageError, ConfigError, ConnectError, HostKeyMismatch, AuthRefused,
        ProtocolError, FrameTooLarge, MalformedFrame, UnsupportedVersion,
        RequestFailed, NotFound, Conflict, Forbidden, StoreError, WaitTimeout,
    )
}


def from_code(code: str, reason: str) -> CentralityError:
    """Rebuild an error sent over the wire as ``{"code": ..., "reason": ...}``."""
    cls = _BY_CODE.get(code, RequestFailed)
    err = cls(reason)
    err.code = code
    return err


EXIT_CODES = {
    "ok": 0,
    **{cls.code: cls.exit_code for cls in _BY_CODE.values()},
    "registration_refused": RegistrationRefused.exit_code,
}
