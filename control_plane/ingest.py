"""The metrics ingest of the control plane.

For each batch an agent sends: check its shape and times, drop it if it was
already stored (per-machine cursor of agent run + sequence number), keep the
latest values in memory (what ``top`` and the dashboard read), fold it into
the 1-minute rollups being built, and queue it for the store. The agent gets
``metrics_ack`` once the batch is durably written, and replays anything not
acknowledged after a reconnect: every sample is stored exactly once.

``Ingest`` is given what it uses: the store writer, a callback for each machine
with new samples (subscriptions send its row again), one to record an event
(a refused batch), its key budgets and a clock. Reading stored samples back is
``reads.MetricReads``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

import numpy as np

from centrality_core import protocol as p
from centrality_core.lifecycle import Event
from centrality_core.sanitize import for_log, unsafe
from centrality_core.summary import EMPTY, Summary, summarize

from .lag import LagWindow
from .rollups import Rollups, matrix
from .store import staged
from .untrusted import clean, clean_text
from .writer import StoreWriter

log = logging.getLogger("centrality.metrics")

#: Samples stamped further than this from the control plane's clock are dropped.
MAX_FUTURE_S = 300.0
MAX_PAST_S = 7 * 86400.0
#: Closed minutes handed to the writer per flush, at most: each costs ~20 us of the event
#: loop, so a flush holds it for ~40 ms at worst (``server.ROLLUP_FLUSH_EVERY`` apart).
ROLLUP_FLUSH_LIMIT = 2000


class Latest:
    """The newest values of one machine, served from memory.

    Kept compact, for 10,000 machines: the key list is shared by machines of
    the same shape and the values are one float array. ``values`` is built
    when asked for; ``summary`` (the fleet table's figures) when first read.
    """

    __slots__ = ("ts", "keys", "row", "_summary", "text", "text_ts", "dropped", "gpu_processes")

    def __init__(self) -> None:
        self.ts = 0.0
        self.keys: list[str] = []
        self.row: np.ndarray | None = None
        self._summary: Summary | None = EMPTY
        self.text: dict[str, str] = {}
        self.text_ts = 0.0
        self.dropped = 0  # samples the agent reported dropping, in total
        #: The newest process list of its GPUs (protocol 1.2 agents), as the agent sent it.
        self.gpu_processes: p.GpuProcesses | None = None

    def set(self, ts: float, keys: list[str], row: np.ndarray) -> None:
        self.ts, self.keys, self.row, self._summary = ts, keys, row, None

    @property
    def values(self) -> dict[str, float]:
        if self.row is None:
            return {}
        return {k: v for k, v in zip(self.keys, self.row.tolist()) if v == v}  # NaN: no value

    @property
    def summary(self) -> Summary:
        if self._summary is None:
            self._summary = summarize(self.values)
        return self._summary


#: At most this many distinct metric names are shared between machines
#: (``Ingest.shared_keys``); past it, key lists are simply not shared.
MAX_SHARED_KEYS = 200_000
#: The window over which a machine's distinct keys are counted against its budget.
KEY_WINDOW_S = 3600.0


class KeyBudget:
    """The distinct metric keys one machine used in the current window.

    Most machines send the same key list batch after batch: for them nothing
    is counted or allocated (the set exists only once the list has changed).
    """

    __slots__ = ("keys", "seen", "since", "refused_at")

    def __init__(self, keys: list[str], now: float) -> None:
        self.keys = keys                  # the key list of the last batch taken
        self.seen: set[str] | None = None  # keys used this window, once they changed
        self.since = now
        self.refused_at = 0.0             # last time a batch was refused (for one event an hour)

    def admit(self, keys: list[str], now: float, limit: int) -> str | None:
        """Take a changed key list; or say why not (nothing is kept of a refused one)."""
        if now - self.since >= KEY_WINDOW_S:
            self.seen, self.since = None, now
        seen = self.seen if self.seen is not None else set(self.keys)
        new = [k for k in keys if k not in seen]
        bad = next((k for k in new if unsafe(k)), None)
        if bad is not None:
            return f"metric key {for_log(bad[:80])!r} has control or bidi characters"
        if len(seen) + len(new) > limit:
            return (f"{len(seen) + len(new)} distinct metric keys within {KEY_WINDOW_S / 60:.0f} min, "
                    f"over this control plane's budget of {limit} per machine (max_keys_per_machine)")
        seen.update(new)
        self.seen, self.keys = seen, keys
        return None


class Ingest:
    def __init__(self, writer: StoreWriter, *, on_sample: Callable[[str], None],
                 record_event: Callable[[Event], None], max_keys_per_batch: int, max_keys_per_machine: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.writer = writer
        #: Called with a machine's name when its latest values changed.
        self.on_sample = on_sample
        #: Records an event that is no transition (``metrics_refused``).
        self.record_event = record_event
        self.clock = clock
        self.cursors: dict[str, tuple[str, int]] = {}
        self.latest: dict[str, Latest] = {}
        self.rollups = Rollups()
        self._keys: dict[str, list[str]] = {}  # machine id -> its key list (shared)
        self._shapes: dict[tuple[str, ...], list[str]] = {}  # key list -> the one shared copy
        self._shared = 0  # keys held in _shapes
        self._budgets: dict[str, KeyBudget] = {}  # machine id -> its distinct keys this window
        #: Distinct keys in one batch; per machine within ``KEY_WINDOW_S`` (server settings).
        self.max_keys_per_batch = max_keys_per_batch
        self.max_keys_per_machine = max_keys_per_machine
        self.samples_stored = 0
        self.samples_too_old = 0  # acknowledged, not stored: outside [-7 d, +5 min] of our clock
        self.batches_refused = 0  # acknowledged, not stored: over the key budget, unsafe keys
        self.duplicates = 0
        #: Sample-to-stored delays of the last minute, as histograms (``lag.py``).
        self.lag = LagWindow()

    def load(self, cursors: dict[str, tuple[str, int]]) -> None:
        self.cursors = dict(cursors)

    def resume(self, machine_id: str, cursor: tuple[str, int] | None) -> None:
        """A machine registered here with the store's cursor for it (read in the same
        transaction, ``replicas.take``): the one another replica left is the one that counts,
        so a batch that replica stored but never acknowledged is not counted again here
        (in the minute rollups, which the store's own check does not cover)."""
        if cursor is None:
            self.cursors.pop(machine_id, None)
        else:
            self.cursors[machine_id] = cursor

    # ------------------------------------------------------------------ ingest

    def received(self, session: Any, name: str, machine_id: str, batch: p.MetricsBatch,
                 frame: bytes) -> str | None:
        """Take one batch (``frame``: its validated bytes; stored staged, ``store/staged.py``).

        Returns a protocol-error reason when it is malformed.
        """
        problem = batch.check_shape()
        if problem:
            return f"metrics batch {batch.seq}: {problem}"
        ts = batch.ts
        if not all(map(math.isfinite, ts)):
            return f"metrics batch {batch.seq}: timestamps must be finite"
        a = (np.frombuffer(batch.values, "<f8").reshape(len(batch.keys), len(ts)) if batch.values
             else matrix(batch.columns, len(ts)))
        if np.count_nonzero(np.isinf(a)):  # checked before the cursor moves: a refused batch can come back fixed
            return f"metrics batch {batch.seq}: values must be finite (NaN for no value)"
        send = session.send_bytes
        cursor = self.cursors.get(machine_id)
        if cursor is not None and cursor[0] == batch.stream and batch.seq <= cursor[1]:
            self.duplicates += 1
            ack = p.encode(p.MetricsAck(stream=batch.stream, seq=batch.seq))
            self.writer.after_flush(lambda: send(ack))  # it is stored, or about to be
            return None
        now = self.clock()
        prev = self._keys.get(machine_id)
        steady = prev is not None and prev == batch.keys  # the common case: the same keys again
        refused = None if steady else self._over_budget(name, machine_id, batch.keys, now)
        too_old = 0
        if not refused and (not ts or max(ts) > now + MAX_FUTURE_S or min(ts) < now - MAX_PAST_S):
            too_old = len(ts)
            if ts:
                log.warning("%s: batch %d has samples outside [-7d, +5m] of our clock; not stored",
                            name, batch.seq)
        if refused or too_old or not ts:
            # Acknowledged (resending cannot fix it) and not stored: only the cursor moves.
            self.samples_too_old += too_old
            self.cursors[machine_id] = (batch.stream, batch.seq)
            self.writer.add_metric_batch(None, {"machine_id": machine_id, "stream": batch.stream,
                                                   "seq": batch.seq})
            ack = p.encode(p.MetricsAck(stream=batch.stream, seq=batch.seq, refused=refused or "",
                                        too_old=too_old))
            self.writer.after_flush(lambda: send(ack))
            return None
        self.cursors[machine_id] = (batch.stream, batch.seq)
        cursor_row = {"machine_id": machine_id, "stream": batch.stream, "seq": batch.seq}
        ack = p.encode(p.MetricsAck(stream=batch.stream, seq=batch.seq))
        keys = prev if steady else self.shared_keys(machine_id, batch.keys)
        self._update_latest(name, batch, keys, a)
        self.on_sample(name)
        self.rollups.add(machine_id, ts, keys, a)
        self.writer.add_metric_batch(
            {"machine_id": machine_id, "ts_first": min(ts), "ts_last": max(ts),
             "payload": staged.encode(ts, keys, batch.values or a, batch.text)}, cursor_row)

        def stored() -> None:
            self.lag.add(self.clock(), ts)
            send(ack)

        self.writer.after_flush(stored)
        self.samples_stored += len(ts)
        return None

    def _over_budget(self, name: str, machine_id: str, keys: list[str], now: float) -> str | None:
        """Why this batch's keys are refused (too many, unsafe), or None. Called only
        when a machine's key list changed, so a steady machine pays nothing here."""
        budget = self._budgets.get(machine_id)
        if len(keys) > self.max_keys_per_batch:
            why = (f"{len(keys)} metric keys in one batch, over this control plane's budget "
                   f"of {self.max_keys_per_batch} (max_keys_per_batch)")
        elif budget is None:
            bad = next((k for k in keys if unsafe(k)), None)
            why = None if bad is None else f"metric key {for_log(bad[:80])!r} has control or bidi characters"
            if why is None:
                self._budgets[machine_id] = KeyBudget(keys, now)
                return None
        else:
            why = budget.admit(keys, now, self.max_keys_per_machine)
            if why is None:
                return None
        self.batches_refused += 1
        budget = self._budgets.setdefault(machine_id, KeyBudget([], now))
        if now - budget.refused_at >= KEY_WINDOW_S:  # one event an hour, not one a batch
            budget.refused_at = now
            self.record_event(Event("metrics_refused", machine_id, name, now, None, None,
                                                why, "system"))
        log.warning("%s: metric batch refused: %s", name, why)
        return why

    def refusing(self, since: float) -> int:
        """Machines whose batches were refused since ``since`` (for ``status``)."""
        return sum(1 for b in self._budgets.values() if b.refused_at >= since)

    def shared_keys(self, machine_id: str, keys: list[str]) -> list[str]:
        """``keys``, as the list already held for an equal one (most batches repeat their
        machine's keys; GPU machines of one model all send the same ones)."""
        shape = tuple(keys)
        shared = self._shapes.get(shape)
        if shared is None:
            shared = keys
            if self._shared + len(keys) <= MAX_SHARED_KEYS:
                self._shapes[shape] = keys
                self._shared += len(keys)
        self._keys[machine_id] = shared
        return shared

    def _update_latest(self, name: str, batch: p.MetricsBatch, keys: list[str], a: np.ndarray) -> None:
        latest = self.latest.get(name)
        if latest is None:
            latest = self.latest[name] = Latest()
        ts = batch.ts
        newest = max(ts)
        if newest >= latest.ts:
            last = len(ts) - 1 if ts[-1] == newest else ts.index(newest)
            latest.set(newest, keys, a[:, last].copy())
        if batch.text:
            latest.text.update(clean_text(batch.text))
            latest.text_ts = newest
        procs = batch.gpu_processes
        if procs is not None and (latest.gpu_processes is None or procs.ts >= latest.gpu_processes.ts):
            latest.gpu_processes = clean(procs)  # users and commands come from the agent
        latest.dropped += batch.dropped

    def lag_percentiles(self, window: float = 30.0) -> dict[str, float | None]:
        """p50/p99 of sample-to-stored delay of the samples stored in the last ``window`` seconds."""
        p50, p99 = self.lag.percentiles(self.clock(), window, (0.50, 0.99))
        return {"p50_s": p50, "p99_s": p99}

    def flush_rollups(self, now: float | None = None) -> int:
        rows = self.rollups.take_closed(self.clock() if now is None else now, limit=ROLLUP_FLUSH_LIMIT)
        if rows:
            self.writer.add_rollups(rows)
        return len(rows)
