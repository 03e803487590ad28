"""``centrality machines ...``, ``events``, ``wait`` and ``status``."""

from __future__ import annotations

from typing import List, Optional

import typer

from centrality_core.documents import Event

from .. import output
from ..output import Markup
from . import JSON, MACHINE, _machine_names, ask

machines = typer.Typer(help="List, inspect, forget and release machines.", no_args_is_help=True)


@machines.command("ls")
def ls(ctx: typer.Context,
       state: Optional[List[str]] = typer.Option(None, "--state", help="Only machines in this state (live, limbo, dead)."),
       label: Optional[List[str]] = typer.Option(None, "--label", "-l",
                                                 help="KEY=VALUE (or KEY): only machines with it; repeatable."),
       json: bool = JSON) -> None:
    """List machines: name, state, hostname, last heartbeat."""
    rows = ask(ctx, lambda client: client.machines_ls(states=state or (), labels=label or ()))
    output.warn_from_store(rows)
    if json:
        return output.print_json(rows)
    replicas = any(r.replica for r in rows)  # the REPLICA column only where there are replicas
    output.table(
        ["NAME", "STATE", "HOSTNAME", "HEARTBEAT", "CPUS", "GPUS", "LABELS", "FLAGS",
         *(["REPLICA"] if replicas else [])],
        ([r.name, Markup(output.state(r.state)), r.hostname, output.age(r.heartbeat_age_s),
          r.cpu_count, r.gpu_count, output.labels(r.labels),
          output.flags(r),
          *([output.replica(r)] if replicas else [])]
         for r in rows),
        empty="no machines yet: create a join token with `centrality token create`")


@machines.command("show")
def show(ctx: typer.Context, name: str = MACHINE, json: bool = JSON) -> None:
    """One machine in detail, with its recent events."""
    m = ask(ctx, lambda client: client.machine(name))
    output.warn_from_store([m])
    if json:
        return output.print_json(m)
    info = m.info
    gpus = gpu_summary(info.get("gpus", []))
    mem = info.get("memory_total_bytes", 0) / 2**30
    output.table(["FIELD", "VALUE"], [
        ("name", m.name), ("state", Markup(output.state(m.state))),
        ("since", m.state_since), ("last heartbeat", f"{m.last_heartbeat} ({output.age(m.heartbeat_age_s)})"),
        ("hostname", info.get("hostname", "")), ("os", info.get("os", "")), ("kernel", info.get("kernel", "")),
        ("cpu", f"{info.get('cpu_count', 0)} x {info.get('cpu_model', '?')}"), ("memory", f"{mem:.1f} GiB"),
        ("gpus", gpus), ("driver", info.get("gpu_driver", "") or "-"), ("agent", info.get("agent_version", "")),
        ("labels", output.labels(m.labels) or "-"), ("flags", output.flags(m, sep=" ")),
        ("id", m.id), ("key", m.key_fingerprint),
    ])
    _events_table(m.events, title="recent events")


def gpu_summary(gpus: list[dict]) -> str:
    """``8 x NVIDIA H100 80GB HBM3``: each model once, with its count, in the order first seen."""
    counts: dict[str, int] = {}
    for g in gpus:
        name = str(g.get("name") or "?")
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{n} x {name}" for name, n in counts.items()) or "none"


@machines.command("forget")
def forget(ctx: typer.Context, name: str = MACHINE, json: bool = JSON,
           no_remove: bool = typer.Option(False, "--no-remove", help="Only declare it dead: a machine "
                                          "already dead stays listed (safe to run twice, e.g. in scripts).")) -> None:
    """Declare a machine in limbo dead; remove a dead machine, freeing its name."""
    r = ask(ctx, lambda client: client.forget(name, remove=not no_remove))
    if json:
        return output.print_json(r)
    if r.state == "removed":
        typer.echo(f"{r.name}: removed (its name is free)")
    else:
        typer.echo(f"{r.name}: {'now dead' if r.changed else 'already dead'}")


@machines.command("release")
def release(ctx: typer.Context, name: str = MACHINE, json: bool = JSON) -> None:
    """Free a machine's name from its key: the next agent with the same specs takes it over.

    For a machine re-installed with a wiped config (a new key): its history is kept.
    """
    r = ask(ctx, lambda client: client.release(name))
    if json:
        return output.print_json(r)
    typer.echo(f"{r.name}: " + ("released; the next registration with identical specs takes it over"
                                if r.changed else "already released"))


def _events_table(rows: list[Event], title: str | None = None) -> None:
    output.table(["TIME", "MACHINE", "EVENT", "CHANGE", "REASON", "BY"],
                 ([r.ts, r.machine, r.kind,
                   f"{r.from_ or '-'} → {r.to or '-'}" if r.from_ or r.to else "",
                   r.reason, r.actor] for r in rows),
                 title=title, empty="no events")


