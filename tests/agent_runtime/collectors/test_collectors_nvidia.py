"""nvidia-smi parsers against real captures (read from the shared data folder)."""

from __future__ import annotations

import pytest

from agent_runtime.collectors.nvidia import (
    MIB, QUERY_FIELDS, detect_error, parse_query_csv, parse_screen, parse_xml, readings_to_info,
    readings_to_sample,
)

# ------------------------------------------------------------------ CSV


def test_csv_noheader_2xT4_with_its_columns(nvsmi):
    fields = ("index", "name", "uuid", "driver_version", "memory.total", "compute_cap")
    gpus = parse_query_csv(nvsmi("csv-noheader-2xT4.csv"), fields)
    assert [g.index for g in gpus] == [0, 1]
    assert {g.name for g in gpus} == {"Tesla T4"}
    assert gpus[1].uuid == "GPU-533780c7-1d41-f192-5cb0-cea715cf5703"
    assert gpus[0].mem_total_bytes == 15360 * MIB  # "15360 MiB": units kept in the values
    assert gpus[0].driver_version == "580.159.04"
    assert gpus[0].extra["compute_cap"] == "7.5"
    assert gpus[0].util_percent is None


def test_csv_with_wrong_columns_gives_nothing_not_garbage(nvsmi):
    # 6 values per row against the 8 default fields: rows are skipped, nothing crashes
    assert parse_query_csv(nvsmi("csv-noheader-2xT4.csv")) == []


def test_csv_nounits_with_header_P100(nvsmi):
    (g,) = parse_query_csv(nvsmi("csv-nounits-1xTeslaP100.csv"))  # header names the columns
    assert g.index == 0  # no index column: row number
    assert g.name == "Tesla P100-PCIE-16GB"
    assert g.uuid == "GPU-ef1b2c9b-38d8-2090-2bd1-f567a3eb42a6"
    assert g.util_percent == 0.0
    assert g.mem_used_bytes == 0.0
    assert g.temp_c == 37.0
    assert g.power_w == pytest.approx(28.16)
    assert g.extra["memory.free"] == "16280"
    assert "fan.speed" not in g.extra  # [N/A] is skipped
    assert g.mem_total_bytes is None  # not queried


def test_csv_all_fields_H100_MIG(nvsmi):
    (g,) = parse_query_csv(nvsmi("csv-query-gpu-allfields-1xH100-MIG.csv"))
    assert len(g.extra) > 100
    assert g.name == "NVIDIA H100 80GB HBM3"
    assert g.driver_version == "590.48.01"
    assert g.util_percent is None  # "[N/A]" with MIG enabled
    assert g.mem_used_bytes == 11125 * MIB and g.mem_total_bytes == 81559 * MIB
    assert g.temp_c == 53.0
    assert g.power_w == pytest.approx(433.78)
    assert g.extra["mig.mode.current"] == "Enabled"
    assert "display_mode" not in g.extra  # "[Requested functionality has been deprecated]"
    s = readings_to_sample([g])
    assert "gpu[0].util_percent" not in s
    assert s["gpu[0].mem_util_percent"] == pytest.approx(100 * 11125 / 81559)
    assert s["gpu[0].power_w"] == pytest.approx(433.78)


def test_csv_default_query_nounits_and_not_supported():
    # the shape of `nvidia-smi --query-gpu=<QUERY_FIELDS> --format=csv,noheader,nounits`
    text = ("0, NVIDIA H100 80GB HBM3, GPU-aaaaaaaa-0000-0000-0000-000000000000, 97, 71234, 81559, 61, 655.12\n"
            "1, NVIDIA H100 80GB HBM3, GPU-aaaaaaaa-0000-0000-0000-000000000001, [N/A], 71000, 81559, 60, "
            "[Not Supported]\n")
    a, b = parse_query_csv(text)
    assert (a.util_percent, a.mem_used_bytes, a.temp_c, a.power_w) == (97.0, 71234 * MIB, 61.0, 655.12)
    assert b.index == 1 and b.util_percent is None and b.power_w is None
    s = readings_to_sample([a, b])
    assert set(s) == {f"gpu[0].{f}" for f in ("util_percent", "mem_used_bytes", "mem_total_bytes",
                                              "mem_util_percent", "temp_c", "power_w")} | {
        "gpu[1].mem_used_bytes", "gpu[1].mem_total_bytes", "gpu[1].mem_util_percent", "gpu[1].temp_c"}
    assert len(QUERY_FIELDS) == 8


