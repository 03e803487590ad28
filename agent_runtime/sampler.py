"""Sampling, batching and the buffer of unacknowledged batches.

The ``Sampler`` takes one sample per ``interval`` whether or not the agent is
connected. Every batch interval its pending samples become one columnar
``MetricsBatch`` in the ``Outbox``; the outbox keeps every batch until the
control plane acknowledges it (``metrics_ack``), and replays what is left,
oldest first, after a reconnect. It is bounded by sample count and by age:
past either bound the oldest samples are dropped, counted, and reported in
the next batch's ``dropped`` field.

Batches made while the agent was away were never sent to any control plane, so
before a replay they are merged into a few large ones (``Outbox.merge_unsent``):
a returning agent costs the control plane a handful of batches instead of one
per 5 seconds it was away. Only those: a batch that went out on a connection may
have been stored without its ack arriving, and merging it would store it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections import deque
from typing import Any

from centrality_core import protocol as p

log = logging.getLogger("centrality.agent.metrics")
_NAN = float("nan")


class Sampler:
    """Collects samples on a fixed cadence and hands them out as batches."""

    def __init__(self, collectors: Any, interval: float = 1.0, *, blocking: bool = True) -> None:
        self.collectors = collectors
        self.interval = interval
        self.blocking = blocking  # real collectors read files and may run nvidia-smi
        self._ts: list[float] = []
        #: Pending samples, row after row in ``_keys`` order (NaN for a None), while every row
        #: of the batch has the same keys in the same order (a simulator holds thousands of
        #: machines' pending samples: 8 bytes a value instead of a dict entry and a float).
        self._flat = array("d")
        self._keys: list[str] = []
        #: Pending samples as dicts, once keys came or went within the batch (else None).
        self._rows: list[dict[str, float]] | None = None
        self._text: dict[str, str] = {}
        #: The newest GPU process list taken since the last batch (collectors that have
        #: ``gpu_processes(now)``; it returns None when it did not look this time).
        self._procs: p.GpuProcesses | None = None
        self._procs_fn = getattr(collectors, "gpu_processes", None)
        self.taken = 0  # samples taken since start
        #: The newest sample: its dict when it is kept as one, else its keys, the array that holds
        #: its packed row and where the row starts (the pending rows' array itself: no copy a sample).
        self._latest: dict[str, float] | None = {}
        self._latest_row: tuple[list[str], array, int] | None = None

    def sample(self, now: float) -> None:
        values, text = self._collect(now)
        self.add(now, values, text)

    def _collect(self, now: float) -> tuple[dict[str, float], dict[str, str]]:
        values, text = self.collectors.sample(now)
        if self._procs_fn is not None:
            try:
                procs = self._procs_fn(now)
            except Exception:  # noqa: BLE001 - processes are a extra; the metrics still go
                log.exception("GPU process listing failed")
                procs = None
            if procs is not None:
                self._procs = procs
        return values, text

    @property
    def pending(self) -> int:
        """Samples taken and not yet in a batch."""
        return len(self._ts)

    def add(self, now: float, values: dict[str, float], text: dict[str, str] | None = None) -> None:
        self.taken += 1
        self._ts.append(now)
        if self._add_row(values):
            width = len(self._keys)
            self._latest, self._latest_row = None, (self._keys, self._flat, len(self._flat) - width)
        else:
            self._latest, self._latest_row = values, None
        if text:
            self._text.update(text)

    @property
    def latest(self) -> dict[str, float]:
        """The newest sample's values (healthchecks read it; a None stays None)."""
        if self._latest is not None:
            return self._latest
        keys, flat, start = self._latest_row
        return dict(zip(keys, [None if v != v else v for v in flat[start:start + len(keys)].tolist()]))

    def _add_row(self, values: dict[str, float]) -> bool:
        """Keep ``values`` as a packed row (True), or as a dict when its keys differ (False)."""
        if self._rows is None:
            if len(self._ts) == 1:  # a batch's first sample sets its keys (the last batch's list if equal)
                if len(values) != len(self._keys) or list(values) != self._keys:
                    self._keys = list(values)
                keys_match = True
            else:
                keys_match = len(values) == len(self._keys) and list(values) == self._keys
            if keys_match:
                start = len(self._flat)
                try:
                    self._flat.extend(values.values())
                    return True
                except TypeError:  # a None (a collector without that value): NaN, as packing does
                    del self._flat[start:]
                try:
                    self._flat.extend([_NAN if v is None else v for v in values.values()])
                    return True
                except TypeError:  # not a number at all: the row stays a dict, as it came
                    del self._flat[start:]
            self._rows = self._flat_rows()  # keys came or went: dicts for the rest of the batch
            self._flat = array("d")
        self._rows.append(values)
        return False

    def _flat_rows(self) -> list[dict[str, float | None]]:
        width, flat = len(self._keys), self._flat.tolist()
        return [dict(zip(self._keys, [None if v != v else v for v in flat[i:i + width]]))
                for i in range(0, len(flat), width)]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = time.time()
        while True:
            now = time.time()
            try:
                if self.blocking:
                    values, text = await loop.run_in_executor(None, self._collect, now)
                    self.add(now, values, text)
                else:
                    self.sample(now)
            except Exception:  # noqa: BLE001 - a broken collector must not stop the agent
                log.exception("sampling failed")
            next_at += self.interval
            delay = next_at - time.time()
            if delay < 0:  # fell behind (suspend, slow collector): skip, don't burst
                next_at, delay = time.time() + self.interval, self.interval
            await asyncio.sleep(delay)

    def take_batch(self, stream: str, seq: int, *, packed: bool = False) -> p.MetricsBatch | None:
        """The pending samples as one batch (values packed for protocol 1.1), or None."""
        if not self._ts:
            return None
        ts, rows, flat, text, procs = self._ts, self._rows, self._flat, self._text, self._procs
        self._ts, self._rows, self._flat, self._text, self._procs = [], None, array("d"), {}, None
        if self._latest_row is not None and self._latest_row[1] is flat:  # keep its row, not the batch's
            keys, _, start = self._latest_row
            self._latest_row = (keys, flat[start:start + len(keys)], 0)
        if rows is not None:
            batch = columnar(stream, seq, ts, rows, text, packed=packed)
        elif self._keys:
            batch = p.MetricsBatch(stream=stream, seq=seq, ts=ts, keys=self._keys,
                                   values=p.pack_rows(flat, len(self._keys)), text=text)
            if not packed:
                batch = batch.unpacked()
        else:
            batch = p.MetricsBatch(stream=stream, seq=seq, ts=ts, keys=[], columns=[], text=text)
        batch.gpu_processes = procs
        return batch


