"""Typed settings, resolved in one place.

Precedence, highest first:

1. command-line flags
2. environment variables ``CENTRALITY_<FIELD>`` (e.g. ``CENTRALITY_DEAD_AFTER=30m``)
3. the ``[server]`` table of ``$XDG_CONFIG_HOME/centrality/config.toml``
   (or the file named by ``$CENTRALITY_CONFIG``)
4. the defaults below

Durations accept seconds or units (``5s``, ``10m``, ``2h``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Union

import msgspec

from . import durations, paths
from .errors import ConfigError, UsageError


class HookRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A hook: when an event matches ``on``, run a command or POST to a webhook.

    ``[[server.hooks]]`` tables in config.toml::

        [[server.hooks]]
        on = ["machine.dead", "machine.unhealthy"]   # event names, or globs ("machine.*")
        run = ["/usr/local/bin/page-oncall"]          # argv, or one string for sh -c; event JSON on stdin
        timeout = "10s"

        [[server.hooks]]
        on = ["exec.failed"]
        webhook = "https://hooks.example.com/centrality"   # POST, event JSON as the body
    """

    on: list[str]
    run: Union[list[str], str, None] = None
    webhook: str = ""
    timeout: float = 10.0
    name: str = ""


class ServerSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Settings of ``centrality server``."""

    listen: str = "127.0.0.1:8022"
    """HOST:PORT the SSH listener binds. Port 0 picks a free port."""
    advertise: str = ""
    """HOST:PORT that join strings tell agents to connect to (several, comma-separated:
    the replicas of a replica set, tried in turn; or one load-balanced name). Empty:
    the listen address (with this host's name when listening on all addresses)."""
    db: str = ""
    """SQLAlchemy URL of the store. Empty: SQLite in the data directory.
    Postgres: ``postgresql+psycopg://user:pass@host/db``."""
    replica: str = ""
    """Name of this control plane among the replicas sharing one Postgres (a
    machine-style name). Empty: this host's name and the listen port
    (``cp1-8022``). Refused on SQLite, which is the store of one control plane."""
    peer_address: str = ""
    """HOST:PORT where the other replicas reach this one directly (not a load
    balancer's address). Empty: the listen address, with this host's name when
    listening on all addresses."""
    replica_lease: float = 15.0
    """Seconds a replica's lease lasts unless renewed (Postgres replicas). A replica
    silent for this long (crash, partition) has its machines moved to limbo by a
    survivor; it must be longer than ``replica_renew_interval`` plus a slow query."""
    replica_renew_interval: float = 5.0
    """Seconds between a replica's renewals of its lease; each round also moves the
    machines of lapsed replicas to limbo and re-reads which replica holds what."""
    heartbeat_interval: float = 5.0
    """Seconds between agent heartbeats; told to each agent at registration."""
    limbo_after: float = 15.0
    """Seconds without a heartbeat before a live machine goes to limbo."""
    dead_after: float = 600.0
    """Seconds without a heartbeat before a machine in limbo is dead."""
    raw_retention: float = 2 * 86400.0
    """Seconds every sample (tier 0, per second) is kept."""
    rollup_retention: float = 30 * 86400.0
    """Seconds 1-minute rollups (tier 1: min/avg/max) are kept."""
    hour_retention: float = 730 * 86400.0
    """Seconds 1-hour rollups (tier 2) are kept."""
    chunk_seconds: float = 1800.0
    """Raw samples of one machine are compacted into one compressed chunk per this
    many seconds (the longer, the smaller; a chunk is compacted once it is closed,
    so batches wait up to this long in their arrival form). 30 minutes: the first
    length under 1 byte per value for a mixed fleet (docs/performance.md)."""
    compact_interval: float = 60.0
    """Seconds between compaction passes (raw batches and minutes into chunks)."""
    max_store_size: int = 0
    """Bound on the bytes the store takes on disk (SQLite: the file's used pages;
    Postgres: the metric tables with their partitions, indexes and TOAST). Past
    it the oldest chunks of the largest tier are dropped first, and ``status``
    says so. 0: the default, half of the free disk at start (plus what the store
    holds) on SQLite, 100G on Postgres. Accepts suffixes: ``500M``, ``50G``, ``2T``."""
    event_retention: float = 30 * 86400.0
    """Seconds events (and expired join tokens) are kept."""
    retention_interval: float = 60.0
    """Seconds between retention sweeps."""
    max_frame_bytes: int = 1024 * 1024
    """Largest protocol frame accepted from an agent, in bytes."""
    data_dir: str = ""
    """Where the host key and the SQLite store live. Empty: XDG data dir."""
    auto_drain: bool = False
    """Drain machines whose healthchecks fail, and undrain them when the checks
    pass again (only machines drained this way; an operator's drain stays)."""
    exec_confirm_above: int = 50
    """``exec`` on more machines than this needs ``--yes`` (the CLI asks)."""
    audit_retention: float = 365 * 86400.0
    """Seconds exec audit records are kept."""
    copy_max_bytes: int = 16 * 1024**3
    """Largest upload one ``cp`` push may carry (all its files together)."""
    ssh_record_bytes: int = 0
    """Record the first this many bytes of every ``ssh`` session's output in
    ``<data_dir>/recordings/<session id>.out`` (named in its audit row); 0: no recording."""
    hooks: list[HookRule] = []
    """Hooks run on events (``[[server.hooks]]``); see ``HookRule``."""
    dead_retention: float = 30 * 86400.0
    """Seconds a dead machine stays listed before it is removed (0: forever).
    Its history stays until the metric retention removes it."""
    login_grace: float = 30.0
    """Seconds from TCP accept until a connection must be a registered agent or
    an authenticated operator; past it the connection is closed (as OpenSSH's
    LoginGraceTime)."""
    max_enrolling_per_source: int = 32
    """Connections from one address that may be enrolling (unknown key, not yet
    registered) at once; more are turned away as busy. 0: no limit."""
    connection_rate_per_source: float = 10.0
    """New connections per second accepted from one address (token bucket,
    refilled at this rate); past it a connection is closed before the SSH
    greeting and the client backs off. 0: no limit. Behind a load balancer
    that hides client addresses, or for many simulated machines on one host,
    raise it or set it to 0."""
    connection_burst_per_source: int = 10
    """Connections one address may open at once before the rate applies."""
    proxy_protocol_from: list[str] = []
    """Load balancers trusted to send a PROXY protocol header (v2 or v1) before
    the SSH bytes: addresses or networks (``["10.0.0.5", "10.0.1.0/24"]``; in
    the environment or a flag, comma-separated). A connection from one of them
    must start with a header, whose client address is then the connection's
    source: for the per-source limits above and in the logs. A header from
    any other address is refused. Empty: no proxy is trusted."""
    host_key: str = ""
    """Private host-key file (OpenSSH format, e.g. from ``ssh-keygen -t ed25519``)
    to use instead of ``<data_dir>/ssh_host_ed25519_key``; it must exist. The
    replicas of a replica set share one, so that clients pin one key whichever
    replica answers (docs/deployment.md)."""
    max_keys_per_batch: int = 4096
    """Distinct metric keys one batch may carry."""
    max_keys_per_machine: int = 8192
    """Distinct metric keys one machine may use within an hour; a batch that
    would go past it is refused (acknowledged, not stored), with an event and
    a ``status`` problem."""

    def server_dir(self) -> Path:
        return Path(self.data_dir) if self.data_dir else paths.server_dir()

    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.server_dir() / 'centrality.db'}"