def test_csv_default_query_with_header_and_units():
    text = ("index, name, uuid, utilization.gpu [%], memory.used [MiB], memory.total [MiB], temperature.gpu, "
            "power.draw [W]\n"
            "0, NVIDIA A100-SXM4-80GB, GPU-x, 42 %, 2048 MiB, 81920 MiB, 51, 250.50 W\n")
    (g,) = parse_query_csv(text)
    assert (g.util_percent, g.mem_used_bytes, g.mem_total_bytes, g.temp_c, g.power_w) == (
        42.0, 2048 * MIB, 81920 * MIB, 51.0, 250.5)


def test_csv_garbage():
    assert parse_query_csv("") == []
    assert parse_query_csv("\n\n") == []
    assert parse_query_csv("hello, world") == []


# ------------------------------------------------------------------ XML


def test_xml_T4(nvsmi):
    (g,) = parse_xml(nvsmi("xml-1xT4.xml"))
    assert g.index == 0
    assert g.name == "Tesla T4"
    assert g.uuid == "GPU-d37e67a5-91dd-3774-a5cb-99096249601a"
    assert g.mem_total_bytes == 15360 * MIB and g.mem_used_bytes == 1032 * MIB
    assert g.util_percent == 0.0 and g.temp_c == 40.0
    assert g.power_w == pytest.approx(26.78)
    assert g.driver_version == "515.105.01"
    assert g.extra["pci_bus_id"] == "00000000:00:1E.0"
    assert g.extra["processes"] == "2"  # Xorg and python
    assert readings_to_info([g]) == [
        {"index": 0, "name": "Tesla T4", "uuid": "GPU-d37e67a5-91dd-3774-a5cb-99096249601a",
         "memory_total_bytes": 15360 * MIB}]


def test_xml_RTX3090_v12(nvsmi):
    (g,) = parse_xml(nvsmi("xml-1xRTX3090-v12.xml"))
    assert g.name == "NVIDIA GeForce RTX 3090"
    assert g.mem_total_bytes == 24576 * MIB and g.mem_used_bytes == 1 * MIB
    assert g.temp_c == 37.0 and g.power_w == pytest.approx(27.23)
    assert g.driver_version == "525.147.05"


def test_xml_2xA5000_v13(nvsmi):
    a, b = parse_xml(nvsmi("xml-2xRTXA5000-processes-v13.xml"))
    assert (a.index, b.index) == (0, 1)
    assert a.name == b.name == "NVIDIA RTX A5000"
    assert (a.mem_used_bytes, b.mem_used_bytes) == (22437 * MIB, 17253 * MIB)
    assert a.mem_total_bytes == 24564 * MIB
    assert (a.temp_c, b.temp_c) == (13.0, 15.0)
    assert a.power_w == pytest.approx(6.41) and b.power_w == pytest.approx(13.60)  # v13: average draw
    assert (a.extra["minor_number"], b.extra["minor_number"]) == ("1", "0")  # differs from index
    assert a.driver_version == "590.44.01" and a.extra["cuda_version"] == "13.1"
    assert a.uuid.endswith("89ab") and b.uuid.endswith("89cd")


def test_xml_garbage():
    assert parse_xml("") == []
    assert parse_xml("<html><body>nope</body></html>") == []
    assert parse_xml("<nvidia_smi_log><gpu") == []


# ------------------------------------------------------------------ screen

SCREENS = [
    # file, count, name, MiB total, driver
    ("screen-1xL40S-processes.txt", 1, "NVIDIA L40S", 46068, "595.80"),
    ("screen-2xT4-idle.txt", 2, "Tesla T4", 15360, "580.159.04"),
    ("screen-4xA100-SXM4-80GB-idle.txt", 4, "NVIDIA A100-SXM4-80GB", 81920, "555.42.02"),
    ("screen-8xH100-80GB-HBM3-idle.txt", 8, "NVIDIA H100 80GB HBM3", 81559, "565.57.01"),
    ("screen-8xRTX4090-idle.txt", 8, "NVIDIA GeForce RTX 4090", 24564, "550.127.05"),
]


@pytest.mark.parametrize("fname,count,name,total_mib,driver", SCREENS)
def test_screen_counts_and_names(nvsmi, fname, count, name, total_mib, driver):
    gpus = parse_screen(nvsmi(fname))
    assert [g.index for g in gpus] == list(range(count))
    assert {g.name for g in gpus} == {name}
    assert {g.mem_total_bytes for g in gpus} == {total_mib * MIB}
    assert {g.driver_version for g in gpus} == {driver}
    assert all(g.util_percent is not None and g.temp_c is not None for g in gpus)


