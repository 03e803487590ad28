"""Inventory of local test hosts: OpenSSH sshd processes on 127.0.0.x of this machine.

The hosts are described by a JSON file named by ``$CENTRALITY_LOCAL_HOSTS``
(default ``./local-hosts.json``), written by whoever started the sshd processes
(the provisioning tests, or ``python -m tests.provision.local_hosts``)::

    {"hosts": [{"name": "node-1", "host": "127.0.0.2", "port": 40123, "user": "root",
                "key": "/tmp/.../client_ed25519", "known_hosts": "/tmp/.../known_hosts",
                "prefix": "/tmp/.../node-1", "groups": ["gpu"]}]}

All "hosts" are this machine, so each one needs its own ``centrality_prefix``
(default ``$CENTRALITY_LOCAL_PREFIX/<name>``, itself defaulting to
``/tmp/centrality-local``); machine names differ, so their agents do not collide.

    centrality provision inventories/local.py --yes
"""

import json
import os

_path = os.environ.get("CENTRALITY_LOCAL_HOSTS", "local-hosts.json")
_base = os.environ.get("CENTRALITY_LOCAL_PREFIX", "/tmp/centrality-local")

try:
    with open(_path, encoding="utf-8") as _f:
        _hosts = json.load(_f)["hosts"]
except FileNotFoundError:
    raise SystemExit(f"inventories/local.py: no {_path}: start local test hosts first "
                     "(python -m tests.provision.local_hosts) or set CENTRALITY_LOCAL_HOSTS") from None


def _data(h):
    data = {
        "ssh_hostname": h["host"],
        "ssh_port": int(h["port"]),
        "ssh_user": h.get("user", "root"),
        "ssh_key": h["key"],
        "centrality_prefix": h.get("prefix") or f"{_base}/{h['name']}",
    }
    if h.get("known_hosts"):
        # The test hosts' host keys are known: check them strictly.
        data["ssh_known_hosts_file"] = h["known_hosts"]
        data["ssh_strict_host_key_checking"] = "yes"
    return data


# Each group in the JSON becomes a module-level list, which pyinfra reads as a group
# (and provisioning turns into the machine label <group>=true). Hosts without groups
# go in `local`, the group pyinfra names after this file anyway.
for _group in sorted({g for h in _hosts for g in h.get("groups") or ["local"]}):
    globals()[_group] = [(h["name"], _data(h)) for h in _hosts if _group in (h.get("groups") or ["local"])]
