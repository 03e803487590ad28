"""The machine screen's GPU section: per-GPU bars, MIG instances under their GPU,
the process table sorted by GPU memory (s changes the order), hostile names."""

from __future__ import annotations

from centrality_core import protocol as p
from tui.widgets.gpu_panel import bar, panel_content

from .conftest import machine_ready, make_app, ready, scenario, screen_text, until

GIB = 1 << 30


def mig_snapshot(ts: float) -> p.GpuProcesses:
    return p.GpuProcesses(ts=ts, source="nvml", omitted=2, processes=[
        p.GpuProcess(gpu=0, pid=48213, user="alice", command="python -m torch.distributed.run train.py",
                     used_memory_bytes=70 * GIB, sm_percent=97.0, mem_percent=41.0),
        p.GpuProcess(gpu=1, pid=5151, user="\x1b[31mbob\x1b[0m", gi=3, ci=0,
                     command="\x1b]0;pwned\x07\x1b[2Jjupyter-kernel --evil", used_memory_bytes=14 * GIB,
                     sm_percent=0.0),
        p.GpuProcess(gpu=1, pid=6262, user="chen", gi=5, ci=0, command="python serve.py",
                     used_memory_bytes=30 * GIB, sm_percent=55.0),
        p.GpuProcess(gpu=0, pid=2210, type="G", user="root", command="/usr/lib/xorg/Xorg :0"),
    ], mig=[
        p.MigInstance(gpu=1, gi=3, ci=0, profile="3g.40gb", mem_used_bytes=14 * GIB, mem_total_bytes=39 * GIB),
        p.MigInstance(gpu=1, gi=5, ci=0, profile="3g.40gb", mem_used_bytes=30 * GIB, mem_total_bytes=39 * GIB),
    ])


def mig_source():
    src = scenario()
    src.machines["gpu-01"].collectors.processes_at = mig_snapshot
    return src


def test_bar_eighths_and_bounds():
    assert bar(0) == ("", "░" * 20) and bar(100) == ("█" * 20, "")
    assert bar(50, 4) == ("██", "░░") and bar(53, 4)[0] == "██▏"
    assert bar(None, 3) == ("", "···") and bar(250, 2) == ("██", "") and bar(-5, 2) == ("", "░░")


def test_panel_content_without_gpus_is_none():
    assert panel_content({"cpu.percent": 3.0}, [], None) is None


def test_panel_lines():
    values = {"gpu[0].util_percent": 97.0, "gpu[0].mem_used_bytes": 70.0 * GIB, "gpu[0].mem_total_bytes": 80.0 * GIB,
              "gpu[0].temp_c": 61.0, "gpu[0].power_w": 655.0, "gpu[1].mem_used_bytes": 44.0 * GIB}
    inv = [{"index": 0, "name": "NVIDIA A100\x1b[2J-SXM4-80GB"}, {"index": 1, "name": "NVIDIA A100-SXM4-80GB"}]
    text = panel_content(values, inv, mig_snapshot(0.0)).plain
    lines = text.splitlines()
    assert lines[0].startswith("GPU 0  NVIDIA A100-SXM4-80GB") and "97%" in lines[0] and "70.0/80.0 GiB" in lines[0]
    assert "61°C" in lines[0] and "655 W" in lines[0] and "2 proc" in lines[0]
    assert lines[1].startswith("GPU 1") and "  -%" in lines[1] and "44.0/- GiB" in lines[1]
    assert "└ MIG 3g.40gb GI 3 CI 0" in lines[2] and "14.0/39.0 GiB" in lines[2]
    assert "└ MIG 3g.40gb GI 5 CI 0" in lines[3]
    assert "\x1b" not in text


async def test_machine_screen_gpu_section_sorted_by_memory():
    app = make_app(mig_source())
    async with app.run_test(size=(150, 60)) as pilot:
        await ready(pilot)
        app.open_machine("gpu-01")
        await machine_ready(pilot, "gpu-01")
        await until(pilot, lambda: "48213" in screen_text(app), what="the process table")
        text = screen_text(app)
        assert "GPUs   processes by GPU memory" in text and "+2 smaller processes not sent" in text
        for i in range(8):
            assert f"GPU {i}  NVIDIA H100 80GB HBM3" in text
        assert "└ MIG 3g.40gb GI 3 CI 0" in text
        assert text.index("└ MIG 3g.40gb GI 3") > text.index("GPU 1  ") and text.index("└ MIG") < text.index("GPU 2  ")
        pids = [pid for pid in ("48213", "6262", "5151", "2210") if pid in text]
        order = sorted(pids, key=text.index)
        assert order == ["48213", "6262", "5151", "2210"]  # GPU memory, largest first; N/A last
        assert "jupyter-kernel --evil" in text and "bob" in text and "\x1b" not in text and "pwned" not in text
        await pilot.press("s")
        await pilot.pause()
        text = screen_text(app)
        assert "processes by GPU (" in text
        assert sorted(["48213", "6262", "5151", "2210"], key=text.index) == ["48213", "2210", "6262", "5151"]
        await pilot.press("s")
        await pilot.pause()
        text = screen_text(app)
        assert sorted(["48213", "6262", "5151"], key=text.index) == ["48213", "6262", "5151"]  # SM %


async def test_cpu_machine_has_no_gpu_section():
    app = make_app()
    async with app.run_test(size=(150, 44)) as pilot:
        await ready(pilot)
        app.open_machine("cpu-01")
        await machine_ready(pilot, "cpu-01")
        assert "processes by GPU memory" not in screen_text(app) and "GPU 0 " not in screen_text(app)
