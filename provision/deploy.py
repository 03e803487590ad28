"""The pyinfra deploy that installs, joins and starts a Centrality agent on each host.

A normal pyinfra deploy file: ``centrality provision INVENTORY.py`` runs it, shows
progress and then waits until each host's agent is live; the plain pyinfra command runs
it too (it then only does the host side: no waiting, no table)::

    pyinfra -y inventories/local.py provision/deploy.py

Join tokens are made by the deploy itself, one per host that joins, at the moment it
joins (``provision.ops.join``), with the operator's current context.

Every step is guarded by the host's state (one fact, ``provision.facts.AgentHost``) or
is an idempotent pyinfra operation, so a second run changes nothing:

1. Python 3 with ``venv`` (installed with the host's package manager when missing)
2. the prefix (``centrality_prefix``, default /opt/centrality) and a virtualenv in it
3. the agent wheel, uploaded under a path named by its sha256, installed with the
   agent's dependencies only (no ``[server]`` extras) when the installed sha differs
4. ``centrality agent join`` with a fresh single-use token (the key is generated on
   the host) when the host has not joined yet; else name and labels kept up to date
5. the systemd unit where systemd runs, else the fallback supervisor, started, and
   restarted when the wheel, name or labels changed

Host data keys are listed in ``provision/settings.py`` and docs/provisioning.md.
"""

from io import StringIO
from shlex import quote

from pyinfra import host
from pyinfra.operations import apk, apt, dnf, files, server, systemd, yum, zypper

from provision import ops, service, wheel
from provision.facts import AgentHost
from provision.settings import resolve

MARKER = "This directory is a Centrality agent prefix (centrality provision); deprovision removes it.\n"
PIP = "-m pip install --disable-pip-version-check --no-input -q"

s = resolve(host.name, host.data, host.groups)
L = s.layout
state = host.get_fact(AgentHost, prefix=L.prefix, python=s.python, service=s.service)
agent_wheel = wheel.for_deploy(host.data.get("centrality_wheel"))

# 1. Python 3 with venv -----------------------------------------------------------------
if not state.python_ok:
    if state.package_manager == "apt-get":
        apt.packages(name="Install Python 3 with venv", packages=["python3", "python3-venv"], update=True)
    elif state.package_manager == "dnf":
        dnf.packages(name="Install Python 3", packages=["python3"])
    elif state.package_manager == "yum":
        yum.packages(name="Install Python 3", packages=["python3"])
    elif state.package_manager == "apk":
        apk.packages(name="Install Python 3", packages=["python3"], update=True)
    elif state.package_manager == "zypper":
        zypper.packages(name="Install Python 3", packages=["python3"])
    else:
        server.shell(name="Install Python 3", commands=[
            f"echo {quote(f'no {s.python} >= 3.10 with venv, and no known package manager to install it')} >&2;"
            " exit 1"])

# 2. Prefix and virtualenv ---------------------------------------------------------------
files.directory(name="Create the agent prefix", path=L.prefix)
files.put(name="Mark the agent prefix", src=StringIO(MARKER), dest=L.marker, mode="644")
files.directory(name="Create the agent config directory", path=L.config_dir, mode="700")
if not state.venv:
    server.shell(name="Create the virtualenv", commands=[f"{quote(s.python)} -m venv {quote(L.venv)}"])

# 3. The agent wheel -----------------------------------------------------------------------
remote_wheel = L.wheel(agent_wheel.sha256, agent_wheel.filename)
files.put(name="Upload the agent wheel", src=str(agent_wheel.path), dest=remote_wheel, mode="644")
install = state.installed != agent_wheel.sha256
if install:
    pip_args = " ".join(quote(a) for a in s.pip_args)
    server.shell(name="Install the agent", commands=[
        # The wheel first (same version, new bytes: force it), then its dependencies.
        f"{quote(L.python)} {PIP} --no-deps --force-reinstall {quote(remote_wheel)}",
        f"{quote(L.python)} {PIP} {pip_args} {quote(remote_wheel)}",
        f"echo {agent_wheel.sha256} > {quote(L.installed)}",
        f"find {quote(L.dist)} -mindepth 1 -maxdepth 1 -type d ! -name {agent_wheel.sha256[:16]}"
        " -exec rm -rf {} +",
    ])

# 4. Join, or keep name and labels up to date ------------------------------------------------
settings_changed = False
if not state.joined:
    ops.join(name="Join the control plane", layout=L, machine=s.name, labels=s.labels,
             address=s.address, given=s.join)
elif state.agent_name != s.name or state.agent_labels != s.labels:
    ops.agent_settings(name="Set the machine name and labels", layout=L, machine=s.name, labels=s.labels)
    settings_changed = True

# 5. Keep the agent running ------------------------------------------------------------------
restart = install or settings_changed
if state.systemd:
    unit = files.put(name="Install the systemd unit", src=StringIO(service.systemd_unit(L)),
                     dest=s.unit_path, mode="644")
    systemd.service(name="Run the agent (systemd)", service=f"{s.service}.service", running=True,
                    enabled=True, restarted=restart, daemon_reload=unit.will_change)
else:
    script = files.put(name="Install the agent supervisor", src=StringIO(service.supervisor_script(L)),
                       dest=L.supervisor, mode="755")
    if not state.supervised:
        server.shell(name="Start the agent", commands=[f"{quote(L.supervisor)} start"])
    elif restart or script.will_change:
        server.shell(name="Restart the agent", commands=[f"{quote(L.supervisor)} restart"])
