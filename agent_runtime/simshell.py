"""The shell of a simulated machine (``centrality simulate``).

A simulated machine's commands go through the same executor as a real
agent's (``executor.run``: ``sh -c LINE``, a process group, bounded output,
timeout and cancel), and they run on the simulator's host: there is no other
machine. What would give that away is answered as the simulated machine
instead: ``PATH`` starts with a directory of small shell scripts, so
``hostname``, ``uname`` and ``nvidia-smi`` (``-L`` too; "not found" on a CPU
profile, as on a machine without a driver) print the simulated machine's
hostname, kernel and GPUs, the same ones its machine info and its
nvidia-smi screen report. Pipes, globs and everything else are the host's
(``ls /`` lists the simulator's host), and ``CENTRALITY_SIMULATED=1`` is in
the environment so a script can tell.

Each machine has a directory under the simulator's state directory
(``shell/machines/NAME``) holding what the scripts print; the nvidia-smi
screen is written again before each command, from the latest sample.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

#: The scripts on ``PATH``: POSIX sh, reading the machine's directory ($CENTRALITY_SIM_HOME).
SCRIPTS = {
    "hostname": r'''#!/bin/sh
# simulated by centrality simulate: this machine's hostname
h=$(cat "$CENTRALITY_SIM_HOME/hostname")
case "$1" in
  -s|--short) echo "${h%%.*}" ;;
  *) echo "$h" ;;
esac
''',
    "uname": r'''#!/bin/sh
# simulated by centrality simulate: this machine's kernel and hostname
d="$CENTRALITY_SIM_HOME"
[ $# -eq 0 ] && set -- -s
out=""
for a in "$@"; do
  case "$a" in
    -a|--all) out="$out Linux $(cat "$d/hostname") $(cat "$d/kernel") #1 SMP $(cat "$d/arch") GNU/Linux" ;;
    -s|--kernel-name) out="$out Linux" ;;
    -n|--nodename) out="$out $(cat "$d/hostname")" ;;
    -r|--kernel-release) out="$out $(cat "$d/kernel")" ;;
    -m|--machine|-p|--processor|-i|--hardware-platform) out="$out $(cat "$d/arch")" ;;
    -o|--operating-system) out="$out GNU/Linux" ;;
    -v|--kernel-version) out="$out #1 SMP" ;;
    *) echo "uname: invalid option -- '$a'" >&2; exit 1 ;;
  esac
done
echo "${out# }"
''',
    "nvidia-smi": r'''#!/bin/sh
# simulated by centrality simulate: this machine's GPUs (none on a CPU profile)
d="$CENTRALITY_SIM_HOME"
if [ ! -f "$d/nvidia-smi.txt" ]; then
  echo "sh: 1: nvidia-smi: not found" >&2
  exit 127
fi
case "$1" in
  "") cat "$d/nvidia-smi.txt" ;;
  -L|--list-gpus) cat "$d/nvidia-smi-L.txt" ;;
  *) echo "nvidia-smi (simulated): only 'nvidia-smi' and 'nvidia-smi -L' are simulated" >&2; exit 2 ;;
esac
''',
}


def install_scripts(root: Path) -> Path:
    """Write the scripts into ``root/bin`` (once per simulator); returns that directory."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, text in SCRIPTS.items():
        path = bin_dir / name
        if not path.exists() or path.read_text() != text:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.chmod(0o755)
            tmp.replace(path)
    return bin_dir


def gpu_list(info: dict) -> str:
    """``nvidia-smi -L``: one line per GPU."""
    return "".join(f"GPU {g.get('index', i)}: {g.get('name', '')} (UUID: {g.get('uuid', '')})\n"
                   for i, g in enumerate(info.get("gpus") or []))


class SimShell:
    """What a simulated machine's commands see: ``environment()`` is added to each command's."""

    def __init__(self, root: Path, name: str, info: dict, screen: Callable[[], str] | None = None) -> None:
        self.root = root
        self.home = root / "machines" / name
        self.info = info
        self.screen = screen if info.get("gpus") else None  # the nvidia-smi screen now (GPU profiles)
        self.hostname = str(info.get("hostname") or name)
        self._ready = False  # files are written on the first command (thousands of machines start at once)

    def _prepare(self) -> None:
        self.bin = install_scripts(self.root)
        self.home.mkdir(parents=True, exist_ok=True)
        info = self.info
        for key, value in (("hostname", self.hostname), ("kernel", info.get("kernel") or ""),
                           ("arch", info.get("arch") or "x86_64")):
            (self.home / key).write_text(f"{value}\n")
        smi, listing = self.home / "nvidia-smi.txt", self.home / "nvidia-smi-L.txt"
        if self.screen is not None:
            listing.write_text(gpu_list(info))
        else:
            smi.unlink(missing_ok=True)
            listing.unlink(missing_ok=True)
        self._ready = True

    def environment(self) -> dict[str, str]:
        if not self._ready:
            self._prepare()
        if self.screen is not None:
            tmp = self.home / "nvidia-smi.tmp"
            tmp.write_text(self.screen())
            tmp.replace(self.home / "nvidia-smi.txt")
        return {"PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
                "CENTRALITY_SIM_HOME": str(self.home), "CENTRALITY_SIMULATED": "1", "HOSTNAME": self.hostname}
