"""The pure parts of provisioning: settings and labels, the host-state fact, failure
reasons, worker events, the result table and summary."""

from __future__ import annotations

import io
import subprocess

import pytest

from centrality_core.errors import UsageError
from provision import events, hoststate, reasons, service
from provision.results import DEPROVISION, PROVISION, Report, print_table, summary
from provision.settings import DEFAULT_PREFIX, Layout, labels_for, resolve

# ---------------------------------------------------------------------------- settings


def test_defaults_name_from_the_inventory_host_and_groups_as_labels():
    s = resolve("GPU-07.dc1", {}, ["all", "gpu_nodes", "prod"])
    assert s.name == "gpu-07.dc1"
    assert s.layout.prefix == DEFAULT_PREFIX
    assert s.labels == {"gpu_nodes": "true", "prod": "true"}  # never "all"
    assert s.layout.config_dir == "/opt/centrality/etc/agent"
    assert s.unit_path == "/etc/systemd/system/centrality-agent.service"


def test_host_data_overrides():
    s = resolve("h", {"centrality_prefix": "/srv/c/", "centrality_name": "node-1",
                      "centrality_labels": {"pool": "eval", "gpu": "no"}, "centrality_pip_args": "--index-url x",
                      "centrality_service": "agent2", "centrality_address": "cp:9"}, ["gpu"])
    assert s.layout.prefix == "/srv/c"
    assert s.name == "node-1"
    assert s.labels == {"gpu": "no", "pool": "eval"}
    assert s.pip_args == ("--index-url", "x")
    assert s.service == "agent2" and s.address == "cp:9"


@pytest.mark.parametrize("prefix", ["relative/dir", "/", "/opt/../etc", "/opt/with space", "/opt/$(id)", ""])
def test_unsafe_prefixes_are_refused(prefix):
    with pytest.raises(UsageError, match="centrality_prefix"):
        resolve("h", {"centrality_prefix": prefix}, [])


def test_invalid_name_and_labels_are_refused_with_the_host():
    with pytest.raises(UsageError, match="host h: invalid centrality_name"):
        resolve("h", {"centrality_name": "Bad Name"}, [])
    with pytest.raises(UsageError, match="invalid label"):
        labels_for(["ok"], {"-bad": "x"})


def test_layout_versions_wheels_by_content():
    layout = Layout("/p")
    assert layout.wheel("ab" * 32, "centrality-0.1.0-py3-none-any.whl") == \
        "/p/dist/abababababababab/centrality-0.1.0-py3-none-any.whl"


# ---------------------------------------------------------------------------- host state


def run_fact(layout: Layout, python: str = "python3") -> hoststate.HostState:
    out = subprocess.run(["sh", "-c", hoststate.command(layout, python, "centrality-agent-test")],
                         capture_output=True, text=True, check=True).stdout
    return hoststate.parse(out.splitlines())


def test_fact_on_a_bare_host(tmp_path):
    s = run_fact(Layout(str(tmp_path / "none")))
    assert s.complete and s.python_version is not None and s.python_ok
    assert not (s.prefix_exists or s.marker or s.venv or s.joined or s.supervised)
    assert s.installed == "" and s.public_key == ""


def test_fact_on_a_provisioned_prefix(tmp_path):
    layout = Layout(str(tmp_path / "p"))
    for d in (layout.config_dir, layout.dist):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    (tmp_path / layout.marker).write_text("x")
    (tmp_path / layout.installed).write_text("abc123\n")
    (tmp_path / layout.public_key).write_text("ssh-ed25519 AAAA test\n")
    (tmp_path / layout.agent_toml).write_text('address = "a:1"\nname = "node-1"\n\n[labels]\ngpu = "true"\n')
    s = run_fact(layout)
    assert s.marker and s.prefix_exists and s.joined
    assert s.installed == "abc123"
    assert s.public_key == "ssh-ed25519 AAAA test"
    assert s.agent_name == "node-1" and s.agent_labels == {"gpu": "true"}


def test_fact_reports_a_missing_python():
    s = run_fact(Layout("/nonexistent"), python="python3-does-not-exist")
    assert s.python_version is None and not s.python_ok


def test_parse_captured_output_with_old_python_and_broken_toml():
    s = hoststate.parse(["systemd=1", "python=3.8", "venv_module=1", "package_manager=apt-get",
                         "unit=1", "unit_active=active", hoststate.TOML_START, "name = [", hoststate.TOML_END,
                         "end=1"])
    assert s.systemd and s.python_version == (3, 8) and not s.python_ok
    assert s.package_manager == "apt-get" and s.unit and s.unit_active == "active"
    assert s.joined and s.agent_name is None  # unreadable: the deploy rewrites name and labels


# ---------------------------------------------------------------------------- reasons


