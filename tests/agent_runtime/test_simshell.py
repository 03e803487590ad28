"""A simulated machine's shell, through the agent's own executor (real ``sh``,
real processes): hostname, uname and nvidia-smi answer as the simulated
machine; pipes work; a CPU profile has no nvidia-smi."""

from __future__ import annotations

import asyncio
import socket

from agent_runtime import executor
from agent_runtime.collectors.simulated import FakeCollectors
from agent_runtime.simshell import SimShell
from centrality_core import protocol as p


async def sh(shell: SimShell, line: str) -> tuple[int | None, str, str]:
    out: dict[str, str] = {"stdout": "", "stderr": ""}

    def on_output(stream: str, text: str) -> None:
        out[stream] += text

    r = await executor.run(["sh", "-c", line], timeout=10, max_output_bytes=1 << 20, on_output=on_output,
                           env=shell.environment())
    return r.exit_code, out["stdout"], out["stderr"]


async def test_a_gpu_machine_answers_as_itself(tmp_path):
    c = FakeCollectors("gpu8", 4)
    info = c.machine_info()
    shell = SimShell(tmp_path, "sim-00004", info, screen=lambda: c.screen(1_800_000_000.0))
    assert info["hostname"] == "gpu-00004" != socket.gethostname()
    assert await sh(shell, "hostname") == (0, "gpu-00004\n", "")
    assert await sh(shell, "uname -n; uname -r") == (0, f"gpu-00004\n{info['kernel']}\n", "")
    assert (await sh(shell, "uname -a"))[1].startswith(f"Linux gpu-00004 {info['kernel']} ")
    code, out, _ = await sh(shell, "nvidia-smi -L | head -2")  # the line from the report, piped
    assert code == 0 and out.splitlines() == [f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: {info['gpus'][i]['uuid']})"
                                               for i in (0, 1)]
    assert (await sh(shell, "nvidia-smi -L | wc -l"))[1].strip() == "8"
    code, out, _ = await sh(shell, "nvidia-smi")
    assert code == 0 and "NVIDIA-SMI" in out and info["gpu_driver"] in out and out.count("H100") == 8
    assert (await sh(shell, 'echo "$CENTRALITY_SIMULATED $HOSTNAME"'))[1] == "1 gpu-00004\n"
    code, _, err = await sh(shell, "nvidia-smi --query-gpu=name --format=csv")
    assert code == 2 and "only 'nvidia-smi' and 'nvidia-smi -L' are simulated" in err


async def test_a_cpu_machine_has_no_nvidia_smi(tmp_path):
    info = FakeCollectors("cpu", 1003).machine_info()
    shell = SimShell(tmp_path, "sim-01003", info, screen=None)
    assert await sh(shell, "hostname") == (0, "cpu-01003\n", "")
    code, out, err = await sh(shell, "nvidia-smi -L")
    assert code == 127 and out == "" and "nvidia-smi: not found" in err


async def test_the_executor_asks_for_the_shell_per_command(tmp_path):
    c = FakeCollectors("gpu8", 8)
    screens = iter(["first screen\n", "second screen\n"])
    shell = SimShell(tmp_path, "sim-00008", c.machine_info(), screen=lambda: next(screens))
    sent = []
    ex = executor.Executor(sent.append, machine="sim-00008", environment=shell.environment)
    for i in range(2):
        ex.start(p.Command(id=f"c{i}", argv=["sh", "-c", "nvidia-smi; hostname"], timeout=10,
                           max_output_bytes=4096))
        while ex.running:
            await asyncio.sleep(0.01)
    outputs = "".join(m.data for m in sent if isinstance(m, p.CommandOutput))
    assert outputs == "first screen\ngpu-00008\nsecond screen\ngpu-00008\n"  # the screen as of each command
