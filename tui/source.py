"""Where the dashboard's data comes from: the ``FleetSource`` interface, and
``OperatorSource``, its implementation over the operator channel (SSH).

The dashboard never polls the fleet: ``snapshots()`` is the ``subscribe``
request, pushed by the control plane (a snapshot, then changed rows and new
events), and ``machine_stream(name)`` pushes one machine's latest values and
nvidia-smi screen. History and details are one-off requests. ``exec()``
streams a command's run (closing it cancels the command everywhere) and
``exec_plan()`` asks the control plane what it would run on and above how
many machines it asks first; ``drain()`` and ``undrain()`` change a flag.
Documents are the typed ones of ``centrality_core.documents``, decoded (and
cleaned of escape sequences) once by the operator client. Every failure of
the link surfaces as ``SourceError`` with a reason a person can act on; the
caller (``feed.Feed``) reconnects. A refused request (a viewer key, a
confirmation the control plane wants) is a ``SourceError`` with
``lost=False`` and the control plane's error ``code``.

``tests/tui/fake.py`` (``FakeSource``) is the in-memory double used by tests,
snapshots and the benchmark; it builds the same documents.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol

from centrality_core.aio import within
from centrality_core.documents import (Drained, DryRun, Event, ExecLine, MachineDetail, MachineLatest, Snapshot,
                                       Undrained, Update)
from centrality_core.errors import CentralityError, ConnectError, NotFound, UsageError

log = logging.getLogger("centrality.tui")

SUBSCRIBE_INTERVAL = "0.25s"  # the control plane coalesces changes to at most 4 updates a second
MACHINE_INTERVAL = "0.5s"


class SourceError(Exception):
    """The data source failed: the link is down, or a request was refused."""

    def __init__(self, reason: str, *, lost: bool = True, code: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.lost = lost  # the connection is gone (as opposed to one request failing)
        self.code = code  # the control plane's error code when it refused: forbidden, confirm_required...


class FleetSource(Protocol):
    """What the dashboard needs from a control plane."""

    #: Shown in the title bar: which control plane this is.
    label: str

    def snapshots(self) -> AsyncIterator[Snapshot | Update]:
        """The fleet subscription: ``Snapshot`` then ``Update`` documents. Ends by raising SourceError."""

    def machine_stream(self, name: str) -> AsyncIterator[MachineLatest]:
        """One machine's latest values and text, as they come."""

    async def metrics(self, name: str, since: str, resolution: str) -> list[dict]:
        """History: ``[{"ts": ISO, key: value}]`` (rollups add ``key:min``/``key:max``)."""

    async def machine(self, name: str) -> MachineDetail:
        """``machines show NAME``: info, labels and recent events."""

    async def events(self, machine: str | None = None, limit: int = 500) -> list[Event]:
        """Stored events, newest first."""

    async def exec_plan(self, targets: list[str]) -> DryRun:
        """``exec --dry-run TARGETS``: the machines it would run on, those skipped and why, and the
        control plane's confirmation threshold."""

    def exec(self, targets: list[str], argv: list[str], *, timeout: str = "30s", max_output: str = "1M",
             yes: bool = False) -> AsyncIterator[ExecLine]:
        """Run ``argv`` on ``targets`` (names, hostlist ranges): the ``exec`` request's documents,
        ``ExecStart``, ``ExecOutput``, ``ExecExit`` then ``ExecSummary``, as they come. Closing the
        iterator before the summary cancels the command on every machine still running it."""

    async def drain(self, names: list[str], reason: str) -> Drained:
        """``machines drain --reason REASON NAMES``."""

    async def undrain(self, names: list[str]) -> Undrained:
        """``machines undrain NAMES``."""

    async def forget(self, names: list[str]) -> dict[str, str]:
        """``machines forget NAME`` for each: a dead machine's record is removed (its row leaves the
        subscription), a machine in limbo is declared dead. Returns the names refused, with why."""

    async def close(self) -> None:
        """Drop the connection."""


