"""Join strings: how an agent learns where the control plane is and proves it may join.

A join string is ``ctj1.`` followed by base64url of a small JSON object::

    {"a": "HOST:PORT", "fp": "SHA256:...", "t": "TOKEN_ID.SECRET"}

``a`` is where to connect, ``fp`` the control plane's host-key fingerprint to
pin, ``t`` the token. The control plane stores only a hash of the secret.

A replica set adds, when it has them, ``"as": ["HOST2:PORT", ...]`` (more
addresses, tried after ``a`` in turn) and ``"fps": ["SHA256:...", ...]`` (more
host keys to pin, accepted from any address). Agents older than these fields
ignore them and use ``a`` and ``fp``: a join string for several replicas
still joins an old agent to the first one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import msgspec

from . import endpoints
from .errors import UsageError

PREFIX = "ctj1."


class JoinString(msgspec.Struct, kw_only=True, omit_defaults=True):
    a: str
    fp: str
    t: str
    more_addresses: list[str] = msgspec.field(default_factory=list, name="as")
    more_fingerprints: list[str] = msgspec.field(default_factory=list, name="fps")

    @property
    def token_id(self) -> str:
        return self.t.partition(".")[0]

    @property
    def addresses(self) -> list[str]:
        """Every address, in the order to try them."""
        return endpoints.split(",".join([self.a, *self.more_addresses]))

    @property
    def fingerprints(self) -> list[str]:
        """Every host key to pin."""
        return endpoints.split(",".join([self.fp, *self.more_fingerprints]))


def encode(address: str, fingerprint: str, token: str) -> str:
    """``address`` and ``fingerprint`` may each be a comma-separated list (a replica set)."""
    addresses, fps = endpoints.split(address), endpoints.split(fingerprint)
    raw = msgspec.json.encode(JoinString(a=addresses[0], fp=fps[0], t=token, more_addresses=addresses[1:],
                                         more_fingerprints=fps[1:]))
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def with_pins(text: str, fingerprints: list[str]) -> str:
    """The join string ``text`` with more host keys pinned (``token create --pin``)."""
    js = decode(text)
    return encode(endpoints.join(js.addresses), endpoints.join([*js.fingerprints, *fingerprints]), js.t)


def decode(text: str) -> JoinString:
    text = text.strip()
    if not text.startswith(PREFIX):
        raise UsageError("not a join string: it should start with 'ctj1.' (from `centrality token create`)")
    body = text[len(PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        js = msgspec.json.decode(raw, type=JoinString)
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise UsageError("join string is damaged: copy it again from `centrality token create`") from None
    if "." not in js.t or not all(fp.startswith("SHA256:") for fp in js.fingerprints) or not js.addresses:
        raise UsageError("join string is damaged: copy it again from `centrality token create`")
    return js


def hash_secret(token: str) -> str:
    """What the store keeps of a token: SHA-256 of the whole ``id.secret``."""
    return hashlib.sha256(token.encode()).hexdigest()


def secret_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(token), stored_hash)
