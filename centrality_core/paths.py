"""Where Centrality keeps its files (XDG base directories).

Everything lives under ``$XDG_CONFIG_HOME/centrality`` (default
``~/.config/centrality``) and ``$XDG_DATA_HOME/centrality`` (default
``~/.local/share/centrality``), so another ``HOME`` is another installation.

config dir:  config.toml      settings (see ``settings.py``)
             contexts.toml    control planes this user can reach
             keys/            the user's operator key
             agent/           the default agent config dir (agent.toml, key)
data dir:    server/          host key and the SQLite store of a control plane
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec


def _base(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value and os.path.isabs(value) else Path.home() / default


def config_dir() -> Path:
    return _base("XDG_CONFIG_HOME", ".config") / "centrality"


def data_dir() -> Path:
    return _base("XDG_DATA_HOME", ".local/share") / "centrality"


def server_dir() -> Path:
    return data_dir() / "server"


def agent_dir() -> Path:
    return config_dir() / "agent"


def private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed and return it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by its owner only."""
    private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def read_toml(path: Path, type: type):
    """Decode a TOML file into ``type``; a missing file gives the defaults."""
    from .errors import ConfigError

    try:
        return msgspec.toml.decode(path.read_bytes(), type=type)
    except FileNotFoundError:
        return type()
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def write_toml(path: Path, value: object) -> None:
    write_private(path, msgspec.toml.encode(value))
