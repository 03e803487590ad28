"""Metric collectors of the agent: what a machine is, and one sample per instant.

A sample is a flat ``dict[str, float]`` keyed ``<stream>[<instance>].<field>``
or ``<stream>.<field>`` (units in the field name: ``_bytes``, ``_percent``,
``_per_s``, ``_c``, ``_w``...), plus text streams in a ``dict[str, str]``
(``nvidia_smi``). Modules:

* ``rates``: counters -> per-second rates (``RateTracker``)
* ``proc``: pure parsers of Linux /proc text
* ``nvidia``: pure parsers of nvidia-smi output (CSV, XML, screen, errors)
* ``system``: ``SystemCollector`` (cpu, mem, fs, disk, net)
* ``gpu``: ``GpuCollector`` (NVML, else nvidia-smi), ``NvidiaSmiScreen``
* ``machine_info``: ``collect_machine_info()``
* ``simulated``, ``fake_screen``: deterministic simulated machines

Importing this package imports neither pynvml nor psutil; use
``make_collectors(profile)`` to get a ready ``Collectors`` object.
"""

from __future__ import annotations

from typing import Protocol

PROFILES = ("real", "cpu", "gpu8")


class Collectors(Protocol):
    """What the agent loop needs from a set of collectors."""

    def sample(self, now: float) -> tuple[dict[str, float], dict[str, str]]:
        """``(values, text)`` for the instant ``now`` (seconds)."""
        ...

    def machine_info(self) -> dict:
        """Shaped like ``centrality_core.protocol.MachineInfo``."""
        ...


def make_collectors(profile: str = "real", *, index: int = 0, seed: int = 0) -> Collectors:
    """Collectors for ``profile``: ``"real"`` (this machine) or a fake ``"cpu"``/``"gpu8"``.

    ``index`` and ``seed`` pick one simulated machine (hostname, specs, load
    pattern); the real profile ignores them.
    """
    if profile == "real":
        from .real import RealCollectors

        return RealCollectors()
    if profile in ("cpu", "gpu8"):
        from .simulated import FakeCollectors

        return FakeCollectors(profile, index, seed)
    raise ValueError(f"unknown collector profile {profile!r} (expected one of {PROFILES})")


__all__ = ["Collectors", "PROFILES", "make_collectors"]
