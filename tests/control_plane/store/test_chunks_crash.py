"""kill -9 in the middle of a compaction: nothing lost, nothing twice (SQLite and Postgres)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from control_plane import history
from control_plane.store import Store
from control_plane.store.chunks import Chunks
from tests.control_plane.store.test_chunks import T0, count, query, fill

REPO = Path(__file__).resolve().parents[3]
MACHINES = [f"m{i:02d}" for i in range(12)]
NOW = T0 + 600 + 3600

COMPACTOR = textwrap.dedent("""
    import sys, time
    from control_plane.store import Store
    from control_plane.store.chunks import Chunks
    chunks = Chunks(Store(sys.argv[1]))
    def inserted(tier, machine):
        print("inserted", machine, flush=True)
        time.sleep(0.2)  # inside the transaction: where the test kills us
    chunks.on_chunk = inserted
    while chunks.compact_raw(float(sys.argv[2]), window=600, max_machines=3)["chunks"]:
        print("committed", flush=True)
    print("done", flush=True)
""")


def samples(store: Store) -> list[tuple]:
    """Every (machine, time, key, value) the store answers for, duplicates included."""
    chunks = Chunks(store)
    out = []
    for m in MACHINES:
        for row in query(store, chunks, m, T0, NOW, None, "raw"):
            out.extend((m, row["ts"], k, v) for k, v in row.items() if k != "ts")
    return sorted(out)


@pytest.mark.slow
def test_kill_9_mid_compaction_loses_and_duplicates_nothing(store_url):
    store = Store(store_url)
    store.migrate()
    for m in MACHINES:
        fill(store, m, T0, 600)
    expected = samples(store)
    assert len(expected) == len(MACHINES) * 600 * 38  # 38 keys of the cpu profile

    proc = subprocess.Popen([sys.executable, "-c", COMPACTOR, store_url, repr(NOW)], stdout=subprocess.PIPE,
                            text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    committed = 0
    for line in proc.stdout:
        if line.startswith("committed"):
            committed += 1
        elif line.startswith("inserted") and committed == 2:
            proc.send_signal(signal.SIGKILL)  # a chunk of the third transaction is written, not committed
            break
    assert proc.wait(timeout=30) == -signal.SIGKILL
    proc.stdout.close()

    assert count(store, "metric_chunks") == 6  # the two committed transactions, 3 machines each
    assert count(store, "metric_batches") == (len(MACHINES) - 6) * 120
    assert samples(store) == expected

    chunks = Chunks(store)  # carrying on finishes the job, once
    while chunks.compact_raw(NOW, window=600)["chunks"]:
        pass
    assert count(store, "metric_batches") == 0 and count(store, "metric_chunks") == len(MACHINES)
    assert samples(store) == expected
    store.close()
