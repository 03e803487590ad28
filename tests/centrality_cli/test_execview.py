"""What ``centrality exec`` prints when a replica could not run its part of a run."""

from __future__ import annotations

import io
import json

from centrality_cli.execview import ExecView
from centrality_core.documents import ExecExit, ExecStart, ExecSummary

WHY = "replica cp-b: SSH connection lost"


def _feed(view: ExecView) -> None:
    view.feed(ExecStart(id="x", argv=["true"], machines=["a1", "b1", "b2"]))
    view.feed(ExecExit(machine="a1", status="ok", exit_code=0, code=0))
    for name in ("b1", "b2"):
        view.feed(ExecExit(machine=name, status="unreachable", code=255, error=WHY))
    view.feed(ExecSummary(id="x", exit_code=255, counts={"ok": 1, "unreachable": 2}, replicas_failed={"cp-b": WHY}))


def test_the_summary_names_the_replica_that_failed_and_how_many_machines_it_cost():
    out, err = io.StringIO(), io.StringIO()
    view = ExecView(fold=True, out=out, err=err)
    _feed(view)
    view.finish()
    assert err.getvalue().splitlines() == [
        f"b[1-2]: unreachable ({WHY})",
        f"replica cp-b failed its part of the run (2 machines): {WHY}",
        "3 machines: 2 unreachable, 1 ok"]
    assert view.exit_code == 255


def test_the_json_document_carries_the_failed_replicas():
    out = io.StringIO()
    view = ExecView(as_json=True, out=out, err=io.StringIO())
    _feed(view)
    view.finish()
    doc = json.loads(out.getvalue())
    assert doc["replicas_failed"] == {"cp-b": WHY} and doc["exit_code"] == 255
