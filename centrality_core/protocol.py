"""The agent wire protocol: every message, its framing and its limits.

Agents talk to the control plane over one SSH session channel (the
``centrality-agent`` subsystem). Each message is one JSON object on one line
(``\\n``-terminated; JSON never contains a raw newline), at most
``MAX_FRAME_BYTES`` long. Every object has a ``kind`` tag naming its class.

Conversation::

    agent                                   control plane
      hello(protocol, name, info, token?) ->
                                          <- registered(machine_id, heartbeat_interval,
                                                        metrics_hold)      (hold: 1.4)
                                             | rejected(code, reason)   then close
                                          <- metrics_resume          end of a hold (1.4)
      heartbeat(seq) / metrics(stream, seq, ...) ->
                                          <- metrics_ack(stream, seq)  once stored
                                          <- command(id, argv, timeout)
      output(id, stream, data)            ->
      exit(id, exit_code, duration)       ->
                                          <- cancel(id)
      health(ts, checks)                  ->   after each round of healthchecks
                                          <- shell_open(id, command, term, cols, rows)   (1.3)
                                          <- shell_input(id, data) / shell_resize / shell_ack
      shell_output(id, data)              ->   at most SHELL_WINDOW bytes not yet acknowledged
      shell_exit(id, exit_code, signal)   ->
                                          <- file_put(id, path, size, sha256, mode) (1.3)
                                          <- file_chunk(id, offset, data)
      file_ack(id, offset)                ->   bytes written so far (the sender's window)
      file_done(id, size, sha256, error)  ->   renamed into place, or why not
                                          <- file_get(id, path, max_bytes)          (1.3)
      file_chunk(id, offset, data)        -> <- file_ack(id, offset)
      file_done(id, size, sha256)         ->
      anything malformed                  -> <- error(code, reason)     then close
      an unknown kind                     -> <- unsupported(kind)       connection stays

Versioning: ``hello.protocol`` is ``[major, minor]``. A different major is
refused with ``rejected(code="unsupported_version")``. Minor versions only add
fields with defaults; decoders ignore fields they do not know, so an old peer
keeps working. ``registered.protocol`` tells the agent what the control plane
speaks, and the agent uses a minor's additions only when both do (1.1:
``metrics.values``; to a 1.0 control plane it sends ``columns``. 1.2:
``metrics.gpu_processes``, left out for an older control plane). The
control plane sends 1.3's shell and file messages only to agents whose hello
said 1.3 or later; an older agent is reported "too old" to the operator, and
any agent answers a kind it does not know with ``unsupported``. 1.4: in a
reconnect storm the control plane may ask an agent of 1.4 or later to hold
its metric batches back for up to ``registered.metrics_hold`` seconds
(``metrics_resume`` ends the hold sooner; control_plane/holds.py).

Everything decoded here is untrusted: sizes are bounded by ``msgspec.Meta``
constraints and the frame limit, and types are checked by msgspec. Semantic
checks (name rules, token validity) belong to the control plane.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

import msgspec
from msgspec import Meta, Struct

from .errors import MalformedFrame, UnknownKind
# Framing and packed values live in their own module; they are part of this one's API.
from .framing import (  # noqa: F401
    MAX_FRAME_BYTES, FrameBuffer, StreamFrames, pack_rows, pack_values, unpack_values,
)

PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 4  # 1.1: packed metric values; 1.2: ``gpu_processes``; 1.3: shell sessions, file copy;
#                     1.4: metrics held back in a storm
PROTOCOL_VERSION = (PROTOCOL_MAJOR, PROTOCOL_MINOR)

#: SSH subsystem an agent opens to speak this protocol.
AGENT_SUBSYSTEM = "centrality-agent"
#: SSH user name an agent with a not-yet-enrolled key logs in as.
ENROLL_USER = "centrality-join"
#: Bytes of one ``shell_output`` / ``shell_input`` at most.
SHELL_CHUNK = 64 * 1024
#: Output of a shell session the agent sends before the control plane acknowledges it.
SHELL_WINDOW = 256 * 1024
#: Bytes of one ``file_chunk`` at most (base64 in the frame: 4/3 of it).
FILE_CHUNK = 256 * 1024
#: Protocol version that brought shell sessions and file copy.
SHELL_FILES = (1, 3)
#: Protocol version that brought metrics held back in a storm (``metrics_hold``).
METRICS_HOLD = (1, 4)

Short = Annotated[str, Meta(max_length=256)]
Text = Annotated[str, Meta(max_length=64 * 1024)]
Count = Annotated[int, Meta(ge=0, le=1 << 53)]
Seconds = Annotated[float, Meta(ge=0, le=365 * 86400)]
Labels = Annotated[dict[Annotated[str, Meta(max_length=63)], Annotated[str, Meta(max_length=256)]], Meta(max_length=64)]


class DiskInfo(Struct, kw_only=True, omit_defaults=True):
    """A mounted filesystem."""

    mount: Short
    device: Short = ""
    fstype: Short = ""
    total_bytes: Count = 0


class GpuInfo(Struct, kw_only=True, omit_defaults=True):
    """One GPU as NVML or nvidia-smi describes it."""

    index: Annotated[int, Meta(ge=0, le=1024)]
    name: Short
    uuid: Short = ""
    memory_total_bytes: Count = 0


class MachineInfo(Struct, kw_only=True, omit_defaults=True):
    """What a machine is. ``identity()`` is the part that decides "same machine"."""

    hostname: Short
    machine_id: Short = ""
    os: Short = ""
    kernel: Short = ""
    arch: Short = ""
    cpu_model: Short = ""
    cpu_count: Annotated[int, Meta(ge=0, le=65536)] = 0
    memory_total_bytes: Count = 0
    disks: Annotated[list[DiskInfo], Meta(max_length=256)] = []
    gpus: Annotated[list[GpuInfo], Meta(max_length=64)] = []
    gpu_driver: Short = ""
    agent_version: Short = ""

    def identity(self) -> tuple:
        """The specs that must match for a re-registration to continue a machine.

        Hostname, /etc/machine-id, CPU model and count, memory (to the MiB) and
        the GPU models. OS, kernel, driver, disks and agent version are left
        out on purpose: upgrading them does not make it another machine.
        """
        return (
            self.hostname,
            self.machine_id,
            self.cpu_model,
            self.cpu_count,
            self.memory_total_bytes >> 20,
            tuple(sorted((g.name, g.memory_total_bytes >> 20) for g in self.gpus)),
        )


Pid = Annotated[int, Meta(ge=0, le=1 << 32)]
Percent = Annotated[float, Meta(ge=0, le=100)]
GpuIndex = Annotated[int, Meta(ge=0, le=1024)]
#: At most this many processes travel per snapshot (the agent keeps the largest by GPU memory).
MAX_GPU_PROCESSES = 256


class GpuProcess(Struct, kw_only=True, omit_defaults=True):
    """One process on one GPU (protocol 1.2). ``user``/``command`` come from the
    agent's /proc; ``sm_percent``/``mem_percent`` only where NVML reports them."""

    gpu: GpuIndex
    pid: Pid
    #: "C" compute, "G" graphics, "C+G" both.
    type: Annotated[str, Meta(max_length=8)] = "C"
    user: Short = ""
    command: Short = ""
    used_memory_bytes: Count | None = None
    sm_percent: Percent | None = None
    mem_percent: Percent | None = None
    #: MIG GPU instance and compute instance ids, when the process runs in one.
    gi: Annotated[int, Meta(ge=0, le=1024)] | None = None
    ci: Annotated[int, Meta(ge=0, le=1024)] | None = None


