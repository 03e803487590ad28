"""The real collectors of this machine, combined behind one ``sample(now)``."""

from __future__ import annotations

from .gpu import GpuCollector, NvidiaSmiScreen
from .gpu_procs import GpuProcessCollector
from .machine_info import collect_machine_info
from .system import SystemCollector


class RealCollectors:
    """System + GPU numbers and the ``nvidia_smi`` screen text of this machine.

    ``now`` is in seconds; wall-clock time is fine (a step back of the clock
    costs one rate point, never a negative rate). Never raises.
    """

    def __init__(
        self, *, system: SystemCollector | None = None, gpu: GpuCollector | None = None,
        screen: NvidiaSmiScreen | None = None, procs: GpuProcessCollector | None = None,
    ) -> None:
        self.system = system if system is not None else SystemCollector()
        self.gpu = gpu if gpu is not None else GpuCollector()
        self.screen = screen if screen is not None else NvidiaSmiScreen()
        self.procs = procs if procs is not None else GpuProcessCollector(self.gpu)

    def sample(self, now: float) -> tuple[dict[str, float], dict[str, str]]:
        """``(values, text)``: numeric streams, and ``nvidia_smi`` when it is due."""
        values = self.system.sample(now)
        values.update(self.gpu.sample(now))
        return values, self.screen.sample(now)

    def gpu_processes(self, now: float):
        """The GPU process list when it is due (every few seconds), else None."""
        return self.procs.sample(now)

    def machine_info(self) -> dict:
        """This machine's description (see ``machine_info.collect_machine_info``)."""
        gpus, driver = self.gpu.inventory()
        return collect_machine_info(gpus=gpus, gpu_driver=driver)

    def close(self) -> None:
        self.gpu.close()
