"""``--json`` printing: one indented document; what an agent wrote cannot drive the terminal."""

from __future__ import annotations

import json

from centrality_cli import output


def test_an_ascii_document_is_printed_as_encoded(capsys):
    value = [{"name": "gpu-01", "labels": {"pool": "eval"}, "cpu": 12.5}]
    output.print_json(value)
    out = capsys.readouterr().out
    assert out == json.dumps(value, indent=2) + "\n"


def test_c1_and_bidi_controls_are_printed_escaped_and_decode_the_same(capsys):
    value = {"hostname": "a\x9b31mb", "labels": {"team": "m\u202el"}, "os": "Ubuntu ü"}
    output.print_json(value)
    out = capsys.readouterr().out
    assert "\x9b" not in out and "\u202e" not in out
    assert "\\u009b" in out and "\\u202e" in out and "ü" in out
    assert json.loads(out) == value
