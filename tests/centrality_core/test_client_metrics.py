"""``OperatorClient.metrics``: asks for columns, makes the rows, and still reads a control
plane from before ``--columns`` (a replica not upgraded yet)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from centrality_core.client import OperatorClient
from centrality_core.errors import ProtocolError, UsageError

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "operator" / "MetricColumns.jsonl"
ROWS = [{"ts": "2027-01-15T00:00:00.000Z", "cpu.percent": 12.5, "mem.used_bytes": 1024, "disk[sda].read_iops": 3},
        {"ts": "2027-01-15T00:00:01.000Z", "cpu.percent": 13.1, "mem.used_bytes": 2048}]


def client_answering(answer) -> tuple[OperatorClient, list]:
    client = OperatorClient.__new__(OperatorClient)
    asked: list = []

    async def raw(*argv):  # the client's one seam for one-off requests: (JSON text, status)
        asked.append(argv)
        return json.dumps(answer(argv)).encode(), 0

    client.raw = raw
    return client, asked


async def test_metrics_asks_for_columns_and_answers_rows():
    doc = json.loads(GOLDEN.read_bytes().splitlines()[0])
    client, asked = client_answering(lambda argv: doc)
    assert await client.metrics("gpu-01", since="24h", streams=["cpu"]) == ROWS
    assert asked == [("metrics", "gpu-01", "--since", "24h", "--resolution", "auto", "--stream", "cpu", "--columns")]


async def test_a_control_plane_without_columns_is_asked_for_rows():
    def answer(argv):
        if "--columns" in argv:  # what an older control plane's parser says
            raise UsageError("metrics: unrecognized arguments: --columns")
        return ROWS

    client, asked = client_answering(answer)
    assert await client.metrics("gpu-01") == ROWS
    assert [a[-1] for a in asked] == ["--columns", "auto"]


async def test_other_usage_errors_and_malformed_columns_are_raised():
    def refuse(argv):
        raise UsageError("gpu-01 has no stream or key matching 'gpx'")

    client, asked = client_answering(refuse)
    with pytest.raises(UsageError, match="gpx"):
        await client.metrics("gpu-01", streams=["gpx"])
    assert len(asked) == 1
    doc = {**json.loads(GOLDEN.read_bytes().splitlines()[0]), "gaps": [7]}
    client, _ = client_answering(lambda argv: doc)
    with pytest.raises(ProtocolError, match="malformed metric columns"):
        await client.metrics("gpu-01")
