"""``bench/minute_staging.py`` runs end to end on a small fleet and reports both forms."""

from __future__ import annotations

import sys

from bench import minute_staging


def test_the_minute_bench_reports_json_beside_staged(monkeypatch):
    written = {}
    monkeypatch.setattr(minute_staging.report, "write",
                        lambda name, command, results, md: written.update(name=name, results=results, md=md))
    monkeypatch.setattr(sys, "argv", ["minute_staging", "--machines", "1", "--keys", "16", "--reps", "1"])
    minute_staging.main()
    r = written["results"]
    assert written["name"] == "minute_staging" and r["batches"] == 720  # an hour of 5-sample batches
    for figure in ("build_us", "encode_us", "compact_us_per_batch"):
        assert set(r[figure]) == {"json", "staged"} and all(v > 0 for v in r[figure].values())
    assert "| staged |" in written["md"] and "| json |" in written["md"]
