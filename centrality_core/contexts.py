"""Operator contexts: the control planes a user can reach, kept in contexts.toml.

A context is an address, the pinned host-key fingerprint of that control plane
and the private key to log in with. ``centrality server`` writes the ``local``
context on first start; ``centrality login`` adds remote ones. The context in
use is ``--context``, else ``$CENTRALITY_CONTEXT``, else ``current``.
"""

from __future__ import annotations

import os

import msgspec

from . import paths
from .errors import ConfigError


class Context(msgspec.Struct, kw_only=True):
    #: host:port of the control plane's SSH listener; several, comma-separated
    #: (replicas), are tried in order.
    address: str
    #: SHA256 fingerprint of its host key, as ``ssh-keygen -l`` prints it; several,
    #: comma-separated, are each accepted from any of the addresses.
    fingerprint: str
    #: Path of the private key used to log in.
    key: str
    #: SSH user name (informational; the key decides the role).
    user: str = "operator"
    #: Keep one connection open for the next commands this long after the last (``10m``;
    #: empty or ``0``: every command connects). ``$CENTRALITY_PERSIST`` overrides it.
    persist: str = ""


class Contexts(msgspec.Struct, kw_only=True):
    current: str = ""
    contexts: dict[str, Context] = {}


def path():
    return paths.config_dir() / "contexts.toml"


def load() -> Contexts:
    return paths.read_toml(path(), Contexts)


def save(ctxs: Contexts) -> None:
    paths.write_toml(path(), ctxs)


def put(name: str, ctx: Context, *, make_current: bool = False) -> None:
    ctxs = load()
    ctxs.contexts[name] = ctx
    if make_current or not ctxs.current:
        ctxs.current = name
    save(ctxs)


def resolve(name: str | None = None) -> tuple[str, Context]:
    """The context to use, by flag, environment or the saved current one."""
    ctxs = load()
    name = name or os.environ.get("CENTRALITY_CONTEXT") or ctxs.current
    if not name:
        raise ConfigError(
            "no control plane configured: start one with `centrality server`, "
            "or add one with `centrality login HOST:PORT`"
        )
    try:
        return name, ctxs.contexts[name]
    except KeyError:
        known = ", ".join(sorted(ctxs.contexts)) or "none"
        raise ConfigError(f"no context named {name!r} (known: {known})") from None


def split_address(address: str, default_port: int = 8022) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``host`` into (host, port)."""
    from .errors import UsageError

    host, port = address, default_port
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise UsageError(f"invalid address {address!r}: expected [IPV6]:PORT")
        if rest:
            port = rest[1:]
    elif address.count(":") == 1:
        host, port = address.split(":")
    try:
        port = int(port)
        if not 0 <= port < 65536:
            raise ValueError
    except ValueError:
        raise UsageError(f"invalid address {address!r}: expected HOST:PORT") from None
    if not host:
        raise UsageError(f"invalid address {address!r}: missing host")
    return host, port
