"""Who may connect, and as what.

Every client logs in with its own SSH key. Keys recorded in the store carry a
role: ``agent``, ``operator`` or ``viewer``. On a shared Postgres the other
running replicas log in with their own keys, read from the ``replicas`` rows,
in the ``replica`` role (``peering.py``): they may make any request, which is
answered from this replica's own agents. A key the store does not know may
log in only as the user ``centrality-join``, in the restricted ``enrolling``
role: its one allowed act is a hello carrying a valid join token, which
enrols the key as an agent. The key cache is kept in memory so that
authentication (which a reconnect storm does thousands of times) never waits
on the database.

``Auth`` is given the store, the store writer (enrolment is a write), the read
pool and the control plane's ``Endpoint`` (a join string names its host key).
"""

from __future__ import annotations

import logging
import secrets
import time
from centrality_core import joinstring
from centrality_core.errors import RegistrationRefused, UsageError

from .endpoint import Endpoint
from .grouped import Grouped
from .peer import Peer
from .reads import StoreCall
from .store import Store
from .store.db import Enrolment
from .writer import StoreWriter

log = logging.getLogger("centrality.auth")

ROLES = ("agent", "operator", "viewer")
#: What each role may do in operator requests.
CAN_READ = {"operator", "viewer"}
CAN_WRITE = {"operator"}


