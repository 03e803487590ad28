"""Several control-plane addresses and pinned host keys: lists, order, join strings."""

from __future__ import annotations

import base64

import msgspec
import pytest

from centrality_core import endpoints, joinstring
from centrality_core.endpoints import Rotation
from centrality_core.errors import UsageError

FP = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"
FP2 = "SHA256:Zr5tY0uQ8nB2cV6xL4pJ1hG9fD3sA7eWk3v9q2m8x1w"
TOKEN = "k3v9q2m8x1w7.Zr5tY0uQ8nB2cV6xL4pJ1hG9fD3sA7eW"


def test_lists_are_comma_separated_trimmed_and_deduplicated():
    assert endpoints.addresses(" cp1:8022, cp2:8022,,cp1:8022 ") == ["cp1:8022", "cp2:8022"]
    assert endpoints.addresses("[2001:db8::1]:8022,cp2") == ["[2001:db8::1]:8022", "cp2"]
    assert endpoints.fingerprints(f"{FP},{FP2}") == [FP, FP2]


@pytest.mark.parametrize("text, words", [("", "no control-plane address"), ("cp1:8022,cp2:x", "invalid address"),
                                         (",", "no control-plane address")])
def test_bad_address_lists(text, words):
    with pytest.raises(UsageError, match=words):
        endpoints.addresses(text)


def test_bad_fingerprint_list():
    with pytest.raises(UsageError, match="invalid host-key fingerprint 'MD5:aa'"):
        endpoints.fingerprints(f"{FP},MD5:aa")


def test_rotation_starts_with_the_address_that_last_worked():
    r = Rotation(["a:1", "b:2", "c:3"])
    assert r.round() == ["a:1", "b:2", "c:3"]
    r.worked("b:2")
    assert r.round() == ["b:2", "c:3", "a:1"] and r.current == "b:2"
    r.worked("a:1")
    assert r.round() == ["a:1", "b:2", "c:3"]
    assert Rotation(["lb:8022"]).round() == ["lb:8022"]


def test_a_fleet_given_one_list_of_replicas_spreads_over_them_and_each_machine_keeps_its_start():
    addresses = ["a:1", "b:2", "c:3"]
    firsts = [Rotation(addresses, spread=f"gpu-{i:03d}").round()[0] for i in range(300)]
    assert {a: firsts.count(a) for a in addresses} == pytest.approx({a: 100 for a in addresses}, abs=25)
    assert Rotation(addresses, spread="gpu-007").round() == Rotation(addresses, spread="gpu-007").round()
    assert sorted(Rotation(addresses, spread="gpu-007").round()) == addresses  # all tried, each once


def test_join_string_for_a_replica_set_round_trips():
    text = joinstring.encode("cp1:8022,cp2:8022", f"{FP},{FP2}", TOKEN)
    js = joinstring.decode(text)
    assert js.addresses == ["cp1:8022", "cp2:8022"] and js.fingerprints == [FP, FP2]
    assert (js.a, js.fp, js.t) == ("cp1:8022", FP, TOKEN)  # what an older agent reads


def test_single_address_join_string_is_as_before():
    """One address, one key: the same bytes an older control plane wrote, decoded as before."""
    old = "ctj1." + base64.urlsafe_b64encode(
        msgspec.json.encode({"a": "cp:8022", "fp": FP, "t": TOKEN})).decode().rstrip("=")
    assert joinstring.encode("cp:8022", FP, TOKEN) == old
    js = joinstring.decode(old)
    assert js.addresses == ["cp:8022"] and js.fingerprints == [FP]


def test_an_older_agent_reads_a_replica_join_string_as_its_first_replica():
    class OldJoinString(msgspec.Struct, kw_only=True):  # the decoder before replicas
        a: str
        fp: str
        t: str

    body = joinstring.encode("cp1:8022,cp2:8022", f"{FP},{FP2}", TOKEN)[len("ctj1."):]
    old = msgspec.json.decode(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)), type=OldJoinString)
    assert (old.a, old.fp, old.t) == ("cp1:8022", FP, TOKEN)


def test_pins_are_added_to_a_join_string():
    text = joinstring.with_pins(joinstring.encode("cp1:8022,cp2:8022", FP, TOKEN), [FP2, FP])
    js = joinstring.decode(text)
    assert js.fingerprints == [FP, FP2] and js.addresses == ["cp1:8022", "cp2:8022"] and js.t == TOKEN


def test_a_damaged_extra_pin_is_refused():
    raw = msgspec.json.encode({"a": "cp:1", "fp": FP, "t": TOKEN, "fps": ["MD5:aa"]})
    with pytest.raises(UsageError, match="damaged"):
        joinstring.decode("ctj1." + base64.urlsafe_b64encode(raw).decode().rstrip("="))
