"""How ``centrality exec`` shows what the control plane streams back.

``ExecView.feed(line)`` takes the JSON lines of the ``exec`` request one at a
time (``start``, ``output``, ``exit``, ``summary``; see
``control_plane/requests/exec.py``) and writes:

* by default, each line of output as it arrives, prefixed by its machine
  (``gpu03: ...``; a machine's stderr goes to our stderr), then a line for
  every machine that did not succeed, then a summary on stderr;
* with ``fold``, nothing until the end, then one block per distinct output,
  headed by the machines that printed it folded into a hostlist
  (``gpu[01-12] (12)``), as ``clush -b`` does;
* with ``json``, one JSON document at the end, per machine stdout, stderr,
  exit code, status and duration.

Everything from machines is made safe for the terminal (escape sequences and
control characters removed) before it is printed; the JSON keeps it raw.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from centrality_core import fold as folding
from centrality_core.sanitize import for_terminal, one_line

STATUS_TEXT = {"ok": "ok", "failed": "failed", "killed": "killed", "timeout": "timed out",
               "cancelled": "cancelled", "unreachable": "unreachable"}


class ExecView:
    def __init__(self, *, fold: bool = False, as_json: bool = False, out: TextIO | None = None,
                 err: TextIO | None = None) -> None:
        self.fold = fold
        self.as_json = as_json
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.start: dict | None = None
        self.summary: dict | None = None
        self.exits: dict[str, dict] = {}
        self.stdout: dict[str, list[str]] = {}
        self.stderr: dict[str, list[str]] = {}
        self.combined: dict[str, list[str]] = {}  # as it arrived, both streams (for --fold)
        self._partial: dict[tuple[str, str], str] = {}
        self._width = 0

    # ------------------------------------------------------------------ input

    def feed(self, line: dict) -> None:
        kind = line.get("type")
        if kind == "start":
            self.start = line
            self._width = max((len(n) for n in line.get("machines", ())), default=0)
            if not self.as_json:
                self._report_targets(line)
        elif kind == "output":
            self._output(str(line["machine"]), line.get("stream", "stdout"), str(line.get("data", "")))
        elif kind == "exit":
            name = str(line["machine"])
            self.exits[name] = line
            if not self.as_json and not self.fold:
                self._flush_partial(name)
                if line.get("status") != "ok":
                    self._print(self.err, name, describe_exit(line))
        elif kind == "summary":
            self.summary = line

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

    def _report_targets(self, start: dict) -> None:
        skipped = {s["machine"]: s["reason"] for s in start.get("skipped", ())}
        for g in folding.group(skipped):
            self.err.write(f"skipped {g.folded}: {g.key} ({len(g)})\n")
        for expr in start.get("unknown", ()):
            self.err.write(f"unknown: {one_line(expr)}\n")
        self.err.flush()

    # ------------------------------------------------------------------ end

    @property
    def exit_code(self) -> int:
        if self.summary is not None:
            return int(self.summary.get("exit_code") or 0)
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
        start, summary = self.start or {}, self.summary or {}
        results = []
        for name in start.get("machines", sorted(self.exits)):
            e = self.exits.get(name, {"status": "cancelled" if interrupted else "unknown"})
            results.append({
                "machine": name, "status": e.get("status"), "exit_code": e.get("exit_code"),
                "signal": e.get("signal"), "code": e.get("code"), "duration": e.get("duration"),
                "truncated": e.get("truncated", False), "error": e.get("error"),
                "stdout": "".join(self.stdout.get(name, ())), "stderr": "".join(self.stderr.get(name, ())),
            })
        return {
            "id": start.get("id"), "argv": start.get("argv"), "selector": start.get("selector"),
            "machines": start.get("machines", []), "skipped": start.get("skipped", []),
            "unknown": start.get("unknown", []), "results": results,
            "exit_code": summary.get("exit_code", 130 if interrupted else 1),
            "counts": summary.get("counts", {}), "duration": summary.get("duration"),
            "interrupted": interrupted,
        }

    def _print_folded(self) -> None:
        names = (self.start or {}).get("machines") or sorted(self.exits)
        outputs = {n: "".join(self.combined.get(n, ())) for n in names}
        for g in folding.group(outputs):
            header = f"{g.folded} ({len(g)})"
            rule = "-" * min(max(len(header), 15), 80)
            self.out.write(f"{rule}\n{header}\n{rule}\n")
            text = for_terminal(g.key)
            if text:
                self.out.write(text if text.endswith("\n") else text + "\n")
        self.out.flush()
        statuses = {n: describe_exit(e) for n, e in self.exits.items() if e.get("status") != "ok"}
        for g in folding.group(statuses):
            self.err.write(f"{g.folded}: {g.key}\n")
        self.err.flush()

    def _print_summary(self, interrupted: bool) -> None:
        counts: dict[str, int] = {}
        for e in self.exits.values():
            counts[e.get("status", "?")] = counts.get(e.get("status", "?"), 0) + 1
        total = len((self.start or {}).get("machines", ())) or len(self.exits)
        parts = [f"{n} {STATUS_TEXT.get(s, s)}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1])]
        line = f"{total} machine{'s' if total != 1 else ''}: " + (", ".join(parts) or "none ran")
        if self.summary and self.summary.get("duration") is not None:
            line += f" in {self.summary['duration']:.2f}s"
        if interrupted:
            line += "; interrupted: cancelled on the machines still running"
        truncated = folding.group({n: 1 for n, e in self.exits.items() if e.get("truncated")})
        if truncated:
            line += f"; output truncated on {truncated[0].folded}"
        self.err.write(line + "\n")
        self.err.flush()


def describe_exit(e: dict) -> str:
    status = e.get("status")
    if status == "failed":
        text = f"exit {e.get('exit_code')}"
    elif status == "killed":
        text = f"killed by signal {e.get('signal')}"
    else:
        text = STATUS_TEXT.get(status, str(status))
    error = one_line(str(e["error"]), 200) if e.get("error") else ""
    if error.startswith(text):  # "timed out after 1s", not "timed out (timed out after 1s)"
        return error
    return f"{text} ({error})" if error else text
