"""Fake collectors: keys, ranges, determinism, the training pattern, the screen, speed."""

from __future__ import annotations

import time

import msgspec
import pytest

from agent_runtime.collectors.simulated import GIB, H100_MIB, FakeCollectors, fake_machine_info
from agent_runtime.collectors.fake_screen import ScreenGpu, render_screen
from agent_runtime.collectors.nvidia import MIB, parse_screen
from agent_runtime.sampler import columnar
from centrality_core import protocol
from centrality_core.protocol import MachineInfo

T0 = 1_800_000_000.0
GPU_FIELDS = ("util_percent", "mem_used_bytes", "mem_total_bytes", "mem_util_percent", "temp_c", "power_w")


def _expected_keys(ncores, mounts, disks, nics, ngpus):
    k = {"cpu.percent", "mem.used_bytes", "mem.total_bytes", "mem.percent"}
    k |= {f"cpu[{i}].percent" for i in range(ncores)}
    k |= {f"fs[{m}].{f}" for m in mounts for f in ("used_bytes", "total_bytes", "percent")}
    k |= {f"disk[{d}].{f}" for d in disks
          for f in ("read_iops", "write_iops", "read_bytes_per_s", "write_bytes_per_s")}
    k |= {f"net[{n}].{f}" for n in nics for f in ("recv_bytes_per_s", "sent_bytes_per_s")}
    k |= {f"gpu[{g}].{f}" for g in range(ngpus) for f in GPU_FIELDS}
    return k


def test_cpu_profile_keys():
    values, text = FakeCollectors("cpu", 0, 0).sample(T0)
    assert set(values) == _expected_keys(16, ["/", "/data"], ["nvme0n1", "nvme1n1"], ["eth0", "eth1"], 0)
    assert text == {}


def test_gpu8_profile_keys_and_screen_cadence():
    f = FakeCollectors("gpu8", 0, 0)
    values, text = f.sample(T0)
    assert set(values) == _expected_keys(112, ["/", "/raid"], [f"nvme{i}n1" for i in range(10)], ["eth0", "eth1"], 8)
    assert set(text) == {"nvidia_smi"}
    assert f.sample(T0 + 1)[1] == {}
    assert f.sample(T0 + 29)[1] == {}
    assert set(f.sample(T0 + 30)[1]) == {"nvidia_smi"}


@pytest.mark.parametrize("profile", ["cpu", "gpu8"])
def test_ranges_over_simulated_hours(profile):
    f = FakeCollectors(profile, 5, 42)
    for t in range(0, 3 * 3600, 7):
        values, _ = f.sample(T0 + t)
        for k, v in values.items():
            assert v >= 0, (k, v)
            if k.endswith("percent"):
                assert 0 <= v <= 100, (k, v)
        assert values["mem.used_bytes"] <= values["mem.total_bytes"]


def test_gpu8_follows_a_training_pattern():
    f = FakeCollectors("gpu8", 3, 1)
    seen: dict[str, list[float]] = {}
    mem_by_phase: dict[str, list[float]] = {}
    for t in range(0, 2 * 1200, 2):  # at least two full periods (10-20 min)
        phase, _ = f.phase(T0 + t)
        values, _ = f.sample(T0 + t)
        seen.setdefault(phase, []).append(values["gpu[0].util_percent"])
        mem_by_phase.setdefault(phase, []).append(values["gpu[0].mem_used_bytes"])
    assert set(seen) == {"ramp", "train", "checkpoint", "idle"}
    assert min(seen["train"]) >= 95 and max(seen["train"]) <= 100
    assert max(seen["checkpoint"]) < 30  # checkpoint dips
    assert set(seen["idle"]) == {0.0}
    assert any(10 < u < 90 for u in seen["ramp"])  # a ramp, not a step
    gib = 1 << 30
    assert all(67 * gib < m < 73 * gib for m in mem_by_phase["train"])  # ~70 GiB per GPU
    assert max(mem_by_phase["idle"]) < 100 * MIB


