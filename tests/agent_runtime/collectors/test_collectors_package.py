"""The package surface: lazy imports and make_collectors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from agent_runtime.collectors import PROFILES, make_collectors
from agent_runtime.sampler import columnar
from centrality_core import protocol
from centrality_core.protocol import MachineInfo


REPO_ROOT = Path(__file__).resolve().parents[3]  # tests/agent_runtime/collectors -> ... -> repo


def test_import_does_not_load_pynvml_or_psutil():
    code = (
        "import sys\n"
        "import agent_runtime.collectors\n"
        "from agent_runtime.collectors import rates, proc, nvidia, gpu, system, machine_info, simulated, real\n"
        "bad = [m for m in ('pynvml', 'psutil', 'xml.etree.ElementTree') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("profile", ["cpu", "gpu8"])
def test_make_fake_collectors(profile):
    c = make_collectors(profile, index=4, seed=1)
    values, text = c.sample(1_800_000_000.0)
    assert values and isinstance(text, dict)
    assert c.machine_info()["hostname"].endswith("-00004")


def test_make_real_collectors(no_gpu_env):
    c = make_collectors("real")
    c.sample(time.monotonic())
    time.sleep(0.1)
    ts = time.monotonic()
    values, text = c.sample(ts)
    assert "cpu.percent" in values and "mem.total_bytes" in values
    assert not [k for k in values if k.startswith("gpu[")]
    protocol.agent_decoder.decode(protocol.encode(columnar("s", 1, [ts], [values], text)))  # fits the wire
    msgspec.convert(c.machine_info(), MachineInfo)


def test_unknown_profile():
    assert PROFILES == ("real", "cpu", "gpu8")
    with pytest.raises(ValueError):
        make_collectors("gpu4")
