"""Join strings, settings precedence, operator contexts and reconnect backoff."""

from __future__ import annotations

import base64
import os
import random
import stat

import msgspec
import pytest

from centrality_core.backoff import Backoff
from centrality_core import contexts, joinstring
from centrality_core.errors import ConfigError, UsageError
from centrality_core.settings import ServerSettings, config_file, resolve_server

FP = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"
TOKEN = "k3v9q2m8x1w7.Zr5tY0uQ8nB2cV6xL4pJ1hG9fD3sA7eW"

# ---------------------------------------------------------------- join strings


@pytest.mark.parametrize("address", ["cp.example.com:8022", "10.0.0.5:22", "[2001:db8::1]:8022"])
def test_join_string_round_trip(address):
    text = joinstring.encode(address, FP, TOKEN)
    assert text.startswith("ctj1.")
    assert "=" not in text and "\n" not in text and " " not in text  # copy-paste friendly
    js = joinstring.decode(text)
    assert (js.a, js.fp, js.t) == (address, FP, TOKEN)
    assert js.token_id == "k3v9q2m8x1w7"


def test_join_string_tolerates_surrounding_whitespace():
    text = joinstring.encode("h:1", FP, TOKEN)
    assert joinstring.decode(f"  {text}\n").t == TOKEN


def _raw(obj) -> str:
    return "ctj1." + base64.urlsafe_b64encode(msgspec.json.encode(obj)).decode().rstrip("=")


@pytest.mark.parametrize("text", [
    "ctj1.",
    "ctj1.!!!!",
    "ctj1.bm90IGpzb24",                                   # "not json"
    _raw({"a": "h:1", "fp": FP}),                         # missing token
    _raw({"a": "h:1", "fp": FP, "t": 5}),                 # wrong type
    _raw({"a": "h:1", "fp": FP, "t": "no-dot-in-token"}),
    _raw({"a": "h:1", "fp": "MD5:aa:bb", "t": TOKEN}),
    _raw([1, 2, 3]),
])
def test_damaged_join_string(text):
    with pytest.raises(UsageError) as info:
        joinstring.decode(text)
    assert "damaged" in str(info.value)
    assert "centrality token create" in str(info.value)


