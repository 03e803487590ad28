"""The exec screen's panels: what it will run on, progress, and the folded
results. Text is assembled from (text, style) pieces, never parsed as
markup; machine output arrives here already sanitised (``execrun.shown``)."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from centrality_core import hostlist
from centrality_core.sanitize import one_line

from ..execrun import MAX_OUTPUT_TEXT, TIMEOUT, ExecResults, Plan

FOLDED_SHOWN = 400  # characters of a folded hostlist drawn in the headers


def _names(folded: str) -> str:
    return one_line(folded, FOLDED_SHOWN) or "-"


def _skipped(groups) -> Content:
    """``skipped 3:  cpu-07 (dead)  sim-[01-40] (limbo: 40)``."""
    parts: list = [(f"skipped {sum(len(g) for g in groups)}:", "$text-warning bold")]
    for g in groups:
        parts += ["  ", (_names(g.folded), "bold"),
                  (f" ({g.key})" if len(g) == 1 else f" ({g.key}: {len(g)})", "$text-warning")]
    return Content.assemble(*parts)


class PlanPanel(Static):
    """Which machines the command runs on, as the control plane's dry run says, before it runs."""

    DEFAULT_CSS = """
    PlanPanel { height: auto; padding: 0 1; background: $boost; }
    """

    def show(self, plan: Plan) -> None:
        if plan.pending or plan.error:
            total = len(plan.names)
            head = Content.assemble(("Runs on ", ""), ("?", "bold $text-accent"), (f" of {total}", "bold"),
                                    ("  ·  ", "$text-muted"), (plan.description, ""))
            why = (Content.styled("asking the control plane which of them would run it…", "$text-muted")
                   if plan.pending else Content.assemble(("the control plane would not say: ", "$text-error"),
                                                         (one_line(plan.error, 300), "")))
            self.update(Content("\n").join([head, why]))
            return
        n, total = len(plan.selected), len(plan.names)
        head: list = [("Runs on ", ""), (f"{n} machine{'' if n == 1 else 's'}", "bold $text-accent")]
        if total != n:
            head.append((f" of {total}", "bold"))
        head += [("  ·  ", "$text-muted"), (plan.description, "")]
        lines = [Content.assemble(*head),
                 Content.assemble(("  ", ""), (_names(plan.selected_folded) if n else "nothing to run on",
                                               "bold" if n else "$text-error bold"))]
        groups = plan.skipped_groups()
        if groups:
            lines.append(_skipped(groups))
        if plan.simulated:
            lines.append(Content.assemble(
                ("simulated: ", "$text-warning bold"),
                (f"{'all' if plan.simulated == n else plan.simulated} of these are `centrality simulate` machines "
                 "(sim=true): commands run on the simulator's host; hostname, uname and nvidia-smi answer "
                 "as the simulated machine", "$text-warning")))
        note = f"runs as sh -c LINE · timeout {TIMEOUT} per machine · output kept up to {MAX_OUTPUT_TEXT} per machine"
        if plan.needs_confirm:
            note += f" · more than {plan.confirm_above} machines: asks first"
        lines.append(Content.styled(note, "$text-muted"))
        self.update(Content("\n").join(lines))


