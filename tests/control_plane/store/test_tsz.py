"""The compressed chunk format: exact round trips at the stored precision (property-based)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from centrality_core.precision import at_precision, digits
from control_plane.store import tsz

KEYS = ["cpu.percent", "cpu[0].percent", "mem.used_bytes", "gpu[0].power_w", "gpu[0].temp_c",
        "disk[sda].read_iops", "custom.ratio", "net[eth0].recv_bytes_per_s"]

finite = st.floats(min_value=-1e15, max_value=1e15, allow_nan=False, allow_infinity=False)
value = st.one_of(finite, st.just(float("nan")), st.floats(allow_nan=False, allow_infinity=False))


@st.composite
def chunks(draw):
    n = draw(st.integers(0, 40))
    keys = draw(st.lists(st.sampled_from(KEYS) | st.text(min_size=1, max_size=12), min_size=0, max_size=8,
                         unique=True))
    t0 = draw(st.floats(0, 4e9))
    steps = draw(st.lists(st.floats(0, 5), min_size=n, max_size=n))
    ts = t0 + np.cumsum(steps) if n else np.zeros(0)
    values = np.array(draw(st.lists(st.lists(value, min_size=n, max_size=n), min_size=len(keys),
                                    max_size=len(keys))), np.float64).reshape(len(keys), n)
    text = draw(st.lists(st.tuples(st.floats(0, 4e9), st.sampled_from(["nvidia_smi"]), st.text()), max_size=2))
    return ts, keys, values, text


@settings(max_examples=300, deadline=None)
@given(chunks(), st.sampled_from(["zstd", "lz4", "none"]))
def test_round_trip_is_exact_at_the_stored_precision(chunk, codec):
    ts, keys, values, text = chunk
    c = tsz.decode(tsz.encode(ts, keys, values, text, codec=codec))
    assert c.keys == keys
    assert np.array_equal(c.ts, tsz.quantize_ts(ts))
    expected = tsz.quantize(keys, values)
    assert np.array_equal(c.values, expected, equal_nan=True)
    assert np.array_equal(np.isnan(c.values), np.isnan(values))  # a missing value stays missing, no more
    assert c.text == [tuple(x) for x in text]
    # what was decoded encodes to the same values again (the rounding is stable)
    again = tsz.decode(tsz.encode(c.ts, c.keys, c.values))
    assert np.array_equal(again.values, c.values, equal_nan=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e12, 1e12, allow_nan=False), min_size=1, max_size=30))
def test_values_at_precision_are_kept_exactly(raw):
    """A value already at its key's precision (what agents send) comes back unchanged."""
    keys = ["cpu.percent", "mem.used_bytes", "gpu[0].power_w", "gpu[0].util_percent"]
    values = np.array([[at_precision(k, v) for v in raw] for k in keys])
    c = tsz.decode(tsz.encode(np.arange(len(raw), dtype=float), keys, values))
    assert c.values.tolist() == values.tolist()


def test_keys_that_appear_and_vanish_mid_chunk():
    a = (np.array([1.0, 2.0]), ["cpu.percent", "disk[sdb].read_iops"], np.array([[1.5, 2.5], [7.0, 8.0]]))
    b = (np.array([3.0, 4.0]), ["cpu.percent", "gpu[0].temp_c"], np.array([[3.5, np.nan], [40.0, 41.0]]))
    ts, keys, values = tsz.merge([b, a])
    assert ts.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert keys == ["cpu.percent", "gpu[0].temp_c", "disk[sdb].read_iops"]
    c = tsz.decode(tsz.encode(ts, keys, values))
    rows = {k: [None if v != v else v for v in row] for k, row in zip(c.keys, c.values.tolist())}
    assert rows == {"cpu.percent": [1.5, 2.5, 3.5, None], "gpu[0].temp_c": [None, None, 40.0, 41.0],
                    "disk[sdb].read_iops": [7.0, 8.0, None, None]}


def test_a_key_without_a_rule_is_lossless():
    v = np.array([[43.449740227398465, -0.0, 5e-324, 1.7976931348623157e308]])
    c = tsz.decode(tsz.encode([0.0, 1.0, 2.0, 3.0], ["custom.ratio"], v))
    assert c.values.tobytes() == v.tobytes()


def test_steady_series_compress_below_a_byte_per_value():
    n = 600
    ts = 1.8e9 + np.arange(n)  # a steady cadence: delta-of-delta all zeros
    keys = ["mem.total_bytes", "gpu[0].util_percent", "mem.used_bytes"]
    values = np.array([np.full(n, 2.0 ** 41), np.full(n, 98.0), 1e9 + 4096 * np.arange(n)])
    blob = tsz.encode(ts, keys, values)
    assert len(blob) / values.size < 0.1, len(blob)


def test_refuses_what_it_cannot_store():
    with pytest.raises(ValueError):
        tsz.encode([0.0], ["cpu.percent"], np.array([[float("inf")]]))
    with pytest.raises(ValueError):
        tsz.decode(b"not a chunk")


def test_precision_rules_per_family():
    assert digits("cpu.percent") == 1 and digits("cpu[12].percent") == 0
    assert digits("mem.used_bytes") == 0 and digits("net[eth0].sent_bytes_per_s") == 0
    assert digits("gpu[3].util_percent") == 0 and digits("gpu[3].temp_c") == 0
    assert digits("gpu[3].power_w") == 2 and digits("gpu[3].mem_util_percent") == 1
    assert digits("disk[nvme0n1].write_iops") == 0 and digits("fs[/].percent") == 1
    assert digits("something.else") is None


def test_decoding_only_some_keys():
    keys = ["cpu.percent", "gpu[0].temp_c", "custom.ratio", "mem.used_bytes"]
    values = np.array([[1.5, np.nan, 2.5], [40.0, 41.0, 42.0], [0.3, 0.1, 0.2], [1e9, 2e9, 3e9]])
    blob = tsz.encode([1.0, 2.0, 3.0], keys, values)
    c = tsz.decode(blob, lambda ks: [k for k in ks if not k.startswith("gpu")])
    assert c.keys == ["cpu.percent", "custom.ratio", "mem.used_bytes"]
    assert np.array_equal(c.values, tsz.quantize(keys, values)[[0, 2, 3]], equal_nan=True)
