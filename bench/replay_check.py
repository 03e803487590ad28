"""What the replay check costs a store write on Postgres (docs/architecture.md, Store).

One flush of ``--machines`` machines' metric batches (600-byte payloads, as a
batch of a few samples is), timed with and without reading and locking the
stored cursors first, alternating, median of ``--rounds``::

    python -m bench.replay_check --machines 1000 --rounds 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from control_plane.store import Store
from control_plane.store.db import WriteBatch


def flush(store: Store, n: int, seq: int, payload: bytes, check: bool) -> float:
    batch = WriteBatch()
    for i in range(n):
        m = f"m{i:05d}"
        batch.metric_batches.append({"machine_id": m, "ts_first": float(seq), "ts_last": float(seq),
                                     "payload": payload, "stream": "run", "seq": seq})
        batch.cursors[m] = {"machine_id": m, "stream": "run", "seq": seq}
    if not check:
        store._stored_cursors = lambda conn, ids: {}
    t = time.perf_counter()
    store.write(batch)
    elapsed = time.perf_counter() - t
    store.__dict__.pop("_stored_cursors", None)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machines", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    from tests.fixtures.postgres import start_postgres

    pg = start_postgres()
    store = Store(pg.url())
    try:
        store.migrate()
        payload, seq = os.urandom(600), 0
        for _ in range(3):  # warm up: the cursor rows exist from here on
            seq += 1
            flush(store, args.machines, seq, payload, True)
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for check in (False, True):
                seq += 1
                times[check].append(flush(store, args.machines, seq, payload, check))
        for check in (False, True):
            print(f"postgres, {args.machines} machines a flush, check {'on ' if check else 'off'}: "
                  f"median {statistics.median(times[check]) * 1000:.1f} ms")
    finally:
        store.close()
        pg.stop()


if __name__ == "__main__":
    main()
