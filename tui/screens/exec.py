"""The exec screen: run a command line on the chosen machines, see the results folded.

The machines are chosen by the screen that opened it (the marked machines,
the one under the cursor, or every row the filter shows); what it would run
on is the control plane's answer to ``exec --dry-run`` (``execrun.Plan``),
shown before anything runs and asked again when one of those machines
changes. Enter asks once more, then runs the line (``sh -c LINE``) through
``FleetSource.exec``; above the control plane's ``exec_confirm_above``
machines (its dry run says which threshold it applies), or when it still
asks, a confirmation comes first. Escape cancels a running
command (closing the request's channel makes the control plane send
``cancel`` to every machine still running it) and closes the screen.
"""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Input
from textual.worker import Worker

from .. import execrun
from ..execrun import ExecResults, Plan
from ..history import History
from ..source import SourceError
from ..widgets.exec_view import PlanPanel, ProgressLine, ResultsPanel
from .base import BaseScreen
from .dialogs import ConfirmScreen

REPLAN_EVERY = 1.0  # seconds between re-checks of the targets while nothing runs
RESULTS_EVERY = 1.0  # seconds between costly redraws of the folded results while a command runs
COSTLY = 0.02  # seconds: a redraw that took longer is costly


class CommandInput(Input):
    """The command line: Up and Down walk the lines run before, as in a shell."""

    BINDINGS = [
        Binding("up", "history(-1)", "Previous command", show=False),
        Binding("down", "history(1)", "Next command", show=False),
    ]

    def __init__(self, history: History, **kwargs) -> None:
        super().__init__(**kwargs)
        self.history = history

    def action_history(self, direction: int) -> None:
        line = self.history.older(self.value) if direction < 0 else self.history.newer(self.value)
        self.value = line
        self.cursor_position = len(line)

    def ran(self, line: str) -> None:
        """``line`` runs: into the history, and the prompt is empty for the next one."""
        self.history.add(line)
        self.value = ""


