"""Running a command on machines from the dashboard: what it will run on, and
what came back, folded. Pure: no Textual, no I/O.

* ``selection()`` and ``matching()`` say which machines the operator chose
  (the marked ones, else the one under the cursor; or every row the filter
  shows). ``plan()`` turns the control plane's answer to ``exec --dry-run``
  (``DryRun``) into what the screen shows before anything runs: which of
  them would run it, which would be skipped and why, and whether it asks
  first (the control plane's own ``exec_confirm_above``). The dashboard
  never re-decides targeting or the threshold itself.
* ``ExecResults`` takes the ``exec`` request's documents as they arrive
  (``ExecStart``, ``ExecOutput``, ``ExecExit``, ``ExecSummary`` of
  ``centrality_core.documents``) and keeps progress and each machine's
  output. ``groups()`` folds machines whose (stdout, stderr, outcome) are
  identical under one hostlist (``gpu-[01-12] (12)``) with
  ``centrality_core.fold``, as ``centrality exec --fold`` does.

Output from machines arrives cleaned of escape sequences (the client does
it once, when it decodes); here it is only laid out into display lines.
"""

from __future__ import annotations

import shlex
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Mapping, NamedTuple

from centrality_core import fold, hostlist
from centrality_core.documents import DryRun, ExecExit, ExecLine, ExecOutput, ExecStart, ExecSummary
from centrality_core.execstatus import STATUS_TEXT, describe_exit
from centrality_core.sanitize import for_terminal, one_line

TIMEOUT = "30s"  # per machine, as the CLI's default
MAX_OUTPUT = "64k"  # output kept per machine: a screen, not an archive (`centrality exec --json` keeps 1M)
MAX_OUTPUT_TEXT = "64 KiB"
SHELL = ("sh", "-c")  # the typed line runs in a shell, so pipes and globs work

GROUPS_SHOWN = 200  # distinct outputs drawn; the rest are counted
LINES_SHOWN = 200  # lines drawn per stream of a group


# ------------------------------------------------------------------ what it runs on


@dataclass(frozen=True)
class Plan:
    """The machines an exec names, and what the control plane says it would do with each."""

    description: str  # "3 marked machines", "the machine under the cursor", ...
    names: tuple[str, ...]  # every machine chosen (sent as the targets)
    selected: tuple[str, ...]  # those that would run it: live and not drained
    skipped: tuple[tuple[str, str], ...]  # (name, limbo | dead | drained)
    simulated: int = 0  # of the selected, machines of `centrality simulate` (label sim=true)
    #: The control plane's ``exec_confirm_above``: more selected machines than this, it asks first.
    confirm_above: int | None = None
    #: Not known yet: the control plane has not answered.
    pending: bool = False
    #: The control plane would not say (a viewer key, the link is down): why.
    error: str = ""

    @cached_property  # folding 10,000 names takes about 0.1 s: once per plan
    def folded(self) -> str:
        return hostlist.fold(self.names)

    @cached_property
    def selected_folded(self) -> str:
        return hostlist.fold(self.selected)

    def targets(self) -> list[str]:
        """The ``exec`` request's targets: every chosen name, folded into one hostlist."""
        return [self.folded] if self.names else []

    def skipped_groups(self) -> list[fold.Group]:
        return fold.group(dict(self.skipped))

    @property
    def needs_confirm(self) -> bool:
        return self.confirm_above is not None and len(self.selected) > self.confirm_above


def _plural(n: int, word: str = "machine") -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def selection(marked: Iterable[str], cursor: str | None) -> tuple[list[str], str]:
    """The marked machines, or else the one under the cursor: (names, how to say it)."""
    names = sorted(marked, key=hostlist.natural_key)
    if names:
        return names, _plural(len(names), "marked machine")
    if cursor:
        return [cursor], "the machine under the cursor"
    return [], "no machine"


def matching(view: list[str], filter_text: str) -> tuple[list[str], str]:
    """Every machine the table shows: (names, how to say it)."""
    names = sorted(view, key=hostlist.natural_key)
    if filter_text:
        return names, f"every machine matching the filter “{one_line(filter_text, 80)}” ({len(names)})"
    return names, f"every machine in the fleet ({len(names)})"


def plan_key(rows: Mapping[str, object], names: Iterable[str]) -> tuple:
    """What a plan depends on: changes only when one of ``names`` comes, goes, or changes state or drain."""
    get = rows.get
    return tuple((m.state, m.drained) if (m := get(n)) is not None else None for n in names)


def targets(names: Iterable[str]) -> list[str]:
    """What the dry run and the run are asked about: the chosen names, folded into one hostlist."""
    names = list(names)
    return [hostlist.fold(names)] if names else []


def pending(names: Iterable[str], description: str) -> Plan:
    """The plan while the control plane has not answered yet."""
    return Plan(description, tuple(sorted(names, key=hostlist.natural_key)), (), (), pending=True)


def refused(names: Iterable[str], description: str, reason: str) -> Plan:
    """The control plane would not say what it would run on (``reason``)."""
    return Plan(description, tuple(sorted(names, key=hostlist.natural_key)), (), (), error=reason)


def plan(answer: DryRun | None, names: Iterable[str], description: str,
         rows: Mapping[str, object] | None = None) -> Plan:
    """The plan from the control plane's ``exec --dry-run`` answer (None: it matched no machine).

    ``rows`` (the dashboard's ``model.Machine`` rows) only say which selected machines are
    simulated, for a note."""
    if answer is None:
        return Plan(description, (), (), ())
    chosen = tuple(sorted(names, key=hostlist.natural_key))
    get = (rows or {}).get
    simulated = sum(1 for n in answer.machines if (m := get(n)) is not None and m.labels.get("sim") == "true")
    return Plan(description, chosen, tuple(answer.machines), tuple((s.machine, s.reason) for s in answer.skipped),
                simulated, answer.confirm_above)


