"""The staged form of a raw batch: exact round trip, gaps, text, key lists shared."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from centrality_core import protocol as p
from control_plane import history
from control_plane.store import staged

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