def events(ctx: typer.Context,
           machine: Optional[str] = typer.Option(None, "--machine", "-m", help="Only this machine's events.",
                                                  autocompletion=_machine_names),
           since: Optional[str] = typer.Option(None, "--since", help="Only newer than this (10m, 2h, 1d)."),
           limit: int = typer.Option(100, "--limit", "-n", help="At most this many, newest first."),
           json: bool = JSON) -> None:
    """Lifecycle and operator events, newest first."""
    rows = ask(ctx, lambda client: client.events(machine=machine or None, since=since or None, limit=limit))
    if json:
        return output.print_json(rows)
    _events_table(rows)


def wait(ctx: typer.Context,
         live: int = typer.Option(..., "--live", help="Wait until at least N machines are live."),
         timeout: str = typer.Option("60s", "--timeout",
                                     help="Give up after this long (exit 124), also while the control "
                                          "plane is not up yet."),
         json: bool = JSON) -> None:
    """Block until N machines are live (for CI after provisioning; retries a control plane not up yet)."""
    from ..waiting import wait_live

    r = output.run(lambda: wait_live(ctx.obj["context"], live, timeout))
    if json:
        output.print_json(r)
    if r["timed_out"]:
        output.err_console().print(f"[bold red]error:[/] {output.escape(r['reason'])}", highlight=False,
                                   soft_wrap=True)
    elif not json:
        typer.echo(f"{r['live']} machines live (wanted {r['wanted']}) after {r['waited_s']:.1f}s")
    raise typer.Exit(r.get("exit_code", 0))


def status(ctx: typer.Context, json: bool = JSON) -> None:
    """Control plane health: version, uptime, agents, store. Exit 1 when unhealthy."""
    answer = ask(ctx, lambda client: client.status())
    s = answer.data
    if json:
        output.print_json(s)
    else:
        ok = "[green]healthy[/]" if s["healthy"] else "[red]UNHEALTHY[/]"
        m = s["machines"]
        output.table(["", ""], [
            ("control plane", Markup(f"{ok}  {output.escape(s['address'])}  v{s['version']}")),
            *((("replica", s["replica"]),) if s.get("replica") else ()),
            ("uptime", f"{s['uptime_s']:.0f}s (since {s['started_at']})"),
            ("agents connected", s["agents_connected"]),
            ("machines", Markup(f"{output.state('live')} {m['live']}  {output.state('limbo')} {m['limbo']}  "
                                f"{output.state('dead')} {m['dead']}"
                                + (f"  ({s['machines_from_store']} as the store last recorded them)"
                                   if s.get("machines_from_store") else ""))),
            *_replica_lines(s.get("replicas") or []),
            ("flags", f"{s['flags']['drained']} drained, {s['flags']['unhealthy']} unhealthy"),
            ("store", f"{s['store']['backend']} {'ok' if s['store']['ok'] else 'FAILING'}, "
                      f"{s['store']['write_backlog']} writes queued"),
            ("host key", s["fingerprint"]),
            *_history_lines(s.get("history")),
            *(("problem", p) for p in s["problems"]),
            *(("warning", w) for w in s.get("warnings", ())),
        ], header=False)
    if answer.status:
        raise typer.Exit(answer.status)


def _replica_lines(replicas: list[dict]) -> list[tuple[str, str]]:
    """One line per replica: where, its lease, what it holds, whether it answered."""
    lines = []
    for r in replicas:
        lease = (f"lease {r['lease_left_s']:.0f}s left" if r["lease"] == "current"
                 else f"lease lapsed {-r['lease_left_s']:.0f}s ago")
        if r["self"]:
            reach = "this one"
        elif r["reachable"]:
            reach = "answered" + ("" if r["healthy"] in (True, None) else " (UNHEALTHY)")
        else:
            reach = f"NOT ANSWERING: {r['error']}"
        agents = "" if r["agents_connected"] is None else f", {r['agents_connected']} agents connected"
        lines.append((f"replica {r['name']}",
                      f"{r['address']}  {lease}, {r['machines_held']} machines held{agents}; {reach}"))
    return lines


def _history_lines(h: dict | None) -> list[tuple[str, str]]:
    """The history line of ``status``: said only when the size bound had to drop data."""
    if not h or not h.get("bound_dropped_chunks"):
        return []
    tiers = h.get("bound_dropped_tiers") or {}
    what = ", ".join(f"{tier} samples {x['oldest']} to {x['newest']}" for tier, x in tiers.items())
    return [("history", f"past max_store_size ({h['max_store_size']} bytes): dropped "
                        f"{what or 'the oldest chunks'} ({h['bound_dropped_chunks']} chunks, "
                        f"{h['bound_dropped_bytes']} bytes), last at {h['bound_dropped_at']}")]


def register(app: typer.Typer) -> None:
    app.add_typer(machines, name="machines")
    app.command("events")(events)
    app.command("wait")(wait)
    app.command("status")(status)