_DURATIONS = {"heartbeat_interval", "limbo_after", "dead_after", "raw_retention",
              "rollup_retention", "event_retention", "retention_interval", "audit_retention",
              "dead_retention", "login_grace", "hour_retention", "chunk_seconds",
              "compact_interval", "replica_lease", "replica_renew_interval"}
_SIZES = {"max_store_size"}
_SIZE_UNITS = {"": 1, "K": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12,
               "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}
_BOOLS = {"auto_drain"}
_INTS = {"max_frame_bytes", "exec_confirm_above", "max_enrolling_per_source", "connection_burst_per_source",
         "max_keys_per_batch", "max_keys_per_machine", "ssh_record_bytes", "copy_max_bytes"}
_FLOATS = {"connection_rate_per_source"}
_LISTS = {"proxy_protocol_from"}


def config_file() -> Path:
    return Path(os.environ.get("CENTRALITY_CONFIG") or paths.config_dir() / "config.toml")


def _file_section(section: str) -> dict[str, Any]:
    path = config_file()
    try:
        doc = msgspec.toml.decode(path.read_bytes())
    except FileNotFoundError:
        return {}
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    value = doc.get(section, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{section}] must be a table")
    return value


def _coerce(field: str, value: Any) -> Any:
    """Turn a duration or a byte count given as text into a number (UsageError if bad)."""
    if field in _DURATIONS:
        return durations.parse(value)
    if field in _SIZES and not isinstance(value, int):
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?I?)B?\s*", str(value).upper())
        if not m:
            raise UsageError(f"{field} must be a size such as 500M or 50G, not {value!r}")
        return int(float(m[1]) * _SIZE_UNITS[m[2] + ("B" if m[2].endswith("I") else "")])
    if field in _INTS:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise UsageError(f"{field} must be a whole number, not {value!r}") from None
    if field in _FLOATS:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{field} must be a number, not {value!r}") from None
    if field in _BOOLS and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise UsageError(f"{field} must be true or false, not {value!r}")
    if field in _LISTS and isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if field == "hooks":
        if isinstance(value, str):  # CENTRALITY_HOOKS: a JSON list of rules
            try:
                value = msgspec.json.decode(value)
            except msgspec.DecodeError as exc:
                raise UsageError(f"hooks must be a JSON list of rules: {exc}") from None
        if isinstance(value, list):
            return [{**r, "timeout": durations.parse(r["timeout"])} if isinstance(r, dict) and "timeout" in r
                    else r for r in value]
    return value


def resolve_server(flags: dict[str, Any] | None = None) -> ServerSettings:
    """Merge defaults, config file, environment and flags (``None`` = not given).

    A bad value in the config file is a ``ConfigError`` naming the file; a bad
    value in the environment or a flag is a ``UsageError``.
    """
    merged: dict[str, Any] = {}
    for field, value in _file_section("server").items():
        try:
            merged[field] = _coerce(field, value)
        except UsageError as exc:
            raise ConfigError(f"{config_file()}: [server] {field}: {exc.reason}") from None
    for field in ServerSettings.__struct_fields__:
        env = os.environ.get(f"CENTRALITY_{field.upper()}")
        if env is not None:
            try:
                merged[field] = _coerce(field, env)
            except UsageError as exc:
                raise UsageError(f"CENTRALITY_{field.upper()}: {exc.reason}") from None
    merged.update({k: _coerce(k, v) for k, v in (flags or {}).items() if v is not None})
    try:
        return msgspec.convert(merged, ServerSettings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid server settings: {exc}") from None
