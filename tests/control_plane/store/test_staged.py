"""The staged forms of a raw batch and of a minute: exact round trip, gaps, text, key lists shared."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from centrality_core import protocol as p
from control_plane import history
from control_plane.store import staged, tsz

keys_st = st.lists(st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=24),
                   min_size=0, max_size=12, unique=True)


@settings(max_examples=60, deadline=None)
@given(keys=keys_st, n=st.integers(0, 6), data=st.data())
def test_round_trip_is_exact_nan_included(keys, n, data):
    values = np.array(data.draw(st.lists(st.floats(allow_infinity=False), min_size=len(keys) * n,
                                         max_size=len(keys) * n)), np.float64).reshape(len(keys), n)
    ts = data.draw(st.lists(st.floats(1e9, 2e9), min_size=n, max_size=n))
    text = data.draw(st.dictionaries(st.sampled_from(["nvidia_smi", "dmesg"]), st.text(max_size=40)))
    b = staged.decode(staged.encode(ts, keys, values, text))
    assert b.ts.tolist() == ts and b.keys == keys and b.text == text
    assert b.values.shape == (len(keys), n)
    assert np.array_equal(b.values, values, equal_nan=True)


def test_the_agents_packed_values_are_stored_as_they_came_and_read_like_its_frame():
    batch = p.MetricsBatch(stream="s", seq=1, ts=[1e9, 1e9 + 1], keys=["cpu.percent", "mem.used_bytes"],
                           values=p.pack_values([[1.5, None], [2048.0, 4096.0]]), text={"nvidia_smi": "ok"})
    payload = staged.encode(batch.ts, batch.keys, batch.values, batch.text)
    assert batch.values in payload
    new, old = history.batch_arrays(payload), history.batch_arrays(p.encode(batch))
    assert new.ts.tolist() == old.ts.tolist() and new.keys == old.keys and new.text == old.text
    assert np.array_equal(new.values, old.values, equal_nan=True) and math.isnan(new.values[0, 1])
    assert len(payload) < len(p.encode(batch))


def test_a_key_list_is_read_back_as_one_list_for_every_batch_that_carries_it():
    keys = [f"gpu[{i}].util_percent" for i in range(8)]
    a = staged.decode(staged.encode([1.0], keys, np.zeros((8, 1))))
    b = staged.decode(staged.encode([2.0], list(keys), np.ones((8, 1))))
    assert a.keys is b.keys and a.keys == keys


def test_values_that_do_not_fit_the_keys_are_refused_and_json_is_not_taken_for_staged():
    with pytest.raises(ValueError):
        staged.encode([1.0, 2.0], ["a"], np.zeros(3))
    assert not staged.is_staged(b'{"ts": [1.0], "keys": []}')
    with pytest.raises(ValueError):
        staged.decode(b"\x00STG\x09" + bytes(16))


stat_st = st.tuples(*[st.floats(allow_nan=False, allow_infinity=False)] * 3,
                    st.integers(1, 10**6))


@settings(max_examples=60, deadline=None)
@given(stats=st.dictionaries(st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1,
                                     max_size=24), stat_st, max_size=12))
def test_a_minute_round_trips_exactly_and_reads_as_its_json_of_earlier_versions(stats):
    as_dict = {k: list(v) for k, v in stats.items()}
    payload = staged.encode_minute(staged.KeyStats.of(as_dict))
    assert staged.is_staged_minute(payload) and not staged.is_staged(payload)
    assert staged.minute_stats(payload).as_dict() == as_dict
    assert staged.minute_stats(msgspec.json.encode(as_dict)).as_dict() == as_dict


def test_minutes_merge_column_wise_on_one_key_list_and_by_name_otherwise():
    keys = ["a", "b"]
    x = staged.KeyStats(keys, np.array([[1.0, 5.0, 6.0, 2], [3.0, 3.0, 3.0, 1]]))
    y = staged.KeyStats(keys, np.array([[0.5, 2.0, 2.5, 2], [4.0, 9.0, 13.0, 2]]))
    assert x.merge(y).as_dict() == {"a": [0.5, 5.0, 8.5, 4], "b": [3.0, 9.0, 16.0, 3]}
    z = staged.KeyStats(["c", "a"], np.array([[7.0, 7.0, 7.0, 1], [9.0, 9.0, 9.0, 1]]))
    assert x.merge(z).as_dict() == {"a": [1.0, 9.0, 15.0, 3], "b": [3.0, 3.0, 3.0, 1], "c": [7.0, 7.0, 7.0, 1]}
    with pytest.raises(ValueError):
        staged.encode_minute(staged.KeyStats(["a"], np.zeros((2, 4))))
    with pytest.raises(ValueError):
        staged.decode_minute(b"\x00STM\x09" + bytes(8))


def _one_by_one(payloads):
    parts = [staged.decode(x) for x in payloads]
    text = [(float(b.ts.max()), s, v) for b in parts for s, v in b.text.items()]
    return (*tsz.merge([(b.ts, b.keys, b.values) for b in parts]), text)


@settings(max_examples=60, deadline=None)
@given(keys=keys_st, n=st.integers(1, 5), batches=st.integers(1, 6), data=st.data())
def test_a_window_of_alike_batches_decodes_at_once_as_one_by_one(keys, n, batches, data):
    payloads = []
    for b in range(batches):
        values = np.array(data.draw(st.lists(st.floats(allow_infinity=False), min_size=len(keys) * n,
                                             max_size=len(keys) * n)), np.float64).reshape(len(keys), n)
        ts = data.draw(st.lists(st.floats(1e9, 2e9), min_size=n, max_size=n))  # out of order too
        text = data.draw(st.dictionaries(st.sampled_from(["nvidia_smi", "dmesg"]), st.text(max_size=40)))
        payloads.append(staged.encode(ts, list(keys), values, text))
    w = staged.decode_window(payloads)
    assert w is not None
    ts, ks, values, text = _one_by_one(payloads)
    got_ts, got_values = tsz.in_time_order(w.ts, w.values)
    assert got_ts.tolist() == ts.tolist() and w.keys == ks and w.text == text
    assert np.array_equal(got_values, values, equal_nan=True)


def test_batches_of_other_keys_or_lengths_are_left_to_the_batch_by_batch_path():
    a = staged.encode([1.0, 2.0], ["cpu", "mem"], np.zeros((2, 2)))
    assert staged.decode_window([a, staged.encode([3.0, 4.0], ["cpu", "disk"], np.ones((2, 2)))]) is None
    assert staged.decode_window([a, staged.encode([3.0], ["cpu", "mem"], np.ones((2, 1)))]) is None
    frame = p.encode(p.MetricsBatch(stream="s", seq=1, ts=[4.0], keys=["cpu"], values=p.pack_values([[1.0]])))
    assert staged.decode_window([a, frame]) is None and staged.decode_window([]) is None
    # Either way the chunk holds the same samples.
    mixed = [a, staged.encode([3.0], ["mem", "gpu"], np.full((2, 1), 7.0)), frame]
    blob, first, last, held = history.batches_chunk(mixed)
    chunk = tsz.decode(blob)
    assert (first, last, held) == (1.0, 4.0, 7) and chunk.ts.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert sorted(chunk.keys) == ["cpu", "gpu", "mem"]
