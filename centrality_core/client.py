"""The operator client: requests to a control plane over SSH, answers in JSON.

Used by the CLI, the dashboard, provisioning and the exporter. One
``OperatorClient`` holds one SSH connection; each request is an exec channel
on it (``machines ls``), so a plain OpenSSH client can make the same
requests.

The typed methods (``machines_ls()``, ``subscribe()``, ``exec()``, ...) are
the one place a request's argv is spelled; they decode the answer once into
the documents of ``centrality_core.documents``, strictly, cleaning what came
from agents. ``call``, ``request`` and ``stream`` make any other request and
return plain JSON values.
"""

from __future__ import annotations

import asyncio
import json
import random
import shlex
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterable

import msgspec

from centrality_core import contexts, endpoints, sshlink
from centrality_core import documents as docs
from centrality_core.errors import (Busy, CentralityError, ConfigError, ConnectError, ProtocolError, RequestFailed,
                                    UsageError, from_code)

#: The channel of a one-off request takes its whole answer at once: a window the size of
#: a large answer (``machines ls`` of 10,000 machines is ~5 MB; asyncssh's default is
#: 2 MiB, and each refill waits for a round trip through a busy control plane's loop)
#: and packets of up to 256 KiB (OpenSSH's limit), so it is sent in 20 packets, not 150.
REQUEST_WINDOW = 16 * 2 ** 20
REQUEST_PACKET = 256 * 2 ** 10
#: How long a request keeps retrying a control plane that answers "busy"
#: (a whole fleet reconnecting) before giving up.
BUSY_RETRY_S = 15.0


@dataclass
class Answer:
    data: Any
    status: int


