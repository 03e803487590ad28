"""Pure parts of shell and copy: the copy window, agent path rules, destinations, CLI parsing."""

from __future__ import annotations

import os

import pytest

from agent_runtime.files import Refused, components, open_dir
from agent_runtime.runas import resolve
from centrality_core import protocol as p
from control_plane.copy import COPY_BUDGET, window_for
from control_plane.requests.copy import _dest


@pytest.mark.parametrize("machines", [1, 10, 64, 500, 1000, 5000])
def test_what_is_in_flight_stays_under_the_budget_and_chunks_fit_a_frame(machines):
    chunk, window = window_for(machines)
    assert chunk <= window and chunk <= p.FILE_CHUNK
    assert machines * window <= max(COPY_BUDGET, machines * 2 * 16 * 1024)  # floor: two small chunks each


def test_paths_dot_dot_refused_relative_from_home():
    assert components("/etc//./nccl.conf", "/root") == ["etc", "nccl.conf"]
    assert components("notes/a.txt", "/home/ops") == ["home", "ops", "notes", "a.txt"]
    with pytest.raises(Refused) as exc:
        components("/srv/../etc/passwd", "/")
    assert exc.value.code == "traversal"
    with pytest.raises(Refused):
        components("a\0b", "/")


def test_open_dir_follows_symlinks_only_where_allowed(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    me = resolve("")
    parts = [*tmp_path.parts[1:], "link"]
    fd = open_dir(parts, root="", follow_upto=len(parts), create_from=None, user=me)  # named by the operator
    os.close(fd)
    with pytest.raises(Refused) as exc:  # inside a copied tree
        open_dir(parts, root="", follow_upto=len(parts) - 1, create_from=None, user=me)
    assert exc.value.code == "symlink"
    with pytest.raises(Refused) as exc:  # under files_root: never
        open_dir(["link"], root=str(tmp_path), follow_upto=1, create_from=None, user=me)
    assert exc.value.code == "symlink"


def test_destinations_like_cp():
    assert _dest("/etc/nccl.conf", "local.conf", False) == ("/etc/nccl.conf", "")
    assert _dest("/etc/", "dir/local.conf", False) == ("/etc/local.conf", "")
    assert _dest("/opt/app", "conf/a/b.txt", True) == ("/opt/app/conf/a/b.txt", "/opt/app")


def test_run_as_permission_needs_every_bit_asked():
    from agent_runtime.runas import RunAs

    user = RunAs("svc", 1000, 1000, (1000, 27), "/home/svc", "/bin/sh")
    st = lambda mode, uid=0, gid=0: os.stat_result((mode, 0, 0, 0, uid, gid, 0, 0, 0, 0))  # noqa: E731
    assert not user.may(st(0o755), 2 | 1)      # root's directory: search, not write
    assert user.may(st(0o755), 1)
    assert user.may(st(0o700, uid=1000), 2 | 1)  # its own
    assert user.may(st(0o070, gid=27), 2 | 1) and not user.may(st(0o070, gid=5), 1)
    assert not user.may(st(0o404, uid=1000), 4 | 2) and user.may(st(0o604), 4)
