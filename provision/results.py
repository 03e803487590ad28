"""Per-host results of a provisioning run: the final table (stdout), JSON and a summary.

Everything shown comes from inventories or hosts, so every cell is sanitised
(``one_line``) before it reaches the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from centrality_core.sanitize import one_line

PROVISION, DEPROVISION = "provision", "deprovision"


@dataclass
class HostResult:
    host: str
    name: str = ""
    target: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    prefix: str = ""
    ok: bool = True
    reason: str = ""
    """One line when not ok: ``unreachable: ...``, ``auth failed: ...``, ..."""
    changed: bool | None = None
    """None: never got far enough to know."""
    changes: list[str] = field(default_factory=list)
    live: bool | None = None
    """Agent live on the control plane (None: not checked)."""
    key: str = ""
    """deprovision: ``revoked``, ``none`` (no active key), ``would revoke``, or ``kept``."""
    public_key: str = ""
    log_hint: str = ""
    """Where the agent's log is on the host (``journalctl -u ...`` or a file)."""

    def fail(self, reason: str) -> None:
        if self.ok or not self.reason:
            self.ok, self.reason = False, reason


@dataclass
class Report:
    command: str
    inventory: str
    dry: bool = False
    hosts: dict[str, HostResult] = field(default_factory=dict)
    aborted: bool = False
    waited_s: float = 0.0

    def host(self, name: str) -> HostResult:
        if name not in self.hosts:
            self.hosts[name] = HostResult(name)
        return self.hosts[name]

    @property
    def ok(self) -> bool:
        return not self.aborted and all(h.ok for h in self.hosts.values())

    @property
    def changed(self) -> bool:
        return not self.dry and not self.aborted and any(h.changed for h in self.hosts.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command, "inventory": self.inventory, "dry": self.dry, "ok": self.ok,
            "changed": self.changed, "aborted": self.aborted,
            "hosts": [{
                "host": h.host, "name": h.name, "target": h.target, "labels": h.labels, "prefix": h.prefix,
                "ok": h.ok, "reason": h.reason, "changed": h.changed, "changes": h.changes,
                **({"live": h.live} if self.command == PROVISION else {"key": h.key}),
            } for h in self.ordered()],
        }

    def ordered(self) -> list[HostResult]:
        """Hosts in natural name order (node-2 before node-10), whatever order they finished in."""
        from centrality_core.hostlist import natural_key

        return sorted(self.hosts.values(), key=lambda h: natural_key(h.host))


def _changes_cell(report: Report, h: HostResult) -> str:
    if h.changed is None and not h.changes:
        return "-"
    n = len(h.changes)
    if report.dry or report.aborted:
        return f"would change ({n})" if h.changes else "unchanged"
    if report.command == DEPROVISION:
        return "removed" if h.changed else "nothing to remove"
    return f"changed ({n})" if h.changed else "unchanged"


def _agent_cell(h: HostResult) -> str:
    if h.live is None:
        return "-"
    return "[green]● live[/]" if h.live else "[red]not live[/]"


def rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Column titles and cells (markup only in the AGENT/RESULT colours we add)."""
    from rich.markup import escape

    last = "KEY" if report.command == DEPROVISION else "AGENT"
    columns = ["HOST", "MACHINE", "CHANGES", last, "RESULT"]
    out = []
    for h in report.ordered():
        result = "[green]ok[/]" if h.ok else f"[red]{escape(one_line(h.reason, 200))}[/]"
        last_cell = escape(h.key or "-") if report.command == DEPROVISION else _agent_cell(h)
        out.append([escape(one_line(h.host, 60)), escape(one_line(h.name or "-", 63)),
                    escape(_changes_cell(report, h)), last_cell, result])
    return columns, out


def summary(report: Report) -> str:
    hosts = list(report.hosts.values())
    failed = [h for h in hosts if not h.ok]
    n, nf = len(hosts), len(failed)
    if report.aborted:
        return "aborted: nothing was changed"
    changed = [h for h in hosts if h.changed or h.key == "revoked"]
    fail_text = f"; {nf} failed" if nf else ""
    if report.dry:
        return (f"dry run: {len(changed)} of {n} host(s) would change{fail_text}; nothing was changed"
                if changed else f"dry run: nothing would change on {n - nf} host(s){fail_text}")
    if report.command == DEPROVISION:
        if not changed:
            return f"nothing changed: no agent left to remove on {n - nf} host(s){fail_text}"
        return f"{n - nf} of {n} host(s) deprovisioned{fail_text}"
    live = sum(1 for h in hosts if h.live)
    if not changed:
        return f"nothing changed: {n - nf} host(s) already provisioned, {live} agent(s) live{fail_text}"
    return f"{n - nf} of {n} host(s) provisioned ({len(changed)} changed), {live} agent(s) live{fail_text}"


def print_table(report: Report, console) -> None:
    from rich.table import Table

    columns, cells = rows(report)
    table = Table(*columns, box=None, header_style="bold", pad_edge=False)
    for row in cells:
        table.add_row(*row)
    console.print(table)
    if report.dry:
        for h in report.ordered():
            if h.changes:
                from rich.markup import escape

                console.print(f"{escape(one_line(h.host, 60))} would: "
                              f"{escape(one_line(', '.join(h.changes), 400))}", soft_wrap=True)
    console.print(summary(report), highlight=False, soft_wrap=True)
