"""From Centrality's metric keys to Prometheus names and labels (pure, no I/O).

An agent's keys look like ``gpu[3].util_percent`` (see
``centrality_core/summary.py``). Each known (stream, field) becomes one metric
family with its unit in the name, and the instance between brackets becomes
the family's one label (``gpu``, ``device``, ``mount``, ``interface``; ``core``
for the per-core CPU, off by default). A key the exporter does not know is
not exported (it is counted): an agent chooses its keys, and a name without a
known unit is what this exporter exists to avoid.

Everything an agent chooses is untrusted: instance names and label values are
stripped of escape and control characters, of what UTF-8 cannot encode, and
cut to ``MAX_VALUE`` characters (prometheus_client escapes ``\\``, ``"`` and
newlines itself); machine label names become ``label_<name>`` with every
character outside ``[a-zA-Z0-9_]`` replaced by ``_`` (the kube-state-metrics
convention, which cannot collide with ``machine``, ``gpu``, ``job`` or
``instance``).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from centrality_core.sanitize import one_line
from centrality_core.summary import split_key

#: Longest label value exported; longer ones are cut (and marked with "…").
MAX_VALUE = 128
#: At most this many of a machine's labels are put on each of its series (all
#: of them are on ``centrality_machine_labels``).
MAX_SERIES_LABELS = 8
#: At most this many series are exported per machine (a protocol-valid agent
#: may send 4,096 keys).
MAX_SERIES_PER_MACHINE = 2048


class Family(NamedTuple):
    name: str
    help: str
    instance: str | None  # the label the key's [instance] goes to, None for machine-wide keys


#: (stream, has an instance, field) -> the family it is exported as.
FAMILIES: dict[tuple[str, bool, str], Family] = {
    ("cpu", False, "percent"): Family("centrality_cpu_utilization_percent",
                                      "CPU busy, all cores, 0-100.", None),
    ("cpu", True, "percent"): Family("centrality_cpu_core_utilization_percent",
                                     "CPU busy per core, 0-100 (only with --per-core).", "core"),
    ("mem", False, "used_bytes"): Family("centrality_memory_used_bytes", "Memory used (total - available).", None),
    ("mem", False, "total_bytes"): Family("centrality_memory_total_bytes", "Memory installed.", None),
    ("mem", False, "percent"): Family("centrality_memory_used_percent", "Memory used, 0-100.", None),
    ("fs", True, "used_bytes"): Family("centrality_filesystem_used_bytes", "Filesystem space used.", "mount"),
    ("fs", True, "total_bytes"): Family("centrality_filesystem_size_bytes", "Filesystem size.", "mount"),
    ("fs", True, "percent"): Family("centrality_filesystem_used_percent",
                                    "Filesystem space used as df shows it: used / (used + available), 0-100.",
                                    "mount"),
    ("disk", True, "read_iops"): Family("centrality_disk_reads_per_second", "Disk reads completed per second.",
                                        "device"),
    ("disk", True, "write_iops"): Family("centrality_disk_writes_per_second", "Disk writes completed per second.",
                                         "device"),
    ("disk", True, "read_bytes_per_s"): Family("centrality_disk_read_bytes_per_second",
                                               "Bytes read from the disk per second.", "device"),
    ("disk", True, "write_bytes_per_s"): Family("centrality_disk_written_bytes_per_second",
                                                "Bytes written to the disk per second.", "device"),
    ("net", True, "recv_bytes_per_s"): Family("centrality_network_receive_bytes_per_second",
                                              "Bytes received per second.", "interface"),
    ("net", True, "sent_bytes_per_s"): Family("centrality_network_transmit_bytes_per_second",
                                              "Bytes sent per second.", "interface"),
    ("gpu", True, "util_percent"): Family("centrality_gpu_utilization_percent",
                                          "GPU busy (NVML utilization.gpu), 0-100.", "gpu"),
    ("gpu", True, "mem_used_bytes"): Family("centrality_gpu_memory_used_bytes", "GPU framebuffer memory used.",
                                            "gpu"),
    ("gpu", True, "mem_total_bytes"): Family("centrality_gpu_memory_total_bytes", "GPU framebuffer memory.", "gpu"),
    ("gpu", True, "mem_util_percent"): Family("centrality_gpu_memory_used_percent",
                                              "GPU framebuffer memory used / total, 0-100.", "gpu"),
    ("gpu", True, "temp_c"): Family("centrality_gpu_temperature_celsius", "GPU core temperature.", "gpu"),
    ("gpu", True, "power_w"): Family("centrality_gpu_power_watts", "GPU power draw.", "gpu"),
}
FAMILY_LIST: tuple[Family, ...] = tuple(FAMILIES.values())
_INDEX = {k: i for i, k in enumerate(FAMILIES)}
PER_CORE = _INDEX[("cpu", True, "percent")]


class Series(NamedTuple):
    family: int  # index in FAMILY_LIST
    instance: str | None  # the sanitised instance label value
    key: int  # index of the key in the machine's key list


class Plan(NamedTuple):
    """What to export of a machine whose sample has these keys."""

    series: tuple[Series, ...]
    unknown: int  # keys of no known family
    skipped: int  # keys dropped: duplicates after sanitising, over the bound, per-core when off
    keys: int  # length of the key list (a sample's values must have as many)


def plan(keys: list[str], *, per_core: bool = False, limit: int = MAX_SERIES_PER_MACHINE) -> Plan:
    """The series of a key list (computed once per distinct key list, not per scrape)."""
    out: list[Series] = []
    seen: set[tuple[int, str | None]] = set()
    unknown = skipped = 0
    for i, key in enumerate(keys):
        stream, instance, field = split_key(key) if isinstance(key, str) else ("", "", "")
        fam = _INDEX.get((stream, bool(instance), field))
        if fam is None:
            unknown += 1
            continue
        if fam == PER_CORE and not per_core:
            skipped += 1
            continue
        inst = label_value(instance) if instance else None
        if (fam, inst) in seen or len(out) >= limit:
            skipped += 1
            continue
        seen.add((fam, inst))
        out.append(Series(fam, inst, i))
    return Plan(tuple(out), unknown, skipped, len(keys))


def label_value(text: str, limit: int = MAX_VALUE) -> str:
    """An agent-chosen string made safe as a label value (one line, printable, valid UTF-8)."""
    if not isinstance(text, str):
        text = str(text)
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates cannot be encoded
    return one_line(text, limit)


_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]")


def label_name(name: str) -> str:
    """``label_`` + the machine label's name with invalid characters replaced by ``_``."""
    return "label_" + _NOT_NAME.sub("_", str(name)[:63])


def machine_labels(labels: dict) -> dict[str, str]:
    """A machine's labels as Prometheus labels, sorted by name; on a clash after
    sanitising (``a.b`` and ``a-b``), the first in sorted order wins."""
    out: dict[str, str] = {}
    for name in sorted(labels, key=str):
        value = labels[name]
        key = label_name(name)
        if key not in out:
            out[key] = label_value("" if value is None else value)
    return out
