"""The user shell sessions and file copies run as (``run_as`` in agent.toml).

Empty ``run_as``: the agent's own user. A named user needs an agent running as
root (it switches to that user in the child before the shell starts); an agent
that is not root can only run as itself, and says so.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass


class RunAsError(Exception):
    pass


@dataclass(frozen=True)
class RunAs:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    shell: str

    @property
    def switches(self) -> bool:
        """Whether a child must change user (the agent is root and this is someone else)."""
        return self.uid != os.geteuid()

    def may(self, st: os.stat_result, bits: int) -> bool:
        """Whether this user may do all of ``bits`` (4 read, 2 write, 1 search) to what
        ``st`` describes, by its owner, group or other permission bits (as the kernel decides)."""
        if self.uid == 0:
            return True
        if st.st_uid == self.uid:
            shift = 6
        elif st.st_gid in self.groups:
            shift = 3
        else:
            shift = 0
        return (st.st_mode >> shift) & bits == bits


def resolve(name: str) -> RunAs:
    """The user named ``name`` (empty: the agent's own), or ``RunAsError`` saying why not."""
    try:
        pw = pwd.getpwnam(name) if name else pwd.getpwuid(os.geteuid())
    except KeyError:
        raise RunAsError(f"run_as user {name!r} does not exist on this machine") from None
    if pw.pw_uid != os.geteuid() and os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid()).pw_name
        raise RunAsError(f"the agent runs as {me!r} and cannot switch to run_as user {name!r} "
                         "(run it as root, or leave run_as empty)")
    try:
        groups = tuple(os.getgrouplist(pw.pw_name, pw.pw_gid))
    except OSError:
        groups = (pw.pw_gid,)
    shell = pw.pw_shell or "/bin/sh"
    if not os.path.isabs(shell) or not os.access(shell, os.X_OK):
        shell = "/bin/sh"
    return RunAs(pw.pw_name, pw.pw_uid, pw.pw_gid, groups, pw.pw_dir or "/", shell)


def owner_ids(owner: str, group: str) -> tuple[int, int]:
    """``owner``/``group`` names (or numbers) as ids; -1 for an empty one (keep)."""
    uid = gid = -1
    if owner:
        try:
            uid = int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
        except KeyError:
            raise RunAsError(f"no such user: {owner!r}") from None
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise RunAsError(f"no such group: {group!r}") from None
    return uid, gid


def is_dir(st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode)