def test_truncated_join_string_is_damaged():
    text = joinstring.encode("cp.example.com:8022", FP, TOKEN)
    for cut in (10, len(text) // 2, len(text) - 3):
        with pytest.raises(UsageError, match="damaged"):
            joinstring.decode(text[:cut])


@pytest.mark.parametrize("text", ["", "hello", "ctj2.abc", TOKEN, "CTJ1.abc"])
def test_not_a_join_string(text):
    with pytest.raises(UsageError, match="ctj1"):
        joinstring.decode(text)


def test_hash_and_secret_matches():
    h = joinstring.hash_secret(TOKEN)
    assert len(h) == 64 and int(h, 16) >= 0
    assert h == joinstring.hash_secret(TOKEN)
    assert TOKEN.split(".")[1] not in h
    assert joinstring.secret_matches(TOKEN, h)
    assert not joinstring.secret_matches(TOKEN + "x", h)
    assert not joinstring.secret_matches("k3v9q2m8x1w7.wrong", h)
    assert not joinstring.secret_matches(TOKEN, joinstring.hash_secret("other.token"))
    assert not joinstring.secret_matches(TOKEN, "")


# ---------------------------------------------------------------- settings


def _write_config(home, text: str):
    path = home / ".config" / "centrality" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_any_configuration(home):
    s = resolve_server()
    assert s == ServerSettings()
    assert (s.listen, s.heartbeat_interval, s.limbo_after, s.dead_after) == ("127.0.0.1:8022", 5.0, 15.0, 600.0)
    assert s.max_frame_bytes == 1024 * 1024
    assert s.db_url() == f"sqlite:///{home}/.local/share/centrality/server/centrality.db"
    assert config_file() == home / ".config" / "centrality" / "config.toml"


def test_precedence_defaults_file_env_flags(home, monkeypatch):
    _write_config(home, """
[server]
listen = "0.0.0.0:9000"
advertise = "cp.example.com:9000"
limbo_after = "30m"
dead_after = 7200
db = "sqlite:////from/file.db"

[agent]
name = "ignored-here"
""")
    monkeypatch.setenv("CENTRALITY_LIMBO_AFTER", "20")
    monkeypatch.setenv("CENTRALITY_DB", "sqlite:////from/env.db")
    monkeypatch.setenv("CENTRALITY_ADVERTISE", "env.example.com:9000")
    s = resolve_server({"db": "sqlite:////from/flags.db", "advertise": None, "dead_after": None})
    assert s.listen == "0.0.0.0:9000"                   # file over default
    assert s.limbo_after == 20.0                        # env over file
    assert s.advertise == "env.example.com:9000"        # env, the flag was not given (None)
    assert s.db == "sqlite:////from/flags.db"           # flag over env
    assert s.dead_after == 7200.0                       # file
    assert s.heartbeat_interval == 5.0                  # default
    assert s.db_url() == "sqlite:////from/flags.db"


def test_file_values_are_used_without_env_or_flags(home):
    _write_config(home, '[server]\nlimbo_after = "30m"\nheartbeat_interval = "2s"\nmax_frame_bytes = 4096\n')
    s = resolve_server()
    assert (s.limbo_after, s.heartbeat_interval, s.max_frame_bytes) == (1800.0, 2.0, 4096)


def test_env_durations_and_numbers(home, monkeypatch):
    monkeypatch.setenv("CENTRALITY_DEAD_AFTER", "30m")
    monkeypatch.setenv("CENTRALITY_HEARTBEAT_INTERVAL", "250ms")
    monkeypatch.setenv("CENTRALITY_MAX_FRAME_BYTES", "65536")
    s = resolve_server()
    assert s.dead_after == 1800.0 and s.heartbeat_interval == 0.25 and s.max_frame_bytes == 65536


def test_flag_durations_accept_text_and_numbers(home):
    s = resolve_server({"limbo_after": "1m", "dead_after": 90, "heartbeat_interval": 0.2})
    assert (s.limbo_after, s.dead_after, s.heartbeat_interval) == (60.0, 90.0, 0.2)


def test_centrality_config_names_another_file(home, monkeypatch, tmp_path):
    _write_config(home, '[server]\nlisten = "1.1.1.1:1"\n')
    other = tmp_path / "other.toml"
    other.write_text('[server]\nlisten = "2.2.2.2:2"\n')
    monkeypatch.setenv("CENTRALITY_CONFIG", str(other))
    assert config_file() == other
    assert resolve_server().listen == "2.2.2.2:2"


def test_xdg_config_home_is_honoured(home, monkeypatch, tmp_path):
    xdg = tmp_path / "xdg"
    (xdg / "centrality").mkdir(parents=True)
    (xdg / "centrality" / "config.toml").write_text('[server]\nlisten = "3.3.3.3:3"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert resolve_server().listen == "3.3.3.3:3"


@pytest.mark.parametrize("text", [
    "[server\nlisten = 1",                       # not TOML
    'server = "flat"',                           # [server] must be a table
    '[server]\nlisten = 8022',                   # wrong type
    '[server]\nlistne = "0.0.0.0:1"',            # typo: unknown key
    '[server]\nheartbeat_interval = "fast"',     # bad duration
    '[server]\nmax_frame_bytes = "big"',
])
def test_invalid_config_file(home, text):
    path = _write_config(home, text)
    with pytest.raises((ConfigError, UsageError)) as info:
        resolve_server()
    if isinstance(info.value, ConfigError):
        assert str(path) in str(info.value) or "invalid server settings" in str(info.value)


@pytest.mark.parametrize("text", [
    "[server]\nheartbeat_interval = [5]",
    "[server]\ndead_after = { seconds = 5 }",
    "[server]\nmax_frame_bytes = [1]",
])
def test_config_values_of_the_wrong_toml_type_are_config_errors(home, text):
    _write_config(home, text)
    with pytest.raises((ConfigError, UsageError)):
        resolve_server()


@pytest.mark.parametrize("var, value", [
    ("CENTRALITY_DEAD_AFTER", "soon"),
    ("CENTRALITY_LIMBO_AFTER", "-5"),
    ("CENTRALITY_MAX_FRAME_BYTES", "1MB"),
])
def test_invalid_env_values_are_usage_errors(home, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(UsageError):
        resolve_server()


def test_invalid_flag_value(home):
    with pytest.raises(UsageError):
        resolve_server({"limbo_after": "10 minutes"})
    with pytest.raises(ConfigError):
        resolve_server({"listen": 8022})


def test_data_dir_setting_moves_the_sqlite_store(home, tmp_path):
    s = resolve_server({"data_dir": str(tmp_path / "srv")})
    assert s.server_dir() == tmp_path / "srv"
    assert s.db_url() == f"sqlite:///{tmp_path / 'srv' / 'centrality.db'}"


# ---------------------------------------------------------------- contexts


def _ctx(addr="127.0.0.1:8022", key="/k/id_ed25519") -> contexts.Context:
    return contexts.Context(address=addr, fingerprint=FP, key=key)


def test_no_context_configured(home):
    with pytest.raises(ConfigError, match="centrality server"):
        contexts.resolve()


def test_put_and_resolve_contexts(home, monkeypatch):
    contexts.put("local", _ctx())
    assert contexts.resolve() == ("local", _ctx())           # first one becomes current
    contexts.put("prod", _ctx("cp.example.com:8022", "/k/prod"))
    assert contexts.resolve()[0] == "local"                  # not switched implicitly
    assert contexts.resolve("prod") == ("prod", _ctx("cp.example.com:8022", "/k/prod"))
    monkeypatch.setenv("CENTRALITY_CONTEXT", "prod")
    assert contexts.resolve()[0] == "prod"                   # env over current
    assert contexts.resolve("local")[0] == "local"           # flag over env
    monkeypatch.delenv("CENTRALITY_CONTEXT")
    contexts.put("staging", _ctx("st:1"), make_current=True)
    assert contexts.resolve() == ("staging", _ctx("st:1"))
    # the file is private and holds everything
    path = contexts.path()
    assert path == home / ".config" / "centrality" / "contexts.toml"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    saved = contexts.load()
    assert saved.current == "staging" and set(saved.contexts) == {"local", "prod", "staging"}
    assert saved.contexts["local"].user == "operator"


def test_put_replaces_a_context(home):
    contexts.put("local", _ctx("a:1"))
    contexts.put("local", _ctx("b:2"))
    assert contexts.resolve("local")[1].address == "b:2"


def test_unknown_context_lists_known_ones(home):
    contexts.put("local", _ctx())
    contexts.put("prod", _ctx())
    with pytest.raises(ConfigError) as info:
        contexts.resolve("staging")
    assert "'staging'" in str(info.value) and "local, prod" in str(info.value)


def test_damaged_contexts_file(home):
    path = contexts.path()
    path.parent.mkdir(parents=True)
    path.write_text("current = [")
    with pytest.raises(ConfigError, match="contexts.toml"):
        contexts.resolve()


@pytest.mark.parametrize("address, expected", [
    ("cp.example.com:8022", ("cp.example.com", 8022)),
    ("10.0.0.5:22", ("10.0.0.5", 22)),
    ("cp.example.com", ("cp.example.com", 8022)),
    ("[::1]:8022", ("::1", 8022)),
    ("[2001:db8::1]:9000", ("2001:db8::1", 9000)),
    ("[::1]", ("::1", 8022)),
    ("::1", ("::1", 8022)),
    ("localhost:0", ("localhost", 0)),
    ("h:65535", ("h", 65535)),
])
def test_split_address(address, expected):
    assert contexts.split_address(address) == expected


def test_split_address_default_port():
    assert contexts.split_address("cp", default_port=22) == ("cp", 22)


@pytest.mark.parametrize("address", [
    "h:65536", "h:-1", "h:port", "h:", ":8022", "[::1]:", "[::1]:abc", "[]:8022", "", "[::1]:70000",
])
def test_split_address_rejects_bad_addresses(address):
    with pytest.raises(UsageError, match="invalid address"):
        contexts.split_address(address)


@pytest.mark.parametrize("address", ["[::1]junk", "[::1", "[::1]8022"])
def test_split_address_rejects_junk_after_ipv6_bracket(address):
    with pytest.raises(UsageError):
        contexts.split_address(address)


# ---------------------------------------------------------------- backoff


def test_backoff_grows_with_jitter_and_caps():
    b = Backoff(initial=0.5, maximum=30.0, factor=2.0, rng=random.Random(3))
    ceilings = [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    delays = [b.next() for _ in ceilings]
    for delay, ceiling in zip(delays, ceilings):
        assert ceiling / 2 <= delay <= ceiling, (delay, ceiling)
    assert b.attempt == len(ceilings)
    assert max(delays) <= 30.0
    assert delays[5] > delays[0]


def test_backoff_is_jittered():
    firsts = {Backoff(initial=1.0, maximum=8.0, rng=random.Random(seed)).next() for seed in range(50)}
    assert len(firsts) > 40  # not the same instant for a whole fleet
    assert all(0.5 <= d <= 1.0 for d in firsts)
    capped = [Backoff(initial=1.0, maximum=8.0, rng=random.Random(seed)) for seed in range(200)]
    late = []
    for b in capped:
        for _ in range(10):
            d = b.next()
        late.append(d)
    assert all(4.0 <= d <= 8.0 for d in late)
    assert min(late) < 5.0 and max(late) > 7.0  # spread over the upper half


def test_backoff_reset():
    b = Backoff(initial=0.5, maximum=30.0, rng=random.Random(1))
    for _ in range(8):
        b.next()
    b.reset()
    assert b.attempt == 0
    assert 0.25 <= b.next() <= 0.5


def test_backoff_factor():
    b = Backoff(initial=1.0, maximum=1000.0, factor=3.0, rng=random.Random(5))
    for ceiling in (1, 3, 9, 27, 81):
        assert ceiling / 2 <= b.next() <= ceiling


def test_backoff_survives_a_long_outage():
    b = Backoff(initial=0.5, maximum=30.0, rng=random.Random(0))
    for _ in range(2000):
        assert 15.0 <= b.next() <= 30.0 or b.attempt <= 6
