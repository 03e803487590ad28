"""compose.yaml, its Dockerfiles and inventories/compose.py must agree (Docker does not run in CI).

Also: every example inventory loads, and each of its hosts has valid provisioning settings.
"""

from __future__ import annotations

import re
import runpy
import shlex
from pathlib import Path

import pytest
import yaml

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


def test_services_and_images(compose):
    s = services(compose)
    assert {"postgres", "controlplane", "keygen", "vm", "provisioner"} <= set(s)
    assert s["postgres"]["image"].startswith("postgres:")
    cp_image = s["controlplane"]["image"]
    assert "centrality.Dockerfile" in dockerfile(s["controlplane"]).name
    # keygen and the provisioner run the image the control plane service builds.
    for name in ("keygen", "provisioner"):
        assert s[name]["image"] == cp_image and "build" not in s[name]
        assert s[name].get("pull_policy") == "never"
    assert dockerfile(s["vm"]).name == "vm.Dockerfile"


def test_control_plane_uses_postgres_and_advertises_its_service_name(compose):
    s = services(compose)
    env = s["postgres"]["environment"]
    argv = s["controlplane"]["command"]
    assert argv[:2] == ["centrality", "server"]
    db = argv[argv.index("--db") + 1]
    assert db == (f"postgresql+psycopg://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}"
                  f"@postgres:5432/{env['POSTGRES_DB']}")
    _, listen_port = split_address(argv[argv.index("--listen") + 1])
    host, port = split_address(argv[argv.index("--advertise") + 1])
    assert (host, port) == ("controlplane", listen_port)
    assert s["controlplane"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert s["controlplane"]["healthcheck"]["test"][1:] == ["centrality", "status"]
    assert f"EXPOSE {listen_port}" in dockerfile(s["controlplane"]).read_text()


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
    assert p["depends_on"]["controlplane"]["condition"] == "service_healthy"
    assert p["depends_on"]["vm"]["condition"] == "service_healthy"
    # It logs in to the control plane service with the operator key the server made in its HOME.
    login = shlex.split(next(line for line in script.splitlines() if "centrality login" in line))
    assert login[2] == s["controlplane"]["command"][s["controlplane"]["command"].index("--advertise") + 1]
    cp_home = s["controlplane"]["environment"]["HOME"]
    key = login[login.index("--key") + 1]
    assert key == f"{cp_home}/.config/centrality/keys/operator_ed25519"
    assert f"cp-home:{cp_home}" in s["controlplane"]["volumes"]
    assert f"cp-home:{cp_home}:ro" in p["volumes"]
    assert f"{cp_home}/.local/share/centrality/server/ssh_host_ed25519_key.pub" in script
    assert set(compose["volumes"]) >= {"pgdata", "cp-home", "keys"}


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
