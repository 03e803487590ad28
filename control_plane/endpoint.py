"""What this control plane is and where it listens: known in part only once it
has started (the host key is loaded, the port is bound), so start-up fills it
in and the parts that answer with it (tokens, ``status``, the agent's
``registered``) read it when they answer."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Endpoint:
    #: The control plane's version (sent to agents, shown by ``status``).
    version: str
    #: When the process started (Unix time).
    started_at: float
    #: SHA256 fingerprint of the host key, which clients pin.
    fingerprint: str = ""
    #: Where it listens, HOST:PORT (port resolved).
    address: str = ""
    #: Where agents should connect (join strings name it).
    advertise: str = ""
    #: Its name among replicas on Postgres (``store/replicas.py``); "" on SQLite.
    replica: str = ""
    #: Background tasks (store writer, sweeper, ...) that ended with an error: name -> error.
    #: None should; ``status`` reports any as a problem, since what it did has stopped.
    failed_tasks: dict[str, str] = field(default_factory=dict)