def test_gpu_power_and_temperature_track_util():
    f = FakeCollectors("gpu8", 0, 0)
    busy = idle = None
    for t in range(0, 1200, 5):
        phase, _ = f.phase(T0 + t)
        if phase == "train" and busy is None:
            busy = f.sample(T0 + t)[0]
        if phase == "idle" and idle is None:
            idle = f.sample(T0 + t)[0]
    assert busy is not None and idle is not None
    assert busy["gpu[0].power_w"] > 500 > 150 > idle["gpu[0].power_w"]
    assert busy["gpu[0].temp_c"] > idle["gpu[0].temp_c"] + 20
    assert busy["gpu[0].power_w"] <= 700


def test_cpu_load_wanders():
    f = FakeCollectors("cpu", 0, 0)
    loads = [f.sample(T0 + t)[0]["cpu.percent"] for t in range(0, 7200, 60)]
    assert max(loads) - min(loads) > 10


def test_deterministic_given_seed_and_independent_of_call_order():
    a, b = FakeCollectors("gpu8", 7, 99), FakeCollectors("gpu8", 7, 99)
    times = [T0 + t for t in (0, 1, 500, 2, 1500)]
    assert [a.sample(t)[0] for t in times] == [b.sample(t)[0] for t in reversed(times)][::-1]
    c = FakeCollectors("gpu8", 7, 100)
    assert c.sample(T0)[0] != a.sample(T0)[0]


def test_machine_info_distinct_and_consistent():
    infos = [fake_machine_info("gpu8", i, 0) for i in range(50)]
    assert len({i["hostname"] for i in infos}) == 50
    assert len({i["machine_id"] for i in infos}) == 50
    assert len({g["uuid"] for i in infos for g in i["gpus"]}) == 400
    info = infos[0]
    assert info["cpu_count"] == 112 and info["memory_total_bytes"] == 2 << 40
    assert [g["name"] for g in info["gpus"]] == ["NVIDIA H100 80GB HBM3"] * 8
    assert {g["memory_total_bytes"] for g in info["gpus"]} == {H100_MIB * MIB}
    assert fake_machine_info("gpu8", 3, 0) == fake_machine_info("gpu8", 3, 0)
    for profile in ("cpu", "gpu8"):
        f = FakeCollectors(profile, 11, 5)
        info = f.machine_info()
        msgspec.convert(info, MachineInfo)
        values, _ = f.sample(T0)
        assert info["cpu_count"] == sum(1 for k in values if k.startswith("cpu["))
        assert info["memory_total_bytes"] == values["mem.total_bytes"]
        for d in info["disks"]:
            assert values[f"fs[{d['mount']}].total_bytes"] == d["total_bytes"]
        assert len(info["gpus"]) == len({k.split("]")[0] for k in values if k.startswith("gpu[")})
    cpu = fake_machine_info("cpu", 0, 0)
    assert cpu["gpus"] == [] and cpu["cpu_count"] == 16 and cpu["memory_total_bytes"] == 64 << 30


def test_samples_fit_the_wire_protocol():
    for profile in ("cpu", "gpu8"):
        values, text = FakeCollectors(profile, 0, 0).sample(T0)
        protocol.agent_decoder.decode(protocol.encode(columnar("s", 1, [T0], [values], text)))  # fits the wire


