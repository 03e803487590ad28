"""nvidia-smi parsers on formats reconstructed from public reports (tests/data/nvidia-smi).

Each file there says in SOURCES.md where its format was seen. These cover what
the byte-exact captures do not: drivers 384 to 617, Windows driver models,
MIG, vGPU, broken GPUs and the other CSV queries.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agent_runtime.collectors.gpu import GpuCollector
from agent_runtime.collectors.nvidia import (
    MIB, detect_error, parse_query_csv, parse_screen, parse_xml, readings_to_sample,
)
from agent_runtime.collectors.nvidia_apps import parse_compute_apps

DATA = Path(__file__).resolve().parents[2] / "data" / "nvidia-smi"


def text(name: str) -> str:
    return (DATA / name).read_text()


def test_sources_name_every_file():
    sources = text("SOURCES.md")
    files = sorted(p.name for p in DATA.iterdir() if p.name != "SOURCES.md")
    assert len(files) >= 15
    for name in files:
        assert f"`{name}`" in sources, name


# ------------------------------------------------------------------ item 16: 535 XML power


def test_xml_535_power_at_gpu_power_readings():
    (g,) = parse_xml(text("xml-535-v12-1xRTX4090.xml"))
    assert g.name == "NVIDIA GeForce RTX 4090" and g.driver_version == "535.86.05"
    assert g.power_w == pytest.approx(411.37)  # gpu_power_readings/power_draw
    assert (g.util_percent, g.temp_c) == (100.0, 67.0)
    assert g.mem_used_bytes == 18842 * MIB and g.mem_total_bytes == 24564 * MIB
    assert g.extra["processes"] == "1"


def test_xml_after_a_warning_line():
    body = text("xml-535-v12-1xRTX4090.xml")
    (g,) = parse_xml("WARNING: infoROM is corrupted at gpu 0000:84:00.0\n" + body)
    assert g.power_w == pytest.approx(411.37)


# ------------------------------------------------------------------ item 17: 610+ banner


@pytest.mark.parametrize("fname,driver,cuda,n", [
    ("screen-610-kmd-1xRTX3050-wddm.txt", "617.14", "13.4", 1),
    ("screen-610-kmd-2xL40S-linux.txt", "610.62", "13.3", 2),
])
def test_screen_610_banner(fname, driver, cuda, n):
    gpus = parse_screen(text(fname))
    assert len(gpus) == n
    assert {g.driver_version for g in gpus} == {driver}
    assert {g.extra["cuda_version"] for g in gpus} == {cuda}


def test_screen_610_values():
    a, b = parse_screen(text("screen-610-kmd-2xL40S-linux.txt"))
    assert (a.util_percent, a.temp_c, a.power_w, a.mem_used_bytes) == (98.0, 61.0, 297.0, 40211 * MIB)
    assert (b.util_percent, b.mem_used_bytes, b.mem_total_bytes) == (0.0, 1 * MIB, 46068 * MIB)
    assert a.extra["pci_bus_id"] == "00000000:4A:00.0"


def test_banner_inline_610():
    line = "| NVIDIA-SMI 610.62  KMD Version: 610.62  CUDA UMD Version: 13.3 |\n"
    body = ("|   0  NVIDIA H100 80GB HBM3          On  |   00000000:18:00.0 Off |                    0 |\n"
            "| N/A   30C    P0             70W /  700W |       1MiB /  81559MiB |      0%      Default |\n")
    (g,) = parse_screen(line + body)
    assert g.driver_version == "610.62" and g.extra["cuda_version"] == "13.3"


def test_banner_without_cuda_384():
    (g,) = parse_screen(text("screen-384-nocuda-1xQuadroP4000-inforom.txt"))
    assert g.driver_version == "384.130" and "cuda_version" not in g.extra
    assert (g.name, g.power_w, g.mem_used_bytes, g.util_percent) == ("Quadro P4000", 6.0, 701 * MIB, 0.0)
    assert detect_error(text("screen-384-nocuda-1xQuadroP4000-inforom.txt")) is None


# ------------------------------------------------------------------ item 18: ERR! names


def test_err_gpu_has_no_name_and_no_values():
    ok, lost = parse_screen(text("screen-470-err-gpu-lost-2xV100.txt"))
    assert ok.name == "Tesla V100-SXM2..." and ok.util_percent == 97.0
    assert lost.index == 1 and lost.name == ""
    assert (lost.util_percent, lost.temp_c, lost.power_w) == (None, None, None)
    assert lost.mem_used_bytes == 4105 * MIB  # the one cell it still printed
    assert lost.extra["pci_bus_id"] == "00000000:1B:00.0"


# ------------------------------------------------------------------ item 20: MCDM, TCC, WDDM


@pytest.mark.parametrize("fname,mode,name,util", [
    ("screen-windows-1xRTXA6000-mcdm.txt", "MCDM", "NVIDIA RTX A6000", 41.0),
    ("screen-windows-1xTeslaP4-tcc.txt", "TCC", "Tesla P4", 0.0),
    ("screen-610-kmd-1xRTX3050-wddm.txt", "WDDM", "NVIDIA GeForce RTX 3050 ...", 27.0),
])
def test_windows_driver_models(fname, mode, name, util):
    (g,) = parse_screen(text(fname))
    assert g.extra["persistence_mode"] == mode and g.name == name and g.util_percent == util


# ------------------------------------------------------------------ MIG and vGPU screens


def test_mig_screen_lists_the_gpu_not_its_instances():
    (g,) = parse_screen(text("screen-470-mig-1xA100.txt"))
    assert g.name == "NVIDIA A100-PCI..." and g.util_percent is None  # N/A with MIG on
    assert g.mem_used_bytes == 24205 * MIB and g.power_w == 81.0


def test_vgpu_screen_sensors_absent():
    (g,) = parse_screen(text("screen-grid-vgpu-1xT4-16Q.txt"))
    assert g.name == "GRID T4-16Q"
    assert (g.temp_c, g.power_w, g.util_percent) == (None, None, 0.0)
    assert g.mem_total_bytes == 16384 * MIB


# ------------------------------------------------------------------ item 19: CSV detection


@pytest.mark.parametrize("fname", [
    "csv-compute-apps-timestamp-2xA100.csv", "csv-compute-apps-noheader-nounits.csv",
    "csv-compute-apps-header-none.csv",
])
def test_compute_apps_output_is_no_gpu_table(fname):
    assert parse_query_csv(text(fname)) == []


def test_l1_log_of_one_gpu_is_one_gpu_latest_sample():
    (g,) = parse_query_csv(text("csv-query-gpu-log-l1-1xT4-noindex.csv"))
    assert g.index == 0 and g.name == "Tesla T4"
    assert (g.util_percent, g.temp_c, g.mem_used_bytes) == (99.0, 46.0, 6756 * MIB)  # the last sample
    assert g.driver_version == "535.104.05"


def test_l1_log_without_any_id_uses_the_last_timestamp_group():
    a, b = parse_query_csv(text("csv-query-gpu-log-l1-timestamp-only.csv"))
    assert (a.index, a.util_percent, a.mem_used_bytes) == (0, 88.0, 20100 * MIB)
    assert (b.index, b.util_percent) == (1, 0.0)


def test_log_with_index_keeps_latest_per_gpu_and_repeated_headers_skipped():
    t = ("index, utilization.gpu [%], memory.used [MiB]\n0, 10 %, 5 MiB\n1, 20 %, 6 MiB\n"
         "index, utilization.gpu [%], memory.used [MiB]\n0, 30 %, 7 MiB\n1, 40 %, 8 MiB\n")
    a, b = parse_query_csv(t)
    assert (a.index, a.util_percent, b.index, b.util_percent) == (0, 30.0, 1, 40.0)


def test_uuid_keyed_log():
    t = ("name, uuid, utilization.gpu [%]\nA, GPU-1, 1 %\nA, GPU-2, 2 %\nA, GPU-1, 3 %\nA, GPU-2, 4 %\n")
    a, b = parse_query_csv(t)
    assert (a.index, a.uuid, a.util_percent) == (0, "GPU-1", 3.0)
    assert (b.index, b.uuid, b.util_percent) == (1, "GPU-2", 4.0)


def test_out_of_range_values_are_none():
    t = "index, utilization.gpu [%], power.draw [W], memory.used [MiB]\n0, 250 %, -3 W, -1 MiB\n"
    (g,) = parse_query_csv(t)
    assert (g.util_percent, g.power_w, g.mem_used_bytes) == (None, None, None)


# ------------------------------------------------------------------ item 20: exit 14 probe


def test_probe_accepts_an_answer_with_exit_14(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    answer = text("probe-driver-version-inforom-exit14.txt")
    query = "0, Tesla T4, GPU-1, 0, 3, 15360, 38, 27.5\n"

    def run(argv, timeout):
        return (14, answer) if "--query-gpu=driver_version" in argv else (14, query)

    g = GpuCollector(which=lambda n: "/usr/bin/nvidia-smi", runner=run)
    s = g.sample(0.0)
    assert g.backend == "nvidia-smi" and g.driver_version == "535.183.01"
    assert s["gpu[0].power_w"] == 27.5


def test_probe_still_fails_without_an_answer(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    g = GpuCollector(which=lambda n: "/usr/bin/nvidia-smi",
                     runner=lambda argv, t: (9, "NVIDIA-SMI has failed because it couldn't communicate with "
                                                "the NVIDIA driver.\n"))
    assert g.sample(0.0) == {} and g.backend == "none" and "driver" in g.reason


# ------------------------------------------------------------------ robustness


def _mutations(t: str):
    yield t[: len(t) // 2]
    yield t.replace("MiB", "")
    yield t.replace("|", "")
    yield t.replace(",", "")
    yield t.replace("\n", "\r\n")
    yield t.replace("0", "\x1b[31m")
    yield t.upper()
    yield "\n".join(line[::-1] for line in t.splitlines())


@pytest.mark.parametrize("fname", sorted(p.name for p in DATA.iterdir() if p.name != "SOURCES.md"))
def test_no_parser_crashes_on_mutated_input(fname):
    for t in _mutations(text(fname)):
        for parse in (parse_screen, parse_xml, parse_query_csv):
            gpus = parse(t)
            for k, v in readings_to_sample(gpus).items():
                assert v >= 0, (fname, k)
        detect_error(t)
        for row in parse_compute_apps(t):
            assert row.pid >= 0 and (row.used_memory_bytes is None or row.used_memory_bytes >= 0)


def test_no_parser_crashes_on_random_text():
    import random

    rng = random.Random(15)
    pieces = ["|", ",", " ", "\n", "MiB", "W", "C", "%", "[N/A]", "ERR!", "0", "12", "3.5", "GPU-", "<gpu>",
              "</gpu>", "<nvidia_smi_log>", "index", "pid", "memory.used [MiB]", "00000000:1A:00.0", "\x1b[2J",
              "\x00", "é", "N/A"]
    pieces = [x.encode().decode("unicode_escape") for x in pieces]
    for _ in range(2000):
        t = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 80)))
        for parse in (parse_screen, parse_xml, parse_query_csv, parse_compute_apps):
            parse(t)
        detect_error(t)


# ------------------------------------------------------------------ unified memory, oldest, containers


def test_gb10_unified_memory_screen_and_csv():
    (g,) = parse_screen(text("screen-580-gb10-unified-memory.txt"))
    assert g.name == "NVIDIA GB10" and g.extra["pci_bus_id"] == "0000000F:01:00.0"
    assert (g.mem_used_bytes, g.mem_total_bytes) == (None, None)  # "Not Supported"
    assert (g.temp_c, g.power_w, g.util_percent) == (36.0, 3.0, 0.0)
    (c,) = parse_query_csv(text("csv-query-gpu-gb10-na-memory.csv"))
    assert (c.mem_used_bytes, c.mem_total_bytes, c.util_percent, c.power_w, c.temp_c) == (None, None, 0.0, 11.17, 35.0)
    assert "gpu[0].mem_util_percent" not in readings_to_sample([c])


def test_oldest_windows_screen_369():
    (g,) = parse_screen(text("screen-369-windows-wddm-840M.txt"))
    assert (g.name, g.extra["persistence_mode"], g.driver_version) == ("GeForce 840M", "WDDM", "369.30")
    assert g.extra["pci_bus_id"] == "0000:03:00.0" and g.power_w is None and g.mem_total_bytes == 2048 * MIB


def test_container_banner_does_not_give_the_cuda_version():
    (g,) = parse_screen(text("screen-525-container-ngc-banner.txt"))
    assert g.driver_version == "525.85.12" and g.extra["cuda_version"] == "12.0"  # not the image's 11.4.0
    assert detect_error(text("screen-525-container-ngc-banner.txt")) is None
