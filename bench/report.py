"""Write a benchmark's results: JSON under bench/results/, a Markdown section in docs/performance.md.

Each benchmark owns one section of docs/performance.md, between
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``; rerunning it replaces
only that section.
"""

from __future__ import annotations

import json
import platform
import re
import shlex
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"


PACKAGES = ("centrality_core", "centrality_cli", "control_plane", "agent_runtime", "tui", "provision", "exporter")


def installed_env(env: dict) -> dict:
    """``env`` for the processes a benchmark times, loading bytecode as an installed wheel
    does: the project's modules compiled once (pip compiles a wheel's at install) and
    ``PYTHONDONTWRITEBYTECODE`` dropped, or every CLI call compiles ~40 modules again
    (~40 ms of its CPU)."""
    import compileall

    for package in PACKAGES:
        compileall.compile_dir(str(ROOT / package), quiet=1)
    return {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}


def machine() -> str:
    freq = psutil.cpu_freq()
    return (f"{psutil.cpu_count()} cores{f' @ {freq.max / 1000:.1f} GHz' if freq and freq.max else ''}, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def portable(command: str) -> str:
    """The command as a reader would type it: paths of this run's files are DIR or FILE."""
    def word(w: str) -> str:
        opt, eq, value = w.rpartition("=") if w.startswith("--") and "=" in w else ("", "", w)
        if not value.startswith(("/", "~", "./", "../")):
            return w
        return f"{opt}{eq}{'DIR' if Path(value).expanduser().is_dir() else 'FILE'}"
    return " ".join(word(w) for w in shlex.split(command))


def write(name: str, command: str, results: dict, markdown: str) -> None:
    command = portable(command)
    out = ROOT / "bench" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"name": name, "command": command, "machine": machine(),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "results": results}
    out.write_text(json.dumps(doc, indent=2) + "\n")
    section = (f"<!-- bench:{name} -->\n{markdown.rstrip()}\n\nCommand: `{command}`  \n"
               f"Machine: {doc['machine']}; run {doc['date']}; raw results: `bench/results/{name}.json`.\n"
               f"<!-- /bench:{name} -->")
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    DOC.write_text(text)
    print(markdown, file=sys.stderr)
