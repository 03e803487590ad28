"""What an agent's session and an operator's request are given to work with.

Each part of the control plane is built with the few collaborators it uses
(the server module wires them once); these two bundles are for the two
places that really use several: an agent's protocol session and the operator
requests. Frozen: a session or request uses the parts, it never swaps them.
"""

from __future__ import annotations

from dataclasses import dataclass

from centrality_core.settings import ServerSettings

from .admission import Admission
from .auth import Auth
from .compactor import Compactor
from .endpoint import Endpoint
from .flags import FlagKeeper
from .holds import MetricHolds
from .hooks import Hooks
from .ingest import Ingest
from .peering import Peers
from .readpause import ReadPriority
from .reads import MetricReads, StoreCall
from .registry import Registry
from .router import CommandRouter
from .store import Store
from .store.chunks import Chunks
from .views import Changes
from .writer import StoreWriter


@dataclass(frozen=True)
class AgentServices:
    """What ``AgentSession`` uses: registration, key enrolment, metrics, health, runs."""

    registry: Registry
    auth: Auth
    ingest: Ingest
    flags: FlagKeeper
    commands: CommandRouter
    endpoint: Endpoint
    #: Which agents hold their metrics back in a storm (holds.py).
    holds: MetricHolds
    #: Largest frame an agent may send (``max_frame_bytes``).
    max_frame_bytes: int


@dataclass(frozen=True)
class RequestServices:
    """What the operator requests (``requests/``) use."""

    settings: ServerSettings
    endpoint: Endpoint
    registry: Registry
    flags: FlagKeeper
    ingest: Ingest
    holds: MetricHolds
    #: How late the event loop runs; agents' reads paused for the others (readpause.py).
    read_priority: ReadPriority
    metric_reads: MetricReads
    changes: Changes
    commands: CommandRouter
    hooks: Hooks
    auth: Auth
    admission: Admission
    writer: StoreWriter
    store: Store
    chunks: Chunks
    compactor: Compactor
    #: The other replicas (none on SQLite): fleet-wide requests ask them too.
    peers: Peers
    #: A blocking store call, run on a read thread (``reads.ReadPool.run``).
    db: StoreCall
