"""The operator client: requests to a control plane over SSH, answers in JSON.

Used by the CLI and the TUI. One ``OperatorClient`` holds one SSH connection;
each request is an exec channel on it (``machines ls``), so a plain OpenSSH
client can make the same requests.
"""

from __future__ import annotations

import asyncio
import json
import random
import shlex
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import msgspec

from centrality_core import contexts, endpoints, sshlink
from centrality_core.errors import Busy, CentralityError, ConnectError, ProtocolError, RequestFailed, from_code

#: How long a request keeps retrying a control plane that answers "busy"
#: (a whole fleet reconnecting) before giving up.
BUSY_RETRY_S = 15.0


@dataclass
class Answer:
    data: Any
    status: int


class OperatorClient:
    def __init__(self, context: str | None = None, *, username: str | None = None) -> None:
        self.context_name, self.context = contexts.resolve(context)
        #: Log in as this user instead of the context's (a machine's name: a session on it).
        self.username = username
        #: The address this client is connected to (one of the context's).
        self.address = ""
        self._conn = None

    async def __aenter__(self) -> OperatorClient:
        key = sshlink.load_private_key(self.context.key)
        deadline = time.monotonic() + BUSY_RETRY_S
        delay = 0.2
        while True:
            try:
                # Several addresses (replicas): the first that answers, in order.
                self._conn, self.address = await sshlink.connect_any(
                    endpoints.split(self.context.address) or [self.context.address],
                    self.context.fingerprint, key, username=self.username or self.context.user)
                return self
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
        if self._conn is not None:
            self._conn.close()
            await self._conn.wait_closed()
            self._conn = None

    @property
    def connection(self):
        """The SSH connection (for requests that need a channel of their own, such as ``ssh``)."""
        return self._conn

    async def call(self, *argv: str) -> Answer:
        """Run a request; a non-zero status with a JSON answer on stdout is returned, not raised."""
        result = await self._conn.run(shlex.join(argv), check=False, encoding="utf-8")
        status = result.exit_status if result.exit_status is not None else 255
        out = (result.stdout or "").strip()
        if status != 0 and not out:
            raise _error(result.stderr or "", status)
        try:
            return Answer(msgspec.json.decode(out) if out else None, status)
        except msgspec.DecodeError:
            raise ProtocolError(f"control plane sent an answer that is not JSON: {out[:200]!r}") from None

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
        process = await self._conn.create_process(shlex.join(argv), encoding="utf-8")
        lines = 0
        async with process:
            async for line in process.stdout:
                if line.strip():
                    lines += 1
                    yield decode(line)
            result = await process.wait()
            if result.exit_status and (check or not lines):
                raise _error(result.stderr or "", result.exit_status)


def _error(stderr: str, status: int) -> CentralityError:
    try:
        body = json.loads(stderr.strip().splitlines()[-1])
        err = from_code(body["error"], body["reason"])
    except (json.JSONDecodeError, KeyError, IndexError, TypeError):
        err = RequestFailed(stderr.strip()[:500] or f"request failed with status {status}")
    err.exit_code = status
    return err