class MigInstance(Struct, kw_only=True, omit_defaults=True):
    """A MIG device of GPU ``gpu`` (protocol 1.2)."""

    gpu: GpuIndex
    gi: Annotated[int, Meta(ge=0, le=1024)]
    ci: Annotated[int, Meta(ge=0, le=1024)] | None = None
    #: Its profile, e.g. "3g.40gb".
    profile: Short = ""
    uuid: Short = ""
    mem_used_bytes: Count | None = None
    mem_total_bytes: Count | None = None


class GpuProcesses(Struct, kw_only=True, omit_defaults=True):
    """Who is on the GPUs at ``ts`` (protocol 1.2): the whole list, replacing the last."""

    ts: float
    processes: Annotated[list[GpuProcess], Meta(max_length=MAX_GPU_PROCESSES)] = []
    mig: Annotated[list[MigInstance], Meta(max_length=448)] = []
    #: Processes left out past ``MAX_GPU_PROCESSES`` (the smallest by GPU memory).
    omitted: Count = 0
    #: "nvml" or "nvidia-smi".
    source: Annotated[str, Meta(max_length=16)] = ""


class Message(Struct, tag_field="kind", kw_only=True, omit_defaults=True):
    """Base of every message; the class's ``tag`` is its ``kind`` on the wire."""


# --------------------------------------------------------------- agent -> control plane


class Hello(Message, tag="hello"):
    """First message of a connection: who the agent is. Also registers it."""

    protocol: tuple[int, int]
    name: Short
    info: MachineInfo
    labels: Labels = {}
    #: The join secret, sent once, only by an agent whose key is not yet enrolled.
    join_token: Short | None = None


