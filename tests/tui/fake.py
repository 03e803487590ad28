"""``FakeSource``: an in-memory control plane for tests, snapshots and the benchmark.

A test double, not part of the product: the dashboard's ``FleetSource``
without SSH. It answers with the control plane's own documents
(``centrality_core.documents``: ``Snapshot``, ``Update``, ``MachineLatest``,
``MachineDetail``, ``Event``, ``DryRun``, ``ExecStart`` ... ``ExecSummary``,
``Drained``, ``Undrained``), each passed through JSON and the operator
client's decoders on the way out, as ``OperatorSource`` would hand them over,
so a change of a document breaks these tests rather than a user. Metric
history rows stay maps, as on the wire. Everything is a pure
function of the clock it is given, so with a frozen clock two runs draw the
same screens. Tests steer it: ``update()``, ``set_state()``, ``disconnect()``
/ ``reconnect()``, ``push_machine()``; ``role = "viewer"`` makes it refuse
writes as the control plane does, ``confirm_above`` is its exec threshold,
``exec_results[name]`` overrides what a machine answers (else
``fakeshell``), and ``execs`` / ``cancelled`` record what ran and what
was cancelled.

Rows of small fleets come from the agent's fake collectors (so the table and
the machine charts agree); large fleets (the benchmark's feeder) use a cheap
formula.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import AsyncIterator, Callable

import msgspec

from centrality_core import documents as docs
from centrality_core import durations, hostlist, targeting
from centrality_core.errors import UsageError
from centrality_core.protocol import GpuProcesses
from centrality_core.settings import ServerSettings
from centrality_core.summary import summarize
from centrality_core.timefmt import iso
from tui.source import SourceError

from . import fakeshell

SMALL_FLEET = 300  # up to this many machines, rows come from the fake collectors


class FakeMachine:
    __slots__ = ("name", "profile", "index", "state", "labels", "hostname", "drained", "drain_reason",
                 "drained_by", "drained_at", "unhealthy", "metrics_held", "last_heartbeat", "registered_at", "_collectors")

    def __init__(self, name: str, profile: str, index: int, labels: dict, registered_at: float) -> None:
        self.name, self.profile, self.index, self.labels = name, profile, index, labels
        self.state = "live"
        self.hostname = f"{'gpu' if profile == 'gpu8' else 'cpu'}-{index:05d}"
        self.drained = False
        self.drain_reason = ""
        self.drained_by = ""
        self.drained_at: float | None = None
        self.unhealthy = False
        self.metrics_held = False
        self.last_heartbeat = registered_at
        self.registered_at = registered_at
        self._collectors = None

    @property
    def collectors(self):
        if self._collectors is None:
            from agent_runtime.collectors.simulated import FakeCollectors

            self._collectors = FakeCollectors(self.profile, self.index)
        return self._collectors

    def info(self) -> dict:
        info = self.collectors.machine_info()
        info["hostname"] = self.hostname
        info["agent_version"] = "0.1.0"
        return info


class FakeSource:
    """A ``FleetSource`` held in memory."""

    def __init__(self, machines: list[FakeMachine], *, clock: Callable[[], float] = time.time,
                 events: list[docs.Event] | None = None, replay: int = 0) -> None:
        self.label = "fake (in memory)"
        self.clock = clock
        self.machines = {m.name: m for m in machines}
        self.event_list: list[docs.Event] = list(events or [])  # newest first
        self.replay = replay  # seconds of updates sent after the snapshot (sparklines start full)
        self.up = True
        self.down_reason = ""
        self.connects = 0
        self.requests: list[tuple] = []
        self.role = "operator"  # "viewer": writes (exec, drain) are refused
        self.actor = "operator:you"
        self.confirm_above = ServerSettings().exec_confirm_above
        self.exec_results: dict[str, fakeshell.FakeResult] = {}
        self.execs: list[dict] = []  # every exec asked for: targets, argv, yes, status
        self.cancelled: list[str] = []  # machines a cancelled exec was still running on
        self._subs: list[asyncio.Queue] = []
        self._machine_subs: dict[str, list[asyncio.Queue]] = {}
        self._cheap = len(machines) > SMALL_FLEET
        self._tick = 0

    # ------------------------------------------------------------------ building

    @classmethod
    def fleet(cls, gpu: int = 8, cpu: int = 16, *, clock: Callable[[], float] = time.time,
              replay: int = 0) -> FakeSource:
        """``gpu`` 8-GPU machines and ``cpu`` CPU machines, with labels and a little history."""
        now = clock()
        machines, events = [], []
        width = max(2, len(str(max(gpu, cpu))))
        for i in range(gpu):
            m = FakeMachine(f"gpu-{i + 1:0{width}d}", "gpu8", i + 1,
                            {"pool": "train" if i % 4 else "eval", "rack": f"r{i // 8 + 1}"}, now - 3600 - i)
            machines.append(m)
        for i in range(cpu):
            m = FakeMachine(f"cpu-{i + 1:0{width}d}", "cpu", 1000 + i,
                            {"pool": "batch" if i % 3 else "web", "rack": f"r{i // 16 + 1}"}, now - 3000 - i)
            machines.append(m)
        for m in machines:
            events.append(_event(m.registered_at, "registered", m.name, None, "live", "new machine", "agent"))
        src = cls(machines, clock=clock, events=events, replay=replay)
        src.event_list.sort(key=lambda e: e.ts, reverse=True)
        return src

    def row(self, m: FakeMachine, now: float) -> docs.FleetRow:
        """``views.fleet_row`` of one machine at ``now``."""
        age = max(0.0, now - m.last_heartbeat) if m.state != "live" else (now % 1.0)
        if m.state == "live":
            sample_at = math.floor(now)
            if self._cheap:
                figures = _cheap_numbers(m.index, now, m.profile == "gpu8")
            else:
                s = summarize(m.collectors.sample(sample_at)[0])
                figures = {f: round(v, 2) if (v := getattr(s, f)) is not None else None for f in docs.FIGURES}
        else:
            sample_at, figures = m.last_heartbeat, {}
        return docs.FleetRow(name=m.name, state=m.state, hostname=m.hostname, labels=m.labels,
                             gpu_count=8 if m.profile == "gpu8" else 0, cpu_count=112 if m.profile == "gpu8" else 16,
                             last_heartbeat=iso(now - age), heartbeat_age_s=round(age, 3),
                             sample_ts=iso(sample_at), sample_age_s=round(now - sample_at, 3),
                             drained=m.drained, unhealthy=m.unhealthy, metrics_held=m.metrics_held, **figures)

    # ------------------------------------------------------------------ steering (tests)

    def _send(self, queues: list[asyncio.Queue], doc) -> None:
        for q in list(queues):
            q.put_nowait(doc)

    def push(self, doc: docs.Update) -> None:
        """Deliver a document to every fleet subscriber."""
        self._send(self._subs, doc)

    def update(self, *names: str, events: list[docs.Event] | None = None) -> None:
        """Push fresh rows for ``names`` (all machines when none given)."""
        now = self.clock()
        rows = [self.row(self.machines[n], now) for n in (names or self.machines)]
        self.push(docs.Update(ts=now, machines=rows, events=events or []))

    def set_state(self, name: str, state: str, reason: str = "connection closed") -> None:
        m = self.machines[name]
        now = self.clock()
        old, m.state = m.state, state
        if state != "live":
            m.last_heartbeat = now
        ev = _event(now, {"limbo": "disconnected", "dead": "forgotten"}.get(state, "reconnected"),
                    name, old, state, reason, "system")
        self.event_list.insert(0, ev)
        self.update(name, events=[ev])

    def add_machine(self, m: FakeMachine) -> None:
        self.machines[m.name] = m
        ev = _event(self.clock(), "registered", m.name, None, "live", "new machine", "agent")
        self.event_list.insert(0, ev)
        self.update(m.name, events=[ev])

    def remove_machine(self, name: str) -> None:
        del self.machines[name]
        self.push(docs.Update(ts=self.clock(), removed=[name]))

    def disconnect(self, reason: str = "connection lost", *, stay_down: bool = True) -> None:
        """Break every open stream; with ``stay_down`` new connections fail until ``reconnect()``."""
        self.up = not stay_down
        self.down_reason = reason
        err = SourceError(reason)
        self._send(self._subs, err)
        for qs in self._machine_subs.values():
            self._send(qs, err)

    def reconnect(self) -> None:
        self.up = True

    def push_machine(self, name: str, ts: float | None = None) -> None:
        """Push ``name``'s sample at ``ts`` (default: now) to its machine streams."""
        ts = self.clock() if ts is None else ts
        self._send(self._machine_subs.get(name, []), self._machine_doc(self.machines[name], ts))

    def _machine_doc(self, m: FakeMachine, ts: float) -> docs.MachineLatest:
        values, _ = m.collectors.sample(math.floor(ts))
        text = {"nvidia_smi": m.collectors.screen(math.floor(ts))} if m.profile == "gpu8" else {}
        procs = m.collectors.processes_at(math.floor(ts)) if m.profile == "gpu8" else None
        return docs.MachineLatest(name=m.name, ts=math.floor(ts), values=values, text=text, text_ts=math.floor(ts),
                                  gpu_processes=msgspec.convert(msgspec.to_builtins(procs), GpuProcesses)
                                  if procs is not None else None)

    # ------------------------------------------------------------------ FleetSource

    def _check(self) -> None:
        if not self.up:
            raise SourceError(self.down_reason or "cannot reach the control plane")

    async def _queue_stream(self, queues: list[asyncio.Queue], first: list) -> AsyncIterator:
        q: asyncio.Queue = asyncio.Queue()
        queues.append(q)
        try:
            for doc in first:
                yield wire(doc)
            while True:
                item = await q.get()
                if isinstance(item, Exception):
                    raise item
                yield wire(item)
        finally:
            queues.remove(q)

    async def snapshots(self) -> AsyncIterator[docs.Snapshot | docs.Update]:
        await asyncio.sleep(0)
        self._check()
        self.connects += 1
        now = self.clock()
        start = now - self.replay
        first: list = [docs.Snapshot(ts=start, machines=[self.row(m, start) for m in self.machines.values()],
                                     events=self.event_list[:50])]
        for t in range(1, self.replay + 1):
            first.append(docs.Update(ts=start + t, machines=[self.row(m, start + t) for m in self.machines.values()]))
        async for doc in self._queue_stream(self._subs, first):
            yield doc

    async def machine_stream(self, name: str) -> AsyncIterator[docs.MachineLatest]:
        await asyncio.sleep(0)
        self._check()
        if name not in self.machines:
            raise SourceError(f"no machine named {name!r}", lost=False)
        m = self.machines[name]
        first = [self._machine_doc(m, self.clock())] if m.state == "live" else []
        async for doc in self._queue_stream(self._machine_subs.setdefault(name, []), first):
            yield doc

    async def metrics(self, name: str, since: str, resolution: str) -> list[dict]:
        from centrality_core import durations

        self.requests.append(("metrics", name, since, resolution))
        await asyncio.sleep(0)
        self._check()
        m = self.machines.get(name)
        if m is None:
            raise SourceError(f"no machine named {name!r}", lost=False)
        now = math.floor(self.clock())
        end = now if m.state == "live" else math.floor(m.last_heartbeat)
        start = max(now - durations.parse(since), m.registered_at)
        if resolution == "1m":
            out = []
            minute = start - start % 60
            while minute + 60 <= end:
                vals = [m.collectors.sample(minute + s)[0] for s in (5, 25, 45)]
                row: dict = {"ts": iso(minute)}
                for key in vals[0]:
                    xs = [v[key] for v in vals]
                    row[key], row[f"{key}:min"], row[f"{key}:max"] = sum(xs) / len(xs), min(xs), max(xs)
                out.append(row)
                minute += 60
            return out
        step = 1 if now - start <= 600 else 10
        out = []
        t = math.ceil(start)
        while t <= end:
            values, _ = m.collectors.sample(t)
            out.append({"ts": iso(t), **values})
            t += step
        return out

    async def machine(self, name: str) -> docs.MachineDetail:
        self.requests.append(("machine", name))
        await asyncio.sleep(0)
        self._check()
        m = self.machines.get(name)
        if m is None:
            raise SourceError(f"no machine named {name!r}", lost=False)
        now = self.clock()
        info = m.info()
        return request(docs.MachineDetail(
            name=m.name, state=m.state, hostname=m.hostname,
            last_heartbeat=iso(m.last_heartbeat if m.state != "live" else now),
            heartbeat_age_s=round(now - m.last_heartbeat, 3) if m.state != "live" else 0.0,
            state_since=iso(m.registered_at), connected=m.state == "live", labels=m.labels,
            cpu_count=info["cpu_count"], memory_total_bytes=info["memory_total_bytes"],
            gpu_count=len(info["gpus"]), agent_version="0.1.0", id=f"id-{m.index:05d}",
            drained=m.drained, unhealthy=m.unhealthy,
            drain=docs.Drain(reason=m.drain_reason, by=m.drained_by, at=iso(m.drained_at)) if m.drained else None,
            info=info, registered_at=iso(m.registered_at), key_fingerprint=f"SHA256:fake{m.index:05d}",
            events=[e for e in self.event_list if e.machine == name][:20]))

    async def events(self, machine: str | None = None, limit: int = 500) -> list[docs.Event]:
        self.requests.append(("events", machine, limit))
        await asyncio.sleep(0)
        self._check()
        return request([e for e in self.event_list if machine is None or e.machine == machine][:limit])

    def _writes(self, path: str) -> None:
        if self.role != "operator":
            raise SourceError(f"{path!r} changes the fleet: {self.role} keys may only read", lost=False,
                              code="forbidden")

    def _resolve(self, targets: list[str], include_drained: bool = False) -> targeting.Resolution:
        views = [targeting.MachineView(m.name, m.state, m.labels, m.drained) for m in self.machines.values()]
        try:
            res = targeting.resolve(views, targeting.Selector(tuple(targets), include_drained=include_drained))
        except UsageError as exc:
            raise SourceError(exc.reason, lost=False, code=exc.code) from None
        if not res.matched:
            raise SourceError(f"no machine matches {' '.join(targets)!r}", lost=False, code="not_found")
        return res

    async def exec_plan(self, targets: list[str]) -> docs.DryRun:
        """``exec --dry-run``, as the control plane answers it (a write: viewers are refused)."""
        self.requests.append(("exec_plan", tuple(targets)))
        await asyncio.sleep(0)
        self._check()
        self._writes("exec")
        res = self._resolve(targets)
        return request(docs.DryRun(selector=" ".join(targets), machines=res.selected,
                                   machines_folded=hostlist.fold(res.selected),
                                   skipped=[docs.Skipped(machine=n, reason=why) for n, why in res.skipped],
                                   unknown=res.unknown, confirm_above=self.confirm_above))

    async def exec(self, targets: list[str], argv: list[str], *, timeout: str = "30s", max_output: str = "1M",
                   yes: bool = False) -> AsyncIterator[docs.ExecLine]:
        record = {"targets": list(targets), "argv": list(argv), "yes": yes, "status": "refused"}
        self.execs.append(record)
        await asyncio.sleep(0)
        self._check()
        self._writes("exec")
        res = self._resolve(targets)
        if len(res.selected) > self.confirm_above and not yes:
            raise SourceError(f"this would run on {len(res.selected)} machines, more than {self.confirm_above}: "
                              "confirm with --yes", lost=False, code="confirm_required")
        record["status"] = "running"
        limit = durations.parse(timeout)
        exec_id = f"fake{len(self.execs):04d}"
        yield wire(docs.ExecStart(id=exec_id, argv=argv, selector=" ".join(targets), machines=res.selected,
                                  machines_folded=hostlist.fold(res.selected),
                                  skipped=[docs.Skipped(machine=n, reason=why) for n, why in res.skipped],
                                  unknown=res.unknown))
        results = {}
        for name in res.selected:
            m = self.machines[name]
            results[name] = self.exec_results.get(name) or fakeshell.run(argv, hostname=m.hostname, info=m.info(),
                                                                          timeout=limit)
        pending = list(res.selected)
        elapsed = 0.0
        try:
            for name in sorted(res.selected, key=lambda n: (results[n].wait, hostlist.natural_key(n))):
                r = results[name]
                if r.wait > elapsed:
                    await asyncio.sleep(r.wait - elapsed)
                    elapsed = r.wait
                for stream, data in (("stdout", r.stdout), ("stderr", r.stderr)):
                    if data:
                        yield wire(docs.ExecOutput(machine=name, stream=stream, data=data))
                pending.remove(name)
                yield wire(docs.ExecExit(machine=name, status=r.status,
                                         exit_code=r.exit_code if r.status in ("ok", "failed") else None,
                                         code=r.code, duration=r.wait))
                await asyncio.sleep(0)
        except (asyncio.CancelledError, GeneratorExit):
            record["status"] = "cancelled"  # the control plane sends `cancel` to the machines still running
            self.cancelled.extend(pending)
            raise
        record["status"] = "done"
        codes = [results[n].code for n in res.selected]
        counts: dict[str, int] = {}
        for n in res.selected:
            counts[results[n].status] = counts.get(results[n].status, 0) + 1
        yield wire(docs.ExecSummary(id=exec_id, actor=self.actor, argv=argv, selector=" ".join(targets),
                                    exit_code=max(codes, default=1), duration=elapsed, counts=counts,
                                    ran=len(res.selected), skipped=len(res.skipped),
                                    failed=hostlist.fold(n for n in res.selected if results[n].status != "ok")))

    def _matched(self, names: list[str]):
        """What ``machines drain|undrain NAMES`` resolves to: every named machine, whatever its state."""
        res = self._resolve(names, include_drained=True)
        return res, sorted([*res.selected, *(n for n, _ in res.skipped)], key=hostlist.natural_key)

    async def drain(self, names: list[str], reason: str) -> docs.Drained:
        self.requests.append(("drain", tuple(names), reason))
        await asyncio.sleep(0)
        self._check()
        self._writes("machines drain")
        reason = reason.strip()
        if not reason:
            raise SourceError("--reason must say why", lost=False, code="usage")
        res, matched = self._matched(names)
        now = self.clock()
        changed, events = [], []
        for name in matched:
            m = self.machines[name]
            if m.drained:
                continue
            m.drained, m.drain_reason, m.drained_by, m.drained_at = True, reason, self.actor, now
            changed.append(name)
            events.insert(0, _event(now, "drained", name, None, None, reason, self.actor))
        self._flags_changed(changed, events)
        return request(docs.Drained(drained=changed, already=[n for n in matched if n not in changed],
                                    unknown=res.unknown, reason=reason))

    async def undrain(self, names: list[str]) -> docs.Undrained:
        self.requests.append(("undrain", tuple(names)))
        await asyncio.sleep(0)
        self._check()
        self._writes("machines undrain")
        res, matched = self._matched(names)
        now = self.clock()
        changed, events = [], []
        for name in matched:
            m = self.machines[name]
            if not m.drained:
                continue
            why = f"was drained by {m.drained_by}: {m.drain_reason}"
            m.drained, m.drain_reason, m.drained_by, m.drained_at = False, "", "", None
            changed.append(name)
            events.insert(0, _event(now, "undrained", name, None, None, why, self.actor))
        self._flags_changed(changed, events)
        return request(docs.Undrained(undrained=changed, not_drained=[n for n in matched if n not in changed],
                                      unknown=res.unknown))

    async def forget(self, names: list[str]) -> dict[str, str]:
        """As the control plane does: a dead machine's record goes, a machine in limbo becomes dead;
        a live or unknown one is refused (returned with why)."""
        self.requests.append(("forget", tuple(names)))
        await asyncio.sleep(0)
        self._check()
        self._writes("machines forget")
        failed = {}
        for name in names:
            if name not in self.machines:
                failed[name] = f"no machine named {name!r}"
            elif self.machines[name].state == "live":
                failed[name] = f"machine {name!r} is live; only a machine in limbo can be forgotten"
            elif self.machines[name].state == "dead":
                ev = _event(self.clock(), "removed", name, "dead", None, "removed by an operator", self.actor)
                self.event_list.insert(0, ev)
                self.remove_machine(name)
                self.push(docs.Update(ts=self.clock(), events=[ev]))
            else:
                self.set_state(name, "dead", "forgotten by an operator")
        return failed

    def _flags_changed(self, names: list[str], events: list[docs.Event]) -> None:
        """Push the changed rows and their events, as the subscription does."""
        self.event_list[:0] = events
        if names:
            self.update(*names, events=events)

    async def close(self) -> None:
        self.disconnect("closed", stay_down=False)