class Auth:
    def __init__(self, store: Store, writer: StoreWriter, db: StoreCall, endpoint: Endpoint) -> None:
        self.store = store
        self.writer = writer
        self.db = db
        self.endpoint = endpoint
        self.keys: dict[str, dict] = {}  # fingerprint -> key row (active keys only)
        #: On a shared store (replicas): a key missing from the cache is looked up.
        self.shared = False
        self.connections: dict[str, set[Peer]] = {}
        #: Fingerprint -> name of the running peer replicas' keys (``set_replicas``).
        self.replica_keys: dict[str, str] = {}
        #: Enrolments that arrive together share a transaction (a fleet's first join).
        self._enrolments: Grouped[Enrolment, tuple] = Grouped(self._enrol_many)

    async def _enrol_many(self, requests: list[Enrolment]) -> list[tuple]:
        return await self.writer.call(self.store.enrol_many, requests, time.time())

    async def load(self) -> None:
        """(Re)read the key cache; connections of keys no longer active are closed."""
        rows = await self.db(self.store.list_keys)
        self.keys = {r["fingerprint"]: r for r in rows}
        for fp in [fp for fp in self.connections if fp not in self.keys and fp not in self.replica_keys]:
            self.revoked(fp)

    def set_replicas(self, keys: dict[str, str]) -> None:
        """The running peers' keys (fingerprint -> replica name); a peer that stopped or
        restarted with a new key has its connections closed."""
        gone = [fp for fp in self.replica_keys if keys.get(fp) != self.replica_keys[fp]]
        self.replica_keys = dict(keys)
        for fp in gone:
            for handler in list(self.connections.get(fp, ())):
                handler.close("replica no longer running")

    def replica_row(self, fingerprint: str) -> dict | None:
        name = self.replica_keys.get(fingerprint)
        return None if name is None else {"role": "replica", "name": name, "fingerprint": fingerprint}

    async def lookup(self, fingerprint: str) -> dict | None:
        """A key missing from the cache, read from the store (on a shared store, another
        replica may have added or enrolled it): cached when found."""
        if not self.shared:
            return None
        row = await self.db(self.store.find_key, fingerprint)
        if row is not None:
            self.keys[fingerprint] = row
            return row
        from .store import replicas  # a peer that started after our last round

        lease = await self.db(replicas.running_with_key, self.store, fingerprint, time.time())
        if lease is None:
            return None
        self.replica_keys[fingerprint] = lease.name
        return self.replica_row(fingerprint)

    def revoked(self, fingerprint: str) -> None:
        """A key was revoked (here or on another replica): forget it, close its connections."""
        self.keys.pop(fingerprint, None)
        for handler in list(self.connections.get(fingerprint, ())):
            handler.close("key revoked")

    def role_of(self, fingerprint: str) -> str | None:
        row = self.keys.get(fingerprint)
        return row["role"] if row else None

    def attach(self, handler: Peer) -> None:
        self.connections.setdefault(handler.fingerprint, set()).add(handler)

    def detach(self, handler: Peer) -> None:
        conns = self.connections.get(handler.fingerprint)
        if conns is not None:
            conns.discard(handler)
            if not conns:
                del self.connections[handler.fingerprint]

    # ------------------------------------------------------------------ keys

    async def add_key(self, *, name: str, role: str, public_key: str, actor: str) -> dict:
        import asyncssh

        if role not in ROLES:
            raise UsageError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        try:
            key = asyncssh.import_public_key(public_key)
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise UsageError(f"not an SSH public key: {exc}") from None
        row = await self.db(self.store.add_key, name=name, role=role,
                               fingerprint=key.get_fingerprint("sha256"),
                               public_key=key.export_public_key().decode().strip(),
                               created_by=actor, now=time.time())
        self.keys[row["fingerprint"]] = row
        return row

    async def revoke_key(self, name_or_fingerprint: str) -> list[dict]:
        """Revoke keys and disconnect every connection that used them, at once."""
        rows = await self.db(self.store.revoke_key, name_or_fingerprint, time.time())
        for row in rows:  # other replicas hear of it over NOTIFY (replica.py)
            self.revoked(row["fingerprint"])
        return rows

    # ------------------------------------------------------------------ join tokens

    async def create_token(self, *, ttl: float, uses: int, actor: str, address: str) -> dict:
        if uses < 1:
            raise UsageError("--uses must be at least 1")
        if ttl <= 0:
            raise UsageError("--ttl must be positive")
        token_id = secrets.token_hex(4)
        token = f"{token_id}.{secrets.token_urlsafe(24)}"
        now = time.time()
        await self.db(self.store.create_token, id=token_id,
                         secret_hash=joinstring.hash_secret(token), expires_at=now + ttl,
                         max_uses=uses, created_by=actor, now=now)
        return {
            "id": token_id, "expires_at": now + ttl, "uses": uses, "address": address,
            "fingerprint": self.endpoint.fingerprint,
            "join": joinstring.encode(address, self.endpoint.fingerprint, token),
        }

    async def enrol(self, handler: Peer, name: str, token: str | None) -> None:
        """Check a join token and enrol the connection's key as an agent key."""
        if not token:
            raise RegistrationRefused(
                "this key is not enrolled and no join token was presented; "
                "run `centrality agent join JOIN_STRING` first", code="not_enrolled")
        token_id = token.partition(".")[0]
        outcome, row, key = await self._enrolments(Enrolment(
            token=token, name=f"agent:{name}", role="agent", fingerprint=handler.fingerprint,
            public_key=handler.public_key))
        now = time.time()
        if outcome == "token_invalid":
            raise RegistrationRefused("join token is not valid for this control plane", code=outcome)
        if outcome == "token_revoked":
            raise RegistrationRefused(f"join token {token_id} was revoked", code=outcome)
        if outcome == "token_expired":
            raise RegistrationRefused(
                f"join token {token_id} expired {int(now - row['expires_at'])}s ago; "
                "create a new one with `centrality token create`", code=outcome)
        if outcome == "token_used":
            raise RegistrationRefused(
                f"join token {token_id} has already been used {row['max_uses']} time(s), "
                "its limit; create a new one with `centrality token create --uses N`", code=outcome)
        if key is not None:
            self.keys[key["fingerprint"]] = key
        handler.role = "agent"
        self.attach(handler)
        log.info("enrolled agent key %s for %s with token %s", handler.fingerprint, name, token_id)

    async def unenrol(self, handler: Peer, token: str | None) -> None:
        """Undo ``enrol`` when the registration it was for did not happen: the key
        is removed and the token's use given back, in one transaction."""
        token_id = (token or "").partition(".")[0]
        await self.writer.call(self.store.unenrol, fingerprint=handler.fingerprint, token_id=token_id)
        self.keys.pop(handler.fingerprint, None)
        self.detach(handler)
        handler.role = "enrolling"
        log.info("registration refused: agent key %s not kept, token %s use given back",
                 handler.fingerprint, token_id)