class Heartbeat(Message, tag="heartbeat"):
    seq: Count
    ts: float


MetricKey = Annotated[str, Meta(max_length=128)]
Column = Annotated[list[Union[float, None]], Meta(max_length=3600)]


class MetricsBatch(Message, tag="metrics"):
    """Samples taken since the last batch, column by column. Doubles as a heartbeat.

    ``ts[i]`` is the time of sample ``i``; ``columns[j][i]`` is the value of
    ``keys[j]`` at that time (null when the stream had no value then). Keys
    are ``stream[instance].field`` with units in the field name
    (``cpu[0].percent``, ``gpu[3].mem_used_bytes``, ``net[eth0].recv_bytes_per_s``).

    The values travel either as JSON ``columns`` or, from protocol 1.1, packed
    in ``values``: float64 little-endian, key after key (``len(keys) *
    len(ts)`` numbers, NaN where there is no value), base64 in the JSON. Packed,
    a GPU node's batch is a third smaller and costs both sides almost nothing
    to write and read; exactly one of the two is set.

    ``stream`` names one run of the agent and ``seq`` counts its batches from
    1, so the control plane can drop a batch it has already stored when the
    agent replays its buffer after a reconnect; it acknowledges with
    ``metrics_ack`` once a batch is durably stored.
    """

    stream: Short
    seq: Count
    ts: Annotated[list[float], Meta(max_length=3600)]
    keys: Annotated[list[MetricKey], Meta(max_length=4096)]
    columns: Annotated[list[Column], Meta(max_length=4096)] = []
    values: Annotated[bytes, Meta(max_length=MAX_FRAME_BYTES)] = b""
    #: Latest text streams (``nvidia_smi``: the nvidia-smi screen), when they changed.
    text: Annotated[dict[Annotated[str, Meta(max_length=64)], Text], Meta(max_length=8)] = {}
    #: Samples the agent had to drop (buffer full while disconnected) before this batch.
    dropped: Count = 0
    #: 1.2: the latest GPU process list when it was taken during this batch (None: not taken).
    gpu_processes: GpuProcesses | None = None

    def check_shape(self) -> str | None:
        """Why the values do not fit ``ts`` and ``keys``, or None."""
        n = len(self.ts)
        if self.values:
            if self.columns:
                return "both columns and packed values"
            if len(self.values) != 8 * n * len(self.keys):
                return (f"{len(self.values)} bytes of packed values for {len(self.keys)} keys "
                        f"x {n} timestamps (expected {8 * n * len(self.keys)})")
            return None
        if len(self.columns) != len(self.keys):
            return f"{len(self.keys)} keys but {len(self.columns)} columns"
        if not self.columns or min(map(len, self.columns)) == max(map(len, self.columns)) == n:
            return None
        for key, col in zip(self.keys, self.columns):
            if len(col) != n:
                return f"column {key!r} has {len(col)} values for {n} timestamps"
        return None

    def column_lists(self) -> list[list[float | None]]:
        """The values as one list per key (None: no value), however they travelled."""
        if not self.values:
            return self.columns
        return unpack_values(self.values, len(self.ts))

    def unpacked(self) -> MetricsBatch:
        """This batch with JSON columns (for a protocol 1.0 control plane)."""
        if not self.values:
            return self
        return msgspec.structs.replace(self, columns=self.column_lists(), values=b"")


class CommandOutput(Message, tag="output"):
    id: Short
    stream: Literal["stdout", "stderr"]
    data: Text


class CommandExit(Message, tag="exit"):
    """A command ended. ``exit_code`` is None when it did not exit by itself.

    ``signal`` is the signal that ended it (the agent's SIGTERM/SIGKILL after
    a timeout or a cancel, or any other); ``timed_out`` says the agent killed
    it for running past its ``timeout``; ``truncated`` that output beyond
    ``max_output_bytes`` was dropped; ``error`` why it did not run or end
    normally (``command not found``, ``cancelled``...).
    """

    id: Short
    exit_code: Annotated[int, Meta(ge=-(1 << 31), le=1 << 31)] | None = None
    duration: Seconds = 0.0
    truncated: bool = False
    error: Short | None = None
    signal: Annotated[int, Meta(ge=1, le=128)] | None = None
    timed_out: bool = False


class ShellOutput(Message, tag="shell_output"):
    """Bytes the PTY (or the command's pipes) of shell session ``id`` wrote (1.3)."""

    id: Short
    data: Annotated[bytes, Meta(max_length=SHELL_CHUNK)]


