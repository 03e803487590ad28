"""The cluster screen: fleet summary and the table of machines.

``space`` marks machines (``c`` clears the marks). Every action applies to
the marked machines, or to the row under the cursor when none is marked (a
k9s habit): ``x`` opens the exec screen, ``d`` drains them (one reason for
all), ``u`` undrains them, ``ctrl+d`` forgets them (dead ones are removed,
ones in limbo declared dead; asks first). ``X`` runs a command on every row
the filter shows."""

from __future__ import annotations

import asyncio
import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.widgets import Input

from centrality_core.sanitize import one_line

from .. import bulk, execrun
from ..model import SORTS
from ..source import SourceError
from ..widgets.chrome import FilterBar, SummaryBar
from ..widgets.fleet_table import FleetTable
from .base import BaseScreen
from .dialogs import ConfirmScreen, ReasonScreen

#: Sort keys in column order, with their key and name (for the footer, help and palette).
SORT_KEYS = [("name", "N", "name"), ("state", "T", "state"), ("flags", "F", "flags"), ("kind", "K", "kind"),
             ("labels", "L", "labels"), ("cpu", "C", "CPU %"), ("mem", "M", "memory %"),
             ("gpu", "U", "GPU util %"), ("gpu_mem", "V", "GPU memory %"), ("disk", "D", "disk %"),
             ("net", "W", "network"), ("age", "A", "heartbeat age")]
SORT_NAMES = {key: name for key, _, name in SORT_KEYS}
FORGET_SEEN_WITHIN = 3.0  # seconds to wait for the subscription to show what forget did
assert set(SORT_NAMES) == set(SORTS)


