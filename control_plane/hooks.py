"""Hooks: when something happens, run a local command or POST to a webhook.

Rules come from ``[[server.hooks]]`` in the control plane's config
(``centrality_core.settings.HookRule``). Events:

| event | when |
| --- | --- |
| ``machine.live`` | a machine registered or came back |
| ``machine.limbo`` | its connection dropped or its heartbeats stopped |
| ``machine.dead`` | silent past ``dead_after``, or forgotten by an operator |
| ``machine.drained`` / ``machine.undrained`` | an operator (or auto-drain) changed the flag |
| ``machine.unhealthy`` / ``machine.healthy`` | its healthchecks started / stopped failing |
| ``machine.labelled`` | an operator changed its labels |
| ``exec.done`` / ``exec.failed`` | an ``exec`` ended; failed: its exit code was not 0 |

The event is one JSON object (``{"event", "ts", "at", ...}``): on the
command's stdin (with ``CENTRALITY_EVENT`` set to its name), or as the body
of the POST. Hooks run as tasks the ``Hooks`` object owns, at most
``MAX_RUNNING`` at once (more are dropped and logged), each bounded by its
timeout: a command is killed with its process group, a webhook's thread
gives up when urllib's timeout fires. A failing hook is logged; it never
blocks or fails anything in the control plane. ``stop()`` cancels what runs.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import os
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable
from urllib.parse import urlsplit

from centrality_core import __version__
from centrality_core.aio import within
from centrality_core.errors import ConfigError
from centrality_core.lifecycle import Event
from centrality_core.settings import HookRule
from centrality_core.timefmt import iso

log = logging.getLogger("centrality.hooks")

MAX_RUNNING = 32
MAX_TIMEOUT = 300.0

#: Lifecycle and flag event kinds (registry events) -> hook event names.
EVENT_NAMES = {
    "registered": "machine.live", "reconnected": "machine.live",
    "disconnected": "machine.limbo", "heartbeat_missed": "machine.limbo",
    "expired": "machine.dead", "forgotten": "machine.dead",
    "drained": "machine.drained", "undrained": "machine.undrained",
    "unhealthy": "machine.unhealthy", "healthy": "machine.healthy",
    "labelled": "machine.labelled",
}
EVENTS = sorted(set(EVENT_NAMES.values()) | {"exec.done", "exec.failed"})


def validate(rules: Iterable[HookRule]) -> list[HookRule]:
    """Check every rule; ``ConfigError`` names the bad one."""
    out = []
    for i, rule in enumerate(rules, 1):
        where = f"hook {i}" + (f" ({rule.name})" if rule.name else "")
        if not rule.on:
            raise ConfigError(f"{where}: 'on' must list at least one event ({', '.join(EVENTS)})")
        for pattern in rule.on:
            if not any(fnmatch.fnmatchcase(e, pattern) for e in EVENTS):
                raise ConfigError(f"{where}: {pattern!r} matches no event; events: {', '.join(EVENTS)}")
        if bool(rule.run) == bool(rule.webhook):
            raise ConfigError(f"{where}: set exactly one of 'run' (a command) or 'webhook' (a URL)")
        if rule.webhook:
            parts = urlsplit(rule.webhook)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(f"{where}: webhook must be an http:// or https:// URL")
        if not 0 < rule.timeout <= MAX_TIMEOUT:
            raise ConfigError(f"{where}: timeout must be between 0 and {MAX_TIMEOUT:g} seconds")
        out.append(rule)
    return out


def _post(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": f"centrality/{__version__}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only
        response.read(65536)
        return response.status


class Hooks:
    def __init__(self, rules: Iterable[HookRule]) -> None:
        self.rules = validate(rules)
        self.tasks: set[asyncio.Task] = set()
        self.fired = 0  # hook runs started
        self.failures = 0  # hook runs that failed or timed out
        self.dropped = 0  # not started: too many running
        self._pool: ThreadPoolExecutor | None = None
        self._stopped = False
        #: Off while the control plane loads its fleet: machines it finds live at start go to
        #: limbo ("control plane restarted"), which must not page anyone once per machine.
        self.active = False

    def matching(self, event: str) -> list[HookRule]:
        return [r for r in self.rules if any(fnmatch.fnmatchcase(event, pat) for pat in r.on)]

    # ------------------------------------------------------------------ firing

    def on_lifecycle(self, events: list[Event]) -> None:
        """Registry listener: lifecycle and flag events become hook events."""
        if not self.rules or not self.active:
            return
        for ev in events:
            name = EVENT_NAMES.get(ev.kind)
            if name is not None:
                self.fire(name, {"machine": ev.name, "machine_id": ev.machine_id, "kind": ev.kind,
                                 "from": ev.from_state.value if ev.from_state else None,
                                 "to": ev.to_state.value if ev.to_state else None,
                                 "reason": ev.reason, "actor": ev.actor, "ts": ev.at, "at": iso(ev.at)})

    def fire(self, event: str, payload: dict) -> int:
        """Start the hooks matching ``event``; returns how many started. Never raises."""
        if self._stopped or not self.active:
            return 0
        started = 0
        for rule in self.matching(event):
            if len(self.tasks) >= MAX_RUNNING:
                self.dropped += 1
                log.warning("hook for %s dropped: %d hooks already running", event, len(self.tasks))
                continue
            now = time.time()
            body = {"event": event, "ts": now, "at": iso(now), **payload}
            task = asyncio.get_running_loop().create_task(self._run(rule, event, body))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            self.fired += 1
            started += 1
        return started

    async def _run(self, rule: HookRule, event: str, body: dict) -> None:
        what = rule.name or (rule.webhook if rule.webhook else str(rule.run))[:120]
        data = json.dumps(body, default=str).encode()
        try:
            if rule.webhook:
                await self._webhook(rule, data)
            else:
                await self._command(rule, event, data)
            log.info("hook %s ran for %s", what, event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a hook must never hurt the control plane
            self.failures += 1
            log.warning("hook %s failed for %s: %s", what, event, str(exc)[:300] or type(exc).__name__)

    async def _command(self, rule: HookRule, event: str, data: bytes) -> None:
        argv = ["sh", "-c", rule.run] if isinstance(rule.run, str) else list(rule.run)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, start_new_session=True,
            env={**os.environ, "CENTRALITY_EVENT": event})
        try:
            _, err = await within(proc.communicate(data), rule.timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            await proc.wait()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise RuntimeError(f"timed out after {rule.timeout:g}s (killed)") from None
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] if err else []
            raise RuntimeError(f"exit status {proc.returncode}" + (f": {tail[0][:200]}" if tail else ""))

    async def _webhook(self, rule: HookRule, data: bytes) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(4, thread_name_prefix="centrality-webhook")
        loop = asyncio.get_running_loop()
        try:
            status = await within(
                loop.run_in_executor(self._pool, _post, rule.webhook, data, rule.timeout), rule.timeout + 1)
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"HTTP {exc.code} from the webhook") from None
        except urllib.error.URLError as exc:
            raise RuntimeError(f"webhook unreachable: {exc.reason}") from None
        except asyncio.TimeoutError:
            raise RuntimeError(f"webhook timed out after {rule.timeout:g}s") from None
        if not 200 <= status < 300:
            raise RuntimeError(f"HTTP {status} from the webhook")

    # ------------------------------------------------------------------ shutdown

    async def stop(self) -> None:
        self._stopped = True
        tasks = list(self.tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._pool is not None:
            # a webhook already in flight ends within its timeout; nothing new starts
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: self._pool.shutdown(wait=True, cancel_futures=True))
