"""compose.yaml, its Dockerfiles, docker/haproxy.cfg and inventories/compose.py must agree
(Docker does not run in CI; the HAProxy file itself runs in tests/integration/test_haproxy.py).

Also: every example inventory loads, and each of its hosts has valid provisioning settings.
"""

from __future__ import annotations

import ipaddress
import re
import runpy
import shlex
from pathlib import Path

import pytest
import yaml

from centrality_core import durations
from centrality_core.contexts import split_address
from provision.settings import resolve

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def services(compose) -> dict:
    return compose["services"]


def command_text(service: dict) -> str:
    cmd = service.get("command", "")
    return cmd if isinstance(cmd, str) else " ".join(cmd)


def dockerfile(service: dict) -> Path:
    build = service["build"]
    path = REPO / build["context"] / build.get("dockerfile", "Dockerfile")
    assert path.is_file(), f"{path} is missing"
    return path


def groups_of(path: Path, monkeypatch, **env) -> dict[str, tuple[list, dict]]:
    """An inventory file's groups as pyinfra reads them: lists, or (hosts, data) tuples."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    attrs = runpy.run_path(str(path))
    out = {}
    for key, value in attrs.items():
        if key.startswith("_") or not isinstance(value, (list, tuple)):
            continue
        hosts, data = value if isinstance(value, tuple) else (value, {})
        out[key] = ([h if isinstance(h, tuple) else (h, {}) for h in hosts], data)
    return out


def host_settings(path: Path, monkeypatch, **env):
    groups = groups_of(path, monkeypatch, **env)
    hosts: dict[str, tuple[dict, list[str]]] = {}
    for group, (members, data) in groups.items():
        for name, host_data in members:
            merged, in_groups = hosts.get(name, ({}, []))
            hosts[name] = ({**merged, **data, **host_data}, in_groups + [group, path.stem])
    return {name: (data, resolve(name, data, set(g))) for name, (data, g) in hosts.items()}


REPLICAS = ("controlplane", "controlplane-2")


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def haproxy_cfg(service: dict) -> str:
    """The HAProxy configuration the ``haproxy`` image is built with."""
    text = dockerfile(service).read_text()
    copied = re.search(r"^COPY (\S+) (\S+)$", text, re.M)
    assert copied and copied.group(2) in text.split("CMD", 1)[1], "the image runs the file it copies"
    return (REPO / service["build"]["context"] / copied.group(1)).read_text()


def cfg_lines(cfg: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in cfg.splitlines() if line.split("#", 1)[0].strip()]


def test_services_and_images(compose):
    s = services(compose)
    assert {"postgres", *REPLICAS, "haproxy", "keygen", "vm", "provisioner"} <= set(s)
    assert s["postgres"]["image"].startswith("postgres:")
    cp_image = s["controlplane"]["image"]
    assert "centrality.Dockerfile" in dockerfile(s["controlplane"]).name
    # keygen, the second replica and the provisioner run the image the first replica builds.
    for name in ("keygen", "controlplane-2", "provisioner"):
        assert s[name]["image"] == cp_image and "build" not in s[name]
        assert s[name].get("pull_policy") == "never"
    assert dockerfile(s["vm"]).name == "vm.Dockerfile"
    # HAProxy is Debian's package, as in the tests (bootstrap.sh installs the same one).
    text = dockerfile(s["haproxy"]).read_text()
    assert re.search(r"^FROM debian:", text, re.M) and re.search(r"apt-get install .*\bhaproxy\b", text)
    assert "have_haproxy || missing+=(haproxy)" in (REPO / "scripts" / "bootstrap.sh").read_text()


def test_replicas_share_postgres_a_host_key_and_advertise_the_load_balancer(compose):
    s = services(compose)
    env = s["postgres"]["environment"]
    lb_port = int(s["haproxy"]["environment"]["CENTRALITY_LB_BIND"].rsplit(":", 1)[1])
    names, host_keys = [], set()
    for i, replica in enumerate(REPLICAS, 1):
        argv = s[replica]["command"]
        assert argv[:2] == ["centrality", "server"]
        assert flag(argv, "--db") == (f"postgresql+psycopg://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}"
                                      f"@postgres:5432/{env['POSTGRES_DB']}")
        names.append(flag(argv, "--replica"))
        # Join strings name HAProxy, not the replica: agents fail over through it.
        assert split_address(flag(argv, "--advertise")) == ("haproxy", lb_port)
        # HAProxy's server line for it is this service and its listen port.
        _, listen_port = split_address(flag(argv, "--listen"))
        assert split_address(s["haproxy"]["environment"][f"CENTRALITY_CP{i}"]) == (replica, listen_port)
        # The other replica dials this one directly (peering), not through HAProxy.
        assert split_address(flag(argv, "--peer-address")) == (replica, listen_port)
        assert f"EXPOSE {listen_port}" in dockerfile(s["controlplane"]).read_text()
        assert "ports" not in s[replica]  # reached through HAProxy only
        # One host key for the set, from the volume keygen writes, read-only here.
        key = flag(argv, "--host-key")
        host_keys.add(key)
        volume, mount = next((v.split(":")[0], v.split(":")[1]) for v in s[replica]["volumes"]
                             if key.startswith(v.split(":")[1] + "/"))
        assert f"{volume}:{mount}:ro" in s[replica]["volumes"]
        assert f"{volume}:{mount}" in s["keygen"]["volumes"] and f"-f {key}" in command_text(s["keygen"])
        assert s[replica]["healthcheck"]["test"][1:] == ["centrality", "status"]
    assert len(set(names)) == len(REPLICAS) and len(host_keys) == 1
    assert s["controlplane"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert s["controlplane"]["depends_on"]["keygen"]["condition"] == "service_completed_successfully"
    # The second starts once the first has migrated the fresh database.
    assert s["controlplane-2"]["depends_on"]["controlplane"]["condition"] == "service_healthy"
    homes = [next(v for v in s[r]["volumes"] if v.endswith(":/cp")) for r in REPLICAS]
    assert len(set(homes)) == len(REPLICAS)


def test_replicas_trust_proxy_headers_from_haproxys_fixed_address_only(compose):
    s = services(compose)
    address = s["haproxy"]["networks"]["default"]["ipv4_address"]
    subnet = ipaddress.ip_network(compose["networks"]["default"]["ipam"]["config"][0]["subnet"])
    assert ipaddress.ip_address(address) in subnet
    for replica in REPLICAS:
        assert flag(s[replica]["command"], "--proxy-protocol-from") == address


def test_haproxy_config_agrees_with_compose_and_the_replicas(compose):
    s = services(compose)
    lb = s["haproxy"]
    cfg = haproxy_cfg(lb)
    lines = cfg_lines(cfg)
    env = lb["environment"]
    # Every variable the file needs without a default is set by the service.
    optional = set(re.findall(r"^\.if defined\((\w+)\)", cfg, re.M))
    needed = {v for v in re.findall(r"\$\{(\w+)\}", cfg)} - optional
    assert needed == {"CENTRALITY_LB_BIND", "CENTRALITY_CP1", "CENTRALITY_CP2"} and needed <= set(env)
    assert 'bind "${CENTRALITY_LB_BIND}"' in lines
    servers = [line.split() for line in lines if line.startswith("server ")]
    assert [server[2] for server in servers] == ['"${CENTRALITY_CP1}"', '"${CENTRALITY_CP2}"']
    # TCP mode; every connection to a replica starts with a PROXY v2 header; health-checked
    # by the SSH greeting; sessions of a replica marked down are cut; a failed connect retried elsewhere.
    assert "mode tcp" in lines and "balance roundrobin" in lines
    (default_server,) = [line.split() for line in lines if line.startswith("default-server ")]
    for word in ("send-proxy-v2", "check", "on-marked-down", "shutdown-sessions"):
        assert word in default_server, word
    assert "option tcp-check" in lines and r"tcp-check expect rstring ^SSH-2\.0-" in lines
    assert any(line.startswith("option redispatch") for line in lines)
    assert "retries 3" in lines
    timeouts = dict(line.split()[1:3] for line in lines if line.startswith("timeout "))
    # Long-lived SSH: idle far longer than the control plane's 30 s keepalives to operators.
    for side in ("client", "server"):
        assert durations.parse(timeouts[side]) >= 600, timeouts
    assert durations.parse(timeouts["connect"]) <= 10
    # The published port is the one HAProxy binds; the descriptors fit its maxconn.
    port = int(env["CENTRALITY_LB_BIND"].rsplit(":", 1)[1])  # ":8022": every address
    assert lb["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f"EXPOSE {port}" in dockerfile(lb).read_text()
    maxconn = int(re.search(r'maxconn "\$\{CENTRALITY_LB_MAXCONN-(\d+)\}"', cfg).group(1))
    assert lb["ulimits"]["nofile"] >= 2 * maxconn
    for replica in REPLICAS:
        assert lb["depends_on"][replica]["condition"] == "service_healthy"


def test_vms_scale_and_run_sshd_and_python(compose):
    vm = services(compose)["vm"]
    assert "container_name" not in vm and "ports" not in vm  # `--scale vm=N` must work
    text = dockerfile(vm).read_text()
    for package in ("openssh-server", "python3", "python3-venv"):
        assert re.search(rf"\b{re.escape(package)}\b", text), package
    assert "EXPOSE 22" in text
    entry = re.search(r"COPY (\S+) (\S+)", text)
    assert (REPO / vm["build"]["context"] / entry.group(1)).is_file()
    assert entry.group(2) in text.split("ENTRYPOINT")[1]
    script = (REPO / vm["build"]["context"] / entry.group(1)).read_text()
    assert "/usr/sbin/sshd -D" in script
    # sshd is the container's only process, no init: agents run under the fallback supervisor.
    assert "exec /usr/sbin/sshd" in script and "init" not in text.split("ENTRYPOINT")[1]


def test_provisioner_provisions_the_compose_inventory(compose):
    s = services(compose)
    p = s["provisioner"]
    script = command_text(p)
    assert "centrality provision inventories/compose.py --yes" in script
    assert (REPO / p["working_dir"].replace("/src", ".") / "inventories" / "compose.py").is_file()
    assert "COPY inventories inventories/" in dockerfile(s["controlplane"]).read_text()
    assert "WORKDIR /src" in dockerfile(s["controlplane"]).read_text() and p["working_dir"] == "/src"
    assert p["depends_on"]["haproxy"]["condition"] == "service_healthy"
    assert p["depends_on"]["vm"]["condition"] == "service_healthy"
    # It logs in through HAProxy with the operator key the first replica made in its HOME.
    login = shlex.split(next(line for line in script.splitlines() if "centrality login" in line))
    assert login[2] == s["controlplane"]["command"][s["controlplane"]["command"].index("--advertise") + 1]
    assert login[2].startswith("haproxy:")
    cp_home = s["controlplane"]["environment"]["HOME"]
    key = login[login.index("--key") + 1]
    assert key == f"{cp_home}/.config/centrality/keys/operator_ed25519"
    assert f"cp-home:{cp_home}" in s["controlplane"]["volumes"]
    assert f"cp-home:{cp_home}:ro" in p["volumes"]
    # It pins the replica set's one host key, read from the volume keygen writes it to.
    host_key = flag(s["controlplane"]["command"], "--host-key")
    assert f"ssh-keygen -l -E sha256 -f {host_key}.pub" in script
    mount = host_key.rsplit("/", 1)[0]
    assert any(v.endswith(f":{mount}:ro") for v in p["volumes"])
    assert set(compose["volumes"]) >= {"pgdata", "cp-home", "cp2-home", "hostkey", "keys"}


def test_compose_inventory_matches_the_vms_and_the_keys(compose, monkeypatch):
    s = services(compose)
    hosts = host_settings(REPO / "inventories" / "compose.py", monkeypatch,
                          CENTRALITY_COMPOSE_VMS="centrality-vm-1,centrality-vm-2,centrality-vm-3")
    assert sorted(hosts) == ["centrality-vm-1", "centrality-vm-2", "centrality-vm-3"]
    # Container names of `vm` replicas are <project>-vm-<n>.
    assert all(name.startswith(f"{compose['name']}-vm-") for name in hosts)
    keygen = command_text(s["keygen"])
    for name, (data, settings) in hosts.items():
        assert data["ssh_user"] == "root" and data["ssh_port"] == 22
        key = data["ssh_key"]
        # keygen writes that key into the volume the provisioner mounts there...
        assert f"-f {key}" in keygen
        volume, mount = next((v.split(":")[0], v.split(":")[1]) for v in s["keygen"]["volumes"])
        assert key.startswith(mount + "/") and f"{volume}:{mount}:ro" in s["provisioner"]["volumes"]
        # ...and each VM authorises its public half.
        assert f"{volume}:{mount}:ro" in s["vm"]["volumes"]
        assert f"{key}.pub" in (REPO / "docker" / "vm-entrypoint.sh").read_text()
        assert settings.name == name
        assert settings.labels == {"vms": "true", "compose": "true", "pool": "simulated"}
        assert settings.layout.prefix == "/opt/centrality"


def test_gpu_cluster_example_is_a_valid_inventory(monkeypatch):
    hosts = host_settings(REPO / "inventories" / "gpu_cluster.py", monkeypatch)
    assert len(hosts) == 16 + 8 + 2
    data, settings = hosts["gpu-01"]
    assert data["ssh_hostname"] == "gpu-01.dc1.example.org" and data["_sudo"] is True
    assert settings.labels == {"gpu_cluster": "true", "h100": "true", "pool": "train"}
    assert hosts["inf-03"][0]["ssh_port"] == 2222
    assert hosts["cpu-02"][1].layout.prefix == "/srv/centrality"
    assert settings.address == "cp.internal.example.org:8022"
