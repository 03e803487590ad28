"""The pyinfra deploy that stops a Centrality agent and removes it from each host.

``centrality deprovision INVENTORY.py`` runs it and then revokes each agent's key
(``agent:NAME``) and declares the machine dead; with plain pyinfra::

    pyinfra -y inventories/local.py provision/remove.py
    centrality keys revoke agent:NAME          # for each host: pyinfra cannot do this part

It stops the systemd unit (and removes it) or the fallback supervisor, then removes
the prefix, only if it carries the ``.centrality-prefix`` marker that provisioning
writes (so a mistyped ``centrality_prefix`` never deletes someone else's directory).
A second run finds nothing to remove and changes nothing.
"""

from shlex import quote

from pyinfra import host
from pyinfra.operations import files, server, systemd

from provision.facts import AgentHost
from provision.settings import resolve

s = resolve(host.name, host.data, host.groups)
L = s.layout
state = host.get_fact(AgentHost, prefix=L.prefix, python=s.python, service=s.service)

if state.unit:
    if state.systemd:
        systemd.service(name="Stop the agent (systemd)", service=f"{s.service}.service", running=False,
                        enabled=False)
    files.file(name="Remove the systemd unit", path=s.unit_path, present=False)
    if state.systemd:
        systemd.daemon_reload(name="Reload systemd")

if state.supervised:
    server.shell(name="Stop the agent", commands=[f"{quote(L.supervisor)} stop"])

if state.marker:
    files.directory(name="Remove the agent prefix", path=L.prefix, present=False)
