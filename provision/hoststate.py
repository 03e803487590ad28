"""A host's provisioning state in one shell command, and the pure parser of its output.

``command()`` prints ``key=value`` lines (and ``agent.toml`` between markers);
``parse()`` turns them into a ``HostState``. ``provision.facts.AgentHost`` is the
pyinfra fact made of the two; tests feed ``parse()`` captured output.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

import msgspec

from .settings import Layout

MIN_PYTHON = (3, 10)
TOML_START, TOML_END = "agent_toml<<", ">>agent_toml"
PACKAGE_MANAGERS = ("apt-get", "dnf", "yum", "apk", "zypper")


@dataclass
class HostState:
    systemd: bool = False
    """systemd is the running init (``/run/systemd/system`` exists)."""
    python_version: tuple[int, int] | None = None
    """Version of the interpreter that creates the virtualenv; None: not found."""
    venv_module: bool = False
    """That interpreter has ``venv`` and ``ensurepip`` (Debian splits them out)."""
    package_manager: str = ""
    marker: bool = False
    prefix_exists: bool = False
    venv: bool = False
    installed: str = ""
    """sha256 of the wheel installed in the virtualenv."""
    public_key: str = ""
    supervisor: bool = False
    supervised: bool = False
    """The fallback supervisor is running."""
    unit: bool = False
    unit_active: str = ""
    joined: bool = False
    """``agent.toml`` exists."""
    agent_name: str | None = None
    agent_labels: dict[str, str] = field(default_factory=dict)
    complete: bool = False
    """The command ran to its end."""

    @property
    def python_ok(self) -> bool:
        return self.python_version is not None and self.python_version >= MIN_PYTHON and self.venv_module


def command(layout: Layout, python: str, service: str) -> str:
    q = shlex.quote
    p = layout
    unit = q(f"/etc/systemd/system/{service}.service")
    pms = " ".join(PACKAGE_MANAGERS)
    return "\n".join([
        f"PY={q(python)}",
        'if [ -d /run/systemd/system ]; then echo systemd=1; fi',
        'if command -v "$PY" >/dev/null 2>&1; then',
        '  echo "python=$("$PY" -c \'import sys; print("%d.%d" % sys.version_info[:2])\' 2>/dev/null)"',
        '  if "$PY" -c "import venv, ensurepip" >/dev/null 2>&1; then echo venv_module=1; fi',
        'fi',
        f'for pm in {pms}; do if command -v $pm >/dev/null 2>&1; then echo "package_manager=$pm"; break; fi; done',
        f'if [ -f {q(p.marker)} ]; then echo marker=1; fi',
        f'if [ -d {q(p.prefix)} ]; then echo prefix_exists=1; fi',
        f'if [ -x {q(p.python)} ]; then echo venv=1; fi',
        f'if [ -f {q(p.installed)} ]; then echo "installed=$(cat {q(p.installed)})"; fi',
        f'if [ -f {q(p.public_key)} ]; then echo "public_key=$(cat {q(p.public_key)})"; fi',
        f'if [ -x {q(p.supervisor)} ]; then echo supervisor=1;'
        f' if {q(p.supervisor)} status >/dev/null 2>&1; then echo supervised=1; fi; fi',
        f'if [ -f {unit} ]; then echo unit=1; fi',
        'if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then',
        f'  echo "unit_active=$(systemctl is-active {q(service + ".service")} 2>/dev/null)"',
        'fi',
        f'if [ -f {q(p.agent_toml)} ]; then echo {q(TOML_START)}; cat {q(p.agent_toml)}; echo; echo {q(TOML_END)}; fi',
        'echo end=1',
    ])


def parse(lines: list[str]) -> HostState:
    s = HostState()
    toml: list[str] | None = None
    for line in lines:
        if toml is not None:
            if line.strip() == TOML_END:
                _agent_toml(s, "\n".join(toml))
                toml = None
            else:
                toml.append(line)
            continue
        if line.strip() == TOML_START:
            toml, s.joined = [], True
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if key == "python":
            s.python_version = _version(value)
        elif key in ("systemd", "venv_module", "marker", "prefix_exists", "venv", "supervisor",
                     "supervised", "unit"):
            setattr(s, key, value == "1")
        elif key in ("package_manager", "installed", "public_key", "unit_active"):
            setattr(s, key, value)
        elif key == "end":
            s.complete = True
    return s


def _version(text: str) -> tuple[int, int] | None:
    try:
        major, minor = text.split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def _agent_toml(s: HostState, text: str) -> None:
    try:
        doc = msgspec.toml.decode(text.encode())
    except msgspec.DecodeError:
        return  # unreadable: name None makes the deploy rewrite name and labels
    name = doc.get("name")
    s.agent_name = name if isinstance(name, str) else None
    labels = doc.get("labels")
    if isinstance(labels, dict):
        s.agent_labels = {str(k): str(v) for k, v in labels.items()}