class OperatorSource:
    """A ``FleetSource`` over one SSH connection to the control plane (``OperatorClient``).

    The connection is opened on first use and again after it is lost; every
    request and stream shares it, each on its own channel.
    """

    def __init__(self, context: str | None = None) -> None:
        from centrality_core.client import OperatorClient

        self._client_class = OperatorClient
        probe = OperatorClient(context)  # resolves the context now: a bad one fails before the UI starts
        self.context = context
        self.label = f"{probe.context_name} ({probe.context.address})"
        self._client = None
        self._lock = asyncio.Lock()
        self._no_fleet = True  # an older control plane refuses --no-fleet: then it is left out

    async def _connected(self):
        async with self._lock:
            if self._client is None:
                client = self._client_class(self.context)
                try:
                    await client.__aenter__()
                except CentralityError as exc:
                    raise SourceError(exc.reason) from None
                except (OSError, asyncio.TimeoutError) as exc:
                    raise SourceError(f"cannot reach {self.label}: {exc}") from None
                self._client = client
            return self._client

    async def _drop(self, client) -> None:
        async with self._lock:
            if self._client is client:
                self._client = None
        try:
            await within(client.__aexit__(None, None, None), 2)
        except Exception:  # noqa: BLE001 - it is already broken; nothing to report
            pass

    def _lost(self, exc: BaseException) -> SourceError:
        if isinstance(exc, SourceError):
            return exc
        if isinstance(exc, CentralityError) and not isinstance(exc, ConnectError):
            return SourceError(exc.reason, lost=False, code=exc.code)
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        return SourceError(f"connection to {self.label} lost: {reason}")

    async def _stream(self, open_stream: Callable[[Any], AsyncIterator[Any]]) -> AsyncIterator[Any]:
        client = await self._connected()
        try:
            async for doc in open_stream(client):
                yield doc
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:  # noqa: BLE001 - every failure of the link is reported the same way
            err = self._lost(exc)
            if err.lost:
                await self._drop(client)
            raise err from None
        # The channel closed without an error: the control plane went away.
        await self._drop(client)
        raise SourceError(f"{self.label} closed the subscription")

    async def snapshots(self) -> AsyncIterator[Snapshot | Update]:
        async for doc in self._stream(lambda c: c.subscribe(interval=SUBSCRIBE_INTERVAL)):
            if isinstance(doc, (Snapshot, Update)):
                yield doc

    async def machine_stream(self, name: str) -> AsyncIterator[MachineLatest]:
        no_fleet = self._no_fleet
        try:
            async for doc in self._stream(lambda c: c.subscribe(interval=MACHINE_INTERVAL, events=0, machine=name,
                                                                no_fleet=no_fleet)):
                if isinstance(doc, MachineLatest):
                    yield doc
        except SourceError as exc:
            if no_fleet and not exc.lost and "no-fleet" in exc.reason:
                # An older control plane: it sends the fleet too, which we skip.
                self._no_fleet = False
                async for doc in self.machine_stream(name):
                    yield doc
                return
            raise

    async def _request(self, method: Callable[[Any], Awaitable[Any]]) -> Any:
        client = await self._connected()
        try:
            return await method(client)
        except (NotFound, UsageError) as exc:
            raise SourceError(exc.reason, lost=False, code=exc.code) from None
        except Exception as exc:  # noqa: BLE001
            err = self._lost(exc)
            if err.lost:
                await self._drop(client)
            raise err from None

    async def metrics(self, name: str, since: str, resolution: str) -> list[dict]:
        return await self._request(lambda c: c.metrics(name, since=since, resolution=resolution))

    async def machine(self, name: str) -> MachineDetail:
        return await self._request(lambda c: c.machine(name))

    async def events(self, machine: str | None = None, limit: int = 500) -> list[Event]:
        return await self._request(lambda c: c.events(machine=machine, limit=limit))

    async def exec_plan(self, targets: list[str]) -> DryRun:
        return await self._request(lambda c: c.exec_dry_run(targets))

    async def exec(self, targets: list[str], argv: list[str], *, timeout: str = "30s", max_output: str = "1M",
                   yes: bool = False) -> AsyncIterator[ExecLine]:
        client = await self._connected()
        try:
            async for doc in client.exec(targets, argv, timeout=timeout, max_output=max_output, yes=yes):
                yield doc
        except (asyncio.CancelledError, GeneratorExit):
            raise  # the channel closes on the way out: the control plane cancels the command
        except Exception as exc:  # noqa: BLE001
            err = self._lost(exc)
            if err.lost:
                await self._drop(client)
            raise err from None

    async def drain(self, names: list[str], reason: str) -> Drained:
        return await self._request(lambda c: c.drain(names, reason))

    async def undrain(self, names: list[str]) -> Undrained:
        return await self._request(lambda c: c.undrain(names))

    async def forget(self, names: list[str]) -> dict[str, str]:
        # `machines forget` takes one name: name by name, so the others are forgotten and each
        # refusal is precise.
        failed = {}
        for name in names:
            try:
                await self._request(lambda c, name=name: c.forget(name))
            except SourceError as exc:
                if exc.lost:
                    raise
                failed[name] = exc.reason
        return failed

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await within(client.__aexit__(None, None, None), 2)
            except Exception:  # noqa: BLE001
                pass