def test_fake_screen_reads_back_and_matches_values():
    f = FakeCollectors("gpu8", 2, 0)
    t = next(T0 + s for s in range(0, 1200, 5) if f.phase(T0 + s)[0] == "train")
    values, _ = f.sample(t)
    gpus = parse_screen(f.screen(t))
    assert [g.index for g in gpus] == list(range(8))
    assert {g.name for g in gpus} == {"NVIDIA H100 80GB HBM3"}
    for g in gpus:
        p = f"gpu[{g.index}]."
        assert g.util_percent == round(values[p + "util_percent"])
        assert g.mem_used_bytes == int(values[p + "mem_used_bytes"] // MIB) * MIB
        assert g.mem_total_bytes == H100_MIB * MIB
        assert g.power_w == round(values[p + "power_w"])
    procs = f.gpu_processes(t).processes
    screen = f.screen(t)
    assert len(procs) >= 4  # the main job's GPUs at least
    for x in procs:  # every process of the stream is on the screen, with its GPU and memory
        assert any(ln.split()[1:3] == [str(x.gpu), "N/A"] and str(x.pid) in ln
                   and ln.rstrip(" |").endswith(f"{x.used_memory_bytes // MIB}MiB")
                   for ln in screen.splitlines()), x


def test_gpu8_gpus_differ_and_jobs_start_hold_and_end():
    """Across machines: GPUs of one machine do not all share one load; processes come
    and go with their job (new pids each run); some machines hold memory at 0 %."""
    held_idle = 0
    for index in range(12):
        f = FakeCollectors("gpu8", index, 0)
        utils, pids_seen, counts = set(), set(), set()
        for s in range(0, 2 * 3600, 20):
            t = T0 + s
            v, _ = f.sample(t)
            utils.add(tuple(round(v[f"gpu[{g}].util_percent"]) for g in range(8)))
            snap = f.gpu_processes(t)
            if snap is None:
                continue
            assert snap.source == "simulated" and len(snap.processes) <= 8
            counts.add(len(snap.processes))
            for x in snap.processes:
                pids_seen.add(x.pid)
                assert x.user and x.command.startswith("python")
                g = f"gpu[{x.gpu}]."
                assert abs(x.used_memory_bytes - (v[g + "mem_used_bytes"] - 520 * MIB)) <= MIB
                if x.sm_percent == 0.0 and x.used_memory_bytes > GIB:
                    held_idle += 1
        assert any(len(set(u)) > 2 for u in utils), index  # loads differ between the GPUs
        assert len(counts) > 1, index  # jobs start and end: the number of processes changes
        assert len(pids_seen) > 8, index  # a new run, new pids
    assert held_idle > 0  # a notebook kernel holding memory at 0 % somewhere


def test_render_reproduces_the_real_8xH100_capture(nvsmi):
    real = nvsmi("screen-8xH100-80GB-HBM3-idle.txt")
    gpus = [ScreenGpu(g.index, g.name, g.extra["pci_bus_id"], int(g.temp_c), int(g.power_w), 700,
                      int(g.mem_used_bytes // MIB), int(g.mem_total_bytes // MIB), int(g.util_percent))
            for g in parse_screen(real)]
    assert render_screen(gpus, [], driver="565.57.01", cuda="12.7") == real


def test_unknown_profile():
    with pytest.raises(ValueError):
        FakeCollectors("tpu")


def test_cpu_profile_is_cheap():
    f = FakeCollectors("cpu", 0, 0)
    n = 3000
    t0 = time.perf_counter()
    for i in range(n):
        f.sample(T0 + i)
    per_sample = (time.perf_counter() - t0) / n
    assert per_sample < 100e-6, f"{per_sample * 1e6:.1f} µs per sample"


@pytest.mark.parametrize("profile", ["cpu", "gpu8"])
def test_values_come_at_the_precision_a_real_machine_reports(profile):
    from centrality_core.precision import digits

    f = FakeCollectors(profile, 4)
    for t in range(60):
        values, _ = f.sample(T0 + t + 0.37)
        for key, v in values.items():
            d = digits(key)
            assert d is not None, key
            assert round(v * 10 ** d) / 10 ** d == v, (key, v)  # no 15-digit floats such as 43.449740227398465
            assert len(repr(v)) <= 20, (key, v)
        assert values["mem.used_bytes"] % 1024 == 0  # /proc/meminfo counts kB
        if profile == "gpu8":
            assert values["gpu[0].mem_used_bytes"] % MIB == 0
