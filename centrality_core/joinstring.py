"""Join strings: how an agent learns where the control plane is and proves it may join.

A join string is ``ctj1.`` followed by base64url of a small JSON object::

    {"a": "HOST:PORT", "fp": "SHA256:...", "t": "TOKEN_ID.SECRET"}

``a`` is where to connect, ``fp`` the control plane's host-key fingerprint to
pin, ``t`` the token. The control plane stores only a hash of the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import msgspec

from .errors import UsageError

PREFIX = "ctj1."


class JoinString(msgspec.Struct, kw_only=True):
    a: str
    fp: str
    t: str

    @property
    def token_id(self) -> str:
        return self.t.partition(".")[0]


def encode(address: str, fingerprint: str, token: str) -> str:
    raw = msgspec.json.encode(JoinString(a=address, fp=fingerprint, t=token))
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


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
    if "." not in js.t or not js.fp.startswith("SHA256:"):
        raise UsageError("join string is damaged: copy it again from `centrality token create`")
    return js


def hash_secret(token: str) -> str:
    """What the store keeps of a token: SHA-256 of the whole ``id.secret``."""
    return hashlib.sha256(token.encode()).hexdigest()


def secret_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(token), stored_hash)