class ClusterScreen(BaseScreen):
    crumbs = ["Fleet"]

    BINDINGS = [
        Binding("q", "app.quit", "Quit"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort_next", "Sort"),
        Binding("r", "sort_reverse", "Reverse"),
        Binding("e", "app.events", "Events"),
        Binding("space", "toggle_mark", "Mark", key_display="space"),
        Binding("c", "clear_marks", "Clear marks", show=False),
        Binding("x", "exec('selection')", "Exec"),
        Binding("S", "shell", "Shell", show=False),
        Binding("X", "exec('filter')", "Exec on all shown", show=False),
        Binding("d", "drain_selection", "Drain"),
        Binding("u", "undrain_selection", "Undrain", show=False),
        Binding("ctrl+d,delete", "forget", "Forget", key_display="^d"),
        *(Binding(key, f"sort('{sort}')", f"Sort by {name}", show=False) for sort, key, name in SORT_KEYS),
    ]

    def compose(self) -> ComposeResult:
        yield from self.chrome_top()
        yield SummaryBar()
        yield FleetTable(self.dash.model, id="fleet")
        yield FilterBar("filter: name, hostname, label (pool=eval), state:limbo, kind:gpu, drained…", id="filter")
        yield from self.chrome_bottom()

    @property
    def table(self) -> FleetTable:
        return self.query_one(FleetTable)

    def on_mount(self) -> None:
        self._rev = -1
        self._second = -1
        super().on_mount()
        self.table.focus()

    def on_screen_resume(self) -> None:
        self._rev = -1
        self.tick()

    def tick(self) -> None:
        super().tick()
        model = self.dash.model
        second = int(self.dash.monotonic())
        if model.revision != self._rev:
            self._rev = model.revision
            self.table.sync()
            self.query_one(SummaryBar).show(model.summary(), sort=SORT_NAMES[model.sort_key],
                                            descending=model.sort_desc, filter_text=model.filter_text,
                                            has_flags=model.has_flags, marked=len(model.marked))
        elif second != self._second:
            self.table.sync()  # heartbeat ages move on; a pending re-sort lands
        self._second = second

    # ------------------------------------------------------------------ actions

    def on_fleet_table_opened(self, message: FleetTable.Opened) -> None:
        self.dash.open_machine(message.name)

    def action_open_selected(self) -> None:
        self.table.action_open()

    def action_filter(self) -> None:
        self.query_one(FilterBar).open(self.dash.model.filter_text)

    def action_clear_filter(self) -> None:
        bar = self.query_one(FilterBar)
        bar.close()
        self.apply_filter("")
        self.table.focus()

    def apply_filter(self, text: str) -> None:
        self.dash.model.set_filter(text)
        self.tick()

    def on_input_changed(self, event: Input.Changed) -> None:
        if isinstance(event.input, FilterBar):
            self.apply_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if isinstance(event.input, FilterBar):
            event.input.close()
            self.table.focus()

    def action_sort(self, key: str) -> None:
        self.dash.model.set_sort(key)
        self.tick()

    def action_sort_next(self) -> None:
        keys = [k for k, _, _ in SORT_KEYS if k != "flags" or self.dash.model.has_flags]
        current = self.dash.model.sort_key
        nxt = keys[(keys.index(current) + 1) % len(keys)] if current in keys else keys[0]
        self.dash.model.set_sort(nxt, None if nxt != current else self.dash.model.sort_desc)
        self.tick()

    def action_sort_reverse(self) -> None:
        model = self.dash.model
        model.set_sort(model.sort_key, not model.sort_desc)
        self.tick()

    def action_toggle_mark(self) -> None:
        name = self.table.selected
        if name is None:
            return
        self.dash.model.toggle_mark(name)
        self.table.action_cursor(1)  # on to the next row, so space space space marks a run of rows
        self.tick()

    def action_clear_marks(self) -> None:
        self.dash.model.clear_marks()
        self.tick()

    def action_shell(self) -> None:
        """``S``: a shell on the machine under the cursor (``s`` sorts here)."""
        from ..shell import open_shell

        open_shell(self.app, self.table.selected)

    def action_exec(self, scope: str) -> None:
        """``x``: the marked machines (else the one under the cursor); ``X``: every row shown."""
        model = self.dash.model
        if scope == "filter":
            names, description = execrun.matching(model.view(), model.filter_text)
        else:
            names, description = execrun.selection(model.marked, self.table.selected)
        if not names:
            self.notify("No machine to run a command on.", title="Exec", severity="warning")
            return
        self.dash.open_exec(names, description)

    # ------------------------------------------------------------------ drain, undrain, forget

    def _targets(self, verb: str) -> tuple[list[str], str]:
        names, description = execrun.selection(self.dash.model.marked, self.table.selected)
        if not names:
            self.notify(f"No machine to {verb}.", title=verb.title(), severity="warning")
        return names, description

    def action_drain_selection(self) -> None:
        names, description = self._targets("drain")
        if not names:
            return

        def answered(reason: str | None) -> None:
            if reason:
                self.run_worker(self._drain(names, reason), group="flags")

        what = names[0] if len(names) == 1 else f"{len(names)} machines"
        question = Content.assemble(("Drain ", ""), (bulk.folded(names), "bold"), (f" ({description})", "$text-muted"),
                                    (": exec skips them until they are undrained. Why? (one reason for all; "
                                     "shown with the flag and kept in their events)", ""))
        self.app.push_screen(ReasonScreen(f"Drain {what}", question, placeholder="e.g. PSU swap, NCCL timeouts",
                                          required="A reason is required: say why they are drained."), answered)

    async def _drain(self, names: list[str], reason: str) -> None:
        try:
            r = await self.dash.source.drain(names, reason)
        except SourceError as exc:
            self.notify(one_line(exc.reason, 300), title="Cannot drain", severity="error")
            return
        text, severity = bulk.drain_text(r, reason)
        self.notify(text, title="Drain", severity=severity)

    def action_undrain_selection(self) -> None:
        names, _ = self._targets("undrain")
        if names:
            self.run_worker(self._undrain(names), group="flags")

    async def _undrain(self, names: list[str]) -> None:
        try:
            r = await self.dash.source.undrain(names)
        except SourceError as exc:
            self.notify(one_line(exc.reason, 300), title="Cannot undrain", severity="error")
            return
        text, severity = bulk.undrain_text(r)
        self.notify(text, title="Undrain", severity=severity)

    def action_forget(self) -> None:
        names, _ = self._targets("forget")
        if not names:
            return
        plan = bulk.forget_plan(self.dash.model.rows, names)
        if not plan.names:
            why = plan.skipped[0][1] if plan.skipped else "nothing to forget"
            self.notify(f"{bulk.folded(n for n, _ in plan.skipped)}: {why}.", title="Forget", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._forget(plan), group="flags")
            else:
                self.notify("Nothing forgotten.", title="Forget")

        title = "Remove dead machines?" if not plan.declare else "Forget machines?"
        self.app.push_screen(ConfirmScreen(title, Content.assemble(*bulk.forget_question(plan)),
                                           yes="Forget"), answered)

    async def _forget(self, plan: bulk.ForgetPlan) -> None:
        try:
            failed = await self.dash.source.forget(plan.names)
        except SourceError as exc:
            self.notify(one_line(exc.reason, 300), title="Cannot forget", severity="error")
            return
        # Say what happened, as the subscription shows it, not what was asked for.
        rows = self.dash.model.rows
        gone = [n for n in plan.remove if n not in failed]
        dead = [n for n in plan.declare if n not in failed]
        deadline = time.monotonic() + FORGET_SEEN_WITHIN
        while time.monotonic() < deadline and (any(n in rows for n in gone)
                                               or any(n in rows and rows[n].state != "dead" for n in dead)):
            await asyncio.sleep(0.05)
        kept = [n for n in gone if n in rows]
        text, severity = bulk.forget_text(plan, failed, kept)
        self.notify(text, title="Forget", severity=severity)
        self.tick()
