"""Render a plausible plain ``nvidia-smi`` screen (the wide, driver >= 530 layout).

Used by the fake collectors; the layout follows the real 8x H100 capture
column for column, so ``nvidia.parse_screen`` reads it back.
"""

from __future__ import annotations

import time
from typing import NamedTuple

_WIDTH = 89  # characters between the outer "|" of every table line
_TOP = "+" + "-" * _WIDTH + "+"
_GRID = "+" + "-" * 41 + "+" + "-" * 24 + "+" + "-" * 22 + "+"
_HEAD = (
    "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
    "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
    "|                                         |                        |               MIG M. |",
    "|" + "=" * 41 + "+" + "=" * 24 + "+" + "=" * 22 + "|",
)
_PROC_HEAD = (
    "| Processes:" + " " * 78 + "|",
    "|  GPU   GI   CI        PID   Type   Process name                              GPU Memory |",
    "|        ID   ID                                                               Usage      |",
    "|" + "=" * _WIDTH + "|",
)


class ScreenGpu(NamedTuple):
    """What one GPU block of the screen shows (temperature C, power W, memory MiB, util %)."""

    index: int
    name: str
    bus_id: str
    temp_c: int
    power_w: int
    power_cap_w: int
    mem_used_mib: int
    mem_total_mib: int
    util_percent: int
    perf: str = "P0"


class ScreenProcess(NamedTuple):
    gpu: int
    pid: int
    name: str
    mem_mib: int


def _line(text: str) -> str:
    return "|" + text[:_WIDTH].ljust(_WIDTH) + "|"


def render_screen(
    gpus: list[ScreenGpu], processes: list[ScreenProcess], *, driver: str, cuda: str,
    now: float | None = None,
) -> str:
    """The whole screen text. ``now`` (Unix time) adds the timestamp line, as nvidia-smi does."""
    out: list[str] = []
    if now is not None:
        out.append(time.asctime(time.gmtime(now)) + "       ")
    out.append(_TOP)
    out.append(_line(f" NVIDIA-SMI {driver:<23}Driver Version: {driver:<15}CUDA Version: {cuda:<9}"))
    out.append("|" + "-" * 41 + "+" + "-" * 24 + "+" + "-" * 22 + "+")
    out.extend(_HEAD)
    for g in gpus:
        out.append(f"|{g.index:>4}  {g.name[:31]:<31}On  |   {g.bus_id:<16} Off |{0:>21} |")
        out.append(
            f"| N/A  {g.temp_c:>3}C    {g.perf:<2}{g.power_w:>15}W / {g.power_cap_w:>4}W "
            f"|{g.mem_used_mib:>8}MiB / {g.mem_total_mib:>6}MiB |{g.util_percent:>7}%      Default |"
        )
        out.append("|" + " " * 41 + "|" + " " * 24 + "|" + f"{'Disabled':>21} |")
        out.append(_GRID)
    out.append(" " * _WIDTH)
    out.append(_TOP)
    out.extend(_PROC_HEAD)
    if not processes:
        out.append(_line("  No running processes found"))
    for p in processes:
        out.append(_line(f"  {p.gpu:>3}   N/A  N/A  {p.pid:>8}      C   {p.name[:39]:<39}{p.mem_mib:>10}MiB "))
    out.append(_TOP)
    return "\n".join(out) + "\n"
