"""The control plane's compact latest values, shared key lists, and the process
settings of long-running processes (garbage collector, C allocator)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

import numpy as np

from centrality_core import runtime
from control_plane import ingest as m
from control_plane.store import Store
from control_plane.writer import StoreWriter


def test_latest_values_skip_missing_and_summary_follows_new_values():
    latest = m.Latest()
    assert latest.values == {} and latest.summary.cpu_percent is None
    latest.set(10.0, ["cpu.percent", "mem.percent"], np.array([25.0, np.nan]))
    assert latest.values == {"cpu.percent": 25.0}  # NaN: no value
    assert latest.summary.cpu_percent == 25.0
    latest.set(11.0, ["cpu.percent", "mem.percent"], np.array([75.0, 40.0]))
    assert latest.summary.cpu_percent == 75.0 and latest.summary.mem_percent == 40.0


def test_machines_of_one_shape_share_one_key_list(monkeypatch, tmp_path):
    metrics = m.Ingest(StoreWriter(Store(f"sqlite:///{tmp_path}/s.db")), on_sample=lambda name: None,
                       record_event=lambda event: None, max_keys_per_batch=4096, max_keys_per_machine=8192)
    a = metrics.shared_keys("m1", ["cpu.percent", "mem.percent"])
    b = metrics.shared_keys("m2", ["cpu.percent", "mem.percent"])  # equal, separately decoded
    assert a is b
    assert metrics.shared_keys("m1", list(a)) is a  # the next batch of m1
    c = metrics.shared_keys("m1", ["cpu.percent"])  # its keys changed
    assert c == ["cpu.percent"] and metrics.shared_keys("m2", list(a)) is a
    monkeypatch.setattr(m, "MAX_SHARED_KEYS", 3)  # past the bound: correct, just not shared
    d = metrics.shared_keys("m3", ["x", "y"])
    assert d == ["x", "y"] and metrics.shared_keys("m4", ["x", "y"]) is not d


def test_tune_gc_raises_the_threshold_and_freezes_start_up_objects():
    code = ("import gc, json\nfrom centrality_core.runtime import tune_gc\ntune_gc()\n"
            "print(json.dumps([gc.get_threshold(), gc.get_freeze_count() > 0]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    threshold, frozen = json.loads(out)
    assert threshold[0] == runtime.GC_YOUNG_THRESHOLD and frozen


_FAULTS = """
import json, resource, sys
import numpy as np
from centrality_core import runtime
applied = runtime.tune_malloc() if sys.argv[1] == "tuned" else False
faults = []
for _ in range(4):  # what a compaction does: a few large temporaries, freed together
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    arrays = [np.ones(2 ** 20) for _ in range(6)]  # 6 x 8 MiB
    del arrays
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps([applied, faults]))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc malloc")
def test_tune_malloc_keeps_large_temporaries_in_the_heap():
    """Tuned, the second and later rounds of large arrays reuse memory (no page faults);
    by default the next rounds fault their pages in again (until glibc's own threshold
    has grown)."""
    def run(mode: str, **env) -> tuple[bool, list[int]]:
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True,
                             env={**os.environ, **env}).stdout
        return json.loads(out)

    applied, tuned = run("tuned")
    if not applied:
        pytest.skip("not glibc")
    _, default = run("default")
    assert max(default[1:]) > 1000, default
    assert max(tuned[1:]) < 100, tuned
    assert run("tuned", MALLOC_TRIM_THRESHOLD_="131072")[0] is False  # an explicit setting wins


_RELEASE = """
import json, sys
import numpy as np
from centrality_core import runtime

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

applied = runtime.tune_malloc()
keep = [np.ones(2 ** 17) for _ in range(400)]  # 400 x 1 MiB from the heap (under MMAP_THRESHOLD)
del keep[::2]  # every other one freed: holes amid the heap, nothing at its top to trim
full = rss()
released = runtime.release_free_memory()
print(json.dumps([applied, released, full, rss()]))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc malloc")
def test_free_memory_amid_the_heap_is_given_back_after_a_pass():
    out = subprocess.run([sys.executable, "-c", _RELEASE], capture_output=True, text=True, check=True).stdout
    applied, released, full, after = json.loads(out)
    if not applied:
        pytest.skip("not glibc")
    assert released
    assert full - after > 150 * 2 ** 20, (full, after)  # most of the 200 MiB freed went back


def test_release_free_memory_does_nothing_untuned():
    code = "from centrality_core import runtime\nprint(runtime.release_free_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_long_collections_are_logged(monkeypatch, caplog):
    clock = iter([100.0, 100.1, 200.0, 201.5])
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: next(clock))
    with caplog.at_level(logging.WARNING, logger="centrality.runtime"):
        for _ in range(2):
            runtime._time_collections("start", {"generation": 2})
            runtime._time_collections("stop", {"generation": 2, "collected": 12})
    (record,) = caplog.records  # 0.1 s is not worth a line; 1.5 s is
    assert "paused the process for 1.50s" in record.getMessage()