def columnar(stream: str, seq: int, ts: list[float], rows: list[dict[str, float]],
             text: dict[str, str] | None = None, *, packed: bool = False) -> p.MetricsBatch:
    """Rows of ``{key: value}`` into one batch with a column per key (or packed values)."""
    keys = list(rows[0]) if rows else []
    if all(list(row) == keys for row in rows):  # the usual case: transpose in C
        columns: list = list(zip(*map(dict.values, rows)))
    else:  # keys came or went during the batch: null where a row lacks one
        union: dict[str, None] = {}
        for row in rows:
            union.update(dict.fromkeys(row))
        keys = list(union)
        columns = [[row.get(k) for row in rows] for k in keys]
    if packed and keys:
        return p.MetricsBatch(stream=stream, seq=seq, ts=ts, keys=keys, values=p.pack_values(columns),
                              text=text or {})
    return p.MetricsBatch(stream=stream, seq=seq, ts=ts, keys=keys, columns=list(map(list, columns)),
                          text=text or {})


#: A merged replay batch holds at most this many samples ...
MERGE_MAX_SAMPLES = 300
#: ... and this many bytes of packed values (base64 in a frame of at most 1 MiB).
MERGE_MAX_BYTES = 384 * 1024


def merge(batches: list[p.MetricsBatch]) -> p.MetricsBatch:
    """Consecutive batches of one stream, packed with the same keys, as one: the last one's
    sequence number (the control plane's cursor moves past all of them at once), the samples
    in order, values key after key, the text streams and process list as the newest left them,
    and the drops of all."""
    last = batches[-1]
    if len(batches) == 1:
        return last
    nkeys = len(last.keys)
    ts: list[float] = []
    text: dict[str, str] = {}
    for b in batches:
        ts.extend(b.ts)
        text.update(b.text)
    values = b""
    if nkeys:
        rows = [(memoryview(b.values), 8 * len(b.ts)) for b in batches]
        values = b"".join(m[k * w:(k + 1) * w] for k in range(nkeys) for m, w in rows)
    procs = next((b.gpu_processes for b in reversed(batches) if b.gpu_processes is not None), None)
    return p.MetricsBatch(stream=last.stream, seq=last.seq, ts=ts, keys=last.keys,
                          values=values, text=text, dropped=sum(b.dropped for b in batches),
                          gpu_processes=procs)


