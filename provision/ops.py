"""The pyinfra operations of the deploy that stock pyinfra does not have.

``join``
    make a fresh single-use join token (at execution time, never in a dry run),
    and run ``centrality agent join -`` on the host with the join string on stdin:
    the agent's key is generated there and never leaves it; the secret is never on
    a command line, in a file or in a log.
``agent_settings``
    rewrite the machine name and labels in an existing ``agent.toml``.

A failure the commands' output cannot explain (no join token could be made) is
recorded with its reason in the run's ``DeployState.failures``; the runner
(``worker.py``) makes the run's pyinfra state a ``DeployState`` and shows the
reason in the final table.
"""

from __future__ import annotations

import json
import shlex

from pyinfra.api import FunctionCommand, State, StringCommand, operation

from . import tokens
from .settings import Layout

_SET_NAME_AND_LABELS = (
    "import json, sys\n"
    "from pathlib import Path\n"
    "from agent_runtime import config\n"
    "d = Path(sys.argv[1])\n"
    "cfg = config.load(d)\n"
    "cfg.name, cfg.labels = sys.argv[2], json.loads(sys.argv[3])\n"
    "config.save(d, cfg)\n"
)


class Failures:
    """Per inventory host name, a one-line reason for a failure the command output does not explain."""

    def __init__(self) -> None:
        self._reasons: dict[str, str] = {}

    def record(self, host: str, reason: str) -> None:
        self._reasons[host] = reason

    def reason(self, host: str) -> str:
        return self._reasons.get(host, "")


class DeployState(State):
    """pyinfra's state of one run, holding what this deploy's operations report beyond their output."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.failures = Failures()


def _failed(state, host, reason: str) -> bool:
    """A command that fails with ``reason`` (the plain pyinfra command shows only that it failed)."""
    if isinstance(state, DeployState):
        state.failures.record(host.name, reason)
    return False


@operation(is_idempotent=False)
def join(layout: Layout, machine: str, labels: dict[str, str], address: str = "", given: str = ""):
    """Join the control plane: fresh token, key generated on the host, name and labels."""
    q = shlex.quote
    yield StringCommand("install", "-d", "-m", "700", q(layout.config_dir))
    # Only reached when executing (a dry run stops at the first command above).
    try:
        join_string = tokens.join_string(given=given, address=address)
    except tokens.TokenError as exc:
        yield FunctionCommand(_failed, (f"install failed: cannot make a join token: {exc}",), {})
        return
    label_args = [a for k, v in sorted(labels.items()) for a in ("--label", q(f"{k}={v}"))]
    yield StringCommand(q(layout.centrality), "agent", "join", "-", "--name", q(machine), *label_args,
                        "--config-dir", q(layout.config_dir), _stdin=join_string)


@operation(is_idempotent=False)
def agent_settings(layout: Layout, machine: str, labels: dict[str, str]):
    """Set the machine name and labels in the agent's existing config."""
    q = shlex.quote
    yield StringCommand(q(layout.python), "-c", q(_SET_NAME_AND_LABELS), q(layout.config_dir), q(machine),
                        q(json.dumps(labels, sort_keys=True)))

