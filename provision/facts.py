"""The pyinfra fact behind the deploys: a host's Centrality state in one round trip."""

from __future__ import annotations

from pyinfra.api import FactBase

from . import hoststate
from .settings import Layout


class AgentHost(FactBase):
    """Python, virtualenv, installed wheel, join, service state under a prefix.

    Returns a ``provision.hoststate.HostState``.
    """

    def command(self, prefix: str, python: str, service: str) -> str:
        return hoststate.command(Layout(prefix), python, service)

    @staticmethod
    def default() -> hoststate.HostState:
        return hoststate.HostState()

    def process(self, output: list[str]) -> hoststate.HostState:
        return hoststate.parse(output)
