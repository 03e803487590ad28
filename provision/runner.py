"""The CLI side of ``centrality provision`` and ``centrality deprovision``.

1. check the control plane (operator context) answers, before touching any host;
2. build (or reuse) the agent wheel;
3. start the pyinfra worker (``provision.worker``) and follow its events: progress,
   the plan, a confirmation when something would change (``--yes`` skips it; without
   a terminal it is refused rather than assumed), per-host results;
4. provision: wait until each installed host's agent is live on the control plane,
   with the key that host generated (``machines ls``/``machines show`` through the
   operator client, never the database);
   deprovision: revoke each agent's key (``agent:NAME``) and declare the machine dead.

No pyinfra here: it runs only in the worker process.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Awaitable, Callable

from centrality_core.aio import within
from centrality_core.errors import CentralityError, ConfigError, Conflict, NotFound, UsageError

from . import events as ev
from . import reasons, wheel
from .progress import Display
from .results import DEPROVISION, PROVISION, Report

POLL_S = 0.5
STOP_WORKER_S = 5.0


@dataclass
class Options:
    inventory: Path
    limits: list[str] = field(default_factory=list)
    dry: bool = False
    yes: bool = False
    wait_s: float = 120.0
    context: str | None = None
    wheel: str | None = None
    verbose: int = 0
    interactive: bool = False
    """A person can answer a confirmation (stdin and stderr are terminals)."""


class WorkerFailed(CentralityError):
    code = "provision_failed"
    exit_code = 1


# ---------------------------------------------------------------------------- provision


async def provision(opts: Options, display: Display) -> Report:
    from centrality_core.client import OperatorClient

    _preflight(opts)
    if opts.limits and not opts.wheel:  # a --limit that matches nothing fails before the wheel is built
        await run_worker(opts, "install", Report(PROVISION, str(opts.inventory)), Display("provision", quiet=True),
                         check=True)
    began = time.time()
    report = Report(PROVISION, str(opts.inventory), dry=opts.dry)
    async with OperatorClient(opts.context) as client:
        status = (await client.status(check=True)).data
        display.note(f"control plane {status['address']} (v{status['version']}, context "
                     f"{client.context_name})")
        if opts.wheel:
            agent_wheel = wheel.existing(opts.wheel)
        elif wheel.source_root() is not None:
            display.note("building the agent wheel (cached while the source is unchanged)")
            agent_wheel = await asyncio.to_thread(wheel.build)
        else:
            display.note("packing the agent wheel from the installed centrality (the hosts run this version)")
            agent_wheel = await asyncio.to_thread(wheel.build)
        display.note(f"agent wheel {agent_wheel.filename} sha256 {agent_wheel.sha256[:16]}")

        async def confirm(report: Report) -> bool:
            changing = [h for h in report.hosts.values() if h.changes]
            return await _confirm(opts, display, changing, [])

        await run_worker(opts, "install", report, display, wheel_path=agent_wheel.path, confirm=confirm)
        if report.aborted:
            return report
        if opts.dry:
            live = await _live_names(client)
            for h in report.hosts.values():
                if h.name:
                    h.live = h.name in live
            return report
        await wait_live(client, report, opts.wait_s, display, since=began)
    return report


async def wait_live(client, report: Report, timeout_s: float, display: Display, *,
                    since: float | None = None) -> None:
    """Wait until each installed host's machine is live, with the key the host generated.

    A host that is not live in time fails with the control plane's refusal of its
    registration (recorded ``since`` the run began), or a hint where its log is.
    """
    pending = {h.name: h for h in report.hosts.values() if h.ok and h.name}
    expected = {name: _fingerprint(h.public_key) for name, h in pending.items() if h.public_key}
    other_key: dict[str, str] = {}
    for h in pending.values():
        display.host(h.host, "waiting for the agent to go live")
    started, wall = time.monotonic(), since if since is not None else time.time()
    while pending:
        live = await _live_names(client)
        for name in [n for n in pending if n in live]:
            if expected.get(name):
                seen = (await client.machine(name)).key_fingerprint
                if seen != expected[name]:
                    other_key[name] = seen
                    continue
            h = pending.pop(name)
            h.live = True
            display.host(h.host, "agent live", ok=True)
        if not pending or time.monotonic() - started >= timeout_s:
            break
        await asyncio.sleep(POLL_S)
    report.waited_s = round(time.monotonic() - started, 3)
    for name, h in pending.items():
        h.live = False
        detail = await _refusal(client, name, since=wall)
        if not detail and name in other_key:
            detail = f"the machine live under this name has another key ({other_key[name]})"
        if not detail and h.log_hint:
            detail = f"see {h.log_hint} on the host"
        h.fail(reasons.never_registered(name, timeout_s, detail))
        display.host(h.host, h.reason, ok=False)


async def _live_names(client) -> set[str]:
    return {m.name for m in await client.machines_ls(states=["live"])}


async def _refusal(client, name: str, *, since: float) -> str:
    """The control plane's reason for refusing this machine's registration, if it recorded one."""
    try:
        rows = await client.events(machine=name, limit=10)
    except CentralityError:
        return ""
    for row in rows:
        if row.kind == "registration_refused" and _ts(row.ts) >= since:
            return f"refused: {row.reason}"
    return ""


def _ts(value) -> float:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _fingerprint(public_key: str) -> str:
    import asyncssh

    try:
        return asyncssh.import_public_key(public_key).get_fingerprint("sha256")
    except (asyncssh.KeyImportError, ValueError):
        return ""


# ---------------------------------------------------------------------------- deprovision


async def deprovision(opts: Options, display: Display) -> Report:
    from centrality_core.client import OperatorClient

    _preflight(opts)
    report = Report(DEPROVISION, str(opts.inventory), dry=opts.dry)
    async with OperatorClient(opts.context) as client:
        await client.status(check=True)
        active = {k["name"] for k in await client.keys()}

        async def confirm(report: Report) -> bool:
            changing = [h for h in report.hosts.values() if h.changes]
            keys = [f"agent:{h.name}" for h in report.hosts.values() if f"agent:{h.name}" in active]
            return await _confirm(opts, display, changing, keys)

        await run_worker(opts, "remove", report, display, confirm=confirm)
        if report.aborted:
            return report
        for h in report.hosts.values():
            if not h.name:
                continue
            key_name = f"agent:{h.name}"
            if opts.dry:
                h.key = "would revoke" if key_name in active else "none"
                continue
            try:
                await client.revoke_key(key_name)
                h.key = "revoked"
            except NotFound:
                h.key = "none"
            await _forget(client, h.name)
            if h.ok:
                done = "agent removed" if h.changed else "no agent here"
                display.host(h.host, f"{done}; key {'revoked' if h.key == 'revoked' else 'already gone'}",
                             ok=True)
    return report


async def _forget(client, name: str) -> None:
    """Declare the machine dead; one already dead stays listed (``remove=False``: it may
    have turned dead on its own since it was looked at). Its connection closes when its
    key is revoked, so retry briefly."""
    for _ in range(40):
        try:
            try:
                await client.forget(name, remove=False)
            except UsageError:  # a control plane older than --no-remove
                if (await client.machine(name)).state != "dead":
                    await client.forget(name)
            return
        except NotFound:
            return
        except Conflict:  # still live: the revoked connection is closing
            await asyncio.sleep(0.25)


def _preflight(opts: Options) -> None:
    """Fail before touching the control plane or any host."""
    import importlib.util

    if not opts.inventory.is_file():
        raise UsageError(f"no inventory file {opts.inventory}")
    if importlib.util.find_spec("pyinfra") is None:
        raise ConfigError("provisioning needs pyinfra: pip install 'centrality[provision]'")


# ---------------------------------------------------------------------------- confirmation


async def _confirm(opts: Options, display: Display, changing: list, keys: list[str]) -> bool:
    if not changing and not keys:
        return True
    if opts.yes:
        return True
    what = f"{len(changing)} host(s) would change" + (f" and {len(keys)} agent key(s) be revoked" if keys else "")
    if not opts.interactive:
        raise UsageError(f"{what}: pass --yes to go ahead (or --dry to only look); nothing was changed")
    from rich.markup import escape

    from centrality_core.sanitize import one_line

    display.pause()
    try:
        for h in changing:
            display.console.print(f"  [bold]{escape(one_line(h.host, 60))}[/]: "
                                  f"{escape(one_line(', '.join(h.changes), 400))}", soft_wrap=True)
        for k in keys:
            display.console.print(f"  revoke key {escape(k)}")
        answer = await asyncio.to_thread(display.console.input, escape(f"{what}. Go ahead? [y/N] "))
    finally:
        display.resume()
    return answer.strip().lower() in ("y", "yes")


# ---------------------------------------------------------------------------- the worker


async def run_worker(opts: Options, deploy: str, report: Report, display: Display, *,
                     wheel_path: Path | None = None,
                     confirm: Callable[[Report], Awaitable[bool]] | None = None, check: bool = False) -> None:
    """Run ``provision.worker`` and fold its events into ``report`` (``check``: only load the
    inventory and apply ``--limit``)."""
    argv = [sys.executable, "-m", "provision.worker", str(opts.inventory), "--deploy", deploy]
    if check:
        argv.append("--check")
    for limit in opts.limits:
        argv += ["--limit", limit]
    if opts.dry:
        argv.append("--dry")
    elif confirm is not None:
        argv.append("--confirm")
    if wheel_path:
        argv += ["--wheel", str(wheel_path)]
    argv += ["-v"] * min(opts.verbose, 2)
    env = dict(os.environ)
    if opts.context:
        env["CENTRALITY_CONTEXT"] = opts.context  # the deploy's `centrality token create` uses it
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, limit=1 << 20)
    tail: deque[str] = deque(maxlen=20)

    async def drain() -> None:
        async for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            tail.append(line)
            if opts.verbose:
                display.note(line)

    stderr_task = asyncio.create_task(drain())
    state = _Fold(report, display)
    try:
        async for raw in proc.stdout:
            event = ev.decode(raw)
            if isinstance(event, ev.Confirm):
                go = await confirm(report) if confirm else True
                proc.stdin.write(b"go\n" if go else b"stop\n")
                await proc.stdin.drain()
                if not go:
                    report.aborted = True
                    for h in report.hosts.values():
                        h.changed = False if h.changed is not None else None
            elif isinstance(event, ev.Fatal):
                err = WorkerFailed(event.reason)
                err.exit_code = event.exit_code
                raise err
            else:
                state.apply(event)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await within(proc.wait(), STOP_WORKER_S)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        await asyncio.gather(stderr_task, return_exceptions=True)
    if not state.done:
        last = " | ".join(line for line in tail if line.strip())[-300:]
        raise WorkerFailed(f"the pyinfra worker stopped unexpectedly (exit status {proc.returncode})"
                           + (f": {last}" if last else ""))


class _Fold:
    """Applies worker events to the report and the display."""

    def __init__(self, report: Report, display: Display) -> None:
        self.report, self.display = report, display
        self.total = 0
        self.done = False

    def apply(self, e: ev.Event) -> None:
        r, d = self.report, self.display
        if isinstance(e, ev.Hosts):
            for info in e.hosts:
                h = r.host(info.host)
                h.name, h.target, h.labels, h.prefix = info.name, info.target, info.labels, info.prefix
            d.hosts([info.host for info in e.hosts])
            d.note(f"{len(e.hosts)} host(s) from {r.inventory}")
        elif isinstance(e, ev.Connected):
            d.host(e.host, "connected")
        elif isinstance(e, ev.Failed):
            r.host(e.host).fail(e.reason)
            d.host(e.host, e.reason, ok=False)
        elif isinstance(e, ev.Plan):
            self.total = len(e.ops)
        elif isinstance(e, ev.Planned):
            h = r.host(e.host)
            h.changes, h.changed = list(e.changes), bool(e.changes)
            idle = "nothing to remove" if r.command == DEPROVISION else "up to date"
            d.host(e.host, f"{len(e.changes)} change(s) to make" if e.changes else idle)
        elif isinstance(e, ev.Step):
            if e.status == "start" and e.op in r.host(e.host).changes:
                d.step(e.host, e.index, self.total, e.op)
            elif e.status == "error":
                d.host(e.host, f"{e.op}: failed")
        elif isinstance(e, ev.Result):
            h = r.host(e.host)
            h.public_key, h.log_hint = e.public_key, e.log_hint
            if e.ok or e.changes or h.changed is not None:
                h.changed, h.changes = e.changed, list(e.changes)
            if not e.ok:
                already = not h.ok and h.reason == e.reason
                h.fail(e.reason)
                if not already:
                    d.host(e.host, h.reason, ok=False)
            elif not r.dry and r.command == PROVISION:
                d.host(e.host, "installed" if e.changed else "already installed")
        elif isinstance(e, ev.Done):
            self.done = True
            r.aborted = r.aborted or e.aborted
