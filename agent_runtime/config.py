"""The agent's configuration: ``agent.toml`` and its key, in one directory.

Default directory: ``$XDG_CONFIG_HOME/centrality/agent`` (``--config-dir``
overrides it; provisioning uses ``/etc/centrality/agent``). ``centrality agent
join`` writes it; people may edit ``name`` and ``labels``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import msgspec

from centrality_core import endpoints, paths
from centrality_core.errors import ConfigError, UsageError

CONFIG_FILE = "agent.toml"
KEY_FILE = "id_ed25519"


class CheckConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A custom healthcheck: a command that exits 0 when the machine is fine.

    ``[[checks]]`` tables in agent.toml::

        [[checks]]
        name = "ib-link"
        command = ["/usr/local/bin/check-ib", "mlx5_0"]   # or one string, run with sh -c
        timeout = 5                                        # seconds [health_timeout]
    """

    name: str
    command: Union[list[str], str]
    timeout: Optional[float] = None


class AgentConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    address: str = ""
    """HOST:PORT of the control plane; several, comma-separated (replicas), are
    tried in turn, starting with the one that last answered."""
    fingerprint: str = ""
    """Pinned SHA256 fingerprint of the control plane's host key; several,
    comma-separated, are each accepted from any of the addresses."""
    name: str = ""
    """Machine name; empty: derived from the hostname."""
    labels: dict[str, str] = {}
    """Labels for targeting (``-l pool=eval``)."""
    join_token: str = ""
    """Join secret, presented once on first connect, then removed."""
    profile: str = "real"
    """Collectors: ``real``, or a simulated ``cpu`` / ``gpu8`` machine."""
    sample_interval: float = 1.0
    """Seconds between samples."""
    batch_interval: float = 5.0
    """Seconds between metric batches (each batch also counts as a heartbeat)."""
    buffer_max_samples: int = 3600
    """Samples kept while disconnected (oldest dropped first)."""
    buffer_max_age: float = 3600.0
    """Seconds a sample may wait for the control plane before it is dropped."""
    health_interval: float = 60.0
    """Seconds between rounds of healthchecks (built-in checks and ``checks``)."""
    health_timeout: float = 10.0
    """Seconds a check (nvidia-smi, a custom check) may take before it fails."""
    disk_max_percent: float = 95.0
    """The disk check fails when a filesystem is fuller than this."""
    memory_max_percent: float = 95.0
    """The memory check fails when more than this much memory is in use."""
    checks: list[CheckConfig] = []
    """Custom healthchecks (``[[checks]]``); exit status 0 passes."""
    exec_max_running: int = 16
    """Commands from operators (``centrality exec``) that may run at once."""
    kill_grace: float = 2.0
    """Seconds between SIGTERM and SIGKILL when a command's process group is ended."""
    run_as: str = ""
    """User that operators' commands (``exec``) run as, whose login shell ``centrality ssh``
    opens, and as whom ``centrality cp`` reads and writes files (empty: the agent's own user;
    another user needs an agent run as root). Healthchecks stay the agent's own."""
    files_root: str = ""
    """Directory that ``centrality cp`` paths are taken under, no symlink followed out of it
    (empty: ``/``). Simulated machines sharing one host each get their own."""


def default_dir() -> Path:
    return paths.agent_dir()


def load(config_dir: Path) -> AgentConfig:
    path = config_dir / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"no agent configuration in {config_dir}: run `centrality agent join JOIN_STRING` first")
    cfg = paths.read_toml(path, AgentConfig)
    if not cfg.address or not cfg.fingerprint:
        raise ConfigError(f"{path}: address and fingerprint are required")
    try:
        endpoints.addresses(cfg.address)
        endpoints.fingerprints(cfg.fingerprint)
    except UsageError as exc:
        raise ConfigError(f"{path}: {exc.reason}") from None
    return cfg


def save(config_dir: Path, cfg: AgentConfig) -> None:
    paths.write_toml(config_dir / CONFIG_FILE, cfg)
