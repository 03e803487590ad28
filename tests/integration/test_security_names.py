"""A machine's name belongs to the key that registered it; a refused hello enrols
nothing. Played as an attacker would: a holder of a join token, with its own key,
presenting the exact specs of a machine it wants to impersonate."""

from __future__ import annotations

import json

import pytest

from centrality_core import protocol as p
from tests.conftest import cli, wait_for
from tests.integration.hostile import RawAgent


@pytest.fixture(params=["sqlite"])
def store_url(request, tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


def _state(cp, name):
    m = cp.registry.fleet.get(name)
    return m.state.value if m else None


def _secret(token_row: dict) -> str:
    from centrality_core import joinstring

    return joinstring.decode(token_row["join"]).t


async def _keys(home) -> list[dict]:
    status, out, err = await cli(home, "keys", "ls", "--json")
    assert status == 0, err
    return json.loads(out)


async def _token_uses(cp, token_id: str) -> int:
    rows = await cp.db(cp.store.list_tokens)
    return next(r["uses"] for r in rows if r["id"] == token_id)


def _no_identity_in(reason: str, info: dict) -> None:
    for field in ("hostname", "machine_id", "cpu_model"):
        assert str(info[field]) not in reason, (field, reason)
    assert str(info["memory_total_bytes"] >> 20) not in reason


def _slow_death(cp):
    """Machines go to limbo fast but do not expire on their own during the test."""
    from centrality_core.lifecycle import Thresholds

    cp.registry.fleet.thresholds = Thresholds(0.2, 1.0, 300.0)


async def test_another_key_with_identical_specs_cannot_take_over_a_machine(control_plane, agents, home):
    _slow_death(control_plane)
    victim = await agents("victim-01", index=3)
    machine_id = control_plane.registry.fleet.get("victim-01").id
    info = control_plane.registry.records["victim-01"].info  # the attacker knows it all
    await victim.stop()
    await wait_for(lambda: _state(control_plane, "victim-01") == "limbo", what="limbo")
    token = await control_plane.auth.create_token(ttl=600, uses=10, actor="test", address=control_plane.address)
    keys_before = await _keys(home)

    for state in ("limbo", "dead"):
        impostor = await RawAgent.connect(control_plane, enrolling=True)
        answer = await impostor.hello("victim-01", info, token=_secret(token))
        assert isinstance(answer, p.Rejected) and answer.code == "name_owned", answer
        _no_identity_in(answer.reason, info)
        assert "machines release victim-01" in answer.reason  # what an operator can do about it
        m = control_plane.registry.fleet.get("victim-01")
        assert (m.state.value, m.id) == (state, machine_id)
        # nothing enrolled, no token use spent
        assert await _keys(home) == keys_before
        assert await _token_uses(control_plane, token["id"]) == 0
        if state == "limbo":
            status, _, err = await cli(home, "machines", "forget", "victim-01")
            assert status == 0, err

    # an operator's exec cannot land on the impostor: the machine is not live
    status, out, _ = await cli(home, "exec", "victim-01", "--json", "--", "true")
    assert json.loads(out)["machines"] == []

    # the real machine, over its own key, comes back as itself
    back = await agents(config_dir=victim.config_dir, index=3)
    assert back.agent.state.registered
    assert control_plane.registry.fleet.get("victim-01").id == machine_id
    status, out, _ = await cli(home, "events", "--machine", "victim-01", "--json")
    refusals = [e for e in json.loads(out) if e["kind"] == "registration_refused"]
    assert len(refusals) == 2 and all("another key" in e["reason"] for e in refusals)


async def test_release_lets_a_reinstalled_machine_continue_under_its_new_key(control_plane, agents, home):
    _slow_death(control_plane)
    old = await agents("node-07", index=7)
    machine_id = control_plane.registry.fleet.get("node-07").id
    await old.stop()
    await wait_for(lambda: _state(control_plane, "node-07") == "limbo", what="limbo")

    # re-installed with a wiped config: same hardware, a new key -> refused until released
    with pytest.raises(Exception) as err:
        await agents("node-07", index=7)
    assert getattr(err.value, "code", "") == "name_owned"
    status, out, err_text = await cli(home, "machines", "release", "node-07")
    assert status == 0, err_text
    assert "released" in out

    fresh = await agents("node-07", index=7)
    assert fresh.agent.state.registered
    m = control_plane.registry.fleet.get("node-07")
    assert m.id == machine_id and m.owner == fresh.agent.key.get_fingerprint("sha256")
    status, out, _ = await cli(home, "machines", "show", "node-07", "--json")
    shown = json.loads(out)
    assert shown["key_fingerprint"] == m.owner
    assert [e["kind"] for e in shown["events"]][:2] == ["reconnected", "released"]


async def test_forgetting_a_dead_machine_removes_it_and_frees_the_name(control_plane, agents, home):
    _slow_death(control_plane)
    a = await agents("gone-01", index=4)
    await a.stop()
    await wait_for(lambda: _state(control_plane, "gone-01") == "limbo", what="limbo")
    assert (await cli(home, "machines", "forget", "gone-01"))[1].strip() == "gone-01: now dead"
    status, out, _ = await cli(home, "machines", "forget", "gone-01")
    assert status == 0 and "removed" in out
    status, out, _ = await cli(home, "machines", "ls", "--json")
    assert "gone-01" not in out
    status, _, err = await cli(home, "machines", "show", "gone-01")
    assert status == 9 and "no machine named" in err
    # anyone may now register the name, as a new machine
    b = await agents("gone-01", index=4)
    assert b.agent.state.registered and control_plane.registry.fleet.get("gone-01").state.value == "live"


async def test_refused_registrations_enrol_no_key_and_give_the_token_use_back(control_plane, agents, home):
    await agents("dup-1", index=1)
    token = await control_plane.auth.create_token(ttl=600, uses=10, actor="test", address=control_plane.address)
    keys_before = await _keys(home)
    for attempt in range(3):
        with pytest.raises(Exception) as err:
            await agents("dup-1", index=20 + attempt, token=token)
        assert getattr(err.value, "code", "") == "name_in_use"
    assert await _keys(home) == keys_before
    assert not [k for k in keys_before if k["name"] == "agent:dup-1" and k["created_by"] == f"token:{token['id']}"]
    assert await _token_uses(control_plane, token["id"]) == 0

    # the same token still works for a name that is free
    ok = await agents("dup-2", index=2, token=token)
    assert ok.agent.state.registered
    assert await _token_uses(control_plane, token["id"]) == 1


async def test_a_name_taken_while_the_token_is_checked_leaves_no_key(control_plane, agents, home, monkeypatch):
    """The registry's check and the registration are one tick apart from the store's
    enrolment: when the name is taken in between, the enrolment is undone."""
    await agents("race-1", index=1)
    token = await control_plane.auth.create_token(ttl=600, uses=5, actor="test", address=control_plane.address)
    keys_before = await _keys(home)
    monkeypatch.setattr(control_plane.registry, "check", lambda *a: None)  # as if it were free at check time
    raw = await RawAgent.connect(control_plane, enrolling=True)
    info = dict(control_plane.registry.records["race-1"].info, hostname="other-host")
    answer = await raw.hello("race-1", info, token=_secret(token))
    assert isinstance(answer, p.Rejected) and answer.code == "name_in_use"
    assert await _keys(home) == keys_before
    assert await _token_uses(control_plane, token["id"]) == 0