class OperatorClient:
    def __init__(self, context: str | None = None, *, username: str | None = None,
                 share: bool = False) -> None:
        self.context_name, self.context = contexts.resolve(context)
        #: Log in as this user instead of the context's (a machine's name: a session on it).
        self.username = username
        #: The address this client is connected to (one of the context's).
        self.address = ""
        self._conn = None
        #: One-off requests go through a shared connection's master when the context
        #: persists one (``sharing.py``); ``stream`` then connects this client itself, and
        #: ``connection`` is None until it has (commands that need a channel of their own,
        #: ``ssh`` and ``cp``, do not share).
        self.share = share and username is None
        self._link = None

    @classmethod
    def over(cls, connection: Any, address: str) -> OperatorClient:
        """A client on a connection made elsewhere (a replica's link to its peer); ``async
        with`` is not used: whoever made the connection closes it."""
        client = cls.__new__(cls)
        client.context_name, client.context, client.username = "", None, None
        client.address, client._conn = address, connection
        client.share, client._link = False, None
        return client

    @property
    def closed(self) -> bool:
        if self._link is not None:
            return False
        return self._conn is None or self._conn.is_closed()

    @property
    def shared(self) -> bool:
        """Whether requests go through a shared connection's master."""
        return self._link is not None

    async def __aenter__(self) -> OperatorClient:
        sock, persist = self._shared_socket()
        if sock is not None:
            from . import sharing

            self._link = await sharing.Link.open(sock)
            if self._link is not None:
                return self
        await self._connect()
        if sock is not None:
            from . import sharing

            sharing.start_master(self.context_name, sock, persist)
        return self

    def _shared_socket(self):
        """(socket path, persist seconds) of this context's shared connection, or (None, 0)."""
        if not self.share:
            return None, 0.0
        from . import sharing

        persist = sharing.persist_seconds(self.context.persist)
        if not persist:
            return None, 0.0
        try:
            return sharing.socket_path(self.context.address, self.context.fingerprint, self.context.key,
                                       self.context.user), persist
        except ConfigError:  # no private place for the socket: connect directly, as without sharing
            return None, 0.0

    async def _leave_link(self) -> None:
        """Go on with a connection of this client's own."""
        self._link.close()
        self._link = None
        await self._connect()

    async def _connect(self) -> None:
        key = sshlink.load_private_key(self.context.key)
        deadline = time.monotonic() + BUSY_RETRY_S
        delay = 0.2
        while True:
            try:
                # Several addresses (replicas): the first that answers, in order.
                self._conn, self.address = await sshlink.connect_any(
                    endpoints.split(self.context.address) or [self.context.address],
                    self.context.fingerprint, key, username=self.username or self.context.user)
                return
            except Busy:  # a fleet is (re)connecting: wait our turn a little
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 2.0)
            except ConnectError as exc:
                if type(exc) is not ConnectError or not exc.reason.startswith("cannot reach"):
                    raise  # host key mismatch, key refused, closed: they say why
                raise ConnectError(f"{exc.reason}. Is the control plane running? Start it with "
                                   f"`centrality server`, or check the address of context "
                                   f"{self.context_name!r} (`centrality login`)") from None

    async def __aexit__(self, *exc) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
        if self._conn is not None:
            self._conn.close()
            await self._conn.wait_closed()
            self._conn = None

    @property
    def connection(self):
        """The SSH connection (for requests that need a channel of their own, such as ``ssh``)."""
        return self._conn

    async def raw(self, *argv: str) -> tuple[bytes, int]:
        """A request's answer as the JSON text it came in (stripped) and its exit status; a
        refusal without an answer raises its error. Every one-off request goes through here
        (the test doubles answer here)."""
        if self._link is not None:
            stdout, stderr, status = await self._shared_run(list(argv))
        else:
            result = await self._conn.run(shlex.join(argv), check=False, encoding=None, window=REQUEST_WINDOW,
                                       max_pktsize=REQUEST_PACKET)
            stdout, stderr = result.stdout or b"", result.stderr or b""
            status = result.exit_status if result.exit_status is not None else 255
        out = stdout.strip()
        if status != 0 and not out:
            raise request_error(stderr.decode("utf-8", "replace"), status)
        return out, status

    async def _shared_run(self, argv: list[str]) -> tuple[bytes, bytes, int]:
        """A request through the master: (stdout, stderr, exit status). A master that ran
        nothing (its connection gone) is left: this client connects itself and asks."""
        from .sharing import EXIT, STDOUT, NotShared

        out, err = [], []
        try:
            async for kind, payload in self._link.run(argv):
                if kind == EXIT:
                    return b"".join(out), b"".join(err), int(payload)
                (out if kind == STDOUT else err).append(payload)
        except NotShared:
            pass
        except (ConnectionError, ValueError) as exc:
            raise ConnectError(f"shared connection lost during {argv[0]!r}: {exc}") from None
        await self._leave_link()
        result = await self._conn.run(shlex.join(argv), check=False, encoding=None, window=REQUEST_WINDOW,
                                       max_pktsize=REQUEST_PACKET)
        return (result.stdout or b""), (result.stderr or b""), \
            result.exit_status if result.exit_status is not None else 255

    async def call(self, *argv: str) -> Answer:
        """Run a request; a non-zero status with a JSON answer on stdout is returned, not raised."""
        out, status = await self.raw(*argv)
        try:
            return Answer(msgspec.json.decode(out) if out else None, status)
        except msgspec.DecodeError:
            raise _not_json(out) from None

    async def request(self, *argv: str) -> Any:
        """Run a request and return its answer, raising its error."""
        answer = await self.call(*argv)
        if answer.status != 0:
            raise RequestFailed(f"request {' '.join(argv)!r} failed with status {answer.status}")
        return answer.data

    async def stream(self, *argv: str, check: bool = True,
                     decode: Callable[[str], Any] = json.loads) -> AsyncIterator[Any]:
        """Run a request that answers with one JSON document per line, as they come.

        With ``check=False`` a non-zero exit status after some lines is not an
        error (``exec`` ends with a summary line carrying its exit code).
        ``decode`` turns a line into a document (e.g. a typed msgspec decoder).
        """
        if self._link is not None:  # a stream keeps its channel for long: a connection of its own
            await self._leave_link()
        process = await self._conn.create_process(shlex.join(argv), encoding="utf-8")
        lines = 0
        async with process:
            async for line in process.stdout:
                if line.strip():
                    lines += 1
                    try:
                        doc = decode(line)
                    except (msgspec.DecodeError, ValueError) as exc:
                        raise ProtocolError(f"control plane sent a malformed line to {argv[0]!r}: {exc}") from None
                    yield doc
            result = await process.wait()
            if result.exit_status and (check or not lines):
                raise request_error(result.stderr or "", result.exit_status)

    async def typed(self, t: Any, *argv: str) -> Any:
        """``request`` decoded as the document type ``t`` (a malformed answer is a ProtocolError).

        The answer's text is decoded straight into ``t`` (``documents.decode_json``): 10,000
        machines of ``machines ls`` in ~20 ms, where builtins first, then ``t``, then
        cleaning every string took ~0.4 s."""
        out, status = await self.raw(*argv)
        if status != 0:
            try:
                msgspec.json.decode(out)
            except msgspec.DecodeError:
                raise _not_json(out) from None
            raise RequestFailed(f"request {' '.join(argv)!r} failed with status {status}")
        try:
            return docs.decode_json(out, t) if out else docs.decode(None, t)
        except msgspec.ValidationError as exc:
            raise ProtocolError(f"control plane sent a malformed answer to {argv[0]!r}: {exc}") from None
        except msgspec.DecodeError:
            raise _not_json(out) from None

    # ------------------------------------------------------------------ the fleet

    async def machines_ls(self, *, states: Iterable[str] = (), labels: Iterable[str] = ()) -> list[docs.MachineSummary]:
        argv = ["machines", "ls", *_repeat("--state", states), *_repeat("--label", labels)]
        return await self.typed(list[docs.MachineSummary], *argv)

    async def machine(self, name: str) -> docs.MachineDetail:
        return await self.typed(docs.MachineDetail, "machines", "show", name)

    async def forget(self, name: str, *, remove: bool = True) -> docs.Forgotten:
        """Limbo -> dead; dead -> removed, or left dead when not ``remove``."""
        return await self.typed(docs.Forgotten, "machines", "forget", name, *([] if remove else ["--no-remove"]))

    async def release(self, name: str) -> docs.Forgotten:
        return await self.typed(docs.Forgotten, "machines", "release", name)

    async def events(self, *, machine: str | None = None, since: str | None = None,
                     limit: int = 100) -> list[docs.Event]:
        argv = ["events", "--limit", str(limit), *_opt("--machine", machine), *_opt("--since", since)]
        return await self.typed(list[docs.Event], *argv)

    async def drain(self, targets: Iterable[str], reason: str, *, labels: Iterable[str] = ()) -> docs.Drained:
        return await self.typed(docs.Drained, "machines", "drain", "--reason", reason,
                                *_repeat("--label", labels), "--", *targets)

    async def undrain(self, targets: Iterable[str], *, labels: Iterable[str] = ()) -> docs.Undrained:
        return await self.typed(docs.Undrained, "machines", "undrain", *_repeat("--label", labels), "--", *targets)

    async def top(self, *, sort: str = "name", states: Iterable[str] = ()) -> list[docs.FleetRow]:
        return await self.typed(list[docs.FleetRow], "top", "--sort", sort, *_repeat("--state", states))

    async def metrics(self, name: str, *, since: str = "10m", until: str | None = None,
                      resolution: str = "auto", streams: Iterable[str] = ()) -> list[dict]:
        """History rows ``{"ts": ISO, key: value...}``: open key maps, kept as plain dicts.
        Asked as columns (``docs.MetricColumns``: the key names once, not on every row) and
        made into rows here; a control plane that answers only rows is asked again for them."""
        argv = ["metrics", name, "--since", since, *_opt("--until", until), "--resolution", resolution,
                *_repeat("--stream", streams)]
        try:
            doc = await self.typed(docs.MetricColumns, *argv, "--columns")
        except UsageError as exc:
            if "--columns" not in exc.reason:
                raise
            return await self.request(*argv) or []  # a control plane from before --columns
        try:
            return docs.metric_rows(doc)
        except ValueError as exc:
            raise ProtocolError(f"control plane sent malformed metric columns: {exc}") from None

    def subscribe(self, *, interval: str = "1s", machine: str | None = None, events: int | None = None,
                  no_fleet: bool = False, values: bool = False,
                  decode: Callable[[str], Any] = docs.decode_subscription) -> AsyncIterator[Any]:
        """The ``subscribe`` stream: ``Snapshot`` then ``Update`` documents (and ``MachineLatest``
        of ``machine``; only those with ``no_fleet``). With ``values`` rows carry their packed
        sample, which the exporter decodes with its own ``decode``."""
        argv = ["subscribe", *(["--values"] if values else []), "--interval", interval, *_opt("--events", events),
                *_opt("--machine", machine), *(["--no-fleet"] if no_fleet else [])]
        return self.stream(*argv, decode=decode)

    # ------------------------------------------------------------------ exec

    @staticmethod
    def exec_argv(targets: Iterable[str], argv: Iterable[str] = (), *, labels: Iterable[str] = (),
                  all: bool = False, include_drained: bool = False, timeout: str | None = None,
                  fanout: int | None = None, max_output: str | None = None, yes: bool = False,
                  dry_run: bool = False) -> list[str]:
        """The ``exec`` request's argv: options, then targets, then ``--`` and the command."""
        return ["exec", *_repeat("--label", labels), *(["--all"] if all else []),
                *(["--include-drained"] if include_drained else []), *_opt("--timeout", timeout),
                *_opt("--fanout", fanout), *_opt("--max-output", max_output), *(["--yes"] if yes else []),
                *(["--dry-run"] if dry_run else []), *targets, "--", *argv]

    def exec(self, targets: Iterable[str], argv: Iterable[str], **options: Any) -> AsyncIterator[docs.ExecLine]:
        """Run ``argv``: ``ExecStart``, ``ExecOutput``/``ExecExit`` as they come, then ``ExecSummary``.
        Closing the iterator before the summary closes the channel: the control plane cancels
        the command everywhere. A non-zero exit status after the summary is no error."""
        return self.stream(*self.exec_argv(targets, argv, **options), check=False, decode=docs.decode_exec)

    async def exec_dry_run(self, targets: Iterable[str], argv: Iterable[str] = (), **options: Any) -> docs.DryRun:
        """What ``exec`` would run on, which machines it would skip and why, and its confirmation threshold."""
        return await self.typed(docs.DryRun, *self.exec_argv(targets, argv, dry_run=True, **options))

    # ------------------------------------------------------------------ the control plane

    async def status(self, *, check: bool = False) -> Answer:
        """``status``: a JSON map (see ``documents``); its status is 1 when the control plane is
        unhealthy (with ``check``, an error)."""
        return Answer(await self.request("status"), 0) if check else await self.call("status")

    async def wait(self, live: int, timeout: str) -> Answer:
        """``wait --live N``: the answer says how far it got, also when it timed out (status 124)."""
        return await self.call("wait", "--live", str(live), "--timeout", timeout)

    async def keys(self) -> list[dict]:
        return await self.request("keys", "ls")

    async def revoke_key(self, name: str) -> Any:
        return await self.request("keys", "revoke", name)


def _opt(flag: str, value: Any) -> list[str]:
    return [] if value is None else [flag, str(value)]


def _repeat(flag: str, values: Iterable[str]) -> list[str]:
    return [a for v in values for a in (flag, v)]


def _not_json(out: bytes) -> ProtocolError:
    return ProtocolError(f"control plane sent an answer that is not JSON: {out[:200].decode('utf-8', 'replace')!r}")


_ERROR = msgspec.json.Decoder(docs.Error)


def request_error(stderr: str, status: int) -> CentralityError:
    """The error a refused request reports on stderr (its last line, an ``Error`` document)."""
    try:
        body = _ERROR.decode(stderr.strip().splitlines()[-1])
        err = from_code(body.error, body.reason)
    except (msgspec.DecodeError, IndexError):
        err = RequestFailed(stderr.strip()[:500] or f"request failed with status {status}")
    err.exit_code = status
    return err