def _event(ts: float, kind: str, machine: str, frm: str | None, to: str | None, reason: str,
           actor: str) -> docs.Event:
    return docs.Event(ts=iso(ts), kind=kind, machine=machine, from_=frm, to=to, reason=reason, actor=actor,
                      machine_id=f"id-{machine}")


event = _event  # for tests that build the fake's history


def wire(doc):
    """A streamed document as ``OperatorSource`` hands it over: encoded, then decoded (and cleaned)
    by the operator client's decoders."""
    data = msgspec.json.encode(doc)
    if isinstance(doc, (docs.Snapshot, docs.Update, docs.MachineLatest)):
        return docs.decode_subscription(data)
    return docs.decode_exec(data)


def request(answer):
    """A request's answer as ``OperatorClient.typed`` hands it over: through JSON, decoded as its type."""
    t = list[type(answer[0])] if isinstance(answer, list) and answer else type(answer)
    if isinstance(answer, list) and not answer:
        return []
    return docs.decode(msgspec.json.decode(msgspec.json.encode(answer)), t)


def _cheap_numbers(index: int, now: float, gpu: bool) -> dict:
    """Plausible, cheap figures for big simulated fleets (the benchmark)."""
    phase = index * 0.7 + now / 30.0
    cpu = 50 + 45 * math.sin(phase)
    return {"cpu_percent": round(cpu, 2), "mem_percent": round(40 + 20 * math.sin(phase / 3), 2),
            "gpu_util_percent": round(50 + 49 * math.sin(phase * 1.3), 2) if gpu else None,
            "gpu_mem_percent": round(60 + 30 * math.sin(phase / 5), 2) if gpu else None,
            "disk_percent": round(30 + (index % 60), 2),
            "net_bytes_per_s": round(1e6 * (5 + 4 * math.sin(phase * 2)), 2)}
