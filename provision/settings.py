"""Per-host provisioning settings, from pyinfra host data. Pure: no pyinfra, no I/O.

Host data keys (set them per host, per group or for ``all`` in the inventory)::

    centrality_prefix   where the agent lives on the host        [/opt/centrality]
    centrality_name     machine name on the control plane         [the inventory host name]
    centrality_labels   extra labels, e.g. {"pool": "eval"}       [{}]
    centrality_python   interpreter that creates the virtualenv   [python3]
    centrality_service  systemd unit name (without .service)      [centrality-agent]
    centrality_pip_args extra `pip install` arguments (mirrors)   [none]
    centrality_address  HOST:PORT agents connect to               [the control plane's advertised address]
    centrality_join     a join string to use instead of making one per host
    centrality_wheel    the agent wheel to upload                 [built from this source tree]

Every inventory group a host is in (except pyinfra's implicit ``all``) becomes the
label ``<group>=true``; ``centrality_labels`` adds to and overrides those.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from centrality_core import names
from centrality_core.errors import UsageError

DEFAULT_PREFIX = "/opt/centrality"
DEFAULT_SERVICE = "centrality-agent"
DEFAULT_PYTHON = "python3"
#: Groups pyinfra puts every host in; they say nothing about a machine.
IMPLICIT_GROUPS = frozenset({"all"})
GROUP_LABEL_VALUE = "true"

_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._+@/-]*[A-Za-z0-9._+@-]$")
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")


@dataclass(frozen=True)
class Layout:
    """Where everything lives under a prefix on a host."""

    prefix: str

    def _p(self, *parts: str) -> str:
        return "/".join((self.prefix.rstrip("/"), *parts))

    @property
    def marker(self) -> str:
        """Says "this directory is a Centrality prefix": deprovision removes only such."""
        return self._p(".centrality-prefix")

    @property
    def venv(self) -> str:
        return self._p("venv")

    @property
    def python(self) -> str:
        return self._p("venv", "bin", "python")

    @property
    def centrality(self) -> str:
        return self._p("venv", "bin", "centrality")

    @property
    def dist(self) -> str:
        return self._p("dist")

    @property
    def installed(self) -> str:
        """Holds the sha256 of the wheel installed in the virtualenv."""
        return self._p("dist", "installed")

    def wheel(self, sha256: str, filename: str) -> str:
        """Uploaded wheels are versioned by content: a new build is a new path."""
        return self._p("dist", sha256[:16], filename)

    @property
    def config_dir(self) -> str:
        return self._p("etc", "agent")

    @property
    def agent_toml(self) -> str:
        return self._p("etc", "agent", "agent.toml")

    @property
    def public_key(self) -> str:
        return self._p("etc", "agent", "id_ed25519.pub")

    @property
    def join_file(self) -> str:
        """The join string, for the moment `agent join` reads it (inside the 0700 config dir)."""
        return self._p("etc", "agent", "join")

    @property
    def bin(self) -> str:
        return self._p("bin")

    @property
    def supervisor(self) -> str:
        return self._p("bin", "centrality-agent-supervise")

    @property
    def run_dir(self) -> str:
        return self._p("run")

    @property
    def pidfile(self) -> str:
        return self._p("run", "agent.pid")

    @property
    def log_dir(self) -> str:
        return self._p("var", "log")

    @property
    def log(self) -> str:
        return self._p("var", "log", "agent.log")


@dataclass(frozen=True)
class HostSettings:
    host: str
    """The inventory host name."""
    name: str
    """The machine name the agent registers under."""
    layout: Layout
    labels: dict[str, str] = field(default_factory=dict)
    python: str = DEFAULT_PYTHON
    service: str = DEFAULT_SERVICE
    pip_args: tuple[str, ...] = ()
    address: str = ""
    join: str = ""

    @property
    def unit_path(self) -> str:
        return f"/etc/systemd/system/{self.service}.service"


def resolve(host: str, data: Mapping[str, Any] | Any, groups: Iterable[str]) -> HostSettings:
    """Settings of one host from its data (a dict or pyinfra ``HostData``) and groups.

    Raises ``UsageError`` naming the host and the bad value.
    """

    def get(key: str, default: Any = None) -> Any:
        value = data.get(key, default)
        return default if value is None else value

    def bad(key: str, why: str) -> UsageError:
        return UsageError(f"host {host}: invalid {key}: {why}")

    prefix = str(get("centrality_prefix", DEFAULT_PREFIX)).rstrip("/") or "/"
    if not _SAFE_PATH.match(prefix) or any(p in ("", ".", "..") for p in prefix.split("/")[1:]):
        raise bad("centrality_prefix", f"{prefix!r} is not an absolute path of letters, digits "
                  "and ._+@-/ (and not '/')")
    name = str(get("centrality_name", "")) or names.from_hostname(host)
    if not names.is_valid(name):
        raise bad("centrality_name", f"{name!r}: a name is {names.NAME_RULE}")
    extra = get("centrality_labels", {})
    if not isinstance(extra, Mapping):
        raise bad("centrality_labels", "expected a dict of label -> value")
    labels = labels_for(groups, extra, host=host)
    service = str(get("centrality_service", DEFAULT_SERVICE))
    if not _SERVICE.match(service):
        raise bad("centrality_service", f"{service!r} is not a unit name")
    pip_args = get("centrality_pip_args", ())
    if isinstance(pip_args, str):
        pip_args = shlex.split(pip_args)
    python = str(get("centrality_python", DEFAULT_PYTHON))
    if not python or any(c.isspace() for c in python):
        raise bad("centrality_python", f"{python!r} is not a command name or path")
    return HostSettings(
        host=host, name=name, layout=Layout(prefix), labels=labels, python=python,
        service=service, pip_args=tuple(str(a) for a in pip_args),
        address=str(get("centrality_address", "")), join=str(get("centrality_join", "")),
    )


def labels_for(groups: Iterable[str], extra: Mapping[str, Any] | None = None, *,
               host: str = "?") -> dict[str, str]:
    """``<group>=true`` for each group but ``all``; ``extra`` adds and overrides."""
    labels = {g: GROUP_LABEL_VALUE for g in groups if g not in IMPLICIT_GROUPS}
    for key, value in (extra or {}).items():
        labels[str(key)] = str(value)
    for key, value in labels.items():
        if not _LABEL_KEY.match(key):
            raise UsageError(f"host {host}: invalid label {key!r}: a label key is 1-63 letters, digits "
                             "and ._/- starting with a letter or digit")
        if len(value) > 256 or any(not c.isprintable() for c in value):
            raise UsageError(f"host {host}: invalid value for label {key!r}: at most 256 printable characters")
    return dict(sorted(labels.items()))