class ExecScreen(BaseScreen):
    BINDINGS = [
        Binding("escape", "close", "Cancel / close"),
        Binding("q", "close", "Back", show=False),
        Binding("pageup", "scroll_results(-1)", "Scroll up", show=False),
        Binding("pagedown", "scroll_results(1)", "Scroll down", show=False),
    ]

    DEFAULT_CSS = """
    ExecScreen #exec-command { margin: 0 1; border: tall $accent; }
    ExecScreen #exec-page { height: 1fr; }
    """

    def __init__(self, names: list[str], description: str, crumbs: list[str] | None = None) -> None:
        super().__init__()
        self.names, self.description = list(names), description
        self.crumbs = [*(crumbs or ["Fleet"]), "Exec"]
        self.plan: Plan | None = None
        self.results: ExecResults | None = None
        self.command = ""
        self.worker: Worker | None = None
        self._started = 0.0
        self._drawn: tuple = ()
        self._results_drawn: tuple = ()
        self._results_next = 0.0
        self._model_rev = -1
        self._planned_at = -1e9
        self._plan_rev = 0
        self._plan_key: tuple | None = None
        self._planning: Worker | None = None
        self._submitting = False

    def compose(self) -> ComposeResult:
        yield from self.chrome_top()
        yield PlanPanel(id="exec-plan")
        yield CommandInput(self.dash.exec_history,
                           placeholder="command line, e.g. nvidia-smi -L   (Enter runs it on the machines above; "
                                       "↑ ↓ earlier lines)", id="exec-command")
        yield ProgressLine(id="exec-progress")
        with VerticalScroll(id="exec-page"):
            yield ResultsPanel(id="exec-results")
        yield from self.chrome_bottom()

    def on_mount(self) -> None:
        self.replan()
        super().on_mount()
        self.query_one("#exec-command", Input).focus()

    @property
    def running(self) -> bool:
        return self.results is not None and self.results.running

    # ------------------------------------------------------------------ drawing

    def replan(self) -> None:
        """Ask the control plane again, if a machine came, went, or changed state or drain since the
        last answer (at most one question at a time)."""
        model = self.dash.model
        self._model_rev, self._planned_at = model.revision, self.dash.monotonic()
        key = execrun.plan_key(model.rows, self.names)
        if key == self._plan_key or (self._planning is not None and self._planning.is_running):
            return
        self._plan_key = key
        if self.plan is None:
            self._show_plan(execrun.pending(self.names, self.description))
        self._planning = self.run_worker(self._replan(), group="plan")

    async def _replan(self) -> None:
        plan = await self._ask_plan()
        if self.is_attached and not self.running:
            self._show_plan(plan)

    async def _ask_plan(self) -> Plan:
        """The control plane's dry run for the chosen machines, as a plan."""
        try:
            answer = await self.dash.source.exec_plan(execrun.targets(self.names))
        except SourceError as exc:
            if exc.code == "not_found":  # none of them is in the fleet any more
                return execrun.plan(None, self.names, self.description)
            return execrun.refused(self.names, self.description, exc.reason)
        return execrun.plan(answer, self.names, self.description, self.dash.model.rows)

    def _show_plan(self, plan: Plan) -> None:
        self.plan = plan
        self._plan_rev += 1
        for panel in self.query(PlanPanel).results(PlanPanel):
            panel.show(plan)

    def tick(self) -> None:
        super().tick()
        now = self.dash.monotonic()
        model = self.dash.model
        if (not self.running and model.revision != self._model_rev
                and now - self._planned_at >= REPLAN_EVERY):
            self.replan()
        r = self.results
        elapsed = now - self._started if r is not None else 0.0
        key = (r.revision if r is not None else -1, id(r), self._plan_rev, int(elapsed * 10) if self.running else 0)
        if key == self._drawn:
            return
        self._drawn = key
        self.query_one(ProgressLine).show(r, elapsed, self.command)
        # Folding is the costly part (0.3 s for 10,000 machines): while a run goes on, a costly
        # redraw waits at least a second and ten times what it took; at once when the run ends.
        results_key = (r.revision if r is not None else -1, id(r), self._plan_rev)
        clock = time.monotonic()
        if results_key != self._results_drawn and (not self.running or clock >= self._results_next):
            self.query_one(ResultsPanel).show(r, self.plan)
            took = time.monotonic() - clock
            self._results_drawn = results_key
            self._results_next = clock + max(RESULTS_EVERY, 10 * took) if took > COSTLY else 0.0

    # ------------------------------------------------------------------ running

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        argv = execrun.command_argv(event.value)
        if self.running or self._submitting:
            self.notify("A command is still running; Escape cancels it.", title="Exec", severity="warning")
            return
        if not argv:
            self.notify("Type a command to run.", title="Exec", severity="warning")
            return
        self._submitting = True
        self.run_worker(self._submit(argv), group="submit")

    async def _submit(self, argv: list[str]) -> None:
        """Ask the control plane what it would run on now, then run it (asking first above its threshold)."""
        try:
            plan = await self._ask_plan()
        finally:
            self._submitting = False
        if not self.is_attached:
            return
        self._plan_key = execrun.plan_key(self.dash.model.rows, self.names)
        self._show_plan(plan)
        if plan.error:
            self.start(argv)  # the control plane refuses to say (a viewer key): it says why when asked to run
        elif not plan.selected:
            self.notify("None of these machines can run it (all skipped: see why above).", title="Exec",
                        severity="warning")
        elif plan.needs_confirm:
            self.confirm(argv, Content.assemble(
                ("Run ", ""), (execrun.describe_command(argv), "bold"), (" on ", ""),
                (f"{len(plan.selected)} machines", "bold $text-warning"),
                (f"? That is more than {plan.confirm_above}.", "")))
        else:
            self.start(argv)

    def confirm(self, argv: list[str], question: Content) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.start(argv, yes=True)
            else:
                self.notify("Not run.", title="Exec")

        self.app.push_screen(ConfirmScreen("Run on many machines?", question), answered)

    def start(self, argv: list[str], *, yes: bool = False) -> None:
        self.command = execrun.describe_command(argv)
        for prompt in self.query("#exec-command").results(CommandInput):
            prompt.ran(self.command)
        self.results = ExecResults()
        self._started = self.dash.monotonic()
        self.worker = self.run_worker(self._run(self.results, argv, yes), group="exec", exclusive=True)
        self.tick()

    async def _run(self, results: ExecResults, argv: list[str], yes: bool) -> None:
        assert self.plan is not None
        stream = self.dash.source.exec(execrun.targets(self.names), argv, timeout=execrun.TIMEOUT,
                                       max_output=execrun.MAX_OUTPUT, yes=yes)
        try:
            async for doc in stream:
                results.feed(doc)
        except SourceError as exc:
            if exc.code == "confirm_required" and not yes:  # its threshold changed since its dry run
                self.results = None
                self.confirm(argv, Content.assemble(("The control plane asks: ", ""), (exc.reason, "bold"),
                                                    ("\nRun it anyway?", "")))
                return
            results.fail(exc.reason)
            title = "refused" if exc.code == "forbidden" else "not run" if results.start is None else "failed"
            self.notify(exc.reason, title=f"Exec {title}", severity="error")
        finally:
            await stream.aclose()
        results.finish()
        self.safe_tick()

    # ------------------------------------------------------------------ keys

    def action_close(self) -> None:
        if self.running and self.worker is not None:
            self.worker.cancel()  # the channel closes: the control plane cancels it on every machine
            assert self.results is not None
            self.results.cancel()
            self.notify(f"Cancelled on the machines still running: {self.command}", title="Exec",
                        severity="warning")
        self.dismiss()

    def action_back(self) -> None:
        self.action_close()

    def action_scroll_results(self, direction: int) -> None:
        page = self.query_one("#exec-page", VerticalScroll)
        if direction < 0:
            page.scroll_page_up(animate=False)
        else:
            page.scroll_page_down(animate=False)
