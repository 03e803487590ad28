"""Running a command on machines from the dashboard: what it will run on, and
what came back, folded. Pure: no Textual, no I/O.

* ``selection()`` and ``matching()`` say which machines the operator chose
  (the marked ones, else the one under the cursor; or every row the filter
  shows), and ``plan()`` says, before anything runs, which of them would run
  it and which would be skipped and why, with the control plane's own rules
  (``centrality_core.targeting``).
* ``ExecResults`` takes the ``exec`` request's JSON lines as they arrive
  (``start``, ``output``, ``exit``, ``summary``; see
  ``control_plane/requests/exec.py``) and keeps progress and each machine's
  output. ``groups()`` folds machines whose (stdout, stderr, outcome) are
  identical under one hostlist (``gpu-[01-12] (12)``) with
  ``centrality_core.fold``, as ``centrality exec --fold`` does.

Output from machines is kept raw here and sanitised
(``centrality_core.sanitize``) when it becomes display lines.
"""

from __future__ import annotations

import shlex
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Mapping, NamedTuple

from centrality_cli.execview import STATUS_TEXT, describe_exit
from centrality_core import fold, hostlist, targeting
from centrality_core.sanitize import for_terminal, one_line
from centrality_core.settings import ServerSettings

#: Above this many machines the dashboard asks before running (the control
#: plane's default ``exec_confirm_above``; a control plane configured lower
#: refuses with ``confirm_required`` and the dashboard asks then).
CONFIRM_ABOVE = ServerSettings().exec_confirm_above
TIMEOUT = "30s"  # per machine, as the CLI's default
MAX_OUTPUT = "64k"  # output kept per machine: a screen, not an archive (`centrality exec --json` keeps 1M)
MAX_OUTPUT_TEXT = "64 KiB"
SHELL = ("sh", "-c")  # the typed line runs in a shell, so pipes and globs work

GROUPS_SHOWN = 200  # distinct outputs drawn; the rest are counted
LINES_SHOWN = 200  # lines drawn per stream of a group


# ------------------------------------------------------------------ what it runs on


@dataclass(frozen=True)
class Plan:
    """The machines an exec names, and what the control plane would do with each."""

    description: str  # "3 marked machines", "the machine under the cursor", ...
    names: tuple[str, ...]  # every machine chosen (sent as the targets)
    selected: tuple[str, ...]  # those that would run it: live and not drained
    skipped: tuple[tuple[str, str], ...]  # (name, limbo | dead | drained)
    simulated: int = 0  # of the selected, machines of `centrality simulate` (label sim=true)

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
        return len(self.selected) > CONFIRM_ABOVE


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


def plan(rows: Mapping[str, object], names: Iterable[str], description: str) -> Plan:
    """What running on ``names`` would do, from the rows the dashboard holds (``model.Machine``)."""
    views = []
    for n in names:
        m = rows.get(n)
        if m is not None:
            views.append(targeting.MachineView(n, m.state, m.labels, m.drained))
    if not views:
        return Plan(description, (), (), ())
    res = targeting.resolve(views, targeting.Selector(all=True))
    chosen = tuple(sorted((v.name for v in views), key=hostlist.natural_key))
    simulated = sum(1 for n in res.selected if (rows[n].labels or {}).get("sim") == "true")
    return Plan(description, chosen, tuple(res.selected), tuple(res.skipped), simulated)


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


def outcome_text(e: Mapping) -> str:
    """How one machine ended, with its exit code: ``exit 0``, ``timed out (code 124)``."""
    status = e.get("status")
    if status == "ok":
        return "exit 0"
    text = describe_exit(dict(e))
    code = e.get("code")
    if status != "failed" and isinstance(code, int):
        text += f" (code {code})"
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
        self.start: dict | None = None
        self.summary: dict | None = None
        self.exits: dict[str, dict] = {}
        self.stdout: dict[str, list[str]] = {}
        self.stderr: dict[str, list[str]] = {}
        self.error = ""  # refused, or the link failed
        self.cancelled = False  # the operator cancelled it
        self.ended = False  # the stream is over (summary, error or cancel)
        self.revision = 0
        self._groups: tuple[int, list[fold.Group]] | None = None

    def feed(self, doc: dict) -> None:
        kind = doc.get("type")
        if kind == "start":
            self.start = doc
        elif kind == "output":
            name = str(doc.get("machine", ""))
            target = self.stderr if doc.get("stream") == "stderr" else self.stdout
            target.setdefault(name, []).append(str(doc.get("data", "")))
        elif kind == "exit":
            self.exits[str(doc.get("machine", ""))] = doc
        elif kind == "summary":
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
        return [str(n) for n in (self.start or {}).get("machines", ())]

    @property
    def total(self) -> int:
        return len(self.machines)

    @property
    def done(self) -> int:
        return len(self.exits)

    @property
    def counts(self) -> Counter:
        return Counter(str(e.get("status")) for e in self.exits.values())

    @property
    def failed(self) -> int:
        return sum(1 for e in self.exits.values() if e.get("status") != "ok")

    @property
    def exit_code(self) -> int | None:
        return None if self.summary is None else self.summary.get("exit_code")

    def still_running(self) -> list[str]:
        return [n for n in self.machines if n not in self.exits]

    def skipped_groups(self) -> list[fold.Group]:
        skipped = (self.start or {}).get("skipped", ())
        return fold.group({str(s.get("machine")): one_line(str(s.get("reason")), 40) for s in skipped
                           if isinstance(s, dict)})

    @property
    def unknown(self) -> list[str]:
        return [one_line(str(u), 200) for u in (self.start or {}).get("unknown", ())]

    def counts_text(self) -> str:
        parts = [f"{n} {STATUS_TEXT.get(s, one_line(s, 20))}"
                 for s, n in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        return ", ".join(parts)

    # ------------------------------------------------------------------ folding

    def outcome(self, name: str) -> Outcome:
        e = self.exits[name]
        return Outcome("".join(self.stdout.get(name, ())), "".join(self.stderr.get(name, ())),
                       str(e.get("status")), outcome_text(e), bool(e.get("truncated")))

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