class ShellExit(Message, tag="shell_exit"):
    """Shell session ``id`` ended: its exit status, the signal that ended it, or why it did not start."""

    id: Short
    exit_code: Annotated[int, Meta(ge=-(1 << 31), le=1 << 31)] | None = None
    signal: Annotated[int, Meta(ge=1, le=128)] | None = None
    error: Short | None = None


class FileDone(Message, tag="file_done"):
    """A file transfer ended (1.3). ``error`` set: it failed and nothing was left behind.

    After a ``file_put``: the file is in place (renamed atomically), ``size``
    bytes whose SHA-256 is ``sha256``. After a ``file_get``: every chunk was sent.
    ``code`` names the refusal (``traversal``, ``symlink``, ``exists``,
    ``permission``, ``too_large``, ``checksum``, ``io``...).
    """

    id: Short
    size: Count = 0
    sha256: Short = ""
    mode: Annotated[int, Meta(ge=0, le=0o7777)] = 0
    error: Text = ""
    code: Short = ""


class CheckResult(Struct, kw_only=True, omit_defaults=True):
    """One healthcheck's outcome: built-in (``disk``, ``memory``, ``nvidia_smi``,
    ``gpu_count``, ``gpu_ecc``, ``gpu_xid``) or custom (named in agent.toml)."""

    name: Annotated[str, Meta(max_length=64)]
    ok: bool
    detail: Annotated[str, Meta(max_length=1024)] = ""
    duration: Seconds = 0.0


class HealthReport(Message, tag="health"):
    """The results of one round of healthchecks; any failed check makes the machine unhealthy."""

    ts: float
    checks: Annotated[list[CheckResult], Meta(max_length=128)] = []


# --------------------------------------------------------------- control plane -> agent


class Registered(Message, tag="registered"):
    machine_id: Short
    name: Short
    heartbeat_interval: Seconds
    #: True when this registration continued an existing machine (agent restart).
    continued: bool = False
    server_version: Short = ""
    #: What the control plane speaks (absent from a 1.0 control plane: 1.0).
    protocol: tuple[int, int] = (1, 0)
    #: 1.4: send no metric batch for up to this many seconds, or until ``metrics_resume``
    #: (the control plane is busy with a reconnect storm); heartbeats and the rest go on.
    metrics_hold: Annotated[float, Meta(ge=0, le=4 * 3600)] = 0.0


class MetricsResume(Message, tag="metrics_resume"):
    """1.4: the hold of ``registered.metrics_hold`` is over: send the backlog and go on."""


class Rejected(Message, tag="rejected"):
    """Registration refused; the control plane closes the connection after it."""

    code: Short
    reason: Text


class Command(Message, tag="command"):
    id: Short
    argv: Annotated[list[Annotated[str, Meta(max_length=65536)]], Meta(min_length=1, max_length=4096)]
    timeout: Seconds = 30.0
    max_output_bytes: Count = 1024 * 1024


class Cancel(Message, tag="cancel"):
    """Stop command ``id``; also hangs up shell session ``id`` or abandons file transfer ``id`` (1.3)."""

    id: Short


class MetricsAck(Message, tag="metrics_ack"):
    """Every batch of ``stream`` up to ``seq`` is stored; the agent may forget them.

    ``refused`` (why) is set when this batch was acknowledged but not stored
    because it broke a rule that resending cannot fix (too many distinct keys,
    an unsafe key); ``too_old`` counts its samples that were not stored
    because they lie outside the window the control plane keeps. Agents that
    predate these fields ignore them (the batch is dropped either way).
    """

    stream: Short
    seq: Count
    refused: Text = ""
    too_old: Count = 0


Dimension = Annotated[int, Meta(ge=0, le=10000)]


class ShellOpen(Message, tag="shell_open"):
    """Start an interactive session (1.3): ``command`` (``sh -c``) or, empty, the login shell.

    It runs as the agent's ``run_as`` user. ``pty``: on a new pseudo-terminal
    of ``cols`` x ``rows`` with ``TERM=term`` (else on pipes, stdout and
    stderr merged).
    """

    id: Short
    command: Annotated[str, Meta(max_length=65536)] = ""
    term: Short = "xterm-256color"
    cols: Dimension = 80
    rows: Dimension = 24
    pty: bool = True


class ShellInput(Message, tag="shell_input"):
    """Keystrokes (or piped stdin) for session ``id``; ``eof``: the operator's stdin closed."""

    id: Short
    data: Annotated[bytes, Meta(max_length=SHELL_CHUNK)] = b""
    eof: bool = False


class ShellResize(Message, tag="shell_resize"):
    id: Short
    cols: Dimension
    rows: Dimension


