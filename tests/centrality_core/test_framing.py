"""Line framing of the agent protocol (``centrality_core/framing.py``): frames split
from a byte stream in any chunking, bounded in size before a newline arrives."""

from __future__ import annotations

import random

import pytest

from centrality_core import protocol as p
from centrality_core.errors import FrameTooLarge, ProtocolError


def _stream(messages) -> bytes:
    return b"".join(p.encode(m) for m in messages)


MESSAGES = [
    p.Heartbeat(seq=1, ts=1.0),
    p.CommandOutput(id="c1", stream="stdout", data="line one\nline two\n" * 50),
    p.CommandExit(id="c1", exit_code=0, duration=0.5),
    p.Heartbeat(seq=2, ts=2.0),
]


def test_framebuffer_byte_by_byte():
    data = _stream(MESSAGES)
    buf = p.FrameBuffer()
    frames = []
    for i in range(len(data)):
        frames.extend(buf.feed(data[i:i + 1]))
    assert [p.agent_decoder.decode(f) for f in frames] == MESSAGES


@pytest.mark.parametrize("seed", range(5))
def test_framebuffer_random_chunks(seed):
    rng = random.Random(seed)
    data = _stream(MESSAGES) * 3
    buf = p.FrameBuffer()
    frames, pos = [], 0
    while pos < len(data):
        n = rng.randint(1, 300)
        frames.extend(buf.feed(data[pos:pos + n]))
        pos += n
    assert [p.agent_decoder.decode(f) for f in frames] == MESSAGES * 3


def test_framebuffer_many_frames_in_one_chunk_and_blank_lines():
    buf = p.FrameBuffer()
    assert buf.feed(b'{"a":1}\n\n  \n{"b":2}\n{"c"') == [b'{"a":1}', b'{"b":2}']
    assert buf.feed(b":3}\n") == [b'{"c":3}']
    assert buf.feed(b"") == []


def test_framebuffer_too_many_bytes_without_newline():
    buf = p.FrameBuffer(max_frame=100)
    assert buf.feed(b"x" * 60) == []
    assert buf.feed(b"x" * 40) == []  # 100 bytes buffered, no newline yet
    with pytest.raises(FrameTooLarge):
        buf.feed(b"x")  # 101 bytes and no newline: refuse without buffering more
    # after the error the partial frame was dropped, not kept growing
    assert buf.feed(b'{"a":1}\n') == [b'{"a":1}']


def test_framebuffer_single_huge_chunk_without_newline():
    buf = p.FrameBuffer(max_frame=1000)
    with pytest.raises(FrameTooLarge) as info:
        buf.feed(b"y" * 5000)
    assert isinstance(info.value, ProtocolError) and info.value.code == "frame_too_large"


def test_framebuffer_complete_line_too_long():
    buf = p.FrameBuffer(max_frame=100)
    # 99 bytes + newline = 100: the largest allowed frame
    assert buf.feed(b"a" * 99 + b"\n") == [b"a" * 99]
    # 100 bytes + newline = 101: too large, even though it arrives complete
    with pytest.raises(FrameTooLarge):
        buf.feed(b"b" * 100 + b"\n")
    buf = p.FrameBuffer(max_frame=100)
    with pytest.raises(FrameTooLarge):
        buf.feed(b'{"ok":1}\n' + b"c" * 200 + b"\n")


def test_framebuffer_long_line_split_across_chunks_with_newline():
    buf = p.FrameBuffer(max_frame=100)
    assert buf.feed(b"d" * 100) == []
    with pytest.raises(FrameTooLarge):
        buf.feed(b"\n")


def test_framebuffer_default_limit_is_one_mib():
    assert p.FrameBuffer().max_frame == p.MAX_FRAME_BYTES == 1024 * 1024
