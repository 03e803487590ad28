"""What provisioning needs from `centrality agent join`: the join string on stdin ('-'),
so it is never on a command line, and --label KEY=VALUE written to agent.toml."""

from __future__ import annotations

import subprocess
import sys

import msgspec

from centrality_core import joinstring
from tests.conftest import REPO, cli_env

JOIN = joinstring.encode("127.0.0.1:8022", "SHA256:" + "A" * 43, "abcd1234.secret")


def join(home, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "centrality_cli", "agent", "join", *args], input=stdin,
                          capture_output=True, text=True, env=cli_env(home), cwd=str(REPO), timeout=60)


def test_join_reads_stdin_and_writes_labels(home, tmp_path):
    cfg = tmp_path / "agent"
    r = join(home, "-", "--name", "node-1", "--label", "gpu=true", "--label", "pool=eval",
             "--config-dir", str(cfg), stdin=JOIN + "\n")
    assert r.returncode == 0, r.stderr
    doc = msgspec.toml.decode((cfg / "agent.toml").read_bytes())
    assert doc["name"] == "node-1" and doc["join_token"] == "abcd1234.secret"
    assert doc["labels"] == {"gpu": "true", "pool": "eval"}
    assert (cfg / "id_ed25519").exists()

    # Joining again without --label keeps the labels; with --label replaces them.
    assert join(home, JOIN, "--config-dir", str(cfg)).returncode == 0
    assert msgspec.toml.decode((cfg / "agent.toml").read_bytes())["labels"] == {"gpu": "true", "pool": "eval"}
    assert join(home, JOIN, "--label", "cpu=true", "--config-dir", str(cfg)).returncode == 0
    assert msgspec.toml.decode((cfg / "agent.toml").read_bytes())["labels"] == {"cpu": "true"}


def test_join_refuses_a_label_without_a_value(home, tmp_path):
    r = join(home, JOIN, "--label", "gpu", "--config-dir", str(tmp_path / "agent"))
    assert r.returncode == 2
    assert "expected KEY=VALUE" in r.stderr
    assert not (tmp_path / "agent" / "agent.toml").exists()
