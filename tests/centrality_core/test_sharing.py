"""The pure parts of shared connections: when sharing is on, where its socket may
live, the frames (over a real socket pair). The master and the CLI over a real
control plane: tests/integration/test_shared_connection.py."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from centrality_cli.sharemaster import _argv
from centrality_core import sharing
from centrality_core.errors import ConfigError


@pytest.fixture
def runtime(monkeypatch):
    """A short runtime dir: a socket path holds ~104 bytes, and pytest's own dirs can be longer."""
    base = Path(tempfile.mkdtemp(prefix="centrality-rt-"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    monkeypatch.delenv("CENTRALITY_PERSIST", raising=False)
    yield base / "centrality"
    shutil.rmtree(base, ignore_errors=True)


def test_sharing_is_off_unless_asked_and_the_environment_wins(runtime, monkeypatch):
    assert sharing.persist_seconds("") == 0
    assert sharing.persist_seconds("10m") == 600
    monkeypatch.setenv("CENTRALITY_PERSIST", "off")
    assert sharing.persist_seconds("10m") == 0
    monkeypatch.setenv("CENTRALITY_PERSIST", "90s")
    assert sharing.persist_seconds("") == 90
    monkeypatch.setenv("CENTRALITY_PERSIST", "0")
    assert sharing.persist_seconds("1h") == 0


@pytest.mark.parametrize("bad", ["soon", "-5s", "10 parsecs"])
def test_a_persist_that_is_no_duration_is_a_clear_error(runtime, bad):
    with pytest.raises(ConfigError, match="persist"):
        sharing.persist_seconds(bad)


def test_the_socket_directory_is_made_private(runtime):
    path = sharing.runtime_dir()
    assert path == runtime
    assert path.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o701])
def test_a_directory_others_can_enter_is_refused(runtime, mode):
    runtime.mkdir(mode=0o700)
    runtime.chmod(mode)
    with pytest.raises(ConfigError, match="not a private directory"):
        sharing.runtime_dir()


def test_a_symlink_in_place_of_the_directory_is_refused(runtime, tmp_path):
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    runtime.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="not a private directory"):
        sharing.runtime_dir()


def test_without_a_runtime_dir_the_socket_goes_to_a_per_user_temp_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))

    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    assert sharing.runtime_dir() == tmp_path / f"centrality-{os.geteuid()}"


def test_one_socket_per_control_plane_key_and_login(runtime):
    a = sharing.socket_path("127.0.0.1:8022", "SHA256:x", "/k/operator", "operator")
    assert a == sharing.socket_path("127.0.0.1:8022", "SHA256:x", "/k/operator", "operator")
    others = {sharing.socket_path("127.0.0.1:8023", "SHA256:x", "/k/operator", "operator"),
              sharing.socket_path("127.0.0.1:8022", "SHA256:y", "/k/operator", "operator"),
              sharing.socket_path("127.0.0.1:8022", "SHA256:x", "/k/other", "operator"),
              sharing.socket_path("127.0.0.1:8022", "SHA256:x", "/k/operator", "viewer")}
    assert a not in others and len(others) == 4
    assert len(str(a)) <= sharing.MAX_SOCKET_PATH


def test_a_socket_path_too_long_for_unix_sockets_is_not_used(tmp_path, monkeypatch):
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
    with pytest.raises(ConfigError, match="too long"):
        sharing.socket_path("a:1", "f", "k", "u")


async def test_frames_round_trip_and_an_oversized_one_is_refused():
    left, right = socket.socketpair()
    reader, left_writer = await asyncio.open_connection(sock=left)
    right_reader, writer = await asyncio.open_connection(sock=right)
    writer.write(sharing.frame(sharing.STDOUT, b"hello") + sharing.frame(sharing.EXIT, b"0"))
    writer.write(sharing.frame(sharing.STDOUT, b"")[:1] + (sharing.MAX_FRAME + 1).to_bytes(4, "big"))
    await writer.drain()
    assert await sharing.read_frame(reader) == (sharing.STDOUT, b"hello")
    assert await sharing.read_frame(reader) == (sharing.EXIT, b"0")
    with pytest.raises(ValueError, match="frame of"):
        await sharing.read_frame(reader)
    writer.close()
    left_writer.close()


@pytest.mark.parametrize("payload", [b"", b"{", b"[]", b'"x"', b'{"argv": []}', b'{"argv": "status"}',
                                     b'{"argv": ["status", 1]}', b'{"argv": null}', b"\xff\xfe"])
def test_the_master_takes_only_a_list_of_strings(payload):
    assert _argv(payload) is None


def test_the_master_takes_a_request_line():
    assert _argv(b'{"argv": ["machines", "ls", "--state", "live"]}') == ["machines", "ls", "--state", "live"]


async def test_no_link_to_a_socket_nobody_listens_on_or_that_is_no_socket(runtime):
    sharing.runtime_dir()
    stale = runtime / "s-stale"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # bound, never listening: what a master killed with -9 leaves
    assert await sharing.Link.open(stale) is None
    plain = runtime / "s-file"
    plain.write_text("")
    assert await sharing.Link.open(plain) is None
    assert await sharing.Link.open(runtime / "s-missing") is None