def _mergeable(a: p.MetricsBatch, b: p.MetricsBatch) -> bool:
    return a.stream == b.stream and a.keys == b.keys and not a.columns and not b.columns


class Outbox:
    """Batches sent or waiting to be sent, until acknowledged. Oldest first."""

    def __init__(self, max_samples: int = 3600, max_age: float = 3600.0) -> None:
        self.max_samples = max_samples
        self.max_age = max_age
        self.batches: deque[p.MetricsBatch] = deque()
        self.samples = 0
        self.dropped = 0  # samples dropped and not yet reported
        self.dropped_total = 0
        self.acked_samples = 0
        #: The newest batch ever handed to a connection (stream, seq): the ones after it were
        #: never sent anywhere (batches go out in order, the replay oldest first).
        self.sent: tuple[str, int] | None = None

    def mark_sent(self, batch: p.MetricsBatch) -> None:
        """``batch`` is going out (it may be stored from now on, acknowledged or not)."""
        self.sent = (batch.stream, batch.seq)

    def _unsent(self, batch: p.MetricsBatch) -> bool:
        return self.sent is None or batch.stream != self.sent[0] or batch.seq > self.sent[1]

    @property
    def unsent(self) -> int:
        """Batches never sent anywhere (made while away)."""
        return sum(map(self._unsent, self.batches))

    def merge_unsent(self, max_samples: int = MERGE_MAX_SAMPLES, max_bytes: int = MERGE_MAX_BYTES) -> int:
        """Merge the batches that were never sent into as few as the bounds allow (runs of the
        same keys, oldest first). Returns how many batches there are fewer."""
        before = len(self.batches)
        kept, run, samples, nbytes = [], [], 0, 0
        for b in self.batches:
            if not self._unsent(b):
                kept.append(b)
                continue
            if run and (not _mergeable(run[-1], b) or samples + len(b.ts) > max_samples
                        or nbytes + len(b.values) > max_bytes):
                kept.append(merge(run))
                run, samples, nbytes = [], 0, 0
            run.append(b)
            samples, nbytes = samples + len(b.ts), nbytes + len(b.values)
        if run:
            kept.append(merge(run))
        self.batches = deque(kept)
        return before - len(kept)

    def add(self, batch: p.MetricsBatch, now: float | None = None) -> None:
        self.batches.append(batch)
        self.samples += len(batch.ts)
        self._trim(time.time() if now is None else now)
        if self.dropped and self.batches:  # report on the newest batch: it is not sent yet
            self.batches[-1].dropped += self.dropped
            self.dropped = 0

    def _trim(self, now: float) -> None:
        while self.batches and (self.samples > self.max_samples
                                or self.batches[0].ts[-1] < now - self.max_age):
            old = self.batches.popleft()
            self.samples -= len(old.ts)
            self.dropped += len(old.ts) + old.dropped
            self.dropped_total += len(old.ts)
            log.warning("buffer full: dropped %d samples (batch %d)", len(old.ts), old.seq)

    def ack(self, stream: str, seq: int) -> None:
        while self.batches and self.batches[0].stream == stream and self.batches[0].seq <= seq:
            n = len(self.batches.popleft().ts)
            self.samples -= n
            self.acked_samples += n

    def __iter__(self):
        return iter(list(self.batches))

    def __len__(self) -> int:
        return len(self.batches)
