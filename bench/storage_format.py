"""The simulated fleet's history as the control plane receives it, and the format
comparison (``bench/storage.py``, part 1): bytes per value of tier 0 and per key-minute of
the minute tier, zstd levels beside lz4, chunks of 10 minutes to an hour."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import numpy as np

from agent_runtime.collectors.simulated import FakeCollectors
from agent_runtime.sampler import columnar
from centrality_core import protocol as p
from centrality_core.settings import ServerSettings
from control_plane import history
from control_plane.rollups import Rollups
from control_plane.store import staged



CODECS = [("zstd", 1), ("zstd", 3), ("zstd", 9), ("lz4", 0), ("lz4", 9)]
#: The default chunk length (``chunk_seconds``), measured beside 10 minutes and an hour.
DEFAULT_WINDOW = ServerSettings().chunk_seconds
WINDOWS = sorted({600.0, DEFAULT_WINDOW, 3600.0})


class Machine:
    """One machine's history as the control plane receives it: batch frames and closed minutes."""

    def __init__(self, name: str, profile: str) -> None:
        self.name, self.profile = name, profile
        self.frames: list[tuple[float, float, bytes]] = []
        self.staged: list[tuple[float, float, bytes]] = []  # the same batches, staged as the ingest does
        self.minutes: list[dict] = []
        self.values = 0
        self.key_minutes = 0

    def add(self, seq: int, ts: list[float], rows: list[dict], rollups: Rollups) -> None:
        batch = columnar("bench", seq, ts, rows, packed=True)
        self.frames.append((min(ts), max(ts), p.encode(batch)))
        a = np.frombuffer(batch.values, "<f8").reshape(len(batch.keys), len(ts))
        self.staged.append((min(ts), max(ts), staged.encode(ts, batch.keys, batch.values or a, batch.text)))
        rollups.add(self.name, ts, batch.keys, a)
        self.values += int((~np.isnan(a)).sum())

    def close(self, rollups: Rollups) -> None:
        self.minutes = [{**x, "stats": x["stats"].as_dict()} for x in rollups.take_closed(1e12)]
        self.key_minutes = sum(len(m["stats"]) for m in self.minutes)


def simulate(name: str, profile: str, index: int, start: float, seconds: int) -> Machine:
    f, m, r = FakeCollectors(profile, index), Machine(name, profile), Rollups()
    for seq, first in enumerate(range(0, seconds, 5), 1):
        ts = [start + first + i + 0.001 * ((index * 7 + first + i) % 5) for i in range(5)]  # a few ms of jitter
        m.add(seq, ts, [f.sample(t)[0] for t in ts], r)
    m.close(r)
    return m


def real(path: str, start: float) -> Machine:
    rows = msgspec.json.decode(Path(path).read_bytes())
    m, r = Machine("real", "real"), Rollups()
    shift = start - rows[0][0]
    for seq, i in enumerate(range(0, len(rows) - 4, 5), 1):
        chunk = rows[i:i + 5]
        m.add(seq, [t + shift for t, _ in chunk], [v for _, v in chunk], r)
    m.close(r)
    return m


# ------------------------------------------------------------------ 1. format

def chunk_bytes(m: Machine, window: float, codec: str, level: int) -> tuple[int, float]:
    """Tier-0 bytes of ``m`` in chunks of ``window`` seconds, and the encode time."""
    groups: dict[float, list[bytes]] = {}
    for first, _, frame in m.frames:
        groups.setdefault(first - first % window, []).append(frame)
    total, spent = 0, 0.0
    for frames in groups.values():
        t = time.process_time()
        blob = history.batches_chunk(frames, codec=codec, level=level)[0]
        spent += time.process_time() - t
        total += len(blob)
    return total, spent


def minute_bytes(m: Machine) -> int:
    hours: dict[float, list] = {}
    for row in m.minutes:
        hours.setdefault(row["minute"] - row["minute"] % 3600, []).append((row["minute"], row["stats"]))
    return sum(len(history.stats_chunk(points)[0]) for points in hours.values())


def formats(groups: dict[str, list[Machine]]) -> list[dict]:
    out = []
    for name, machines in groups.items():
        values = sum(m.values for m in machines)
        batches = sum(len(m.frames) for m in machines)
        km = sum(m.key_minutes for m in machines)
        r = {"fleet": name, "machines": len(machines), "values": values,
             "seconds": len(machines[0].frames) * 5,
             "old_raw_bpv": round(sum(len(f) for m in machines for _, _, f in m.frames) / values, 2),
             "old_minute_bpkm": round(sum(len(msgspec.json.encode(x["stats"])) for m in machines
                                          for x in m.minutes) / km, 1),
             "new_minute_bpkm": round(sum(minute_bytes(m) for m in machines) / km, 2), "codecs": {}}
        for window in WINDOWS:
            for codec, level in (CODECS if window == DEFAULT_WINDOW else [("zstd", 3)]):
                nbytes, spent = zip(*(chunk_bytes(m, window, codec, level) for m in machines))
                r["codecs"][f"{codec}-{level}/{window:.0f}s"] = {
                    "bpv": round(sum(nbytes) / values, 3), "encode_us_per_batch": round(sum(spent) / batches * 1e6, 1)}
        out.append(r)
    return out
