"""Example: an inventory for a real GPU cluster. Copy it, put in your hosts, then:

    centrality login cp.example.org:8022                          # once: pin the control plane
    centrality provision inventories/gpu_cluster.py --dry         # what would change, where
    centrality provision inventories/gpu_cluster.py --yes         # install, join, start, wait
    centrality provision inventories/gpu_cluster.py --limit h100 --yes    # one group only
    centrality deprovision inventories/gpu_cluster.py --limit gpu-17 --yes

This is a standard pyinfra inventory (https://docs.pyinfra.com/en/3.x/inventory-data.html):
every module-level list, or (hosts, data) tuple, is a group; a host is a name or a
(name, data) tuple. Names starting with "_" are not groups. Every group a host is in
becomes a machine label "<group>=true" (so `-l h100=true` targets the H100 nodes);
pyinfra also puts every host in the group named after this file (gpu_cluster=true).
"""

# Settings shared by every host. Anything can also go in group_data/all.py next to
# this file, or per group, or per host (host data wins over group data).
_common = {
    # How pyinfra logs in: a user with passwordless sudo, and a key for the fleet.
    "ssh_user": "deploy",
    "ssh_key": "~/.ssh/id_ed25519_fleet",
    # Check host keys against a known_hosts file you maintain (recommended), rather
    # than trusting whatever key a host presents the first time.
    "ssh_known_hosts_file": "~/.ssh/known_hosts_fleet",
    "ssh_strict_host_key_checking": "yes",
    # Installing under /opt and a systemd unit needs root: run operations with sudo.
    "_sudo": True,
    # Where agents reach the control plane, when it is not the address the control
    # plane advertises (e.g. a load balancer in front of several replicas).
    "centrality_address": "cp.internal.example.org:8022",
    # No internet on the nodes? Point pip at a mirror for the agent's dependencies.
    # "centrality_pip_args": "--index-url https://pypi.internal.example.org/simple",
    # Where the agent lives on each host (default /opt/centrality).
    # "centrality_prefix": "/opt/centrality",
}


def _nodes(prefix, count, domain="dc1.example.org"):
    """("gpu-01", {"ssh_hostname": "gpu-01.dc1.example.org"}), ...: short machine names."""
    return [(f"{prefix}-{i:02d}", {"ssh_hostname": f"{prefix}-{i:02d}.{domain}"}) for i in range(1, count + 1)]


# Training nodes: 8x H100 each. Labels: h100=true, pool=train.
h100 = (_nodes("gpu", 16), {**_common, "centrality_labels": {"pool": "train"}})

# Inference nodes: 4x L40S each, on a non-standard SSH port. Labels: l40s=true, pool=serve.
l40s = (_nodes("inf", 8), {**_common, "ssh_port": 2222, "centrality_labels": {"pool": "serve"}})

# The CPU boxes that run evaluation; one of them is named explicitly and uses its own prefix.
eval_pool = (
    [
        ("cpu-01", {"ssh_hostname": "cpu-01.dc1.example.org"}),
        ("cpu-02", {"ssh_hostname": "10.20.0.12", "centrality_name": "cpu-02",
                    "centrality_prefix": "/srv/centrality"}),
    ],
    {**_common, "centrality_labels": {"pool": "eval"}},
)
