"""How ``centrality cp`` shows a copy, and where a gather writes what comes back.

``CopyView.feed(line)`` takes the JSON lines of ``cp put`` / ``cp get``
(``start``, ``progress``, ``begin``, ``data``, ``done``, ``summary``). A push prints
the skipped machines, a progress line on stderr (when it is a terminal:
machines done, bytes acknowledged over all machines), a line per machine that
failed and a summary; ``--json`` prints one document at the end. A gather
writes each machine's bytes to ``LOCALDIR/<machine>/<name>.part``, checks
their SHA-256 against the agent's, and renames the file into place only
then; a failed machine leaves nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from centrality_core import fold as folding, names
from centrality_core.sanitize import one_line


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


class CopyView:
    def __init__(self, *, as_json: bool, direction: str, progress: bool) -> None:
        self.as_json = as_json
        self.direction = direction
        self.show_progress = progress
        self.total = 0  # bytes per machine (push)
        self.localdir: Path | None = None
        self.basename = "file"
        self.start: dict | None = None
        self.summary: dict | None = None
        self.done: dict[str, dict] = {}
        self.acked: dict[str, int] = {}
        self._files: dict[str, tuple] = {}  # gather: machine -> (file, sha, part path)
        self.err = sys.stderr

    @property
    def exit_code(self) -> int:
        return self.summary["exit_code"] if self.summary else 1

    def feed(self, line: dict) -> None:
        kind = line.get("type")
        if kind == "start":
            self.start = line
            if not self.as_json:
                for g in folding.group({s["machine"]: s["reason"] for s in line.get("skipped", [])}):
                    self.err.write(f"skipped {g.folded}: {one_line(g.key, 200)} ({len(g)})\n")
                for expr in line.get("unknown", []):
                    self.err.write(f"unknown: {one_line(expr, 200)}\n")
        elif kind == "begin":  # gather: one machine starts sending
            self._open(line["machine"])
        elif kind == "progress":
            self.acked.update(line.get("machines", {}))
            self._progress()
        elif kind == "data":
            self._data(line)
        elif kind == "done":
            self._done(line)
        elif kind == "summary":
            self.summary = line

    # ------------------------------------------------------------------ gather

    def _open(self, machine: str) -> None:
        if self.localdir is None or not names.is_valid(machine):
            return
        d = self.localdir / machine
        d.mkdir(exist_ok=True)
        part = d / f".{self.basename}.part"
        self._files[machine] = (open(part, "wb"), hashlib.sha256(), part)  # noqa: SIM115 - closed in _done

    def _data(self, line: dict) -> None:
        import base64

        entry = self._files.get(line["machine"])
        if entry is None:
            return
        data = base64.b64decode(line["data"])
        entry[0].write(data)
        entry[1].update(data)
        self.acked[line["machine"]] = self.acked.get(line["machine"], 0) + len(data)
        self._progress()

    def _done(self, line: dict) -> None:
        machine = line["machine"]
        entry = self._files.pop(machine, None)
        if entry is not None:
            f, sha, part = entry
            f.close()
            if line["status"] == "ok" and sha.hexdigest() == line.get("sha256"):
                final = part.with_name(self.basename)
                os.replace(part, final)
                line["path"] = str(final)
            else:
                part.unlink(missing_ok=True)
                if line["status"] == "ok":
                    line.update(status="failed", code=1, error="SHA-256 of what arrived does not match the agent's")
        self.done[machine] = line
        if not self.as_json and line["status"] != "ok":
            self._clear()
            self.err.write(f"{machine}: {line['status']}: {one_line(str(line.get('error') or ''), 300)}\n")

    # ------------------------------------------------------------------ output

    def _progress(self) -> None:
        if not self.show_progress or self.start is None:
            return
        n = len(self.start.get("machines", []))
        total = self.total * n if self.direction == "put" else 0
        got = sum(self.acked.values())
        text = f"{len(self.done)}/{n} machines done, {_mib(got)}" + (f" of {_mib(total)}" if total else "")
        self.err.write("\r" + text[:200] + "\x1b[K")
        self.err.flush()

    def _clear(self) -> None:
        if self.show_progress:
            self.err.write("\r\x1b[K")

    def abort(self) -> None:
        for f, _sha, part in self._files.values():
            f.close()
            part.unlink(missing_ok=True)
        self._files.clear()
        self._clear()

    def finish(self) -> None:
        self.abort()
        if self.as_json:
            doc = {"direction": self.direction, **{k: v for k, v in (self.summary or {}).items() if k != "type"},
                   "machines": self.done,
                   "skipped": (self.start or {}).get("skipped", []), "unknown": (self.start or {}).get("unknown", [])}
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
            return
        if self.summary is None:
            return
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.summary["counts"].items(), key=lambda kv: -kv[1]))
        n = sum(self.summary["counts"].values())
        self.err.write(f"{n} machine{'s' if n != 1 else ''}: {counts or 'none'}"
                       f" ({_mib(self.summary.get('bytes', 0))} in {self.summary['duration']:.1f}s)\n")
