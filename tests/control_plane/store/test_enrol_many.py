"""Enrolling many keys in one transaction decides as enrolling them one by one would."""

from __future__ import annotations

from centrality_core import joinstring
from control_plane.store.db import Enrolment


def _token(store, id: str, uses: int, *, expires_at: float = 1e12) -> str:
    token = f"{id}.secret-{id}"
    store.create_token(id=id, secret_hash=joinstring.hash_secret(token), expires_at=expires_at,
                       max_uses=uses, created_by="test", now=0.0)
    return token


def _req(token: str, i: int) -> Enrolment:
    return Enrolment(token=token, name=f"agent:m{i}", role="agent", fingerprint=f"SHA256:fp{i}",
                     public_key=f"ssh-ed25519 AAAA{i}")


def test_outcomes_in_order_per_token_and_key_rows_as_find_key_reads_them(store):
    a, b = _token(store, "aaaa", 2), _token(store, "bbbb", 5)
    expired = _token(store, "cccc", 5, expires_at=50.0)
    reqs = [_req(a, 0), _req(b, 1), _req(a, 2), _req(a, 3), _req("aaaa.wrong", 4), _req(expired, 5),
            _req("zzzz.nope", 6), _req(b, 1)]  # the same key twice in one batch
    out = store.enrol_many(reqs, now=100.0)
    assert [o for o, _, _ in out] == ["ok", "ok", "ok", "token_used", "token_invalid", "token_expired",
                                      "token_invalid", "ok"]
    for (outcome, _, key), r in zip(out, reqs):
        if outcome == "ok":
            assert key == store.find_key(r.fingerprint) and key["created_by"] == f"token:{r.token[:4]}"
        else:
            assert key is None
    assert out[0][2]["name"] == "agent:m0" and out[1][2] == out[7][2]
    assert store.get_token("aaaa")["uses"] == 2 and store.get_token("bbbb")["uses"] == 2
    assert store.get_token("cccc")["uses"] == 0
    assert len(store.list_keys()) == 3  # m0, m1 (once), m2


def test_a_revoked_key_enrolled_again_is_reinstated_and_a_revoked_token_refuses(store):
    t = _token(store, "dddd", 3)
    assert store.enrol_many([_req(t, 0)], now=1.0)[0][0] == "ok"
    store.revoke_key("agent:m0", now=2.0)
    assert store.find_key("SHA256:fp0") is None
    outcome, _, key = store.enrol_many([_req(t, 0)], now=3.0)[0]
    assert outcome == "ok" and key["revoked_at"] is None and key["created_at"] == 3.0
    store.revoke_token("dddd", now=4.0)
    assert store.enrol_many([_req(t, 9)], now=5.0)[0][0] == "token_revoked"
    assert store.enrol(token=t, now=5.0, name="agent:m9", role="agent", fingerprint="SHA256:fp9",
                       public_key="x")[0] == "token_revoked"
