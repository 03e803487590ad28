"""A failure the command output cannot explain is kept by the run that had it
(``DeployState.failures``), not in a module-wide table."""

from __future__ import annotations

from types import SimpleNamespace

from pyinfra.api import State

from provision import ops


def test_a_failure_is_recorded_in_its_runs_state_only():
    first, second = ops.DeployState(check_for_changes=True), ops.DeployState(check_for_changes=True)
    host = SimpleNamespace(name="gpu-01")
    assert ops._failed(first, host, "install failed: cannot make a join token: no context") is False
    assert first.failures.reason("gpu-01") == "install failed: cannot make a join token: no context"
    assert second.failures.reason("gpu-01") == "" and first.failures.reason("gpu-02") == ""


def test_under_the_plain_pyinfra_command_the_operation_still_fails():
    assert ops._failed(State(check_for_changes=True), SimpleNamespace(name="gpu-01"), "why") is False
