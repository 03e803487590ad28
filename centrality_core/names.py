"""Machine name rules.

A machine name is 1 to 63 characters of lowercase letters, digits, ``-``,
``_`` and ``.``, starting and ending with a letter or digit. That keeps names
safe in shells, in hostlist expressions (``gpu[01-16]``) and in terminals, and
stops two names from differing only by case.
"""

from __future__ import annotations

import re

from .errors import UsageError

NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?")
NAME_RULE = (
    "1-63 characters of lowercase letters, digits, '-', '_' or '.', "
    "starting and ending with a letter or digit"
)


def is_valid(name: str) -> bool:
    return bool(NAME_RE.fullmatch(name))


def check(name: str) -> str:
    """Return ``name`` if valid, else raise ``UsageError`` saying why."""
    if not is_valid(name):
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise UsageError(f"invalid machine name {shown!r}: a name is {NAME_RULE}")
    return name


def from_hostname(hostname: str) -> str:
    """Derive a valid name from a hostname: lowercase, invalid runs become '-'."""
    name = re.sub(r"[^a-z0-9._-]+", "-", hostname.strip().lower())
    name = name.strip("-._")[:63].strip("-._")
    return name or "machine"