@pytest.mark.parametrize("message, expected", [
    ("Authentication error (username=root, key=/k) (Authentication failed.)",
     "auth failed: root@h:22 refused our SSH key (key /k)"),
    ("SSH host key error (Host key for h does not match.)",
     "auth failed: root@h:22 presented a host key that does not match known_hosts"),
    ("Could not connect (Connection refused)", "unreachable: root@h:22: connection refused"),
    ("Could not connect (timed out)", "unreachable: root@h:22: connection timed out"),
    ("Could not resolve hostname ([Errno -2] Name or service not known)", "unreachable: root@h:22: unknown host name"),
    ("PyinfraError: No such private key file: /k", "auth failed: cannot use SSH key /k: PyinfraError: No such private "
                                                   "key file: /k"),
])
def test_connect_failures_in_one_line(message, expected):
    assert reasons.connect_failure(message, target="root@h:22", key="/k") == expected


def test_op_failure_takes_the_last_line_and_stays_one_line():
    r = reasons.op_failure("Install the agent", ["WARNING: x", "ERROR: No matching distribution\x1b[31m", ""],
                           ["out"])
    assert r == "install failed: Install the agent: ERROR: No matching distribution"
    assert reasons.op_failure("Start", [], []) == "install failed: Start failed"
    assert "\n" not in reasons.never_registered("n", 120, "refused: a\nb")


# ---------------------------------------------------------------------------- events


def test_events_round_trip():
    for e in (events.Hosts(hosts=[events.HostInfo(host="a", name="a", labels={"g": "true"})]),
              events.Failed(host="a", reason="unreachable: x"), events.Step(host="a", op="o", index=1, status="ok"),
              events.Result(host="a", ok=True, changed=False), events.Done(aborted=True)):
        line = events.encode(e)
        assert line.endswith(b"\n") and b'"kind":' in line
        assert events.decode(line) == e


# ---------------------------------------------------------------------------- results


def report_of(command=PROVISION, dry=False, **hosts) -> Report:
    r = Report(command, "inv.py", dry=dry)
    for name, fields in hosts.items():
        h = r.host(name)
        h.name = name
        for k, v in fields.items():
            setattr(h, k, v)
    return r


def render(report: Report) -> str:
    from rich.console import Console

    buf = io.StringIO()
    print_table(report, Console(file=buf, width=200, color_system=None))
    return buf.getvalue()


def test_table_and_summary_of_a_first_run_with_a_failure():
    r = report_of(a={"changed": True, "changes": ["x", "y"], "live": True},
                  b={"ok": False, "reason": "auth failed: root@b refused our SSH key"})
    text = render(r)
    assert "changed (2)" in text and "● live" in text
    assert "auth failed: root@b refused our SSH key" in text
    assert summary(r) == "1 of 2 host(s) provisioned (1 changed), 1 agent(s) live; 1 failed"
    assert not r.ok and r.to_json()["hosts"][1]["reason"].startswith("auth failed")


def test_summary_of_a_second_run_says_nothing_changed():
    r = report_of(a={"changed": False, "live": True}, b={"changed": False, "live": True})
    assert "unchanged" in render(r)
    assert summary(r) == "nothing changed: 2 host(s) already provisioned, 2 agent(s) live"
    assert r.ok


def test_dry_run_lists_what_would_change():
    r = report_of(dry=True, a={"changed": True, "changes": ["Create the virtualenv", "Join the control plane"]},
                  b={"changed": False})
    text = render(r)
    assert "would change (2)" in text
    assert "a would: Create the virtualenv, Join the control plane" in text
    assert summary(r) == "dry run: 1 of 2 host(s) would change; nothing was changed"


def test_deprovision_summary_counts_revoked_keys_as_changes():
    r = report_of(DEPROVISION, a={"changed": False, "key": "revoked"})
    assert summary(r) == "1 of 1 host(s) deprovisioned"
    assert "revoked" in render(r)
    r = report_of(DEPROVISION, a={"changed": False, "key": "none"})
    assert summary(r) == "nothing changed: no agent left to remove on 1 host(s)"


def test_cells_from_hosts_are_sanitised():
    r = report_of(**{"evil\x1b]0;pwned\x07": {"ok": False, "reason": "install failed: \x1b[2Jboom [red]x[/]"}})
    text = render(r)
    assert "\x1b" not in text and "boom [red]x[/]" in text


# ---------------------------------------------------------------------------- service files


def test_systemd_unit_runs_the_agent_of_this_prefix():
    unit = service.systemd_unit(Layout("/opt/centrality"))
    assert "ExecStart=/opt/centrality/venv/bin/centrality agent run --config-dir /opt/centrality/etc/agent" in unit
    assert "Restart=always" in unit and "WantedBy=multi-user.target" in unit


def test_supervisor_script_is_valid_sh_with_everything_filled_in():
    text = service.supervisor_script(Layout("/opt/x"))
    import re

    assert not re.findall(r"@[A-Z_]+@", text)  # every placeholder replaced
    subprocess.run(["sh", "-n"], input=text, text=True, check=True)
