"""Healthchecks: the pure evaluation, custom checks through the executor, the config and wire shape."""

from __future__ import annotations

import json

import msgspec
import pytest

from agent_runtime import executor, health
from agent_runtime.config import AgentConfig, CheckConfig
from centrality_core import protocol as p

CFG = AgentConfig()


def test_disk_and_memory_from_the_latest_sample():
    values = {"fs[/].percent": 64.0, "fs[/scratch].percent": 97.2, "mem.percent": 41.0, "cpu.percent": 3.0}
    disk, mem = health.builtin_checks(values, CFG, registered_gpus=0)
    assert (disk.name, disk.ok, disk.detail) == ("disk", False, "over 95% full: /scratch 97%")
    assert (mem.name, mem.ok) == ("memory", True)
    values["fs[/scratch].percent"] = 50.0
    values["mem.percent"] = 99.0
    disk, mem = health.builtin_checks(values, CFG, registered_gpus=0)
    assert disk.ok and disk.detail == "fullest: / 64%" and not mem.ok


def test_no_sample_yet_gives_no_builtin_result():
    assert health.builtin_checks({}, CFG, registered_gpus=0) == []


def test_gpu_count_against_registered():
    seven = {f"gpu[{i}].util_percent": 10.0 for i in range(7)}
    (r,) = [c for c in health.builtin_checks(seven, CFG, registered_gpus=8) if c.name == "gpu_count"]
    assert not r.ok and r.detail == "7 GPUs visible, 8 registered"
    assert health.check_gpu_count({}, 0) is None  # a CPU machine has no GPU check
    assert health.check_gpu_count({"gpu[0].temp_c": 40.0}, 1).ok


def test_gpu_ecc_and_xid_where_nvml_reports_them():
    ecc, xid = health.check_gpu_errors({0: 0, 1: 3, 2: None}, [(1, 79), (0, 13)])
    assert not ecc.ok and ecc.detail == "GPU 1: 3 uncorrected ECC errors"
    assert not xid.ok and "GPU 1: XID 79" in xid.detail and "XID 13 (application)" in xid.detail
    ecc, xid = health.check_gpu_errors({0: 0}, [(0, 13)])  # application XIDs alone do not fail
    assert ecc.ok and xid.ok
    assert health.check_gpu_errors({}, []) == []  # NVML absent: nothing claimed


def test_nvidia_smi_answers():
    ok = health.check_nvidia_smi(executor.Result(exit_code=0), "GPU 0: NVIDIA A100 (UUID: x)\nGPU 1: NVIDIA A100\n")
    assert ok.ok and ok.detail == "2 GPUs listed"
    bad = health.check_nvidia_smi(executor.Result(exit_code=9), "NVIDIA-SMI has failed because it couldn't "
                                                                 "communicate with the NVIDIA driver.\n")
    assert not bad.ok and bad.detail.startswith("exit 9: NVIDIA-SMI has failed")
    hung = health.check_nvidia_smi(executor.Result(timed_out=True, error="timed out after 10s"), "")
    assert not hung.ok and hung.detail == "timed out after 10s"


async def test_custom_checks_run_with_timeout_and_report_the_last_line(tmp_path):
    cfg = AgentConfig(checks=[
        CheckConfig(name="passes", command=["true"]),
        CheckConfig(name="fails", command="echo checking; echo 'link DOWN' >&2; exit 2"),
        CheckConfig(name="hangs", command=["sleep", "30"], timeout=0.3),
        CheckConfig(name="missing", command=["/nonexistent/check"]),
    ], kill_grace=0.2)
    mon = health.HealthMonitor(cfg, values=lambda: {"mem.percent": 10.0}, registered_gpus=0, probe_gpus=False,
                               on_report=lambda r: None)
    report = await mon.round()
    got = {c.name: (c.ok, c.detail) for c in report.checks}
    assert got["passes"] == (True, "")
    assert got["fails"] == (False, "exit 2: link DOWN")
    assert got["hangs"] == (False, "timed out after 0.3s")
    assert got["missing"][0] is False and "command not found" in got["missing"][1]
    assert got["memory"] == (True, "10% used (limit 95%)")
    # the report is a valid wire message
    again = p.agent_decoder.decode(p.encode(report).rstrip(b"\n"))
    assert again == report


def test_checks_in_agent_toml():
    cfg = msgspec.toml.decode(b'''
address = "cp:8022"
fingerprint = "SHA256:x"
health_interval = 30
[[checks]]
name = "ib-link"
command = ["/usr/local/bin/check-ib", "mlx5_0"]
timeout = 5
[[checks]]
name = "scratch"
command = "test -w /scratch"
''', type=AgentConfig)
    assert [health.command_argv(c) for c in cfg.checks] == [
        ["/usr/local/bin/check-ib", "mlx5_0"], ["sh", "-c", "test -w /scratch"]]
    assert cfg.checks[0].timeout == 5 and cfg.checks[1].timeout is None
    assert msgspec.toml.decode(msgspec.toml.encode(cfg), type=AgentConfig) == cfg  # save() keeps them


@pytest.mark.parametrize("obj", [
    {"kind": "health", "ts": 1.0, "checks": [{"name": "x" * 65, "ok": True}]},
    {"kind": "health", "ts": 1.0, "checks": [{"name": "x", "ok": True, "detail": "d" * 1025}]},
    {"kind": "health", "ts": 1.0, "checks": [{"name": "x", "ok": True}] * 129},
    {"kind": "health", "ts": 1.0, "checks": [{"name": "x", "ok": "yes"}]},
    {"kind": "exit", "id": "c", "signal": 0},
    {"kind": "exit", "id": "c", "exit_code": 1 << 40},
])
def test_new_messages_are_bounded(obj):
    from centrality_core.errors import MalformedFrame

    with pytest.raises(MalformedFrame):
        p.agent_decoder.decode(json.dumps(obj).encode())


async def test_a_tick_with_only_built_in_checks_reports_at_once():
    """A simulator's shared timer calls ``tick()``: the round is reported before it returns."""
    reports = []
    mon = health.HealthMonitor(AgentConfig(), values=lambda: {"mem.percent": 97.0}, registered_gpus=0,
                               probe_gpus=False, on_report=reports.append)
    mon.tick()
    assert [(c.name, c.ok) for c in reports[0].checks] == [("memory", False)]
    assert mon.last is reports[0] and mon.rounds == 1


async def test_a_tick_with_check_commands_reports_when_they_end_and_never_overlaps(tmp_path):
    import asyncio

    reports = []
    cfg = AgentConfig(checks=[CheckConfig(name="slow", command="sleep 0.3; echo done")])
    mon = health.HealthMonitor(cfg, values=lambda: {}, registered_gpus=0, probe_gpus=False,
                               on_report=reports.append)
    mon.tick()
    mon.tick()  # the first round is still running: no second one
    assert reports == []
    await asyncio.sleep(1.0)
    assert [[(c.name, c.ok, c.detail) for c in r.checks] for r in reports] == [[("slow", True, "done")]]
    mon.tick()
    await asyncio.sleep(1.0)
    assert mon.rounds == 2