class ProgressLine(Static):
    """Where the run is: n of total done, failures, time; or why it did not run."""

    DEFAULT_CSS = """
    ProgressLine { height: auto; padding: 0 1; }
    """

    def show(self, results: ExecResults | None, elapsed: float, command: str) -> None:
        if results is None:
            self.update(Content.styled("Type a command, Enter runs it · Esc closes", "$text-muted"))
            return
        r = results
        cmd = [("  $ ", "$text-muted"), (one_line(command, 200), "bold")]
        if r.error:
            self.update(Content.assemble(("✕ not run: " if r.start is None else "✕ failed: ", "$text-error bold"),
                                         (one_line(r.error, 300), "$text-error"), *cmd))
        elif r.cancelled:
            self.update(Content.assemble(("✕ cancelled", "$text-error bold"),
                                         (f": {r.done} of {r.total} had finished", ""), *cmd))
        elif r.running:
            parts: list = [("▶ running", "$text-warning bold")]
            if r.start is not None:
                parts += [(f"  {r.done} of {r.total} done", "bold")]
                if r.failed:
                    parts += [("  ·  ", "$text-muted"), (f"{r.failed} failed", "$text-error bold")]
            parts += [("  ·  ", "$text-muted"), (f"{elapsed:.1f}s", ""), *cmd,
                      ("   Esc cancels it everywhere", "$text-muted")]
            self.update(Content.assemble(*parts))
        else:
            code = r.exit_code or 0
            glyph, style = ("✓ done", "$text-success bold") if code == 0 else ("✕ done", "$text-error bold")
            duration = r.summary.duration if r.summary is not None else None
            parts = [(glyph, style), (f"  {r.total} machine{'' if r.total == 1 else 's'}: ", "bold"),
                     (r.counts_text() or "none ran", "")]
            if isinstance(duration, (int, float)):
                parts.append((f" in {duration:.2f}s", ""))
            parts += [("  ·  exit status ", "$text-muted"), (str(code), style)]
            if code:
                parts.append((" (the worst of all machines)", "$text-muted"))
            parts += cmd
            self.update(Content.assemble(*parts))


class ResultsPanel(Static):
    """The output, one block per distinct (stdout, stderr, outcome), machines folded."""

    DEFAULT_CSS = """
    ResultsPanel { height: auto; padding: 0 1; }
    """

    def show(self, results: ExecResults | None, plan: Plan | None = None) -> None:
        if results is None or results.start is None:
            self.update("")
            return
        r = results
        lines: list[Content] = []
        skipped = r.skipped_groups()
        if skipped and (plan is None or [(g.key, g.names) for g in plan.skipped_groups()]
                        != [(g.key, g.names) for g in skipped]):
            lines.append(_skipped(skipped))  # the control plane skipped others than the plan above says
        for expr in r.unknown:
            lines.append(Content.assemble(("unknown ", "$text-warning bold"), (expr, ""),
                                          ("  (no longer in the fleet)", "$text-muted")))
        shown, more = r.shown()
        for g in shown:
            ok = g.status == "ok"
            lines.append(Content(""))
            lines.append(Content.assemble(("── ", "$text-muted"), (_names(g.folded), "bold"),
                                          (f" ({g.count})", "$text-muted"), ("  ", ""),
                                          (g.text, "$text-success bold" if ok else "$text-error bold"),
                                          (" ──", "$text-muted")))
            both = bool(g.stdout and g.stderr)
            if both:
                lines.append(Content.styled("stdout", "$text-muted italic"))
            lines += [Content(line) for line in g.stdout]
            if g.stderr:
                lines.append(Content.styled("stderr", "$text-muted italic"))
                lines += [Content.styled(line, "$text-warning") for line in g.stderr]
            if not g.stdout and not g.stderr:
                lines.append(Content.styled("(no output)", "$text-muted italic"))
            if g.hidden_lines:
                lines.append(Content.styled(f"… {g.hidden_lines} more lines not shown", "$text-muted"))
            if g.truncated:
                lines.append(Content.styled(f"output truncated at {MAX_OUTPUT_TEXT} per machine", "$text-muted"))
        if more:
            lines.append(Content.styled(f"… {more} more distinct outputs not shown "
                                        "(`centrality exec --json` gives every machine's)", "$text-muted"))
        waiting = r.still_running()
        if waiting and r.running:
            lines.append(Content(""))
            lines.append(Content.assemble(("still running ", "$text-warning bold"),
                                          (_names(hostlist.fold(waiting)), "bold"),
                                          (f" ({len(waiting)})", "$text-muted")))
        self.update(Content("\n").join(lines))
