"""The agent wire protocol: golden frames, framing, validation and bounds.

The golden frames under ``tests/golden/v1/`` are hand-written JSON lines, one
file per message kind. They pin the v1 wire format: if a change to
``protocol.py`` makes any of them undecodable, deployed agents would break.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from centrality_core import protocol as p
from centrality_core.errors import MalformedFrame, UnknownKind

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "v1"

AGENT_TO_SERVER = {"hello", "heartbeat", "metrics", "output", "exit", "health",
                   "shell_output", "shell_exit", "file_done"}
SERVER_TO_AGENT = {"registered", "rejected", "command", "cancel", "metrics_ack", "metrics_resume",
                   "shell_open", "shell_input", "shell_resize", "shell_ack", "file_put", "file_get"}
BOTH = {"error", "unsupported", "file_chunk", "file_ack"}


def _all_message_classes() -> dict[str, type]:
    out = {}
    todo = list(p.Message.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        out[cls.__struct_config__.tag] = cls
    return out


CLASSES = _all_message_classes()


def _decoders(kind: str) -> list[p.Decoder]:
    if kind in AGENT_TO_SERVER:
        return [p.agent_decoder]
    if kind in SERVER_TO_AGENT:
        return [p.server_decoder]
    assert kind in BOTH, f"unclassified kind {kind!r}: add it to this test"
    return [p.agent_decoder, p.server_decoder]


def _golden_frames() -> list[tuple[str, int, bytes]]:
    frames = []
    for path in sorted(GOLDEN.glob("*.jsonl")):
        for lineno, line in enumerate(path.read_bytes().splitlines(), 1):
            if line.strip():
                frames.append((path.stem, lineno, line))
    return frames


FRAMES = _golden_frames()
FRAME_IDS = [f"{kind}:{lineno}" for kind, lineno, _ in FRAMES]


# ---------------------------------------------------------------- golden frames


def test_golden_files_cover_every_message_class():
    assert set(CLASSES) == AGENT_TO_SERVER | SERVER_TO_AGENT | BOTH
    files = {path.stem for path in GOLDEN.glob("*.jsonl")}
    assert files == set(CLASSES), f"missing golden files: {set(CLASSES) - files}, extra: {files - set(CLASSES)}"


def test_direction_unions_match_the_documented_directions():
    agent_kinds = {t.__struct_config__.tag for t in p.AgentMessage.__args__}
    server_kinds = {t.__struct_config__.tag for t in p.ServerMessage.__args__}
    assert agent_kinds == AGENT_TO_SERVER | BOTH
    assert server_kinds == SERVER_TO_AGENT | BOTH


@pytest.mark.parametrize("kind, lineno, frame", FRAMES, ids=FRAME_IDS)
def test_golden_frame_decodes_and_round_trips(kind, lineno, frame):
    for decoder in _decoders(kind):
        msg = decoder.decode(frame)
        assert type(msg) is CLASSES[kind]
        encoded = p.encode(msg)
        assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
        again = decoder.decode(encoded[:-1])
        assert again == msg
        # the encoder writes a subset of the golden object (defaults omitted),
        # with the same values
        golden, ours = json.loads(frame), json.loads(encoded)
        assert ours["kind"] == kind
        _assert_covered(ours, golden, "$")


def _assert_covered(ours, golden, where):
    """Everything the encoder wrote is in the golden frame with the same value
    (the encoder may leave out defaults; array-like structs may carry trailing
    empty defaults)."""
    if isinstance(ours, dict):
        assert isinstance(golden, dict), where
        for key, value in ours.items():
            assert key in golden, f"encoder wrote {where}.{key} which the golden frame lacks"
            _assert_covered(value, golden[key], f"{where}.{key}")
    elif isinstance(ours, list):
        assert isinstance(golden, list), where
        assert len(ours) >= len(golden), where
        assert all(extra in ({}, [], None) for extra in ours[len(golden):]), where
        for i, (a, b) in enumerate(zip(ours, golden)):
            _assert_covered(a, b, f"{where}[{i}]")
    else:
        assert ours == golden and type(ours) in (type(golden), float), where


@pytest.mark.parametrize("kind, lineno, frame", FRAMES, ids=FRAME_IDS)
def test_golden_frame_with_unknown_fields_still_decodes(kind, lineno, frame):
    """A newer minor version may add fields anywhere; old decoders ignore them."""
    obj = json.loads(frame)
    obj["added_in_1_9"] = {"nested": [1, 2, {"deep": True}], "s": "x"}
    if kind == "hello":
        obj["info"]["numa_nodes"] = 8
        for gpu in obj["info"].get("gpus", []):
            gpu["mig_mode"] = "disabled"
        for disk in obj["info"].get("disks", []):
            disk["read_only"] = False
    if kind == "metrics":
        obj["compression"] = None
    extended = json.dumps(obj).encode()
    for decoder in _decoders(kind):
        assert decoder.decode(extended) == decoder.decode(frame)


def test_golden_values_decode_to_the_expected_objects():
    hello = p.agent_decoder.decode((GOLDEN / "hello.jsonl").read_bytes().splitlines()[0])
    assert isinstance(hello, p.Hello)
    assert hello.protocol == (1, 0)
    assert hello.name == "gpu-node-07"
    assert hello.labels == {"rack": "b12", "team": "vision", "tier": "prod"}
    assert hello.join_token.startswith("k3v9q2m8x1w7.")
    assert hello.info.cpu_count == 128
    assert [g.index for g in hello.info.gpus] == [0, 1]
    assert hello.info.gpus[0].memory_total_bytes == 80 * 1024**3
    assert hello.info.disks[1] == p.DiskInfo(mount="/scratch", device="/dev/md0", fstype="xfs",
                                             total_bytes=15360950845440)

    minimal = p.agent_decoder.decode((GOLDEN / "hello.jsonl").read_bytes().splitlines()[1])
    assert minimal.labels == {} and minimal.join_token is None and minimal.info.gpus == []

    metrics = p.agent_decoder.decode((GOLDEN / "metrics.jsonl").read_bytes().splitlines()[0])
    assert isinstance(metrics, p.MetricsBatch)
    assert (metrics.stream, metrics.seq, metrics.dropped) == ("9f1c2e7a5b3d4e60", 42, 0)
    assert metrics.ts == [1718000000.25, 1718000001.25, 1718000002.25]
    temp = metrics.columns[metrics.keys.index("gpu[0].temp_c")]
    assert temp == [71.0, 71.0, None] and isinstance(temp[0], float)
    assert metrics.columns[metrics.keys.index("net[eth0].recv_bytes_per_s")][0] is None
    assert metrics.text["nvidia_smi"].startswith("Mon Jun 10")
    assert metrics.check_shape() is None
    dropped = p.agent_decoder.decode((GOLDEN / "metrics.jsonl").read_bytes().splitlines()[2])
    assert dropped.dropped == 1800 and dropped.text == {}

    ack = p.server_decoder.decode((GOLDEN / "metrics_ack.jsonl").read_bytes().splitlines()[0])
    assert ack == p.MetricsAck(stream="9f1c2e7a5b3d4e60", seq=42)

    registered = p.server_decoder.decode((GOLDEN / "registered.jsonl").read_bytes().splitlines()[1])
    assert registered == p.Registered(machine_id="1b9d6bcdbbfd4b2d9b5dab8dfbbd4bed", name="cpu-03",
                                      heartbeat_interval=0.2)
    assert registered.continued is False and registered.protocol == (1, 0)  # absent: a 1.0 control plane
    newer = p.server_decoder.decode((GOLDEN / "registered.jsonl").read_bytes().splitlines()[2])
    assert newer.protocol == (1, 1)

    packed = p.agent_decoder.decode((GOLDEN / "metrics.jsonl").read_bytes().splitlines()[3])
    assert packed.check_shape() is None and packed.columns == []
    assert packed.gpu_processes is None  # before 1.2

    v12 = p.server_decoder.decode((GOLDEN / "registered.jsonl").read_bytes().splitlines()[3])
    assert v12.protocol == (1, 2)
    procs = p.agent_decoder.decode((GOLDEN / "metrics.jsonl").read_bytes().splitlines()[4]).gpu_processes
    assert procs.source == "nvml" and procs.omitted == 3
    trainer, kernel, xorg, in_mig = procs.processes
    assert (trainer.gpu, trainer.pid, trainer.user, trainer.type) == (0, 48213, "alice", "C")
    assert trainer.used_memory_bytes == 74826235904 and trainer.sm_percent == 96.0
    assert (kernel.user, kernel.sm_percent) == ("bob", 0.0)
    assert (xorg.type, xorg.used_memory_bytes, xorg.sm_percent) == ("G", None, None)
    assert (in_mig.gi, in_mig.ci, in_mig.user, in_mig.command) == (3, 0, "", "")
    assert [(m.gpu, m.gi, m.ci, m.profile) for m in procs.mig] == [(2, 3, 0, "3g.40gb"), (2, 5, None, "2g.20gb")]
    assert packed.column_lists() == [[12.5, None], [71.0, 72.0]]

    command = p.server_decoder.decode((GOLDEN / "command.jsonl").read_bytes().splitlines()[1])
    assert command.argv[0] == "sh" and command.timeout == 30.0 and command.max_output_bytes == 1 << 20

    exits = [p.agent_decoder.decode(f) for f in (GOLDEN / "exit.jsonl").read_bytes().splitlines()]
    assert [e.exit_code for e in exits] == [1, 0, None, None, None]
    assert exits[1].truncated is True and exits[2].error == "timed out after 30s"
    assert exits[2].signal is None and exits[2].timed_out is False  # fields added later default
    assert (exits[4].signal, exits[4].timed_out) == (15, True)

    health = [p.agent_decoder.decode(f) for f in (GOLDEN / "health.jsonl").read_bytes().splitlines()]
    assert [c.name for c in health[0].checks if not c.ok] == ["gpu_count", "ib-link"]
    assert health[0].checks[4] == p.CheckResult(name="gpu_ecc", ok=True)
    assert health[1].checks == []

    out = p.agent_decoder.decode((GOLDEN / "output.jsonl").read_bytes().splitlines()[2])
    assert out.data == "café ✓ \t tab\x1b[31mred\x1b[0m"  # raw: sanitising is the viewer's job


def test_encoded_metrics_batch_is_columnar():
    batch = p.MetricsBatch(stream="s1", seq=7, ts=[1.5, 2.5], keys=["cpu.percent", "mem.used_bytes"],
                           columns=[[3.0, None], [1e9, 2e9]])
    assert json.loads(p.encode(batch)) == {
        "kind": "metrics", "stream": "s1", "seq": 7, "ts": [1.5, 2.5],
        "keys": ["cpu.percent", "mem.used_bytes"], "columns": [[3.0, None], [1e9, 2e9]]}


def test_packed_values_round_trip_and_convert_both_ways():
    columns = [[3.0, None, -1.5], [1e9, 2e9, 0.0]]
    batch = p.MetricsBatch(stream="s1", seq=7, ts=[1.0, 2.0, 3.0], keys=["a", "b"], columns=columns)
    packed = msgspec.structs.replace(batch, columns=[], values=p.pack_values(columns))
    assert packed.columns == [] and len(packed.values) == 8 * 6 and packed.check_shape() is None
    wire = json.loads(p.encode(packed))
    assert "columns" not in wire and isinstance(wire["values"], str)  # base64 in the JSON
    back = p.agent_decoder.decode(p.encode(packed))
    assert back.column_lists() == columns
    assert back.unpacked() == batch
    assert p.unpack_values(p.pack_values(columns), 3) == columns


@pytest.mark.parametrize("values, words", [
    (b"\0" * 8 * 5, ["40 bytes", "2 keys x 3 timestamps", "expected 48"]),
    (b"\0" * 7, ["7 bytes"]),
])
def test_packed_values_of_the_wrong_size_are_refused(values, words):
    batch = p.MetricsBatch(stream="s", seq=1, ts=[1.0, 2.0, 3.0], keys=["a", "b"], values=values)
    problem = batch.check_shape()
    assert problem and all(w in problem for w in words)
    both = p.MetricsBatch(stream="s", seq=1, ts=[1.0], keys=["a"], columns=[[1.0]], values=b"\0" * 8)
    assert both.check_shape() == "both columns and packed values"


@pytest.mark.parametrize("lineno", [0, 1, 2, 3])
def test_golden_metrics_have_a_consistent_shape(lineno):
    frame = (GOLDEN / "metrics.jsonl").read_bytes().splitlines()[lineno]
    assert p.agent_decoder.decode(frame).check_shape() is None


@pytest.mark.parametrize("ts, keys, columns, words", [
    ([1.0, 2.0], ["a", "b"], [[1.0, 2.0]], ["2 keys", "1 columns"]),
    ([1.0, 2.0], ["a"], [[1.0, 2.0], [3.0, 4.0]], ["1 keys", "2 columns"]),
    ([1.0, 2.0], ["a", "b"], [[1.0, 2.0], [3.0]], ["'b'", "1 values", "2 timestamps"]),
    ([], ["a"], [[None]], ["'a'"]),
])
def test_metrics_check_shape_explains_mismatches(ts, keys, columns, words):
    reason = p.MetricsBatch(stream="s", seq=1, ts=ts, keys=keys, columns=columns).check_shape()
    assert reason is not None
    for word in words:
        assert word in reason


# ---------------------------------------------------------------- decoding errors


@pytest.mark.parametrize("frame", [
    b"{not json",
    b'{"kind":"heartbeat","seq":1,"ts":1.0',
    b"\xff\xfe",
    b"",
    b'{"kind":"heartbeat","seq":1,"ts":1.0} trailing',
])
def test_invalid_json_is_malformed(frame):
    with pytest.raises(MalformedFrame, match="not valid JSON"):
        p.agent_decoder.decode(frame)


@pytest.mark.parametrize("frame", [
    b'{"kind":"heartbeat","seq":"one","ts":1.0}',          # wrong type
    b'{"kind":"heartbeat","seq":-1,"ts":1.0}',             # negative count
    b'{"kind":"heartbeat","ts":1.0}',                      # missing field
    b'{"kind":"output","id":"c1","stream":"stdin","data":""}',  # bad literal
    b'{"kind":"exit","id":"c1","exit_code":"0"}',
    b'{"kind":"metrics","stream":"s","seq":1,"ts":[1.0],"keys":["cpu"],"columns":[["high"]]}',
    b'{"kind":"metrics","stream":"s","seq":1,"ts":[1.0],"keys":["cpu"],"columns":[1.0]}',
    b'{"kind":"metrics","stream":"s","seq":1,"ts":[1.0],"keys":["cpu"],"values":"not base64!"}',
    b'{"kind":"metrics","stream":"s","seq":1,"ts":[1.0],"keys":["cpu"],"columns":[],"dropped":-1}',
    b'{"kind":"hello","protocol":[1],"name":"n","info":{"hostname":"h"}}',
    b'{"kind":"hello","protocol":[1,0],"name":"n","info":{"hostname":"h","cpu_count":-4}}',
    b'{"kind":"hello","protocol":[1,0],"name":"n","info":{"hostname":"h"},"labels":{"a":1}}',
    b'{"kind":"exit","id":"c1","duration":-0.5}',
])
def test_known_kind_with_wrong_fields_is_malformed(frame):
    with pytest.raises(MalformedFrame) as info:
        p.agent_decoder.decode(frame)
    assert json.loads(frame)["kind"] in str(info.value)


@pytest.mark.parametrize("frame", [b"[1, 2]", b'"hello"', b"null", b"42", b'{"kind": 5}', b'{"seq": 1}'])
def test_not_a_message_is_malformed(frame):
    with pytest.raises(MalformedFrame):
        p.agent_decoder.decode(frame)


def test_unknown_kind():
    with pytest.raises(UnknownKind) as info:
        p.agent_decoder.decode(b'{"kind":"log_stream","lines":["a"]}')
    assert info.value.kind == "log_stream"
    assert info.value.code == "unknown_kind"
    assert not isinstance(info.value, MalformedFrame)


@pytest.mark.parametrize("kind", sorted(SERVER_TO_AGENT))
def test_server_only_kind_sent_to_agent_decoder_is_unknown(kind):
    frame = (GOLDEN / f"{kind}.jsonl").read_bytes().splitlines()[0]
    p.server_decoder.decode(frame)  # valid in its own direction
    with pytest.raises(UnknownKind) as info:
        p.agent_decoder.decode(frame)
    assert info.value.kind == kind


@pytest.mark.parametrize("kind", sorted(AGENT_TO_SERVER))
def test_agent_only_kind_sent_to_server_decoder_is_unknown(kind):
    frame = (GOLDEN / f"{kind}.jsonl").read_bytes().splitlines()[0]
    with pytest.raises(UnknownKind) as info:
        p.server_decoder.decode(frame)
    assert info.value.kind == kind


def _hello(**over) -> dict:
    obj = {"kind": "hello", "protocol": [1, 0], "name": "n1", "info": {"hostname": "h"}}
    obj.update(over)
    return obj


def _decode_obj(obj) -> p.Message:
    return p.agent_decoder.decode(json.dumps(obj).encode())


@pytest.mark.parametrize("obj", [
    _hello(name="n" * 257),
    _hello(labels={"team": "v" * 257}),
    _hello(labels={"k" * 64: "v"}),
    _hello(labels={f"k{i}": "v" for i in range(65)}),
    _hello(info={"hostname": "h" * 257}),
    _hello(info={"hostname": "h", "gpus": [{"index": i, "name": "g"} for i in range(65)]}),
    _hello(info={"hostname": "h", "gpus": [{"index": 1025, "name": "g"}]}),
    _hello(join_token="t" * 257),
    {"kind": "output", "id": "c1", "stream": "stdout", "data": "x" * (64 * 1024 + 1)},
    {"kind": "exit", "id": "c1", "duration": 366 * 86400},
    {"kind": "heartbeat", "seq": 1 << 54, "ts": 0},
    {"kind": "metrics", "stream": "s", "seq": 1, "ts": [0.0], "keys": ["m" * 129], "columns": [[1.0]]},
    {"kind": "metrics", "stream": "s", "seq": 1, "ts": [], "keys": [], "columns": [],
     "text": {f"t{i}": "" for i in range(9)}},
    {"kind": "metrics", "stream": "s", "seq": 1, "ts": [0.0] * 3601, "keys": [], "columns": []},
    {"kind": "metrics", "stream": "s", "seq": 1, "ts": [], "keys": ["k"], "columns": [[0.0] * 3601]},
    {"kind": "metrics", "stream": "s" * 257, "seq": 1, "ts": [], "keys": [], "columns": []},
])
def test_size_bounds_are_enforced(obj):
    with pytest.raises(MalformedFrame):
        _decode_obj(obj)


@pytest.mark.parametrize("obj", [
    _hello(name="n" * 256),
    _hello(labels={"team": "v" * 256}),
    _hello(labels={"k" * 63: "v"}),
    _hello(labels={f"k{i}": "v" for i in range(64)}),
    {"kind": "output", "id": "c1", "stream": "stdout", "data": "x" * (64 * 1024)},
])
def test_values_at_the_bounds_are_accepted(obj):
    _decode_obj(obj)


@pytest.mark.parametrize("obj", [
    {"kind": "command", "id": "c1", "argv": []},
    {"kind": "command", "id": "c1", "argv": ["a" * 65537]},
    {"kind": "command", "id": "c1", "argv": ["x"], "timeout": -1},
    {"kind": "rejected", "code": "c" * 257, "reason": "r"},
    {"kind": "metrics_ack", "stream": "s", "seq": -1},
])
def test_server_message_bounds(obj):
    with pytest.raises(MalformedFrame):
        p.server_decoder.decode(json.dumps(obj).encode())


# ---------------------------------------------------------------- versions


def test_peek_protocol_reads_version_of_future_hello():
    future = (b'{"kind":"hello","protocol":[2,7],"name":{"first":"gpu","second":7},'
              b'"info":[1,2,3],"capabilities":{"zstd":true}}')
    assert p.peek_protocol(future) == [2, 7]
    with pytest.raises(MalformedFrame):  # the v1 decoder cannot read the rest
        p.agent_decoder.decode(future)


def test_peek_protocol_of_current_hello_and_garbage():
    frame = (GOLDEN / "hello.jsonl").read_bytes().splitlines()[0]
    assert tuple(p.peek_protocol(frame)) == (1, 0)  # a 1.0 agent's hello
    assert p.peek_protocol(b'{"kind":"hello","protocol":"three"}') == "three"
    assert p.peek_protocol(b'{"kind":"heartbeat","seq":1,"ts":1}') is None
    assert p.peek_protocol(b"not json") is None
    assert p.peek_protocol(b"[1,2]") is None


def test_registered_without_a_version_means_1_0():
    reg = p.Registered(machine_id="a" * 32, name="n", heartbeat_interval=5)
    assert reg.protocol == (1, 0)  # what a 1.0 control plane (which omits it) speaks
    assert json.loads(p.encode(p.Registered(machine_id="a" * 32, name="n", heartbeat_interval=5,
                                            protocol=p.PROTOCOL_VERSION)))["protocol"] == list(p.PROTOCOL_VERSION)


# ---------------------------------------------------------------- identity


BASE_INFO = dict(
    hostname="gpu-node-07", machine_id="4c4c4544", os="Ubuntu 22.04", kernel="5.15.0-105",
    arch="x86_64", cpu_model="AMD EPYC 7763", cpu_count=128, memory_total_bytes=512 * 1024**3,
    disks=[p.DiskInfo(mount="/", total_bytes=2 * 1024**4)],
    gpus=[p.GpuInfo(index=0, name="NVIDIA A100", uuid="GPU-1", memory_total_bytes=80 * 1024**3),
          p.GpuInfo(index=1, name="NVIDIA H100", uuid="GPU-2", memory_total_bytes=80 * 1024**3)],
    gpu_driver="550.54", agent_version="0.1.0",
)


def _info(**over) -> p.MachineInfo:
    return p.MachineInfo(**{**BASE_INFO, **over})


@pytest.mark.parametrize("over", [
    dict(os="Ubuntu 24.04"),
    dict(kernel="6.8.0-31"),
    dict(agent_version="0.2.0"),
    dict(gpu_driver="560.1"),
    dict(disks=[]),
    dict(memory_total_bytes=512 * 1024**3 + 1000),  # same MiB
    dict(gpus=list(reversed(BASE_INFO["gpus"]))),   # order does not matter
    dict(gpus=[p.GpuInfo(index=0, name="NVIDIA A100", uuid="GPU-other", memory_total_bytes=80 * 1024**3),
               p.GpuInfo(index=1, name="NVIDIA H100", uuid="GPU-2", memory_total_bytes=80 * 1024**3)]),
])
def test_identity_ignores_upgradable_details(over):
    assert _info(**over).identity() == _info().identity()


@pytest.mark.parametrize("over", [
    dict(hostname="gpu-node-08"),
    dict(machine_id="deadbeef"),
    dict(cpu_model="AMD EPYC 9654"),
    dict(cpu_count=64),
    dict(memory_total_bytes=256 * 1024**3),
    dict(gpus=[]),
    dict(gpus=[BASE_INFO["gpus"][0]]),
    dict(gpus=[p.GpuInfo(index=0, name="NVIDIA A100", memory_total_bytes=40 * 1024**3),
               BASE_INFO["gpus"][1]]),
    dict(gpus=[p.GpuInfo(index=0, name="NVIDIA H100", memory_total_bytes=80 * 1024**3),
               BASE_INFO["gpus"][1]]),
])
def test_identity_detects_different_machines(over):
    assert _info(**over).identity() != _info().identity()


def test_identity_is_hashable_and_survives_the_wire():
    info = _info()
    hash(info.identity())
    hello = p.Hello(protocol=(1, 0), name="gpu-node-07", info=info)
    back = p.agent_decoder.decode(p.encode(hello).rstrip(b"\n"))
    assert back.info.identity() == info.identity()


def test_golden_shell_and_file_frames_decode_to_the_expected_objects():
    lines = lambda kind: (GOLDEN / f"{kind}.jsonl").read_bytes().splitlines()  # noqa: E731
    login = p.server_decoder.decode(lines("shell_open")[0])
    assert login == p.ShellOpen(id="s-4c1e9a", term="xterm-256color", cols=132, rows=43)
    assert login.command == "" and login.pty is True  # empty command: the login shell
    piped = p.server_decoder.decode(lines("shell_open")[2])
    assert piped.pty is False and piped.cols == 80
    assert p.server_decoder.decode(lines("shell_input")[1]).data == b"\x03"  # Ctrl-C, raw
    assert p.server_decoder.decode(lines("shell_input")[2]).eof is True
    assert p.agent_decoder.decode(lines("shell_exit")[1]).signal == 1
    put = p.server_decoder.decode(lines("file_put")[1])
    assert (put.mode, put.owner, put.mkdirs, put.base) == (0o600, "svc", True, "/opt/models")
    ack = p.agent_decoder.decode(lines("file_ack")[1])
    assert (ack.offset, ack.size) == (0, 18234)
    chunk = p.server_decoder.decode(lines("file_chunk")[0])
    assert chunk.data.startswith(b"# NCCL settings\n")
    done = p.agent_decoder.decode(lines("file_done")[1])
    assert done.code == "traversal" and done.size == 0


def test_shell_and_file_payloads_are_bounded():
    big = p.encode(p.ShellOutput(id="s", data=b"x" * p.SHELL_CHUNK)).replace(b'"data":"', b'"data":"eHh4')
    with pytest.raises(MalformedFrame):
        p.agent_decoder.decode(big[:-1])
    frame = p.encode(p.FileChunk(id="f", offset=0, data=b"\xff" * p.FILE_CHUNK))
    assert len(frame) < p.MAX_FRAME_BYTES  # a full chunk fits in one frame, base64 and all


# ---------------------------------------------------------------- 1.2: GPU processes


def _procs_frame(**snap) -> bytes:
    base = {"kind": "metrics", "stream": "s", "seq": 1, "ts": [1.0], "keys": [], "gpu_processes": {"ts": 1.0, **snap}}
    return json.dumps(base).encode()


@pytest.mark.parametrize("snap", [
    {"processes": [{"gpu": 0, "pid": i} for i in range(p.MAX_GPU_PROCESSES + 1)]},  # too many
    {"processes": [{"gpu": 0, "pid": 1, "command": "x" * 257}]},  # too long
    {"processes": [{"gpu": 0, "pid": -1}]},
    {"processes": [{"gpu": 2000, "pid": 1}]},
    {"processes": [{"gpu": 0, "pid": 1, "sm_percent": 101}]},
    {"processes": [{"gpu": 0, "pid": 1, "used_memory_bytes": -5}]},
    {"processes": [{"gpu": "0", "pid": 1}]},
    {"mig": [{"gpu": 0, "gi": 1, "profile": "p" * 300}]},
])
def test_hostile_gpu_process_lists_are_refused(snap):
    with pytest.raises(MalformedFrame):
        p.agent_decoder.decode(_procs_frame(**snap))


def test_gpu_process_list_at_its_bounds_decodes():
    procs = [{"gpu": 0, "pid": i, "user": "u" * 256, "command": "c" * 256, "used_memory_bytes": 1 << 40}
             for i in range(p.MAX_GPU_PROCESSES)]
    frame = _procs_frame(processes=procs)
    assert len(frame) < p.MAX_FRAME_BYTES
    assert len(p.agent_decoder.decode(frame).gpu_processes.processes) == p.MAX_GPU_PROCESSES


def test_pack_rows_packs_as_pack_values_packs_the_columns():
    from array import array

    rows = [[1.0, 2.5, float("nan")], [3.0, -4.0, 5.0]]
    flat = array("d", [v for row in rows for v in row])
    columns = [[1.0, 3.0], [2.5, -4.0], [None, 5.0]]
    assert p.pack_rows(flat, 3) == p.pack_values(columns)
    assert p.unpack_values(p.pack_rows(flat, 3), 2) == columns
    assert p.pack_rows(array("d"), 0) == b""
