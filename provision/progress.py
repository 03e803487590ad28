"""Progress while provisioning runs, on stderr (the final table goes to stdout).

On a terminal: one live line per host (spinner, current step, elapsed time) with
rich. Elsewhere (CI logs, tests): plain lines, one per event worth a line: hosts
that connect or fail, each step of the deploy once, agents that go live.
"""

from __future__ import annotations

from centrality_core.sanitize import one_line


class Display:
    def __init__(self, command: str, *, console=None, quiet: bool = False) -> None:
        from rich.console import Console

        self.command = command
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.interactive = self.console.is_terminal and not quiet
        self._progress = None
        self._tasks: dict[str, int] = {}
        self._steps_seen: set[int] = set()

    # ------------------------------------------------------------------ lines

    def note(self, text: str) -> None:
        """A line about the whole run."""
        if self.quiet:
            return
        if self._progress is not None:
            self._progress.console.print(self._safe(text), highlight=False)
        else:
            self.console.print(f"{self.command}: {self._safe(text)}", highlight=False, soft_wrap=True)

    @staticmethod
    def _safe(text: str) -> str:
        from rich.markup import escape

        return escape(one_line(text, 400))

    # ------------------------------------------------------------------ hosts

    def hosts(self, names: list[str]) -> None:
        if not self.interactive or self._progress is not None:
            return
        from rich.progress import Progress, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Column
        from rich.text import Text

        spinner = SpinnerColumn()

        class Mark(ProgressColumn):
            def render(self, task):
                mark = task.fields.get("mark")
                return Text.from_markup(mark) if mark else spinner.render(task)

        width = max((len(n) for n in names), default=4)
        self._progress = Progress(Mark(), TextColumn("{task.fields[host]}", table_column=Column(
                                      no_wrap=True, min_width=min(width, 40))),
                                  TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7)),
                                  TextColumn("{task.description}",
                                             table_column=Column(no_wrap=True, overflow="ellipsis")),
                                  console=self.console, transient=False)
        self._progress.start()
        for n in names:
            self._tasks[n] = self._progress.add_task("waiting", host=one_line(n, 40), mark="")

    def host(self, host: str, text: str, *, ok: bool | None = None) -> None:
        """What one host is doing now; ``ok`` True/False when it is finished."""
        if self.quiet:
            return
        if self._progress is not None and host in self._tasks:
            mark = "" if ok is None else ("[green]✓[/]" if ok else "[red]✗[/]")
            style = "" if ok is None else ("green" if ok else "red")
            desc = self._safe(text)
            self._progress.update(self._tasks[host], description=f"[{style}]{desc}[/]" if style else desc,
                                  mark=mark)
            if ok is not None:
                self._progress.stop_task(self._tasks[host])
        elif ok is not None or not self.interactive:
            self.console.print(f"{self.command}: {self._safe(host)}: {self._safe(text)}", highlight=False,
                               soft_wrap=True)

    def step(self, host: str, index: int, total: int, op: str) -> None:
        """Host started step ``index`` of ``total``."""
        if self.quiet:
            return
        if self._progress is not None:
            self.host(host, f"{index}/{total} {op}")
        elif index not in self._steps_seen:
            self._steps_seen.add(index)
            self.console.print(f"{self.command}: step {index}/{total}: {self._safe(op)}", highlight=False,
                               soft_wrap=True)

    # ------------------------------------------------------------------ lifecycle

    def pause(self) -> None:
        if self._progress is not None:
            self._progress.stop()

    def resume(self) -> None:
        if self._progress is not None:
            self._progress.start()

    def stop(self) -> None:
        """End the live lines. A host still without a mark (a dry run plans and stops there)
        gets a plain one, so no spinner frame is left on the screen."""
        if self._progress is not None:
            for task in self._progress.tasks:
                if not task.fields.get("mark"):
                    self._progress.update(task.id, mark="[dim]·[/]")
            self._progress.refresh()
            self._progress.stop()
            self._progress = None
