"""A peer's part of a ``cp`` (control_plane/peer_copy.py) and the request a relayed shell
makes (control_plane/peer_shell.py), against an in-memory peer: what reaches the
operator's stream when the peer answers, speaks for machines it was not asked about,
skips one, or dies mid-copy."""

from __future__ import annotations

import asyncio
import json
import shlex

import msgspec

from control_plane.peer_copy import PeerCopy
from control_plane.peer_shell import peer_command


class FakeProcess:
    def __init__(self, lines: list[dict], *, then: Exception | None = None, status: int | None = 0) -> None:
        self.lines, self.then, self.status = lines, then, status
        self.stdin = self
        self.stdout = self._out()
        self.written = bytearray()
        self.eof = False
        self.closed = False

    async def _out(self):
        for line in self.lines:
            yield json.dumps(line).encode() + b"\n"
            await asyncio.sleep(0)
        if self.then is not None:
            raise self.then

    def write(self, data: bytes) -> None:
        self.written += data

    async def drain(self) -> None:
        pass

    def write_eof(self) -> None:
        self.eof = True

    async def wait(self):
        return type("Done", (), {"exit_status": self.status, "stderr": b""})()

    def close(self) -> None:
        self.closed = True


class FakePeers:
    connect_timeout = 5.0

    def __init__(self, process: FakeProcess) -> None:
        self.process = process
        self.asked: list[str] = []
        self.connection = self

    async def client(self, name):
        return self

    async def create_process(self, command, encoding=None):
        self.asked.append(command)
        return self.process


def _part(process: FakeProcess, names=("b1", "b2")) -> tuple[PeerCopy, FakePeers, list]:
    out: list = []
    peers = FakePeers(process)
    argv = ["cp", "get", "--include-drained", *names, "--", "/etc/hosts"]
    return PeerCopy(peers, "cp-b", list(names), argv, emit=out.append), peers, out


def _lines(out: list) -> list[dict]:
    return [json.loads(msgspec.json.encode(doc)) for doc in out]


async def test_the_peers_lines_reach_the_operator_as_they_came_and_only_for_its_machines():
    process = FakeProcess([
        {"type": "start", "machines": ["b1", "b2"], "skipped": [], "unknown": []},
        {"type": "begin", "machine": "b1", "size": 3},
        {"type": "data", "machine": "b1", "offset": 0, "data": "YWJj"},
        {"type": "data", "machine": "a9", "offset": 0, "data": "eHl6"},  # not asked of this peer
        {"type": "progress", "machines": {"b1": 3, "a9": 3}},
        {"type": "done", "machine": "b1", "status": "ok", "code": 0, "files": 1, "bytes": 3, "error": None,
         "sha256": "ba78"},
        {"type": "done", "machine": "b2", "status": "failed", "code": 1, "files": 0, "bytes": 0,
         "error": "/etc/hosts: no such file", "refusal": "not_found"},
        {"type": "summary", "exit_code": 1},
    ])
    part, peers, out = _part(process)
    await part.open()
    await part.wait()
    assert shlex.split(peers.asked[0]) == ["cp", "get", "--include-drained", "b1", "b2", "--", "/etc/hosts"]
    assert [(d["type"], d.get("machine")) for d in _lines(out)] == [
        ("begin", "b1"), ("data", "b1"), ("progress", None), ("done", "b1"), ("done", "b2")]
    assert _lines(out)[2]["machines"] == {"b1": 3}
    b1, b2 = part.copies["b1"], part.copies["b2"]
    assert (b1.status, b1.bytes, b1.sha256) == ("ok", 3, "ba78")
    assert (b2.status, b2.error, b2.code_name, b2.code) == ("failed", "/etc/hosts: no such file", "not_found", 1)
    assert part.failure == ""


async def test_a_peer_dying_mid_copy_ends_its_other_machines_unreachable_saying_why():
    process = FakeProcess([{"type": "start", "machines": ["b1", "b2"], "skipped": [], "unknown": []},
                           {"type": "done", "machine": "b1", "status": "ok", "code": 0, "files": 1, "bytes": 3,
                            "error": None}],
                          then=ConnectionResetError("Connection reset by peer"))
    part, _peers, out = _part(process)
    await part.open()
    await part.wait()
    last = _lines(out)[-1]
    assert (last["type"], last["machine"], last["status"], last["code"]) == ("done", "b2", "unreachable", 255)
    assert last["error"] == "replica cp-b went away during the copy (Connection reset by peer)"
    assert part.copies["b1"].status == "ok"


async def test_a_machine_the_peer_skipped_ends_with_the_peers_reason():
    process = FakeProcess([{"type": "start", "machines": ["b1"], "unknown": [],
                            "skipped": [{"machine": "b2", "reason": "limbo"}]},
                           {"type": "done", "machine": "b1", "status": "ok", "code": 0, "files": 1, "bytes": 3,
                            "error": None},
                           {"type": "summary", "exit_code": 0}])
    part, _peers, out = _part(process)
    await part.open()
    await part.wait()
    last = _lines(out)[-1]
    assert (last["machine"], last["status"], last["error"]) == ("b2", "unreachable", "limbo on replica cp-b")


async def test_an_upload_goes_to_the_peer_as_read_then_its_end():
    process = FakeProcess([], status=0)
    process.stdout = _until_eof(process)
    part, _peers, _out = _part(process, names=("b1",))
    await part.open()
    part.write(b'{"rel": "f", "size": 3, "sha256": "x"}\n')
    part.write(b"abc")
    await part.drain()
    part.write_eof()
    await part.wait()
    assert bytes(process.written) == b'{"rel": "f", "size": 3, "sha256": "x"}\nabc' and process.eof


async def _until_eof(process: FakeProcess):
    while not process.eof:
        await asyncio.sleep(0.01)
    yield json.dumps({"type": "done", "machine": "b1", "status": "ok", "code": 0, "files": 1, "bytes": 3,
                      "error": None}).encode()


def test_the_relayed_shell_request_passes_the_command_as_one_word():
    assert peer_command("gpu-07", "", force=False) == "ssh gpu-07"
    cmd = 'echo "a  b"; exit 4'
    assert shlex.split(peer_command("gpu-07", cmd, force=True)) == ["ssh", "--force", "gpu-07", "--", cmd]