def command_argv(line: str) -> list[str]:
    """The remote argv for a typed command line (empty when there is nothing to run)."""
    line = line.strip()
    return [*SHELL, line] if line else []


def describe_command(argv: list[str]) -> str:
    if argv[:2] == list(SHELL) and len(argv) == 3:
        return argv[2]
    return shlex.join(argv)


# ------------------------------------------------------------------ what came back


class Outcome(NamedTuple):
    """What a group of machines shares: both streams and how it ended."""

    stdout: str
    stderr: str
    status: str  # ok | failed | killed | timeout | cancelled | unreachable
    text: str  # "exit 0", "exit 3", "timed out (code 124)", ...
    truncated: bool


@dataclass(frozen=True)
class ShownGroup:
    """A group as drawn: sanitised lines, capped."""

    folded: str
    count: int
    status: str
    text: str
    truncated: bool
    stdout: tuple[str, ...]
    stderr: tuple[str, ...]
    hidden_lines: int  # lines not drawn (beyond LINES_SHOWN per stream)


def outcome_text(e: ExecExit) -> str:
    """How one machine ended, with its exit code: ``exit 0``, ``timed out (code 124)``."""
    if e.status == "ok":
        return "exit 0"
    text = describe_exit(e)
    if e.status != "failed" and e.code is not None:
        text += f" (code {e.code})"
    return text


def _lines(text: str) -> list[str]:
    text = for_terminal(text).expandtabs(8)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _capped(lines: list[str]) -> tuple[tuple[str, ...], int]:
    if len(lines) <= LINES_SHOWN:
        return tuple(lines), 0
    return tuple(lines[:LINES_SHOWN]), len(lines) - LINES_SHOWN


class ExecResults:
    """One run's progress and output, fed the request's documents one at a time."""

    def __init__(self) -> None:
        self.start: ExecStart | None = None
        self.summary: ExecSummary | None = None
        self.exits: dict[str, ExecExit] = {}
        self.stdout: dict[str, list[str]] = {}
        self.stderr: dict[str, list[str]] = {}
        self.error = ""  # refused, or the link failed
        self.cancelled = False  # the operator cancelled it
        self.ended = False  # the stream is over (summary, error or cancel)
        self.revision = 0
        self._groups: tuple[int, list[fold.Group]] | None = None

    def feed(self, doc: ExecLine) -> None:
        if isinstance(doc, ExecOutput):
            target = self.stderr if doc.stream == "stderr" else self.stdout
            target.setdefault(doc.machine, []).append(doc.data)
        elif isinstance(doc, ExecExit):
            self.exits[doc.machine] = doc
        elif isinstance(doc, ExecStart):
            self.start = doc
        elif isinstance(doc, ExecSummary):
            self.summary = doc
            self.ended = True
        else:
            return
        self.revision += 1

    def fail(self, reason: str) -> None:
        self.error, self.ended = reason, True
        self.revision += 1

    def cancel(self) -> None:
        self.cancelled = self.ended = True
        self.revision += 1

    def finish(self) -> None:
        """The stream ended; without a summary, something cut it short."""
        if not self.ended:
            self.error = self.error or "the control plane ended the request before it finished"
            self.ended = True
            self.revision += 1

    # ------------------------------------------------------------------ progress

    @property
    def running(self) -> bool:
        return not self.ended

    @property
    def machines(self) -> list[str]:
        return list(self.start.machines) if self.start is not None else []

    @property
    def total(self) -> int:
        return len(self.machines)

    @property
    def done(self) -> int:
        return len(self.exits)

    @property
    def counts(self) -> Counter:
        return Counter(e.status for e in self.exits.values())

    @property
    def failed(self) -> int:
        return sum(1 for e in self.exits.values() if e.status != "ok")

    @property
    def exit_code(self) -> int | None:
        return None if self.summary is None else self.summary.exit_code

    def still_running(self) -> list[str]:
        return [n for n in self.machines if n not in self.exits]

    def skipped_groups(self) -> list[fold.Group]:
        skipped = self.start.skipped if self.start is not None else ()
        return fold.group({s.machine: one_line(s.reason, 40) for s in skipped})

    @property
    def unknown(self) -> list[str]:
        return [one_line(u, 200) for u in (self.start.unknown if self.start is not None else ())]

    def counts_text(self) -> str:
        parts = [f"{n} {STATUS_TEXT.get(s, one_line(s, 20))}"
                 for s, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        return ", ".join(parts)

    # ------------------------------------------------------------------ folding

    def outcome(self, name: str) -> Outcome:
        e = self.exits[name]
        return Outcome("".join(self.stdout.get(name, ())), "".join(self.stderr.get(name, ())),
                       e.status, outcome_text(e), e.truncated)

    def groups(self) -> list[fold.Group]:
        """Finished machines grouped by identical (stdout, stderr, outcome); biggest group first."""
        if self._groups is None or self._groups[0] != self.revision:
            self._groups = (self.revision, fold.group({n: self.outcome(n) for n in self.exits}))
        return self._groups[1]

    def shown(self) -> tuple[list[ShownGroup], int]:
        """The groups to draw (sanitised, capped) and how many more groups there are."""
        groups = self.groups()
        out = []
        for g in groups[:GROUPS_SHOWN]:
            o: Outcome = g.key  # type: ignore[assignment]
            stdout, hidden_out = _capped(_lines(o.stdout))
            stderr, hidden_err = _capped(_lines(o.stderr))
            out.append(ShownGroup(g.folded, len(g), o.status, o.text, o.truncated, stdout, stderr,
                                  hidden_out + hidden_err))
        return out, max(0, len(groups) - GROUPS_SHOWN)