def test_screen_8xH100_values(nvsmi):
    gpus = parse_screen(nvsmi("screen-8xH100-80GB-HBM3-idle.txt"))
    assert [g.power_w for g in gpus] == [100, 82, 85, 85, 84, 85, 86, 75]
    assert [g.temp_c for g in gpus] == [30, 30, 31, 30, 28, 30, 29, 29]
    assert {g.mem_used_bytes for g in gpus} == {1 * MIB}
    assert {g.util_percent for g in gpus} == {0.0}
    assert gpus[7].extra["pci_bus_id"] == "00000000:DB:00.0"


def test_screen_L40S_with_processes(nvsmi):
    (g,) = parse_screen(nvsmi("screen-1xL40S-processes.txt"))  # process rows are not GPUs
    assert (g.mem_used_bytes, g.util_percent, g.temp_c, g.power_w) == (1235 * MIB, 9.0, 54.0, 110.0)
    assert g.extra["cuda_version"] == "13.2"


def test_screen_old_narrow_layout_and_na_values():
    # the pre-530 driver layout, one GPU with ERR!/N/A cells
    text = """\
+-----------------------------------------------------------------------------+
| NVIDIA-SMI 470.82.01    Driver Version: 470.82.01    CUDA Version: 11.4     |
|-------------------------------+----------------------+----------------------+
| GPU  Name        Persistence-M| Bus-Id        Disp.A | Volatile Uncorr. ECC |
|===============================+======================+======================|
|   0  Tesla V100-SXM2...  On   | 00000000:00:1E.0 Off |                    0 |
| N/A   34C    P0    57W / 300W |  16130MiB / 16160MiB |     87%      Default |
+-------------------------------+----------------------+----------------------+
|   1  Tesla V100-SXM2...  On   | 00000000:00:1F.0 Off |                  ERR! |
|ERR!  ERR!  ERR!   ERR! / ERR! |  16130MiB / 16160MiB |    N/A      Default |
+-------------------------------+----------------------+----------------------+
"""
    a, b = parse_screen(text)
    assert a.name == "Tesla V100-SXM2..." and a.util_percent == 87.0 and a.power_w == 57.0
    assert a.mem_used_bytes == 16130 * MIB and a.driver_version == "470.82.01"
    assert b.util_percent is None and b.temp_c is None and b.power_w is None
    assert b.mem_total_bytes == 16160 * MIB


# ------------------------------------------------------------------ errors


def test_error_driver_not_loaded(nvsmi):
    text = nvsmi("error-couldnt-communicate-with-driver.txt")
    reason = detect_error(text)
    assert reason is not None and "driver" in reason.lower() and "communicate" in reason
    assert parse_screen(text) == [] and parse_query_csv(text) == [] and parse_xml(text) == []


def test_error_no_devices(nvsmi):
    text = nvsmi("error-no-devices-found.txt")
    reason = detect_error(text)
    assert reason is not None and "no NVIDIA GPU" in reason
    assert parse_screen(text) == [] and parse_query_csv(text) == [] and parse_xml(text) == []


@pytest.mark.parametrize("text", [
    "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 535.161\n",
    "Unable to determine the device handle for GPU0000:3B:00.0: Unknown Error\n",
    "Failed to initialize NVML: Unknown Error\n",
    "NVIDIA-SMI couldn't find libnvidia-ml.so library in your system. Please make sure that the NVIDIA "
    "Display Driver is properly installed and present in your system.\n",
])
def test_other_errors_recognised(text):
    assert detect_error(text)


def test_every_capture_is_handled(nvsmi_dir):
    """Each file of the shared folder parses to GPUs, or is recognised as an error."""
    files = sorted(p for p in nvsmi_dir.iterdir() if p.suffix in (".csv", ".txt", ".xml"))
    assert len(files) >= 10
    for p in files:
        text = p.read_text()
        if p.name.startswith("error-"):
            assert detect_error(text), p.name
            continue
        assert detect_error(text) is None, p.name
        if p.name.startswith("screen-"):
            gpus = parse_screen(text)
        elif p.name.startswith("xml-"):
            gpus = parse_xml(text)
        elif p.name == "csv-noheader-2xT4.csv":
            gpus = parse_query_csv(text, ("index", "name", "uuid", "driver_version", "memory.total", "compute_cap"))
        else:
            gpus = parse_query_csv(text)
        assert gpus and all(g.name for g in gpus), p.name
        for key, value in readings_to_sample(gpus).items():
            assert value >= 0, (p.name, key)
