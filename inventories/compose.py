"""Inventory of the simulated VMs of compose.yaml, for the `provisioner` service.

    docker compose up --scale vm=5       # the provisioner runs:
    centrality provision inventories/compose.py --yes --wait 180s

The VMs are the replicas of the compose service ``vm``: Docker's DNS gives the
address of every replica for the name ``vm``, and the container name of each
address (``centrality-vm-3``), which becomes the host and machine name. Set
``CENTRALITY_COMPOSE_VMS=centrality-vm-1,centrality-vm-2`` to list them instead.

They are throwaway containers on the compose network whose host keys are made
at every start, so host keys are not checked (do not copy that to real hosts:
see inventories/gpu_cluster.py).
"""

import os
import socket

#: Where the `keygen` service puts the key pair (the `keys` volume).
SSH_KEY = "/keys/provisioner"
VM_SERVICE = "vm"


def _discover():
    """(name, address) of each replica of the `vm` service, by DNS."""
    listed = os.environ.get("CENTRALITY_COMPOSE_VMS", "")
    if listed:
        return [(n.strip(), n.strip()) for n in listed.split(",") if n.strip()]
    try:
        infos = socket.getaddrinfo(VM_SERVICE, 22, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise SystemExit(f"inventories/compose.py: no '{VM_SERVICE}' service to resolve: "
                         "run this inside compose (the provisioner service)") from None
    found = []
    for address in sorted({info[4][0] for info in infos}):
        try:
            # "centrality-vm-3.centrality_default" -> "centrality-vm-3"
            name = socket.gethostbyaddr(address)[0].split(".")[0]
        except OSError:
            name = "vm-" + address.replace(".", "-")
        found.append((name, address))
    return sorted(found, key=lambda pair: (len(pair[0]), pair[0]))


vms = (
    [(name, {"ssh_hostname": address}) for name, address in _discover()],
    {
        "ssh_user": "root",
        "ssh_port": 22,
        "ssh_key": SSH_KEY,
        "ssh_strict_host_key_checking": "no",
        "ssh_known_hosts_file": "/dev/null",
        "ssh_connect_retries": 3,
        "centrality_labels": {"pool": "simulated"},
    },
)