class ShellAck(Message, tag="shell_ack"):
    """The control plane passed on ``consumed`` more bytes of session ``id``'s output."""

    id: Short
    consumed: Count


FileMode = Annotated[int, Meta(ge=0, le=0o7777)]


class FilePut(Message, tag="file_put"):
    """Write a file of ``size`` bytes at ``path`` (1.3), sent next as ``file_chunk``s.

    The agent writes a temporary file beside it and renames it into place once
    all bytes are there and their SHA-256 is ``sha256``. ``path`` is absolute
    or relative to the ``run_as`` user's home; ``..`` is refused, and so is a
    symlink as the file itself or (for ``-r``, below ``base``) in the tree.
    ``mkdirs``: create missing directories below ``base`` (the destination
    directory, which must exist). ``owner``/``group`` are names; empty: keep.
    """

    id: Short
    path: Annotated[str, Meta(max_length=4096)]
    size: Count
    sha256: Annotated[str, Meta(min_length=64, max_length=64)]
    mode: FileMode = 0o644
    owner: Short = ""
    group: Short = ""
    base: Annotated[str, Meta(max_length=4096)] = ""
    mkdirs: bool = False


class FileGet(Message, tag="file_get"):
    """Send the file at ``path`` as ``file_chunk``s (1.3); refuse it if larger than ``max_bytes``."""

    id: Short
    path: Annotated[str, Meta(max_length=4096)]
    max_bytes: Count = 1 << 30
    follow_symlinks: bool = False


# --------------------------------------------------------------- either direction


class Error(Message, tag="error"):
    """A protocol error; the sender closes the connection after it."""

    code: Short
    reason: Text


class Unsupported(Message, tag="unsupported"):
    """Reply to a message whose kind the receiver does not know; not fatal."""

    unsupported_kind: Short
    reason: Text = ""


class FileChunk(Message, tag="file_chunk"):
    """Bytes ``offset``.. of file transfer ``id`` (control plane -> agent for a put, back for a get)."""

    id: Short
    offset: Count
    data: Annotated[bytes, Meta(max_length=FILE_CHUNK)]


class FileAck(Message, tag="file_ack"):
    """The receiver has the first ``offset`` bytes of transfer ``id``; the sender may run
    ``offset + window`` ahead. An agent's first ack of a ``file_get`` carries the file's ``size``."""

    id: Short
    offset: Count
    size: Count | None = None


AgentMessage = Union[Hello, Heartbeat, MetricsBatch, CommandOutput, CommandExit, HealthReport,
                     ShellOutput, ShellExit, FileDone, FileChunk, FileAck, Error, Unsupported]
ServerMessage = Union[Registered, Rejected, Command, Cancel, MetricsAck, MetricsResume, ShellOpen, ShellInput,
                      ShellResize, ShellAck, FilePut, FileGet, FileChunk, FileAck, Error, Unsupported]


class _KindOnly(Struct):
    kind: Annotated[str, Meta(max_length=256)] = ""


class _VersionProbe(Struct):
    protocol: object = None


_encoder = msgspec.json.Encoder()
_kind_decoder = msgspec.json.Decoder(_KindOnly)
_probe_decoder = msgspec.json.Decoder(_VersionProbe)


def encode(msg: Message) -> bytes:
    """One frame: the message as JSON plus the newline."""
    return _encoder.encode(msg) + b"\n"


class Decoder:
    """Decodes frames of one direction into typed messages."""

    def __init__(self, union: object) -> None:
        self._decoder = msgspec.json.Decoder(union)

    def decode(self, frame: bytes) -> Message:
        try:
            return self._decoder.decode(frame)
        except msgspec.ValidationError as exc:
            try:
                kind = _kind_decoder.decode(frame).kind
            except msgspec.DecodeError:
                kind = ""
            if kind and not _known_kind(self._decoder.type, kind):
                raise UnknownKind(kind) from None
            raise MalformedFrame(f"invalid {kind or 'message'}: {exc}") from None
        except msgspec.DecodeError as exc:
            raise MalformedFrame(f"frame is not valid JSON: {exc}") from None


def _known_kind(union: object, kind: str) -> bool:
    return any(getattr(t, "__struct_config__").tag == kind for t in union.__args__)


def peek_protocol(frame: bytes) -> object:
    """The raw ``protocol`` field of a frame, read before trusting its shape."""
    try:
        return _probe_decoder.decode(frame).protocol
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


#: Decodes what the control plane receives.
agent_decoder = Decoder(AgentMessage)
#: Decodes what an agent receives.
server_decoder = Decoder(ServerMessage)
