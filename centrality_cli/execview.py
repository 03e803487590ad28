"""How ``centrality exec`` shows what the control plane streams back.

``ExecView.feed(doc)`` takes the documents of the ``exec`` request one at a
time (``ExecStart``, ``ExecOutput``, ``ExecExit``, ``ExecSummary`` of
``centrality_core.documents``) and writes:

* by default, each line of output as it arrives, prefixed by its machine
  (``gpu03: ...``; a machine's stderr goes to our stderr), then a line for
  every machine that did not succeed, then a summary on stderr;
* with ``fold``, nothing until the end, then one block per distinct output,
  headed by the machines that printed it folded into a hostlist
  (``gpu[01-12] (12)``), as ``clush -b`` does;
* with ``json``, one JSON document at the end, per machine stdout, stderr,
  exit code, status and duration.

Everything from machines was made safe when the client decoded it (escape
sequences and control characters removed); here lines are only laid out.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from centrality_core import fold as folding
from centrality_core.documents import ExecExit, ExecLine, ExecOutput, ExecStart, ExecSummary, to_builtins
from centrality_core.execstatus import STATUS_TEXT, describe_exit
from centrality_core.sanitize import for_terminal, one_line


class ExecView:
    def __init__(self, *, fold: bool = False, as_json: bool = False, out: TextIO | None = None,
                 err: TextIO | None = None) -> None:
        self.fold = fold
        self.as_json = as_json
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.start: ExecStart | None = None
        self.summary: ExecSummary | None = None
        self.exits: dict[str, ExecExit] = {}
        self.stdout: dict[str, list[str]] = {}
        self.stderr: dict[str, list[str]] = {}
        self.combined: dict[str, list[str]] = {}  # as it arrived, both streams (for --fold)
        self._partial: dict[tuple[str, str], str] = {}
        self._width = 0

    # ------------------------------------------------------------------ input

    def feed(self, doc: ExecLine) -> None:
        if isinstance(doc, ExecOutput):
            self._output(doc.machine, doc.stream, doc.data)
        elif isinstance(doc, ExecExit):
            self.exits[doc.machine] = doc
            if not self.as_json and not self.fold:
                self._flush_partial(doc.machine)
                if doc.status != "ok":
                    self._print(self.err, doc.machine, describe_exit(doc))
        elif isinstance(doc, ExecStart):
            self.start = doc
            self._width = max((len(n) for n in doc.machines), default=0)
            if not self.as_json:
                self._report_targets(doc)
        elif isinstance(doc, ExecSummary):
            self.summary = doc

    def _output(self, name: str, stream: str, data: str) -> None:
        (self.stderr if stream == "stderr" else self.stdout).setdefault(name, []).append(data)
        self.combined.setdefault(name, []).append(data)
        if self.as_json or self.fold:
            return
        text = self._partial.pop((name, stream), "") + data
        *lines, rest = text.split("\n")
        target = self.err if stream == "stderr" else self.out
        for ln in lines:
            self._print(target, name, ln)
        if rest:
            self._partial[(name, stream)] = rest

    def _flush_partial(self, name: str) -> None:
        for stream, target in (("stdout", self.out), ("stderr", self.err)):
            rest = self._partial.pop((name, stream), None)
            if rest:
                self._print(target, name, rest)

    def _print(self, target: TextIO, name: str, text: str) -> None:
        target.write(f"{name.ljust(self._width)}: {for_terminal(text, keep_newlines=False)}\n")
        target.flush()

    def _report_targets(self, start: ExecStart) -> None:
        skipped = {s.machine: s.reason for s in start.skipped}
        for g in folding.group(skipped):
            self.err.write(f"skipped {g.folded}: {g.key} ({len(g)})\n")
        for expr in start.unknown:
            self.err.write(f"unknown: {one_line(expr)}\n")
        self.err.flush()

    # ------------------------------------------------------------------ end

    @property
    def exit_code(self) -> int:
        if self.summary is not None:
            return self.summary.exit_code
        return 1

    def finish(self, *, interrupted: bool = False) -> None:
        for name in list({n for n, _ in self._partial}):
            self._flush_partial(name)
        if self.as_json:
            self.out.write(json.dumps(self.document(interrupted), indent=2, ensure_ascii=False) + "\n")
            self.out.flush()
            return
        if self.fold:
            self._print_folded()
        self._print_summary(interrupted)

    def document(self, interrupted: bool = False) -> dict:
        start, summary = self.start, self.summary
        results = []
        for name in start.machines if start is not None else sorted(self.exits):
            e = self.exits.get(name) or ExecExit(machine=name, status="cancelled" if interrupted else "unknown")
            results.append({
                "machine": name, "status": e.status, "exit_code": e.exit_code,
                "signal": e.signal, "code": e.code, "duration": e.duration,
                "truncated": e.truncated, "error": e.error,
                "stdout": "".join(self.stdout.get(name, ())), "stderr": "".join(self.stderr.get(name, ())),
            })
        return {
            "id": start.id if start else None, "argv": start.argv if start else None,
            "selector": start.selector if start else None,
            "machines": start.machines if start else [], "skipped": to_builtins(start.skipped) if start else [],
            "unknown": start.unknown if start else [], "results": results,
            "exit_code": summary.exit_code if summary else 130 if interrupted else 1,
            "counts": summary.counts if summary else {}, "duration": summary.duration if summary else None,
            "replicas_failed": self._replicas_failed(),
            "interrupted": interrupted,
        }

    def _replicas_failed(self) -> dict[str, str]:
        failed = self.summary.replicas_failed if self.summary is not None else None
        return failed if isinstance(failed, dict) else {}

    def _print_folded(self) -> None:
        names = (self.start.machines if self.start else None) or sorted(self.exits)
        outputs = {n: "".join(self.combined.get(n, ())) for n in names}
        for g in folding.group(outputs):
            header = f"{g.folded} ({len(g)})"
            rule = "-" * min(max(len(header), 15), 80)
            self.out.write(f"{rule}\n{header}\n{rule}\n")
            text = for_terminal(g.key)
            if text:
                self.out.write(text if text.endswith("\n") else text + "\n")
        self.out.flush()
        statuses = {n: describe_exit(e) for n, e in self.exits.items() if e.status != "ok"}
        for g in folding.group(statuses):
            self.err.write(f"{g.folded}: {g.key}\n")
        self.err.flush()

    def _print_summary(self, interrupted: bool) -> None:
        counts: dict[str, int] = {}
        for e in self.exits.values():
            counts[e.status] = counts.get(e.status, 0) + 1
        total = len(self.start.machines if self.start else ()) or len(self.exits)
        parts = [f"{n} {STATUS_TEXT.get(s, s)}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1])]
        line = f"{total} machine{'s' if total != 1 else ''}: " + (", ".join(parts) or "none ran")
        if self.summary and self.summary.duration is not None:
            line += f" in {self.summary.duration:.2f}s"
        if interrupted:
            line += "; interrupted: cancelled on the machines still running"
        truncated = folding.group({n: 1 for n, e in self.exits.items() if e.truncated})
        if truncated:
            line += f"; output truncated on {truncated[0].folded}"
        for replica, why in sorted(self._replicas_failed().items()):
            mine = sum(1 for e in self.exits.values() if e.error == why)
            self.err.write(f"replica {one_line(replica)} failed its part of the run ({mine} machine"
                           f"{'s' if mine != 1 else ''}): {one_line(why, 200)}\n")
        self.err.write(line + "\n")
        self.err.flush()

