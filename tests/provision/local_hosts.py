"""Local test hosts for provisioning: real OpenSSH sshd processes on 127.0.0.x.

Used by the provisioning tests, and by hand to try ``centrality provision`` on one
machine::

    python -m tests.provision.local_hosts --count 2 --out local-hosts.json
    # (in another terminal, with a control plane running)
    CENTRALITY_LOCAL_HOSTS=local-hosts.json centrality provision inventories/local.py

It writes the JSON that ``inventories/local.py`` reads and keeps the sshd processes
running until Ctrl-C. Each host gets its own prefix under ``--prefix-root``.
"""

from __future__ import annotations

import argparse
import json
import signal
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tests.fixtures.sshd import SshdInstance, start_sshd


@dataclass
class LocalHost:
    """One inventory entry: a name, the sshd it logs in to, the key it uses."""

    name: str
    sshd: SshdInstance
    prefix: Path
    groups: list[str] = field(default_factory=list)
    key: Path | None = None
    """Login key; default the one the sshd authorises (another one makes auth fail)."""
    port: int | None = None
    """Port to connect to; default the sshd's (another one makes the host unreachable)."""

    def entry(self) -> dict:
        known_hosts = self.sshd.workdir / "known_hosts"
        known_hosts.write_text(self.sshd.known_hosts_line() + "\n")
        return {
            "name": self.name, "host": self.sshd.host, "port": self.port or self.sshd.port,
            "user": self.sshd.user, "key": str(self.key or self.sshd.client_key_path),
            "known_hosts": str(known_hosts), "prefix": str(self.prefix), "groups": self.groups,
        }


def write_hosts_file(path: Path, hosts: list[LocalHost]) -> Path:
    path.write_text(json.dumps({"hosts": [h.entry() for h in hosts]}, indent=2) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.provision.local_hosts")
    parser.add_argument("--count", type=int, default=2)
    parser.add_argument("--out", default="local-hosts.json")
    parser.add_argument("--prefix-root", default="/tmp/centrality-local")
    args = parser.parse_args()
    started = []
    try:
        hosts = []
        for i in range(args.count):
            sshd = start_sshd(f"127.0.0.{i + 2}")
            started.append(sshd)
            hosts.append(LocalHost(f"node-{i + 1}", sshd, Path(args.prefix_root) / f"node-{i + 1}",
                                   groups=["gpu" if i % 2 == 0 else "cpu"]))
        write_hosts_file(Path(args.out), hosts)
        for h in hosts:
            print(f"{h.name}: {h.sshd.user}@{h.sshd.host}:{h.sshd.port} prefix {h.prefix}")
        print(f"wrote {args.out}; Ctrl-C stops the hosts (run `centrality deprovision` first)")
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        for sshd in started:
            sshd.stop()
            shutil.rmtree(sshd.workdir, ignore_errors=True)


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    main()
